"""The SDK's Server-Sent Events parsing, and the live stream's in-memory filter (issue 23)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trailkeep.log.query import Filters
from trailkeep.sdk.sse import ServerEvent, events_of, lines_of


def test_lines_split_at_cr_lf_and_crlf_only_even_across_chunks() -> None:
    chunks = [b"a\r", b"\nb\xe2\x80\xa8c\xc2\x85d\n", b"e\r", b"f\r\n\r", b"\n"]
    assert list(lines_of(chunks)) == ["a", "b\u2028c\u0085d", "e", "f", ""]


def test_events_join_data_skip_comments_and_keep_ids() -> None:
    lines = [": ping", "", "id: 7", "data: {\"seq\":7}", "", "event: dropped", "data: x",
             "data: y", "", "id: 8", ""]  # fmt: skip
    assert list(events_of(lines)) == [
        ServerEvent("message", '{"seq":7}', "7"),
        ServerEvent("dropped", "x\ny", None),
        ServerEvent("message", "", "8"),  # an id alone: where a reconnection resumes
    ]


def test_a_line_without_end_is_refused_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trailkeep.sdk.sse.LINE_MAX", 10)
    with pytest.raises(ValueError, match="longer than 10"):
        list(lines_of([b"x" * 6, b"x" * 6]))


ENTRY = {
    "seq": 3, "id": "evt_1", "time": "2026-12-07T10:00:00.000000Z", "action": "user.role.change",
    "kind": "user", "actor": {"type": "user", "id": "u1"},
    "target": {"type": "user", "id": "u2"}, "changes": [{"path": "/role", "new": "x"}],
}  # fmt: skip
STUB = {"seq": 4, "id": "evt_2", "time": "2026-12-07T10:00:00.000000Z", "erased": True}
AT = datetime(2026, 12, 7, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("filters", "entry", "stub"),
    [
        (Filters(), True, True),
        (Filters(actions=("user.login", "user.role.change")), True, False),
        (Filters(actions=("user.login",)), False, False),
        (Filters(action_prefix="user."), True, False),
        (Filters(action_prefix="users"), False, False),
        (Filters(actor="u1"), True, False),
        (Filters(actor="u2"), False, False),
        (Filters(target_type="user", target_id="u2"), True, False),
        (Filters(target_id="u1"), False, False),
        (Filters(kind="admin"), False, False),
        (Filters(changed_path="/role"), True, False),
        (Filters(changed_path="/name"), False, False),
        (Filters(exclude_actions=("user.login",)), True, False),
        (Filters(exclude_actions=("user.login", "user.role.change")), False, False),
        (Filters(since=AT, until=AT), True, True),
        (Filters(since=datetime(2026, 12, 8, tzinfo=UTC)), False, False),
    ],
)
def test_matches_decides_as_a_list_does(filters: Filters, entry: bool, stub: bool) -> None:
    assert filters.matches(ENTRY) is entry
    assert filters.matches(STUB) is stub  # a stub matches a filter on time alone
