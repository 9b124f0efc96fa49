"""The SDK's own checks are the server's: its JCS is RFC 8785, and it refuses what the server does.

Values travel to the page as JSON text (``json.dumps``), so lone surrogates and large numbers
reach JavaScript exactly as a JSON body would carry them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page

from tests.browser.sdk_pages import PageServer, recorded_fetches, sdk_call_json, sdk_page
from tests.integration.http_api import events_url, post_bytes
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(180)

# Keys chosen so that UTF-16 order and code-point order disagree (U+E000.. vs astral planes).
KEYS = st.sampled_from(["", "a", "B", "\u00e9", "\ue000", "\uffff", "\U0001f600", "\U00010000"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=24,
)


@pytest.fixture(scope="module")
def app(server: Server, pages: PageServer) -> Tenant:
    """An app that allows the page server's origin."""
    return server.new_app("rules", origins=(pages.origin,))


@pytest.fixture(scope="module")
def token(server: Server, app: Tenant) -> str:
    """A session for this module's user."""
    return server.session(app, "user_rules")


@pytest.fixture(scope="module")
def page(
    browser: Browser, pages: PageServer, server: Server, app: Tenant, token: str
) -> Iterator[Page]:
    """One SDK page for the module."""
    with sdk_page(browser, pages, server, app, token) as opened:
        yield opened


def js_canonical(page: Page, values: list[Any]) -> list[dict[str, Any]]:
    """``trailkeep.canonicalize`` of each value, with the UTF-8 length the SDK counts."""
    found: list[dict[str, Any]] = page.evaluate(
        """(texts) => texts.map((text) => {
             const out = trailkeep.canonicalize(JSON.parse(text));
             return {text: out, bytes: new TextEncoder().encode(out).length};
           })""",
        [json.dumps(value) for value in values],
    )
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(JSON_VALUES, min_size=1, max_size=25))
def test_canonicalize_is_rfc8785(page: Page, values: list[Any]) -> None:
    for value, got in zip(values, js_canonical(page, values), strict=True):
        expected = rfc8785.dumps(value)
        assert got["text"] == expected.decode(), value
        assert got["bytes"] == len(expected)


def test_canonicalize_known_vectors(page: Page) -> None:
    # RFC 8785 §3.2.2.3 number samples and §3.2.3 sorting, checked against the reference.
    values: list[Any] = [
        [1e30, 4.5, 0.002, 1e-27, -0.0, 333333333.3333333, 1e21, 1e-7, 9007199254740991],
        {"\u20ac": "Euro", "\r": "CR", "\ufb33": "Hebrew", "1": "One", "\U0001f600": "Emoji",
         "\u0080": "Control", "\u00f6": "Latin"},
        {"s": "\u0000\u001f\u007f\"\\/\u2028\U0001f600\ud7ff\ue000"},
    ]  # fmt: skip
    got = js_canonical(page, values)
    assert [g["text"] for g in got] == [rfc8785.dumps(v).decode() for v in values]
    assert got[0]["text"] == (
        "[1e+30,4.5,0.002,1e-27,0,333333333.3333333,1e+21,1e-7,9007199254740991]"
    )


def nest(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` levels deep (the metadata object itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# (entry as the SDK takes it) — the server gets the same fields in snake_case.
CASES: list[dict[str, Any]] = [
    {"action": "a" * 128},
    {"action": "a" * 129},
    {"action": ""},
    {"action": "order..refund"},
    {"action": ".order"},
    {"action": "order.refund."},
    {"action": "order refund"},
    {"action": "caf\u00e9.open"},
    {"action": "ok.v2_beta-1"},
    {"action": "x\n"},
    {"action": 5},
    {"action": "t", "targetType": "\U0001f600" * 64, "targetId": "i"},  # 64 characters
    {"action": "t", "targetType": "\U0001f600" * 65, "targetId": "i"},
    {"action": "t", "targetType": "order", "targetId": "x" * 256},
    {"action": "t", "targetType": "order", "targetId": "x" * 257},
    {"action": "t", "targetType": "order"},
    {"action": "t", "targetId": "ord_1"},
    {"action": "t", "targetType": "order", "targetId": 17},
    {"action": "t", "targetType": "", "targetId": "x"},
    {"action": "t", "project": "p" * 128, "server": "s" * 128, "requestId": "r" * 128},
    {"action": "t", "requestId": "r" * 129},
    {"action": "t", "server": "bad \ud800"},
    {"action": "t", "metadata": {}},
    {"action": "t", "metadata": []},
    {"action": "t", "metadata": "text"},
    {"action": "t", "metadata": nest(8)},
    {"action": "t", "metadata": nest(9)},
    {"action": "t", "metadata": {"l": [[[[[[[1]]]]]]]}},  # depth 8 through arrays
    {"action": "t", "metadata": {"l": [[[[[[[[1]]]]]]]]}},
    {"action": "t", "metadata": {"n": 2**53 - 1, "m": -(2**53 - 1)}},
    {"action": "t", "metadata": {"n": 2**53}},
    {"action": "t", "metadata": {"n": -(2**53)}},
    {"action": "t", "metadata": {"n": 1e20}},
    {"action": "t", "metadata": {"n": 1e21, "f": 1.5e-300, "z": -0.0}},
    {"action": "t", "metadata": {"bad": "\udc00"}},
    {"action": "t", "metadata": {"\ud800": 1}},
    {"action": "t", "actor": "root"},
    {"action": "t", "time": "2020-01-01T00:00:00Z"},
    {"action": "t", "colour": "red"},
]

SNAKE = {"targetType": "target_type", "targetId": "target_id", "requestId": "request_id"}


def sized(total: int) -> dict[str, Any]:
    """Metadata whose canonical (RFC 8785) encoding is exactly ``total`` bytes, mixing
    characters whose UTF-8, UTF-16 and escaped lengths all differ, and a float."""
    base = {"f": 0.1, "z": "\U0001f600\u00e9\u001f", "s": ""}
    missing = total - len(rfc8785.dumps(base))
    base["s"] = "\u00e9" * (missing // 2) + "a" * (missing % 2)
    assert len(rfc8785.dumps(base)) == total
    return base


CASES += [{"action": "t", "metadata": sized(10_240)}, {"action": "t", "metadata": sized(10_241)}]


@pytest.mark.parametrize("entry", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_the_sdk_refuses_exactly_what_the_server_refuses(
    page: Page, server: Server, app: Tenant, token: str, entry: dict[str, Any]
) -> None:
    body = json.dumps({SNAKE.get(k, k): v for k, v in entry.items()})
    with server.client(token) as client:
        answer = post_bytes(client, events_url(app.app_id), body.encode())
    server_code = None if answer.status_code == 201 else answer.json()["code"]
    sent_before = len(recorded_fetches(page))
    outcome = sdk_call_json(page, "log", json.dumps(entry))
    sent = len(recorded_fetches(page)) - sent_before
    if server_code is None:
        assert outcome["ok"], outcome
        assert sent == 1
    else:
        assert not outcome["ok"]
        assert (outcome["code"], outcome["status"]) == (server_code, answer.status_code)
        assert sent == 0, "refused by the server, but not before sending"


def test_batch_errors_name_the_entry_as_the_server_does(
    page: Page, server: Server, app: Tenant, token: str
) -> None:
    entries = [{"action": "ok.one"}, {"action": "t", "targetType": "order"}]
    body = json.dumps({"events": [{SNAKE.get(k, k): v for k, v in e.items()} for e in entries]})
    with server.client(token) as client:
        answer = post_bytes(client, events_url(app.app_id) + "/batch", body.encode()).json()
    outcome = sdk_call_json(page, "logMany", json.dumps(entries))
    assert (outcome["code"], outcome["status"]) == (answer["code"], answer["status"])
    assert (
        outcome["detail"]
        == answer["detail"]
        == ("events[1].target_type, target_id: give both or neither")
    )
    too_many = sdk_call_json(page, "logMany", json.dumps([{"action": "x"}] * 1001))
    assert (too_many["code"], too_many["detail"]) == (
        "invalid_request",
        "events: expected an array of 1 to 1000 entries",
    )


def test_snake_case_fields_get_a_hint(page: Page) -> None:
    outcome = sdk_call_json(page, "log", json.dumps({"action": "t", "target_type": "order"}))
    assert (outcome["code"], outcome["status"]) == ("invalid_request", 400)
    assert outcome["detail"] == "target_type: unknown field; did you mean targetType?"


def test_values_json_cannot_carry_are_refused(page: Page) -> None:
    found = page.evaluate(
        """async () => {
             const tries = [{n: NaN}, {n: Infinity}, {big: 10n}, {u: undefined, d: new Date(0)}];
             const out = [];
             for (const metadata of tries) {
               try {
                 const entry = await trailkeep.audit.log({action: "t", metadata});
                 out.push({ok: true, metadata: entry.metadata});
               } catch (e) { out.push({ok: false, code: e.code, detail: e.detail}); }
             }
             return out;
           }"""
    )
    assert [f["ok"] for f in found] == [False, False, False, True]
    assert {f["code"] for f in found[:3]} == {"invalid_request"}
    assert found[0]["detail"] == "metadata: cannot be sent as JSON: NaN is not a JSON number"
    # What JSON.stringify writes is what is stored: undefined drops out, a Date is its ISO text.
    assert found[3]["metadata"] == {"d": "1970-01-01T00:00:00.000Z"}
