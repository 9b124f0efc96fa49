"""What the writer's tests hand it: a migrated SQLite store with one app, and pending entries."""

from __future__ import annotations

from pathlib import Path

from tests.signers import new_secret_box
from trailkeep.log.record import Actor, EventWrite, Origin, PendingEntry, prepare
from trailkeep.server.ids import new_entry_id
from trailkeep.server.store import Store

APP = "app_ingest"
ACTOR = Actor(type="api_key", id="key_test", name="test")
ORIGIN = Origin(ip="127.0.0.1", user_agent="pytest")


def store_with_app(path: Path) -> Store:
    """A migrated SQLite store at ``path`` holding the app ``APP``."""
    made = Store(f"sqlite:///{path}", secrets=new_secret_box())
    made.migrate()
    made.create_app(APP, "ingest", "s" * 32)
    return made


def pending_entries(count: int, app_id: str = APP) -> list[PendingEntry]:
    """``count`` validated entries, as the write route hands them to the writer."""
    return [
        prepare(app_id, new_entry_id(), EventWrite(action=f"test.n{n}"), ACTOR, ORIGIN, 10_240)
        for n in range(count)
    ]
