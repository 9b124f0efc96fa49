"""Reading an app's log over HTTP: filters, stats, bad input and the OpenAPI document (issue 3).

Every filter's answer is compared with filtering the known set of written entries in Python.
All reads here use a key, so they append nothing and the known set stays the whole log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.integration.corpus import ACTIONS, Corpus, build_corpus, filtered, parse_time
from tests.integration.http_api import (
    events_url,
    expect_problem,
    expect_status,
    key_id_of,
    list_all,
    write_batch,
)
from tests.servers import Server


@pytest.fixture(scope="module")
def corpus(server: Server) -> Corpus:
    """One app with a known mix of 68 entries."""
    return build_corpus(server, "reads corpus")


@pytest.fixture(scope="module")
def reader(server: Server, corpus: Corpus) -> Iterator[httpx.Client]:
    """A client with a read-only key of the corpus app."""
    with server.client(corpus.read_key) as client:
        yield client


def _time(corpus: Corpus, seq: int, offset_minutes: int = 0) -> str:
    """Entry ``seq``'s exact time, optionally written in another UTC offset (same instant)."""
    moment = parse_time(corpus.entries[seq]["time"])
    if not offset_minutes:
        return str(corpus.entries[seq]["time"])
    return moment.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


WRITE_KEY = "<the write key's id>"
TIME = "<time of seq>"

FILTERS: list[dict[str, Any]] = [
    {},
    {"action": "user.login"},
    {"action": ["user.login", "order.refund"]},
    {"action": ["user.login", "user.login", "nope.never"]},
    {"action": "nope.never"},
    {"action_prefix": "user."},
    {"action_prefix": "user"},
    {"action_prefix": "user_"},
    {"action_prefix": "order.re"},
    {"action_prefix": "zzz"},
    {"actor": "alice"},
    {"actor": "dave"},
    {"actor": WRITE_KEY},
    {"actor": "nobody"},
    {"target_type": "order"},
    {"target_type": "doc"},
    {"target_id": "o1"},
    {"target_id": "a_c"},
    {"target_id": "a%c"},
    {"target_type": "order", "target_id": "o2"},
    {"target_type": "user", "target_id": "o2"},
    {"kind": "admin"},
    {"kind": "user"},
    {"since": (TIME, 20, 0)},
    {"until": (TIME, 20, 0)},
    {"since": (TIME, 10, 0), "until": (TIME, 30, 0)},
    {"since": (TIME, 10, 330), "until": (TIME, 30, -480)},
    {"since": (TIME, 15, 0), "until": (TIME, 15, 0)},
    {"since": (TIME, 60, 0)},  # inside the batch: every batch entry shares one time
    {"until": (TIME, 0, 0)},
    {"action": ["user.login", "user.logout"], "action_prefix": "user.log"},
    {"action": ["user.login", "order.refund"], "action_prefix": "user."},
    {"action_prefix": "user", "actor": "alice"},
    {"exclude_action": "user.login"},
    {"exclude_action": ["user.login", "order.refund", "nope.never"]},
    {"exclude_action": "user.login", "action_prefix": "user."},
    {"exclude_action": "user.login", "action": ["user.login", "user.logout"]},
    {"exclude_action": "doc.share", "kind": "admin", "since": (TIME, 10, 0)},
    {"kind": "user", "target_type": "doc", "since": (TIME, 5, 0)},
    {"action": ["order.create", "doc.share"], "kind": "admin", "until": (TIME, 40, 0)},
    {"actor": WRITE_KEY, "target_type": "order", "action": "order.create"},
    {
        "action_prefix": "doc", "actor": "bob", "kind": "admin", "target_type": "order",
        "since": (TIME, 2, 0), "until": (TIME, 50, 0),
    },
]  # fmt: skip


def _resolve(corpus: Corpus, spec: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in spec.items():
        if value == WRITE_KEY:
            value = key_id_of(corpus.write_key)
        elif isinstance(value, tuple):
            value = _time(corpus, value[1], value[2])
        params[name] = value
    return params


@pytest.mark.parametrize("spec", FILTERS, ids=lambda s: "&".join(sorted(s)) or "none")
def test_list_filters_match_the_known_set(
    reader: httpx.Client, corpus: Corpus, spec: dict[str, Any]
) -> None:
    params = _resolve(corpus, spec)
    got = list_all(reader, corpus.app_id, {**params, "limit": 1000})
    want = filtered(corpus.entries, params)
    assert [e["seq"] for e in got] == [e["seq"] for e in reversed(want)]
    assert got == list(reversed(want))  # entries read back exactly as they were written


def test_filters_are_not_trivial(corpus: Corpus) -> None:
    """The known set is mixed enough that the filters above actually discriminate."""
    entries = corpus.entries
    assert {e["kind"] for e in entries} == {"admin", "user"}
    assert {e["actor"]["id"] for e in entries} >= {"alice", "bob", "carol", "dave"}
    assert {e["action"] for e in entries} == set(ACTIONS) | {"order.create"}
    assert len({e["time"] for e in entries}) > 50
    for spec in FILTERS[1:]:
        params = _resolve(corpus, spec)
        if params.get("action") == "nope.never" or params.get("actor") == "nobody":
            continue
        assert 0 < len(filtered(entries, params)) < len(entries) or spec in (
            {"action_prefix": "zzz"}, {"target_type": "user", "target_id": "o2"},
        ), spec  # fmt: skip


def test_since_and_until_are_inclusive(reader: httpx.Client, corpus: Corpus) -> None:
    t = corpus.entries[15]["time"]
    got = list_all(reader, corpus.app_id, {"since": t, "until": t})
    assert [e["seq"] for e in got] == [15]
    later = (parse_time(t) + timedelta(microseconds=1)).isoformat()
    assert all(e["seq"] > 15 for e in list_all(reader, corpus.app_id, {"since": later}))
    assert list_all(reader, corpus.app_id, {"since": later, "until": later}) == []


def test_default_page_is_50_newest_first(reader: httpx.Client, corpus: Corpus) -> None:
    response = expect_status(reader.get(events_url(corpus.app_id)))
    body = response.json()
    assert set(body) == {"data", "next_cursor"}
    seqs = [e["seq"] for e in body["data"]]
    top = len(corpus.entries) - 1
    assert seqs == list(range(top, top - 50, -1))
    assert isinstance(body["next_cursor"], str)
    assert 'rel="next"' in response.headers["link"]


@pytest.mark.parametrize("limit", [1, 2, 67, 68, 1000])
def test_limit_bounds_the_page(reader: httpx.Client, corpus: Corpus, limit: int) -> None:
    response = expect_status(reader.get(events_url(corpus.app_id), params={"limit": limit}))
    body = response.json()
    total = len(corpus.entries)
    assert len(body["data"]) == min(limit, total)
    assert (body["next_cursor"] is None) == (limit >= total)
    assert ("link" in response.headers) == (limit < total)


def test_get_one_entry(reader: httpx.Client, corpus: Corpus) -> None:
    for seq in (0, 7, 33):
        entry = corpus.entries[seq]
        response = expect_status(reader.get(events_url(corpus.app_id, f"events/{entry['id']}")))
        assert response.json() == entry
        assert response.content == corpus.raw[seq]
    expect_problem(
        reader.get(events_url(corpus.app_id, "events/evt_nosuchentry")), 404, "not_found"
    )


# ---------------------------------------------------------------------------------------- stats


STATS_FILTERS: list[dict[str, Any]] = [
    {},
    {"kind": "user"},
    {"action_prefix": "user"},
    {"action": ["order.create", "doc.share"]},
    {"target_type": "order", "since": (TIME, 10, 0)},
    {"actor": "alice", "until": (TIME, 40, 0)},
    {"action": "nope.never"},
    {"exclude_action": ["user.login", "doc.share"]},
    {"exclude_action": "order.create", "action_prefix": "order"},
]


def _key_of(entry: dict[str, Any], group_by: str) -> str | None:
    target = entry.get("target") or {}
    return {
        "action": entry["action"], "actor": entry["actor"]["id"],
        "target_type": target.get("type"), "day": str(entry["time"])[:10],
        "hour": str(entry["time"])[:13] + ":00:00Z",
    }[group_by]  # fmt: skip


@pytest.mark.parametrize("group_by", ["action", "actor", "target_type", "day", "hour"])
@pytest.mark.parametrize("spec", STATS_FILTERS, ids=lambda s: "&".join(sorted(s)) or "none")
def test_stats_count_the_known_set(
    reader: httpx.Client, corpus: Corpus, group_by: str, spec: dict[str, Any]
) -> None:
    params = _resolve(corpus, spec)
    body = expect_status(
        reader.get(events_url(corpus.app_id, "stats"), params={**params, "group_by": group_by})
    )
    groups = body.json()["groups"]
    assert all(set(g) >= {"key", "count"} for g in groups)
    want = Counter(_key_of(e, group_by) for e in filtered(corpus.entries, params))
    assert {g["key"]: g["count"] for g in groups} == dict(want)
    assert len(groups) == len(want)  # no key twice
    counts = [g["count"] for g in groups]
    if group_by in ("day", "hour"):
        assert [g["key"] for g in groups] == sorted(g["key"] for g in groups)
    else:
        assert counts == sorted(counts, reverse=True)


def test_stats_default_groups_by_action(reader: httpx.Client, corpus: Corpus) -> None:
    groups = expect_status(reader.get(events_url(corpus.app_id, "stats"))).json()["groups"]
    assert {g["key"]: g["count"] for g in groups} == dict(
        Counter(e["action"] for e in corpus.entries)
    )


def test_stats_by_day_over_several_days_are_in_date_order(
    reader: httpx.Client, corpus: Corpus
) -> None:
    """All entries are written today; a window that ends before them counts nothing."""
    first = parse_time(corpus.entries[0]["time"])
    before = (first - timedelta(days=3)).isoformat()
    body = reader.get(
        events_url(corpus.app_id, "stats"), params={"group_by": "day", "until": before}
    )
    assert expect_status(body).json()["groups"] == []


# ---------------------------------------------------------------------------------- bad input


BAD_LIST: list[tuple[dict[str, Any], str]] = [
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": "abc"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"limit": "9" * 40}, "limit"),
    ({"kind": "x"}, "kind"),
    ({"kind": "ADMIN"}, "kind"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-11-23"}, "since"),
    ({"since": "2026-11-23T08:15:30"}, "since"),  # no offset
    ({"until": "2026-13-45T00:00:00Z"}, "until"),
    ({"until": "2026-02-30T00:00:00Z"}, "until"),
    ({"since": "2026-01-01T00:00:00+25:00"}, "since"),
    ({"since": "9999-12-31T23:59:59-23:59"}, "since"),
    ({"until": "0001-01-01T00:00:00+01:00"}, "until"),
    ({"since": "2026-01-01T00:00:00" + "0" * 80 + "Z"}, "since"),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"cursor": "garbage"}, "cursor"),
    ({"cursor": ""}, "cursor"),
    ({"cursor": "\u00e9t\u00e9"}, "cursor"),
    ({"cursor": "===="}, "cursor"),
    ({"cursor": "A" * 200}, "cursor"),
    ({"action": "a" * 129}, "action"),
    ({"action_prefix": "a" * 129}, "action_prefix"),
    ({"actor": "a" * 257}, "actor"),
    ({"target_type": "t" * 65}, "target_type"),
    ({"exclude_action": "a" * 129}, "exclude_action"),
    ({"exclude_action": [f"a{i}" for i in range(501)]}, "exclude_action"),
]


@pytest.mark.parametrize(("params", "name"), BAD_LIST, ids=[n for _, n in BAD_LIST])
def test_bad_list_parameters_are_400_naming_them(
    reader: httpx.Client, corpus: Corpus, params: dict[str, Any], name: str
) -> None:
    body = expect_problem(
        reader.get(events_url(corpus.app_id), params=params), 400, "invalid_request"
    )
    assert name in body["detail"], body


BAD_OTHERS: list[tuple[str, dict[str, Any], str]] = [
    ("stats", {"group_by": "nope"}, "group_by"),
    ("stats", {"group_by": ""}, "group_by"),
    ("stats", {"kind": "x"}, "kind"),
    ("stats", {"since": "yesterday"}, "since"),
    ("stats", {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ("export", {"format": "xml"}, "format"),
    ("export", {"format": ""}, "format"),
    ("export", {"until": "2026-13-45T00:00:00Z"}, "until"),
    ("export", {"kind": "both"}, "kind"),
]


@pytest.mark.parametrize(("route", "params", "name"), BAD_OTHERS)
def test_bad_stats_and_export_parameters_are_400(
    reader: httpx.Client, corpus: Corpus, route: str, params: dict[str, Any], name: str
) -> None:
    response = reader.get(events_url(corpus.app_id, route), params=params)
    body = expect_problem(response, 400, "invalid_request")
    assert name in body["detail"], body


def test_tampered_and_foreign_cursors_are_400(
    server: Server, reader: httpx.Client, corpus: Corpus
) -> None:
    first = expect_status(reader.get(events_url(corpus.app_id), params={"limit": 5}))
    cursor = first.json()["next_cursor"]
    assert cursor
    for i in range(len(cursor)):  # change any one character: never accepted, never a 500
        swapped = cursor[:i] + ("B" if cursor[i] != "B" else "C") + cursor[i + 1 :]
        got = reader.get(events_url(corpus.app_id), params={"cursor": swapped})
        assert expect_problem(got, 400, "invalid_request")["detail"].startswith("cursor"), i
    page = expect_status(reader.get(events_url(corpus.app_id), params={"cursor": cursor}))
    assert page.json()["data"]


STRANGE_VALUES = [
    "' OR 1=1 --", "%", "_", "%%", "user%", "user._ogin", "*", '"', "\\", "\u2603", "x\x00y",
    "\U0010ffff", "\ud7ff", "\U0010fffe\U0010ffff", "a\U0010ffff", ";DROP TABLE events;",
]  # fmt: skip


@pytest.mark.parametrize("value", STRANGE_VALUES)
@pytest.mark.parametrize("name", ["action", "action_prefix", "actor", "target_type", "target_id"])
def test_sql_ish_values_are_only_values(
    reader: httpx.Client, corpus: Corpus, name: str, value: str
) -> None:
    response = reader.get(events_url(corpus.app_id), params={name: value, "limit": 1000})
    got = expect_status(response).json()["data"]
    assert got == list(reversed(filtered(corpus.entries, {name: value})))
    stats = reader.get(events_url(corpus.app_id, "stats"), params={name: value})
    assert sum(g["count"] for g in expect_status(stats).json()["groups"]) == len(got)
    export = reader.get(events_url(corpus.app_id, "export"), params={name: value})
    assert len(expect_status(export).content.splitlines()) == len(got)


def test_literal_wildcards_match_only_themselves(reader: httpx.Client, corpus: Corpus) -> None:
    """`_` and `%` in values are characters, not LIKE wildcards."""
    by_id = list_all(reader, corpus.app_id, {"target_id": "a_c"})
    assert by_id
    assert {e["target"]["id"] for e in by_id} == {"a_c"}
    by_pct = list_all(reader, corpus.app_id, {"target_id": "a%c"})
    assert by_pct
    assert {e["target"]["id"] for e in by_pct} == {"a%c"}
    prefixed = list_all(reader, corpus.app_id, {"action_prefix": "user_"})
    assert prefixed
    assert {e["action"] for e in prefixed} == {"user_x.login"}
    assert list_all(reader, corpus.app_id, {"action_prefix": "%"}) == []
    assert list_all(reader, corpus.app_id, {"actor": "%"}) == []


def test_many_actions_or_together(server: Server, corpus: Corpus, reader: httpx.Client) -> None:
    """An OR of more actions than the merge handles still answers exactly."""
    actions = ["user.login", "order.refund"] + [f"none.a{i}" for i in range(150)]
    got = list_all(reader, corpus.app_id, {"action": actions, "limit": 7})
    assert got == list(reversed(filtered(corpus.entries, {"action": actions})))


def test_prefix_over_many_distinct_actions(server: Server) -> None:
    """A prefix that expands to more actions than the merge takes, alone and with `action`."""
    tenant = server.new_app("many actions")
    with server.client(tenant.key) as client:
        written = write_batch(
            client, tenant.app_id,
            [{"action": f"many.a{i:03d}"} for i in range(80)] + [{"action": "other.x"}] * 3,
        )  # fmt: skip
        for params in (
            {"action_prefix": "many."},
            {"action_prefix": "many.", "action": ["many.a079", "many.a002", "other.x"]},
            {"action_prefix": "many.a07"},
            {"action_prefix": "many.", "action": "many.a070", "kind": "admin"},
        ):
            want = list(reversed(filtered(written, params)))
            assert want
            assert list_all(client, tenant.app_id, {**params, "limit": 9}) == want, params
            stats = expect_status(
                client.get(events_url(tenant.app_id, "stats"), params=params)
            ).json()
            assert sum(g["count"] for g in stats["groups"]) == len(want), params


def test_openapi_lists_every_read_and_integrity_route(server: Server) -> None:
    doc = expect_status(httpx.get(f"{server.url}/openapi.json", timeout=10)).json()
    paths = doc["paths"]

    def params(path: str) -> set[str]:
        assert path in paths, sorted(paths)
        return {p["name"] for p in paths[path]["get"].get("parameters", []) if p["in"] == "query"}

    filters = {"action", "exclude_action", "action_prefix", "actor", "target_type", "target_id",
               "kind", "since", "until", "changed_path"}  # fmt: skip
    app = "/v1/apps/{app_id}"
    assert params(f"{app}/events") == filters | {"limit", "cursor"}
    assert params(f"{app}/events/{{entry_id}}") == {"proof"}
    assert params(f"{app}/stats") == filters | {"group_by"}
    assert params(f"{app}/export") == filters | {"format", "after_seq"}
    assert params(f"{app}/checkpoint") == set()
    assert params(f"{app}/proofs/inclusion") == {"seq", "tree_size"}
    assert params(f"{app}/proofs/consistency") == {"from", "to"}
    assert "get" in paths["/v1/checkpoint-key"]
    # Every read counts against the read limit: its 429 is documented (and a proof's 503).
    for path in ("events", "events/{entry_id}", "stats", "export", "checkpoint",
                 "proofs/inclusion", "proofs/consistency"):  # fmt: skip
        assert "429" in paths[f"{app}/{path}"]["get"]["responses"], path
    assert "503" in paths[f"{app}/events/{{entry_id}}"]["get"]["responses"]
    assert "post" in paths[f"{app}/events"]
    assert "post" in paths[f"{app}/events/batch"]
