"""The SQLite schema after every migration: its indexes, the plans reads get, and 0004's rebuild.

Plans are asked of a real SQLite file holding a real log: every filter a user can give alone, and
the target type with an id, must seek an index (a full scan is ~0.5 s at 1,000,000 entries).
0005, which replaces ``tree_nodes`` by ``tree_tiles``, is tested in test_tree_tiles.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from bench import datagen
from bench.suite_reads import plan, uses_index
from sqlalchemy import create_engine

from tests.signers import new_secret_box
from trailkeep.log.query import Filters
from trailkeep.server.store import Store
from trailkeep.server.store.engine import MIGRATIONS

pytestmark = pytest.mark.timeout(120)

APP = "app_plans"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A real log of 3,000 entries in a SQLite file, written by the store's own writer."""
    url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'trailkeep.db'}"
    store = Store(url, secrets=new_secret_box())
    store.migrate()
    store.create_app(APP, "plans", "s" * 32)
    datagen.fill(store, [APP], 3_000)
    yield store
    store.close()


def _middle(store: Store) -> dict[str, Any]:
    entry: dict[str, Any] = orjson.loads(store.entries(APP, 1_500, 1)[0])
    return entry


CASES: dict[str, Any] = {
    "action": lambda m: Filters(actions=(m["action"],)),
    "action_prefix": lambda m: Filters(action_prefix=m["action"].split(".")[0] + "."),
    "actor": lambda m: Filters(actor=m["actor"]["id"]),
    "kind": lambda m: Filters(kind=m["kind"]),
    "target_type": lambda m: Filters(target_type=m["target"]["type"]),
    "target_id": lambda m: Filters(target_id=m["target"]["id"]),
    "target_type+target_id": lambda m: Filters(
        target_type=m["target"]["type"], target_id=m["target"]["id"]
    ),
}


@pytest.mark.parametrize("before", [None, 1_000], ids=["first page", "deeper page"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_single_filter_seeks_an_index(store: Store, case: str, before: int | None) -> None:
    filters = CASES[case](_middle(store))
    lines = plan(store, APP, filters, before)  # the benchmark's own EXPLAIN of each statement
    assert uses_index(lines), f"{case}: a full scan in {lines}"


def test_a_target_with_its_type_seeks_the_id_index_not_the_types_long_run(store: Store) -> None:
    middle = _middle(store)
    filters = CASES["target_type+target_id"](middle)
    steps = [line for line in plan(store, APP, filters, None) if not line.startswith("--")]
    assert any("events_by_target_id" in s for s in steps), steps
    assert not any("events_by_target_type" in s for s in steps), steps
    found = store.page(APP, filters, None, 100, True)
    assert found, "the middle entry's own target must match"
    for _, entry in found:
        target = orjson.loads(entry)["target"]
        assert (target["type"], target["id"]) == (middle["target"]["type"], middle["target"]["id"])


def test_only_one_index_is_keyed_by_a_value_that_arrives_in_no_order(store: Store) -> None:
    """Each such index costs about a page write per appended entry (see migration 0004)."""
    with store.reader_engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            " AND sql IS NOT NULL"
        ).all()
    columns = {name: sql.split("(", 1)[1] for name, sql in rows}
    assert "events_by_target" not in columns
    assert columns["events_by_target_type"].replace(" ", "") == "app_id,target_type,seq)"
    assert columns["events_by_target_id"].replace(" ", "") == "app_id,target_id,seq)"


def _upgrade(path: Path, revision: str) -> None:
    """Migrate the SQLite file at ``path`` up to ``revision``, as ``Store.migrate`` does head."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def test_0004_rebuilds_tree_nodes_without_rowid_and_keeps_every_node_and_guard(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _upgrade(path, "0003")
    nodes = [("app_old", level, idx, bytes([level, idx % 256]) * 16)
             for level in range(3) for idx in range(50 >> level)]  # fmt: skip
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO tree_nodes VALUES (?, ?, ?, ?)", nodes)
    _upgrade(path, "0004")  # not head: 0005 replaces tree_nodes by tree_tiles

    db = sqlite3.connect(path)
    try:
        ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = 'tree_nodes'").fetchone()[0]
        assert "WITHOUT ROWID" in ddl
        stored = db.execute("SELECT app_id, level, idx, hash FROM tree_nodes").fetchall()
        assert sorted(stored) == sorted(nodes)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE tree_nodes SET hash = zeroblob(32) WHERE idx = 0")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM tree_nodes WHERE idx = 0")
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"events_by_target_type", "events_by_target_id"} <= names
        assert "events_by_target" not in names
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0004",)
    finally:
        db.close()
