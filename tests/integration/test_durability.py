"""A 201 means committed (issue 2): every acknowledged entry survives a `kill -9` of the server.

Concurrent writers (single writes and batches) run against a fresh server, which is killed while
they are in flight and restarted on the same data; every entry it acknowledged must then read
back byte for byte, the log must be gapless, and `trailkeep verify` must pass. The same holds
with the writer in the server's thread, and when the server and its writer process are sent
SIGTERM together, as systemd stops every process of a unit.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.load import Writers, check_survivors
from tests.processes import alive, children
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

WRITERS = 8
MIN_SECONDS = 1.5
MIN_ACKED = 300


def _stop_the_unit(srv: Server) -> None:
    """SIGTERM to the server and its writer process at once, then wait for both to end."""
    assert srv.proc is not None
    unit = [srv.proc.pid, *(pid for pid, _ in children(srv.proc.pid))]
    assert len(unit) == 2, unit  # the server and its writer
    for pid in unit:
        os.kill(pid, signal.SIGTERM)
    # uvicorn ends with the signal it caught once it has shut down in order.
    assert srv.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in srv.log.read_text()
    deadline = time.monotonic() + 30
    while alive(unit[1]):
        assert time.monotonic() < deadline, "the writer process outlived its server"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("writer", "stop"),
    [
        pytest.param("process", "kill_9", id="kill_9"),
        pytest.param("thread", "kill_9", id="thread_writer-kill_9"),
        pytest.param("process", "sigterm_to_the_unit", id="sigterm_to_the_unit"),
    ],
)
def test_every_acknowledged_entry_survives_the_server_stopping(
    fresh_server: Server, writer: str, stop: str
) -> None:
    fresh_server.env["TRAILKEEP_WRITER"] = writer
    srv = fresh_server.start()
    tenant = srv.new_app("durable")
    with Writers([srv], tenant, WRITERS) as writers:
        started = time.monotonic()
        writers.wait_for_acks(MIN_ACKED)
        # At least this long under load, so every writer is mid-flight when the server stops.
        time.sleep(max(0.0, MIN_SECONDS - (time.monotonic() - started)))
        if stop == "kill_9":
            srv.kill()
        else:
            _stop_the_unit(srv)
    assert writers.refused == []
    assert writers.unavailable == []
    assert writers.count() >= MIN_ACKED

    srv.start()
    check_survivors(srv, tenant, dict(writers.acked), WRITERS)
