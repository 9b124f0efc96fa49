"""``trailkeep webhooks``: an app's webhook destinations, changed as the operator (logged)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from trailkeep.cli.common import (
    AppOpt,
    AsJson,
    CliError,
    DatabaseUrl,
    DataDir,
    administer,
    cell,
    out,
    print_json,
    settings_from,
)

webhooks_cli = typer.Typer(
    help="Add, list, replay and delete webhook destinations.", no_args_is_help=True
)

HookArg = Annotated[str, typer.Argument(help="The destination's id (`wh_...`).")]


def _filter(given: list[str]) -> dict[str, Any]:
    """``--filter NAME=VALUE`` options as a destination's filter (``action`` repeats)."""
    from trailkeep.server.governance.webhooks import parse_filter

    found: dict[str, Any] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--filter: NAME=VALUE, e.g. action_prefix=user. (got {item!r})")
        if name == "action":
            found.setdefault("action", []).append(value)
        else:
            found[name] = value
    try:
        return parse_filter(found)
    except ValueError as exc:
        raise CliError(str(exc)) from None


@webhooks_cli.command("create")
def webhooks_create(
    app_id: AppOpt,
    url: Annotated[str, typer.Option("--url", help="Where to deliver (https, public address).")],
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="NAME=VALUE, e.g. action_prefix=user.; repeatable."),
    ] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a destination; prints its secret, which is shown this once (logged)."""
    from trailkeep.server.governance.webhooks import parse_url

    allow = settings_from(data_dir=data_dir, database_url=database_url).webhook_allow_private
    wanted = _filter(list(filter_ or []))
    try:
        checked = parse_url(url, allow)
    except ValueError as exc:
        raise CliError(f"--{exc}") from None
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.webhooks.create(app_id, checked, wanted, "trailkeep", op.actor, op.origin),
    )  # fmt: skip
    if as_json:
        print_json(done.result)
        return
    out.print(f"created webhook {done.result['id']}", highlight=False)
    out.print(f"secret (shown once): {done.result['secret']}", highlight=False)


@webhooks_cli.command("list")
def webhooks_list(
    app_id: AppOpt, as_json: AsJson = False, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """List an app's destinations: status, cursor, last error."""
    found = administer(data_dir, database_url, app_id, lambda op: op.webhooks.all(app_id))
    if as_json:
        print_json(found)
        return
    table = Table(Column("webhook id", no_wrap=True), "url", "status", "cursor", "last error")
    for hook in found:
        table.add_row(
            cell(hook["id"]), cell(hook["url"]),
            cell(hook["status"] if not hook["disabled_reason"]
                 else f"{hook['status']}: {hook['disabled_reason']}"),
            cell(hook["cursor"]), cell(hook["last_error"]),
        )  # fmt: skip
    out.print(table)


@webhooks_cli.command("replay")
def webhooks_replay(
    hook_id: HookArg,
    app_id: AppOpt,
    from_seq: Annotated[int, typer.Option("--from-seq", help="Deliver again from this seq.")],
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Deliver again from a seq on, re-enabling the destination (logged)."""
    if from_seq < 0:
        raise CliError("--from-seq: a non-negative integer")
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.webhooks.replay(app_id, hook_id, from_seq, op.actor, op.origin),
    )  # fmt: skip
    if as_json:
        print_json(done.result)
        return
    out.print(f"{hook_id}: delivers again from seq {from_seq}", highlight=False)


@webhooks_cli.command("delete")
def webhooks_delete(
    hook_id: HookArg, app_id: AppOpt, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Delete a destination (logged)."""
    administer(
        data_dir, database_url, app_id,
        lambda op: op.webhooks.delete(app_id, hook_id, op.actor, op.origin),
    )  # fmt: skip
    out.print(f"deleted webhook {hook_id}", highlight=False)
