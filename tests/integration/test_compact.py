"""Erased means gone on PostgreSQL too: `trailkeep compact` (DESIGN §5; docs/governance.md).

Markers are written into entries (an actor id, a target id, metadata large enough to be stored
out of line in the partition's TOAST table), erased, and looked for in the files of the
cluster's data directory (``base/<database oid>/``; the WAL is not looked at, see the docs).
A DELETE and a plain VACUUM leave every marker in the partition's heap, its TOAST table and its
indexes; `trailkeep compact`, as the schema owner, leaves none anywhere in the database.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.http_api import expect_status, export_lines
from tests.pg import PostgresCluster, RedisServer, postgres_server
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)

RUN = uuid.uuid4().hex[:12]
ACTOR = f"zqactor{RUN}"  # an actor erased by actor id
TARGET = f"zqtarget{RUN}"  # a target erased by target
TOASTED = f"zqtoast{RUN}"  # only in the actor's large metadata: only in the TOAST table


@pytest.fixture
def pg(pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path: Path) -> Iterator[Server]:
    """A PostgreSQL server on a database of its own (dropped afterwards)."""
    with postgres_server(pg_cluster, redis_server, tmp_path / "data") as srv:
        yield srv.start()


def owner(srv: Server) -> psycopg.Connection[Any]:
    """An autocommit connection as the schema owner (VACUUM runs outside a transaction)."""
    assert srv.owner_url
    return psycopg.connect(srv.owner_url, autocommit=True)


def incompressible_metadata(i: int) -> dict[str, Any]:
    """About 7 KB that pglz cannot shrink by a quarter: the entry goes to the TOAST table."""
    parts = [TOASTED + base64.b64encode(os.urandom(300)).decode() for _ in range(17)]
    return {"n": i, "blob": "".join(parts)}


def seed(srv: Server, tenant: Tenant) -> None:
    """The actor's entries (large and small) and entries on the target, among others' entries,
    and an auditor's read whose recorded filter names the actor.

    Others' large entries between them keep the TOAST table's pages in use after the erasure,
    as a log's traffic would: VACUUM cuts off only the pages at the end of a file that it
    empties entirely."""
    events = f"/v1/apps/{tenant.app_id}/events"
    with (
        srv.client(srv.session(tenant, ACTOR)) as subject,
        srv.client(srv.session(tenant, "someone_else")) as other,
        srv.client(tenant.key) as key,
    ):
        for i in range(30):
            big = {"action": "doc.edit", "metadata": incompressible_metadata(i)}
            expect_status(subject.post(events, json=big), 201)
            expect_status(subject.post(events, json={"action": "doc.view"}), 201)
            noise = base64.b64encode(os.urandom(3000)).decode()
            expect_status(
                other.post(events, json={"action": "doc.edit", "metadata": {"b": noise}}), 201
            )
            on_target = {"action": "user.suspend", "target_type": "user", "target_id": TARGET}
            expect_status(key.post(events, json=on_target), 201)
            expect_status(other.post(events, json={"action": "doc.view"}), 201)
    with srv.client(srv.session(tenant, "auditor_1", role="auditor")) as auditor:
        expect_status(auditor.get(events, params={"actor": ACTOR}))


def holders(
    cluster: PostgresCluster, db: psycopg.Connection[Any], needles: dict[str, bytes]
) -> dict[str, set[str]]:
    """Which relations' files in the database's directory hold which needles, after a CHECKPOINT
    (so that what shared buffers hold has reached the files)."""
    db.execute("CHECKPOINT")
    oid = db.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    assert oid is not None
    found: dict[str, set[str]] = {}
    for path in (cluster.data / "base" / str(oid[0])).iterdir():
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                # <relfilenode>[_fsm|_vm][.segment]: the relation it belongs to, by name.
                node = int(path.name.split("_")[0].split(".")[0])
                rel = db.execute("SELECT pg_filenode_relation(0, %s)::text", (node,)).fetchone()
                found.setdefault(rel[0] if rel and rel[0] else path.name, set()).add(name)
    return found


@pytest.mark.postgres
def test_a_plain_vacuum_leaves_erased_content_and_compact_removes_it(
    pg: Server, pg_cluster: PostgresCluster
) -> None:
    tenant = pg.new_app("gone")
    seed(pg, tenant)
    with owner(pg) as db:
        db.execute("ANALYZE")  # as autovacuum would: pg_statistic samples the columns too
        partition, toast = db.execute(
            "SELECT e.tableoid::regclass::text, c.reltoastrelid::regclass::text FROM events e "
            "JOIN pg_class c ON c.oid = e.tableoid WHERE e.app_id = %s LIMIT 1",
            (tenant.app_id,),
        ).fetchone() or ("", "")
    # The actor by an owner over HTTP; the target by the operator and a second owner, so that
    # the request keeps its sealed subject (read here) until it is approved.
    with pg.client(pg.session(tenant, "ada", role="owner")) as ada:
        subject = {"subject": {"actor_id": ACTOR}, "reason": "GDPR art. 17"}
        expect_status(ada.post(f"/v1/apps/{tenant.app_id}/erasures", json=subject), 202)
    pg.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    era = json.loads(pg.cli("erase", "--app", tenant.app_id, "--target", f"user:{TARGET}",
                            "--reason", "asked", "--json").stdout)  # fmt: skip
    with owner(pg) as db:
        row = db.execute("SELECT subject FROM erasures WHERE id = %s", (era["id"],)).fetchone()
    assert row is not None
    sealed = str(row[0]).encode()
    with pg.client(pg.session(tenant, "grace", role="owner")) as grace:
        approved = grace.post(f"/v1/apps/{tenant.app_id}/erasures/{era['id']}/approve")
        assert expect_status(approved).json()["erased"] == 30
    needles = {"actor": ACTOR.encode(), "target": TARGET.encode(), "toast": TOASTED.encode(),
               "sealed subject": sealed}  # fmt: skip
    with pg.client(tenant.key) as reader:
        exported = b"\n".join(export_lines(reader, tenant.app_id, {}))
    assert not any(needle in exported for needle in needles.values())  # erased for the API

    with owner(pg) as db:
        db.execute("VACUUM events")
        db.execute("VACUUM erasures")
        after_vacuum = holders(pg_cluster, db, needles)
    # What this test exists for: plain VACUUM frees the space but leaves the bytes, in the
    # heap, the TOAST table and the indexes alike, and in the erasure request's old version.
    assert {"actor", "target"} <= after_vacuum.get(partition, set()), after_vacuum
    assert "toast" in after_vacuum.get(toast, set()), after_vacuum
    indexes = {name for name, held in after_vacuum.items() if name.startswith(f"{partition}_")}
    assert any("actor" in after_vacuum[name] for name in indexes), after_vacuum
    assert any("target" in after_vacuum[name] for name in indexes), after_vacuum
    assert "sealed subject" in after_vacuum.get("erasures", set()), after_vacuum

    # The service's role does not own the tables: refused in words, nothing rewritten.
    refused = pg.cli("compact", "--app", tenant.app_id, check=False)
    assert refused.returncode == 1
    assert "does not own" in refused.stderr, refused.stderr
    planned = pg.cli("compact", "--app", tenant.app_id, "--dry-run", "--json")
    assert [t["table"] for t in json.loads(planned.stdout)] == [
        partition,
        "event_changes",
        "erasures",
    ]
    assert pg.owner_url
    done = json.loads(
        pg.cli("compact", "--app", tenant.app_id, "--json", "--database-url", pg.owner_url).stdout
    )
    # The test's owner is a superuser: pg_statistic, which ANALYZE rewrote, is rewritten too.
    assert [(d["table"], d["skipped"]) for d in done] == [
        (partition, False),
        ("event_changes", False),
        ("erasures", False),
        ("pg_catalog.pg_statistic", False),
    ]
    with owner(pg) as db:
        assert holders(pg_cluster, db, needles) == {}
    # The log is whole: every stub still proves the tree, the rest of the content is intact.
    verified = pg.cli("verify", "--app", tenant.app_id)
    assert "(91 erased)" in verified.stdout, verified.stdout


@pytest.mark.postgres
def test_compact_skips_a_table_it_cannot_lock_in_time(
    pg: Server, pg_cluster: PostgresCluster
) -> None:
    tenant = pg.new_app("busy")
    with pg.client(tenant.key) as key:
        body = {"action": "user.suspend", "target_type": "user", "target_id": TARGET}
        expect_status(key.post(f"/v1/apps/{tenant.app_id}/events", json=body), 201)
        expect_status(key.post(f"/v1/apps/{tenant.app_id}/events", json=body), 201)
    pg.cli("erase", "--app", tenant.app_id, "--target", f"user:{TARGET}", "--reason", "asked")
    assert pg.owner_url
    with owner(pg) as reader:
        # A long read holds its lock on the partition: compact gives up on it rather than
        # queue an ACCESS EXCLUSIVE request that every later reader would wait behind.
        reader.autocommit = False
        reader.execute("SELECT count(*) FROM events WHERE app_id = %s", (tenant.app_id,))
        started = time.monotonic()
        busy = pg.cli("compact", "--app", tenant.app_id, "--lock-timeout", "0.5",
                      "--database-url", pg.owner_url, check=False)  # fmt: skip
        assert busy.returncode == 1
        assert "skipped" in busy.stdout, busy.stdout
        assert "run it again" in busy.stderr, busy.stderr
        assert time.monotonic() - started < 30
        # Meanwhile the reader's connection was never cut.
        assert reader.execute("SELECT 1").fetchone() == (1,)
        reader.rollback()
    # Once nobody holds it, the database's owner, not a superuser, rewrites it.
    role = f"tk_owner_{uuid.uuid4().hex[:8]}"
    with owner(pg) as db:
        name = db.execute("SELECT current_database()").fetchone()
        assert name is not None
        db.execute(f"CREATE ROLE {role} LOGIN IN ROLE trailkeep_service")
        db.execute(f"ALTER DATABASE {name[0]} OWNER TO {role}")
        db.execute("ANALYZE events")  # statistics of the whole table, which compact renews
    again = pg.cli("compact", "--app", tenant.app_id, "--database-url",
                   pg_cluster.url(name[0], user=role))  # fmt: skip
    assert "skipped" not in again.stdout, again.stdout
    assert "rewritten" in again.stdout, again.stdout


@pytest.mark.postgres
def test_appends_go_on_while_another_partition_is_compacted(pg: Server) -> None:
    """VACUUM (FULL) locks one partition: appends to this month's are not held up by a
    rewrite of an older month's."""
    tenant = pg.new_app("months")
    assert pg.owner_url
    with owner(pg) as db:
        partition = db.execute(
            "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass "
            "AND c.relname <> 'events_default' ORDER BY c.relname DESC LIMIT 1"
        ).fetchone()
        assert partition is not None
        # The last month made ahead holds nothing yet; lock it as VACUUM (FULL) would.
        db.autocommit = False
        db.execute(f"LOCK TABLE {partition[0]} IN ACCESS EXCLUSIVE MODE")
        times: list[float] = []

        def write() -> None:
            with pg.client(tenant.key) as key:
                for _ in range(20):
                    started = time.monotonic()
                    expect_status(
                        key.post(f"/v1/apps/{tenant.app_id}/events", json={"action": "a.b"}), 201
                    )
                    times.append(time.monotonic() - started)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(60)
        db.rollback()
    assert len(times) == 20
    assert max(times) < 5, times


@pytest.mark.postgres
def test_compact_after_a_purge(pg: Server, pg_cluster: PostgresCluster) -> None:
    tenant = pg.new_app("purged")
    seed(pg, tenant)
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    time.sleep(1.5)  # every entry above, and only those, is older than `later`
    pg.cli("purge", "--app", tenant.app_id, "--before", later)
    needles = {"actor": ACTOR.encode(), "target": TARGET.encode(), "toast": TOASTED.encode()}
    with owner(pg) as db:
        db.execute("VACUUM events")
        after_vacuum = holders(pg_cluster, db, needles)
    # Every old entry went, so the TOAST table's pages all emptied and VACUUM cut them off its
    # file; the partition and its indexes keep the purge's own entries at their end, and with
    # them the erased rows' bytes on the pages before.
    assert {"actor", "target"} <= {n for held in after_vacuum.values() for n in held}
    assert pg.owner_url
    pg.cli("compact", "--app", tenant.app_id, "--database-url", pg.owner_url)
    with owner(pg) as db:
        assert holders(pg_cluster, db, needles) == {}


def test_compact_on_sqlite_has_nothing_to_do(sqlite_server: Server) -> None:
    tenant = sqlite_server.new_app("embedded")
    said = sqlite_server.cli("compact", "--app", tenant.app_id)
    assert "nothing to compact" in said.stdout, said.stdout


@pytest.mark.postgres
def test_compact_names_an_unknown_app(pg: Server) -> None:
    assert pg.owner_url
    unknown = pg.cli("compact", "--app", "app_nosuchapp", "--database-url", pg.owner_url,
                     check=False)  # fmt: skip
    assert unknown.returncode == 1
    assert "no app 'app_nosuchapp'" in unknown.stderr, unknown.stderr
