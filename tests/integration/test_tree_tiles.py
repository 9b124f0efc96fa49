"""``tree_tiles`` in the database (migration 0005), on SQLite and PostgreSQL.

The guards: no UPDATE, no TRUNCATE, and a DELETE only of a partial tile that a wider stored
version extends byte for byte. And the migration itself: every tree in ``tree_nodes`` becomes
exactly its tiles, a tree with a hole in a tile level stops it with nothing changed, and
``tree_nodes`` is gone afterwards.

Everything here is raw SQL on the database, as its owner (and on PostgreSQL as the restricted
service role too): nothing goes through the store's append path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.pg import PostgresCluster
from trailkeep.log import merkle
from trailkeep.server.store.engine import MIGRATIONS, create_engines

pytestmark = pytest.mark.timeout(180)

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)
BACKENDS = [SQLITE, POSTGRES]
APP = "app_tiles"
TILE = 256
Tile = tuple[str, int, int, int, bytes]  # app_id, level, idx, width, hashes


@dataclass
class Database:
    """A database of the test's own: its backend, the owner's engine, the service's (PostgreSQL)."""

    backend: str
    owner: Engine
    service: Engine | None = None

    def rows(self) -> list[Tile]:
        """Every tile, in key order."""
        with self.owner.connect() as c:
            found = c.execute(
                text(
                    "SELECT app_id, level, idx, width, hashes FROM tree_tiles"
                    " ORDER BY app_id, level, idx, width"
                )
            ).all()
        return [(a, level, idx, width, bytes(h)) for a, level, idx, width, h in found]


def upgrade(engine: Engine, revision: str) -> None:
    """Migrate up to ``revision`` in one transaction, as ``Store.migrate`` does up to head."""
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def version(engine: Engine) -> str:
    with engine.connect() as c:
        return str(c.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


@pytest.fixture(params=BACKENDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A new database with no tables at all (not even Alembic's)."""
    if request.param == "sqlite":
        # The store's own writer engine: its BEGIN makes DDL part of the migration's transaction.
        owner, reader = create_engines(f"sqlite:///{tmp_path / 'trailkeep.db'}")
        reader.dispose()
        yield Database("sqlite", owner)
        owner.dispose()
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    made = cluster.database(migrated=False)
    owner, _ = create_engines(made.owner_url)
    service, _ = create_engines(made.service_url)
    try:
        yield Database("postgres", owner, service)
    finally:
        owner.dispose()
        service.dispose()
        cluster.drop(made.name)


@pytest.fixture
def migrated(empty: Database) -> Database:
    """A database at head (0005 on an empty ``tree_nodes``)."""
    upgrade(empty.owner, "head")
    return empty


# ------------------------------------------------------------------------------------ guards


def digests(count: int, seed: int) -> list[bytes]:
    """``count`` distinct 32-byte hashes."""
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(count)]


# Hashes made of NUL bytes and two-byte UTF-8 sequences: a substr() that counted characters,
# or stopped at a NUL, would take a different prefix than the bytes compared here.
AWKWARD = [bytes([0, 0xC3, 0xA9, 0]) * 8, "é".encode() * 16, bytes(32), bytes([0xFF]) * 32]

FULL = digests(TILE, 1)
SEEDED: list[Tile] = [
    (APP, 0, 0, TILE, b"".join(FULL)),  # a full tile
    (APP, 0, 1, 3, b"".join(AWKWARD[:3])),  # a partial tile, extended by the next one
    (APP, 0, 1, 4, b"".join(AWKWARD)),
    (APP, 1, 0, 1, FULL[0]),  # a partial tile nothing extends
    (APP, 0, 2, 2, b"".join(AWKWARD[:2])),  # a partial tile whose wider one differs at byte 63
    (APP, 0, 2, 3, AWKWARD[0] + AWKWARD[1][:-1] + b"\x01" + AWKWARD[2]),
    ("app_tiles_other", 0, 1, 5, b"".join(AWKWARD) + FULL[5]),  # extends both, in another app
    (APP, 2, 0, 1, AWKWARD[0]),  # a partial tile extended only on another level, another index
    (APP, 3, 0, 2, AWKWARD[0] + AWKWARD[1]),
    (APP, 2, 1, 2, AWKWARD[0] + AWKWARD[1]),
]
INSERT = "INSERT INTO tree_tiles VALUES (:app, :level, :idx, :width, :hashes)"


def insert(engine: Engine, tiles: Sequence[Tile]) -> None:
    with engine.begin() as c:
        c.execute(
            text(INSERT),
            [
                {"app": a, "level": lv, "idx": i, "width": w, "hashes": h}
                for a, lv, i, w, h in tiles
            ],
        )


@pytest.fixture
def seeded(migrated: Database) -> Database:
    insert(migrated.owner, SEEDED)
    assert migrated.rows() == sorted(SEEDED)
    return migrated


def refused(engine: Engine, sql: str, match: str = "trailkeep") -> None:
    """``sql`` fails, in a transaction of its own that is rolled back."""
    with engine.connect() as c, pytest.raises(DBAPIError, match=match):
        c.execute(text(sql))


WHERE_TILE = "WHERE app_id = '{}' AND level = {} AND idx = {} AND width = {}"
REFUSED_DELETES = {
    "a full tile": WHERE_TILE.format(APP, 0, 0, TILE),
    # Another app's tile (0, 1, 5) extends it, byte for byte.
    "the widest version of a partial tile in its app": WHERE_TILE.format(APP, 0, 1, 4),
    "a partial tile nothing wider extends": WHERE_TILE.format(APP, 1, 0, 1),
    "a partial tile a wider one does not extend": WHERE_TILE.format(APP, 0, 2, 2),
    "a partial tile extended only elsewhere in its app": WHERE_TILE.format(APP, 2, 0, 1),
    "every tile of an app": f"WHERE app_id = '{APP}'",
    "every version of a tile": f"WHERE app_id = '{APP}' AND level = 0 AND idx = 1",
}


@pytest.mark.parametrize("where", REFUSED_DELETES.values(), ids=REFUSED_DELETES.keys())
def test_a_delete_of_a_tile_no_wider_version_extends_is_refused(
    seeded: Database, where: str
) -> None:
    refused(seeded.owner, f"DELETE FROM tree_tiles {where}", "may go only when a wider one")
    assert seeded.rows() == sorted(SEEDED)


def test_a_partial_tile_a_wider_one_extends_may_go(seeded: Database) -> None:
    """What the appending transaction does: the wider version in, then the narrower out."""
    with seeded.owner.begin() as c:
        gone = c.execute(text(f"DELETE FROM tree_tiles {WHERE_TILE.format(APP, 0, 1, 3)}"))
        assert gone.rowcount == 1
    assert seeded.rows() == sorted(t for t in SEEDED if t[:4] != (APP, 0, 1, 3))
    # The wider version is now the widest: it stays.
    refused(seeded.owner, f"DELETE FROM tree_tiles {WHERE_TILE.format(APP, 0, 1, 4)}")


def test_a_tile_grows_to_full_and_its_partial_versions_go(migrated: Database) -> None:
    hashes = b"".join(FULL)
    insert(migrated.owner, [(APP, 0, 0, 1, hashes[:32]), (APP, 0, 0, 100, hashes[: 100 * 32])])
    with migrated.owner.begin() as c:
        c.execute(text(INSERT), {"app": APP, "level": 0, "idx": 0, "width": TILE, "hashes": hashes})
        # Both narrower versions in one statement: each is a prefix of the full tile.
        gone = c.execute(text(f"DELETE FROM tree_tiles WHERE app_id = '{APP}' AND width < {TILE}"))
        assert gone.rowcount == 2
    assert migrated.rows() == [(APP, 0, 0, TILE, hashes)]


UPDATES = {
    "sqlite": [
        "UPDATE tree_tiles SET hashes = zeroblob(length(hashes))",
        "UPDATE tree_tiles SET app_id = 'app_elsewhere' WHERE width = 3",
        f"UPDATE tree_tiles SET width = 2, hashes = substr(hashes, 1, 64) WHERE app_id = '{APP}'"
        " AND level = 0 AND idx = 1 AND width = 3",
    ],
    "postgres": [
        "UPDATE tree_tiles SET hashes = overlay(hashes PLACING '\\x00'::bytea FROM 1)",
        "UPDATE tree_tiles SET app_id = 'app_elsewhere' WHERE width = 3",
        "UPDATE tree_tiles SET width = 2, hashes = substring(hashes FROM 1 FOR 64)"
        f" WHERE app_id = '{APP}' AND level = 0 AND idx = 1 AND width = 3",
    ],
}


@pytest.mark.parametrize("which", range(3), ids=["hashes", "app", "narrower"])
def test_an_update_is_refused(seeded: Database, which: int) -> None:
    refused(seeded.owner, UPDATES[seeded.backend][which], "append-only")
    assert seeded.rows() == sorted(SEEDED)


SHAPES = {
    "no hashes": (APP, 0, 9, 0, b""),
    "wider than a tile": (APP, 0, 9, TILE + 1, bytes(32 * (TILE + 1))),
    "a hash short": (APP, 0, 9, 2, bytes(63)),
    "a byte over": (APP, 0, 9, 2, bytes(65)),
}


@pytest.mark.parametrize("tile", SHAPES.values(), ids=SHAPES.keys())
def test_a_tile_must_hold_width_hashes(migrated: Database, tile: Tile) -> None:
    with pytest.raises(IntegrityError, match="tree_tiles_shape"):
        insert(migrated.owner, [tile])
    assert migrated.rows() == []


@pytest.mark.parametrize("empty", [SQLITE], indirect=True)
def test_sqlite_compares_blobs_byte_for_byte(migrated: Database) -> None:
    """What the delete guard relies on: substr() and length() of a BLOB count bytes."""
    blob = b"".join(AWKWARD)
    with migrated.owner.connect() as c:

        def one(sql: str, **params: Any) -> Any:
            return c.execute(text(sql), params).scalar_one()

        assert one("SELECT typeof(substr(:b, 1, 40))", b=blob) == "blob"
        assert one("SELECT length(:b)", b=AWKWARD[1]) == 32  # 16 characters as text
        assert one("SELECT substr(:b, 1, 40)", b=blob) == blob[:40]
        assert one("SELECT substr(:b, 33, 32) = :p", b=blob, p=AWKWARD[1]) == 1
        assert one("SELECT substr(:b, 1, 65) = :p", b=blob, p=blob[:64] + b"\x01") == 0
        # A text value is not a tile's hashes, even of the right length in bytes.
        with pytest.raises(IntegrityError, match="tree_tiles_shape"):
            c.execute(
                text(INSERT), {"app": APP, "level": 0, "idx": 9, "width": 1, "hashes": "a" * 32}
            )


@pytest.mark.parametrize("empty", [POSTGRES], indirect=True)
def test_postgres_refuses_a_truncate(seeded: Database) -> None:
    refused(seeded.owner, "TRUNCATE tree_tiles", "append-only")
    assert seeded.rows() == sorted(SEEDED)


@pytest.mark.parametrize("empty", [POSTGRES], indirect=True)
def test_the_service_role_may_append_and_drop_only_an_extended_tile(seeded: Database) -> None:
    service = seeded.service
    assert service is not None
    with service.connect() as c:
        assert c.execute(text("SELECT current_user")).scalar_one() == "trailkeep_test_app"
    for where in REFUSED_DELETES.values():
        refused(service, f"DELETE FROM tree_tiles {where}", "may go only when a wider one")
    for sql in ("UPDATE tree_tiles SET width = width", "TRUNCATE tree_tiles"):
        with service.connect() as c, pytest.raises(DBAPIError) as failed:
            c.execute(text(sql))
        assert isinstance(failed.value.orig, psycopg.errors.InsufficientPrivilege), sql
    assert seeded.rows() == sorted(SEEDED)
    # What the append does, it may.
    grown = (APP, 1, 0, 2, FULL[0] + FULL[1])
    insert(service, [grown])
    with service.begin() as c:
        for where in (WHERE_TILE.format(APP, 1, 0, 1), WHERE_TILE.format(APP, 0, 1, 3)):
            assert c.execute(text(f"DELETE FROM tree_tiles {where}")).rowcount == 1
    dropped = {(APP, 1, 0, 1), (APP, 0, 1, 3)}
    assert seeded.rows() == sorted([grown, *(t for t in SEEDED if t[:4] not in dropped)])


# ------------------------------------------------------------------------- migration 0005


def tree(app_id: str, size: int, seed: int) -> list[tuple[str, int, int, bytes]]:
    """The tree_nodes rows of a real tree of ``size`` leaves: every complete node."""
    written, _ = merkle.append_leaves(0, [], digests(size, seed))
    return [(app_id, level, idx, digest) for (level, idx), digest in written]


def tiles_of(nodes: Sequence[tuple[str, int, int, bytes]]) -> list[Tile]:
    """The tiles of trees' nodes: tree levels 0, 8, 16, ... in chunks of 256 from index 0."""
    levels: dict[tuple[str, int], dict[int, bytes]] = {}
    for app_id, level, idx, digest in nodes:
        if level % 8 == 0:
            levels.setdefault((app_id, level), {})[idx] = digest
    tiles = []
    for (app_id, level), found in levels.items():
        hashes = [found[i] for i in range(len(found))]
        for first in range(0, len(hashes), TILE):
            chunk = hashes[first : first + TILE]
            tiles.append((app_id, level // 8, first // TILE, len(chunk), b"".join(chunk)))
    return sorted(tiles)


def add_nodes(engine: Engine, nodes: Sequence[tuple[str, int, int, bytes]]) -> None:
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO tree_nodes VALUES (:app, :level, :idx, :hash)"),
            [{"app": a, "level": lv, "idx": i, "hash": h} for a, lv, i, h in nodes],
        )


def has_table(engine: Engine, name: str) -> bool:
    return sa.inspect(engine).has_table(name)


def test_0005_turns_every_tree_into_its_tiles(empty: Database) -> None:
    upgrade(empty.owner, "0004")
    # 70,000 leaves: 273 full tiles and one of 112 on tile level 0, a full and one of 17 on
    # level 1, one of 1 on level 2. The other apps: a full tile and a partial, and a partial.
    nodes = tree("app_big", 70_000, 1) + tree("app_small", 300, 2) + tree("app_tiny", 3, 3)
    add_nodes(empty.owner, nodes)
    expected = tiles_of(nodes)
    widths = {
        (a, level): [t[3] for t in expected if t[:2] == (a, level)] for a, level, *_ in expected
    }
    assert widths == {
        ("app_big", 0): [TILE] * 273 + [112], ("app_big", 1): [TILE, 17], ("app_big", 2): [1],
        ("app_small", 0): [TILE, 44], ("app_small", 1): [1], ("app_tiny", 0): [3],
    }  # fmt: skip

    upgrade(empty.owner, "0005")

    assert version(empty.owner) == "0005"
    assert empty.rows() == expected
    assert not has_table(empty.owner, "tree_nodes")
    refused(empty.owner, "UPDATE tree_tiles SET width = width", "append-only")
    refused(empty.owner, "DELETE FROM tree_tiles WHERE app_id = 'app_tiny'", "a wider one")
    with empty.owner.connect() as c:
        if empty.backend == "sqlite":
            ddl = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'tree_tiles'"))
            assert "WITHOUT ROWID" not in ddl.scalar_one().upper()  # rows up to 8 KiB
            triggers = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tree%'"
            assert set(c.execute(text(triggers)).scalars()) == {
                "tree_tiles_no_update", "tree_tiles_no_delete",
            }  # fmt: skip
        else:
            collation = (
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_name = 'tree_tiles' AND column_name = 'app_id'"
            )
            assert c.execute(text(collation)).scalar_one() == "C"
            triggers = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tree_tiles'::regclass"
            assert set(c.execute(text(triggers)).scalars()) == {
                "tree_tiles_no_update", "tree_tiles_no_delete", "tree_tiles_no_truncate",
            }  # fmt: skip
            rights = {
                right: c.execute(
                    text("SELECT has_table_privilege('trailkeep_service', 'tree_tiles', :r)"),
                    {"r": right},
                ).scalar_one()
                for right in ("SELECT", "INSERT", "DELETE", "UPDATE", "TRUNCATE")
            }
            assert rights == {
                "SELECT": True, "INSERT": True, "DELETE": True, "UPDATE": False, "TRUNCATE": False,
            }  # fmt: skip


def test_0005_on_an_empty_log_makes_no_tiles(empty: Database) -> None:
    upgrade(empty.owner, "0005")
    assert version(empty.owner) == "0005"
    assert empty.rows() == []
    assert not has_table(empty.owner, "tree_nodes")


def _without(
    nodes: list[tuple[str, int, int, bytes]], level: int, idx: int
) -> list[tuple[str, int, int, bytes]]:
    return [n for n in nodes if n[1:3] != (level, idx)]


# In a tree of 512 leaves, whose tile levels hold 512 and 2 hashes.
HOLES = {
    "a leaf missing": (0, 300, "node 301 where 300 should be"),
    "the first leaf missing": (0, 0, "node 1 where 0 should be"),
    "the last level-8 node missing": (8, 1, "tree level 8 has 1 nodes, but 512 leaves make 2"),
    "the last leaf missing": (0, 511, "tree level 8 has 2 nodes, but 511 leaves make 1"),
}


@pytest.mark.parametrize(("level", "idx", "match"), HOLES.values(), ids=HOLES.keys())
def test_0005_refuses_a_tree_with_a_hole_and_changes_nothing(
    empty: Database, level: int, idx: int, match: str
) -> None:
    upgrade(empty.owner, "0004")
    nodes = tree("app_whole", 20, 4) + _without(tree("app_holed", 512, 5), level, idx)
    add_nodes(empty.owner, nodes)
    with pytest.raises(RuntimeError, match=match):
        upgrade(empty.owner, "head")
    assert version(empty.owner) == "0004"
    assert not has_table(empty.owner, "tree_tiles")
    with empty.owner.connect() as c:
        stored = c.execute(text("SELECT app_id, level, idx, hash FROM tree_nodes")).all()
    assert sorted((a, lv, i, bytes(h)) for a, lv, i, h in stored) == sorted(nodes)
