"""What every benchmark shares: results, real servers, the load generators, timing."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
BIN = Path(sys.executable).with_name("trailkeep")
ORIGIN = "trailkeep.local"


@dataclass
class Result:
    """One measured figure, its baseline measured in the same run, and its target."""

    suite: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    baseline: float | None = None
    baseline_name: str = ""
    ratio_target: str = ""
    ratio_met: bool | None = None
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        """Figure over baseline, when there is a baseline."""
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline

    def as_json(self) -> dict[str, Any]:
        """The result with its ratio, for results.json."""
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class Run:
    """Everything one `python -m bench` run measured."""

    smoke: bool
    out: Path = OUT
    results: list[Result] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # data for plots
    plans: dict[str, list[str]] = field(default_factory=dict)  # query plans by filter
    profiles: dict[str, str] = field(default_factory=dict)  # where the time goes, by path
    info: dict[str, str] = field(default_factory=dict)  # what a suite wants the report to say

    def add(self, result: Result) -> Result:
        """Record and print a result."""
        self.results.append(result)
        ratio = f"  ratio {result.ratio:.2f} vs {result.baseline_name}" if result.ratio else ""
        mark = {True: "ok", False: "MISSED", None: ""}[result.met]
        print(f"  {result.name}: {result.value:,.2f} {result.unit} {mark}{ratio}", flush=True)
        return result

    @property
    def cache(self) -> Path:
        """Where generated databases are kept between runs."""
        path = self.out / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, name: str) -> Path:
        """A fresh directory for one suite's throwaway data."""
        path = self.out / "tmp" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def free_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, str]:
    """Cores, CPU, versions: what the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    import fastapi
    import sqlalchemy
    import uvicorn

    info = {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "kernel": platform.release(),
    }
    if shutil.which("wrk"):
        info["load generator"] = "wrk (Debian), 1 thread, a separate process over loopback"
    else:
        info["load generator"] = "bench.loadgen (asyncio, raw HTTP/1.1), a separate process"
    return info


def rss_kib(pid: int) -> int:
    """Resident set size of a process and its children, in KiB (0 once it is gone)."""
    # The server's writer is a child process: its memory is the server's too.
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_kib(int(child)) for child in children)


class BenchServer:
    """A real `trailkeep serve` process for a benchmark."""

    def __init__(
        self, data_dir: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.data_dir = data_dir
        self.args = tuple(args)  # more `serve` options
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TRAILKEEP_DATA_DIR": str(data_dir),
            # A one-second window: every write still passes the limiter, but its list of one
            # IP's hits stays short, as with real clients, instead of holding a minute of wrk.
            "TRAILKEEP_RATE_LIMIT": "1000000000/second",
            "TRAILKEEP_READ_RATE_LIMIT": "1000000000/second",
            "TRAILKEEP_ORIGIN": ORIGIN,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> BenchServer:
        """Start it and wait for /healthz."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / f"server-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        """SIGTERM, then wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def serving(
    data_dir: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[BenchServer]:
    """A started server, stopped afterwards."""
    server = BenchServer(data_dir, env, args).start()
    try:
        yield server
    finally:
        server.stop()


def secret_key() -> Any:
    """The one secret key of a bench run: every server it starts and every app it makes share it.

    Kept in the cache (``main`` points TRAILKEEP_SECRET_KEY_FILE there), beside the databases
    whose sealed session secrets it opens.
    """
    from trailkeep.server.secrets import SecretBox

    default = Path(__file__).resolve().parent / "out" / "cache" / "secret.key"
    return SecretBox.load(Path(os.environ.setdefault("TRAILKEEP_SECRET_KEY_FILE", str(default))))


def new_apps(database_url: str, count: int, name: str = "bench") -> list[dict[str, str]]:
    """Create apps (each with an all-scope key) in the database directly: faster than the CLI."""
    from trailkeep.server.provision import create_app
    from trailkeep.server.store import Store

    store = Store(database_url, secrets=secret_key())
    try:
        store.migrate()
        made = [create_app(store, f"{name} {n}") for n in range(count)]
    finally:
        store.close()
    return [{"app_id": m.app_id, "key": m.key, "session_secret": m.session_secret} for m in made]


def new_app(database_url: str, name: str = "bench") -> dict[str, str]:
    """One new app with an all-scope key."""
    return new_apps(database_url, 1, name)[0]


@dataclass
class Load:
    """What the load generator measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    requests: int = 0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> Load:
    """What a wrk report says: throughput, p50 and p99, failures."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    # Anchored: "+/- Stdev" columns such as "78.50%" must not be read as a percentile.
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    if rps is None:
        raise RuntimeError(f"could not read wrk's report:\n{out}")
    return Load(
        requests_per_second=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        requests=int(total.group(1)) if total else 0,
    )


class LoadRun:
    """One load generator process (wrk, or the asyncio fallback) over loopback HTTP."""

    def __init__(
        self,
        url: str,
        *,
        connections: int,
        seconds: float,
        method: str = "GET",
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        use_wrk: bool | None = None,
    ) -> None:
        self.seconds = max(1, round(seconds))
        self.wrk = shutil.which("wrk") is not None if use_wrk is None else use_wrk
        self._dir = Path(tempfile.mkdtemp(prefix="trailkeep-load-"))
        header_map = dict(headers or {})
        spec = {"method": method, "body": body, "headers": header_map}
        if self.wrk:
            lines = [f"wrk.method = {json.dumps(method)}"]
            if body is not None:
                lines.append(f"wrk.body = {json.dumps(body)}")
            for name, value in header_map.items():
                lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
            script = self._dir / "load.lua"
            script.write_text("\n".join(lines) + "\n")
            command = ["wrk", "-t1", f"-c{connections}", f"-d{self.seconds}s", "--latency",
                       "--timeout", "10s", "-s", str(script), url]  # fmt: skip
        else:
            (self._dir / "spec.json").write_text(json.dumps(spec))
            command = [sys.executable, "-m", "bench.loadgen", url, "--connections",
                       str(connections), "--seconds", str(self.seconds),
                       "--spec", str(self._dir / "spec.json")]  # fmt: skip
        self._stdout = (self._dir / "stdout").open("w+")
        self.proc = subprocess.Popen(
            command, stdout=self._stdout, stderr=subprocess.STDOUT, text=True, cwd=ROOT
        )

    def result(self) -> Load:
        """Wait for the run to end and read what it measured."""
        try:
            code = self.proc.wait(self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._stdout.seek(0)
        out = self._stdout.read()
        self._stdout.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        if code != 0:
            raise RuntimeError(f"the load generator failed ({code}):\n{out}")
        return parse_wrk(out) if self.wrk else Load(**json.loads(out))


def load(url: str, *, connections: int, seconds: float, **kwargs: Any) -> Load:
    """Run one load generator to completion."""
    return LoadRun(url, connections=connections, seconds=seconds, **kwargs).result()


def median_ms(call: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``call`` in milliseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def timed_ms(calls: list[Callable[[], Any]], warmup: int = 3) -> float:
    """Median wall time, in milliseconds, of a list of different calls (the first few warm up)."""
    for call in calls[:warmup]:
        call()
    samples = []
    for call in calls:
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)
