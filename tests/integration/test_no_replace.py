"""No statement rewrites a row of the log's tables: REPLACE and upserts, table by table.

SQLite's ``INSERT OR REPLACE``, ``REPLACE INTO`` and ``UPDATE OR REPLACE`` delete the row in the
way of a uniqueness conflict without firing its delete trigger; an upsert's ``DO UPDATE`` runs
an UPDATE. Each is tried on every protected table of a real log (on SQLite with every right; on
PostgreSQL as the service role the server runs as), and each must fail and change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from bench import datagen
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from tests.pg import PostgresCluster
from tests.signers import new_secret_box
from trailkeep.server import provision
from trailkeep.server.store import CheckpointRecord, Store

pytestmark = pytest.mark.timeout(180)

# Per table: how to find one existing row, the column an attacker would change, and to what.
ROWS = {
    "events": ("app_id = :app AND seq = 7", "entry", "x'7b7d'"),
    "tree_tiles": ("app_id = :app AND level = 0 AND idx = 0", "hashes", "x'00'"),
    "checkpoints": ("app_id = :app AND size = 300", "note", "'forged'"),
    "log_heads": ("app_id = :app", "size", "1"),
    "apps": ("id = :app", "purge_horizon", "0"),
    "api_keys": ("id = :key", "revoked_at", "NULL"),
    "erased_entries": ("app_id = :app AND seq = 2", "erased_by", "'era_forged'"),
}
# A change of key that would make another row give way under UPDATE OR REPLACE.
KEY_CHANGES = {
    "events": "SET seq = 8 WHERE app_id = :app AND seq = 7",
    "tree_tiles": "SET idx = 1 WHERE app_id = :app AND level = 0 AND idx = 0",
    "checkpoints": "SET app_id = :other WHERE app_id = :app AND size = 300",
    "log_heads": "SET app_id = :other WHERE app_id = :app",
    "apps": "SET id = :other WHERE id = :app",
    "api_keys": "SET id = :other_key WHERE id = :key",
    "erased_entries": "SET seq = 3 WHERE app_id = :app AND seq = 2",
}
CONFLICT_KEYS = {
    "events": "app_id, seq", "tree_tiles": "app_id, level, idx, width",
    "checkpoints": "app_id, size", "log_heads": "app_id", "apps": "id", "api_keys": "id",
    "erased_entries": "app_id, seq",
}  # fmt: skip


@dataclass
class Log:
    """Two apps' logs of 300 entries, a checkpoint, a revoked key, and an engine to attack with."""

    engine: Engine
    params: dict[str, str]

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every protected table, in a stable order."""
        with self.engine.connect() as c:
            return {
                table: [tuple(r) for r in c.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
                for table in ROWS
            }

    def refused(self, statement: str) -> None:
        """``statement`` fails, and every protected table is as it was."""
        before = self.rows()
        with pytest.raises(DBAPIError), self.engine.begin() as c:
            c.execute(text(statement), self.params)
        assert self.rows() == before, statement

    def columns(self, table: str) -> list[str]:
        """The table's columns, in order."""
        with self.engine.connect() as c:
            return list(c.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys())


def _made(url: str, attacker_url: str) -> Log:
    store = Store(url, secrets=new_secret_box())
    try:
        store.migrate()
        app, other = provision.create_app(store, "replace"), provision.create_app(store, "other")
        datagen.fill(store, [app.app_id, other.app_id], 300)
        for made in (app, other):
            note = f"trailkeep.local/{made.app_id}\n300\nAAAA\n"
            store.put_checkpoint(
                CheckpointRecord(made.app_id, 300, b"\x01" * 32, note, datetime.now(UTC))
            )
        store.revoke_key(app.key_id)
        # Stubs of the first 5 entries, as retention leaves them (and a horizon above zero).
        with store.admin_tx() as tx:
            tx.purge(app.app_id, datetime.now(UTC) + timedelta(days=1), 5, frozenset())
    finally:
        store.close()
    if attacker_url.startswith("postgresql://"):
        attacker_url = "postgresql+psycopg://" + attacker_url.split("://", 1)[1]
    engine = create_engine(attacker_url, poolclass=NullPool)
    params = {"app": app.app_id, "other": other.app_id, "key": app.key_id,
              "other_key": other.key_id}  # fmt: skip
    return Log(engine, params)


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    """The logs in a SQLite file, attacked with every right on the file."""
    url = f"sqlite:///{tmp_path_factory.mktemp('replace') / 'trailkeep.db'}"
    log = _made(url, url)
    yield log
    log.engine.dispose()


@pytest.fixture(scope="module")
def postgres_log(pg_cluster: PostgresCluster) -> Iterator[Log]:
    """The logs in a PostgreSQL database, attacked as the service role the server runs as."""
    database = pg_cluster.database()
    log = _made(database.owner_url, database.service_url)
    yield log
    log.engine.dispose()
    pg_cluster.drop(database.name)


def _copy(log: Log, table: str) -> tuple[str, str]:
    """(column list, SELECT list): a copy of the table's chosen row with one column changed."""
    where, column, value = ROWS[table]
    columns = log.columns(table)
    picked = ", ".join(value if c == column else c for c in columns)
    return ", ".join(columns), f"SELECT {picked} FROM {table} WHERE {where}"


@pytest.mark.parametrize("verb", ["INSERT OR REPLACE INTO", "REPLACE INTO"])
@pytest.mark.parametrize("table", sorted(ROWS))
def test_sqlite_replace_of_a_row_is_refused(sqlite_log: Log, table: str, verb: str) -> None:
    columns, select = _copy(sqlite_log, table)
    sqlite_log.refused(f"{verb} {table} ({columns}) {select}")


@pytest.mark.parametrize("table", sorted(ROWS))
def test_sqlite_update_or_replace_of_a_key_is_refused(sqlite_log: Log, table: str) -> None:
    sqlite_log.refused(f"UPDATE OR REPLACE {table} {KEY_CHANGES[table]}")


def _upsert(log: Log, table: str) -> str:
    columns, select = _copy(log, table)
    _, column, value = ROWS[table]
    # `WHERE true` lets SQLite's parser tell the upsert clause from the SELECT's own syntax.
    return (
        f"INSERT INTO {table} ({columns}) {select} AND true "
        f"ON CONFLICT ({CONFLICT_KEYS[table]}) DO UPDATE SET {column} = {value}"
    )


@pytest.mark.parametrize("table", sorted(ROWS))
def test_sqlite_upsert_of_a_row_is_refused(sqlite_log: Log, table: str) -> None:
    sqlite_log.refused(_upsert(sqlite_log, table))


@pytest.mark.postgres
@pytest.mark.parametrize("table", sorted(ROWS))
def test_postgres_upsert_of_a_row_is_refused(postgres_log: Log, table: str) -> None:
    upsert = _upsert(postgres_log, table).replace("x'7b7d'", "'\\x7b7d'::bytea")
    postgres_log.refused(upsert.replace("x'00'", "'\\x00'::bytea"))


@pytest.mark.postgres
@pytest.mark.parametrize("table", sorted(ROWS))
def test_postgres_change_of_a_key_is_refused(postgres_log: Log, table: str) -> None:
    postgres_log.refused(f"UPDATE {table} {KEY_CHANGES[table]}")


@pytest.mark.postgres
def test_postgres_revocation_is_final(postgres_log: Log) -> None:
    postgres_log.refused("UPDATE api_keys SET revoked_at = NULL WHERE id = :key")
