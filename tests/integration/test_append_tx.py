"""The appending transaction's own statements, on a real SQLite file and a real PostgreSQL.

They run through the database driver as fixed text (not SQLAlchemy expressions), so each
dialect's parameters, times and results are checked here rather than trusted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.integration.writer_inputs import APP, pending_entries, store_with_app
from tests.pg import PostgresCluster
from tests.signers import new_secret_box
from trailkeep.server.ingest.writer import Idempotency, IdempotencyConflict, Ingest
from trailkeep.server.store import IdempotencyRecord, Store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store holding the app ``APP``, on each backend."""
    if request.param == "sqlite":
        made = store_with_app(tmp_path / "tx.db")
        yield made
        made.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    database = cluster.database()
    made = Store(database.service_url, secrets=new_secret_box())
    made.create_app(APP, "ingest", "s" * 32)
    yield made
    made.close()
    cluster.drop(database.name)


def test_reserve_hands_out_seqs_and_a_time_that_never_goes_back(store: Store) -> None:
    t0 = datetime(2026, 11, 24, 9, 30, 15, 123_456, tzinfo=UTC)
    with store.append_tx() as tx:
        assert tx.reserve(APP, 3, t0) == (0, t0)
        # A clock that stepped back: the entries keep the app's last time.
        assert tx.reserve(APP, 2, t0 - timedelta(hours=1)) == (3, t0)
    later = t0 + timedelta(microseconds=1)
    with store.append_tx() as tx:
        assert tx.reserve(APP, 1, later) == (5, later)
    assert store.log_size(APP) == 6


def test_reserve_refuses_an_unknown_app_and_takes_nothing(store: Store) -> None:
    with pytest.raises(LookupError, match="no such app: app_nowhere"), store.append_tx() as tx:
        tx.reserve("app_nowhere", 1, datetime.now(UTC))
    assert store.log_size(APP) == 0


def test_a_remembered_key_is_found_and_an_expired_one_is_forgotten(store: Store) -> None:
    record = IdempotencyRecord(b"\x01" * 32, 7, 3)
    with store.append_tx() as tx:
        assert tx.idempotency(APP, "k-1", timedelta(hours=1)) is None
        tx.remember(APP, "k-1", record)
    with store.append_tx() as tx:
        assert tx.idempotency(APP, "k-1", timedelta(hours=1)) == record
        assert tx.idempotency(APP, "k-2", timedelta(hours=1)) is None
    with store.append_tx() as tx:
        assert tx.idempotency(APP, "k-1", timedelta(0)) is None  # expired: deleted
    with store.append_tx() as tx:
        assert tx.idempotency(APP, "k-1", timedelta(hours=1)) is None


def test_the_writer_replays_a_key_until_it_expires(store: Store) -> None:
    async def main() -> None:
        key = Idempotency.of("k-1", b"body")
        ingest = Ingest(store, idempotency_ttl=timedelta(hours=1))
        await ingest.start()
        first = await ingest.append(APP, pending_entries(2), key)
        again = await ingest.append(APP, pending_entries(2), key)
        assert again.replayed
        assert again.first_seq == first.first_seq == 0
        assert again.entries == first.entries
        with pytest.raises(IdempotencyConflict):
            await ingest.append(APP, pending_entries(2), Idempotency.of("k-1", b"another body"))
        await ingest.stop()
        # The same key, remembered for no time at all: appended again, at the next seqs.
        forgetful = Ingest(store, idempotency_ttl=timedelta(0))
        await forgetful.start()
        fresh = await forgetful.append(APP, pending_entries(2), key)
        await forgetful.stop()
        assert not fresh.replayed
        assert fresh.first_seq == 2

    asyncio.run(main())
    assert store.log_size(APP) == 4
