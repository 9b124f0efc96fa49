"""The HTTP API as the tests call it: its routes, requests, and checks of what it answers."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import httpx
import rfc8785

from tests.servers import Server
from trailkeep.log.notes import Checkpoint, NoteVerifier, open_checkpoint

Entry = dict[str, Any]

TIME_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
ID_RE: Final = re.compile(r"evt_[A-Za-z0-9_-]{16,}")
PROBLEM_FIELDS: Final = {"type", "title", "status", "code", "detail", "instance"}


# --- routes --------------------------------------------------------------------------------


def events_url(app_id: str, tail: str = "events") -> str:
    """The path of one of an app's routes (its log, ``events``, by default)."""
    return f"/v1/apps/{app_id}/{tail}"


def batch_url(app_id: str) -> str:
    """The batch write path of an app."""
    return events_url(app_id, "events/batch")


def key_id_of(key: str) -> str:
    """The id (`key_...`) of a full key `tk_<ident>_<secret>`."""
    assert key.startswith("tk_")
    return "key_" + key[3:].split("_", 1)[0]


# --- answers -------------------------------------------------------------------------------


def expect_status(response: httpx.Response, status: int = 200) -> httpx.Response:
    """Assert the status, showing the body when it differs."""
    assert response.status_code == status, (response.status_code, response.text)
    return response


def expect_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and Trailkeep's stable code; return it."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert set(problem) >= PROBLEM_FIELDS, problem
    assert problem["status"] == status
    assert problem["code"] == code, problem
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    assert isinstance(problem["title"], str)
    return problem


def leaf_hash(entry: Mapping[str, Any]) -> bytes:
    """SHA-256(0x00 || JCS(entry without leaf_hash)), computed here, independently of the server."""
    body = {name: value for name, value in entry.items() if name != "leaf_hash"}
    return hashlib.sha256(b"\x00" + rfc8785.dumps(body)).digest()


def check_entry(entry: Mapping[str, Any]) -> None:
    """The shape every stored entry has (§1; `changes` only when something changed), and its
    leaf hash."""
    assert set(entry) - {"changes"} == {
        "id", "app_id", "seq", "time", "action", "kind", "actor", "target", "metadata",
        "context", "leaf_hash",
    }  # fmt: skip
    assert ID_RE.fullmatch(entry["id"]), entry["id"]
    assert TIME_RE.fullmatch(entry["time"]), entry["time"]
    assert isinstance(entry["seq"], int)
    assert entry["seq"] >= 0
    assert entry["kind"] in {"admin", "user"}
    assert entry["leaf_hash"] == leaf_hash(entry).hex()


def expect_created(response: httpx.Response) -> Entry:
    """Assert a 201 carrying one well-formed entry whose leaf hash checks out; return it."""
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    entry: Entry = response.json()
    check_entry(entry)
    return entry


# --- writes --------------------------------------------------------------------------------


def write_one(client: httpx.Client, app_id: str, body: Any = None, **headers: str) -> Entry:
    """Append one entry and return it (asserting a well-formed 201)."""
    return expect_created(client.post(events_url(app_id), json=body or {"action": "t.write"},
                                      headers=headers))  # fmt: skip


def write_batch(
    client: httpx.Client, app_id: str, events: Sequence[Mapping[str, Any]]
) -> list[Entry]:
    """Append a batch (up to 1,000) and return the stored entries."""
    response = expect_status(client.post(batch_url(app_id), json={"events": events}), 201)
    stored: list[Entry] = response.json()["events"]
    return stored


def write_numbered(client: httpx.Client, app_id: str, first: int, count: int) -> list[Entry]:
    """Append ``count`` numbered `doc.edit` entries (``first`` on) in one batch; return them."""
    events = [
        {"action": "doc.edit", "target_type": "doc", "target_id": f"d{i}",
         "metadata": {"n": i, "note": "caf\u00e9 \u2603", "ratio": i / 8}}
        for i in range(first, first + count)
    ]  # fmt: skip
    return write_batch(client, app_id, events)


def write_many(client: httpx.Client, app_id: str, events: Sequence[Mapping[str, Any]]) -> None:
    """Append any number of entries, 1,000 per batch."""
    for start in range(0, len(events), 1000):
        write_batch(client, app_id, events[start : start + 1000])


def next_seq(client: httpx.Client, app_id: str) -> int:
    """Append a probe entry and return its seq: the log's size before the probe."""
    return int(write_one(client, app_id, {"action": "probe.next_seq"})["seq"])


def post_bytes(client: httpx.Client, url: str, body: bytes, **headers: str) -> httpx.Response:
    """POST exact bytes as JSON."""
    return client.post(url, content=body, headers={"content-type": "application/json", **headers})


# --- reads ---------------------------------------------------------------------------------


def list_pages(
    client: httpx.Client, app_id: str, params: Mapping[str, Any]
) -> Iterator[httpx.Response]:
    """Every page of a list, following `next_cursor` until it is null."""
    cursor: str | None = None
    for _ in range(100_000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = expect_status(client.get(events_url(app_id), params=query))
        yield response
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return
    raise AssertionError("paging never ended")


def list_all(client: httpx.Client, app_id: str, params: Mapping[str, Any]) -> list[Entry]:
    """Every matching entry as the list route returns it, newest first."""
    return [e for page in list_pages(client, app_id, params) for e in page.json()["data"]]


def log_size(client: httpx.Client, app_id: str) -> int:
    """How many entries the app's log holds (read with a key, so the read is not recorded)."""
    data = expect_status(client.get(events_url(app_id), params={"limit": 1})).json()["data"]
    return int(data[0]["seq"]) + 1 if data else 0


def export_lines(client: httpx.Client, app_id: str, params: Mapping[str, Any]) -> list[bytes]:
    """The NDJSON export's lines (without their newlines)."""
    response = expect_status(
        client.get(events_url(app_id, "export"), params={**params, "format": "ndjson"})
    )
    assert response.content.endswith(b"\n") or not response.content
    return response.content.splitlines()


# --- checkpoints ---------------------------------------------------------------------------


def checkpoint_verifier(server: Server) -> NoteVerifier:
    """The server's published note verifier key."""
    text = expect_status(httpx.get(f"{server.url}/v1/checkpoint-key", timeout=10)).text.strip()
    return NoteVerifier.from_verifier_key(text)


def wait_for_checkpoint(
    client: httpx.Client, app_id: str, size: int, verifier: NoteVerifier, within: float = 2.5
) -> tuple[Checkpoint, str]:
    """The first signed checkpoint that covers at least ``size`` entries, within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        note = expect_status(client.get(events_url(app_id, "checkpoint"))).text
        checkpoint = open_checkpoint(note, verifier)
        if checkpoint.size >= size:
            return checkpoint, note
        if time.monotonic() > deadline:
            raise AssertionError(f"checkpoint still at {checkpoint.size}, log at {size}")
        time.sleep(0.05)
