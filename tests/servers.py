"""Real servers for the tests: `trailkeep serve` processes on free loopback ports, their apps.

Apps and keys that a test needs but does not test the making of are made in the server's
database directly (the same ``provision`` calls `trailkeep apps create` makes, without starting
a CLI process: about a second each on a busy machine); the CLI's own tests run the real command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from trailkeep.server import provision
from trailkeep.server.secrets import SecretBox
from trailkeep.server.store import Store

BIN = Path(sys.executable).with_name("trailkeep")


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
            "TRAILKEEP_READ_RATE_LIMIT": "1000000/minute",
            # The tests' identity providers publish their keys on loopback (tests/idp.py).
            "TRAILKEEP_JWKS_ALLOW_PRIVATE": "1",
            # The tests' webhook receivers listen on loopback too (tests/receiver.py), and a
            # failed delivery is retried within a second or so, not minutes.
            "TRAILKEEP_WEBHOOK_ALLOW_PRIVATE": "1",
            "TRAILKEEP_WEBHOOK_RETRY_BASE": "0.1",
            "TRAILKEEP_WEBHOOK_RETRY_TOTAL": "3",
            "TRAILKEEP_WEBHOOK_POLL_INTERVAL": "0.1",
            "TRAILKEEP_WEBHOOK_TIMEOUT": "2",
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
    def sqlite_file(self) -> Path:
        """Where the server keeps its SQLite database (when it is not given a database URL)."""
        return (self.data_dir / "trailkeep.db").resolve()

    @property
    def secret_key_file(self) -> Path:
        """The key that seals the session secrets the server's database keeps."""
        return Path(self.env.get("TRAILKEEP_SECRET_KEY_FILE") or self.data_dir / "secret.key")

    @property
    def service_url(self) -> str:
        """The URL the server itself (and the CLI beside it) connects with, SQLAlchemy style."""
        return self.env.get("TRAILKEEP_DATABASE_URL") or f"sqlite:///{self.sqlite_file}"

    @property
    def database_url(self) -> str:
        """The owner's URL of the server's database (SQLAlchemy style)."""
        return self.owner_url or self.service_url

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

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The server's database as `trailkeep apps ...` opens it (migrated), closed afterwards."""
        opened = Store(self.service_url, secrets=SecretBox.load(self.secret_key_file))
        try:
            opened.migrate()
            yield opened
        finally:
            opened.close()

    def new_app(self, name: str = "test app", origins: Sequence[str] = ()) -> Tenant:
        """An app with an all-scopes key (and these allowed origins), made in the database.

        What `trailkeep apps create` does, without a CLI process; works before `start` too.
        """
        with self.store() as store:
            made = provision.create_app(store, name)
            if origins:
                store.set_allowed_origins(made.app_id, origins)
        return Tenant(made.app_id, made.key, made.key_id, made.session_secret)

    def new_key(self, app_id: str, *scopes: str) -> provision.NewKey:
        """A key of the app with these scopes, as `trailkeep keys create` makes it."""
        with self.store() as store:
            return provision.create_key(store, app_id, scopes)

    def session(self, tenant: Tenant, sub: str, role: str | None = None, **claims: Any) -> str:
        """Mint a session token for a user of the tenant."""
        from trailkeep.sdk import mint_session

        return mint_session(tenant.app_id, tenant.session_secret, sub, role=role, **claims)

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        """An HTTP client for this server, with a bearer credential if given."""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
