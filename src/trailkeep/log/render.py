"""Showing what the log holds as inert text: in a terminal, in JSON lines, in a spreadsheet.

Everything in an entry came from someone untrusted: an end user's User-Agent, a caller's target
id, a session's display name. Shown raw, an ESC or an 8-bit CSI moves a terminal's cursor or
rewrites its title, a bidi override reorders what an operator reads, and a CSV cell starting
with ``=`` runs as a formula when a compliance officer opens the export. These functions make
such characters visible instead. They are renderings: the exact values stay in the entry (and
in NDJSON), because those are what the leaf hash covers.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

# C0 and C1 controls and DEL (category Cc), and the bidirectional embeddings, overrides and
# isolates (Trojan Source); the line and paragraph separators, which break lines in some
# terminals and editors, too.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
# The same set, less what JSON already escapes (C0, and the quote and backslash).
_UNSAFE_IN_JSON: Final = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    r"""``text`` with every control, bidi and line-separator character shown as an escape.

    ``"a\x1b[2Jb"`` becomes ``"a\\x1b[2Jb"``: the operator sees the bytes, the terminal runs
    nothing.
    """
    return _UNSAFE.sub(_escape, text)


def json_line(document: str) -> str:
    """A JSON text whose strings hold no raw C1 control or bidi character (same JSON value).

    JSON already escapes C0 controls; this escapes the rest as ``\\uXXXX``, so the line parses to
    exactly the same value and prints as inert text.
    """
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", document)


def csv_cell(value: str) -> str:
    """A CSV cell that no spreadsheet runs: formulas defused, controls made visible.

    A cell starting with one of :data:`FORMULA_STARTS` gets a leading ``'`` (OWASP's rule for
    CSV injection), which spreadsheets show as text; controls become escapes as in
    :func:`visible`, so that none reaches the file raw.
    """
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return visible(value)


#: The columns of a CSV export, the server's (format=csv) and ``trailkeep export``'s alike.
CSV_COLUMNS = (
    "seq", "id", "time", "action", "kind", "actor_type", "actor_id", "actor_name", "actor_role",
    "target_type", "target_id", "ip", "user_agent", "project", "server", "request_id",
    "forwarded_by", "metadata", "changes", "leaf_hash", "erased_by",
)  # fmt: skip


def csv_row(entry: bytes) -> list[Any]:
    """Flatten one entry into :data:`CSV_COLUMNS`, every text cell defused for spreadsheets."""
    e = orjson.loads(entry)
    if e.get("erased") is True:  # a stub: what is left of an erased entry
        stub = [None] * (len(CSV_COLUMNS) - 5)
        return [e["seq"], csv_cell(e["id"]), e["time"], *stub, e["leaf_hash"], e["erased_by"]]
    actor, target, context = e["actor"], e.get("target") or {}, e["context"]
    cells = [
        e["id"], e["time"], e["action"], e["kind"], actor["type"], actor["id"],
        actor.get("name"), actor.get("role"), target.get("type"), target.get("id"),
        context.get("ip"), context.get("user_agent"), context.get("project"),
        context.get("server"), context.get("request_id"), context.get("forwarded_by"),
        orjson.dumps(e["metadata"]).decode(),
        orjson.dumps(e["changes"]).decode() if "changes" in e else None, e["leaf_hash"], None,
    ]  # fmt: skip
    return [e["seq"], *(None if cell is None else csv_cell(cell) for cell in cells)]
