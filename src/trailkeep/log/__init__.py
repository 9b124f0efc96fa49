"""The verifiable log, pure: no I/O, no clock, no randomness.

The record and its validation (``record``), canonical JSON (``jcs``), RFC 9162 Merkle hashing
and proofs (``merkle``), the tree as C2SP tiles (``tiles``), signed notes and checkpoints
(``notes``), read filters and cursors (``query``), and the one verification core (``verify``)
that the server, the CLI and the SDK all call.
"""
