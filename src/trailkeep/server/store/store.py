"""The storage port: every SQL statement Trailkeep runs, on SQLite or PostgreSQL alike."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError

from trailkeep.log import merkle
from trailkeep.log.merkle import NodeId
from trailkeep.log.query import Filters, GroupBy
from trailkeep.log.record import IndexedFields, format_time
from trailkeep.log.verify import StoredRow
from trailkeep.server.secrets import SecretBox
from trailkeep.server.store import pgtext, reads, schema, stubs, tree
from trailkeep.server.store.admin import AdminTx
from trailkeep.server.store.append import AppendTx, read_range, utc
from trailkeep.server.store.bookkeeping import Bookkeeping
from trailkeep.server.store.driver import driver_rows, placeholder
from trailkeep.server.store.engine import create_engines, migrate
from trailkeep.server.store.records import (
    AppRecord,
    CheckpointRecord,
    KeyRecord,
    SecretsUnavailable,
    key_record,
    session_secret_context,
)
from trailkeep.server.store.subjects import SubjectTx


def _app(row: Any, secrets: SecretBox | None) -> AppRecord:
    return AppRecord(
        id=row.id, name=row.name, sealed_secret=row.session_secret,
        created_at=utc(row.created_at) or datetime.now(UTC), retention_days=row.retention_days,
        purge_horizon=row.purge_horizon, allowed_origins=tuple(json.loads(row.allowed_origins)),
        erasure_approvals=row.erasure_approvals, session_issuer=row.session_issuer,
        secrets=secrets, sealed_next=row.next_session_secret,
    )  # fmt: skip


class Store:
    """Apps, keys, entries, the tree and checkpoints, behind one small synchronous API.

    Methods block; the async server calls them from worker threads. ``secrets`` is the node's
    secret key: a store opened without it appends, reads and verifies, but cannot make an app
    nor give out its session secret.
    """

    def __init__(self, url: str, secrets: SecretBox | None = None) -> None:
        self.url = url
        self.secrets = secrets
        self.writer_engine: Engine
        self.reader_engine: Engine
        self.writer_engine, self.reader_engine = create_engines(url)
        self.dialect = self.writer_engine.dialect.name
        #: Writes a power failure may roll back at the cost of a repeat (webhook delivery's).
        self.bookkeeping = Bookkeeping(url, self.writer_engine)

    def _storable(self, server_made_id: str) -> bool:
        # Ids the server made never hold NUL, which PostgreSQL cannot even be asked about.
        return self.dialect != "postgresql" or "\x00" not in server_made_id

    def migrate(self) -> None:
        """Create or upgrade the schema (sealing secrets stored in clear, with the secret key)."""
        migrate(self.writer_engine, self.secrets)

    def check_secrets(self) -> None:
        """Fail now, with the reason, if this node's secret key cannot open the stored secrets."""
        with self.reader_engine.connect() as c:
            row = c.execute(select(schema.apps).limit(1)).one_or_none()
        if row is not None:
            _ = _app(row, self.secrets).session_secret

    def ensure_partitions(self, months_ahead: int = 3) -> int:
        """Create the coming months' partitions of ``events`` (PostgreSQL); how many were made."""
        if self.dialect != "postgresql":
            return 0
        with self.writer_engine.begin() as c:
            made = c.execute(
                text("SELECT trailkeep_ensure_partitions(:months)"), {"months": months_ahead}
            ).scalar()
        return int(made or 0)

    def sweep_idempotency(self, ttl: timedelta, chunk: int = 5_000) -> int:
        """Delete idempotency keys older than ``ttl``, a chunk per transaction; how many went."""
        table = schema.idempotency_keys
        cutoff = datetime.now(UTC) - ttl
        total = 0
        while True:
            with self.writer_engine.begin() as c:
                keys = c.execute(
                    select(table.c.app_id, table.c.key)
                    .where(table.c.created_at < cutoff)
                    .limit(chunk)
                ).all()
                if keys:
                    c.execute(
                        table.delete().where(
                            tuple_(table.c.app_id, table.c.key).in_([tuple(k) for k in keys]),
                            table.c.created_at < cutoff,
                        )
                    )
            total += len(keys)
            if len(keys) < chunk:
                return total

    def close(self) -> None:
        """Release every pooled connection."""
        self.writer_engine.dispose()
        self.reader_engine.dispose()
        self.bookkeeping.dispose()

    @contextmanager
    def append_tx(self) -> Iterator[AppendTx]:
        """One appending transaction; committed (durably) when the block exits cleanly."""
        with self.writer_engine.begin() as connection:
            yield AppendTx(connection)

    @contextmanager
    def admin_tx(self) -> Iterator[SubjectTx]:
        """An appending transaction that may also change settings, keys, holds and erasures."""
        with self.writer_engine.begin() as connection:
            if self.dialect != "sqlite":
                yield SubjectTx(connection)
                return
            # Only here is an entry's content deleted (retention, erasure): SQLite overwrites
            # what it deletes with zeros, so an erased entry does not linger in free pages.
            # Appends delete only the partial tree tile they widen, whose hashes the wider tile
            # repeats: the write path does not pay for zeroing it.
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA secure_delete=ON")
            try:
                yield SubjectTx(connection)
            finally:
                raw.execute("PRAGMA secure_delete=OFF")

    @contextmanager
    def purge_lease(self, app_id: str) -> Iterator[bool]:
        """Whether this process may run the app's scheduled purge now; held until the block ends.

        On PostgreSQL several nodes run the scheduler: a session advisory lock per app lets one
        purge it while the others pass it by. The database drops the lock with the session, so
        a node that dies mid-purge leaves it to the next node's interval, which resumes at the
        horizon. SQLite has one server process; a CLI purge beside it takes turns chunk by chunk.
        """
        if self.dialect != "postgresql":
            yield True
            return
        key = {"key": f"trailkeep.purge:{app_id}"}
        with self.writer_engine.connect() as c:
            taken = c.execute(
                text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), key
            ).scalar_one()
            c.commit()  # the lock is the session's; no transaction is left open while it is held
            try:
                yield bool(taken)
            finally:
                if taken:
                    c.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), key)
                    c.commit()

    @contextmanager
    def admin_view(self) -> Iterator[SubjectTx]:
        """Governance state to read (settings, holds, erasures): no write lock, no app lock."""
        with self.reader_engine.connect() as connection:
            yield SubjectTx(connection, locking=False)

    def checkpoint_wal(self, *, passive: bool = False) -> None:
        """Copy SQLite's WAL into the database file and empty it (after erasing content).

        ``passive`` copies what it can without waiting for writers or readers, and empties
        nothing: it holds up no one.
        """
        if self.dialect != "sqlite":
            return
        engine = self.reader_engine if passive else self.writer_engine
        with engine.connect() as c:
            # Outside a transaction: a checkpoint cannot run inside one.
            raw = c.connection.driver_connection
            assert raw is not None
            mode = "PASSIVE" if passive else "TRUNCATE"
            raw.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    # -- apps and keys -------------------------------------------------------------------

    def create_app(self, app_id: str, name: str, session_secret: str) -> AppRecord:
        """Create an app and its empty log; its session secret is stored sealed."""
        if self.secrets is None:
            raise SecretsUnavailable("making an app needs the node's secret key")
        sealed = self.secrets.seal(session_secret, session_secret_context(app_id))
        now = datetime.now(UTC)
        with self.writer_engine.begin() as c:
            c.execute(
                insert(schema.apps).values(
                    id=app_id, name=name, session_secret=sealed, created_at=now
                )
            )
            c.execute(insert(schema.log_heads).values(app_id=app_id, size=0, last_time=None))
        app = self.get_app(app_id)
        assert app is not None
        return app

    def get_app(self, app_id: str) -> AppRecord | None:
        """One app, or None."""
        if not self._storable(app_id):
            return None
        with self.reader_engine.connect() as c:
            row = c.execute(select(schema.apps).where(schema.apps.c.id == app_id)).one_or_none()
        return None if row is None else _app(row, self.secrets)

    def list_apps(self) -> list[AppRecord]:
        """Every app, oldest first."""
        with self.reader_engine.connect() as c:
            rows = c.execute(select(schema.apps).order_by(schema.apps.c.created_at))
            return [_app(row, self.secrets) for row in rows]

    def set_allowed_origins(self, app_id: str, origins: Sequence[str]) -> bool:
        """Replace the app's CORS origins; False if there is no such app."""
        with self.writer_engine.begin() as c:
            result = c.execute(
                update(schema.apps)
                .where(schema.apps.c.id == app_id)
                .values(allowed_origins=json.dumps(list(origins)))
            )
        return result.rowcount == 1

    def create_key(
        self,
        key_id: str,
        app_id: str,
        secret_hash: bytes,
        scopes: Sequence[str],
        name: str | None,
        expires_at: datetime | None = None,
    ) -> None:
        """Store a new key's hash and scopes."""
        with self.writer_engine.begin() as c:
            AdminTx(c).insert_key(key_id, app_id, secret_hash, scopes, name, expires_at)

    def get_key(self, key_id: str) -> KeyRecord | None:
        """A key by id, revoked or not."""
        if not self._storable(key_id):
            return None
        keys = schema.api_keys
        with self.reader_engine.connect() as c:
            row = c.execute(select(keys).where(keys.c.id == key_id)).one_or_none()
        if row is None:
            return None
        return key_record(row)

    def list_keys(self, app_id: str) -> list[KeyRecord]:
        """Every key of an app, revoked ones included."""
        keys = schema.api_keys
        with self.reader_engine.connect() as c:
            ids = c.execute(select(keys.c.id).where(keys.c.app_id == app_id)).scalars().all()
        return [key for key in map(self.get_key, ids) if key is not None]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; False if it does not exist or was already revoked."""
        keys = schema.api_keys
        with self.writer_engine.begin() as c:
            result = c.execute(
                update(keys)
                .where(keys.c.id == key_id, keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return result.rowcount == 1

    # -- entries and the tree --------------------------------------------------------------

    def log_size(self, app_id: str) -> int:
        """How many entries the app's log holds."""
        heads = schema.log_heads
        with self.reader_engine.connect() as c:
            size = c.execute(select(heads.c.size).where(heads.c.app_id == app_id)).scalar()
        return int(size or 0)

    def get_entry(self, app_id: str, entry_id: str) -> bytes | None:
        """One stored entry by id: the entry, its stub if it was erased, or None."""
        if not self._storable(entry_id):
            return None
        events = schema.events
        with self.reader_engine.connect() as c:
            entry = c.execute(
                select(events.c.entry).where(events.c.app_id == app_id, events.c.id == entry_id)
            ).scalar()
            return stubs.by_id(c, app_id, entry_id) if entry is None else bytes(entry)

    def entries(self, app_id: str, seq: int, count: int) -> list[bytes]:
        """Entries [seq, seq + count) in seq order (erased ones are missing)."""
        with self.reader_engine.connect() as c:
            return read_range(c, app_id, seq, count)

    def nodes(self, app_id: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        """Tree node hashes by (level, index)."""
        with self.reader_engine.connect() as c:
            return tree.read_nodes(c, app_id, ids)

    def inclusion_proof(self, app_id: str, seq: int, size: int) -> tuple[bytes, list[bytes]]:
        """(leaf hash, RFC 9162 audit path) of entry ``seq`` in the app's tree of ``size``."""
        ids = [(0, seq), *merkle.inclusion_proof_nodes(seq, size)]
        nodes = self.nodes(app_id, ids)
        return nodes[(0, seq)], merkle.inclusion_proof(seq, size, nodes)

    def consistency_proof(self, app_id: str, old: int, new: int) -> list[bytes]:
        """The RFC 9162 proof that the app's tree of ``old`` entries is a prefix of ``new``."""
        ids = merkle.consistency_proof_nodes(old, new)
        return merkle.consistency_proof(old, new, self.nodes(app_id, ids))

    def leaves_with_entries(
        self, app_id: str, *, start: int = 0, end: int | None = None, chunk: int = 20_480
    ) -> Iterator[list[StoredRow]]:
        """Stream each leaf of [start, end) in order: its tree hash, entry and indexed columns.

        Rows are (seq, tree leaf hash, stored entry, its stub if it was erased, or None, the
        columns reads filter on or None). Chunks come as lists, since verification reads every
        row of a log and per-row generator and Row overhead would be a large part of its time.
        Each chunk is its own short
        read, so a long verification never pins one snapshot (nor holds back SQLite's WAL
        checkpoints).
        """
        mark = placeholder(self.reader_engine.dialect)
        sql = (
            "SELECT seq, entry, action, kind, actor_id, target_type, target_id, time FROM events"
            f" WHERE app_id = {mark('app')} AND seq >= {mark('lo')} AND seq < {mark('hi')}"
        )
        columns = self._indexed_of_postgres if self.dialect == "postgresql" else _indexed_of_sqlite
        low = start
        while end is None or low < end:
            high = low + chunk if end is None else min(low + chunk, end)
            with self.reader_engine.connect() as c:
                leaves = tree.leaf_range(c, app_id, low, high)
                if not leaves:
                    return
                params = {"app": app_id, "lo": low, "hi": leaves[-1][0] + 1}
                stored: dict[int, tuple[Any, IndexedFields | None]] = {
                    row[0]: (row[1], columns(row)) for row in driver_rows(c, sql, params)
                }
                # An erased entry's stub stands in its place (verified as a bare leaf).
                for seq, stub in stubs.span(c, app_id, low, leaves[-1][0] + 1):
                    stored.setdefault(seq, (stub, None))
            yield [(seq, digest, *stored.get(seq, (None, None))) for seq, digest in leaves]
            low = high

    @staticmethod
    def _indexed_of_postgres(row: Sequence[Any]) -> IndexedFields:
        target_type, target_id = (None if v is None else pgtext.decode(v) for v in row[5:7])
        actor = pgtext.decode(row[4])
        return IndexedFields(row[2], row[3], actor, target_type, target_id, format_time(row[7]))

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A reader connection whose statements all see one snapshot of the database.

        SQLite's read transaction is one already; PostgreSQL's READ COMMITTED gives each
        statement its own, so there the transaction is REPEATABLE READ (read-only: it never
        fails to serialize).
        """
        with self.reader_engine.connect() as c:
            if self.dialect == "postgresql":
                c.execution_options(isolation_level="REPEATABLE READ")
            yield c

    def page(
        self, app_id: str, filters: Filters, before: int | None, limit: int, newest_first: bool,
        c: Connection | None = None,
    ) -> list[tuple[int, bytes]]:  # fmt: skip
        """A page of matching (seq, entry) pairs after the keyset position ``before``.

        Entries, then stubs, in one snapshot (``c``'s if given): across two, an erasure
        committing between the reads would put an entry and its stub both in the page.
        """
        if c is None:
            with self.snapshot() as own:
                return self.page(app_id, filters, before, limit, newest_first, own)
        rows = reads.page(c, app_id, filters, before, limit, newest_first)
        if not filters.on_time_only():
            return rows
        found = stubs.page(c, app_id, filters, before, limit, newest_first)
        return stubs.merged(rows, found, limit, newest_first)

    def stats(
        self, app_id: str, filters: Filters, group_by: GroupBy
    ) -> list[tuple[str | None, int]]:
        """Counts of matching entries per group."""
        with self.reader_engine.connect() as c:
            return reads.stats(c, app_id, filters, group_by)

    def actions(self, app_id: str, prefix: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` distinct actions of the app starting with ``prefix``, after ``after``."""
        with self.reader_engine.connect() as c:
            return reads.known_actions(c, app_id, prefix, after, limit)

    # -- checkpoints -------------------------------------------------------------------------

    def latest_checkpoint(self, app_id: str) -> CheckpointRecord | None:
        """The largest stored checkpoint of the app."""
        cps = schema.checkpoints
        with self.reader_engine.connect() as c:
            row = c.execute(
                select(cps).where(cps.c.app_id == app_id).order_by(cps.c.size.desc()).limit(1)
            ).one_or_none()
        if row is None:
            return None
        return CheckpointRecord(
            row.app_id,
            row.size,
            bytes(row.root),
            row.note,
            utc(row.created_at) or datetime.now(UTC),
        )

    def put_checkpoint(self, record: CheckpointRecord) -> bool:
        """Store a checkpoint before it is published; False if one of that size exists."""
        try:
            with self.writer_engine.begin() as c:
                c.execute(
                    insert(schema.checkpoints).values(
                        app_id=record.app_id, size=record.size, root=record.root,
                        note=record.note, created_at=record.created_at,
                    )
                )  # fmt: skip
        except IntegrityError:
            return False
        return True


def _indexed_of_sqlite(row: Sequence[Any]) -> IndexedFields:
    # SQLite hands back the stored text "YYYY-MM-DD HH:MM:SS.ffffff" (always six digits).
    stamp = row[7]
    time = f"{stamp[:10]}T{stamp[11:]}Z" if isinstance(stamp, str) else repr(stamp)
    return IndexedFields(row[2], row[3], row[4], row[5], row[6], time)
