"""Throwaway PostgreSQL and Redis servers for the tests: one of each per session, on free ports.

The cluster is made with ``initdb`` in a temporary directory (its unix socket too), listens on
loopback only, and is removed afterwards. PostgreSQL refuses to run as root, so when the suite
runs as root the cluster belongs to an unprivileged system user (``postgres`` when the package
made one, else ``nobody``) and every server command runs through ``runuser``.

Its default collation is ICU's English one on purpose: there, ``"user.a" < "user/"`` does not
hold, so a column that forgets ``COLLATE "C"`` breaks the ``action_prefix`` tests.

Each test server gets a database of its own, copied from a template that is migrated once, and
a login role that is a member of the restricted ``trailkeep_service`` role, as in production.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from tests.servers import Server, free_port

PG_HINT = (
    "PostgreSQL 15+ server binaries (initdb, pg_ctl) are needed for the PostgreSQL half of the "
    "suite: run `make system-deps` (Debian package `postgresql`), put them on PATH or set "
    "TRAILKEEP_TEST_PG_BINDIR; or deselect those tests with `-m 'not postgres'`."
)
REDIS_HINT = (
    "redis-server is needed for the PostgreSQL half of the suite (rate limits across nodes): "
    "run `make system-deps` (Debian package `redis-server`), or deselect with `-m 'not postgres'`."
)

SERVICE_LOGIN = "trailkeep_test_app"
"""The login role that test servers use: a member of ``trailkeep_service`` and nothing more."""

TEMPLATE = "trailkeep_template"


class MissingTool(RuntimeError):
    """A server binary the suite needs is not installed."""


def pg_bindir() -> Path:
    """The newest PostgreSQL (15 or later) server binaries on this machine."""
    given = os.environ.get("TRAILKEEP_TEST_PG_BINDIR")
    candidates = [Path(given)] if given else []
    candidates += sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            version = subprocess.run(
                [str(bindir / "initdb"), "--version"], capture_output=True, text=True, check=True
            ).stdout
            major = int(version.split()[-1].split(".")[0])
            if major >= 15:
                return bindir
    raise MissingTool(PG_HINT)


def _run_as() -> str | None:
    """The unprivileged user to run servers as, or None when the suite is not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise MissingTool("running as root, and there is no `postgres` or `nobody` user to run as")


def _command(user: str | None, *args: str) -> list[str]:
    return ["runuser", "-u", user, "--", *args] if user else list(args)


@dataclass
class PgDatabase:
    """One database of the cluster: the owner's URL (migrations, tampering) and the service's."""

    name: str
    owner_url: str
    service_url: str


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self, *, durable: bool = False, settings: Sequence[str] = ()) -> None:
        self.durable = durable
        self.bindir = pg_bindir()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="trailkeep-pg-"))
        # A test may move it (before `start`) to a file system of its own under `root`.
        self.data = self.root / "data"
        self.settings = tuple(settings)  # more `-c name=value` server settings
        self.port = free_port()
        self.log = self.root / "server.log"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._names = itertools.count(1)
        self._template_ready = False

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            _command(self.user, *args), capture_output=True, text=True, timeout=120, cwd=self.root
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr}{result.stdout}{log}")

    def start(self) -> PostgresCluster:
        """initdb, then start the server and wait for it."""
        if self.user:
            shutil.chown(self.root, self.user)
            self.root.chmod(0o700)
            if self.data.parent != self.root:
                shutil.chown(self.data.parent, self.user)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
            "--locale-provider=icu", "--icu-locale=en", "--no-sync",
        )  # fmt: skip
        self.start_server()
        return self

    def _options(self) -> str:
        return " ".join([
            f"-p {self.port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1",
            "-c max_connections=400", "-c shared_buffers=128MB", "-c log_min_messages=warning",
            "-c log_min_error_statement=panic",
            # Tests do not survive power loss; a benchmark of durable writes must.
            *([] if self.durable else ["-c fsync=off", "-c full_page_writes=off"]),
            *(f"-c {setting}" for setting in self.settings),
        ])  # fmt: skip

    def start_server(self) -> None:
        """Start the (initialised) cluster's server and wait until it takes connections."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", self._options(), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, disconnect every client)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast`: what an operator's restart does to connected clients."""
        # The log file and options again: pg_ctl's child keeps them, and output to our pipe
        # would keep subprocess.run waiting for as long as the server runs.
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", self._options(), "-m", mode, "-w", "-t", "60", "restart",
        )  # fmt: skip

    def running(self) -> bool:
        """Whether the cluster's server runs (it stops itself after a failed crash recovery)."""
        status = subprocess.run(
            _command(self.user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"),
            capture_output=True, cwd=self.root, timeout=60, check=False,
        )  # fmt: skip
        return status.returncode == 0

    def stop(self) -> None:
        """Stop the server and remove the cluster."""
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, user: str = "postgres") -> str:
        """A SQLAlchemy-style URL for a database of this cluster."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        """Run one statement on the maintenance database, outside a transaction."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement.encode())

    def _template(self) -> None:
        if self._template_ready:
            return
        from trailkeep.server.store import Store

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        store = Store(self.url(TEMPLATE))
        try:
            store.migrate()
        finally:
            store.close()
        self.admin(
            f"DO $$ BEGIN CREATE ROLE {SERVICE_LOGIN} LOGIN IN ROLE trailkeep_service; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        self._template_ready = True

    def database(self, *, migrated: bool = True) -> PgDatabase:
        """A new database: a copy of the migrated template, or empty."""
        name = f"tk_{next(self._names)}"
        self._template()  # it also makes the service's login role
        if migrated:
            self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        else:
            self.admin(f"CREATE DATABASE {name}")
        return PgDatabase(name, self.url(name), self.url(name, SERVICE_LOGIN))

    def drop(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still on it."""
        with contextlib.suppress(psycopg.Error):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class RedisServer:
    """A throwaway redis-server with no persistence; each user takes a database number."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingTool(REDIS_HINT)
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="trailkeep-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._numbers = itertools.count(1)

    def start(self) -> RedisServer:
        """Start and wait until it answers PING."""
        with (self.root / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--databases", "10000",
                 "--dir", str(self.root)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.root / 'redis.log').read_text()}")
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self) -> str:
        """A URL for a database of its own (counters of one test do not leak into another)."""
        return f"redis://127.0.0.1:{self.port}/{next(self._numbers)}"

    def pause(self) -> None:
        """Stop the process but keep its port and directory: `start` brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop it and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, stopped and removed on exit."""
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@contextlib.contextmanager
def postgres_server(
    cluster: PostgresCluster, redis_server: RedisServer, data_dir: Path
) -> Iterator[Server]:
    """A server (not started) on a database of its own, as the service role, with Redis limits.

    Stopped, and its database dropped, on exit.
    """
    database = cluster.database()
    srv = Server(
        data_dir,
        {"TRAILKEEP_DATABASE_URL": database.service_url, "TRAILKEEP_REDIS_URL": redis_server.url()},
    )
    srv.owner_url = database.owner_url
    try:
        yield srv
    finally:
        srv.stop()
        cluster.drop(database.name)
