"""Data subjects in the database: legal holds, erasure requests, and erasing an entry's content.

A subject is an actor id, a target (type and id), or a list of seqs. ``SubjectTx`` is the
administering transaction with what holds and erasures need; ``Store.admin_tx`` hands one out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, delete, insert, or_, select, text, update

from trailkeep.log.verify.entries import stored_leaf
from trailkeep.server.store import schema, stubs
from trailkeep.server.store.admin import AdminTx, as_dict
from trailkeep.server.store.append import utc
from trailkeep.server.store.stubs import Match, erase_rows

events = schema.events
holds = schema.holds
erasures = schema.erasures

#: The log's records of reads, which copy a subject's id into their filters.
READ_RECORDS = ("audit.read", "audit.export")


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose entries: an actor, a target, given seqs, or (holds only) the whole app."""

    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    seqs: tuple[int, ...] = ()
    whole_app: bool = False

    def as_json(self) -> dict[str, Any]:
        """The subject as the API takes it."""
        if self.actor_id is not None:
            return {"actor_id": self.actor_id}
        if self.target_type is not None:
            return {"target": {"type": self.target_type, "id": self.target_id}}
        if self.seqs:
            return {"seqs": list(self.seqs)}
        return {"all": True}

    def ids(self) -> list[str]:
        """The ids that name the subject inside entries (in reads' recorded filters)."""
        return [v for v in (self.actor_id, self.target_id) if v is not None]


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold as stored."""

    id: str
    app_id: str
    subject: Subject
    reason: str
    placed_at: datetime
    released_at: datetime | None
    subject_hmac: str | None = None  # the subject's keyed hash, once the subject was erased

    def covers(self, actor_id: str, target_type: str | None, target_id: str | None) -> bool:
        """True when the hold keeps an entry with these indexed fields."""
        s = self.subject
        if s.whole_app:
            return True
        if s.actor_id is not None:
            return actor_id == s.actor_id
        return (target_type, target_id) == (s.target_type, s.target_id)


def _hold(row: Any) -> Hold:
    subject = Subject(
        actor_id=row.actor_id, target_type=row.target_type, target_id=row.target_id,
        whole_app=row.actor_id is None and row.target_type is None and row.subject_hmac is None,
    )  # fmt: skip
    return Hold(
        row.id, row.app_id, subject, row.reason, utc(row.placed_at) or row.placed_at,
        utc(row.released_at), row.subject_hmac,
    )  # fmt: skip


class SubjectTx(AdminTx):
    """The administering transaction, with holds, erasure requests and erasing content."""

    # -- holds -------------------------------------------------------------------------

    def holds(self, app_id: str, *, active: bool = True) -> list[Hold]:
        """The app's holds (only those in force, unless ``active`` is False), oldest first."""
        where: list[ColumnElement[bool]] = [holds.c.app_id == app_id]
        if active:
            where.append(holds.c.released_at.is_(None))
        rows = self._c.execute(select(holds).where(*where).order_by(holds.c.placed_at, holds.c.id))
        return [_hold(row) for row in rows]

    def hold(self, app_id: str, hold_id: str) -> Hold | None:
        """One of the app's holds, or None."""
        row = self._c.execute(
            select(holds).where(holds.c.app_id == app_id, holds.c.id == hold_id)
        ).one_or_none()
        return None if row is None else _hold(row)

    def place_hold(self, hold_id: str, app_id: str, subject: Subject, reason: str) -> None:
        """Store a new hold."""
        self._c.execute(
            insert(holds).values(
                id=hold_id, app_id=app_id, actor_id=subject.actor_id,
                target_type=subject.target_type, target_id=subject.target_id, reason=reason,
                placed_at=datetime.now(UTC),
            )
        )  # fmt: skip

    def release_hold(self, app_id: str, hold_id: str) -> bool:
        """Release a hold in force; False if it was released already."""
        result = self._c.execute(
            update(holds)
            .where(holds.c.app_id == app_id, holds.c.id == hold_id, holds.c.released_at.is_(None))
            .values(released_at=datetime.now(UTC))
        )
        return result.rowcount == 1

    def forget_released(self, app_id: str, subject: Subject, subject_hmac: str) -> int:
        """Replace an erased subject by its keyed hash in the app's released holds of it."""
        if subject.actor_id is not None:
            named = holds.c.actor_id == subject.actor_id
        elif subject.target_type is not None:
            named = (holds.c.target_type == subject.target_type) & (
                holds.c.target_id == subject.target_id
            )
        else:
            return 0  # seqs: no hold names a subject by seq
        result = self._c.execute(
            update(holds)
            .where(holds.c.app_id == app_id, holds.c.released_at.is_not(None), named)
            .values(actor_id=None, target_type=None, target_id=None, subject_hmac=subject_hmac)
        )
        return int(result.rowcount)

    # -- erasure -----------------------------------------------------------------------

    def matching(self, app_id: str, subject: Subject, kept: frozenset[str]) -> list[Match]:
        """The entries an erasure of ``subject`` reaches, in seq order.

        The subject's own entries (as actor or as target, or the seqs given), and the records of
        reads whose filters named it; never the log's own records of administration in
        ``kept``, nor a record of a read named by seq alone.
        """
        where: list[ColumnElement[bool]] = [events.c.app_id == app_id]
        reach: list[ColumnElement[bool]] = []
        if subject.actor_id is not None:
            reach.append(events.c.actor_id == subject.actor_id)
        if subject.target_type is not None:
            reach.append(
                (events.c.target_type == subject.target_type)
                & (events.c.target_id == subject.target_id)
            )
        if subject.seqs:
            reach.append(events.c.seq.in_(subject.seqs))
        for name in subject.ids():
            # A read's record names the subject inside its JSON, as a JSON string.
            needle = orjson.dumps(name)
            found = (
                text("position(CAST(:needle AS bytea) in events.entry) > 0")
                if self._c.dialect.name == "postgresql"
                else text("instr(events.entry, :needle) > 0")
            )
            reach.append(events.c.action.in_(READ_RECORDS) & found.bindparams(needle=needle))
        rows = self._c.execute(
            select(
                events.c.seq, events.c.id, events.c.time, events.c.action, events.c.actor_id,
                events.c.target_type, events.c.target_id, events.c.entry,
            ).where(*where, or_(*reach)).order_by(events.c.seq)
        )  # fmt: skip
        return [
            Match(
                row.seq, row.id, utc(row.time) or row.time, row.actor_id, row.target_type,
                row.target_id, stored_leaf(bytes(row.entry)),
            )
            for row in rows
            if row.action not in kept
            # The records of reads go with the subject they name or made them, never by seq.
            and not (subject.seqs and row.action.startswith("audit."))
        ]  # fmt: skip

    def log_size(self, app_id: str) -> int:
        """The app's log size, under its lock."""
        self.lock(app_id)
        heads = schema.log_heads
        return int(
            self._c.execute(select(heads.c.size).where(heads.c.app_id == app_id)).scalar_one()
        )

    def erased_seqs(self, app_id: str, seqs: Sequence[int]) -> set[int]:
        """Which of ``seqs`` are erased already."""
        erased = schema.erased_entries
        rows = self._c.execute(
            select(erased.c.seq).where(erased.c.app_id == app_id, erased.c.seq.in_(list(seqs)))
        )
        return {row.seq for row in rows}

    def erased_since(
        self,
        app_id: str,
        since_size: int,
        below_seq: int | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> tuple[int, list[tuple[int, int]]]:
        """The app's log size, then the stubs written at ``since_size`` or later (a page).

        The size is read first: an erasure committing between the two reads recorded a size
        at least as large, so asking again from this size finds it (``stubs.erased_since``).
        """
        heads = schema.log_heads
        size = self._c.execute(select(heads.c.size).where(heads.c.app_id == app_id)).scalar()
        rows = stubs.erased_since(self._c, app_id, since_size, below_seq, after, limit)
        return int(size or 0), rows

    def erase(self, app_id: str, matches: Sequence[Match], erased_by: str) -> None:
        """Erase these entries' content: stubs first (the database requires them), then rows."""
        if not matches:
            return
        erase_rows(self._c, app_id, matches, erased_by)
        seqs = [m.seq for m in matches]
        # A retry's record would point at entries that are no longer there.
        keys = schema.idempotency_keys
        erased = set(seqs)
        rows = self._c.execute(
            select(keys.c.key, keys.c.seq, keys.c.count).where(
                keys.c.app_id == app_id,
                keys.c.seq <= seqs[-1],
                keys.c.seq + keys.c.count > seqs[0],
            )
        )
        doomed = [
            row.key for row in rows if not erased.isdisjoint(range(row.seq, row.seq + row.count))
        ]
        for start in range(0, len(doomed), 500):
            self._c.execute(
                delete(keys).where(
                    keys.c.app_id == app_id, keys.c.key.in_(doomed[start : start + 500])
                )
            )

    def insert_erasure(self, values: dict[str, Any]) -> None:
        """Store a new erasure request (``approvals`` as a list)."""
        stored = values | {"approvals": json.dumps(values["approvals"])}
        self._c.execute(insert(erasures).values(stored))

    def erasure(self, app_id: str, erasure_id: str) -> dict[str, Any] | None:
        """One of the app's erasure requests, or None."""
        row = self._c.execute(
            select(erasures).where(erasures.c.app_id == app_id, erasures.c.id == erasure_id)
        ).one_or_none()
        return None if row is None else as_dict(row)

    def erasures(self, app_id: str) -> list[dict[str, Any]]:
        """The app's erasure requests, newest first."""
        rows = self._c.execute(
            select(erasures)
            .where(erasures.c.app_id == app_id)
            .order_by(erasures.c.created_at.desc(), erasures.c.id)
        )
        return [as_dict(row) for row in rows]

    def update_erasure(self, erasure_id: str, values: dict[str, Any]) -> None:
        """Change an erasure request's status, approvals, counts or sealed subject."""
        stored = dict(values)
        if "approvals" in stored:
            stored["approvals"] = json.dumps(stored["approvals"])
        self._c.execute(update(erasures).where(erasures.c.id == erasure_id).values(stored))
