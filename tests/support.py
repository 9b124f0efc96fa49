"""Real servers for the tests: `trailkeep serve` processes on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

BIN = Path(sys.executable).with_name("trailkeep")


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # The parent pid is the 4th field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (an exited one not yet reaped, a zombie, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real `trailkeep` command."""
    result = subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"trailkeep {' '.join(args)} failed: {result.stderr}{result.stdout}")
    return result


@dataclass
class Tenant:
    """An app with a key that has every scope, and its session secret."""

    app_id: str
    key: str
    key_id: str
    session_secret: str


class Server:
    """One `trailkeep serve` process, its data directory and environment."""

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
            "TRAILKEEP_RATE_LIMIT": "1000000/minute",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"server-{self.port}.log"
        # A URL with every right on the server's database (the service role's is restricted):
        # for tests that look at or tamper with rows directly. None means the SQLite file.
        self.owner_url: str | None = None

    @property
    def backend(self) -> str:
        """``"postgres"`` or ``"sqlite"``: the database this server is configured with."""
        url = self.env.get("TRAILKEEP_DATABASE_URL") or ""
        return "postgres" if url.startswith("postgres") else "sqlite"

    @property
    def database_url(self) -> str:
        """The owner's URL of the server's database (SQLAlchemy style)."""
        if self.owner_url:
            return self.owner_url
        given = self.env.get("TRAILKEEP_DATABASE_URL")
        return given or f"sqlite:///{(self.data_dir / 'trailkeep.db').resolve()}"

    def query(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement (``:name`` parameters), run as the owner, then rolled back."""
        url = self.database_url
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                result = connection.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def start(self) -> Server:
        """Start and wait until /healthz answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "serve", "--port", str(self.port), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120  # generous: several suites may share two cores
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), killing it if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """`kill -9`: no chance to flush anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the CLI against this server's database."""
        return run_cli(*args, env=self.env, check=check)

    def tenant(self, name: str = "test app") -> Tenant:
        """Create an app through the CLI."""
        made = json.loads(self.cli("apps", "create", name, "--json").stdout)
        return Tenant(made["app_id"], made["key"], made["key_id"], made["session_secret"])

    def key(self, app_id: str, *scopes: str) -> str:
        """Create a key with the given scopes."""
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        return str(
            json.loads(self.cli("keys", "create", "--app", app_id, *args, "--json").stdout)["key"]
        )

    def session(self, tenant: Tenant, sub: str, role: str | None = None, **claims: Any) -> str:
        """Mint a session token for a user of the tenant."""
        from trailkeep.sdk import mint_session

        return mint_session(tenant.app_id, tenant.session_secret, sub, role=role, **claims)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        """An HTTP client for this server, with a bearer credential if given."""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
