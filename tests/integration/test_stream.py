"""The live stream, `GET /v1/apps/{app}/events/stream` (issue 23, DESIGN §6), on both backends.

Subscribers are real SSE connections to a real `trailkeep serve`; what they receive is compared
with what a list returns. The server of this module has a small queue bound, a short heartbeat
and a cap of three streams per app, so that dropping, heartbeats and the cap can be seen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from tests.conftest import new_server
from tests.integration.http_api import (
    Entry,
    events_url,
    expect_problem,
    list_all,
    log_size,
    write_batch,
    write_one,
)
from tests.integration.live_client import Subscriber, entries_of
from tests.servers import BIN, Server, Tenant
from trailkeep.sdk.sse import EventParser

pytestmark = pytest.mark.timeout(180)

QUEUE_BOUND = 50  # above any batch the tests write at once but the slow one's backlog
PER_APP = 3
STREAM_ENV = {
    "TRAILKEEP_STREAM_QUEUE_ENTRIES": str(QUEUE_BOUND),
    "TRAILKEEP_STREAM_HEARTBEAT_SECONDS": "0.3",
    "TRAILKEEP_STREAMS_PER_APP": str(PER_APP),
    "TRAILKEEP_STREAMS_PER_CLIENT": "50",
}


@pytest.fixture(scope="module")
def live(
    request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of this module's own, with the stream settings above."""
    with new_server(request, backend, tmp_path_factory.mktemp("stream")) as srv:
        srv.env.update(STREAM_ENV)
        yield srv.start()


def stored(
    client: httpx.Client, app_id: str, params: Mapping[str, Any] | None = None
) -> list[Entry]:
    """The app's (matching) entries as a list returns them, oldest first."""
    return list(reversed(list_all(client, app_id, {"limit": 1000, **(params or {})})))


@pytest.fixture
def app(live: Server) -> Tenant:
    """A fresh app on the module's server."""
    return live.new_app("stream app")


def test_a_subscriber_gets_what_is_written_after_it_connected(live: Server, app: Tenant) -> None:
    with live.client(app.key) as writer:
        old = write_batch(writer, app.app_id, [{"action": "s.old"}] * 3)
        sub = Subscriber(live, app.app_id, app.key)
        try:
            written = [write_one(writer, app.app_id, {"action": f"s.one{i}"}) for i in range(4)]
            written += write_batch(writer, app.app_id, [{"action": "s.batch"}] * 20)
            got = entries_of(sub.take(len(written)))
            sub.nothing_more()
            assert sub.comments >= 1  # heartbeats every 0.3 s here
            assert sub.resume_point == str(old[-1]["seq"])  # stated first, as an id alone
        finally:
            sub.close()
        listed = stored(writer, app.app_id)
    assert [e["seq"] for e in got] == list(range(old[-1]["seq"] + 1, old[-1]["seq"] + 25))
    assert got == written == listed[3:]  # exactly as a list returns them


@pytest.mark.parametrize("how", ["after_seq", "Last-Event-ID"])
def test_resuming_gives_no_gap_and_no_repeat(live: Server, app: Tenant, how: str) -> None:
    with live.client(app.key) as writer:
        write_batch(writer, app.app_id, [{"action": "r.a"}] * 10)
        first = Subscriber(live, app.app_id, app.key, {"after_seq": -1})
        try:
            head = entries_of(first.take(10))
            write_batch(writer, app.app_id, [{"action": "r.b"}] * 5)
            head += entries_of(first.take(5))
        finally:
            first.close()
        resume_at = head[6]["seq"]  # as if the connection broke after the seventh entry
        write_batch(writer, app.app_id, [{"action": "r.c"}] * 4)  # written while away
        if how == "after_seq":
            second = Subscriber(live, app.app_id, app.key, {"after_seq": resume_at})
        else:
            second = Subscriber(live, app.app_id, app.key, **{"Last-Event-ID": str(resume_at)})
        try:
            rest = entries_of(second.take(8 + 4))
            write_batch(writer, app.app_id, [{"action": "r.d"}] * 3)  # and live again
            rest += entries_of(second.take(3))
            second.nothing_more()
        finally:
            second.close()
        listed = stored(writer, app.app_id)
    assert head[:7] + rest == listed  # every entry once, in order
    assert [e["seq"] for e in head[:7] + rest] == list(range(len(listed)))


def test_filters_apply_as_in_a_list(live: Server, app: Tenant) -> None:
    params = {"action_prefix": "f.", "target_type": "doc", "kind": "admin"}
    events = [
        {"action": f"{prefix}.{i}", "target_type": kind, "target_id": f"d{i}"}
        for i in range(6) for prefix in ("f", "g") for kind in ("doc", "user")
    ]  # fmt: skip
    with live.client(app.key) as writer:
        write_batch(writer, app.app_id, events)  # before: replayed with after_seq
        sub = Subscriber(live, app.app_id, app.key, {**params, "after_seq": -1})
        by_path = Subscriber(live, app.app_id, app.key, {"changed_path": "/role"})
        try:
            write_batch(writer, app.app_id, events)  # after: live
            write_one(writer, app.app_id, {"action": "f.role", "target_type": "doc",
                                           "target_id": "u1", "before": {"role": "a"},
                                           "after": {"role": "b"}})  # fmt: skip
            matching = stored(writer, app.app_id, params)
            assert len(matching) == 6 + 6 + 1
            got = entries_of(sub.take(len(matching)))
            sub.nothing_more()
            (changed,) = entries_of(by_path.take(1))
            by_path.nothing_more()
        finally:
            sub.close()
            by_path.close()
    assert got == matching
    assert changed["action"] == "f.role"


def test_bad_input_is_a_400_naming_the_parameter(live: Server, app: Tenant) -> None:
    url = events_url(app.app_id, "events/stream")
    with live.client(app.key) as client:
        for params, headers, named in [
            ({"after_seq": "x"}, {}, "after_seq"),
            ({"after_seq": "-2"}, {}, "after_seq"),
            ({"kind": "nope"}, {}, "kind"),
            ({"since": "2026-01-01"}, {}, "since"),
            ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
            ({}, {"Last-Event-ID": "9" * 40}, "Last-Event-ID"),
        ]:
            problem = expect_problem(client.get(url, params=params, headers=headers), 400,
                                     "invalid_request")  # fmt: skip
            assert named in problem["detail"], problem


def test_a_reader_without_events_read_is_refused(live: Server, app: Tenant) -> None:
    writer_key = live.new_key(app.app_id, "events:write").key
    member = live.session(app, "mia", role="member")
    url = events_url(app.app_id, "events/stream")
    for token in (writer_key, member):
        with live.client(token) as client:
            expect_problem(client.get(url), 403, "forbidden")
    with live.client("tk_nosuchkey_" + "a" * 40) as client:
        expect_problem(client.get(url), 401, "unauthenticated")


def test_a_persons_stream_is_recorded_once(live: Server, app: Tenant) -> None:
    owner = live.session(app, "olga", role="owner")
    with live.client(app.key) as reader:
        before = log_size(reader, app.app_id)
        sub = Subscriber(live, app.app_id, owner, {"action_prefix": "p."}, **{"User-Agent": "t/1"})
        try:
            written = write_batch(reader, app.app_id, [{"action": "p.x"}] * 5)
            got = entries_of(sub.take(5))  # its own record is not streamed to it
            sub.nothing_more()
        finally:
            sub.close()
        keyed = Subscriber(live, app.app_id, app.key)  # a key's stream is not recorded
        keyed.close()
        added = [e for e in stored(reader, app.app_id) if e["seq"] >= before]
    assert got == written
    audit = added[0]
    assert [e["action"] for e in added] == ["audit.read"] + ["p.x"] * 5
    assert audit["kind"] == "admin"
    assert audit["actor"]["id"] == "olga"
    assert audit["metadata"] == {"route": "stream", "filters": {"action_prefix": "p."}}


def test_streams_per_app_are_capped(live: Server, app: Tenant) -> None:
    subs = [Subscriber(live, app.app_id, app.key) for _ in range(PER_APP)]
    url = events_url(app.app_id, "events/stream")
    try:
        with live.client(app.key) as client:
            problem = expect_problem(client.get(url), 429, "too_many_streams")
            assert "live streams" in problem["detail"]
            other = live.new_app("stream other")  # the cap is per app
            subs.append(Subscriber(live, other.app_id, other.key))
            subs.pop(0).close()
            deadline = time.monotonic() + 10
            while True:  # the slot comes back once the server has seen the hang-up
                with client.stream("GET", url) as response:
                    status = response.status_code
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert status == 200
    finally:
        for sub in subs:
            sub.close()


def _slow_subscriber(server: Server, app_id: str, token: str) -> socket.socket:
    """A connection that asks for the stream and then reads nothing, with a tiny window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET {events_url(app_id, 'events/stream')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_a_slow_subscriber_is_dropped_while_a_fast_one_keeps_up(live: Server, app: Tenant) -> None:
    slow = _slow_subscriber(live, app.app_id, app.key)
    fast = Subscriber(live, app.app_id, app.key)
    bulk = {"action": "b.fat", "metadata": {"pad": "x" * 9_000}}
    try:
        time.sleep(0.5)  # both subscribed
        seconds: list[float] = []
        written: list[Entry] = []
        with live.client(app.key) as writer:
            for _ in range(60):
                started = time.perf_counter()
                written += write_batch(writer, app.app_id, [bulk] * 10)
                seconds.append(time.perf_counter() - started)
        got = entries_of(fast.take(len(written), within=60))
        assert got == written
        assert max(seconds) < 5, seconds  # no write waited for the stalled reader
        slow.settimeout(30)
        received = b""
        while b"event: dropped" not in received or not received.endswith(b"\r\n\r\n"):
            chunk = slow.recv(1 << 20)
            assert chunk, f"closed without `event: dropped` after {len(received)} bytes"
            received += chunk
    finally:
        fast.close()
        slow.close()
    body = received.split(b"\r\n\r\n", 1)[1]
    dechunked = b"".join(_chunks(body))
    parser = EventParser()
    events = parser.feed(dechunked) + parser.end()
    assert events[0].id == str(written[0]["seq"] - 1)  # first, where it would resume from
    assert events[0].data == ""
    entries = [e for e in events if e.event == "message" and e.data]
    dropped = [e for e in events if e.event == "dropped"]
    assert len(dropped) == 1
    assert events[-1] is dropped[0]
    last_seq = json.loads(dropped[0].data)["last_seq"]
    assert len(entries) < len(written)  # it was dropped before the end
    ids = [int(e.id or -1) for e in entries]
    first = written[0]["seq"]
    assert ids == list(range(first, first + len(ids)))  # in order, then cut
    assert last_seq == (ids[-1] if ids else first - 1)  # where to resume from


def _chunks(body: bytes) -> Iterator[bytes]:
    """The data of an HTTP/1.1 chunked body (as far as it goes)."""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return
        yield rest[:size]
        body = rest[size + 2 :]


#: Each tail's stderr, read on a thread too: a pipe nobody reads would block it once full.
_STDERR: dict[int, list[str]] = {}


def _tail(live: Server, app: Tenant, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`trailkeep events tail` on the app, its stdout lines collected on a thread."""
    proc = subprocess.Popen(
        [str(BIN), "events", "tail", "--app", app.app_id, "--server", live.url,
         "--api-key", app.key, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as a terminal delivers it, even when this suite runs in the background (where
        # the shell starts it with SIGINT ignored, which the child would inherit).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        # faulthandler: should one ever hang, SIGABRT makes it print where (see _stopped).
        env={**os.environ, "COLUMNS": "400", "PYTHONIOENCODING": "utf-8",
             "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    lines: list[str] = []
    _STDERR[proc.pid] = errors = []

    def read(stream: Any, into: list[str]) -> None:
        into.extend(iter(stream.readline, ""))

    threading.Thread(target=read, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=read, args=(proc.stderr, errors), daemon=True).start()
    return proc, lines


def _stopped(proc: subprocess.Popen[str]) -> str:
    """Wait for a tail sent Ctrl-C to exit cleanly; its stderr."""
    try:
        status = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        proc.wait(10)
        time.sleep(0.5)
        stacks = "".join(_STDERR[proc.pid])
        raise AssertionError(f"the tail did not stop on Ctrl-C:\n{stacks}") from None
    time.sleep(0.2)  # the reader thread has the last of stderr
    errors = "".join(_STDERR.pop(proc.pid))
    assert status == 0, errors
    return errors


def _until(lines: list[str], count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(lines) < count:
        assert proc.poll() is None, "".join(_STDERR.get(proc.pid, []))
        assert time.monotonic() < deadline, f"tail printed {lines}"
        time.sleep(0.05)


def test_events_tail_prints_what_is_written_and_stops_on_ctrl_c(live: Server, app: Tenant) -> None:
    with live.client(app.key) as writer:
        old = write_batch(writer, app.app_id, [{"action": "t.old"}] * 3)
        as_json, printed = _tail(live, app, "--json", "--after-seq", str(old[0]["seq"]),
                                 "--action-prefix", "t.")  # fmt: skip
        human, shown = _tail(live, app, "--action", "t.new")
        try:
            _until(printed, 2, as_json)  # the stored ones after --after-seq
            time.sleep(1)  # the human tail has connected (it prints only new entries)
            hostile = "\x1b[31mred\u202e [bold]x[/bold]"
            new = write_batch(writer, app.app_id, [
                {"action": "t.new", "target_type": "doc", "target_id": hostile},
                {"action": "other"}, {"action": "t.new"},
            ])  # fmt: skip
            _until(printed, 4, as_json)
            _until(shown, 2, human)
        finally:
            for proc in (as_json, human):
                proc.send_signal(signal.SIGINT)
        for proc in (as_json, human):
            assert "Traceback" not in _stopped(proc)
    assert [json.loads(line) for line in printed] == [*old[1:], new[0], new[2]]
    first = shown[0].split()
    assert first[:4] == [str(new[0]["seq"]), new[0]["time"], new[0]["kind"], "t.new"]
    assert "\\x1b[31mred\\u202e [bold]x[/bold]" in shown[0]  # inert: controls made visible
    assert "\x1b" not in "".join(shown)
    assert shown[1].split()[0] == str(new[2]["seq"])


def test_a_stream_ends_after_its_time_and_resumes_without_gap(sqlite_server: Server) -> None:
    srv = sqlite_server
    srv.env["TRAILKEEP_STREAM_MAX_SECONDS"] = "1"
    srv.start()
    tenant = srv.new_app("stream max")
    with srv.client(tenant.key) as writer:
        sub = Subscriber(srv, tenant.app_id, tenant.key)
        try:
            written = write_batch(writer, tenant.app_id, [{"action": "m.a"}] * 3)
            got = entries_of(sub.take(3))
            assert sub.events.get(timeout=10) is None  # then a clean end, no `dropped`
        finally:
            sub.close()
        written += write_batch(writer, tenant.app_id, [{"action": "m.b"}] * 2)  # while away
        again = Subscriber(srv, tenant.app_id, tenant.key, **{"Last-Event-ID": str(got[-1]["seq"])})
        try:
            got += entries_of(again.take(2))
        finally:
            again.close()
    assert got == written
