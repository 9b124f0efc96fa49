"""PostgreSQL in production (issue 5): partitions, append-only guards, the restricted role,
migrations on several nodes at once, and text PostgreSQL cannot store as is.

The rest of the integration suite runs on PostgreSQL too (the `server` fixture's second
param); these tests look at what only PostgreSQL has, as its schema owner or as the service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from tests.integration.corpus import parse_time
from tests.integration.http_api import (
    checkpoint_verifier,
    events_url,
    expect_status,
    wait_for_checkpoint,
    write_one,
)
from tests.pg import PostgresCluster, RedisServer, postgres_server
from tests.servers import Server, Tenant, run_cli
from trailkeep.server.store import Store
from trailkeep.server.store.engine import MIGRATIONS

PARTITION_MONTHS_AHEAD = 5


def month_after(moment: datetime, months: int) -> datetime:
    """The first instant (UTC) of the month ``months`` after ``moment``'s."""
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_of(moment: datetime) -> str:
    """The name of the monthly partition that holds ``moment``."""
    return f"events_{moment.astimezone(UTC):%Y_%m}"


def pg_url(url: str) -> str:
    """A libpq URL from the SQLAlchemy-style one the servers take."""
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="module")
def pg(
    pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A PostgreSQL server of this module's own, keeping five months of partitions ahead."""
    with postgres_server(pg_cluster, redis_server, tmp_path_factory.mktemp("pg")) as srv:
        srv.env["TRAILKEEP_PARTITION_MONTHS_AHEAD"] = str(PARTITION_MONTHS_AHEAD)
        yield srv.start()


@pytest.fixture(scope="module")
def written(pg: Server) -> tuple[Tenant, list[dict[str, Any]]]:
    """An app with 12 entries and a signed checkpoint over them."""
    tenant = pg.new_app("partitioned")
    with pg.client(tenant.key) as client:
        entries = [
            write_one(client, tenant.app_id, {"action": f"pg.a{i % 3}", "target_type": "doc",
                                          "target_id": f"d{i}"})
            for i in range(12)
        ]  # fmt: skip
        wait_for_checkpoint(client, tenant.app_id, 12, checkpoint_verifier(pg))
    return tenant, entries


def owner(srv: Server) -> psycopg.Connection[Any]:
    """A connection as the schema owner (a superuser here)."""
    assert srv.owner_url
    return psycopg.connect(pg_url(srv.owner_url))


# ---------------------------------------------------------------------------------- partitions


HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration
INDEXES = {
    ("app_id", "seq", "time"), ("app_id", "id"), ("app_id", "action", "seq"),
    ("app_id", "actor_id", "seq"), ("app_id", "target_type", "seq"),
    ("app_id", "target_id", "seq"), ("app_id", "kind", "seq"), ("app_id", "time", "seq"),
}  # fmt: skip

COLUMNS_OF_INDEXES = """
    SELECT array_agg(a.attname::text ORDER BY k.n)
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid
"""


@pytest.mark.postgres
def test_entries_are_in_monthly_partitions_each_with_the_read_indexes(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]]
) -> None:
    tenant, entries = written
    first = parse_time(entries[0]["time"])
    with owner(pg) as db:
        parts = {
            row[0]
            for row in db.execute(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'events'::regclass"
            )
        }
        # Made ahead on start: this month and the next five (the server may have started in
        # the month before the first entry, hence the range of one more on either side).
        wanted = {partition_of(month_after(first, m)) for m in range(PARTITION_MONTHS_AHEAD)}
        allowed = {partition_of(month_after(first, m)) for m in range(-1, 7)} | {"events_default"}
        assert wanted | {"events_default"} <= parts <= allowed
        homes = dict(
            db.execute(
                "SELECT tableoid::regclass::text, count(*) FROM events WHERE app_id = %s "
                "GROUP BY 1",
                (tenant.app_id,),
            ).fetchall()
        )
        expected: dict[str, int] = {}
        for entry in entries:
            home = partition_of(parse_time(entry["time"]))
            expected[home] = expected.get(home, 0) + 1
        assert homes == expected
        for part in parts:
            columns = {tuple(row[0]) for row in db.execute(COLUMNS_OF_INDEXES, (part,))}
            assert columns == INDEXES, part
        collations = dict(
            db.execute(
                "SELECT column_name::text, collation_name::text FROM information_schema.columns "
                "WHERE table_name = 'events' AND data_type = 'character varying'"
            ).fetchall()
        )
        assert collations == dict.fromkeys(
            ("app_id", "id", "action", "kind", "actor_id", "target_type", "target_id"), "C"
        )


@pytest.mark.postgres
def test_a_time_range_reads_only_its_months(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]]
) -> None:
    tenant, entries = written
    start = month_after(parse_time(entries[0]["time"]), 0)
    with owner(pg) as db:
        row = db.execute(
            "EXPLAIN (FORMAT JSON) SELECT seq FROM events WHERE app_id = %s "
            "AND time >= %s AND time < %s ORDER BY time, seq LIMIT 1",
            (tenant.app_id, start, month_after(start, 1)),
        ).fetchone()
    assert row is not None
    plan = json.dumps(row[0])
    assert partition_of(start) in plan
    assert "events_default" not in plan
    assert partition_of(month_after(start, 1)) not in plan


@pytest.mark.postgres
def test_a_month_with_rows_in_the_default_partition_is_left_alone(
    pg_cluster: PostgresCluster,
) -> None:
    """The default partition is a safety net: a row there is kept and read, never lost."""
    database = pg_cluster.database()
    try:
        store = Store(database.owner_url)
        now = datetime.now(UTC)
        stray = month_after(now, 8) + timedelta(days=3)
        with psycopg.connect(database.owner_url) as db:
            db.execute(
                "INSERT INTO events (app_id, seq, id, time, action, kind, actor_id, entry) "
                "VALUES ('app_stray', 0, 'evt_stray', %s, 'a.b', 'user', 'u', '\\x7b7d')",
                (stray,),
            )
        assert store.ensure_partitions(10) == 7 - 1  # months 4..10, less the stray's
        with psycopg.connect(database.owner_url) as db:
            home = db.execute("SELECT tableoid::regclass::text FROM events").fetchall()
            made = db.execute("SELECT to_regclass(%s)", (partition_of(stray),)).fetchone()
            beyond = db.execute("SELECT to_regclass(%s)", (partition_of(month_after(now, 9)),))
            assert beyond.fetchone() != (None,)
        assert home == [("events_default",)]
        assert made == (None,)
        assert store.entries("app_stray", 0, 1) == [b"{}"]
        assert store.ensure_partitions(10) == 0
        store.close()
    finally:
        pg_cluster.drop(database.name)


# ----------------------------------------------------------------------- append-only, enforced


def _counts(db: psycopg.Connection[Any], app_id: str) -> list[tuple[Any, ...] | None]:
    tables = ("events", "tree_tiles", "checkpoints", "log_heads")
    return [
        db.execute(f"SELECT count(*) FROM {t} WHERE app_id = %s", (app_id,)).fetchone()
        for t in tables
    ]


REFUSED_TO_OWNER = [
    "UPDATE events SET action = 'forged' WHERE app_id = %(app)s",
    "UPDATE events SET entry = '\\x00'::bytea WHERE app_id = %(app)s AND seq = 0",
    "DELETE FROM events WHERE app_id = %(app)s",
    "DELETE FROM {part} WHERE app_id = %(app)s AND seq = 11",
    "UPDATE {part} SET time = time - interval '1 year' WHERE app_id = %(app)s",
    "TRUNCATE events",
    "TRUNCATE {part}",
    "TRUNCATE events_default",
    "UPDATE tree_tiles SET hashes = overlay(hashes PLACING '\\x00'::bytea FROM 1) "
    "WHERE app_id = %(app)s",
    # 12 entries: one partial tile, which no wider tile extends (see test_tree_tiles.py).
    "DELETE FROM tree_tiles WHERE app_id = %(app)s",
    "TRUNCATE tree_tiles",
    "UPDATE checkpoints SET note = 'forged' WHERE app_id = %(app)s",
    "DELETE FROM checkpoints WHERE app_id = %(app)s",
    "TRUNCATE checkpoints",
    "UPDATE log_heads SET size = 0 WHERE app_id = %(app)s",
    "DELETE FROM log_heads WHERE app_id = %(app)s",
    "UPDATE apps SET purge_horizon = -1 WHERE id = %(app)s",
]


@pytest.mark.postgres
@pytest.mark.parametrize("statement", REFUSED_TO_OWNER)
def test_triggers_refuse_changes_even_to_the_owner(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]], statement: str
) -> None:
    tenant, entries = written
    part = partition_of(parse_time(entries[-1]["time"]))
    with owner(pg) as db:
        before = _counts(db, tenant.app_id)
        assert before[0] == (12,)
        with pytest.raises(psycopg.errors.RaiseException, match="trailkeep"):
            db.execute(statement.format(part=part).encode(), {"app": tenant.app_id})
        db.rollback()
        assert _counts(db, tenant.app_id) == before


@pytest.mark.postgres
def test_an_entry_goes_only_with_its_stub_and_retention_only_below_the_horizon(pg: Server) -> None:
    """The only DELETE the triggers let through: an entry whose stub is recorded first, and for
    retention only below the raised horizon (the way retention and erasure erase content)."""
    tenant = pg.new_app("horizon")
    with pg.client(tenant.key) as client:
        for i in range(3):
            write_one(client, tenant.app_id, {"action": f"h.e{i}"})
    stub = (
        "INSERT INTO erased_entries (app_id, seq, id, time, leaf_hash, erased_by)"
        " SELECT app_id, seq, id, time, '\\x00'::bytea, %s FROM events"
        " WHERE app_id = %s AND seq = %s"
    )
    with owner(pg) as db:
        db.execute("UPDATE apps SET purge_horizon = 2 WHERE id = %s", (tenant.app_id,))
        db.commit()
        with pytest.raises(psycopg.errors.RaiseException, match="stub"):
            db.execute("DELETE FROM events WHERE app_id = %s AND seq = 0", (tenant.app_id,))
        db.rollback()
        db.execute(stub, ("retention", tenant.app_id, 0))
        gone = db.execute("DELETE FROM events WHERE app_id = %s AND seq = 0", (tenant.app_id,))
        assert gone.rowcount == 1
        db.commit()
        db.execute(stub, ("retention", tenant.app_id, 2))
        with pytest.raises(psycopg.errors.RaiseException, match="stub"):
            db.execute("DELETE FROM events WHERE app_id = %s AND seq = 2", (tenant.app_id,))
        db.rollback()
        # An erasure's stub names its request, and lets an entry above the horizon go.
        db.execute(stub, ("era_test", tenant.app_id, 2))
        gone = db.execute("DELETE FROM events WHERE app_id = %s AND seq = 2", (tenant.app_id,))
        assert gone.rowcount == 1


@pytest.mark.postgres
def test_the_service_role_may_delete_entries_only_as_the_trigger_allows(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]]
) -> None:
    tenant, _ = written
    with psycopg.connect(pg_url(pg.env["TRAILKEEP_DATABASE_URL"])) as db:
        with pytest.raises(psycopg.errors.RaiseException, match="stub"):
            db.execute("DELETE FROM events WHERE app_id = %s", (tenant.app_id,))
        db.rollback()
        count = "SELECT count(*) FROM events WHERE app_id = %s"
        assert db.execute(count, (tenant.app_id,)).fetchone() == (12,)


SERVICE_MAY_NOT = [
    "UPDATE events SET action = 'forged' WHERE app_id = %(app)s",
    "TRUNCATE events",
    "UPDATE tree_tiles SET hashes = overlay(hashes PLACING '\\x00'::bytea FROM 1) "
    "WHERE app_id = %(app)s",
    "TRUNCATE tree_tiles",
    "UPDATE checkpoints SET note = 'forged' WHERE app_id = %(app)s",
    "DELETE FROM checkpoints WHERE app_id = %(app)s",
    # The sealed session secrets are the service's to rotate (0014); an app's identity is not.
    "UPDATE apps SET id = 'app_stolen' WHERE id = %(app)s",
    "UPDATE api_keys SET secret_hash = '\\x00'::bytea WHERE app_id = %(app)s",
    "DELETE FROM apps WHERE id = %(app)s",
    "DROP TABLE events",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "CREATE TABLE sneaky (x int)",
]


@pytest.mark.postgres
@pytest.mark.parametrize("statement", SERVICE_MAY_NOT)
def test_the_service_role_has_no_right_to_change_entries(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]], statement: str
) -> None:
    tenant, _ = written
    with psycopg.connect(pg_url(pg.env["TRAILKEEP_DATABASE_URL"])) as db:
        assert db.execute("SELECT current_user").fetchone() == ("trailkeep_test_app",)
        count = "SELECT count(*) FROM events WHERE app_id = %s"
        assert db.execute(count, (tenant.app_id,)).fetchone() == (12,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(statement.encode(), {"app": tenant.app_id})
        db.rollback()
        # What it does need, it has.
        assert db.execute("SELECT trailkeep_ensure_partitions(1)").fetchone() == (0,)
        assert db.execute(count, (tenant.app_id,)).fetchone() == (12,)


@pytest.mark.postgres
def test_the_service_role_may_delete_tiles_but_the_trigger_keeps_a_logs_own(
    pg: Server, written: tuple[Tenant, list[dict[str, Any]]]
) -> None:
    """The append replaces a partial tile by a wider one, so the service has DELETE on
    tree_tiles; a tile that no wider one extends is still refused (test_tree_tiles.py has the
    deletes that are allowed)."""
    tenant, _ = written
    tiles = "SELECT level, idx, width FROM tree_tiles WHERE app_id = %s"
    with psycopg.connect(pg_url(pg.env["TRAILKEEP_DATABASE_URL"])) as db:
        assert db.execute(tiles, (tenant.app_id,)).fetchall() == [(0, 0, 12)]
        with pytest.raises(psycopg.errors.RaiseException, match="a wider one extends it"):
            db.execute("DELETE FROM tree_tiles WHERE app_id = %s", (tenant.app_id,))
        db.rollback()
        assert db.execute(tiles, (tenant.app_id,)).fetchall() == [(0, 0, 12)]


# --------------------------------------------------------------------------------- migrations


@pytest.mark.postgres
def test_nodes_starting_together_on_an_empty_database_migrate_once(
    pg_cluster: PostgresCluster, redis_server: RedisServer, tmp_path: Any
) -> None:
    database = pg_cluster.database(migrated=False)
    env = {"TRAILKEEP_DATABASE_URL": database.owner_url, "TRAILKEEP_REDIS_URL": redis_server.url()}
    nodes = [Server(tmp_path / f"n{i}", env) for i in range(3)]
    failures: list[BaseException] = []

    def start(node: Server) -> None:
        try:
            node.start()
        except BaseException as exc:  # reported below, with the node's log
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert failures == []
        with psycopg.connect(database.owner_url) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        made = json.loads(nodes[0].cli("apps", "create", "together", "--json").stdout)
        with nodes[1].client(made["key"]) as client:
            assert write_one(client, made["app_id"])["seq"] == 0
        with nodes[2].client(made["key"]) as client:
            assert write_one(client, made["app_id"])["seq"] == 1
    finally:
        for node in nodes:
            node.stop()
        pg_cluster.drop(database.name)


@pytest.mark.postgres
def test_the_service_role_cannot_migrate_and_says_what_to_do(pg_cluster: PostgresCluster) -> None:
    database = pg_cluster.database(migrated=False)
    try:
        refused = run_cli(
            "apps", "list", env={"TRAILKEEP_DATABASE_URL": database.service_url}, check=False
        )
        assert refused.returncode == 1
        assert "run `trailkeep migrate`" in " ".join(refused.stderr.split())
        assert "Traceback" not in refused.stderr
        migrated = run_cli(
            "apps", "list", "--json", env={"TRAILKEEP_DATABASE_URL": database.owner_url}
        )
        assert json.loads(migrated.stdout) == []
        again = run_cli(
            "apps", "list", "--json", env={"TRAILKEEP_DATABASE_URL": database.service_url}
        )
        assert json.loads(again.stdout) == []
    finally:
        pg_cluster.drop(database.name)


# ----------------------------------------------------------------------- text with NUL in it


def test_values_with_nul_are_stored_and_found_exactly(server: Server, tenant: Tenant) -> None:
    """PostgreSQL text cannot hold U+0000; such values still round-trip, filter and group."""
    kinds = {"t\x00": 3, "t\x01": 2, "t\x01\x01": 1}
    ids = ["a\x00b", "a\x01\x01b", "a\x01b", "a\x02b"]
    session = server.session(tenant, "u\x00\x01", role="owner")
    written: list[dict[str, Any]] = []
    with server.client(session) as client:
        i = 0
        for kind, count in kinds.items():
            for _ in range(count):
                body = {"action": "nul.w", "target_type": kind, "target_id": ids[i % len(ids)]}
                written.append(write_one(client, tenant.app_id, body))
                i += 1
    with server.client(tenant.key) as reader:
        for target_id in ids:
            got = expect_status(
                reader.get(events_url(tenant.app_id), params={"target_id": target_id})
            )
            seqs = sorted(e["seq"] for e in got.json()["data"])
            assert seqs == [e["seq"] for e in written if e["target"]["id"] == target_id]
        by_actor = expect_status(
            reader.get(events_url(tenant.app_id), params={"actor": "u\x00\x01"})
        )
        assert len(by_actor.json()["data"]) == 6
        assert written[0]["actor"]["id"] == "u\x00\x01"
        stats = expect_status(
            reader.get(events_url(tenant.app_id, "stats"), params={"group_by": "target_type"})
        ).json()["groups"]
        assert [(g["key"], g["count"]) for g in stats] == list(kinds.items())
        actors = expect_status(
            reader.get(events_url(tenant.app_id, "stats"), params={"group_by": "actor"})
        ).json()["groups"]
        assert [(g["key"], g["count"]) for g in actors] == [("u\x00\x01", 6)]


# ----------------------------------------------------------------- idempotency keys are swept


def test_expired_idempotency_keys_are_swept(server: Server) -> None:
    # On the shared server: the sweep may take other tests' keys too, and no test keeps one.
    srv = server
    tenant = srv.new_app("sweep")
    with srv.client(tenant.key) as client:
        first = write_one(client, tenant.app_id, {"action": "s.once"}, **{"Idempotency-Key": "k-1"})
        replay = client.post(
            events_url(tenant.app_id), json={"action": "s.once"}, headers={"Idempotency-Key": "k-1"}
        )
        assert expect_status(replay, 201).json() == first
        assert replay.headers["Idempotent-Replayed"] == "true"
        store = Store(srv.database_url)
        try:
            assert store.sweep_idempotency(timedelta(hours=1)) == 0
            assert store.sweep_idempotency(timedelta(0), chunk=1) >= 1
        finally:
            store.close()
        again = write_one(client, tenant.app_id, {"action": "s.once"}, **{"Idempotency-Key": "k-1"})
        assert again["seq"] == first["seq"] + 1
