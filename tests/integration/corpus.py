"""Known sets of entries for the read tests, and which of them a set of read filters selects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.integration.http_api import Entry, events_url, expect_status, write_batch
from tests.servers import Server, Tenant


def parse_time(text: str) -> datetime:
    """An entry's (or a filter's) RFC 3339 time as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def passes_filters(entry: Entry, params: Mapping[str, Any]) -> bool:
    """Whether the known entry passes the read filters in ``params`` (the API's semantics)."""
    actions = params.get("action")
    if actions is not None:
        wanted = [actions] if isinstance(actions, str) else list(actions)
        if entry["action"] not in wanted:
            return False
    excluded = params.get("exclude_action")
    if excluded is not None:
        unwanted = [excluded] if isinstance(excluded, str) else list(excluded)
        if entry["action"] in unwanted:
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
    if "since" in params and parse_time(entry["time"]) < parse_time(params["since"]):
        return False
    return not ("until" in params and parse_time(entry["time"]) > parse_time(params["until"]))


def filtered(known: Iterable[Entry], params: Mapping[str, Any]) -> list[Entry]:
    """The known entries that pass the filters, oldest first."""
    return sorted((e for e in known if passes_filters(e, params)), key=lambda e: int(e["seq"]))


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
    tenant = server.new_app(name)
    read_key = server.new_key(tenant.app_id, "events:read").key
    write_key = server.new_key(tenant.app_id, "events:write").key
    corpus = Corpus(tenant, read_key, write_key)
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
            response = expect_status(
                writers[i % len(writers)].post(events_url(tenant.app_id), json=body), 201
            )
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
