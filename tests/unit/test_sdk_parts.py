"""The Python SDK's pure parts: export record splitting, filters, retry timing, error decoding."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailkeep.sdk.build import Records, filter_params
from trailkeep.sdk.errors import (
    NotFound,
    RateLimited,
    ServerError,
    TrailkeepError,
    from_response,
)
from trailkeep.sdk.middleware import Capture
from trailkeep.sdk.retry import RetryPolicy, retry_after_of


def field(bare_cr: bool) -> st.SearchStrategy[str]:
    """CSV field text; with a "\\n" line terminator Python's writer leaves a bare CR unquoted."""
    excluded = "" if bare_cr else "\r"
    chars = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters=excluded)
    return st.text(chars, max_size=12)


@given(
    terminator=st.sampled_from(["\n", "\r\n"]),
    data=st.data(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_csv_records_survive_any_chunking(
    terminator: str, data: st.DataObject, cuts: list[int]
) -> None:
    rows = data.draw(
        st.lists(st.lists(field(terminator == "\r\n"), min_size=1, max_size=4), max_size=8)
    )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=terminator).writerows(rows)
    text = buffer.getvalue()
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    records = Records(csv=True)
    out: list[str] = []
    for start, end in itertools.pairwise(bounds):
        out += records.feed(text[start:end])
    out += records.end()
    assert list(csv.reader(out)) == rows
    assert len(out) == len(rows)


def test_ndjson_records_are_lines() -> None:
    records = Records(csv=False)
    assert records.feed('{"a":1}\n{"b"') == ['{"a":1}']
    assert records.feed(':"x\\ny"}\n') == ['{"b":"x\\ny"}']
    assert records.feed('{"c":3}') == []
    assert records.end() == ['{"c":3}']


def test_filters_become_query_parameters() -> None:
    moment = datetime(2026, 11, 23, 9, 15, 30, 5, tzinfo=UTC) + timedelta(hours=0)
    params = filter_params({"action": ["a.b", "c.d"], "kind": "admin", "since": moment,
                            "until": "2026-11-24T00:00:00Z", "actor": None})  # fmt: skip
    assert params == [("action", "a.b"), ("action", "c.d"), ("kind", "admin"),
                      ("since", "2026-11-23T09:15:30.000005Z"),
                      ("until", "2026-11-24T00:00:00Z")]  # fmt: skip
    assert filter_params({"action": "a.b"}) == [("action", "a.b")]
    assert filter_params({"exclude_action": ["audit.read", "audit.export"]}) == [
        ("exclude_action", "audit.read"), ("exclude_action", "audit.export"),
    ]  # fmt: skip
    with pytest.raises(TrailkeepError) as caught:
        filter_params({"acton": "x"})
    assert (caught.value.code, caught.value.status, caught.value.local) == (
        "invalid_request", 400, True,
    )  # fmt: skip


def test_retry_after_is_read_in_both_forms() -> None:
    assert retry_after_of({"retry-after": "7"}) == 7.0
    later = datetime.now(UTC) + timedelta(seconds=30)
    waited = retry_after_of({"retry-after": format_datetime(later, usegmt=True)})
    assert waited is not None
    assert 25 <= waited <= 31
    assert retry_after_of({"retry-after": "soon"}) is None
    assert retry_after_of({}) is None


def test_backoff_is_jittered_exponential_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0)
    for attempt, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)):
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range
    assert all(3.0 <= policy.delay(0, 3.0) <= 3.5 for _ in range(100))
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_problem_documents_become_typed_errors() -> None:
    body = json.dumps({"type": "urn:trailkeep:problem:not_found", "title": "Not Found",
                       "status": 404, "code": "not_found", "detail": "no entry 'x'",
                       "instance": "/v1/apps/a/events/x"}).encode()  # fmt: skip
    error = from_response(404, "application/problem+json", body)
    assert isinstance(error, NotFound)
    assert (error.code, error.status, error.detail, error.instance) == (
        "not_found", 404, "no entry 'x'", "/v1/apps/a/events/x",
    )  # fmt: skip
    problem = b'{"code":"rate_limited","detail":"slow down"}'
    limited = from_response(429, "application/problem+json", problem, retry_after=3)
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 3
    proxy = from_response(502, "text/html", b"<html>Bad gateway</html>")
    assert isinstance(proxy, ServerError)
    assert (proxy.code, proxy.status) == ("server_error", 502)
    assert proxy.detail == "HTTP 502 Bad Gateway: <html>Bad gateway</html>"


def test_the_capture_finds_the_end_user() -> None:
    capture = Capture()
    headers = {"authorization": "Bearer tok.en", "user-agent": "UA", "cookie": "s=c"}
    found = capture.context(headers, "192.0.2.1")
    assert (found.session, found.client_ip, found.user_agent) == ("tok.en", "192.0.2.1", "UA")
    assert capture.session({"authorization": "Basic abc"}) is None
    cookie = Capture(session_header=None, session_cookie="s")
    assert cookie.session(headers) == "c"
    assert cookie.session({"cookie": 'broken="; s'}) is None
    proxied = Capture(client_ip_header="X-Forwarded-For")
    assert proxied.client_ip({"x-forwarded-for": "6.6.6.6, 198.51.100.9"}, "10.0.0.1") == (
        "198.51.100.9"
    )
    assert proxied.client_ip({}, "::ffff:10.0.0.1") == "::ffff:a00:1"
    assert proxied.client_ip({}, "unix-socket") is None
