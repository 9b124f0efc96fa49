"""Counts by day and hour from seq ranges (store/histogram.py), on SQLite and PostgreSQL.

The log spans several days and a hundred hours, retention has erased a run of its oldest
entries (keeping some: gaps in the seqs), and every filter's counts are checked against the
stored rows counted here, in Python, one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from bench import datagen
from sqlalchemy import select

from tests.conftest import BACKENDS
from tests.pg import PostgresCluster
from tests.signers import new_secret_box
from trailkeep.log.query import Filters
from trailkeep.server import provision
from trailkeep.server.store import Store, histogram, schema

pytestmark = pytest.mark.timeout(180)
END = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@dataclass
class Row:
    """One stored entry's columns, as the filters see them."""

    seq: int
    time: datetime
    action: str
    kind: str
    actor: str
    target_type: str | None
    target_id: str | None
    paths: frozenset[str]


@dataclass
class Log:
    """The store, the app and its rows as stored."""

    store: Store
    app_id: str
    rows: list[Row]


def _rows(store: Store, app_id: str) -> list[Row]:
    events, changed = schema.events, schema.event_changes
    with store.reader_engine.connect() as c:
        paths: dict[int, set[str]] = {}
        for seq, path in c.execute(
            select(changed.c.seq, changed.c.path).where(changed.c.app_id == app_id)
        ):
            paths.setdefault(seq, set()).add(path)
        found = c.execute(
            select(events.c.seq, events.c.time, events.c.action, events.c.kind,
                   events.c.actor_id, events.c.target_type, events.c.target_id)
            .where(events.c.app_id == app_id).order_by(events.c.seq)
        ).all()  # fmt: skip
    return [
        Row(r.seq, r.time.astimezone(UTC) if r.time.tzinfo else r.time.replace(tzinfo=UTC),
            r.action, r.kind, r.actor_id, r.target_type, r.target_id,
            frozenset(paths.get(r.seq, ())))
        for r in found
    ]  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def log(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    """Two apps of 1,500 entries over five days; the first's oldest 200 purged, some kept."""
    cluster: PostgresCluster | None = None
    name = ""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('buckets') / 'trailkeep.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.database()
        url, name = database.service_url, database.name
    store = Store(url, secrets=new_secret_box())
    store.migrate()
    app, other = provision.create_app(store, "buckets"), provision.create_app(store, "other")
    datagen.fill(store, [app.app_id, other.app_id], 1_500, days=5, end=END)
    with store.admin_tx() as tx:
        # Retention's erasure: rows go (stubs stay), order.view entries kept: seqs with gaps.
        tx.purge(app.app_id, END, 200, frozenset({"order.view"}))
    yield Log(store, app.app_id, _rows(store, app.app_id))
    store.close()
    if cluster is not None:
        cluster.drop(name)


def _matches(row: Row, f: Filters) -> bool:
    checks = [
        not f.actions or row.action in f.actions,
        f.action_prefix is None or row.action.startswith(f.action_prefix),
        row.action not in f.exclude_actions,
        f.actor is None or row.actor == f.actor,
        f.target_type is None or row.target_type == f.target_type,
        f.target_id is None or row.target_id == f.target_id,
        f.kind is None or row.kind == f.kind,
        f.since is None or row.time >= f.since,
        f.until is None or row.time <= f.until,
        f.changed_path is None or f.changed_path in row.paths,
    ]
    return all(checks)


def _key(row: Row, unit: str) -> str:
    return row.time.strftime("%Y-%m-%dT%H:00:00Z" if unit == "hour" else "%Y-%m-%d")


def _cases(rows: list[Row]) -> list[Filters]:
    middle = rows[len(rows) // 2]
    day = middle.time.replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        Filters(),
        Filters(actions=("order.update",)),
        Filters(actions=("order.update", "user.view", "nope.never")),
        Filters(action_prefix="order."),
        Filters(action_prefix="nope."),
        Filters(actor=middle.actor),
        Filters(target_type="invoice"),
        Filters(target_type=middle.target_type, target_id=middle.target_id),
        Filters(kind="admin"),
        Filters(kind="user"),
        Filters(changed_path=datagen.COMMON_PATH),
        Filters(changed_path=datagen.RARE_PATH),
        Filters(since=middle.time),
        Filters(until=middle.time),
        Filters(since=day, until=day + timedelta(days=1, microseconds=-1)),
        Filters(since=middle.time, until=middle.time),
        Filters(since=END + timedelta(days=1)),
        Filters(until=rows[0].time - timedelta(days=1)),
        Filters(exclude_actions=("order.view",)),
        Filters(exclude_actions=("order.view", "user.update", "nope.never"), since=middle.time),
        Filters(action_prefix="order.", exclude_actions=("order.view", "order.create")),
        Filters(actions=("order.view",), exclude_actions=("order.view",)),
        Filters(actor=middle.actor, exclude_actions=("order.view",)),
        Filters(action_prefix="order.", exclude_actions=("order.view",), kind="user"),
        Filters(changed_path=datagen.COMMON_PATH, action_prefix="user.", since=middle.time),
        Filters(target_type="invoice", since=day, until=day + timedelta(hours=3)),
    ]


@pytest.mark.parametrize("unit", ["day", "hour"])
def test_counts_by_time_are_the_rows_counted_one_by_one(log: Log, unit: str) -> None:
    assert 1_300 < len(log.rows) < 1_500  # retention erased some of the oldest, kept others
    assert any(b.seq - a.seq > 1 for a, b in zip(log.rows, log.rows[1:], strict=False))
    assert len({_key(r, "hour") for r in log.rows}) > 100  # many hours, several days
    for f in _cases(log.rows):
        want = Counter(_key(r, unit) for r in log.rows if _matches(r, f))
        got = log.store.stats(log.app_id, f, unit)  # type: ignore[arg-type]
        assert got == sorted(want.items()), f


def test_past_the_bucket_cap_the_rows_are_grouped_and_agree(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More hours than the cap: the one grouping scan answers, with the same counts."""
    fast = {f: log.store.stats(log.app_id, f, "hour") for f in _cases(log.rows)}
    monkeypatch.setattr(histogram, "MAX_BUCKETS", 3)
    for f, counted in fast.items():
        assert log.store.stats(log.app_id, f, "hour") == counted, f


def test_bucket_starts_and_keys() -> None:
    at = datetime(2026, 3, 31, 22, 59, 59, 999_999, tzinfo=UTC)
    hours = histogram.starts(at, at + timedelta(hours=2), "hour")
    assert [histogram.key(h, "hour") for h in hours] == [
        "2026-03-31T22:00:00Z", "2026-03-31T23:00:00Z", "2026-04-01T00:00:00Z",
    ]  # fmt: skip
    days = histogram.starts(at.replace(tzinfo=None), at + timedelta(days=1), "day")
    assert [histogram.key(d, "day") for d in days] == ["2026-03-31", "2026-04-01"]
    assert histogram.starts(at + timedelta(1), at, "day") == []
