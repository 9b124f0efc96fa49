"""Exports that stall (issue 20): bounded memory, prompt writes beside them, capped streams.

30 clients that opened an export and stopped reading once grew the server by about 2.5 GiB,
and a write beside them waited 5 s. Here clients (distinct addresses behind a trusted proxy)
open exports of a large log over raw sockets with small receive buffers and read nothing more
than the status line; the server's resident memory is read from /proc.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.http_api import batch_url, events_url, expect_created
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)

PER_APP, PER_CLIENT = 8, 2
ENTRIES, PAD = 20_000, 2_000  # about 45 MB of NDJSON


def rss_mib(srv: Server) -> float:
    """The server process's resident memory (VmRSS), in MiB."""
    assert srv.proc is not None
    with open(f"/proc/{srv.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that believes X-Forwarded-For from loopback, with the default export caps."""
    server = Server(
        tmp_path_factory.mktemp("exports") / "data", {"TRAILKEEP_TRUSTED_PROXIES": "127.0.0.0/8"}
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tenant(srv: Server) -> Tenant:
    """An app with a large log."""
    made = srv.new_app("exports")
    with srv.client(made.key) as client:
        for first in range(0, ENTRIES, 1_000):
            events = [
                {"action": "big", "metadata": {"n": n, "pad": "p" * PAD}}
                for n in range(first, first + 1_000)
            ]
            response = client.post(batch_url(made.app_id), json={"events": events})
            assert response.status_code == 201, response.text
    return made


def open_export(srv: Server, tenant: Tenant, ip: str) -> tuple[socket.socket, int, bytes]:
    """Start an export as client ``ip``: (the socket, the status, what was read with it)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that barely reads
    sock.settimeout(30)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(
        f"GET {events_url(tenant.app_id, 'export')} HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {tenant.key}\r\nX-Forwarded-For: {ip}\r\n\r\n".encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return sock, int(data.split(b" ", 2)[1]), data


def refused(srv: Server, tenant: Tenant, ip: str) -> bytes:
    """An export that must be refused: its whole answer."""
    sock, status, data = open_export(srv, tenant, ip)
    with sock:
        assert status == 429, data
        while b'"code"' not in data:
            data += sock.recv(4096)
    return data


def test_stalled_exports_hold_bounded_memory_and_are_capped(srv: Server, tenant: Tenant) -> None:
    before = rss_mib(srv)
    stalled: list[socket.socket] = []
    try:
        # One client opens its two exports; a third is refused for the client.
        for _ in range(PER_CLIENT):
            sock, status, data = open_export(srv, tenant, "203.0.113.1")
            assert status == 200, data
            stalled.append(sock)
        assert b'"too_many_exports"' in refused(srv, tenant, "203.0.113.1")
        # Other clients fill the app's cap; one more is refused for the app.
        for i in range(PER_APP - PER_CLIENT):
            sock, status, data = open_export(srv, tenant, f"198.51.100.{i + 1}")
            assert status == 200, data
            stalled.append(sock)
        answer = refused(srv, tenant, "192.0.2.1")
        assert b'"too_many_exports"' in answer
        assert b"retry-after: 5" in answer.lower()

        # Each stalled stream holds one page, however long the export: memory stays bounded
        # while they sit there (sampled for a while: the growth was gradual before).
        peak = before
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, rss_mib(srv))
            time.sleep(0.1)
        assert peak - before < 64, (before, peak)

        # A write beside them answers promptly.
        with srv.client(tenant.key) as client:
            started = time.monotonic()
            expect_created(client.post(events_url(tenant.app_id), json={"action": "beside"}))
            # 0.1 s on an idle 2-core machine (3.1 s before); the margin is for a busy one.
            assert time.monotonic() - started < 2.0

        # A client that hangs up gives its slot back: the refused client gets in.
        stalled.pop(0).close()
        deadline = time.monotonic() + 15
        while True:
            sock, status, data = open_export(srv, tenant, "192.0.2.1")
            if status == 200:
                stalled.append(sock)
                break
            sock.close()
            assert time.monotonic() < deadline, data
            time.sleep(0.1)
    finally:
        for sock in stalled:
            sock.close()


def test_a_client_that_stops_reading_is_cut_off_and_its_slots_come_back(
    sqlite_server: Server,
) -> None:
    # Without a limit, a client that opened its exports and never read held their slots for
    # as long as it kept the connections: four such addresses shut an app's exports for good.
    sqlite_server.env["TRAILKEEP_SEND_STALL_SECONDS"] = "1"
    sqlite_server.start()
    made = sqlite_server.new_app("stall")
    with sqlite_server.client(made.key) as client:
        events = [{"action": "big", "metadata": {"pad": "p" * PAD}} for _ in range(1_000)]
        for _ in range(4):  # about 9 MB: more than the sockets' buffers hold
            assert client.post(batch_url(made.app_id), json={"events": events}).status_code == 201
    stalled = [open_export(sqlite_server, made, "127.0.0.1") for _ in range(PER_CLIENT)]
    try:
        assert [status for _, status, _ in stalled] == [200] * PER_CLIENT
        assert b'"too_many_exports"' in refused(sqlite_server, made, "127.0.0.1")
        # The stalled connections are cut, which frees their slots: the client gets in again.
        deadline = time.monotonic() + 30
        while True:
            sock, status, data = open_export(sqlite_server, made, "127.0.0.1")
            sock.close()
            if status == 200:
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.2)
        # Each cut export ended short of the log.
        with sqlite_server.client(made.key) as client:
            whole = len(client.get(events_url(made.app_id, "export")).content)
        for sock, _, data in stalled:
            received = len(data)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert received < whole, (received, whole)
    finally:
        for sock, _, _ in stalled:
            sock.close()
