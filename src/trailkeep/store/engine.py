"""Engines for SQLite and PostgreSQL, set up for durability, and the migration runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

_MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
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
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
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


def create_engines(url: str) -> tuple[Engine, Engine]:
    """A (writer, reader) pair of engines for the database at ``url``."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)
    if url.startswith(("postgresql", "postgres")):
        engine = create_engine(
            _postgres_url(url), pool_size=10, max_overflow=10, pool_pre_ping=True
        )
        return engine, engine
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


def migrate(engine: Engine) -> None:
    """Bring the schema up to date (Alembic ``upgrade head``); safe to run on every start."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
