"""A 201 means committed (issue 2): every acknowledged entry survives a `kill -9` of the server.

Concurrent writers (single writes and batches) run against a fresh server, which is killed while
they are in flight and restarted on the same data; every entry it acknowledged must then read
back byte for byte, the log must be gapless, and `trailkeep verify` must pass. The same holds
with the writer in the server's thread, and when the server and its writer process are sent
SIGTERM together, as systemd stops every process of a unit.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.http_api import (
    batch_url,
    check_entry,
    checkpoint_verifier,
    events_url,
    list_all,
    wait_for_checkpoint,
    write_one,
)
from tests.processes import alive, children
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

WRITERS = 8
MIN_SECONDS = 1.5
MIN_ACKED = 300


def batch_items(raw: bytes) -> list[bytes]:
    """The exact bytes of each entry in a batch response ``{"events":[...]}``."""
    text = raw.decode()
    prefix = '{"events":['
    assert text.startswith(prefix), text[:100]
    assert text.endswith("]}"), text[-100:]
    decoder, items, at = json.JSONDecoder(), [], len(prefix)
    while text[at] != "]":
        _, end = decoder.raw_decode(text, at)
        items.append(text[at:end].encode())
        at = end + 1 if text[end] == "," else end
    assert at == len(text) - 2
    return items


class Writers:
    """Threads that write until the server goes away, keeping what it acknowledged."""

    def __init__(self, server: Server, app_id: str, key: str) -> None:
        self.server, self.app_id, self.key = server, app_id, key
        self.acked: dict[str, bytes] = {}  # entry id -> the bytes the 201 carried
        self.refused: list[str] = []  # any answer other than 201: must stay empty
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(WRITERS)]

    def _run(self, n: int) -> None:
        with self.server.client(self.key) as client:
            for i in range(1_000_000):
                try:
                    if n % 2:
                        items = [
                            {"action": f"dur.w{n}.i{i}.n{k}", "metadata": {"k": k, "é": n}}
                            for k in range(i % 9 + 1)
                        ]
                        response = client.post(batch_url(self.app_id), json={"events": items})
                    else:
                        body = {"action": f"dur.w{n}.i{i}", "metadata": {"i": i}}
                        response = client.post(events_url(self.app_id), json=body)
                except httpx.TransportError:
                    return  # killed mid-request: not acknowledged, so nothing is promised
                with self.lock:
                    if response.status_code != 201:
                        self.refused.append(response.text)
                        return
                    raws = batch_items(response.content) if n % 2 else [response.content]
                    for raw in raws:
                        self.acked[json.loads(raw)["id"]] = raw

    def count(self) -> int:
        """How many entries were acknowledged so far."""
        with self.lock:
            return len(self.acked)


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
    writers = Writers(srv, tenant.app_id, tenant.key)
    for thread in writers.threads:
        thread.start()
    started, deadline = time.monotonic(), time.monotonic() + 60
    while time.monotonic() - started < MIN_SECONDS or writers.count() < MIN_ACKED:
        assert time.monotonic() < deadline, f"only {writers.count()} writes acknowledged"
        assert all(t.is_alive() for t in writers.threads), writers.refused[:1]
        time.sleep(0.05)
    # Every writer is mid-flight: none has stopped on its own.
    if stop == "kill_9":
        srv.kill()
    else:
        _stop_the_unit(srv)
    for thread in writers.threads:
        thread.join(30)
    assert not any(t.is_alive() for t in writers.threads)
    assert writers.refused == []
    acked = dict(writers.acked)
    assert len(acked) >= MIN_ACKED

    srv.start()
    with srv.client(tenant.key) as client:

        def read(entry_id: str) -> tuple[str, int, bytes]:
            response = client.get(f"{events_url(tenant.app_id)}/{entry_id}")
            return entry_id, response.status_code, response.content

        with ThreadPoolExecutor(8) as pool:
            for entry_id, status, raw in pool.map(read, acked):
                assert status == 200, (entry_id, status, raw)
                assert raw == acked[entry_id]

        stored = list_all(client, tenant.app_id, {"limit": 1000})
        size = len(stored)
        # Entries committed just before the kill may not have been acknowledged: never fewer.
        assert size >= len(acked)
        assert sorted(e["seq"] for e in stored) == list(range(size))
        assert len({e["id"] for e in stored}) == size
        for entry in stored:
            check_entry(entry)
            if entry["id"] in acked:
                assert entry == json.loads(acked[entry["id"]])
        # Each writer's entries kept its order (seq order is commit order).
        for n in range(WRITERS):
            mine = [
                e
                for e in sorted(stored, key=lambda e: e["seq"])
                if e["action"].startswith(f"dur.w{n}.")
            ]
            assert [e["action"] for e in mine] == sorted(
                (e["action"] for e in mine), key=action_order
            )

        # The log goes on where it stopped, and verifies from the first entry to the last.
        assert write_one(client, tenant.app_id, {"action": "dur.after"})["seq"] == size
        checkpoint, _ = wait_for_checkpoint(
            client, tenant.app_id, size + 1, checkpoint_verifier(srv), within=15
        )
        assert checkpoint.size == size + 1
    result = srv.cli("verify", "--app", tenant.app_id, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"OK: {size + 1} entries" in result.stdout
    assert "Traceback" not in result.stderr


def action_order(action: str) -> tuple[int, ...]:
    """Sort key of a writer's actions `dur.wN.iI[.nK]`: by request, then item."""
    parts: list[Any] = [int(p[1:]) for p in action.split(".")[2:]]
    return tuple(parts)
