"""The verifiable log over real HTTP (issue 4): signed checkpoints, proofs, the signing key.

Everything the server says is checked with code written for the tests (independent_checks.py):
a naive recursive RFC 9162 tree (§2.1.1-2.1.4) over leaf hashes recomputed from the entries'
content, and the C2SP signed note's Ed25519 signature checked with `cryptography` directly, not
with trailkeep's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.integration.http_api import (
    Entry,
    events_url,
    expect_problem,
    expect_status,
    export_lines,
    leaf_hash,
    write_numbered,
)
from tests.integration.independent_checks import (
    await_checkpoint,
    checkpoint_key,
    key_id,
    mth,
    naive_consistency,
    naive_path,
    open_note,
    parse_key,
    read_checkpoint,
    root_from_path,
    signer_key_pair,
)
from tests.servers import Server, Tenant
from trailkeep.log.notes import NoteSigner

VECTORS = Path(__file__).resolve().parents[1] / "data" / "rfc6962.json"


@dataclass
class Log:
    """An app holding a known log, its leaf hashes (recomputed here) and its checkpoint."""

    tenant: Tenant
    entries: list[Entry]
    leaves: list[bytes]
    key: str
    note: str


BATCHES = (1, 2, 5, 13, 1, 30, 18)  # 70 entries, so the tree has ragged right edges
SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70)


@pytest.fixture(scope="module")
def log(server: Server) -> Log:
    """A fresh app with 70 entries written in uneven batches, exported and checkpointed."""
    tenant = server.new_app("integrity")
    key = checkpoint_key(server)
    with server.client(tenant.key) as client:
        written: list[Entry] = []
        for count in BATCHES:
            written += write_numbered(client, tenant.app_id, len(written), count)
        *_, note = await_checkpoint(client, tenant.app_id, key, len(written))
        # Reads with a key are not recorded, so the log stays exactly what was written.
        entries = [json.loads(line) for line in export_lines(client, tenant.app_id, {})]
    assert entries == written
    assert [e["seq"] for e in entries] == list(range(sum(BATCHES)))
    return Log(tenant, entries, [leaf_hash(e) for e in entries], key, note)


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    """A second app on the shared server, made once for the whole module."""
    return server.new_app("other")


@pytest.fixture(scope="module")
def client(server: Server, log: Log) -> Iterator[httpx.Client]:
    """A client with the log app's all-scopes key."""
    with server.client(log.tenant.key) as c:
        yield c


# --- The naive reference itself ------------------------------------------------------------


def test_naive_reference_reproduces_published_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())
    leaves = [
        hashlib.sha256(b"\x00" + bytes.fromhex(x)).digest() for x in vectors["leaf_inputs_hex"]
    ]
    for size, root in enumerate(vectors["roots_by_size_hex"]):
        assert mth(leaves[:size]).hex() == root
    for case in vectors["inclusion"]:
        assert [h.hex() for h in naive_path(case["index"], leaves[: case["size"]])] == case["path"]
    for case in vectors["consistency"]:
        proof = naive_consistency(case["from"], leaves[: case["to"]])
        assert [h.hex() for h in proof] == case["path"]


# --- The key and the checkpoint ------------------------------------------------------------


def test_checkpoint_key_is_a_go_note_verifier_key(server: Server) -> None:
    text = checkpoint_key(server)
    name, kid, public = parse_key(text)
    assert kid == key_id(name, public)
    Ed25519PublicKey.from_public_bytes(public)  # a real curve point
    assert checkpoint_key(server) == text  # stable


def test_checkpoint_is_a_signed_c2sp_note_over_the_entries(server: Server, log: Log) -> None:
    origin, size, root = read_checkpoint(log.note, log.key)
    assert origin == f"trailkeep.local/{log.tenant.app_id}"
    assert size == len(log.entries)
    assert root == mth(log.leaves)
    assert log.note.endswith("\n")
    name, _, _ = parse_key(log.key)
    sig_lines = log.note.rpartition("\n\n")[2].splitlines()
    assert [line.split(" ")[:2] for line in sig_lines] == [["\u2014", name]]
    # The same checks refuse a note whose text or signature changed.
    for changed in (
        log.note.replace(f"\n{size}\n", f"\n{size - 1}\n", 1),
        log.note.replace(base64.b64encode(root).decode(), base64.b64encode(mth([])).decode()),
        log.note.replace("trailkeep.local/", "trailkeep.locaI/", 1),
    ):
        assert changed != log.note
        with pytest.raises(AssertionError, match="signature does not verify"):
            open_note(changed, log.key)


def test_an_empty_log_has_a_signed_empty_checkpoint(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as c:
        note = expect_status(c.get(events_url(tenant.app_id, "checkpoint"))).text
        assert read_checkpoint(note, checkpoint_key(server)) == (
            f"trailkeep.local/{tenant.app_id}",
            0,
            hashlib.sha256(b"").digest(),
        )
        url = events_url(tenant.app_id, "proofs/inclusion")
        expect_problem(c.get(url, params={"seq": 0, "tree_size": 1}), 400, "invalid_request")


def test_every_leaf_hash_is_recomputable_from_the_entry(log: Log) -> None:
    for entry, leaf in zip(log.entries, log.leaves, strict=True):
        assert entry["leaf_hash"] == leaf.hex()
    assert len(set(log.leaves)) == len(log.leaves)


def test_checkpoint_follows_the_tree_as_it_grows(server: Server) -> None:
    tenant = server.new_app("growing")
    key = checkpoint_key(server)
    with server.client(tenant.key) as c:
        leaves: list[bytes] = []
        previous: tuple[int, bytes] | None = None
        for count in (1, 3, 1, 40):
            leaves += [leaf_hash(e) for e in write_numbered(c, tenant.app_id, len(leaves), count)]
            origin, size, root, _ = await_checkpoint(c, tenant.app_id, key, len(leaves))
            assert origin == f"trailkeep.local/{tenant.app_id}"
            assert root == mth(leaves)
            if previous is not None:
                old, old_root = previous
                url = events_url(tenant.app_id, "proofs/consistency")
                proof = expect_status(c.get(url, params={"from": old, "to": size})).json()
                expected = [h.hex() for h in naive_consistency(old, leaves)]
                assert proof == {"from": old, "to": size, "path": expected}
                assert mth(leaves[:old]) == old_root
            previous = (size, root)


# --- Proofs --------------------------------------------------------------------------------


def test_inclusion_proofs_for_every_seq_at_several_sizes(client: httpx.Client, log: Log) -> None:
    url = events_url(log.tenant.app_id, "proofs/inclusion")
    for size in SIZES:
        root = mth(log.leaves[:size])
        for seq in range(size):
            body = expect_status(client.get(url, params={"seq": seq, "tree_size": size})).json()
            path = [bytes.fromhex(h) for h in body["path"]]
            assert body == {"seq": seq, "tree_size": size, "leaf_hash": log.leaves[seq].hex(),
                            "path": body["path"]}  # fmt: skip
            assert path == naive_path(seq, log.leaves[:size]), (seq, size)
            assert root_from_path(log.leaves[seq], seq, size, path) == root


@pytest.mark.parametrize("old", SIZES)
def test_consistency_proofs_between_size_pairs(client: httpx.Client, log: Log, old: int) -> None:
    url = events_url(log.tenant.app_id, "proofs/consistency")
    for new in (s for s in SIZES if s >= old):
        body = expect_status(client.get(url, params={"from": old, "to": new})).json()
        expected = [h.hex() for h in naive_consistency(old, log.leaves[:new])]
        assert body == {"from": old, "to": new, "path": expected}, (old, new)
        assert bool(expected) == (new != old)


N = 70
BAD_INCLUSION: list[dict[str, Any]] = [
    {"seq": -1, "tree_size": 5}, {"seq": 0, "tree_size": 0}, {"seq": 0, "tree_size": -3},
    {"seq": 5, "tree_size": 5}, {"seq": 9, "tree_size": 3}, {"seq": "x", "tree_size": 5},
    {"seq": 1, "tree_size": "1.5"}, {"seq": "1e3", "tree_size": 5}, {"seq": "", "tree_size": 5},
    {"tree_size": 5}, {"seq": 0}, {"seq": 0, "tree_size": N + 1},
    {"seq": N, "tree_size": N + 1}, {"seq": 0, "tree_size": 10**30},
    {"seq": 10**30, "tree_size": 10**31},
]  # fmt: skip
BAD_CONSISTENCY: list[dict[str, Any]] = [
    {"from": 0, "to": 5}, {"from": -1, "to": 5}, {"from": 6, "to": 5}, {"from": N, "to": 1},
    {"from": "a", "to": 5}, {"from": 1, "to": "5x"}, {"from": 1, "to": -5}, {"to": 5},
    {"from": 1}, {"from": 1, "to": N + 1}, {"from": N + 1, "to": N + 1},
    {"from": 1, "to": 10**30},
]  # fmt: skip


@pytest.mark.parametrize("params", BAD_INCLUSION, ids=str)
def test_bad_inclusion_parameters_are_400(
    client: httpx.Client, log: Log, params: dict[str, Any]
) -> None:
    assert len(log.entries) == N
    url = events_url(log.tenant.app_id, "proofs/inclusion")
    expect_problem(client.get(url, params=params), 400, "invalid_request")


@pytest.mark.parametrize("params", BAD_CONSISTENCY, ids=str)
def test_bad_consistency_parameters_are_400(
    client: httpx.Client, log: Log, params: dict[str, Any]
) -> None:
    assert len(log.entries) == N
    url = events_url(log.tenant.app_id, "proofs/consistency")
    expect_problem(client.get(url, params=params), 400, "invalid_request")


ROUTES = ("checkpoint", "proofs/inclusion?seq=0&tree_size=1", "proofs/consistency?from=1&to=1")


@pytest.mark.parametrize("route", ROUTES)
def test_integrity_routes_are_per_app(server: Server, log: Log, other: Tenant, route: str) -> None:
    with server.client(other.key) as c:
        expect_problem(c.get(events_url(log.tenant.app_id, route)), 404, "not_found")
    with server.client() as nobody:
        expect_problem(nobody.get(events_url(log.tenant.app_id, route)), 401, "unauthenticated")
    with server.client("tk_nope_nope") as bad:
        expect_problem(bad.get(events_url(log.tenant.app_id, route)), 401, "unauthenticated")


# --- One entry, verifiable on its own ------------------------------------------------------


def check_proven(body: dict[str, Any], key_text: str, app_id: str) -> Entry:
    """Verify an entry + proof + checkpoint response offline; return the entry."""
    assert set(body) == {"entry", "proof", "checkpoint"}
    entry, proof = body["entry"], body["proof"]
    origin, size, root = read_checkpoint(body["checkpoint"], key_text)
    assert origin == f"trailkeep.local/{app_id}"
    leaf = leaf_hash(entry)
    assert entry["leaf_hash"] == proof["leaf_hash"] == leaf.hex()
    assert proof["seq"] == entry["seq"]
    assert proof["tree_size"] == size
    path = [bytes.fromhex(h) for h in proof["path"]]
    assert root_from_path(leaf, entry["seq"], size, path) == root
    return dict(entry)


def test_get_with_proof_verifies_offline(server: Server, other: Tenant) -> None:
    key = checkpoint_key(server)
    with server.client(other.key) as c:
        written = write_numbered(c, other.app_id, 0, 6)
        for entry in (written[-1], written[0], written[3]):  # newest first: not yet checkpointed
            url = events_url(other.app_id, f"events/{entry['id']}")
            body = expect_status(c.get(url, params={"proof": "true"})).json()
            assert check_proven(body, key, other.app_id) == entry
            assert expect_status(c.get(url)).json() == entry  # without proof=true: the bare entry
        # The offline check is not a formality: a changed entry no longer verifies.
        body["entry"]["metadata"]["n"] = 4
        with pytest.raises(AssertionError):
            check_proven(body, key, other.app_id)


def test_proofs_of_the_newest_entry_wait_for_a_checkpoint_and_never_sign_one(
    server: Server, other: Tenant
) -> None:
    # Once every `?proof=true` of an entry newer than the latest checkpoint signed and stored
    # a checkpoint of its own (40 in 0.7 s). Checkpoints are signed in the background, at most
    # once a second, and such a request waits for the next one.
    key = checkpoint_key(server)

    def checkpoints() -> int:
        rows = server.query("SELECT count(*) FROM checkpoints WHERE app_id = :a", a=other.app_id)
        return int(rows[0][0])

    def write_then_prove(n: int) -> None:
        # Each request asks for the proof of the entry it has just written: the newest one.
        entry = write_numbered(c, other.app_id, n, 1)[0]
        url = events_url(other.app_id, f"events/{entry['id']}")
        body = expect_status(c.get(url, params={"proof": "true"})).json()
        assert check_proven(body, key, other.app_id) == entry

    with server.client(other.key) as c:
        before, started = checkpoints(), time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(write_then_prove, range(40)))
        elapsed = time.monotonic() - started
        assert checkpoints() - before <= math.ceil(elapsed) + 1, elapsed


def test_get_with_proof_by_an_owner_session(server: Server, other: Tenant) -> None:
    key = checkpoint_key(server)
    with server.client(other.key) as c:
        middle = write_numbered(c, other.app_id, 0, 3)[1]
    owner = server.session(other, "olga", role="owner")
    with server.client(owner) as o:
        url = events_url(other.app_id, f"events/{middle['id']}")
        body = expect_status(o.get(url, params={"proof": "true"})).json()
    assert check_proven(body, key, other.app_id) == middle


def test_get_with_proof_of_another_apps_entry_is_404(
    server: Server, log: Log, other: Tenant
) -> None:
    with server.client(other.key) as c:
        url = events_url(other.app_id, f"events/{log.entries[0]['id']}")
        expect_problem(c.get(url, params={"proof": "true"}), 404, "not_found")
        url = events_url(log.tenant.app_id, f"events/{log.entries[0]['id']}")
        expect_problem(c.get(url, params={"proof": "true"}), 404, "not_found")


# --- The signing key (a file, not in the database: these run on SQLite only) ---------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_signing_key_is_made_0600_in_the_data_dir_and_kept(sqlite_server: Server) -> None:
    srv = sqlite_server.start()
    made = srv.data_dir / "signing.key"
    assert made.is_file()
    assert _mode(made) == 0o600
    key = checkpoint_key(srv)
    tenant = srv.new_app()
    with srv.client(tenant.key) as c:
        leaves = [leaf_hash(e) for e in write_numbered(c, tenant.app_id, 0, 3)]
        *_, before = await_checkpoint(c, tenant.app_id, key, 3)
    content = made.read_bytes()
    srv.stop()
    srv.start()
    assert checkpoint_key(srv) == key
    assert made.read_bytes() == content
    with srv.client(tenant.key) as c:
        # The checkpoint signed before the restart still verifies; so does the next one.
        assert expect_status(c.get(events_url(tenant.app_id, "checkpoint"))).text == before
        leaves += [leaf_hash(e) for e in write_numbered(c, tenant.app_id, 3, 2)]
        _, _, root, _ = await_checkpoint(c, tenant.app_id, key, 5)
    assert root == mth(leaves)


def test_a_given_signing_key_file_and_origin_are_used(
    sqlite_server: Server, tmp_path: Path
) -> None:
    signer, verifier = signer_key_pair("audit.example.test", bytes(range(32)))
    given = tmp_path / "secrets" / "checkpoint.key"
    given.parent.mkdir()
    given.write_text(signer + "\n")
    sqlite_server.env["TRAILKEEP_SIGNING_KEY_FILE"] = str(given)
    sqlite_server.env["TRAILKEEP_ORIGIN"] = "audit.example.test"
    srv = sqlite_server.start()
    assert checkpoint_key(srv) == verifier
    assert not (srv.data_dir / "signing.key").exists()
    tenant = srv.new_app()
    with srv.client(tenant.key) as c:
        leaves = [leaf_hash(e) for e in write_numbered(c, tenant.app_id, 0, 4)]
        origin, _, root, _ = await_checkpoint(c, tenant.app_id, verifier, 4)
    assert origin == f"audit.example.test/{tenant.app_id}"
    assert root == mth(leaves)
    assert given.read_text() == signer + "\n"


def test_a_missing_signing_key_file_is_created_there(sqlite_server: Server, tmp_path: Path) -> None:
    wanted = tmp_path / "keys" / "node.key"
    sqlite_server.env["TRAILKEEP_SIGNING_KEY_FILE"] = str(wanted)
    srv = sqlite_server.start()
    assert wanted.is_file()
    assert _mode(wanted) == 0o600
    assert not (srv.data_dir / "signing.key").exists()
    assert (
        checkpoint_key(srv) == NoteSigner.from_signer_key(wanted.read_text().strip()).verifier_key()
    )
