"""Load under faults: writer threads that keep what a server acknowledged, and the after-check.

:class:`Writers` write single entries and batches from several threads until stopped. A 201 is
a promise (the entries are committed), so its exact bytes are kept; a transport error (the
server was killed) or a 503 with ``Retry-After`` (the database cannot take writes just now)
promises nothing, and the thread tries again; any other answer is a failure, kept for the test
to report. :func:`check_survivors` then proves the promises held: every acknowledged entry reads
back by its id byte for byte, the log is gapless, each writer's entries kept their order, and
`trailkeep verify --app` passes.

Used by the durability test (``tests/integration/test_durability.py``) and the fault suite.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.integration.http_api import (
    batch_url,
    check_entry,
    checkpoint_verifier,
    events_url,
    list_all,
    wait_for_checkpoint,
    write_one,
)
from tests.servers import Server, Tenant

#: ``TRAILKEEP_STRESS=1`` (``make stress``) runs the long variants: more rounds, more load.
STRESS = os.environ.get("TRAILKEEP_STRESS", "") not in ("", "0")

# Pause of a thread after a failed attempt: the server is restarting or the disk is full.
_BACKOFF_SECONDS = 0.05


def scaled(quick: int, stress: int) -> int:
    """``quick`` in `make test`, ``stress`` under `make stress`."""
    return stress if STRESS else quick


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


def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {within} s waiting for {what}"
        time.sleep(0.02)


class Writers:
    """Threads that write until stopped, keeping what the servers acknowledged.

    Thread ``n`` writes to ``servers[n % len(servers)]``; odd threads send batches of 1 to 9
    entries, even ones single entries. Actions are ``dur.w<n>.i<i>[.n<k>]``, so each thread's
    order can be checked afterwards.
    """

    def __init__(self, servers: Sequence[Server], tenant: Tenant, threads: int = 8) -> None:
        self.servers, self.tenant = list(servers), tenant
        self.acked: dict[str, bytes] = {}  # entry id -> the bytes the 201 carried
        self.unavailable: list[httpx.Response] = []  # 503s: each must carry Retry-After
        self.refused: list[str] = []  # any other answer: must stay empty
        self.transport_errors = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread once its request in flight is answered (or fails)."""
        self._stop.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self.threads), "a writer thread did not stop"

    def _run(self, n: int) -> None:
        server = self.servers[n % len(self.servers)]
        headers = {"Authorization": f"Bearer {self.tenant.key}"}
        # A short timeout: a request the kill cut off must not hold the thread for long.
        with httpx.Client(base_url=server.url, headers=headers, timeout=20) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                batch = n % 2 == 1
                try:
                    if batch:
                        items = [
                            {"action": f"dur.w{n}.i{i}.n{k}", "metadata": {"k": k, "é": n}}
                            for k in range(i % 9 + 1)
                        ]
                        response = client.post(
                            batch_url(self.tenant.app_id), json={"events": items}
                        )
                    else:
                        body = {"action": f"dur.w{n}.i{i}", "metadata": {"i": i}}
                        response = client.post(events_url(self.tenant.app_id), json=body)
                except httpx.TransportError:
                    # Killed or restarting: nothing acknowledged, nothing promised.
                    with self.lock:
                        self.transport_errors += 1
                    self._stop.wait(_BACKOFF_SECONDS)
                    continue
                self._keep(response, batch)
                if response.status_code != 201:
                    self._stop.wait(_BACKOFF_SECONDS)

    def _keep(self, response: httpx.Response, batch: bool) -> None:
        with self.lock:
            if response.status_code == 201:
                raws = batch_items(response.content) if batch else [response.content]
                for raw in raws:
                    self.acked[json.loads(raw)["id"]] = raw
            elif response.status_code == 503 and response.headers.get("Retry-After"):
                self.unavailable.append(response)
            else:
                self.refused.append(f"{response.status_code} {response.text}")

    def count(self) -> int:
        """How many entries were acknowledged so far."""
        with self.lock:
            return len(self.acked)

    def unavailable_count(self) -> int:
        """How many 503s (with Retry-After) were answered so far."""
        with self.lock:
            return len(self.unavailable)

    def wait_for_acks(self, more: int, within: float = 60) -> None:
        """Wait until ``more`` entries beyond those acknowledged now are acknowledged."""
        target = self.count() + more
        wait_until(lambda: self.count() >= target or bool(self.refused), within, f"{more} acks")
        assert self.refused == [], self.refused[:3]


def check_survivors(srv: Server, tenant: Tenant, acked: dict[str, bytes], threads: int) -> int:
    """Every acknowledged entry is stored as acknowledged, the log gapless and verified.

    Returns the log's size after one more entry is appended (the log goes on where it stopped).
    """
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
        # Entries committed just before a kill may not have been acknowledged: never fewer.
        assert size >= len(acked)
        assert sorted(e["seq"] for e in stored) == list(range(size))
        assert len({e["id"] for e in stored}) == size
        for entry in stored:
            check_entry(entry)
            if entry["id"] in acked:
                assert entry == json.loads(acked[entry["id"]])
        # Each writer's entries kept its order (seq order is commit order).
        in_order = sorted(stored, key=lambda e: e["seq"])
        for n in range(threads):
            mine = [e["action"] for e in in_order if e["action"].startswith(f"dur.w{n}.")]
            assert mine == sorted(mine, key=action_order)

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
    return size + 1


def action_order(action: str) -> tuple[int, ...]:
    """Sort key of a writer's actions `dur.wN.iI[.nK]`: by request, then item."""
    parts: list[Any] = [int(p[1:]) for p in action.split(".")[2:]]
    return tuple(parts)
