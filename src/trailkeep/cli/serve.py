"""``trailkeep serve`` and ``trailkeep migrate``: run a node, and bring its schema up to date."""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trailkeep.cli.common import (
    CliError,
    DatabaseUrl,
    DataDir,
    open_store,
    out,
    require_reachable,
    settings_from,
    store_of,
)
from trailkeep.cli.console import link

if TYPE_CHECKING:
    from trailkeep.server.provision import NewApp
    from trailkeep.server.settings import Settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    rate_limit: Annotated[str | None, typer.Option(help="Writes per client IP.")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL for shared limits.")] = None,
    demo: Annotated[bool, typer.Option(help="Create and print a demo app on first start.")] = False,
    workers: Annotated[
        int, typer.Option(help="Worker processes (PostgreSQL and Redis only).", min=1)
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from trailkeep.server import provision
    from trailkeep.server.api import create_app
    from trailkeep.server.api.protocol import PROTOCOL
    from trailkeep.server.ingest.checkpointer import load_signer
    from trailkeep.server.store.engine import MigrationError

    given = {"data_dir": data_dir, "database_url": database_url, "rate_limit": rate_limit,
             "redis_url": redis_url}  # fmt: skip
    settings = settings_from(**given)
    # Every check that can fail comes before anything is made (data folder, keys, database):
    # a mistyped option leaves nothing behind, and says what is wrong in one line.
    if workers > 1:
        _check_workers(settings)
    _check_port(host, port)
    require_reachable(settings)
    if demo or settings.demo_app:
        store = store_of(settings)
        made = provision.demo_app(store, settings.data_dir)
        store.close()
        _print_demo(made, host, port)
    if workers == 1:
        target: Any = create_app(settings)
    else:
        # Each worker is a node of its own (as several `serve` processes on one PostgreSQL
        # are): it builds its settings from the environment, so the options given go there.
        for name, value in given.items():
            if value is not None:
                os.environ[f"TRAILKEEP_{name.upper()}"] = str(value)
        # Done once here rather than raced by the workers: the schema and the two keys.
        try:
            store_of(settings).close()
        except MigrationError as exc:
            raise CliError(str(exc)) from None
        load_signer(settings.resolved_signing_key_file, settings.origin)
        target = "trailkeep.server.api:create_app"
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        # Trailkeep decides itself which proxies to believe (TRAILKEEP_TRUSTED_PROXIES).
        proxy_headers=False,
        # httptools, with request headers bounded in size and time (431, 408).
        http=PROTOCOL,
        server_header=False,
        access_log=access_log,
        log_level="info",
    )


def _check_port(host: str, port: int) -> None:
    """Fail now if ``host:port`` cannot be listened on (taken, or not an address of ours)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port whose old connections linger in TIME_WAIT is free to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the port is taken" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise CliError(f"cannot listen on {host}:{port}: {reason}") from None


def _check_workers(settings: Settings) -> None:
    from trailkeep.server.store.engine import is_postgres

    if not is_postgres(settings.resolved_database_url):
        raise CliError(
            "--workers needs PostgreSQL: a SQLite file takes one writing process "
            "(run one `serve` per file, or move to PostgreSQL)"
        )
    if not settings.redis_url:
        raise CliError(
            "--workers needs --redis-url (TRAILKEEP_REDIS_URL): without a shared counter each "
            "worker would keep its own per-IP limit, and a client would get N times its rate"
        )


def migrate(
    months_ahead: Annotated[
        int, typer.Option(help="PostgreSQL: months of `events` partitions to create ahead.", min=0)
    ] = 3,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Bring the schema up to date (as the schema owner, before starting new nodes)."""
    store = open_store(data_dir, database_url, create=True)
    made = store.ensure_partitions(months_ahead)
    out.print(f"schema is up to date; {made} partition(s) created")


def _print_demo(made: NewApp, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    body = '{"action":"demo.hello","target_type":"doc","target_id":"doc_1","metadata":{"n":1}}'
    out.print("[bold]Trailkeep demo app[/bold] (credentials in the data dir's demo file)")
    out.print(f"  app id:         {made.app_id}")
    out.print(f"  key (all scopes): {made.key}", soft_wrap=True)
    out.print(f"  session secret: {made.session_secret}", soft_wrap=True)
    out.print(f"  API docs:       {base}/docs")
    out.print(f"  console:        {base}/console")
    # A fresh owner's link each start: the session in it lasts an hour.
    owner = link(base, made.app_id, made.session_secret, "demo-owner", "owner", "Demo owner", 3600)
    out.print(f"  sign in (1 h):  {owner}", soft_wrap=True, highlight=False)
    out.print("  record an entry:")
    out.print(
        f"    curl -sS -X POST {base}/v1/apps/{made.app_id}/events "
        f"-H 'Authorization: Bearer {made.key}' -H 'Content-Type: application/json' "
        f"-d '{body}'",
        soft_wrap=True,
        highlight=False,
    )
