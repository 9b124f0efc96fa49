"""Helpers shared by the read-path and integrity tests: known entry sets and their filtering."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import rfc8785

from tests.support import Server, Tenant
from trailkeep.log.notes import Checkpoint, NoteVerifier, open_checkpoint

Entry = dict[str, Any]


def events_url(app_id: str, tail: str = "events") -> str:
    """The path of one of an app's routes."""
    return f"/v1/apps/{app_id}/{tail}"


def key_id_of(key: str) -> str:
    """The id (`key_...`) of a full key `tk_<ident>_<secret>`."""
    assert key.startswith("tk_")
    return "key_" + key[3:].split("_", 1)[0]


def when(text: str) -> datetime:
    """An entry's (or a filter's) RFC 3339 time as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def leaf_hash(entry: Mapping[str, Any]) -> bytes:
    """SHA-256(0x00 || JCS(entry without leaf_hash)), computed here, independently of the server."""
    body = {name: value for name, value in entry.items() if name != "leaf_hash"}
    return hashlib.sha256(b"\x00" + rfc8785.dumps(body)).digest()


def matches(entry: Entry, params: Mapping[str, Any]) -> bool:
    """Whether the known entry passes the read filters in ``params`` (the API's semantics)."""
    actions = params.get("action")
    if actions is not None:
        wanted = [actions] if isinstance(actions, str) else list(actions)
        if entry["action"] not in wanted:
            return False
    prefix = params.get("action_prefix")
    if prefix is not None and not entry["action"].startswith(prefix):
        return False
    if "actor" in params and entry["actor"]["id"] != params["actor"]:
        return False
    target = entry.get("target") or {}
    if "target_type" in params and target.get("type") != params["target_type"]:
        return False
    if "target_id" in params and target.get("id") != params["target_id"]:
        return False
    if "kind" in params and entry["kind"] != params["kind"]:
        return False
    if "since" in params and when(entry["time"]) < when(params["since"]):
        return False
    return not ("until" in params and when(entry["time"]) > when(params["until"]))


def select(known: Iterable[Entry], params: Mapping[str, Any]) -> list[Entry]:
    """The known entries that pass the filters, oldest first."""
    return sorted((e for e in known if matches(e, params)), key=lambda e: int(e["seq"]))


def ok(response: httpx.Response, status: int = 200) -> httpx.Response:
    """Assert the status, showing the body when it differs."""
    assert response.status_code == status, (response.status_code, response.text)
    return response


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code; return its document."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


def pages(client: httpx.Client, app_id: str, params: Mapping[str, Any]) -> Iterator[httpx.Response]:
    """Every page of a list, following `next_cursor` until it is null."""
    cursor: str | None = None
    for _ in range(100_000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = ok(client.get(events_url(app_id), params=query))
        yield response
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return
    raise AssertionError("paging never ended")


def list_all(client: httpx.Client, app_id: str, params: Mapping[str, Any]) -> list[Entry]:
    """Every matching entry as the list route returns it, newest first."""
    return [e for page in pages(client, app_id, params) for e in page.json()["data"]]


def log_size(client: httpx.Client, app_id: str) -> int:
    """How many entries the app's log holds (read with a key, so the read is not recorded)."""
    data = ok(client.get(events_url(app_id), params={"limit": 1})).json()["data"]
    return int(data[0]["seq"]) + 1 if data else 0


def export_lines(client: httpx.Client, app_id: str, params: Mapping[str, Any]) -> list[bytes]:
    """The NDJSON export's lines (without their newlines)."""
    response = ok(client.get(events_url(app_id, "export"), params={**params, "format": "ndjson"}))
    assert response.content.endswith(b"\n") or not response.content
    return response.content.splitlines()


def write_batch(
    client: httpx.Client, app_id: str, events: Sequence[Mapping[str, Any]]
) -> list[Entry]:
    """Append a batch (up to 1,000) and return the stored entries."""
    response = ok(client.post(events_url(app_id, "events/batch"), json={"events": events}), 201)
    stored: list[Entry] = response.json()["events"]
    return stored


def write_many(client: httpx.Client, app_id: str, events: Sequence[Mapping[str, Any]]) -> None:
    """Append any number of entries, 1,000 per batch."""
    for start in range(0, len(events), 1000):
        write_batch(client, app_id, events[start : start + 1000])


def stored_entries(server: Server, app_id: str) -> dict[int, bytes]:
    """The `entry` column of the app's rows, read straight from the server's SQLite file."""
    path = server.data_dir / "trailkeep.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT seq, entry FROM events WHERE app_id = ?", (app_id,)).fetchall()
    return {int(seq): bytes(entry) for seq, entry in rows}


def verifier_of(server: Server) -> NoteVerifier:
    """The server's published note verifier key."""
    text = ok(httpx.get(f"{server.url}/v1/checkpoint-key", timeout=10)).text.strip()
    return NoteVerifier.from_verifier_key(text)


def wait_for_checkpoint(
    client: httpx.Client, app_id: str, size: int, verifier: NoteVerifier, within: float = 2.5
) -> tuple[Checkpoint, str]:
    """The first signed checkpoint that covers at least ``size`` entries, within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        note = ok(client.get(events_url(app_id, "checkpoint"))).text
        checkpoint = open_checkpoint(note, verifier)
        if checkpoint.size >= size:
            return checkpoint, note
        if time.monotonic() > deadline:
            raise AssertionError(f"checkpoint still at {checkpoint.size}, log at {size}")
        time.sleep(0.05)


@dataclass
class Corpus:
    """An app with a known mix of entries, and the credentials that wrote and read them."""

    tenant: Tenant
    read_key: str
    write_key: str
    entries: list[Entry] = field(default_factory=list)  # oldest first, as the writes returned
    raw: dict[int, bytes] = field(default_factory=dict)  # seq -> 201 body of single writes

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.tenant.app_id


ACTIONS = (
    "user.login", "user.logout", "user.role.change", "order.refund", "order.create",
    "user_x.login", "userYx.login", "doc.share",
)  # fmt: skip
TARGETS: tuple[tuple[str, str] | None, ...] = (
    ("order", "o1"), ("order", "o2"), ("user", "u1"), None, ("doc", "a_c"), ("doc", "abc"),
    ("doc", "a%c"), ("doc", "abXc"),
)  # fmt: skip


def build_corpus(server: Server, name: str) -> Corpus:
    """A fresh app holding 56 single writes by six actors and a batch of 12 by a write key."""
    tenant = server.tenant(name)
    corpus = Corpus(tenant, server.key(tenant.app_id, "events:read"), "")
    corpus.write_key = server.key(tenant.app_id, "events:write")
    writers = [
        server.client(server.session(tenant, "alice", role="owner", name="Alice")),
        server.client(server.session(tenant, "bob", role="admin")),
        server.client(server.session(tenant, "carol", role="member")),
        server.client(server.session(tenant, "dave")),
        server.client(corpus.write_key),
        server.client(tenant.key),
    ]
    try:
        for i in range(56):
            body: dict[str, Any] = {
                "action": ACTIONS[(i * 3) % len(ACTIONS)],
                "metadata": {
                    "i": i,
                    "note": "caf\u00e9 \u2603",
                    "ratio": i / 4,
                    "deep": {"a": [i]},
                },
            }
            target = TARGETS[(i * 5) % len(TARGETS)]
            if target is not None:
                body["target_type"], body["target_id"] = target
            if i % 4 == 0:
                body["project"], body["server"] = "checkout", f"web-{i % 3}"
            response = ok(writers[i % len(writers)].post(events_url(tenant.app_id), json=body), 201)
            corpus.entries.append(response.json())
            corpus.raw[response.json()["seq"]] = response.content
        corpus.entries += write_batch(
            writers[4], tenant.app_id,
            [{"action": "order.create", "target_type": "order", "target_id": f"b{i}",
              "metadata": {"batch": i}} for i in range(12)],
        )  # fmt: skip
    finally:
        for client in writers:
            client.close()
    assert [e["seq"] for e in corpus.entries] == list(range(len(corpus.entries)))
    return corpus


def sqlite_path(server: Server) -> Path:
    """The server's SQLite database file."""
    return server.data_dir / "trailkeep.db"
