"""The Parquet columns of a file's entries, derived in Arrow's C++ rather than per entry in Python.

A Python parse of each entry and a Python loop per cell were what bounded the export's rate and
``verify --export``'s (bench/report_notes.md). Here Arrow's JSON reader parses a file's lines,
as one NDJSON block, into the scalar and struct columns (an explicit schema; fields it does not
name are ignored). ``metadata`` and ``changes`` are JSON text: for an entry exactly as the server
writes it (its bytes hash to its leaf hash: ``committed_leaf``, the verification core's check)
they are sliced from the entry itself. RFC 8785 sorts the keys and the server writes no
top-level key between them and the next one (``record.prepare``), so ``"metadata":`` is
followed by the canonical metadata object up to ``,"seq":`` and ``"changes":`` by the canonical
array up to ``,"context":``. A slice is taken only where each key occurs once in the line
(nested keys of the same name would make the search ambiguous). Every other row (a stub, a
line not in the server's form, an ambiguous one) is derived from its Python parse, as every row
was before; both ways give the value's canonical (RFC 8785) text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from trailkeep.cli.common import CliError
from trailkeep.log import jcs
from trailkeep.log.verify import committed_leaf

if TYPE_CHECKING:
    import pyarrow as pa

_CONTEXT: Final = ("ip", "user_agent", "project", "server", "request_id", "forwarded_by")
_ACTOR: Final = ("type", "id", "name", "role")
_TARGET: Final = ("type", "id")
_TEXT_COLUMNS: Final = (
    "id", "action", "kind", "actor_type", "actor_id", "actor_name", "actor_role", "target_type",
    "target_id", *_CONTEXT,
)  # fmt: skip
_META: Final = b'"metadata":'
_SEQ: Final = b'"seq":'
_SEQ_END: Final = b',"seq":'
_CHANGES: Final = b'"changes":'
_CONTEXT_KEY: Final = b'"context":'
_CONTEXT_END: Final = b',"context":'


def arrow() -> Any:
    """pyarrow, or a clear error naming the extra that installs it."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.json
        import pyarrow.parquet
    except ImportError:
        raise CliError(
            "Parquet needs pyarrow: pip install 'trailkeep[export]' (or use --format ndjson)"
        ) from None
    return pyarrow


def schema() -> pa.Schema:
    """The Parquet schema: typed columns, JSON columns, and the entry's exact bytes."""
    pa = arrow()
    text = pa.string()
    return pa.schema(
        [("seq", pa.int64()), ("time", pa.timestamp("us", tz="UTC"))]
        + [(name, text) for name in _TEXT_COLUMNS]
        + [("metadata", text), ("changes", text), ("erased", pa.bool_()),
           ("erased_by", text), ("leaf_hash", text), ("entry", text)]
    )  # fmt: skip


def _json_schema(pa: Any) -> Any:
    text = pa.string()

    def struct(names: Sequence[str]) -> Any:
        return pa.struct([(name, text) for name in names])

    # Empty structs: only whether metadata and changes are there (and objects) is read here.
    return pa.schema([
        ("seq", pa.int64()), ("time", text), ("id", text), ("action", text), ("kind", text),
        ("actor", struct(_ACTOR)), ("target", struct(_TARGET)), ("context", struct(_CONTEXT)),
        ("metadata", pa.struct([])), ("changes", pa.list_(pa.struct([]))),
        ("erased", pa.bool_()), ("erased_by", text), ("leaf_hash", text),
    ])  # fmt: skip


def _canonical_or_none(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return jcs.canonical(value).decode()
    except (jcs.CanonicalizationError, ValueError, TypeError):
        # Not a value the server could have committed: its plain JSON, still faithful.
        return orjson.dumps(value).decode()


def _python_table(lines: Sequence[bytes]) -> Any:
    """The rows of these lines from their Python parse: stubs, and lines Arrow cannot take."""
    pa = arrow()
    docs = [orjson.loads(line) for line in lines]
    actors = [e.get("actor") or {} for e in docs]
    targets = [e.get("target") or {} for e in docs]
    contexts = [e.get("context") or {} for e in docs]
    text: dict[str, list[Any]] = {
        "id": [e.get("id") for e in docs],
        "action": [e.get("action") for e in docs],
        "kind": [e.get("kind") for e in docs],
        **{f"actor_{name}": [a.get(name) for a in actors] for name in _ACTOR},
        **{f"target_{name}": [t.get(name) for t in targets] for name in _TARGET},
        **{name: [c.get(name) for c in contexts] for name in _CONTEXT},
    }
    stub = [e.get("erased") is True for e in docs]
    columns: dict[str, Any] = {
        "seq": pa.array([e["seq"] for e in docs], pa.int64()),
        # Arrow parses RFC 3339 with its Z itself, far faster than datetime per row.
        "time": pa.array([e["time"] for e in docs], pa.string()).cast(pa.timestamp("us", tz="UTC")),
        **{name: pa.array(values, pa.string()) for name, values in text.items()},
        "metadata": pa.array(
            [
                None if gone else _canonical_or_none(e.get("metadata"))
                for e, gone in zip(docs, stub, strict=True)
            ],
            pa.string(),
        ),
        "changes": pa.array([_canonical_or_none(e.get("changes")) for e in docs], pa.string()),
        "erased": pa.array(stub, pa.bool_()),
        "erased_by": pa.array([e.get("erased_by") for e in docs], pa.string()),
        "leaf_hash": pa.array([e["leaf_hash"] for e in docs], pa.string()),
        "entry": pa.array(lines, pa.binary()).cast(pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=schema())


def concat_parsed(parts: Sequence[Any]) -> Any:
    """One parse of the lines of several parses (parse), in order."""
    return arrow().concat_tables(parts)


def parse(lines: Sequence[bytes]) -> Any:
    """Arrow's parse of the lines as one NDJSON block; None when it cannot read them all."""
    pa = arrow()
    block = b"\n".join(lines) + b"\n"
    try:
        parsed = pa.json.read_json(
            pa.BufferReader(block),
            read_options=pa.json.ReadOptions(use_threads=False, block_size=max(len(block), 1)),
            parse_options=pa.json.ParseOptions(
                explicit_schema=_json_schema(pa), unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowException, OSError):
        return None
    # A line holding a newline (JSON allows one between tokens) would shift every row after it.
    if (parsed.num_rows != len(lines) or parsed.column("seq").null_count
            or parsed.column("time").null_count):  # fmt: skip
        return None
    return parsed


def _json_columns(lines: Sequence[bytes], parsed: Any) -> tuple[list[Any], list[Any], list[int]]:
    """``metadata`` and ``changes`` sliced from each committed line; the rows left to Python.

    A slice is taken only where the key occurs once in the line and its end marker once: a
    nested key of the same name would make the search ambiguous (that row goes to Python).
    One loop of bytes searches: Arrow's substring kernels measured slower than these.
    """
    metadata: list[Any] = [None] * len(lines)
    changes: list[Any] = [None] * len(lines)
    slow: list[int] = []
    flags = zip(
        lines,
        parsed.column("metadata").is_valid().to_pylist(),
        parsed.column("changes").is_valid().to_pylist(),
        parsed.column("erased").is_null().to_pylist(),
        strict=True,
    )
    for index, (line, has_meta, has_changes, unerased) in enumerate(flags):
        # Committed: exactly in the server's form (not a stub), so the slices are the values.
        if not unerased or committed_leaf(line) is None:
            slow.append(index)
            continue
        if has_meta:
            at = line.find(_META) + len(_META)
            stop = line.rfind(_SEQ_END)
            if stop < at or line.find(_META, at) >= 0 or line.find(_SEQ) != stop + 1:
                slow.append(index)
                continue
            metadata[index] = line[at:stop]
        if has_changes:
            at = line.find(_CHANGES) + len(_CHANGES)
            stop = line.rfind(_CONTEXT_END)
            if stop < at or line.find(_CHANGES, at) >= 0 or line.find(_CONTEXT_KEY) != stop + 1:
                slow.append(index)
                continue
            changes[index] = line[at:stop]
    return metadata, changes, slow


def table_of(lines: Sequence[bytes], parsed: Any = None) -> Any:
    """The Arrow table of entries (as their exact lines), every column derived from the bytes.

    ``parsed``: the lines' parse (parse), when the caller has made it already.
    """
    pa = arrow()
    if parsed is None and lines:
        parsed = parse(lines)
    if parsed is None:
        return _python_table(lines)
    entries = pa.array(lines, pa.binary())
    metadata, changes, slow = _json_columns(lines, parsed)
    flat = parsed.flatten()
    text = {name: flat.column(name) for name in ("id", "action", "kind")}
    text |= {f"actor_{name}": flat.column(f"actor.{name}") for name in _ACTOR}
    text |= {f"target_{name}": flat.column(f"target.{name}") for name in _TARGET}
    text |= {name: flat.column(f"context.{name}") for name in _CONTEXT}
    columns: dict[str, Any] = {
        "seq": parsed.column("seq"),
        "time": parsed.column("time").cast(pa.timestamp("us", tz="UTC")),
        **text,
        "metadata": pa.array(metadata, pa.binary()).cast(pa.string()),
        "changes": pa.array(changes, pa.binary()).cast(pa.string()),
        # Rows with `erased` are all taken from Python below: here it is false.
        "erased": pa.array([False] * len(lines), pa.bool_()),
        "erased_by": parsed.column("erased_by"),
        "leaf_hash": parsed.column("leaf_hash"),
        "entry": entries.cast(pa.string()),
    }
    table = pa.Table.from_pydict(columns, schema=schema())
    if not slow:
        return table
    # Splice in the rows Python derives, run by run, keeping the order of the lines.
    parts, done = [], 0
    for start, stop in _runs(slow):
        parts += [table.slice(done, start - done), _python_table(lines[start:stop])]
        done = stop
    parts.append(table.slice(done))
    return pa.concat_tables(parts)


def _runs(indexes: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][1] == index:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs
