"""``trailkeep apps``, ``keys`` and ``sessions``: tenants, their API keys, end-user sessions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from trailkeep.cli.common import (
    AppOpt,
    AsJson,
    CliError,
    DatabaseUrl,
    DataDir,
    Operator,
    administer,
    cell,
    open_store,
    out,
    print_json,
)
from trailkeep.log.credentials import SCOPES
from trailkeep.sdk.sessions import mint_session

if TYPE_CHECKING:
    from trailkeep.server.governance.administer import Done

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
    retention_days: Annotated[
        int | None,
        typer.Option(
            "--retention-days",
            min=1,
            max=36_500,
            help="Keep entries' content this many days; the scheduler erases older content.",
        ),
    ] = None,
    keep_forever: Annotated[
        bool, typer.Option("--keep-forever", help="Keep entries' content forever (the default).")
    ] = False,
    erasure_approvals: Annotated[
        int | None,
        typer.Option(
            "--erasure-approvals", min=1, max=2, help="Owners who approve an erasure: 1 or 2."
        ),
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option("--issuer", help="The app's identity provider: its tokens' `iss`."),
    ] = None,
    jwks_uri: Annotated[
        str | None, typer.Option("--jwks-uri", help="Where the identity provider's keys are.")
    ] = None,
    audience: Annotated[
        str | None, typer.Option("--audience", help="The tokens' `aud` (default: the app id).")
    ] = None,
    role_claim: Annotated[
        str | None,
        typer.Option("--role-claim", help="Dotted path to the roles, e.g. realm_access.roles."),
    ] = None,
    role_map: Annotated[
        list[str] | None,
        typer.Option(
            "--role-map", help="IDP_ROLE=owner|admin|auditor; repeatable. Others: no role."
        ),
    ] = None,
    no_issuer: Annotated[
        bool, typer.Option("--no-issuer", help="Remove the app's identity provider.")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change an app's settings; each change is logged in the app's log by you, the operator."""
    from trailkeep.server.governance import validate_patch

    if retention_days is not None and keep_forever:
        raise CliError("give --retention-days N or --keep-forever, not both")
    wanted: dict[str, Any] = {}
    if retention_days is not None or keep_forever:
        wanted["retention_days"] = retention_days
    if erasure_approvals is not None:
        wanted["erasure_approvals"] = erasure_approvals
    idp = _issuer_options(issuer, jwks_uri, audience, role_claim, role_map, no_issuer)
    if idp is not None:
        wanted["session_issuer"] = idp[0]
        _check_jwks_uri(idp[0], data_dir, database_url)
    if not wanted and not allow_origin and not clear_origins:
        raise CliError(
            "nothing to change: give --allow-origin URL, --clear-origins, --retention-days N, "
            "--keep-forever, --erasure-approvals 1|2, --issuer URL --jwks-uri URL or --no-issuer"
        )

    def job(op: Operator) -> Done:
        values = dict(wanted)
        if allow_origin or clear_origins:
            current = op.admin.settings(app_id)["allowed_origins"]
            origins = [] if clear_origins else list(current)
            values["allowed_origins"] = origins + list(allow_origin or [])
        # The operator acts at once: shortening retention over the API waits for approvals.
        done: Done = op.admin.update_settings(
            app_id, validate_patch(values, app_id), op.actor, op.origin, at_once=True
        )
        return done

    done = administer(data_dir, database_url, app_id, job)
    if as_json:
        print_json({"app_id": app_id, **done.result, "logged": done.entry is not None})
        return
    if done.entry is None:
        out.print(f"{app_id}: nothing changed", highlight=False)
        return
    settings = done.result
    origins = ", ".join(settings["allowed_origins"]) or "(none)"
    retention = settings["retention_days"]
    out.print(f"allowed origins of {app_id}: {origins}", highlight=False)
    out.print(
        f"retention: {'forever' if retention is None else f'{retention} days'}; "
        f"erasure approvals: {settings['erasure_approvals']}",
        highlight=False,
    )
    idp_now = settings.get("session_issuer")
    out.print(f"identity provider: {idp_now['issuer'] if idp_now else '(none)'}", highlight=False)
    out.print("Logged in the app's log. Running servers apply the change within 5 seconds.")


def _issuer_options(
    issuer: str | None,
    jwks_uri: str | None,
    audience: str | None,
    role_claim: str | None,
    role_map: list[str] | None,
    no_issuer: bool,
) -> tuple[dict[str, Any] | None] | None:
    """``(session_issuer,)`` as the options give it (``(None,)``: remove it), or None."""
    detail = (jwks_uri, audience, role_claim, role_map)
    if no_issuer:
        if issuer is not None or any(value is not None for value in detail):
            raise CliError("give --no-issuer alone, without --issuer and its options")
        return (None,)
    if issuer is None:
        if any(value is not None for value in detail):
            raise CliError("--jwks-uri, --audience, --role-claim and --role-map need --issuer")
        return None
    if jwks_uri is None:
        raise CliError("--issuer needs --jwks-uri URL: where the provider publishes its keys")
    found: dict[str, Any] = {"issuer": issuer, "jwks_uri": jwks_uri}
    if audience is not None:
        found["audience"] = audience
    if role_claim is not None:
        found["role_claim"] = role_claim
    mapping: dict[str, str] = {}
    for pair in role_map or ():
        name, sep, role = pair.rpartition("=")
        if not sep or not name:
            raise CliError(f"--role-map {pair!r}: give IDP_ROLE=owner, admin or auditor")
        mapping[name] = role
    if mapping:
        found["role_map"] = mapping
    return (found,)


def _check_jwks_uri(
    issuer: dict[str, Any] | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Refuse a ``jwks_uri`` on a non-public address, as the servers refuse it."""
    from trailkeep.cli.common import settings_from
    from trailkeep.server.jwks import JwksError, check_uri

    if issuer is None:
        return
    allow = settings_from(data_dir=data_dir, database_url=database_url).jwks_allow_private
    try:
        check_uri(issuer["jwks_uri"], allow)
    except JwksError as exc:
        raise CliError(f"--jwks-uri: {exc}") from None


@keys_cli.command("create")
def keys_create(
    app_id: AppOpt,
    scope: Annotated[list[str], typer.Option("--scope", help=f"One of {', '.join(SCOPES)}.")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="When the key stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z)."),
    ] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key with the given scopes (shown once; logged as `key.create`)."""
    from trailkeep.log.record import parse_time

    try:
        expires_at = None if expires is None else parse_time(expires)
    except ValueError as exc:
        raise CliError(f"--expires: {exc}") from None
    done = administer(
        data_dir,
        database_url,
        app_id,
        lambda op: op.admin.create_key(
            app_id, scope, name, op.actor, op.origin, expires_at=expires_at
        ),
    )
    made = done.result
    until = None if made.expires_at is None else made.expires_at.isoformat()
    if as_json:
        print_json({"key_id": made.key_id, "key": made.key, "scopes": made.scopes,
                    "expires_at": until})  # fmt: skip
        return
    out.print(f"key id: {made.key_id}\nkey:    {made.key}\nscopes: {' '.join(made.scopes)}")
    if until is not None:
        out.print(f"expires: {until}", highlight=False)


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
        print_json([key.public() for key in keys])
        return
    table = Table(
        Column("key id", no_wrap=True), Column("scopes", no_wrap=True), "name", "created",
        "revoked", "expires",
    )  # fmt: skip
    for key in keys:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        expires = key.expires_at.strftime("%Y-%m-%d %H:%M") if key.expires_at else ""
        created = key.created_at.strftime("%Y-%m-%d %H:%M")
        scopes = "\n".join(sorted(key.scopes))
        table.add_row(cell(key.id), scopes, cell(key.name), created, revoked, expires)
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`keys list` shows it).")],
    app_id: Annotated[
        str | None, typer.Option("--app", help="The key's app (found from the key if left out).")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key (logged as `key.revoke`); servers stop accepting it within seconds."""
    if app_id is None:
        found = open_store(data_dir, database_url).get_key(key_id)
        if found is None:
            raise CliError(f"no active key {key_id!r}")
        app_id = found.app_id
    owner = app_id
    done = administer(
        data_dir,
        database_url,
        owner,
        lambda op: op.admin.revoke_key(owner, key_id, op.actor, op.origin),
    )
    if done.entry is None:
        raise CliError(f"no active key {key_id!r}")
    out.print(f"revoked {key_id}", highlight=False)


@sessions_cli.command("mint")
def sessions_mint(
    app_id: AppOpt,
    sub: Annotated[str, typer.Option(help="The end user's id (the actor id).")],
    role: Annotated[
        str | None, typer.Option(help="owner, admin, auditor, or any other role.")
    ] = None,
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
