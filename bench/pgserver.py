"""PostgreSQL for the write benchmark: a URL from the environment, or a throwaway durable cluster.

The test suite's cluster (``tests/pg.py``) runs with ``fsync=off`` for speed; a benchmark that
claims "every 201 is committed" must not, so this one is started with PostgreSQL's durable
defaults (``fsync=on``, ``synchronous_commit=on``, ``full_page_writes=on``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ENV_URL = "TRAILKEEP_BENCH_PG_URL"
_reason = ""


@dataclass
class Postgres:
    """Where the PostgreSQL variant runs: fresh databases and how to describe them."""

    version: str
    kind: str
    cluster: object | None = None
    url: str | None = None

    def database(self) -> tuple[str, str]:
        """(owner URL for set-up, URL the servers use) of a fresh, migrated database."""
        if self.cluster is None:
            assert self.url is not None
            return self.url, self.url
        made = self.cluster.database(migrated=True)  # type: ignore[attr-defined]
        return str(made.owner_url), str(made.service_url)

    def describe(self) -> str:
        """One line for the report."""
        return f"PostgreSQL {self.version}, {self.kind}"


def _version(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _durable_cluster() -> object:
    from tests.pg import PostgresCluster

    class DurableCluster(PostgresCluster):
        """The test cluster, started with PostgreSQL's durable defaults."""

        def start(self) -> DurableCluster:
            if self.user:
                import shutil

                shutil.chown(self.root, self.user)
                self.root.chmod(0o700)
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
            )  # fmt: skip
            options = " ".join([
                f"-p {self.port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1",
                "-c max_connections=400", "-c shared_buffers=256MB",
                "-c log_min_messages=warning", "-c log_min_error_statement=panic",
            ])  # fmt: skip
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
            return self

    return DurableCluster().start()


@contextmanager
def maybe_postgres(mode: str) -> Iterator[Postgres | None]:
    """PostgreSQL when ``mode`` asks for it and it can be had; None (and a reason) otherwise."""
    global _reason
    if mode == "off":
        _reason = "not measured: PostgreSQL variant off (`--pg off`, the default with --smoke)"
        yield None
        return
    url = os.environ.get(ENV_URL)
    if url:
        yield Postgres(_version(url), f"given by {ENV_URL}", url=url)
        return
    try:
        cluster = _durable_cluster()
    except Exception as exc:
        if mode == "on":
            raise
        _reason = f"not measured: no PostgreSQL ({exc}); set {ENV_URL} or install `postgresql`"
        yield None
        return
    try:
        admin = cluster.admin_url  # type: ignore[attr-defined]
        yield Postgres(
            _version(admin),
            "throwaway local cluster (fsync=on, synchronous_commit=on), restricted service role",
            cluster=cluster,
        )
    finally:
        cluster.stop()  # type: ignore[attr-defined]


def why_not(mode: str) -> str:
    """Why there is no PostgreSQL figure."""
    return _reason or f"not measured (--pg {mode})"
