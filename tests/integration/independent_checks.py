"""Checks of the verifiable log written for the tests, independently of trailkeep's own code.

A naive recursive RFC 9162 tree (§2.1.1-2.1.4) over already-hashed leaves, and C2SP signed
notes (checkpoints) whose Ed25519 signatures are checked with `cryptography` directly.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tests.integration.http_api import events_url, expect_status
from tests.servers import Server

KEY_RE = re.compile(r"(?P<name>[^+\s]+)\+(?P<id>[0-9a-f]{8})\+(?P<key>[A-Za-z0-9+/]+=*)")
SIG_PREFIX = "\u2014 "

# --- A naive RFC 9162 tree over leaf hashes, straight from §2.1.1-2.1.4 ---------------------


def _k(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*naive_path(m, leaves[:k]), mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), mth(leaves[:k])]


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def naive_consistency(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return _subproof(m, leaves, True)


def root_from_path(leaf: bytes, m: int, n: int, path: Sequence[bytes]) -> bytes:
    """The root an inclusion path of leaf m in a tree of n leaves leads to (PATH run backwards)."""
    if n == 1:
        assert not path, "inclusion path is too long"
        return leaf
    assert path, "inclusion path is too short"
    k = _k(n)
    if m < k:
        return _node(root_from_path(leaf, m, k, path[:-1]), path[-1])
    return _node(path[-1], root_from_path(leaf, m - k, n - k, path[:-1]))


# --- Keys and signed notes, read with `cryptography` directly ------------------------------


def parse_key(text: str) -> tuple[str, bytes, bytes]:
    """(name, 4-byte key id, raw Ed25519 public key) of a note verifier key."""
    match = KEY_RE.fullmatch(text)
    assert match, text
    raw = base64.b64decode(match["key"], validate=True)
    assert len(raw) == 33
    assert raw[0] == 0x01
    return match["name"], bytes.fromhex(match["id"]), raw[1:]


def key_id(name: str, public: bytes) -> bytes:
    """Go sumdb/note key id: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def open_note(note: str, key_text: str) -> list[str]:
    """The text lines of a note whose signature by this key verifies; else AssertionError."""
    name, kid, public = parse_key(key_text)
    text, sep, block = note.rpartition("\n\n")
    assert sep, note
    assert block.endswith("\n")
    signed = (text + "\n").encode()
    mine = [line for line in block[:-1].split("\n") if line.startswith(f"{SIG_PREFIX}{name} ")]
    assert len(mine) == 1, block
    blob = base64.b64decode(mine[0].split(" ")[2], validate=True)
    assert len(blob) == 4 + 64
    assert blob[:4] == kid
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], signed)
    except InvalidSignature:
        raise AssertionError("the checkpoint's signature does not verify") from None
    return text.split("\n")


def read_checkpoint(note: str, key_text: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a C2SP checkpoint signed by this key."""
    lines = open_note(note, key_text)
    assert len(lines) == 3, lines
    origin, size, root = lines
    assert re.fullmatch(r"0|[1-9][0-9]*", size), size
    raw = base64.b64decode(root, validate=True)
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() == root
    return origin, int(size), raw


def checkpoint_key(server: Server) -> str:
    """The server's published verifier key, without its newline."""
    response = expect_status(httpx.get(f"{server.url}/v1/checkpoint-key", timeout=10))
    assert response.headers["content-type"].startswith("text/plain")
    return response.text.strip()


def await_checkpoint(
    client: httpx.Client, app_id: str, key_text: str, size: int, within: float = 3.0
) -> tuple[str, int, bytes, str]:
    """Poll until the checkpoint covers exactly ``size`` entries: (origin, size, root, note)."""
    deadline = time.monotonic() + within
    while True:
        response = expect_status(client.get(events_url(app_id, "checkpoint")))
        assert response.headers["content-type"].startswith("text/plain")
        origin, got, root = read_checkpoint(response.text, key_text)
        assert got <= size, (got, size)
        if got == size:
            return origin, got, root, response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"checkpoint still at {got} entries, the log holds {size}")
        time.sleep(0.05)


def signer_key_pair(name: str, seed: bytes) -> tuple[str, str]:
    """A Go sumdb/note (signer key, verifier key) pair, encoded here."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    kid = key_id(name, public).hex()
    secret, public_text = (base64.b64encode(b"\x01" + raw).decode() for raw in (seed, public))
    return f"PRIVATE+KEY+{name}+{kid}+{secret}", f"{name}+{kid}+{public_text}"
