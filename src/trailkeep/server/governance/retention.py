"""Retention: erase the content of entries older than an app keeps them, in bounded chunks.

Each chunk is one transaction: it writes the stubs, raises the purge horizon, deletes the rows
and appends the ``retention.purge`` entry that accounts for them (DESIGN §5), so a purge that
dies midway leaves whole chunks behind it and resumes at the horizon. Between chunks the app's
lock is released, so writes go on during a long purge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from trailkeep.log.record import (
    RESERVED_ACTIONS,
    Actor,
    EventWrite,
    Origin,
    format_time,
    prepare,
)
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.commit import append_groups
from trailkeep.server.store import Hold, Store

log = logging.getLogger(__name__)

#: The most entries erased in one transaction.
PURGE_CHUNK: Final = 1_000
#: How long a chunk should hold the lock: writers waiting for it wait about this long. A chunk of
#: 1,000 held SQLite's write lock for ~130 ms on the benchmark machine (its deletes touch a page
#: of each of three scattered indexes per entry, all written to the WAL at commit), and single
#: writes' p99 during the purge rose to about that; the chunk's size follows this target instead.
HOLD_SECONDS: Final = 0.025
#: The fewest entries a chunk erases, however slow the storage (each is one log entry).
MIN_CHUNK: Final = 50
#: After each chunk a purge on SQLite rests for as long as the chunk held the lock (at most this
#: long), so that writers waiting on its one write lock get it: SQLite's busy handler polls,
#: so a purge that took the lock again at once left single writes at 4% of their rate in `make
#: bench`. PostgreSQL queues the writers waiting on the app's lock and wakes them in turn at each
#: commit, so a purge there does not rest.
PAUSE_MAX_SECONDS: Final = 0.2


def next_chunk(size: int, held: float, target: float, largest: int) -> int:
    """The size of the next chunk: toward ``target`` seconds of lock, at most doubling."""
    scaled = size * target / held if held > 0 else float("inf")
    if scaled >= largest:  # also when the chunk took no measurable time
        return max(MIN_CHUNK, min(largest, size * 2))
    return max(MIN_CHUNK, min(size * 2, round(scaled)))


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge of one app did (or, in a dry run, would do)."""

    app_id: str
    cutoff: datetime
    erased: int
    chunks: int
    entries: tuple[bytes, ...] = ()  # the retention.purge entries it appended


def _held_by(holds: Sequence[Hold]) -> Callable[[str, str | None, str | None], bool]:
    """Whether any of ``holds`` covers an entry with these indexed fields."""

    def held(actor_id: str, target_type: str | None, target_id: str | None) -> bool:
        return any(hold.covers(actor_id, target_type, target_id) for hold in holds)

    return held


def cutoff_of(retention_days: int | None, now: datetime) -> datetime | None:
    """The moment before which an app's entries have outlived their retention; None: forever."""
    return None if retention_days is None else now - timedelta(days=retention_days)


class Retention:
    """Purges apps' logs down to their retention, logging each chunk in the app's log."""

    def __init__(
        self,
        store: Store,
        metadata_max_bytes: int = 10_240,
        chunk: int = PURGE_CHUNK,
        hold: float | None = HOLD_SECONDS,
    ) -> None:
        """``chunk`` entries at most a transaction, sized to hold the lock ``hold`` seconds
        (None: always ``chunk``)."""
        self._store = store
        self._max = metadata_max_bytes
        self._chunk = chunk
        self._hold = hold
        self._rests = store.dialect == "sqlite"

    def purge(
        self, app_id: str, cutoff: datetime, by: Actor, origin: Origin, *, dry_run: bool = False
    ) -> PurgeReport:
        """Erase the content of the app's entries older than ``cutoff`` that nothing keeps.

        The log's own records (``RESERVED_ACTIONS``) are kept: they account for every stub that
        retention and erasure leave, and `verify` checks that they do.
        """
        if dry_run:
            with self._store.admin_view() as tx:
                if tx.settings(app_id) is None:
                    raise LookupError(app_id)
                count = tx.purgeable(app_id, cutoff, RESERVED_ACTIONS)
            return PurgeReport(app_id, cutoff, count, 0)
        erased, entries = 0, []
        size = self._chunk if self._hold is None else min(self._chunk, 4 * MIN_CHUNK)
        while True:
            with self._store.admin_tx() as tx:
                started = time.monotonic()  # the lock is held from here (BEGIN IMMEDIATE took it)
                if tx.settings(app_id) is None:
                    raise LookupError(app_id)
                holds = tx.holds(app_id)
                if any(hold.subject.whole_app for hold in holds):
                    break  # the whole app is held: nothing of it is erased

                chunk = tx.purge(app_id, cutoff, size, RESERVED_ACTIONS, _held_by(holds))
                if chunk is None:
                    break
                if not chunk.erased:
                    continue  # only the log's own records were that old: nothing to account for
                event = EventWrite(
                    action="retention.purge", target_type="app", target_id=app_id,
                    metadata={"from_seq": chunk.from_seq, "to_seq": chunk.to_seq,
                              "erased": chunk.erased, "cutoff": format_time(cutoff)},
                )  # fmt: skip
                pending = prepare(
                    app_id, new_entry_id(), event, by, origin, self._max, kind="admin"
                )
                built = append_groups(tx, app_id, [[pending]], datetime.now(UTC))
            held = time.monotonic() - started
            erased += chunk.erased
            entries.append(built.stored[0][0])
            if self._hold is not None:
                size = next_chunk(size, held, self._hold, self._chunk)
            if self._rests:
                # The chunk's pages are copied from the WAL into the file now, while the purge
                # rests, rather than by whichever writer's commit next finds the WAL over its
                # limit (a checkpoint of a purge's pages held single writes up to ~100 ms).
                resting = time.monotonic()
                self._store.checkpoint_wal(passive=True)
                time.sleep(max(0.0, min(held, PAUSE_MAX_SECONDS) - (time.monotonic() - resting)))
        if entries:
            self._store.checkpoint_wal()
        return PurgeReport(app_id, cutoff, erased, len(entries), tuple(entries))

    def run(self, now: datetime, by: Actor, origin: Origin) -> list[PurgeReport]:
        """Purge each app with a retention that no other node is purging; one failure stops none."""
        reports = []
        for app in self._store.list_apps():
            cutoff = cutoff_of(app.retention_days, now)
            if cutoff is None:
                continue
            try:
                with self._store.purge_lease(app.id) as mine:
                    if mine:  # otherwise another node is purging this app now
                        reports.append(self.purge(app.id, cutoff, by, origin))
            except Exception:
                log.exception("the purge of %s failed; it runs again at the next interval", app.id)
        return reports
