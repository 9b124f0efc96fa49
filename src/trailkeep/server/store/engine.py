"""Engines for SQLite and PostgreSQL, set up for durability, and the migration runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from trailkeep.server.files import private_file
from trailkeep.server.secrets import SecretBox

MIGRATIONS = Path(__file__).with_name("migrations")
WAL_AUTOCHECKPOINT_PAGES = 8_192  # 32 MiB of 4 KiB pages


def _sqlite_engine(url: str, *, immediate: bool, bookkeeping: bool = False) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        # The file holds every app's log and keys' hashes: created 0600 before SQLite opens it
        # (its -wal and -shm files take the same mode), in a directory only its user enters.
        for path in (Path(database), Path(f"{database}-wal"), Path(f"{database}-shm")):
            if path == Path(database) or path.exists():
                private_file(path)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8 if not immediate else 1,
        max_overflow=8 if not immediate else 0,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred and late).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it returns, so a 201 survives a crash or power loss.
        # Bookkeeping (store/bookkeeping.py) may lose its last commits to a power failure, and
        # waits for the write lock by its own retries, not SQLite's slowing ones.
        cursor.execute(f"PRAGMA synchronous={'NORMAL' if bookkeeping else 'FULL'}")
        cursor.execute(f"PRAGMA busy_timeout={0 if bookkeeping else 30000}")
        # Copy the WAL back into the database every 32 MiB rather than SQLite's 4 MiB: a page
        # that several commits dirtied is copied (and the file synced) once, not once each.
        # The WAL file stays bounded at about this size.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # The writer takes the write lock up front, so it never fails to upgrade mid-transaction.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _postgres_engine(url: str) -> Engine:
    # READ COMMITTED on purpose: after the appending transaction waits for an app's log_heads
    # row lock, each later statement takes a fresh snapshot, so it sees the tree nodes and
    # idempotency keys that the previous holder (on any node) committed.
    return create_engine(
        _postgres_url(url),
        isolation_level="READ COMMITTED",
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"application_name": "trailkeep"},
    )


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return make_url(url).drivername.split("+")[0] in {"postgresql", "postgres"}


def unreachable(url: str, timeout: int = 5) -> str | None:
    """Why the PostgreSQL database at ``url`` cannot be connected to now; None if it can."""
    engine = create_engine(
        _postgres_url(url), poolclass=NullPool, connect_args={"connect_timeout": timeout}
    )
    try:
        with engine.connect():
            return None
    except DBAPIError as exc:
        # libpq's message spans lines (host, port, hints): its first says what failed.
        lines = str(exc.orig or exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    finally:
        engine.dispose()


def redacted(url: str) -> str:
    """``url`` as it may be printed: any password masked."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_bookkeeping_engine(url: str) -> Engine:
    """A one-connection SQLite engine for bookkeeping writes (``store/bookkeeping.py``)."""
    return _sqlite_engine(url, immediate=True, bookkeeping=True)


def create_engines(url: str) -> tuple[Engine, Engine]:
    """A (writer, reader) pair of engines for the database at ``url``."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)
    if url.startswith(("postgresql", "postgres")):
        engine = _postgres_engine(url)
        return engine, engine
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


# pg_advisory_xact_lock(MIGRATION_LOCK, 1): nodes starting together migrate one at a time.
MIGRATION_LOCK = 0x746B


def migrate(engine: Engine, secrets: SecretBox | None = None) -> None:
    """Bring the schema up to date (Alembic ``upgrade head``); safe to run on every start.

    On PostgreSQL several nodes may start at once: the upgrade runs under a transaction-level
    advisory lock, and the next node, once it holds the lock, reads the version table again
    (READ COMMITTED) and finds nothing left to do. ``secrets``, the node's secret key, lets a
    migration seal secrets an older version stored in clear.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK}, 1)"))
            config.attributes["connection"] = connection
            config.attributes["secrets"] = secrets
            command.upgrade(config, "head")
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42501":  # insufficient_privilege
            raise MigrationError(
                "the database schema is out of date and this role may not change it (the "
                "restricted trailkeep_service role): run `trailkeep migrate` "
                "once with the schema owner's URL, then start the nodes"
            ) from exc
        raise


class MigrationError(RuntimeError):
    """The schema could not be brought up to date."""
