"""Keyset pagination over real HTTP (issue 3): cursors, `Link` headers, paging while writes arrive.

Every walk is compared with filtering the known, complete set of entries in Python. Reads use
keys, so they append nothing to the log.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.corpus import filtered, passes_filters
from tests.integration.http_api import (
    Entry,
    events_url,
    expect_problem,
    expect_status,
    key_id_of,
    list_all,
    list_pages,
    write_batch,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

LINK_RE = re.compile(r'<([^<>]+)>; rel="next"')
ACTIONS = ("pg.alpha", "pg.beta", "pg.gamma", "other.x", "other.y")
MEMBER = "mia"
OWNER = "olga"


@dataclass
class Paged:
    """An app holding 300 known entries written by a key, an owner and a plain user."""

    tenant: Tenant
    entries: list[Entry]  # oldest first

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.tenant.app_id


def _body(i: int) -> dict[str, Any]:
    body: dict[str, Any] = {"action": ACTIONS[(i * 7) % len(ACTIONS)], "metadata": {"i": i}}
    if i % 3:
        body["target_type"], body["target_id"] = "doc", f"d{i % 4}"
    return body


@pytest.fixture(scope="module")
def paged(server: Server) -> Paged:
    """12 batches of 25, each by one of three writers in turn (so times and actors vary)."""
    tenant = server.new_app("paging")
    writers = [
        server.client(tenant.key),
        server.client(server.session(tenant, OWNER, role="owner")),
        server.client(server.session(tenant, MEMBER, role="member")),
    ]
    entries: list[Entry] = []
    try:
        for b in range(12):
            batch = [_body(b * 25 + i) for i in range(25)]
            entries += write_batch(writers[b % 3], tenant.app_id, batch)
    finally:
        for client in writers:
            client.close()
    assert [e["seq"] for e in entries] == list(range(300))
    return Paged(tenant, entries)


@pytest.fixture(scope="module")
def live(server: Server) -> Tenant:
    """A second app, which the live-paging tests keep growing (each walks all of it)."""
    return server.new_app("paging live")


@pytest.fixture(scope="module")
def reader(server: Server, paged: Paged) -> Iterator[httpx.Client]:
    """A client with the paged app's key (a key's reads append nothing)."""
    with server.client(paged.tenant.key) as client:
        yield client


def _seqs(entries: list[Entry]) -> list[int]:
    return [int(e["seq"]) for e in entries]


def _next_link(response: httpx.Response) -> str | None:
    """The URL of the `Link: <url>; rel="next"` header, or None when there is none."""
    header = response.headers.get("link")
    if header is None:
        return None
    found = LINK_RE.fullmatch(header)
    assert found, header
    return found.group(1)


def _check_page_shape(responses: list[httpx.Response], limit: int) -> None:
    """Full pages until the last; every page but the last points to the next one, twice."""
    for response in responses[:-1]:
        body = response.json()
        assert len(body["data"]) == limit
        assert isinstance(body["next_cursor"], str)
        link = _next_link(response)
        assert link is not None
        assert httpx.URL(link).params["cursor"] == body["next_cursor"]
    last = responses[-1]
    assert 0 < len(last.json()["data"]) <= limit or len(responses) == 1
    assert last.json()["next_cursor"] is None
    assert "link" not in last.headers


def walk_links(client: httpx.Client, first: str, params: Mapping[str, Any]) -> list[httpx.Response]:
    """Every page of a list, following each `Link` URL exactly as the server gave it."""
    responses = [expect_status(client.get(first, params=params))]
    for _ in range(10_000):
        link = _next_link(responses[-1])
        if link is None:
            return responses
        responses.append(expect_status(client.get(link)))
    raise AssertionError("paging never ended")


WALKS: list[tuple[int, dict[str, Any]]] = [
    (1, {"target_id": "d1", "actor": MEMBER}),
    (7, {}),
    (13, {"action_prefix": "pg."}),
    (50, {"action": ["pg.alpha", "other.y"]}),
    (20, {"kind": "admin"}),
    (9, {"action": "pg.beta", "target_type": "doc"}),
    (11, {"since": "<t 40>", "until": "<t 260>"}),
    (4, {"action": "nope.never"}),
    (1000, {}),
    (299, {}),
    (300, {}),
]


def _resolve(paged: Paged, spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    for name in ("since", "until"):
        if name in out:
            out[name] = paged.entries[int(out[name][3:-1])]["time"]
    return out


@pytest.mark.parametrize(("limit", "spec"), WALKS, ids=[f"{n}-{sorted(s)}" for n, s in WALKS])
def test_cursor_and_link_walks_yield_every_entry_once(
    reader: httpx.Client, paged: Paged, limit: int, spec: dict[str, Any]
) -> None:
    params = {**_resolve(paged, spec), "limit": limit}
    want = list(reversed(filtered(paged.entries, params)))
    by_cursor = list(list_pages(reader, paged.app_id, params))
    _check_page_shape(by_cursor, limit)
    got = [e for page in by_cursor for e in page.json()["data"]]
    assert _seqs(got) == _seqs(want)
    assert got == want
    assert len(by_cursor) == max(1, -(-len(want) // limit))
    by_link = walk_links(reader, events_url(paged.app_id), params)
    _check_page_shape(by_link, limit)
    assert [p.content for p in by_link] == [p.content for p in by_cursor]


def test_an_exact_multiple_of_the_limit_ends_with_a_full_page(
    reader: httpx.Client, paged: Paged
) -> None:
    params = {"actor": key_id_of(paged.tenant.key)}  # four batches of 25
    want = _seqs(list(reversed(filtered(paged.entries, params))))
    assert len(want) == 100
    for limit, count in ((25, 4), (100, 1), (99, 2), (50, 2)):
        walked = list(list_pages(reader, paged.app_id, {**params, "limit": limit}))
        assert len(walked) == count, limit
        assert [int(e["seq"]) for p in walked for e in p.json()["data"]] == want
        _check_page_shape(walked, limit)


def test_the_link_keeps_repeated_filters_and_the_limit(reader: httpx.Client, paged: Paged) -> None:
    params: dict[str, Any] = {"action": ["pg.gamma", "other.x"], "kind": "user", "limit": 6}
    first = expect_status(reader.get(events_url(paged.app_id), params=params))
    link = _next_link(first)
    assert link is not None
    url = httpx.URL(link)
    assert url.path == events_url(paged.app_id)
    assert sorted(url.params.get_list("action")) == ["other.x", "pg.gamma"]
    assert url.params["kind"] == "user"
    assert url.params["limit"] == "6"
    assert url.params["cursor"] == first.json()["next_cursor"]


def test_a_cursor_is_bound_to_its_app(
    server: Server, reader: httpx.Client, paged: Paged, live: Tenant
) -> None:
    first = expect_status(reader.get(events_url(paged.app_id), params={"limit": 5}))
    cursor = first.json()["next_cursor"]
    other = live
    with server.client(other.key) as stranger:
        write_batch(stranger, other.app_id, [{"action": "pg.alpha"}] * 10)
        body = expect_problem(
            stranger.get(events_url(other.app_id), params={"cursor": cursor}), 400,
            "invalid_request",
        )  # fmt: skip
        assert body["detail"].startswith("cursor"), body
        # Not bound to a credential: the app's owner continues the key's walk.
    owner = server.session(paged.tenant, OWNER, role="owner")
    with server.client(owner) as boss:
        page = expect_status(boss.get(events_url(paged.app_id), params={"cursor": cursor}))
        data = page.json()["data"]
    assert _seqs(data) == list(range(294, 244, -1))


def test_a_cursor_reused_with_other_filters_continues_from_its_position(
    reader: httpx.Client, paged: Paged
) -> None:
    """A cursor stands for a position in the app's log only: "below seq N", whatever the filters."""
    first = expect_status(
        reader.get(events_url(paged.app_id), params={"action": "pg.alpha", "limit": 10})
    )
    body = first.json()
    position = int(body["data"][-1]["seq"])
    assert position < 290  # the filter skipped entries: the position is not "the 10th newest"
    for params in ({"actor": MEMBER}, {}, {"action_prefix": "other.", "limit": 3}):
        got = list_all(reader, paged.app_id, {**params, "cursor": body["next_cursor"]})
        below = [e for e in paged.entries if e["seq"] < position]
        assert got == list(reversed(filtered(below, params))), params


# ------------------------------------------------------------------ paging while writes arrive


class Writers:
    """Threads that keep appending to an app until stopped, remembering what they wrote."""

    def __init__(self, server: Server, tenant: Tenant) -> None:
        self.server, self.tenant = server, tenant
        self.written: list[Entry] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(tenant.key, 1), daemon=True),
            threading.Thread(
                target=self._run, args=(server.session(tenant, OWNER, role="owner"), 5),
                daemon=True,
            ),
        ]  # fmt: skip

    def _run(self, credential: str, size: int) -> None:
        n = 0
        try:
            with self.server.client(credential) as client:
                while not self.stop.is_set():
                    batch = [{"action": ("pg.alpha", "live.b", "live.c")[(n + i) % 3]}
                             for i in range(size)]  # fmt: skip
                    n += size
                    stored = write_batch(client, self.tenant.app_id, batch)
                    with self.lock:
                        self.written += stored
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)

    def count(self) -> int:
        """How many entries the threads have written so far."""
        with self.lock:
            return len(self.written)

    def wait_for_more(self, than: int) -> None:
        """Poll until the threads have written more than ``than`` entries."""
        deadline = time.monotonic() + 30
        while self.count() <= than:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "the writers stalled"
            time.sleep(0.005)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        assert not self.errors, self.errors


@pytest.mark.parametrize(
    "spec",
    [{}, {"action": ["pg.alpha", "live.b"]}, {"kind": "admin"}, {"action_prefix": "pg."}],
    ids=["all", "actions", "kind", "prefix"],
)
def test_paging_while_writes_arrive_never_repeats_or_skips(
    server: Server, live: Tenant, spec: dict[str, Any]
) -> None:
    tenant = live
    owner = server.session(tenant, OWNER, role="owner")
    with server.client(tenant.key) as client, server.client(owner) as boss:
        # Enough of every filter's entries (60 of the rarest) for a walk of several pages,
        # whichever of these tests ran before on this app (pytest-xdist may run none).
        for b in range(3):
            batch = [_body(b * 100 + i) for i in range(100)]
            write_batch(boss if b % 2 else client, tenant.app_id, batch)
        params = {**spec, "limit": 23}
        url = events_url(tenant.app_id)
        with Writers(server, tenant) as writers:
            writers.wait_for_more(0)
            # Two walks at once: one by `next_cursor`, one by following `Link` exactly.
            first_a = expect_status(client.get(url, params=params))
            first_b = expect_status(client.get(url, params=params))
            walk_a, walk_b = [first_a], [first_b]
            cursor, link = first_a.json()["next_cursor"], _next_link(first_b)
            while cursor is not None or link is not None:
                writers.wait_for_more(writers.count())  # new entries land between any two pages
                if cursor is not None:
                    walk_a.append(
                        expect_status(client.get(url, params={**params, "cursor": cursor}))
                    )
                    cursor = walk_a[-1].json()["next_cursor"]
                if link is not None:
                    walk_b.append(expect_status(client.get(link)))
                    link = _next_link(walk_b[-1])
        everything = list_all(client, tenant.app_id, {"limit": 1000})
    assert _seqs(everything) == list(range(len(everything) - 1, -1, -1))
    # Writes really interleaved with the walk: at least one landed between any two pages.
    later = [e for e in everything if e["seq"] > first_a.json()["data"][0]["seq"]]
    assert len(later) >= len(walk_a) - 1
    for walk in (walk_a, walk_b):
        _check_page_shape(walk, 23)
        got = [e for page in walk for e in page.json()["data"]]
        top = int(walk[0].json()["data"][0]["seq"])
        want = [e for e in everything if e["seq"] <= top and passes_filters(e, spec)]
        assert _seqs(got) == _seqs(want)
        assert got == want
        assert len(want) > 50
