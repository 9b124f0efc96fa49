"""Reads at scale: two apps of 1,000,000 entries in one SQLite file, over real HTTP.

For each single filter the median of ``read_repeats`` requests for the first page of 100, and a
deep page (a cursor 900,000 entries in, made with ``trailkeep.log.query.encode_cursor`` and the
app's session secret, as the server makes them); the query plan of the store's own SQL for each (the
statements ``Store.page`` runs, captured and run again under ``EXPLAIN QUERY PLAN``); and the
NDJSON export's rate, against SQLite reading the same rows with nothing else to do.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import event

from bench import datagen, export_folder, fixtures
from bench.config import Sizes
from bench.harness import Result, Run, serving
from trailkeep.log.query import Filters, encode_cursor
from trailkeep.server.store import Store

SUITE = "reads"
PAGE = 100


def _day(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1) - timedelta(microseconds=1)


def _cases(store: Store, app_id: str, count: int) -> dict[str, tuple[dict[str, str], Filters]]:
    """Each single filter: (query parameters, the same as ``Filters``), values from the data."""
    middle: dict[str, Any] = orjson.loads(store.entries(app_id, count // 2, 1)[0])
    since, until = _day(datetime.fromisoformat(middle["time"].replace("Z", "+00:00")))
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    target_id = middle["target"]["id"]
    return {
        "none": ({}, Filters()),
        "action": ({"action": "order.update"}, Filters(actions=("order.update",))),
        "action_prefix": ({"action_prefix": "order."}, Filters(action_prefix="order.")),
        "actor": ({"actor": "user_42"}, Filters(actor="user_42")),
        "target_type": ({"target_type": "invoice"}, Filters(target_type="invoice")),
        "target_id": ({"target_id": target_id}, Filters(target_id=target_id)),
        "target_type+target_id": (
            {"target_type": middle["target"]["type"], "target_id": target_id},
            Filters(target_type=middle["target"]["type"], target_id=target_id),
        ),
        "kind": ({"kind": "admin"}, Filters(kind="admin")),
        "changed_path (1 in 20)": (
            {"changed_path": datagen.COMMON_PATH},
            Filters(changed_path=datagen.COMMON_PATH),
        ),
        "changed_path (1 in 1,000)": (
            {"changed_path": datagen.RARE_PATH},
            Filters(changed_path=datagen.RARE_PATH),
        ),
        "since+until (one day)": (
            {"since": since.strftime(stamp), "until": until.strftime(stamp)},
            Filters(since=since, until=until),
        ),
    }


def plan(store: Store, app_id: str, filters: Filters, before: int | None) -> list[str]:
    """EXPLAIN QUERY PLAN of every statement ``Store.page`` runs for this page."""
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    event.listen(store.reader_engine, "before_cursor_execute", capture)
    try:
        store.page(app_id, filters, before, PAGE + 1, True)
    finally:
        event.remove(store.reader_engine, "before_cursor_execute", capture)
    lines = []
    with store.reader_engine.connect() as c:
        for statement, parameters in captured:
            rows = c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            lines.append("-- " + " ".join(statement.split())[:160])
            lines += [f"   {row[-1]}" for row in rows]
    return lines


def uses_index(lines: list[str]) -> bool:
    """True when no step of the plan reads the events table without an index."""
    steps = [line.strip() for line in lines if not line.startswith("--")]
    full = [s for s in steps if re.match(r"SCAN events\b", s) and "USING" not in s]
    return bool(steps) and not full


def _median_ms(client: httpx.Client, path: str, params: dict[str, str], repeat: int) -> float:
    samples = []
    for i in range(repeat + 3):
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text}")
        if i >= 3:
            samples.append(elapsed)
    return statistics.median(samples)


def _export(client: httpx.Client, path: str, max_seconds: float) -> tuple[int, float, bool]:
    """(entries read, seconds, whether the stream ended) of an NDJSON export."""
    count, complete = 0, True
    started = time.perf_counter()
    with client.stream("GET", path, params={"format": "ndjson"}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"export: {response.status_code}")
        for chunk in response.iter_bytes():
            count += chunk.count(b"\n")
            if time.perf_counter() - started > max_seconds:
                complete = False
                break
    return count, time.perf_counter() - started, complete


def _raw_export(db: str, app_id: str, limit: int) -> float:
    """Rows a second SQLite alone reads of the same entries, oldest first."""
    connection = sqlite3.connect(db)
    started = time.perf_counter()
    rows = connection.execute(
        "SELECT seq, entry FROM events WHERE app_id = ? ORDER BY seq LIMIT ?", (app_id, limit)
    )
    count = sum(1 for _ in rows)
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def run(run: Run, sizes: Sizes) -> None:
    """Build (or reuse) the database, serve it, and time every read."""
    data = fixtures.reads_db(run.cache, sizes.reads_entries)
    app = data.meta["apps"][0]
    app_id, count = app["app_id"], int(data.meta["count"])
    store = Store(data.url)
    cases = _cases(store, app_id, count)
    deep_before = count - sizes.deep_offset
    cursor = encode_cursor(app_id, app["session_secret"], deep_before)
    headers = {"Authorization": f"Bearer {app['key']}"}
    path = f"/v1/apps/{app_id}/events"
    with (
        serving(data.path) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=120) as client,
    ):
        floor = _median_ms(client, "/healthz", {}, sizes.read_repeats)
        first_unfiltered = client.get(path, params={"limit": PAGE, "cursor": cursor}).json()
        if first_unfiltered["data"][0]["seq"] != deep_before - 1:
            raise RuntimeError("the deep cursor does not stand where it should")
        for name, (params, filters) in cases.items():
            query = {"limit": str(PAGE), **params}
            first = _median_ms(client, path, query, sizes.read_repeats)
            first_plan = plan(store, app_id, filters, None)
            run.plans[f"{SUITE}:{name}"] = first_plan
            run.add(Result(
                SUITE, f"first page of {PAGE}, filter {name}", first, "ms (median)",
                target="≤ 20 ms", met=first <= 20, baseline=floor,
                baseline_name="GET /healthz round trip",
                notes="index used" if uses_index(first_plan) else "PLAN SCANS THE TABLE",
            ))  # fmt: skip
            if filters.since is not None:
                continue  # a cursor 900,000 entries in lies outside a one-day window
            deep = _median_ms(client, path, {**query, "cursor": cursor}, sizes.read_repeats)
            deep_plan = plan(store, app_id, filters, deep_before)
            run.plans[f"{SUITE}:{name} (deep page)"] = deep_plan
            run.add(Result(
                SUITE, f"deep page, filter {name}", deep, "ms (median)", baseline=first,
                baseline_name="first page, same filter", ratio_target="≤ 1.5",
                ratio_met=deep <= 1.5 * first,
                notes=f"cursor {sizes.deep_offset:,} entries in; "
                + ("index used" if uses_index(deep_plan) else "PLAN SCANS THE TABLE"),
            ))  # fmt: skip
        read, seconds, complete = _export(client, f"/v1/apps/{app_id}/export",
                                          sizes.export_max_seconds)  # fmt: skip
        export_folder.measure(run, server.url, app_id, app["key"], read / seconds)
    store.close()
    rate = read / seconds
    ceiling = _raw_export(str(data.path / "trailkeep.db"), app_id, read)
    run.add(Result(
        SUITE, "export NDJSON over HTTP", rate, "entries/s",
        target="≥ 100,000 entries/s", met=rate >= 100_000,
        baseline=ceiling, baseline_name="sqlite3 reading the same rows, nothing else",
        notes=f"{read:,} entries in {seconds:.1f} s"
        + ("" if complete else f" (stopped after {sizes.export_max_seconds:.0f} s)"),
    ))  # fmt: skip
    run.info["reads"] = (
        f"two apps of {count:,} entries each in one SQLite file "
        f"({(data.path / 'trailkeep.db').stat().st_size / 2**20:,.0f} MiB), built in "
        f"{data.meta.get('build_seconds', '?')} s by bench/datagen.py (cached)"
    )
