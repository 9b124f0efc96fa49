"""Secrets the database keeps, sealed under a key kept outside it.

An app's session secret lets whoever reads it mint sessions, owners' included; a database dump
or a backup must not hand it out. So it is stored sealed: AES-256-GCM under the node's secret
key (a file beside the signing key, ``TRAILKEEP_SECRET_KEY_FILE``), with the row it belongs to
as associated data, so that a sealed value moved to another app's row does not open. Every
node of a deployment needs the same key file, as it needs the same signing key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trailkeep.server.files import read_or_create

PREFIX: Final = "tk-sealed-v1:"
_NONCE: Final = 12


class SecretKeyError(Exception):
    """A sealed secret that this key cannot open: another key sealed it, or it was altered."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    """Seals and opens the secrets a database keeps, with one AES-256-GCM key."""

    __slots__ = ("_aead", "_mac_key", "_previous", "key_id")

    def __init__(self, key: bytes, previous: tuple[SecretBox, ...] = ()) -> None:
        """Seal with ``key`` (32 random bytes); open what it or a ``previous`` key sealed."""
        if len(key) != 32:
            raise ValueError("the secret key is 32 bytes")
        self._aead = AESGCM(key)
        # A key of its own for keyed hashes, so no value is ever both sealed and hashed under one.
        self._mac_key = hmac.new(key, b"trailkeep keyed hash key v1", hashlib.sha256).digest()
        # Says which key sealed a value, so a wrong key file is named as such, not as damage.
        self.key_id = hashlib.sha256(b"trailkeep secret key id\0" + key).hexdigest()[:8]
        # During a rotation of the key itself: values still sealed under the one it replaces.
        self._previous = {box.key_id: box for box in previous if box.key_id != self.key_id}

    @classmethod
    def load(cls, path: Path, previous: Path | None = None) -> SecretBox:
        """The key in ``path``, made (mode 0600) on first use; ``previous``, the one it replaces."""
        text = read_or_create(path, lambda: _b64(os.urandom(32)))
        try:
            old = () if previous is None else (cls(_unb64(previous.read_text().strip())),)
            return cls(_unb64(text), old)
        except OSError as exc:
            raise SecretKeyError(f"{previous}: {exc.strerror}") from None
        except ValueError:
            raise SecretKeyError(f"{path} does not hold a secret key (32 bytes, base64)") from None

    def sealed_by(self, sealed: str) -> str:
        """The id of the key that sealed ``sealed``."""
        return sealed[len(PREFIX) :].partition(":")[0]

    def reseal(self, sealed: str, context: str) -> str:
        """``sealed`` under this key: as it is if this key sealed it, else sealed again."""
        if self.sealed_by(sealed) == self.key_id:
            return sealed
        return self.seal(self.open(sealed, context), context)

    def keyed_hash(self, message: str, context: str) -> str:
        """HMAC-SHA256 of ``message`` in ``context``, hex: names a value without revealing it."""
        return hmac.new(
            self._mac_key, context.encode() + b"\0" + message.encode(), hashlib.sha256
        ).hexdigest()

    def seal(self, secret: str, context: str) -> str:
        """``secret`` sealed for the place named by ``context`` (e.g. ``apps/<id>/session``)."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return f"{PREFIX}{self.key_id}:{_b64(nonce + sealed)}"

    def open(self, sealed: str, context: str) -> str:
        """The secret that :meth:`seal` sealed for ``context``; ``SecretKeyError`` otherwise."""
        if not is_sealed(sealed):
            raise SecretKeyError(f"{context}: the stored secret is not sealed")
        key_id, _, payload = sealed[len(PREFIX) :].partition(":")
        if key_id in self._previous:
            return self._previous[key_id].open(sealed, context)
        if key_id != self.key_id:
            raise SecretKeyError(
                f"{context}: sealed under secret key {key_id}, but this node holds key "
                f"{self.key_id} (every node needs the same TRAILKEEP_SECRET_KEY_FILE)"
            )
        try:
            raw = _unb64(payload)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (ValueError, InvalidTag):
            raise SecretKeyError(f"{context}: the stored secret was altered") from None


def is_sealed(value: str) -> bool:
    """Whether a stored value is a sealed secret (rather than one stored in clear)."""
    return value.startswith(PREFIX)
