"""``trailkeep secrets``: rotate an app's session secret, and the node's secret key."""

from __future__ import annotations

import typer

from trailkeep.cli.common import (
    AppOpt,
    AsJson,
    DatabaseUrl,
    DataDir,
    administer,
    out,
    print_json,
    require_database,
    settings_from,
    store_of,
)

secrets_cli = typer.Typer(
    help="Rotate an app's session secret, or the key that seals stored secrets.",
    no_args_is_help=True,
)


@secrets_cli.command("rotate-session")
def rotate_session(
    app_id: AppOpt, as_json: AsJson = False, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """Issue a new session secret (shown once); the old one verifies until it is retired."""
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.admin.rotate_session_secret(app_id, op.actor, op.origin),
    )  # fmt: skip
    if as_json:
        print_json({"app_id": app_id, "session_secret": done.result})
        return
    out.print(f"new session secret: {done.result}", highlight=False)
    out.print(
        "Sign new sessions with it; sessions signed with the old one still verify until "
        f"`trailkeep secrets retire-session --app {app_id}`.",
        highlight=False,
    )


@secrets_cli.command("retire-session")
def retire_session(
    app_id: AppOpt, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Retire the old session secret: only the new one verifies from now on."""
    administer(
        data_dir, database_url, app_id,
        lambda op: op.admin.retire_session_secret(app_id, op.actor, op.origin),
    )  # fmt: skip
    out.print(f"{app_id}: the old session secret is retired", highlight=False)


@secrets_cli.command("rotate-key")
def rotate_key(
    as_json: AsJson = False, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Seal every stored secret under the current secret key (run with the previous key set).

    Set TRAILKEEP_SECRET_KEY_FILE to the new key and TRAILKEEP_PREVIOUS_SECRET_KEY_FILE to the
    old one, on every node and here; run this; then drop the previous key.
    """
    from trailkeep import __version__
    from trailkeep.log.record import Origin
    from trailkeep.server.governance import operator
    from trailkeep.server.governance.keyring import rotate_secret_key

    settings = settings_from(data_dir=data_dir, database_url=database_url)
    require_database(settings)
    store = store_of(settings)
    try:
        done = rotate_secret_key(
            store, operator(), Origin(ip=None, user_agent=f"trailkeep-cli/{__version__}"),
            settings.metadata_max_bytes,
        )  # fmt: skip
    finally:
        store.close()
    if as_json:
        print_json([{"app_id": d.app_id, "resealed": d.resealed, "from_keys": list(d.from_keys)}
                    for d in done])  # fmt: skip
        return
    total = sum(d.resealed for d in done)
    key = store.secrets.key_id if store.secrets is not None else "?"
    out.print(f"{total} secret(s) of {len(done)} app(s) sealed again under key {key}")
