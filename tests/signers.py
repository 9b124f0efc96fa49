"""Keys for tests: fresh Ed25519 note signers, and secret keys that seal stored secrets."""

from __future__ import annotations

import os

from trailkeep.log.notes import NoteSigner
from trailkeep.server.secrets import SecretBox


def new_signer(name: str) -> NoteSigner:
    """A note signer with a fresh random Ed25519 key."""
    return NoteSigner(name, os.urandom(32))


def new_secret_box() -> SecretBox:
    """A fresh secret key, for a store that makes apps no server will read."""
    return SecretBox(os.urandom(32))
