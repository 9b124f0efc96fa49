"""Make erased content gone from PostgreSQL's files: rewrite the tables it was deleted from.

An erasure or a purge deletes entries' rows from ``events``. On PostgreSQL neither the DELETE
nor a plain ``VACUUM`` (autovacuum's, or an operator's) removes the bytes: VACUUM marks the
dead tuples' space free and compacts what is left on each page, but does not zero the freed
space, so the erased actor ids, target ids and metadata stay readable in the partition's heap
file, its indexes' files and its TOAST table until PostgreSQL happens to write over them
(``tests/integration/test_compact.py`` greps the files after each step). The same goes for the
sealed subject an erasure request keeps until it is carried out, in ``erasures``.

``VACUUM (FULL)`` writes a new copy of a table with the live rows only, rebuilds its indexes
and TOAST table, and drops the old files. It needs the table's owner (the role that ran
``trailkeep migrate``), and holds an ACCESS EXCLUSIVE lock on the table while it copies: no
read nor append of that partition waits less. So each partition is rewritten on its own (the
others stay open), only the partitions whose month holds an erased entry, and a lock that is
not granted within ``lock_timeout`` skips the table rather than queueing: an ACCESS EXCLUSIVE
request that waits blocks every later reader of the table behind it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.exc import DBAPIError

# An erasure request keeps its subject (sealed) until it is carried out, then clears it: the
# old row version, still in the table's file, holds the sealed subject.
ERASURES = "erasures"
EVENT_CHANGES = "event_changes"
STATISTICS = "pg_catalog.pg_statistic"
# SQLSTATE of a lock not granted within lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"


class CompactError(Exception):
    """The tables cannot be rewritten as asked (not PostgreSQL, or not the tables' owner)."""


@dataclass(frozen=True)
class Compacted:
    """One table rewritten, or skipped because its lock was not granted in time."""

    table: str
    bytes_before: int  # the table's, its indexes' and its TOAST table's files
    bytes_after: int
    seconds: float  # how long the rewrite held the table's ACCESS EXCLUSIVE lock (at most)
    skipped: bool = False


def tables_to_compact(engine: Engine, app_id: str | None = None) -> list[str]:
    """The tables an erasure or purge deleted from: ``events``' partitions holding a stub's
    time (of ``app_id``, or of any app), and ``erasures`` once an erasure was carried out."""
    _require_postgres(engine)
    tables: list[str] = []
    app = "" if app_id is None else "app_id = :app AND "
    with engine.connect() as c:
        partitions = c.execute(
            text(
                "SELECT c.oid::regclass::text, pg_get_partition_constraintdef(c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'events'::regclass ORDER BY 1"
            )
        ).all()
        for name, bound in partitions:
            # The partition's own constraint, from the catalog, picks the stubs whose time it
            # holds: no month arithmetic of ours that could disagree with the partition bounds
            # (the default partition's constraint is the negation of all the others). It names
            # the column "time", which erased_entries has too, of the same type.
            where = f"({bound})" if bound else "TRUE"
            found = c.execute(
                text(f"SELECT EXISTS (SELECT 1 FROM erased_entries WHERE {app}{where})"),
                {"app": app_id} if app_id is not None else {},
            ).scalar()
            if found:
                tables.append(str(name))
        if tables:
            # The changed paths of erased entries (0013) were deleted with them: they may
            # name a person (`/users/ada`) just as the entries did.
            tables.append(EVENT_CHANGES)
        done = c.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM erasures WHERE {app}status = 'done')"),
            {"app": app_id} if app_id is not None else {},
        ).scalar()
        if done:
            tables.append(ERASURES)
    return tables


def compact(engine: Engine, tables: list[str], lock_timeout: float = 5.0) -> list[Compacted]:
    """Rewrite each table with ``VACUUM (FULL, ANALYZE)``, one at a time, as its owner."""
    _require_postgres(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        _require_owner(c, tables)
        c.execute(text(f"SET lock_timeout = {max(1, round(lock_timeout * 1000))}"))
        try:
            done = [_rewrite(c, table) for table in tables]
            _analyze_parent(c, [d.table for d in done if not d.skipped])
            superuser = c.execute(
                text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            ).scalar()
            if done and superuser:
                # ANALYZE replaced the statistics' rows; their old versions, holding values
                # sampled from the erased rows, stay in pg_statistic's file until it is rewritten
                # too, which only a superuser may do (anyone else: the docs say so).
                done.append(_rewrite(c, STATISTICS))
            return done
        finally:
            c.execute(text("RESET lock_timeout"))  # the connection goes back to the pool


def _rewrite(c: Connection, table: str) -> Compacted:
    before_node, before = _files(c, table)
    started = time.monotonic()
    try:
        # ANALYZE too: the statistics PostgreSQL keeps of each column (pg_statistic's most
        # common values and histogram bounds) sample the rows, erased ones included, until
        # the table is analysed again.
        c.execute(text(f"VACUUM (FULL, ANALYZE) {_quoted(c, table)}"))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return Compacted(table, before, before, time.monotonic() - started, skipped=True)
    seconds = time.monotonic() - started
    after_node, after = _files(c, table)
    if after_node == before_node:
        # VACUUM only warns, and leaves the table as it was, when it may not rewrite it.
        raise CompactError(f"{table} was not rewritten (VACUUM (FULL) skipped it)")
    return Compacted(table, before, after, seconds)


def _analyze_parent(c: Connection, rewritten: list[str]) -> None:
    # A manual ANALYZE of `events` (autovacuum never analyses a partitioned table) keeps
    # statistics of the whole table besides each partition's: values sampled from erased rows
    # stay in them, and in pg_statistic's file, until the parent is analysed again. ANALYZE
    # takes no lock that holds up reads or appends.
    partitions = c.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'events'::regclass "
            "AND inhrelid = ANY (SELECT CAST(t AS regclass) FROM unnest(CAST(:t AS text[])) AS t))"
        ),
        {"t": rewritten},
    ).scalar()
    # pg_stats, not pg_statistic: only a superuser may read the catalog itself.
    analysed = c.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE inherited AND tablename = 'events' "
            "AND CAST(format('%I.%I', schemaname, tablename) AS regclass) = 'events'::regclass)"
        )
    ).scalar()
    if partitions and analysed:
        c.execute(text("ANALYZE events"))


def _files(c: Connection, table: str) -> tuple[int, int]:
    row = c.execute(
        text(
            "SELECT pg_relation_filenode(CAST(:t AS regclass)), "
            "pg_total_relation_size(CAST(:t AS regclass))"
        ),
        {"t": table},
    ).one()
    return int(row[0]), int(row[1])


def _quoted(c: Connection, table: str) -> str:
    # The name as the catalog spells it, schema-qualified and quoted where needed.
    return str(c.execute(text("SELECT CAST(CAST(:t AS regclass) AS text)"), {"t": table}).scalar())


def _require_owner(c: Connection, tables: list[str]) -> None:
    if not tables:
        return
    # PostgreSQL 15 lets only a superuser, the table's owner or the database's owner VACUUM
    # a table; anyone else gets a warning and nothing is done.
    refused = (
        c.execute(
            text(
                "SELECT c.oid::regclass::text FROM pg_class c "
                "WHERE c.oid = ANY (SELECT CAST(t AS regclass) "
                "FROM unnest(CAST(:tables AS text[])) AS t) "
                "AND NOT pg_has_role(current_user, c.relowner, 'USAGE') "
                "AND NOT pg_has_role(current_user, (SELECT datdba FROM pg_database "
                "WHERE datname = current_database()), 'USAGE') ORDER BY 1"
            ).bindparams(bindparam("tables", list(tables))),
        )
        .scalars()
        .all()
    )
    if refused:
        user = c.execute(text("SELECT current_user")).scalar()
        raise CompactError(
            f"{user} does not own {', '.join(refused)}: rewriting a table needs its owner "
            "(the role that ran `trailkeep migrate`): give that role's --database-url"
        )


def _require_postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise CompactError("compaction is for PostgreSQL; SQLite overwrites what it erases")
