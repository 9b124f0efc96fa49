"""Repeated `kill -9` under concurrent writes: of the server, and of its writer process.

Where ``tests/integration/test_durability.py`` kills a server once, this kills again and again
while writers keep going, on SQLite and on PostgreSQL:

- the server (`trailkeep serve`): restarted on the same data each round; its orphaned writer
  commits what it held and exits by itself;
- the writer child alone: the server must notice, answer the writes it held with
  ``503 unavailable`` and ``Retry-After``, start another writer, and take writes again without
  being restarted.

After the last round every acknowledged entry reads back by its id as acknowledged, the log is
gapless, each writer's entries kept their order, and `trailkeep verify --app` passes.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.load import STRESS, Writers, check_survivors, scaled, wait_until
from tests.processes import alive, children
from tests.servers import Server

pytestmark = pytest.mark.timeout(900 if STRESS else 240)

THREADS = 8
ROUNDS = scaled(3, 15)
ACKS_PER_ROUND = scaled(150, 600)


def writer_pid(srv: Server) -> int:
    """The pid of the server's writer child process (there is exactly one)."""
    assert srv.proc is not None
    found = [pid for pid, cmd in children(srv.proc.pid) if "trailkeep.server.ingest.process" in cmd]
    assert len(found) == 1, children(srv.proc.pid)
    return found[0]


@pytest.mark.parametrize("target", ["server", "writer"])
def test_repeated_kill_9_loses_no_acknowledged_entry(fresh_server: Server, target: str) -> None:
    srv = fresh_server.start()
    tenant = srv.new_app(f"kill -9 of the {target}")
    with Writers([srv], tenant, THREADS) as writers:
        for _ in range(ROUNDS):
            writers.wait_for_acks(ACKS_PER_ROUND)  # every thread is mid-flight by now
            if target == "server":
                srv.kill()
                srv.start()
            else:
                old = writer_pid(srv)
                os.kill(old, signal.SIGKILL)
                # The server replaces it by itself, and stays up all along.
                wait_until(lambda old=old: not alive(old), 30, "the killed writer to be gone")
                assert srv.proc is not None
                wait_until(
                    lambda old=old, server=srv.proc.pid: any(
                        pid != old and "ingest.process" in cmd for pid, cmd in children(server)
                    ),
                    60,
                    "the server to start another writer",
                )
            assert writers.refused == [], writers.refused[:3]
        writers.wait_for_acks(ACKS_PER_ROUND)  # writes go on after the last kill too
    assert writers.refused == [], writers.refused[:3]
    for response in writers.unavailable:
        # Only the writer being replaced may refuse a write, and says to retry.
        assert target == "writer", response.text
        assert response.json()["code"] == "unavailable", response.text
        assert int(response.headers["Retry-After"]) >= 1
    assert srv.proc is not None
    assert srv.proc.poll() is None
    check_survivors(srv, tenant, dict(writers.acked), THREADS)
