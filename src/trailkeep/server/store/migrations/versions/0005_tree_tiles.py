"""The tree's hashes as C2SP tlog-tiles: ``tree_nodes`` becomes ``tree_tiles``.

A row per tree node cost about a sixth of SQLite's work per appended entry: a tree of ``n``
leaves has ``2n - 1`` nodes, each a row and a B-tree entry. A tile holds up to 256 consecutive
hashes of one tree level (tile level ``t`` holds tree level ``8t``, tile level 0 the leaf
hashes); every node between two tile levels is computed from the tile below it. That is
``n * 256/255`` hashes in about ``n / 255`` rows, and a proof reads at most one row per tile
level.

Tile ``(level, idx, width)`` holds the hashes at indexes ``idx * 256`` to
``idx * 256 + width - 1`` of its tree level, concatenated. The appending transaction inserts the
wider version of a tile and then deletes the partial one it extends, so a tile's rows only grow.
The guards say exactly that: no UPDATE, no TRUNCATE, and a DELETE only of a partial tile that a
wider stored version of it extends byte for byte. The widest version of a tile can therefore
never go, and neither can any hash it holds. On PostgreSQL the service role may also DELETE
from ``tree_tiles``, unlike the other append-only tables: there the trigger is the only guard.

The existing nodes are copied into tiles, one app and tree level at a time, read in chunks of
the primary key and written in batches, so a log of millions of nodes is never all in memory.
A tree level whose indexes are not ``0 .. (size >> level) - 1`` stops the migration: no tile is
made from a tree that is not whole. ``tree_nodes``, and its triggers with it, is then dropped.

On SQLite ``tree_tiles`` is an ordinary rowid table: its rows are up to 8 KiB, and SQLite
advises ``WITHOUT ROWID`` only for small rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ROLE = "trailkeep_service"  # 0002's restricted service role
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
READ_CHUNK = 16 * TILE_WIDTH  # nodes per read
WRITE_BATCH = 64  # tiles per insert: at most 512 KiB of hashes

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER tree_tiles_no_update BEFORE UPDATE ON tree_tiles
       BEGIN SELECT RAISE(ABORT, 'trailkeep: tree tiles are append-only'); END""",
    # substr() and length() of a BLOB count bytes, and the CHECK keeps `hashes` a BLOB.
    f"""CREATE TRIGGER tree_tiles_no_delete BEFORE DELETE ON tree_tiles
       WHEN NOT (OLD.width < {TILE_WIDTH} AND EXISTS (
         SELECT 1 FROM tree_tiles AS w
         WHERE w.app_id = OLD.app_id AND w.level = OLD.level AND w.idx = OLD.idx
           AND w.width > OLD.width AND substr(w.hashes, 1, length(OLD.hashes)) = OLD.hashes))
       BEGIN SELECT RAISE(ABORT, 'trailkeep: a tree tile may go only when a wider one extends it');
       END""",
]

_POSTGRES_TRIGGERS = [
    f"""CREATE FUNCTION trailkeep_tiles_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.width < {TILE_WIDTH} AND EXISTS (
              SELECT 1 FROM tree_tiles AS w
              WHERE w.app_id = OLD.app_id AND w.level = OLD.level AND w.idx = OLD.idx
                AND w.width > OLD.width
                AND substring(w.hashes FROM 1 FOR octet_length(OLD.hashes)) = OLD.hashes) THEN
           RETURN OLD;
         END IF;
         RAISE EXCEPTION 'trailkeep: tree tile %/% (width %) of % may go only when a wider one '
                         'extends it', OLD.level, OLD.idx, OLD.width, OLD.app_id;
       END $$""",
    """CREATE TRIGGER tree_tiles_no_update BEFORE UPDATE ON tree_tiles
       FOR EACH ROW EXECUTE FUNCTION trailkeep_refuse()""",
    """CREATE TRIGGER tree_tiles_no_delete BEFORE DELETE ON tree_tiles
       FOR EACH ROW EXECUTE FUNCTION trailkeep_tiles_delete()""",
    """CREATE TRIGGER tree_tiles_no_truncate BEFORE TRUNCATE ON tree_tiles
       FOR EACH STATEMENT EXECUTE FUNCTION trailkeep_refuse()""",
]

_TILES = sa.table(
    "tree_tiles",
    sa.column("app_id", sa.String),
    sa.column("level", sa.SmallInteger),
    sa.column("idx", sa.BigInteger),
    sa.column("width", sa.SmallInteger),
    sa.column("hashes", sa.LargeBinary),
)


class TreeNodesError(RuntimeError):
    """``tree_nodes`` does not hold a whole tree, so no tiles are made from it."""


def upgrade() -> None:
    """Create ``tree_tiles``, fill it from ``tree_nodes``, drop that, guard the tiles."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    length = "octet_length" if postgres else "length"
    blob = "" if postgres else " AND typeof(hashes) = 'blob'"
    op.create_table(
        "tree_tiles",
        sa.Column(
            "app_id", sa.String(64, collation="C") if postgres else sa.String(64), primary_key=True
        ),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("idx", sa.BigInteger, primary_key=True),
        sa.Column("width", sa.SmallInteger, primary_key=True),
        sa.Column("hashes", sa.LargeBinary, nullable=False),
        sa.CheckConstraint(
            f"width BETWEEN 1 AND {TILE_WIDTH} AND {length}(hashes) = {HASH_SIZE} * width{blob}",
            name="tree_tiles_shape",
        ),
    )
    batch: list[dict[str, object]] = []
    for app_id in _apps(bind):
        for row in _tiles_of(bind, app_id):
            batch.append(row)
            if len(batch) == WRITE_BATCH:
                bind.execute(_TILES.insert(), batch)
                batch = []
    if batch:
        bind.execute(_TILES.insert(), batch)
    # DROP TABLE drops the table's triggers (and, on PostgreSQL, its grants) with it.
    op.drop_table("tree_nodes")
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)
    if not postgres:
        return
    if bind.execute(sa.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'")).first() is None:
        return  # 0002 warned: no role, nothing granted
    # 0002's default privileges cover only tables made by the role that ran 0002: SELECT and
    # INSERT are granted here as well, in case another owner runs this migration.
    op.execute(f"GRANT SELECT, INSERT, DELETE ON tree_tiles TO {ROLE}")


def _apps(bind: sa.Connection) -> Iterator[str]:
    """Every app with tree nodes, one index seek each."""
    app_id = bind.execute(sa.text("SELECT min(app_id) FROM tree_nodes")).scalar()
    while app_id is not None:
        yield app_id
        app_id = bind.execute(
            sa.text("SELECT min(app_id) FROM tree_nodes WHERE app_id > :app"), {"app": app_id}
        ).scalar()


def _tiles_of(bind: sa.Connection, app_id: str) -> Iterator[dict[str, object]]:
    """The tiles of one app's tree, from its nodes on tree levels 0, 8, 16, ..."""
    top = bind.execute(
        sa.text("SELECT max(level) FROM tree_nodes WHERE app_id = :app"), {"app": app_id}
    ).scalar_one()
    size = 0
    for level in range(0, int(top) + 1, TILE_HEIGHT):
        count = 0
        tile: list[bytes] = []
        for idx, digest in _nodes(bind, app_id, level):
            if idx != count:
                raise TreeNodesError(
                    f"app {app_id}: tree level {level} has node {idx} where {count} should be;"
                    " tree_nodes does not hold a whole tree, so no tiles are made from it"
                )
            digest = bytes(digest)
            if len(digest) != HASH_SIZE:
                raise TreeNodesError(f"app {app_id}: node {level}/{idx} is not {HASH_SIZE} bytes")
            tile.append(digest)
            count += 1
            if len(tile) == TILE_WIDTH:
                yield _tile(app_id, level, idx // TILE_WIDTH, tile)
                tile = []
        if tile:
            yield _tile(app_id, level, count // TILE_WIDTH, tile)
        if level == 0:
            size = count
        elif count != size >> level:
            raise TreeNodesError(
                f"app {app_id}: tree level {level} has {count} nodes, but {size} leaves make"
                f" {size >> level}; tree_nodes does not hold a whole tree"
            )


def _nodes(bind: sa.Connection, app_id: str, level: int) -> Iterator[tuple[int, bytes]]:
    """(idx, hash) of one tree level of one app, in order, read a chunk of the key at a time."""
    select = "SELECT idx, hash FROM tree_nodes WHERE app_id = :app AND level = :level"
    order = " ORDER BY idx LIMIT :chunk"
    query, params = sa.text(select + order), {"app": app_id, "level": level, "chunk": READ_CHUNK}
    while True:
        rows = bind.execute(query, params).all()
        for idx, digest in rows:
            yield int(idx), digest
        if len(rows) < READ_CHUNK:
            return
        query = sa.text(select + " AND idx > :after" + order)
        params["after"] = int(rows[-1][0])


def _tile(app_id: str, level: int, index: int, hashes: list[bytes]) -> dict[str, object]:
    return {
        "app_id": app_id,
        "level": level // TILE_HEIGHT,
        "idx": index,
        "width": len(hashes),
        "hashes": b"".join(hashes),
    }


def downgrade() -> None:
    """Refused: an audit log's schema is never dropped by a migration."""
    raise RuntimeError("trailkeep migrations do not go down")
