"""Export streams over real HTTP (issue 3): NDJSON and CSV, oldest first, filtered, complete.

Exported lines are compared byte for byte with the rows stored in the server's database, and
CSV rows with a flattening of the entries computed here. Reads use keys (nothing is appended).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.corpus import Corpus, build_corpus, filtered
from tests.integration.http_api import (
    Entry,
    events_url,
    expect_problem,
    expect_status,
    key_id_of,
    list_all,
    write_batch,
)
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

CSV_HEADER = (
    "seq,id,time,action,kind,actor_type,actor_id,actor_name,actor_role,target_type,target_id,"
    "ip,user_agent,project,server,request_id,forwarded_by,metadata,changes,leaf_hash,erased_by"
)
AGENT = 'Mozilla/5.0 (X11; Linux), "quoted"; ok'


def stored(server: Server, app_id: str) -> dict[int, bytes]:
    """The `entry` column of the app's rows, straight from the server's database (any backend)."""
    rows = server.query("SELECT seq, entry FROM events WHERE app_id = :app", app=app_id)
    return {int(seq): bytes(entry) for seq, entry in rows}


@pytest.fixture(scope="module")
def corpus(server: Server) -> Corpus:
    """The shared mixed corpus, plus entries whose fields need quoting in CSV."""
    corpus = build_corpus(server, "export corpus")
    headers = {"User-Agent": AGENT, "Trailkeep-Client-IP": "2001:db8::7"}
    with server.client(corpus.write_key, **headers) as client:
        corpus.entries += write_batch(client, corpus.app_id, [
            {"action": "csv.quote", "target_type": "doc,x", "target_id": 'line1\nline2, "q"',
             "metadata": {"s": 'a,b "c"\nd\re', "n": None, "f": 1e-7, "big": 2**53 - 1,
                          "nested": {"list": [1, "two", {"3": [True, False]}]}, "\u00e9": "\u2603"},
             "project": "p,1", "server": "s\"1", "request_id": "r\n1"},
            {"action": "csv.empty"},
            {"action": "csv.cr", "target_type": "doc", "target_id": "a\rb"},
        ])  # fmt: skip
    return corpus


@pytest.fixture(scope="module")
def reader(server: Server, corpus: Corpus) -> Iterator[httpx.Client]:
    """A client with a read-only key of the corpus app."""
    with server.client(corpus.read_key) as client:
        yield client


def _export(client: httpx.Client, app_id: str, params: dict[str, Any]) -> httpx.Response:
    return expect_status(client.get(events_url(app_id, "export"), params=params))


def ndjson_lines(response: httpx.Response) -> list[bytes]:
    """The lines of an NDJSON body, each of which ends with exactly one newline."""
    body = response.content
    if not body:
        return []
    assert body.endswith(b"\n")
    assert not body.endswith(b"\n\n")
    return body[:-1].split(b"\n")


def csv_rows(response: httpx.Response) -> list[list[str]]:
    """The CSV body parsed by the csv module, header row included."""
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


def flatten(entry: Entry) -> dict[str, str]:
    """The CSV row an entry should become (empty cells for absent values), metadata aside."""
    actor, target, context = entry["actor"], entry["target"] or {}, entry["context"]
    row = {
        "seq": str(entry["seq"]), "id": entry["id"], "time": entry["time"],
        "action": entry["action"], "kind": entry["kind"], "actor_type": actor["type"],
        "actor_id": actor["id"], "actor_name": actor.get("name"), "actor_role": actor.get("role"),
        "target_type": target.get("type"), "target_id": target.get("id"), "ip": context.get("ip"),
        "user_agent": context.get("user_agent"), "project": context.get("project"),
        "server": context.get("server"), "request_id": context.get("request_id"),
        "forwarded_by": context.get("forwarded_by"), "leaf_hash": entry["leaf_hash"],
        "erased_by": None,
    }  # fmt: skip
    return {name: "" if value is None else inert(value) for name, value in row.items()}


def inert(cell: str) -> str:
    """What the CSV holds for a text cell: no formula runs, and no control character is raw."""
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        cell = "'" + cell
    unsafe = {*range(0x20), *range(0x7F, 0xA0), 0x61C, 0x200E, 0x200F, *range(0x202A, 0x202F),
              *range(0x2066, 0x206A), 0x2028, 0x2029}  # fmt: skip
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") if ord(c) in unsafe else c
        for c in cell
    )


def test_ndjson_is_the_stored_bytes_oldest_first(
    server: Server, reader: httpx.Client, corpus: Corpus
) -> None:
    response = _export(reader, corpus.app_id, {})  # ndjson is the default
    lines = ndjson_lines(response)
    rows = stored(server, corpus.app_id)
    assert len(lines) == len(corpus.entries) == len(rows)
    assert lines == [rows[seq] for seq in sorted(rows)]
    assert [json.loads(line) for line in lines] == corpus.entries
    for seq, raw in corpus.raw.items():  # the 201 bodies of the single writes
        assert lines[seq] == raw
    for seq in (0, 60, len(lines) - 1):
        one = expect_status(
            reader.get(events_url(corpus.app_id, f"events/{corpus.entries[seq]['id']}"))
        )
        assert one.content == lines[seq]
    newest_first = list_all(reader, corpus.app_id, {"limit": 1000})
    assert [json.loads(line) for line in reversed(lines)] == newest_first


def test_content_types_and_streaming_headers(reader: httpx.Client, corpus: Corpus) -> None:
    for fmt, media in (("ndjson", "application/x-ndjson"), ("csv", "text/csv; charset=utf-8")):
        response = _export(reader, corpus.app_id, {"format": fmt})
        assert response.headers["content-type"] == media
        assert response.headers["content-disposition"] == (
            f'attachment; filename="{corpus.app_id}.{fmt}"'
        )
        assert "content-length" not in response.headers  # streamed, not built whole
        assert response.headers["transfer-encoding"] == "chunked"


def test_csv_matches_the_entries(reader: httpx.Client, corpus: Corpus) -> None:
    response = _export(reader, corpus.app_id, {"format": "csv"})
    assert response.content.startswith(CSV_HEADER.encode() + b"\r\n")  # RFC 4180
    header, *rows = csv_rows(response)
    assert header == CSV_HEADER.split(",")
    assert len(rows) == len(corpus.entries)
    for row, entry in zip(rows, corpus.entries, strict=True):
        record = dict(zip(header, row, strict=True))
        metadata = record.pop("metadata")
        changes = record.pop("changes")
        assert record == flatten(entry)
        assert json.loads(metadata) == entry["metadata"]  # the JSON column round-trips
        assert (json.loads(changes) if changes else None) == entry.get("changes")
    quoted = dict(zip(header, rows[-3], strict=True))
    assert quoted["target_id"] == 'line1\\x0aline2, "q"'  # quotes and commas are CSV's to quote
    assert quoted["user_agent"] == AGENT
    assert quoted["forwarded_by"] == key_id_of(corpus.write_key)
    assert json.loads(quoted["metadata"])["big"] == 2**53 - 1
    assert json.loads(dict(zip(header, rows[-2], strict=True))["metadata"]) == {}
    assert dict(zip(header, rows[-1], strict=True))["target_id"] == "a\\x0db"  # no raw CR


def test_csv_cells_never_run_as_formulas_nor_carry_raw_controls(server: Server) -> None:
    tenant = server.new_app("csv injection")
    hostile = {
        "target_type": "=cmd|' /C calc'!A0",
        "target_id": "\tid \x1b]0;owned\x07 \u202etxt.exe",
        "project": "-2+3", "server": "@SUM(A1:A2)", "request_id": '=HYPERLINK("http://x","y")',
    }  # fmt: skip
    # A header carries latin-1 at most: an 8-bit CSI, as a browser's user may send one.
    agent = b"+cmd \x9b2J"
    headers = [(b"authorization", f"Bearer {tenant.key}".encode()), (b"user-agent", agent)]
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        write_batch(client, tenant.app_id, [{"action": "csv.hostile", **hostile}])
        body = _export(client, tenant.app_id, {"format": "csv"}).content.decode()
        raw = json.loads(_export(client, tenant.app_id, {}).content)
    header, row = list(csv.reader(io.StringIO(body, newline="")))
    record = dict(zip(header, row, strict=True))
    assert record["target_type"] == "'=cmd|' /C calc'!A0"
    assert record["target_id"] == "'\\x09id \\x1b]0;owned\\x07 \\u202etxt.exe"
    assert (record["project"], record["server"]) == ("'-2+3", "'@SUM(A1:A2)")
    assert record["request_id"] == '\'=HYPERLINK("http://x","y")'
    assert record["user_agent"] == "'+cmd \\x9b2J"
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in body.replace("\r\n", ""))
    assert "\u202e" not in body
    # NDJSON keeps the exact values: they are what the leaf hash covers.
    assert raw["context"]["user_agent"] == agent.decode("latin-1")
    assert raw["target"] == {"type": hostile["target_type"], "id": hostile["target_id"]}
    assert raw["context"]["project"] == hostile["project"]


FILTERS: list[dict[str, Any]] = [
    {"action": ["user.login", "order.refund"]},
    {"action_prefix": "user."},
    {"actor": "alice"},
    {"kind": "admin"},
    {"target_type": "doc", "target_id": "a%c"},
    {"action_prefix": "order", "kind": "user", "since": 10, "until": 60},
    {"since": 60},
    {"action": "nope.never"},
]


@pytest.mark.parametrize("spec", FILTERS, ids=lambda s: "&".join(sorted(s)))
def test_filters_apply_to_both_formats(
    server: Server, reader: httpx.Client, corpus: Corpus, spec: dict[str, Any]
) -> None:
    params = {
        name: corpus.entries[value]["time"] if name in ("since", "until") else value
        for name, value in spec.items()
    }
    want = filtered(corpus.entries, params)
    rows = stored(server, corpus.app_id)
    lines = ndjson_lines(_export(reader, corpus.app_id, {**params, "format": "ndjson"}))
    assert lines == [rows[e["seq"]] for e in want]
    header, *table = csv_rows(_export(reader, corpus.app_id, {**params, "format": "csv"}))
    assert header == CSV_HEADER.split(",")
    assert [int(row[0]) for row in table] == [e["seq"] for e in want]
    if spec == {"action": "nope.never"}:
        assert lines == []
        assert table == []


@pytest.mark.parametrize("fmt", ["CSV", "parquet", "ndjson ", "json"])
def test_other_formats_are_refused(reader: httpx.Client, corpus: Corpus, fmt: str) -> None:
    response = reader.get(events_url(corpus.app_id, "export"), params={"format": fmt})
    assert "format" in expect_problem(response, 400, "invalid_request")["detail"]


# ------------------------------------------------------------- more entries than one chunk


@pytest.fixture(scope="module")
def big(server: Server) -> tuple[str, str, list[Entry]]:
    """(app id, read key, entries): 12,000 entries written in 12 batches of 1,000."""
    tenant = server.new_app("export big")
    written: list[Entry] = []
    with server.client(tenant.key) as client:
        for b in range(12):
            written += write_batch(client, tenant.app_id, [
                {"action": f"big.a{(b * 1000 + i) % 3}", "metadata": {"i": b * 1000 + i}}
                for i in range(1000)
            ])  # fmt: skip
    assert [e["seq"] for e in written] == list(range(12_000))
    return tenant.app_id, tenant.key, written


def test_a_long_export_is_complete_and_in_order(
    server: Server, big: tuple[str, str, list[Entry]]
) -> None:
    app_id, key, _ = big
    rows = stored(server, app_id)
    with (
        server.client(key) as client,
        client.stream("GET", events_url(app_id, "export"), params={"format": "ndjson"}) as response,
    ):
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    lines = body[:-1].split(b"\n")
    assert len(lines) == 12_000
    assert lines == [rows[seq] for seq in range(12_000)]
    assert [json.loads(line)["metadata"]["i"] for line in lines] == list(range(12_000))
    with server.client(key) as client:
        header, *table = csv_rows(_export(client, app_id, {"format": "csv"}))
    assert [int(row[0]) for row in table] == list(range(12_000))
    assert [json.loads(row[header.index("metadata")])["i"] for row in table] == list(range(12_000))


@pytest.mark.parametrize(
    "spec", [{"action": "big.a1"}, {"since": 4000, "until": 6999}, {"action_prefix": "big.a",
                                                                   "since": 4999}],
    ids=["action", "window", "prefix-since"],
)  # fmt: skip
def test_a_long_filtered_export_crosses_chunks(
    server: Server, big: tuple[str, str, list[Entry]], spec: dict[str, Any]
) -> None:
    app_id, key, written = big
    params = {
        name: written[value]["time"] if name in ("since", "until") else value
        for name, value in spec.items()
    }
    want = filtered(written, params)
    assert len(want) >= 3000
    rows = stored(server, app_id)
    with server.client(key) as client:
        lines = ndjson_lines(_export(client, app_id, params))
    assert lines == [rows[e["seq"]] for e in want]
