"""The Parquet columns of a file's entries: cut from the entries' bytes, and checked against them.

Deriving the columns by parsing each entry (in Python, then with Arrow's JSON reader) was what
bounded the export's rate and ``verify --export``'s (bench/report_notes.md). An entry as the
server writes it has one layout (``record.prepare``: RFC 8785 sorts the top-level keys, which are
fixed), so one regular expression over a whole block of lines cuts every column out of it, in
C, with no JSON tokenising: ``metadata`` and ``changes`` are the entry's own text of them (for
the server's bytes, their canonical RFC 8785 text). The expression takes a string only where it
holds no escape (no ``\\`` or ``"``), so the cut text is the value. Every other line (a stub, a
string with an escape, a line in another layout) is derived from its Python parse.

``verify --export`` goes the other way, also in C: it rebuilds each entry from the Parquet
columns (``rebuilt``) and compares the bytes. That proves the columns are the entry's for the
entries the verification core proved by their exact bytes; the rest are compared with their
Python derivation (``mismatches``).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final

import orjson

from trailkeep.cli.common import CliError
from trailkeep.log import jcs

if TYPE_CHECKING:
    import pyarrow as pa

_CONTEXT: Final = ("ip", "user_agent", "project", "server", "request_id", "forwarded_by")
_ACTOR: Final = ("type", "id", "name", "role")
_TARGET: Final = ("type", "id")
_TEXT_COLUMNS: Final = (
    "id", "action", "kind", "actor_type", "actor_id", "actor_name", "actor_role", "target_type",
    "target_id", *_CONTEXT,
)  # fmt: skip


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


def python_rows(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    """The rows of these lines as their Python parse derives them (the reference)."""
    rows: list[dict[str, Any]] = _python_table(lines).to_pylist()
    return rows


# -- cutting the columns out of the server's layout ----------------------------------------

_TEXT: Final = rb'([^"\\\n]*)'  # a string's inside, without escapes
_QUOTED: Final = rb'("[^"\\\n]*")'  # a string with its quotes: empty when the key is absent
_NULLABLE: Final = rb'("[^"\\\n]*"|null)'
#: A time exactly as the server writes it (``record.format_time``), so that it and the leaf hash
#: after it sit at fixed places from the end of the line: cut from there, not captured.
_TIME: Final = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
#: Where an entry's time is, counted from its end: ``","leaf_hash":"<64 hex>"}`` follows it.
_TIME_SLICE: Final = (-108, -81)
#: The server's layout, one line: the groups are _GROUPS, in order. Keys sort as RFC 8785 sorts
#: them; ``metadata`` runs to the last ``,"seq":`` (greedy), which is the top-level one: after it
#: come only the target, the time and the leaf hash, whose strings hold no quote.
_LAYOUT: Final = re.compile(
    rb'^\{"action":"' + _TEXT + rb'","actor":\{"id":"' + _TEXT + rb'"(?:,"name":' + _QUOTED
    + rb')?(?:,"role":' + _QUOTED + rb')?,"type":"' + _TEXT + rb'"\},"app_id":"[^"\\\n]*"'
    + rb'(?:,"changes":(\[.*\]))?,"context":\{(?:"forwarded_by":' + _QUOTED + rb',)?"ip":'
    + _NULLABLE + rb'(?:,"project":' + _QUOTED + rb')?(?:,"request_id":' + _QUOTED
    + rb')?(?:,"server":' + _QUOTED + rb')?,"user_agent":' + _NULLABLE + rb'\},"id":"' + _TEXT
    + rb'","kind":"' + _TEXT + rb'","metadata":(\{.*\}),"seq":(\d{1,18}),"target":(?:null|\{"id":'
    + _NULLABLE + rb',"type":' + _QUOTED + rb'\}),"time":"' + _TIME
    + rb'","leaf_hash":"[0-9a-f]{64}"\}$',
    re.MULTILINE,
)  # fmt: skip
_GROUPS: Final = (
    "action", "actor_id", "actor_name", "actor_role", "actor_type", "changes", "forwarded_by",
    "ip", "project", "request_id", "server", "user_agent", "id", "kind", "metadata", "seq",
    "target_id", "target_type",
)  # fmt: skip
#: Groups captured with their quotes: empty (absent) or ``null`` is a null column value.
_QUOTED_GROUPS: Final = frozenset(
    {"actor_name", "actor_role", "forwarded_by", "ip", "project", "request_id", "server",
     "user_agent", "target_id", "target_type"}
)  # fmt: skip


def _cut(pa: Any, name: str, values: Any) -> Any:
    """One column from its cut bytes: unquoted, nulls where the key was absent or null."""
    pc = pa.compute
    column = values if isinstance(values, pa.Array) else pa.array(values, pa.binary())
    if name in _QUOTED_GROUPS:
        absent = pc.or_(pc.equal(column, b""), pc.equal(column, b"null"))
        column = pc.if_else(absent, pa.scalar(None, pa.binary()), pc.binary_slice(column, 1, -1))
    elif name == "changes":
        column = pc.if_else(pc.equal(column, b""), pa.scalar(None, pa.binary()), column)
    if name == "seq":
        return column.cast(pa.string()).cast(pa.int64())
    if name == "time":
        return column.cast(pa.string()).cast(pa.timestamp("us", tz="UTC"))
    return column.cast(pa.string())


#: The text that ends ``changes`` (``,"context":{``) and ``metadata`` (``,"seq":``). Either may
#: also hold it as nested structure (``{"a":[1],"context":{…},"id":"x","kind":"admin",…}``),
#: and a cut there would forge the columns between from the caller's metadata. The cut is
#: greedy, so a wrong one holds the real end inside it: a row is cut only where neither of
#: the two holds either end (else it is parsed), and the check of the columns asks the same.
_CHANGES_END: Final = ',"context":{'
_METADATA_END: Final = ',"seq":'


def _ambiguous(table: Any) -> Any:
    """Rows whose ``metadata`` or ``changes`` text holds an end of the top-level layout."""
    pc = arrow().compute
    flags = [
        pc.match_substring(table.column(name), end)
        for name in ("metadata", "changes")
        for end in (_CHANGES_END, _METADATA_END)
    ]
    found = flags[0]
    for flag in flags[1:]:
        found = pc.or_(found, flag)
    return pc.fill_null(found, False)


def _layout_rows(lines: Sequence[bytes], block: bytes | None) -> list[tuple[bytes, ...] | None]:
    """Each line's groups, or None for a line not in the server's layout."""
    found = _LAYOUT.findall(block if block is not None else b"\n".join(lines))
    if len(found) == len(lines):
        return found  # every line matched, in order (a match never spans two lines)
    rows: list[tuple[bytes, ...] | None] = []
    for line in lines:
        match = _LAYOUT.match(line)
        rows.append(None if match is None else match.groups())
    return rows


def _entries(pa: Any, lines: Sequence[bytes], block: bytes | None) -> Any:
    """The lines as a string array; from ``block`` (the lines, each ending in a newline) as is.

    Converting a block's lines one by one cost ~2 µs an entry; the block itself is the array's
    data once each element's end is known (then one copy in C drops the newlines).
    """
    if block is None or len(block) >= 1 << 31:
        return pa.array(lines, pa.binary()).cast(pa.string())
    offsets = array("i", [0])
    offsets.extend(accumulate(len(line) + 1 for line in lines))
    if offsets[-1] != len(block):
        return pa.array(lines, pa.binary()).cast(pa.string())
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    with_newlines = pa.Array.from_buffers(pa.binary(), len(lines), buffers)
    return pa.compute.binary_slice(with_newlines, 0, -1).cast(pa.string())


def _layout_table(
    pa: Any, lines: Sequence[bytes], rows: Sequence[tuple[bytes, ...]], block: bytes | None = None
) -> Any:
    cut = dict(zip(_GROUPS, zip(*rows, strict=True), strict=True))
    columns = {name: _cut(pa, name, cut[name]) for name in _GROUPS}
    columns["erased"] = pa.array([False] * len(lines), pa.bool_())
    columns["erased_by"] = pa.nulls(len(lines), pa.string())
    entries = _entries(pa, lines, block)
    columns["entry"] = entries
    raw = entries.cast(pa.binary())
    columns["time"] = _cut(pa, "time", pa.compute.binary_slice(raw, *_TIME_SLICE))
    columns["leaf_hash"] = pa.compute.binary_slice(raw, -66, -2).cast(pa.string())
    return pa.Table.from_pydict({f.name: columns[f.name] for f in schema()}, schema=schema())


def table_of(lines: Sequence[bytes], block: bytes | None = None) -> Any:
    """The Arrow table of entries (as their exact lines), every column derived from the bytes.

    ``block``: the lines, each followed by a newline, when the caller holds them so already.
    """
    pa = arrow()
    if not lines:
        return _python_table(lines)
    try:
        rows = _layout_rows(lines, block)
        if all(row is not None for row in rows):
            table = _layout_table(pa, lines, rows, block)  # type: ignore[arg-type]
            unclear = pa.compute.indices_nonzero(_ambiguous(table)).to_pylist()
            if not unclear:
                return table
            for index in unclear:
                rows[index] = None
    except (pa.ArrowInvalid, ValueError):
        # Text that is not UTF-8, or a time Arrow cannot read: the parse says what it is.
        return _python_table(lines)
    # Runs of lines in the layout and runs of others, in order.
    parts, start = [], 0
    while start < len(lines):
        cut = rows[start] is not None
        stop = start + 1
        while stop < len(lines) and (rows[stop] is not None) == cut:
            stop += 1
        if cut:
            part = _layout_table(pa, lines[start:stop], rows[start:stop])  # type: ignore[arg-type]
            if pa.compute.any(_ambiguous(part)).as_py():
                part = _python_table(lines[start:stop])
            parts.append(part)
        else:
            parts.append(_python_table(lines[start:stop]))
        start = stop
    return pa.concat_tables(parts)


def block_table(block: bytes) -> Any:
    """The table of a block of whole lines (each ending in a newline): table_of, for a worker."""
    return table_of(block.split(b"\n")[:-1], block)


# -- checking the columns against the entries ---------------------------------------------


def _piece(pc: Any, *parts: Any) -> Any:
    """The parts joined, or "" where one of them is null (an absent optional key)."""
    return pc.fill_null(pc.binary_join_element_wise(*parts, "", null_handling="emit_null"), "")


def _quoted_or_null(pc: Any, column: Any) -> Any:
    return pc.fill_null(pc.binary_join_element_wise('"', column, '"', ""), "null")


def rebuilt(table: Any, app_id: str, times: Any) -> Any:
    """Each row's entry as the server would write it from the row's columns (string array).

    ``times``: each row's time as text, which the caller has checked against the time column.
    """
    pa = arrow()
    pc = pa.compute
    col = table.column
    target = pc.if_else(
        pc.is_null(col("target_type")),
        "null",
        _piece(pc, '{"id":', _quoted_or_null(pc, col("target_id")), ',"type":"',
               col("target_type"), '"}'),
    )  # fmt: skip
    return pc.binary_join_element_wise(
        '{"action":"', col("action"), '","actor":{"id":"', col("actor_id"), '"',
        _piece(pc, ',"name":"', col("actor_name"), '"'),
        _piece(pc, ',"role":"', col("actor_role"), '"'),
        ',"type":"', col("actor_type"), '"},"app_id":"', app_id, '"',
        _piece(pc, ',"changes":', col("changes")),
        ',"context":{', _piece(pc, '"forwarded_by":"', col("forwarded_by"), '",'),
        '"ip":', _quoted_or_null(pc, col("ip")),
        _piece(pc, ',"project":"', col("project"), '"'),
        _piece(pc, ',"request_id":"', col("request_id"), '"'),
        _piece(pc, ',"server":"', col("server"), '"'),
        ',"user_agent":', _quoted_or_null(pc, col("user_agent")),
        '},"id":"', col("id"), '","kind":"', col("kind"), '","metadata":', col("metadata"),
        ',"seq":', col("seq").cast(pa.string()), ',"target":', target,
        ',"time":"', times,
        '","leaf_hash":"', col("leaf_hash"), '"}', "",
    )  # fmt: skip


#: String columns rebuilt between quotes: one holding a quote or a backslash could stand for
#: other JSON than its own, so such a row is checked from its parse instead.
_STRING_COLUMNS: Final = (*_TEXT_COLUMNS, "leaf_hash")


def _time_texts(table: Any) -> Any:
    """Each row's time as text: as the entry spells it where the time column agrees, else as
    the column formats it (then the rebuilt entry shows any difference)."""
    pa = arrow()
    pc = pa.compute
    time = table.column("time")
    # Formatting a timestamp costs ten times parsing one: read the entry's own text and check
    # that it parses to the column's value. The rebuilt entry then proves where it was cut.
    # Cut as bytes (a tenth of the cost of cutting by characters): what is cut is ASCII when it
    # is a time at all, and the cast to text checks that it is text.
    cut = pc.binary_slice(table.column("entry").cast(pa.binary()), *_TIME_SLICE)
    try:
        cut = cut.cast(pa.string())
    except pa.ArrowInvalid:
        return pc.strftime(time, format="%Y-%m-%dT%H:%M:%SZ")
    try:
        same = pc.fill_null(pc.equal(cut.cast(pa.timestamp("us", tz="UTC")), time), False)
    except pa.ArrowInvalid:
        same = pa.array([False] * table.num_rows)
    if pc.all(same).as_py():
        return cut
    return pc.if_else(same, cut, pc.strftime(time, format="%Y-%m-%dT%H:%M:%SZ"))


def mismatches(table: Any, app_id: str) -> list[int]:
    """The rows whose columns do not rebuild their entry exactly (stubs among them)."""
    pa = arrow()
    pc = pa.compute
    entries = table.column("entry")
    same = pc.equal(rebuilt(table, app_id, _time_texts(table)), entries)
    # As where the export cuts: nested text like the top-level ends would let forged
    # metadata and changes columns rebuild the entry too.
    same = pc.and_kleene(same, pc.invert(_ambiguous(table)))
    strings = [table.column(name) for name in _STRING_COLUMNS]
    joined = pc.binary_join_element_wise(*strings, "", null_handling="skip")
    same = pc.and_kleene(same, pc.invert(pc.match_substring_regex(joined, r'["\\]')))
    # A row cut from an entry is never a stub: only the parse may say otherwise.
    same = pc.and_kleene(same, pc.invert(table.column("erased")))
    same = pc.and_kleene(same, pc.is_null(table.column("erased_by")))
    bad = pc.invert(pc.fill_null(same, False))
    return pc.indices_nonzero(bad).to_pylist()  # type: ignore[no-any-return]
