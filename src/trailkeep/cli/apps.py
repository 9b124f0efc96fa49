"""``trailkeep apps``, ``keys`` and ``sessions``: tenants, their API keys, end-user sessions."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Column, Table

from trailkeep.cli.common import (
    AppOpt,
    AsJson,
    CliError,
    DatabaseUrl,
    DataDir,
    cell,
    open_store,
    out,
    print_json,
)
from trailkeep.log.credentials import SCOPES
from trailkeep.sdk.sessions import mint_session

apps_cli = typer.Typer(help="Create and list apps (tenants).", no_args_is_help=True)
keys_cli = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
sessions_cli = typer.Typer(help="Mint end-user session tokens.", no_args_is_help=True)


@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="A name for the app, for people.")],
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an app; prints its id, a key with every scope and its session secret."""
    from trailkeep.server import provision

    made = provision.create_app(open_store(data_dir, database_url, create=True), name)
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
            cell(a.id), cell(a.name), a.created_at.strftime("%Y-%m-%d %H:%M"),
            str(store.log_size(a.id)),
        )  # fmt: skip
    out.print(table)


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
    from trailkeep.server.provision import normalize_origin

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
    from trailkeep.server import provision

    made = provision.create_key(open_store(data_dir, database_url), app_id, scope, name)
    if as_json:
        print_json(asdict(made))
        return
    out.print(f"key id: {made.key_id}\nkey:    {made.key}\nscopes: {' '.join(made.scopes)}")


@keys_cli.command("list")
def keys_list(
    app_id: AppOpt, as_json: AsJson = False, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """List an app's keys (never their secrets)."""
    store = open_store(data_dir, database_url)
    if store.get_app(app_id) is None:
        raise CliError(f"no app {app_id!r}")
    keys = store.list_keys(app_id)
    if as_json:
        print_json([
            {"key_id": k.id, "name": k.name, "scopes": sorted(k.scopes),
             "created_at": k.created_at.isoformat(),
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
            for k in keys
        ])  # fmt: skip
        return
    table = Table(
        Column("key id", no_wrap=True), Column("scopes", no_wrap=True), "name", "created", "revoked"
    )
    for key in keys:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        created = key.created_at.strftime("%Y-%m-%d %H:%M")
        scopes = "\n".join(sorted(key.scopes))
        table.add_row(cell(key.id), scopes, cell(key.name), created, revoked)
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`keys list` shows it).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
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
