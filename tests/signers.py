"""Signing keys for tests: fresh Ed25519 note signers (the log core makes no keys itself)."""

from __future__ import annotations

import os

from trailkeep.log.notes import NoteSigner


def new_signer(name: str) -> NoteSigner:
    """A note signer with a fresh random Ed25519 key."""
    return NoteSigner(name, os.urandom(32))
