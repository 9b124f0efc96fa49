"""Requests too large or too slow (issue 20), over raw sockets and the standard library.

Headers are bounded in size (431) and time (408), bodies in time (408), and a body over its
limit is answered with 413 in a way that clients which send the whole body before reading
(urllib, requests) can read. One server with short deadlines serves the module.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.http_api import events_url
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20
HEADER_MAX = 16_384


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose headers must come within 1 s (16 KiB at most) and bodies within 2 s."""
    server = Server(
        tmp_path_factory.mktemp("slow") / "data",
        env={
            "TRAILKEEP_HEADER_TIMEOUT_SECONDS": "1",
            "TRAILKEEP_BODY_TIMEOUT_SECONDS": "2",
            "TRAILKEEP_HEADER_MAX_BYTES": str(HEADER_MAX),
        },
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tenant(srv: Server) -> Tenant:
    """An app on it."""
    return srv.new_app("slow")


def connect(srv: Server) -> socket.socket:
    """A raw connection to the server; reads give up after 15 s."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.settimeout(15)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the one answer on ``sock``, read until the server closes."""
    data = b""
    while chunk := sock.recv(65_536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def problem_code(body: bytes) -> str:
    """The stable code of a problem document."""
    code: str = json.loads(body)["code"]
    return code


# --- headers -------------------------------------------------------------------------------


def test_headers_over_the_limit_get_431_not_200(srv: Server) -> None:
    # 64 MiB of one header got a 200 once; the answer comes while the client is still sending.
    with connect(srv) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")

        def flood() -> None:
            try:
                for _ in range(64):
                    sock.sendall(b"a" * MIB)
            except OSError:
                pass  # the server stopped reading: expected once it has answered

        sender = threading.Thread(target=flood)
        sender.start()
        status, headers, body = read_answer(sock)
        sender.join()
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert problem_code(body) == "headers_too_large"


def test_headers_just_under_the_limit_are_served(srv: Server) -> None:
    with connect(srv) as sock:
        pad = "a" * (HEADER_MAX - 200)
        head = f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: {pad}\r\nConnection: close\r\n"
        sock.sendall(head.encode() + b"\r\n")
        status, _, body = read_answer(sock)
    assert status == 200, body


def test_a_body_larger_than_the_header_limit_is_not_counted_as_headers(
    srv: Server, tenant: Tenant
) -> None:
    # A whole request (small headers, a body over the header limit) and the next one's headers
    # in one chunk: neither is refused, and both answers come in order.
    body = json.dumps({"action": "big.body", "metadata": {"pad": "p" * 8_000}}).encode()
    body += b" " * (3 * HEADER_MAX)
    first = (
        f"POST {events_url(tenant.app_id)} HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    second = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with connect(srv) as sock:
        sock.sendall(first + second)
        data = b""
        while chunk := sock.recv(65_536):
            data += chunk
    # An answer's body has no line end of its own: the next status line follows it directly.
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [201, 200], data[:500]


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "], ids=["nothing", "half"]
)
def test_headers_that_do_not_arrive_in_time_get_408(srv: Server, sent: bytes) -> None:
    with connect(srv) as sock:
        sock.sendall(sent)
        status, headers, body = read_answer(sock)  # the server answers and closes by itself
    assert status == 408
    assert headers["connection"] == "close"
    assert problem_code(body) == "request_timeout"


# --- bodies --------------------------------------------------------------------------------


def test_a_body_that_does_not_arrive_in_time_gets_408(srv: Server, tenant: Tenant) -> None:
    with connect(srv) as sock:
        sock.sendall(
            f"POST {events_url(tenant.app_id)} HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"action":'.encode()
        )
        status, headers, body = read_answer(sock)
    assert status == 408
    assert headers["connection"] == "close"
    assert problem_code(body) == "request_timeout"


@pytest.mark.parametrize(
    ("batch", "size"),
    [(False, 2 * MIB), (False, 20 * MIB), (True, 20 * MIB), (True, 48 * MIB)],
    ids=["single-2MiB", "single-20MiB", "batch-20MiB", "batch-48MiB"],
)
def test_urllib_reads_the_413_of_a_body_over_the_limit(
    srv: Server, tenant: Tenant, size: int, batch: bool
) -> None:
    # urllib sends `Connection: close` and the whole body before it reads: a server that
    # answered and closed while the body was still coming made it see "connection reset".
    url = srv.url + events_url(tenant.app_id, "events/batch" if batch else "events")
    request = urllib.request.Request(  # noqa: S310 (an http:// URL of the test's server)
        url, data=b" " * size, method="POST",
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == 413
    assert problem_code(refused.value.read()) == "payload_too_large"


def test_the_server_still_serves_after_all_that(srv: Server, tenant: Tenant) -> None:
    request = urllib.request.Request(  # noqa: S310 (an http:// URL of the test's server)
        srv.url + events_url(tenant.app_id), data=b'{"action":"still.here"}', method="POST",
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        assert answer.status == 201
