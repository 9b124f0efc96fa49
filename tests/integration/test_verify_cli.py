"""`trailkeep verify` for real (issue 4): exports, checkpoints and a tampered SQLite file.

An export, a checkpoint and the verifier key are fetched over HTTP and saved to files, then
changed the ways an attacker would (an edited, dropped or moved entry, an edited checkpoint,
someone else's key); the real command must name the first bad seq and exit non-zero. The local
check (`verify --app`) runs against a server's database whose append-only triggers were dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.integration.http_api import events_url, expect_status, export_lines, write_numbered
from tests.integration.independent_checks import (
    await_checkpoint,
    checkpoint_key,
    mth,
    signer_key_pair,
)
from tests.servers import Server, run_cli

# Past one full tile of leaves (256), so the tree stores a level-8 hash too.
OLD, NEW = 20, 300


@dataclass
class Saved:
    """An app's export, checkpoints, key and proof saved to files; its stopped server's data."""

    server: Server
    app_id: str
    key: str
    dir: Path
    lines: list[bytes]
    new: str
    root: bytes
    first_runs: dict[tuple[str, ...], subprocess.CompletedProcess[str]]

    def file(self, name: str, content: str | bytes) -> Path:
        """Write a file next to the saved ones."""
        path = self.dir / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def export(self, name: str, lines: list[bytes]) -> Path:
        """Write NDJSON lines."""
        return self.file(name, b"".join(line + b"\n" for line in lines))

    def verify_app(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`trailkeep verify --app` with TRAILKEEP_DATA_DIR pointing at the server's data."""
        env = {"TRAILKEEP_DATA_DIR": str(self.server.data_dir)}
        return verify("--app", self.app_id, *args, env=env)


def fetch_files(server: Server, folder: Path) -> tuple[str, str, list[bytes], bytes]:
    """Write 300 entries to a new app; save its checkpoints at 20 and 300, export and key.

    Returns (app id, all-scopes key, export lines, root at 300).
    """
    tenant = server.new_app("verify cli")
    key = checkpoint_key(server)
    with server.client(tenant.key) as c:
        write_numbered(c, tenant.app_id, 0, OLD)
        *_, old = await_checkpoint(c, tenant.app_id, key, OLD)
        write_numbered(c, tenant.app_id, OLD, NEW - OLD)
        _, _, root, new = await_checkpoint(c, tenant.app_id, key, NEW)
        lines = export_lines(c, tenant.app_id, {})
        url = events_url(tenant.app_id, "proofs/consistency")
        proof = expect_status(c.get(url, params={"from": OLD, "to": NEW})).content
    assert [json.loads(line)["seq"] for line in lines] == list(range(NEW))
    assert root == mth([bytes.fromhex(json.loads(line)["leaf_hash"]) for line in lines])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "entries.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))
    (folder / "cp.txt").write_text(new)
    (folder / "old.txt").write_text(old)
    (folder / "key.txt").write_text(key + "\n")
    (folder / "proof.json").write_bytes(proof)
    return tenant.app_id, tenant.key, lines, root


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    """A SQLite server of its own: files fetched, `verify --app` run while serving, then stopped.

    The tampering below is of files and of the SQLite file, the same whatever database served
    them, so it runs once; each backend's own export is verified in the first test.
    """
    home = tmp_path_factory.mktemp("verify")
    srv = Server(home / "data").start()
    try:
        app_id, _, lines, root = fetch_files(srv, home)
        env = {"TRAILKEEP_DATA_DIR": str(srv.data_dir)}
        first = {spans: verify("--app", app_id, *spans, env=env) for spans in SPANS}
    finally:
        srv.stop()
    new = (home / "cp.txt").read_text()
    key = (home / "key.txt").read_text().strip()
    return Saved(srv, app_id, key, home, lines, new, root, first)


# One span checked in this process, or spans of 8 leaves on two worker processes: the 300
# entries then cross 38 spans, and the level-8 hash is checked from the spans' heads.
SPANS: list[tuple[str, ...]] = [(), ("--jobs", "2", "--span-bits", "3")]


def verify(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `trailkeep verify`, wide enough that Rich does not wrap its lines."""
    return run_cli("verify", *map(str, args), env={"COLUMNS": "300", **(env or {})}, check=False)


def offline(
    saved: Saved, *extra: str | Path, entries: Path | None = None, checkpoint: Path | None = None,
    key: Path | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`verify --entries --checkpoint --key`, defaulting to the saved, untouched files."""
    return verify(
        "--entries", entries or saved.dir / "entries.ndjson",
        "--checkpoint", checkpoint or saved.dir / "cp.txt",
        "--key", key or saved.dir / "key.txt", *extra,
    )  # fmt: skip


def passed(result: subprocess.CompletedProcess[str], size: int, root: bytes) -> None:
    """A clean run: exit 0, the tree size and the base64 root printed."""
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"tree size {size}, root {base64.b64encode(root).decode()}" in result.stdout


def failed(result: subprocess.CompletedProcess[str], *patterns: str) -> str:
    """A failed run: non-zero, no traceback, and every pattern in what it printed."""
    output = result.stderr + result.stdout
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert "tree size" not in result.stdout, output
    for pattern in patterns:
        assert re.search(pattern, output), (pattern, output)
    return output


# --- Offline: an export, a checkpoint, a key -----------------------------------------------


def test_each_backends_export_verifies_and_extends_its_old_checkpoint(
    server: Server, tmp_path: Path
) -> None:
    app_id, api_key, _, root = fetch_files(server, tmp_path)
    assert f"/{app_id}\n" in (tmp_path / "cp.txt").read_text()
    args = ("--entries", tmp_path / "entries.ndjson", "--checkpoint", tmp_path / "cp.txt",
            "--key", tmp_path / "key.txt")  # fmt: skip
    result = verify(*args)
    passed(result, NEW, root)
    assert "consistent" not in result.stdout
    result = verify(*args, "--old-checkpoint", tmp_path / "old.txt",
                    "--server", server.url, "--api-key", api_key)  # fmt: skip
    passed(result, NEW, root)
    assert f"consistent: checkpoint {OLD} is a prefix of {NEW}" in result.stdout


def test_old_checkpoint_with_a_given_proof(saved: Saved) -> None:
    old = saved.dir / "old.txt"
    result = offline(
        saved, "--old-checkpoint", old, "--consistency-proof", saved.dir / "proof.json"
    )
    passed(result, NEW, saved.root)
    assert f"consistent: checkpoint {OLD} is a prefix of {NEW}" in result.stdout
    # One flipped hash in the proof, and the two checkpoints are no longer shown consistent.
    proof = json.loads((saved.dir / "proof.json").read_bytes())
    first = proof["path"][0]
    proof["path"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    bad = saved.file("bad-proof.json", json.dumps(proof))
    result = offline(saved, "--old-checkpoint", old, "--consistency-proof", bad)
    failed(result, f"checkpoint {OLD} is not consistent with checkpoint {NEW}")


def _edit(line: bytes, **metadata: object) -> bytes:
    entry = json.loads(line)
    entry["metadata"].update(metadata)
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_edited_entry_is_named(saved: Saved) -> None:
    lines = list(saved.lines)
    lines[17] = _edit(lines[17], n=71)
    failed(offline(saved, entries=saved.export("edited.ndjson", lines)), r"\bseq 17\b", "leaf_hash")


def test_an_edited_entry_with_a_matching_leaf_hash_breaks_the_root(saved: Saved) -> None:
    lines = list(saved.lines)
    entry = json.loads(_edit(lines[30], n=3))
    del entry["leaf_hash"]
    entry["leaf_hash"] = hashlib.sha256(b"\x00" + rfc8785.dumps(entry)).hexdigest()
    lines[30] = json.dumps(entry).encode()
    failed(
        offline(saved, entries=saved.export("rehashed.ndjson", lines)), "checkpoint", "rewritten"
    )


def test_a_removed_entry_is_named(saved: Saved) -> None:
    lines = saved.lines[:9] + saved.lines[10:]
    failed(offline(saved, entries=saved.export("gap.ndjson", lines)), r"\bseq 9\b", "missing")


def test_two_swapped_entries_are_named(saved: Saved) -> None:
    lines = list(saved.lines)
    lines[4], lines[5] = lines[5], lines[4]
    failed(offline(saved, entries=saved.export("swapped.ndjson", lines)), r"\bseq 4\b")


def test_a_truncated_export_names_the_missing_tail(saved: Saved) -> None:
    failed(
        offline(saved, entries=saved.export("short.ndjson", saved.lines[:-2])),
        rf"\bseq {NEW - 2}\b",
    )


@pytest.mark.parametrize("what", ["size", "root"])
def test_an_altered_checkpoint_fails_its_signature(saved: Saved, what: str) -> None:
    b64 = base64.b64encode(saved.root).decode()
    altered = {
        "size": saved.new.replace(f"\n{NEW}\n", f"\n{NEW - 1}\n", 1),
        "root": saved.new.replace(b64, base64.b64encode(mth([])).decode(), 1),
    }[what]
    assert altered != saved.new
    failed(offline(saved, checkpoint=saved.file(f"cp-{what}.txt", altered)), "signature")


def test_another_key_fails(saved: Saved) -> None:
    name = saved.key.split("+", 1)[0]
    _, same_name = signer_key_pair(name, hashlib.sha256(b"someone else").digest())
    failed(offline(saved, key=saved.file("other.key", same_name + "\n")), "signature")
    failed(offline(saved, key=saved.file("junk.key", "not a key\n")), "--key")


# --- The local database, tampered with ----------------------------------------------------


@contextmanager
def database(saved: Saved) -> Iterator[sqlite3.Connection]:
    """The SQLite file with its append-only triggers dropped, committed on leaving."""
    db = sqlite3.connect(saved.server.sqlite_file)
    try:
        for trigger in ("events_no_update", "events_erased_only", "tree_tiles_no_update",
                        "tree_tiles_no_delete"):  # fmt: skip
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        yield db
        db.commit()
    finally:
        db.close()


def _snapshot(saved: Saved) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with database(saved) as db:
        events = db.execute("SELECT * FROM events ORDER BY app_id, seq").fetchall()
        nodes = db.execute("SELECT * FROM tree_tiles ORDER BY app_id, level, idx").fetchall()
    return events, nodes


@contextmanager
def restored(saved: Saved) -> Iterator[None]:
    """Undo a test's tampering afterwards, so that each test sees the honest database."""
    events, nodes = _snapshot(saved)
    try:
        yield
    finally:
        with database(saved) as db:
            for table, rows in (("events", events), ("tree_tiles", nodes)):
                db.execute(f"DELETE FROM {table}")
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        assert _snapshot(saved) == (events, nodes)


@pytest.fixture(params=SPANS, ids=["one-span", "spans"])
def spans(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Extra `verify --app` options: how the log is split."""
    args: tuple[str, ...] = request.param
    return args


def test_local_verify_of_an_unknown_app_says_so(saved: Saved) -> None:
    env = {"TRAILKEEP_DATA_DIR": str(saved.server.data_dir)}
    result = verify("--app", "app_nosuchapp", env=env)
    assert result.returncode != 0
    assert "no app 'app_nosuchapp' in this database" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_local_verify_without_a_key_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "data"
    result = verify("--app", "app_any", env={"TRAILKEEP_DATA_DIR": str(empty)})
    assert result.returncode != 0
    assert "no signing key" in result.stderr + result.stdout
    assert not empty.exists()


def test_local_verify_passes_while_serving(saved: Saved, spans: tuple[str, ...]) -> None:
    passed(saved.first_runs[spans], NEW, saved.root)


def test_local_verify_names_an_edited_entry(saved: Saved, spans: tuple[str, ...]) -> None:
    with restored(saved):
        with database(saved) as db:
            (entry,) = db.execute(
                "SELECT entry FROM events WHERE app_id = ? AND seq = 23", (saved.app_id,)
            ).fetchone()
            assert entry.count(b'"n":23') == 1
            db.execute(
                "UPDATE events SET entry = ? WHERE app_id = ? AND seq = 23",
                (entry.replace(b'"n":23', b'"n":32'), saved.app_id),
            )
        failed(saved.verify_app(*spans), r"\bseq 23\b", "leaf_hash")


def test_local_verify_names_a_deleted_entry(saved: Saved, spans: tuple[str, ...]) -> None:
    with restored(saved):
        with database(saved) as db:
            gone = db.execute(
                "DELETE FROM events WHERE app_id = ? AND seq = 12", (saved.app_id,)
            ).rowcount
            assert gone == 1
        failed(saved.verify_app(*spans), r"\bseq 12\b", "missing")


def _edit_tile(saved: Saved, level: int, index: int, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite one stored tile's hashes (its width follows), as someone with the file could."""
    with database(saved) as db:
        (hashes,) = db.execute(
            "SELECT hashes FROM tree_tiles WHERE app_id = ? AND level = ? AND idx = ?",
            (saved.app_id, level, index),
        ).fetchone()
        changed = edit(hashes)
        db.execute(
            "UPDATE tree_tiles SET hashes = ?, width = ?"
            " WHERE app_id = ? AND level = ? AND idx = ?",
            (changed, len(changed) // 32, saved.app_id, level, index),
        )


FORGED = hashlib.sha256(b"forged").digest()


def test_local_verify_names_a_tampered_tree_leaf(saved: Saved, spans: tuple[str, ...]) -> None:
    with restored(saved):
        _edit_tile(saved, 0, 0, lambda hashes: hashes[: 7 * 32] + FORGED + hashes[8 * 32 :])
        failed(saved.verify_app(*spans), r"\bseq 7\b")


def test_local_verify_names_dropped_tree_leaves(saved: Saved, spans: tuple[str, ...]) -> None:
    with restored(saved):
        _edit_tile(saved, 0, 0, lambda hashes: hashes[: 30 * 32])  # leaves 30..255 gone
        failed(saved.verify_app(*spans), r"\b30\b", "missing")


def test_local_verify_detects_a_tampered_level_8_hash(saved: Saved, spans: tuple[str, ...]) -> None:
    # Checked inside the one span, or above the spans of 8 leaves from their heads.
    with restored(saved):
        _edit_tile(saved, 1, 0, lambda hashes: FORGED)
        failed(saved.verify_app(*spans), r"\bseq 0\b", "level 8, index 0")


# --- Index columns edited behind the server's back, on either database ------------------------


def _tamper_column(server: Server, app_id: str, seq: int, column: str, value: object) -> None:
    """Set one indexed column of one row, with the append-only guard lifted just for it."""
    url = server.database_url
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, poolclass=NullPool)
    where = "WHERE app_id = :app AND seq = :seq"
    try:
        with engine.begin() as c:
            if server.backend == "postgres":
                # In one transaction: no other session ever sees the guard lifted.
                c.execute(text("ALTER TABLE events DISABLE TRIGGER USER"))
                c.execute(text(f"UPDATE events SET {column} = :value {where}"),
                          {"value": value, "app": app_id, "seq": seq})  # fmt: skip
                c.execute(text("ALTER TABLE events ENABLE TRIGGER USER"))
                return
            (guard,) = c.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'events_no_update'")
            ).one()
            c.execute(text("DROP TRIGGER events_no_update"))
            c.execute(text(f"UPDATE events SET {column} = :value {where}"),
                      {"value": value, "app": app_id, "seq": seq})  # fmt: skip
            c.exec_driver_sql(guard)
    finally:
        engine.dispose()


def _earlier(stamp: object) -> object:
    """A moment one microsecond before ``stamp``, as the database stores it."""
    if isinstance(stamp, datetime):
        return stamp - timedelta(microseconds=1)
    moment = datetime.fromisoformat(str(stamp)) - timedelta(microseconds=1)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "forged.action"),
        ("actor_id", "someone_else"),
        ("kind", "user"),
        ("target_type", "invoice"),
        ("target_id", None),
        ("time", _earlier),
    ],
)
def test_local_verify_names_an_index_column_that_disagrees_with_its_entry(
    server: Server, column: str, value: object
) -> None:
    tenant = server.new_app("index columns")
    with server.client(tenant.key) as c:
        for n in range(6):
            body = {"action": "doc.edit", "target_type": "doc", "target_id": f"d{n}"}
            assert c.post(events_url(tenant.app_id), json=body).status_code == 201
        # The background signer covers them within a second; verify --app needs a checkpoint.
        await_checkpoint(c, tenant.app_id, checkpoint_key(server), 6)
    assert json.loads(server.query(
        "SELECT entry FROM events WHERE app_id = :app AND seq = 4", app=tenant.app_id
    )[0][0])["kind"] == "admin"  # a key with `manage` acts as an administrator  # fmt: skip
    verified = server.cli("verify", "--app", tenant.app_id, check=False)
    assert verified.returncode == 0, verified.stderr + verified.stdout
    if callable(value):
        (stamp,) = server.query(
            "SELECT time FROM events WHERE app_id = :app AND seq = 4", app=tenant.app_id
        )[0]
        value = value(stamp)
    _tamper_column(server, tenant.app_id, 4, column, value)
    result = server.cli("verify", "--app", tenant.app_id, check=False)
    failed(result, r"\bseq 4\b", f"indexed column {column}")


def test_local_verify_names_an_entry_deleted_around_trailkeep(saved: Saved) -> None:
    # Below a raised purge horizon, with the triggers dropped, an entry's row was deleted
    # around Trailkeep: no stub records its erasure, and no record of the log explains it.
    with restored(saved):
        with database(saved) as db:
            db.execute("UPDATE apps SET purge_horizon = 5 WHERE id = ?", (saved.app_id,))
            db.execute("DELETE FROM events WHERE app_id = ? AND seq = 2", (saved.app_id,))
        failed(saved.verify_app(), r"\bseq 2\b", "no stub records its erasure")
