"""The administering transaction: an app's settings and keys change with their log entry.

Governance changes an app and appends the entry that records the change in one transaction, so
the log never shows a change that did not happen, nor misses one that did. The app's lock (as
``AppendTx`` takes it) is taken first: two administrators changing one app take turns, and each
reads the settings the other committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from trailkeep.server.store import schema, tree
from trailkeep.server.store.append import AppendTx, utc
from trailkeep.server.store.records import KeyRecord, key_record
from trailkeep.server.store.stubs import Match, erase_rows

#: The settings an administrator may change, as the ``apps`` table names them.
SETTINGS = ("retention_days", "allowed_origins", "erasure_approvals", "session_issuer")


@dataclass(frozen=True, slots=True)
class Purged:
    """One chunk of a purge: the seqs it covered, and how many entries' content it erased."""

    from_seq: int
    to_seq: int  # inclusive
    erased: int


class AdminTx(AppendTx):
    """An appending transaction that may also change an app's settings and its keys."""

    def settings(self, app_id: str) -> dict[str, Any] | None:
        """The app's settings under its lock, or None if there is no such app."""
        self.lock(app_id)
        apps = schema.apps
        row = self._c.execute(
            select(*(apps.c[name] for name in SETTINGS)).where(apps.c.id == app_id)
        ).one_or_none()
        if row is None:
            return None
        found = as_dict(row)
        found["allowed_origins"] = json.loads(found["allowed_origins"])
        if found["session_issuer"] is not None:
            found["session_issuer"] = json.loads(found["session_issuer"])
        return found

    def update_settings(self, app_id: str, values: Mapping[str, Any]) -> None:
        """Store new values of :data:`SETTINGS` (the caller validated them)."""
        stored = dict(values)
        if "allowed_origins" in stored:
            stored["allowed_origins"] = json.dumps(list(stored["allowed_origins"]))
        if stored.get("session_issuer") is not None:
            stored["session_issuer"] = json.dumps(stored["session_issuer"], sort_keys=True)
        self._c.execute(update(schema.apps).where(schema.apps.c.id == app_id).values(stored))

    def insert_key(
        self,
        key_id: str,
        app_id: str,
        secret_hash: bytes,
        scopes: Sequence[str],
        name: str | None,
        expires_at: datetime | None = None,
    ) -> None:
        """Store a new key's hash and scopes (never the key)."""
        self._c.execute(
            insert(schema.api_keys).values(
                id=key_id, app_id=app_id, secret_hash=secret_hash,
                scopes=" ".join(sorted(scopes)), name=name, created_at=datetime.now(UTC),
                expires_at=expires_at,
            )
        )  # fmt: skip

    def key(self, app_id: str, key_id: str) -> KeyRecord | None:
        """One of the app's keys (another app's key is None, as a missing one is)."""
        keys = schema.api_keys
        row = self._c.execute(
            select(keys).where(keys.c.id == key_id, keys.c.app_id == app_id)
        ).one_or_none()
        return None if row is None else key_record(row)

    def revoke_key(self, app_id: str, key_id: str) -> bool:
        """Revoke one of the app's keys; False if it is not the app's or was revoked already."""
        keys = schema.api_keys
        result = self._c.execute(
            update(keys)
            .where(keys.c.id == key_id, keys.c.app_id == app_id, keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return result.rowcount == 1

    def sealed_secrets(self, app_id: str) -> tuple[str, str | None]:
        """The app's sealed session secret and the one that replaces it (None: no rotation)."""
        apps = schema.apps
        row = self._c.execute(
            select(apps.c.session_secret, apps.c.next_session_secret).where(apps.c.id == app_id)
        ).one()
        return row.session_secret, row.next_session_secret

    def store_secrets(self, app_id: str, sealed: str, sealed_next: str | None) -> None:
        """Store the app's sealed session secret and the one that replaces it."""
        apps = schema.apps
        self._c.execute(
            update(apps)
            .where(apps.c.id == app_id)
            .values(session_secret=sealed, next_session_secret=sealed_next)
        )

    def purge_horizon(self, app_id: str) -> int:
        """The app's purge horizon: entries below it may have had their content erased."""
        apps = schema.apps
        return int(
            self._c.execute(select(apps.c.purge_horizon).where(apps.c.id == app_id)).scalar_one()
        )

    def purge(
        self,
        app_id: str,
        cutoff: datetime,
        limit: int,
        kept: frozenset[str],
        held: Callable[[str, str | None, str | None], bool] = lambda *_: False,
    ) -> Purged | None:
        """Erase the content of up to ``limit`` entries older than ``cutoff``, from the horizon.

        Entries whose action is in ``kept`` (the log's own governance records), and those that
        ``held(actor_id, target_type, target_id)`` says a legal hold covers, keep their content.
        Entry times never decrease along seqs, so what is older than the cutoff is a run of
        seqs from the horizon: the horizon rises to the end of the run, and the database
        lets the rows below it go once their stubs are written. None when nothing is older.
        """
        self.lock(app_id)
        horizon = self.purge_horizon(app_id)
        events = schema.events
        rows = self._c.execute(
            select(
                events.c.seq, events.c.id, events.c.time, events.c.action, events.c.actor_id,
                events.c.target_type, events.c.target_id,
            )
            .where(events.c.app_id == app_id, events.c.seq >= horizon, events.c.time < cutoff)
            .order_by(events.c.seq)
            .limit(limit)
        ).all()  # fmt: skip
        if not rows:
            return None
        first, last = rows[0].seq, rows[-1].seq
        # The leaf hashes come from the tree's tiles, a few rows, rather than from each entry.
        leaves = dict(tree.leaf_range(self._c, app_id, first, last + 1))
        gone = [
            Match(row.seq, row.id, utc(row.time) or row.time, row.actor_id, row.target_type,
                  row.target_id, leaves[row.seq])
            for row in rows
            if row.action not in kept and not held(row.actor_id, row.target_type, row.target_id)
        ]  # fmt: skip
        apps = schema.apps
        self._c.execute(update(apps).where(apps.c.id == app_id).values(purge_horizon=last + 1))
        erase_rows(self._c, app_id, gone, "retention")
        chunk = Purged(first, last, len(gone))
        # A retry's record would point at entries that are no longer there.
        keys = schema.idempotency_keys
        self._c.execute(delete(keys).where(keys.c.app_id == app_id, keys.c.seq <= chunk.to_seq))
        return chunk

    def purgeable(self, app_id: str, cutoff: datetime, kept: frozenset[str]) -> int:
        """How many entries a purge up to ``cutoff`` would erase now (a dry run)."""
        events = schema.events
        horizon = self.purge_horizon(app_id)
        return int(
            self._c.execute(
                select(func.count())
                .select_from(events)
                .where(
                    events.c.app_id == app_id, events.c.seq >= horizon, events.c.time < cutoff,
                    events.c.action.not_in(sorted(kept)),
                )
            ).scalar_one()
        )  # fmt: skip

    # -- a shortened retention, waiting ---------------------------------------------------

    def pending_retention(self, app_id: str) -> dict[str, Any] | None:
        """The app's retention change that waits, or None."""
        changes = schema.retention_changes
        row = self._c.execute(
            select(changes).where(changes.c.app_id == app_id, changes.c.status == "pending")
        ).first()
        return None if row is None else as_dict(row)

    def insert_retention_change(self, values: Mapping[str, Any]) -> None:
        """Store a new retention change (``approvals`` as a list)."""
        stored = dict(values) | {"approvals": json.dumps(values["approvals"])}
        self._c.execute(insert(schema.retention_changes).values(stored))

    def update_retention_change(self, change_id: str, values: Mapping[str, Any]) -> None:
        """Move a retention change along: its approvals, status, when it was done."""
        stored = dict(values)
        if "approvals" in stored:
            stored["approvals"] = json.dumps(stored["approvals"])
        changes = schema.retention_changes
        self._c.execute(update(changes).where(changes.c.id == change_id).values(stored))

    def due_retention_changes(self, now: datetime) -> list[dict[str, Any]]:
        """Every pending retention change whose notice period is over, in any app."""
        changes = schema.retention_changes
        rows = self._c.execute(
            select(changes)
            .where(changes.c.status == "pending", changes.c.effective_at <= now)
            .order_by(changes.c.effective_at)
        )
        return [as_dict(row) for row in rows]


def as_dict(row: Any) -> dict[str, Any]:
    """A governance row as a dict: `approvals` parsed, times in UTC (SQLite's come naive)."""
    found = {str(name): value for name, value in row._asdict().items()}
    if "approvals" in found:
        found["approvals"] = json.loads(found["approvals"])
    for name in ("effective_at", "created_at", "done_at"):
        if name in found:
            found[name] = utc(found[name])
    return found
