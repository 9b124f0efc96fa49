"""The ``trailkeep`` command: serve, manage apps and keys, mint sessions."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import asdict
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Column, Table

from trailkeep import provision
from trailkeep.auth import SCOPES, mint_session
from trailkeep.checkpointer import load_signer
from trailkeep.cli_common import (
    AppOpt,
    AsJson,
    CliError,
    DatabaseUrl,
    DataDir,
    err,
    open_store,
    out,
    print_json,
    settings_from,
)
from trailkeep.cli_events import events_cli
from trailkeep.cli_verify import verify
from trailkeep.settings import Settings
from trailkeep.store import Store
from trailkeep.store.engine import MigrationError, is_postgres

app = typer.Typer(
    help="Trailkeep: a verifiable, append-only audit log for your apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
apps_cli = typer.Typer(help="Create and list apps (tenants).", no_args_is_help=True)
keys_cli = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
sessions_cli = typer.Typer(help="Mint end-user session tokens.", no_args_is_help=True)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(sessions_cli, name="sessions")
app.add_typer(events_cli, name="events")
app.command()(verify)


@app.command()
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

    from trailkeep.api import create_app

    given = {"data_dir": data_dir, "database_url": database_url, "rate_limit": rate_limit,
             "redis_url": redis_url}  # fmt: skip
    settings = settings_from(**given)
    if workers > 1:
        _check_workers(settings)
    if demo or settings.demo_app:
        store = Store(settings.resolved_database_url)
        store.migrate()
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
        # Done once here rather than raced by the workers: the schema, and the signing key.
        store = Store(settings.resolved_database_url)
        try:
            store.migrate()
        except MigrationError as exc:
            raise CliError(str(exc)) from None
        finally:
            store.close()
        load_signer(settings.resolved_signing_key_file, settings.origin)
        target = "trailkeep.api:create_app"
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        # Trailkeep decides itself which proxies to believe (TRAILKEEP_TRUSTED_PROXIES).
        proxy_headers=False,
        server_header=False,
        access_log=access_log,
        log_level="info",
    )


def _check_workers(settings: Settings) -> None:
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


@app.command()
def migrate(
    months_ahead: Annotated[
        int, typer.Option(help="PostgreSQL: months of `events` partitions to create ahead.", min=0)
    ] = 3,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Bring the schema up to date (as the schema owner, before starting new nodes)."""
    store = open_store(data_dir, database_url)
    made = store.ensure_partitions(months_ahead)
    out.print(f"schema is up to date; {made} partition(s) created")


def _print_demo(made: provision.NewApp, host: str, port: int) -> None:
    base = f"http://{host}:{port}"
    body = '{"action":"demo.hello","target_type":"doc","target_id":"doc_1","metadata":{"n":1}}'
    out.print("[bold]Trailkeep demo app[/bold] (credentials in the data dir's demo file)")
    out.print(f"  app id:         {made.app_id}")
    out.print(f"  key (all scopes): {made.key}", soft_wrap=True)
    out.print(f"  session secret: {made.session_secret}", soft_wrap=True)
    out.print(f"  API docs:       {base}/docs")
    out.print("  record an entry:")
    out.print(
        f"    curl -sS -X POST {base}/v1/apps/{made.app_id}/events "
        f"-H 'Authorization: Bearer {made.key}' -H 'Content-Type: application/json' "
        f"-d '{body}'",
        soft_wrap=True,
        highlight=False,
    )


@apps_cli.command("create")
def apps_create(
    name: str, as_json: AsJson = False, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Create an app; prints its id, a key with every scope and its session secret."""
    made = provision.create_app(open_store(data_dir, database_url), name)
    if as_json:
        print_json({"app_id": made.app_id, "key": made.key, "key_id": made.key_id,
                     "session_secret": made.session_secret, "name": made.name})  # fmt: skip
        return
    out.print(f"app id:         {made.app_id}\nkey:            {made.key}", soft_wrap=True)
    out.print(f"session secret: {made.session_secret}", soft_wrap=True)
    out.print("The key and the secret are shown once: keep them now.")


@apps_cli.command("list")
def apps_list(
    as_json: AsJson = False, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """List apps."""
    store = open_store(data_dir, database_url)
    apps = store.list_apps()
    if as_json:
        print_json([
            {"app_id": a.id, "name": a.name, "created_at": a.created_at.isoformat(),
             "entries": store.log_size(a.id), "allowed_origins": list(a.allowed_origins)}
            for a in apps
        ])  # fmt: skip
        return
    table = Table(Column("app id", no_wrap=True), "name", "created", "entries")
    for a in apps:
        table.add_row(
            a.id, a.name, a.created_at.strftime("%Y-%m-%d %H:%M"), str(store.log_size(a.id))
        )
    out.print(table)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_origin(text: str) -> str:
    """A web origin as browsers send it (``scheme://host[:port]``), or ValueError."""
    hint = f"{text!r} is not an origin: expected scheme://host[:port], e.g. https://app.example"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(hint) from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        raise ValueError(hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{text!r}: an origin has no path, query or fragment")
    if ":" in host:  # IPv6
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(hint) from None
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()  # browsers send the A-label
        except UnicodeError:
            raise ValueError(hint) from None
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ValueError(hint)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    if port == 0:
        raise ValueError(hint)
    return f"{scheme}://{host}:{port}"


@apps_cli.command("update")
def apps_update(
    app_id: Annotated[str, typer.Argument(help="The app id.")],
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="Let browser pages on this origin (scheme://host[:port]) write; repeatable.",
        ),
    ] = None,
    clear_origins: Annotated[
        bool, typer.Option("--clear-origins", help="Remove every allowed origin first.")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change an app's settings: the web origins allowed to write from a browser."""
    wanted = [normalize_origin(origin) for origin in allow_origin or []]
    if not wanted and not clear_origins:
        raise CliError("nothing to change: give --allow-origin URL or --clear-origins")
    store = open_store(data_dir, database_url)
    found = store.get_app(app_id)
    if found is None:
        raise CliError(f"no app {app_id!r}")
    origins = [] if clear_origins else list(found.allowed_origins)
    origins += [origin for origin in dict.fromkeys(wanted) if origin not in origins]
    if not store.set_allowed_origins(app_id, origins):
        raise CliError(f"no app {app_id!r}")
    if as_json:
        print_json({"app_id": app_id, "allowed_origins": origins})
        return
    out.print(f"allowed origins of {app_id}: {', '.join(origins) or '(none)'}", highlight=False)
    out.print("Running servers apply the change within 5 seconds.")


@keys_cli.command("create")
def keys_create(
    app_id: AppOpt,
    scope: Annotated[list[str], typer.Option("--scope", help=f"One of {', '.join(SCOPES)}.")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key with the given scopes (shown once)."""
    made = provision.create_key(open_store(data_dir, database_url), app_id, scope, name)
    if as_json:
        print_json(asdict(made))
        return
    out.print(f"key id: {made.key_id}\nkey:    {made.key}\nscopes: {' '.join(made.scopes)}")


@keys_cli.command("list")
def keys_list(app_id: AppOpt, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List an app's keys (never their secrets)."""
    table = Table(
        Column("key id", no_wrap=True), Column("scopes", no_wrap=True), "name", "created", "revoked"
    )
    for key in open_store(data_dir, database_url).list_keys(app_id):
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        created = key.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(key.id, "\n".join(sorted(key.scopes)), key.name or "", created, revoked)
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Revoke a key; servers stop accepting it within seconds."""
    if not open_store(data_dir, database_url).revoke_key(key_id):
        raise CliError(f"no active key {key_id!r}")
    out.print(f"revoked {key_id}")


@sessions_cli.command("mint")
def sessions_mint(
    app_id: AppOpt,
    sub: Annotated[str, typer.Option(help="The end user's id (the actor id).")],
    role: Annotated[str | None, typer.Option(help="owner, admin, or any other role.")] = None,
    name: Annotated[str | None, typer.Option(help="The user's display name.")] = None,
    ttl: Annotated[int, typer.Option(help="Seconds until it expires.", min=1)] = 3600,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Mint an HS256 session token with the app's session secret."""
    found = open_store(data_dir, database_url).get_app(app_id)
    if found is None:
        raise CliError(f"no app {app_id!r}")
    sys.stdout.write(
        mint_session(app_id, found.session_secret, sub, role=role, name=name, ttl=ttl) + "\n"
    )


def main() -> None:
    """Entry point: run the CLI; user errors are one line on stderr and a non-zero exit."""
    try:
        status = app(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: one line, not Typer's framed panel
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except (CliError, LookupError, ValueError, OSError) as exc:
        _fail(str(exc), 1)
    except Exception as exc:  # one line, never a traceback, for anything else too
        _fail(f"{type(exc).__name__}: {exc}", 1)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    # Messages echo user input: escape it so `[...]` is printed, not parsed as markup.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(status)
