"""C2SP tlog-checkpoint bodies and C2SP signed notes with Ed25519 keys.

Keys use the text forms of Go's golang.org/x/mod/sumdb/note, so notes and keys interoperate with
Go tooling. Pure functions only: no file, network or database I/O. Everything arriving here is
untrusted input: parsing is strict and every failure is a NoteError.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trailkeep.log.merkle import HASH_SIZE


class NoteError(ValueError):
    """A signed note or checkpoint is malformed, or its signature does not verify."""


_ALG_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "
_MAX_SIGNATURES = 100  # as Go's x/mod/sumdb/note; C2SP requires at least 16
_MAX_SIZE = (1 << 63) - 1  # Go's tlog parses the size as int64


def _check_text(text: str, what: str) -> None:
    """Require valid UTF-8 with no control characters other than newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise NoteError(f"{what} contains a control character")


def _valid_name(name: str) -> bool:
    # Control characters and lone surrogates are refused too: a name ends up inside note text.
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or c < " " or "\ud800" <= c <= "\udfff" for c in name)
    )


def _b64decode(text: str, what: str) -> bytes:
    """Decode standard padded base64, refusing any non-canonical encoding."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise NoteError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse_key_id(text: str) -> int:
    if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise NoteError("key id must be 8 hex digits")
    return int(text, 16)


def _key_id(name: str, public_key: bytes) -> int:
    data = name.encode("utf-8") + b"\n" + bytes([_ALG_ED25519]) + public_key
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse field values that cannot be written as a well-formed checkpoint."""
        for line in (self.origin, *self.extensions):
            if not isinstance(line, str) or not line or "\n" in line:
                raise NoteError("checkpoint lines must be non-empty single lines")
            _check_text(line, "checkpoint line")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteError("checkpoint size must be an int")
        if not 0 <= self.size <= _MAX_SIZE:
            raise NoteError("checkpoint size out of range")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise NoteError(f"checkpoint root must be {HASH_SIZE} bytes")

    def to_text(self) -> str:
        """Return the checkpoint note text, every line newline-terminated."""
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly; raise NoteError if it is malformed."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root lines")
        size_text = lines[1]
        if not (size_text.isascii() and size_text.isdigit()) or len(size_text) > 19:
            raise NoteError("checkpoint size is not a decimal number")
        if size_text != "0" and size_text.startswith("0"):
            raise NoteError("checkpoint size has leading zeros")
        root = _b64decode(lines[2], "checkpoint root")
        return cls(lines[0], int(size_text), root, tuple(lines[3:]))


class NoteVerifier:
    """An Ed25519 signed-note verifier key, as golang.org/x/mod/sumdb/note defines it."""

    __slots__ = ("_key", "_key_id", "_name")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Build a verifier from a key name and a raw 32-byte Ed25519 public key."""
        if not _valid_name(name):
            raise NoteError("invalid key name")
        if len(public_key) != 32:
            raise NoteError("Ed25519 public key must be 32 bytes")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise NoteError("invalid Ed25519 public key") from None
        self._name = name
        self._key_id = _key_id(name, public_key)

    @property
    def name(self) -> str:
        """Return the key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """Return the 32-bit key id."""
        return self._key_id

    @classmethod
    def from_verifier_key(cls, text: str) -> NoteVerifier:
        """Parse "<name>+<hex8 key id>+<base64(0x01 || public key)>"; NoteError if malformed."""
        name, _, rest = text.partition("+")
        id_text, _, key_text = rest.partition("+")
        key_id = _parse_key_id(id_text)
        if not _valid_name(name):
            raise NoteError("invalid key name")
        key = _b64decode(key_text, "verifier key")
        if len(key) != 33 or key[0] != _ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        verifier = cls(name, key[1:])
        if verifier.key_id != key_id:
            raise NoteError("verifier key id does not match the key")
        return verifier

    def verifier_key(self) -> str:
        """Return the verifier key in "<name>+<hex8 key id>+<base64>" form."""
        raw = bytes([_ALG_ED25519]) + _public_bytes(self._key)
        return f"{self._name}+{self._key_id:08x}+{_b64(raw)}"

    def verify(self, note: str) -> str:
        """Return the note text if a signature by this key verifies; raise NoteError otherwise."""
        _check_text(note, "note")
        split = note.rfind("\n\n")
        if split < 0:
            raise NoteError("malformed note: no signature block")
        text, block = note[: split + 1], note[split + 2 :]
        if not block.endswith("\n"):
            raise NoteError("malformed note: signature block must end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > _MAX_SIGNATURES:
            raise NoteError("malformed note: too many signatures")
        message, found = text.encode("utf-8"), False
        for line in lines:
            if not line.startswith(_SIG_PREFIX):
                raise NoteError("malformed note: bad signature line")
            name, _, sig_text = line[len(_SIG_PREFIX) :].partition(" ")
            if not _valid_name(name) or not sig_text:
                raise NoteError("malformed note: bad signature line")
            sig = _b64decode(sig_text, "signature")
            if len(sig) < 5:
                raise NoteError("malformed note: signature too short")
            # A name or key id match alone is some other key: ignore it, never try it.
            if name != self._name or int.from_bytes(sig[:4], "big") != self._key_id:
                continue
            if len(sig) != 4 + 64:
                raise NoteError(f"bad signature by {self._name}: wrong length")
            try:
                self._key.verify(sig[4:], message)
            except InvalidSignature:
                raise NoteError(f"bad signature by {self._name}") from None
            found = True
        if not found:
            raise NoteError(f"no signature by {self._name}+{self._key_id:08x}")
        return text


class NoteSigner:
    """An Ed25519 signed-note signer key, as golang.org/x/mod/sumdb/note defines it."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        """Build a signer from a key name and a 32-byte Ed25519 private key seed."""
        if len(seed) != 32:
            raise NoteError("Ed25519 seed must be 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = NoteVerifier(name, _public_bytes(self._key.public_key()))

    @property
    def name(self) -> str:
        """Return the key name."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """Return the 32-bit key id."""
        return self._verifier.key_id

    @classmethod
    def from_signer_key(cls, text: str) -> NoteSigner:
        """Parse "PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || seed)>"; NoteError if bad."""
        prefix = "PRIVATE+KEY+"
        if not text.startswith(prefix):
            raise NoteError("signer key must start with PRIVATE+KEY+")
        name, _, rest = text[len(prefix) :].partition("+")
        id_text, _, key_text = rest.partition("+")
        key_id = _parse_key_id(id_text)
        if not _valid_name(name):
            raise NoteError("invalid key name")
        key = _b64decode(key_text, "signer key")
        if len(key) != 33 or key[0] != _ALG_ED25519:
            raise NoteError("signer key is not an Ed25519 key")
        signer = cls(name, key[1:])
        if signer.key_id != key_id:
            raise NoteError("signer key id does not match the key")
        return signer

    def signer_key(self) -> str:
        """Return the secret signer key in "PRIVATE+KEY+<name>+<hex8 key id>+<base64>" form."""
        raw = bytes([_ALG_ED25519]) + self._key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{_b64(raw)}"

    def verifier_key(self) -> str:
        """Return the matching public verifier key."""
        return self._verifier.verifier_key()

    def verifier(self) -> NoteVerifier:
        """Return the matching NoteVerifier."""
        return self._verifier

    def sign(self, text: str) -> str:
        """Return text followed by a blank line and this key's signature line."""
        _check_text(text, "note text")
        if not text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        sig = self._key.sign(text.encode("utf-8"))
        blob = self.key_id.to_bytes(4, "big") + sig
        return f"{text}\n{_SIG_PREFIX}{self.name} {_b64(blob)}\n"


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse it; if `origin` is given it must match."""
    checkpoint = Checkpoint.from_text(verifier.verify(note))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint
