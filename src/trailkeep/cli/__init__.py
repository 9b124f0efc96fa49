"""The ``trailkeep`` command line: serve a node, manage apps and keys, read and verify logs.

Server-side commands (``serve``, ``apps``, ``keys``, ``migrate``, ``verify --app``) open the
database through :mod:`trailkeep.server`; commands that talk to a running server use the SDK's
client. See ``trailkeep --help``.
"""

from trailkeep.cli.command import app, main

__all__ = ["app", "main"]
