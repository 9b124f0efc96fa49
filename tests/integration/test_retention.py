"""Retention: content older than an app keeps it is erased in logged chunks, every proof stays
valid, and the erased content is gone from the database files (DESIGN §4, §5; issue 21).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.http_api import (
    check_entry,
    checkpoint_verifier,
    expect_status,
    export_lines,
    wait_for_checkpoint,
    write_numbered,
)
from tests.integration.independent_checks import checkpoint_key
from tests.servers import BIN, Server, Tenant
from trailkeep.log.record import Actor, EventWrite, Origin, prepare
from trailkeep.server.governance.retention import Retention
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.commit import append_groups

pytestmark = pytest.mark.timeout(240)

#: Written into the old entries only: after the purge it must be nowhere in the database files.
MARKER = "zq-retention-marker-7d1f"
WRITER = Actor(type="api_key", id="key_seeded")
ORIGIN = Origin(ip="198.51.100.7", user_agent="seeder/1.0")


def seed_old(server: Server, app_id: str, count: int, days_ago: float) -> None:
    """Append ``count`` entries stamped ``days_ago`` days back (a fresh app: times never fall)."""
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    pending = [
        prepare(
            app_id, new_entry_id(),
            EventWrite(action="doc.view", target_type="user", target_id=f"{MARKER}-{i}",
                       metadata={"note": MARKER}),
            WRITER, ORIGIN, 10_240,
        )
        for i in range(count)
    ]  # fmt: skip
    with server.store() as store, store.append_tx() as tx:
        append_groups(tx, app_id, [pending], moment)


def entries_of(server: Server, tenant: Tenant) -> list[dict[str, Any]]:
    """Every entry and stub of the app, in seq order (read with a key: not recorded)."""
    with server.client(tenant.key) as reader:
        return [orjson.loads(line) for line in export_lines(reader, tenant.app_id, {})]


def iso(days_ago: float) -> str:
    """An RFC 3339 time ``days_ago`` days back."""
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def test_purge_before_erases_old_content_logs_it_and_every_proof_stays_valid(
    server: Server, tenant: Tenant
) -> None:
    seed_old(server, tenant.app_id, 30, days_ago=10)
    with server.client(server.new_key(tenant.app_id, "events:write").key) as writer:
        write_numbered(writer, tenant.app_id, 0, 5)
    before = {e["seq"]: e for e in entries_of(server, tenant)}
    dry = server.cli("purge", "--app", tenant.app_id, "--before", iso(5), "--dry-run", "--json")
    assert json.loads(dry.stdout)[0]["erased"] == 30
    assert len(entries_of(server, tenant)) == 35  # a dry run changes nothing

    done = server.cli("purge", "--app", tenant.app_id, "--before", iso(5))
    assert "erased the content of 30 entries" in done.stdout
    after = entries_of(server, tenant)
    assert [e["seq"] for e in after] == list(range(36))
    for seq in range(30):
        stub = after[seq]
        assert stub == {
            "seq": seq, "id": before[seq]["id"], "time": before[seq]["time"], "erased": True,
            "erased_by": "retention", "leaf_hash": before[seq]["leaf_hash"],
        }  # fmt: skip
    assert after[30:35] == [before[seq] for seq in range(30, 35)]
    purge = after[35]
    check_entry(purge)
    assert purge["action"] == "retention.purge"
    assert purge["kind"] == "admin"
    assert purge["actor"]["type"] == "operator"
    assert purge["metadata"]["from_seq"] == 0
    assert purge["metadata"]["to_seq"] == 29
    assert purge["metadata"]["erased"] == 30
    # The database's own check of the whole log: stubs accounted for by the purge entry.
    verified = server.cli("verify", "--app", tenant.app_id)
    assert "OK: 36 entries (30 erased)" in verified.stdout
    assert "each accounted for by the retention.purge" in verified.stdout
    # Purging again finds nothing: the horizon has risen past the old entries.
    again = server.cli("purge", "--app", tenant.app_id, "--before", iso(5), "--json")
    assert json.loads(again.stdout)[0]["erased"] == 0
    assert len(entries_of(server, tenant)) == 36


def test_reads_return_stubs_and_filters_on_erased_content_match_nothing(
    server: Server, tenant: Tenant
) -> None:
    seed_old(server, tenant.app_id, 10, days_ago=3)
    old_id = entries_of(server, tenant)[4]["id"]
    server.cli("purge", "--app", tenant.app_id, "--before", iso(1))
    with server.client(tenant.key) as reader:
        base = f"/v1/apps/{tenant.app_id}"
        stub = expect_status(reader.get(f"{base}/events/{old_id}")).json()
        assert stub["erased"] is True
        assert stub["seq"] == 4
        for params in ({"target_id": f"{MARKER}-4"}, {"action": "doc.view"},
                       {"actor": WRITER.id}, {"kind": "user"}):  # fmt: skip
            assert expect_status(reader.get(f"{base}/events", params=params)).json()["data"] == []
        page = expect_status(reader.get(f"{base}/events", params={"limit": 5})).json()["data"]
        assert [e["seq"] for e in page] == [10, 9, 8, 7, 6]  # newest first, stubs included
        assert all(e.get("erased") for e in page[1:])
        # Its inclusion proof still holds against a signed checkpoint.
        wait_for_checkpoint(reader, tenant.app_id, 11, checkpoint_verifier(server))
        proven = expect_status(reader.get(f"{base}/events/{old_id}", params={"proof": "true"}))
        assert proven.json()["entry"] == stub
        csv = expect_status(reader.get(f"{base}/export", params={"format": "csv"})).text
        assert MARKER not in csv
        assert csv.splitlines()[1].endswith(",retention")


def test_an_export_with_stubs_verifies_offline_and_an_unaccounted_stub_is_named(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    seed_old(server, tenant.app_id, 12, days_ago=3)
    with server.client(server.new_key(tenant.app_id, "events:write").key) as writer:
        write_numbered(writer, tenant.app_id, 0, 3)
    server.cli("purge", "--app", tenant.app_id, "--before", iso(1))
    with server.client(tenant.key) as reader:
        _, note = wait_for_checkpoint(reader, tenant.app_id, 16, checkpoint_verifier(server))
        lines = export_lines(reader, tenant.app_id, {})
    (tmp_path / "cp.txt").write_text(note)
    (tmp_path / "key.txt").write_text(checkpoint_key(server) + "\n")

    def verify(entries: list[bytes]) -> Any:
        path = tmp_path / "entries.ndjson"
        path.write_bytes(b"".join(line + b"\n" for line in entries))
        return server.cli(
            "verify", "--entries", str(path), "--checkpoint", str(tmp_path / "cp.txt"),
            "--key", str(tmp_path / "key.txt"), check=False,
        )  # fmt: skip

    clean = verify(lines)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "(12 erased)" in clean.stdout
    # A live entry replaced by its stub, as if its row had been deleted around Trailkeep: the
    # tree still holds, but no record accounts for the stub.
    live = orjson.loads(lines[13])
    forged = {k: live[k] for k in ("seq", "id", "time", "leaf_hash")} | {"erased": True}
    tampered = verify([*lines[:13], orjson.dumps(forged), *lines[14:]])
    assert tampered.returncode != 0
    assert "seq 13" in tampered.stdout + tampered.stderr
    assert "accounts for it" in tampered.stdout + tampered.stderr


def test_a_large_backlog_is_purged_in_chunks_each_logged_while_writes_go_on(
    server: Server, tenant: Tenant
) -> None:
    seed_old(server, tenant.app_id, 95, days_ago=4)
    with server.store() as store:
        retention = Retention(store, chunk=20, hold=None)  # chunks of 20, whatever they take
        with server.client(server.new_key(tenant.app_id, "events:write").key) as writer:
            write_numbered(writer, tenant.app_id, 0, 2)
            report = retention.purge(
                tenant.app_id, datetime.now(UTC) - timedelta(days=1),
                Actor(type="system", id="retention"), Origin(None, None),
            )  # fmt: skip
            write_numbered(writer, tenant.app_id, 2, 2)
    assert report.erased == 95
    assert report.chunks == 5
    purges = [e for e in entries_of(server, tenant) if e.get("action") == "retention.purge"]
    ranges = [(p["metadata"]["from_seq"], p["metadata"]["to_seq"]) for p in purges]
    assert ranges == [(0, 19), (20, 39), (40, 59), (60, 79), (80, 94)]
    assert all(p["actor"] == {"type": "system", "id": "retention"} for p in purges)
    # The last writes went through the server, whose signer covers the purge entries with them.
    with server.client(tenant.key) as reader:
        size = len(entries_of(server, tenant))
        wait_for_checkpoint(reader, tenant.app_id, size, checkpoint_verifier(server), within=10)
    verified = server.cli("verify", "--app", tenant.app_id)
    assert "(95 erased)" in verified.stdout


def test_governance_records_survive_retention(server: Server, tenant: Tenant) -> None:
    seed_old(server, tenant.app_id, 3, days_ago=3)
    server.cli("purge", "--app", tenant.app_id, "--before", iso(2))
    # Everything is "old" now, the first purge's own record included: it is kept.
    server.cli("purge", "--app", tenant.app_id, "--before", iso(-1))
    entries = entries_of(server, tenant)
    assert [e.get("action") for e in entries] == [None, None, None, "retention.purge"]
    server.cli("verify", "--app", tenant.app_id)


def test_callers_cannot_write_the_logs_own_records(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as writer:
        for action in ("retention.purge", "erasure.done", "audit.read", "key.create"):
            response = writer.post(f"/v1/apps/{tenant.app_id}/events", json={"action": action})
            assert response.status_code == 400, response.text
            assert "reserved" in response.json()["detail"]


def test_purge_needs_a_cutoff_or_a_retention(server: Server, tenant: Tenant) -> None:
    forever = server.cli("purge", "--app", tenant.app_id, check=False)
    assert forever.returncode == 1
    assert "forever" in forever.stderr
    loose = server.cli("purge", "--before", iso(1), check=False)
    assert loose.returncode == 1
    assert "--app" in loose.stderr
    bad = server.cli("purge", "--app", tenant.app_id, "--before", "yesterday", check=False)
    assert bad.returncode == 1
    assert "--before" in bad.stderr
    nobody = server.cli("purge", "--app", "app_nosuchapp", "--before", iso(1), check=False)
    assert nobody.returncode == 1


def test_the_scheduler_purges_apps_with_a_retention(fresh_server: Server) -> None:
    fresh_server.env["TRAILKEEP_PURGE_INTERVAL"] = "0.5"
    tenant = fresh_server.new_app("retained")
    seed_old(fresh_server, tenant.app_id, 8, days_ago=3)
    fresh_server.cli("apps", "update", tenant.app_id, "--retention-days", "1")
    fresh_server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = entries_of(fresh_server, tenant)
        if any(e.get("action") == "retention.purge" for e in entries):
            break
        time.sleep(0.2)
    purge = entries[-1]
    assert purge["action"] == "retention.purge"
    assert purge["actor"] == {"type": "system", "id": "retention"}
    assert sum(1 for e in entries if e.get("erased")) == 8
    # The settings change by the operator came first, and was kept.
    assert entries[8]["action"] == "app.settings.change"


def test_erased_content_is_gone_from_the_sqlite_files(sqlite_server: Server) -> None:
    tenant = sqlite_server.new_app("gone")
    seed_old(sqlite_server, tenant.app_id, 50, days_ago=3)
    sqlite_server.start()
    files = [sqlite_server.sqlite_file, Path(f"{sqlite_server.sqlite_file}-wal")]
    assert any(MARKER.encode() in f.read_bytes() for f in files if f.exists())
    sqlite_server.cli("purge", "--app", tenant.app_id, "--before", iso(1))
    for path in files:
        if path.exists():
            assert MARKER.encode() not in path.read_bytes(), path


def test_a_purge_racing_an_erasure_leaves_every_stub_accounted_for(
    server: Server, tenant: Tenant
) -> None:
    seed_old(server, tenant.app_id, 3_000, days_ago=3)
    owner = server.session(tenant, "ada", role="owner")
    answers: list[int] = []

    def erase() -> None:
        with server.client(owner) as client:
            for i in range(0, 40, 4):
                subject = {"target": {"type": "user", "id": f"{MARKER}-{i}"}}
                response = client.post(
                    f"/v1/apps/{tenant.app_id}/erasures", json={"subject": subject, "reason": "r"}
                )
                answers.append(response.status_code)

    racer = threading.Thread(target=erase)
    racer.start()
    server.cli("purge", "--app", tenant.app_id, "--before", iso(1))
    racer.join()
    assert answers == [202] * 10  # whichever came first, the other found nothing left to do
    entries = entries_of(server, tenant)
    assert sum(1 for e in entries if e.get("erased")) == 3_000
    assert {e["erased_by"] for e in entries if e.get("erased")} <= {"retention"} | {
        e["target"]["id"] for e in entries if e.get("action") == "erasure.done"
    }
    server.cli("verify", "--app", tenant.app_id)


def test_a_purge_killed_midway_resumes_and_leaves_whole_chunks(
    server: Server, tenant: Tenant
) -> None:
    seed_old(server, tenant.app_id, 30_000, days_ago=3)
    with server.client(tenant.key) as client:
        write_numbered(client, tenant.app_id, 0, 1)  # the server signs a checkpoint of the log
        wait_for_checkpoint(client, tenant.app_id, 30_001, checkpoint_verifier(server), within=10)
    purge = subprocess.Popen(
        [str(BIN), "purge", "--app", tenant.app_id, "--before", iso(1)],
        env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and purge.poll() is None:
            done = server.query(
                "SELECT count(*) FROM erased_entries WHERE app_id = :app", app=tenant.app_id
            )[0][0]
            if done:
                break
            time.sleep(0.01)
    finally:
        purge.kill()
        purge.wait()
    entries = entries_of(server, tenant)
    recorded = [e["metadata"]["erased"] for e in entries if e.get("action") == "retention.purge"]
    # Whole chunks, each committed with the retention.purge entry that accounts for it.
    assert sum(1 for e in entries if e.get("erased")) == sum(recorded)
    server.cli("verify", "--app", tenant.app_id)
    server.cli("purge", "--app", tenant.app_id, "--before", iso(1))
    assert sum(1 for e in entries_of(server, tenant) if e.get("erased")) == 30_000
    server.cli("verify", "--app", tenant.app_id)
