"""``trailkeep holds`` and ``trailkeep erase``: a data subject's entries, held or erased."""

from __future__ import annotations

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
    out,
    print_json,
)

if TYPE_CHECKING:
    from trailkeep.server.governance.subjects import Recorded
    from trailkeep.server.store import Subject

holds_cli = typer.Typer(help="Place, release and list legal holds.", no_args_is_help=True)
erase_cli = typer.Typer(
    help="Erase a data subject's entries (with `approve` and `list` for requests).",
    invoke_without_command=True,
)

ActorOpt = Annotated[str | None, typer.Option("--actor", help="The subject as an actor id.")]
TargetOpt = Annotated[
    str | None, typer.Option("--target", help="The subject as a target, TYPE:ID.")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the log).")]


def _subject(actor: str | None, target: str | None, seqs: list[int], whole: bool) -> Subject:
    from trailkeep.server.governance.subjects import parse_subject

    given = [name for name, v in (("--actor", actor), ("--target", target),
                                  ("--seq", seqs), ("--all", whole)) if v]  # fmt: skip
    if len(given) != 1:
        raise CliError("give the subject once: --actor ID, --target TYPE:ID, --seq N or --all")
    body: dict[str, Any]
    if actor:
        body = {"actor_id": actor}
    elif target:
        kind, sep, ident = target.partition(":")
        if not sep or not kind or not ident:
            raise CliError("--target: TYPE:ID, e.g. order:ord_9")
        body = {"target": {"type": kind, "id": ident}}
    elif seqs:
        body = {"seqs": seqs}
    else:
        body = {"all": True}
    try:
        return parse_subject(body, whole_app=whole)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _reason(reason: str | None) -> str:
    from trailkeep.server.governance.subjects import parse_reason

    try:
        return parse_reason(reason)
    except ValueError as exc:
        raise CliError(f"--reason: {exc}") from None


def _described(subject: dict[str, Any]) -> str:
    """A subject as a person reads it: ``actor ID``, ``target TYPE:ID``, or ``the whole app``."""
    if "actor_id" in subject:
        return f"actor {subject['actor_id']}"
    if "target" in subject:
        return f"target {subject['target']['type']}:{subject['target']['id']}"
    if subject.get("erased"):
        return f"an erased subject (hmac {subject['hmac'][:16]}…)"
    return "the whole app"


def _operator_id(op: Operator) -> str:
    return f"operator:{op.actor.id}"


def _show(done: Recorded, as_json: bool, line: str) -> None:
    if as_json:
        print_json(done.result)
    else:
        out.print(line, highlight=False)


@holds_cli.command("place")
def holds_place(
    app_id: AppOpt,
    actor: ActorOpt = None,
    target: TargetOpt = None,
    whole: Annotated[bool, typer.Option("--all", help="Hold the whole app.")] = False,
    reason: ReasonOpt = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Place a legal hold: its entries survive retention and refuse erasure (logged)."""
    subject, why = _subject(actor, target, [], whole), _reason(reason)
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.subjects.place_hold(app_id, subject, why, op.actor, op.origin),
    )  # fmt: skip
    _show(done, as_json, f"placed hold {done.result['id']}")


@holds_cli.command("release")
def holds_release(
    hold_id: Annotated[str, typer.Argument(help="The hold's id (`holds list` shows it).")],
    app_id: AppOpt,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Release a legal hold (logged)."""
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.subjects.release_hold(app_id, hold_id, op.actor, op.origin),
    )  # fmt: skip
    _show(done, as_json, f"released hold {hold_id}")


@holds_cli.command("list")
def holds_list(
    app_id: AppOpt, as_json: AsJson = False, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """List an app's holds, released ones included."""
    found = administer(data_dir, database_url, app_id, lambda op: op.subjects.holds(app_id))
    if as_json:
        print_json(found)
        return
    table = Table(Column("hold id", no_wrap=True), "subject", "reason", "placed", "released")
    for hold in found:
        table.add_row(
            cell(hold["id"]), cell(_described(hold["subject"])), cell(hold["reason"]),
            cell(hold["placed_at"][:16]), cell((hold["released_at"] or "")[:16]),
        )  # fmt: skip
    out.print(table)


@erase_cli.callback()
def erase(
    ctx: typer.Context,
    app_id: Annotated[str | None, typer.Option("--app", help="The app id.")] = None,
    actor: ActorOpt = None,
    target: TargetOpt = None,
    seq: Annotated[
        list[int] | None, typer.Option("--seq", help="A seq to erase; repeatable.")
    ] = None,
    reason: ReasonOpt = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase a subject's entries; you count as the first owner's approval (logged)."""
    if ctx.invoked_subcommand is not None:
        return
    if app_id is None:
        raise CliError("give --app APP and the subject (--actor, --target or --seq) to erase")
    subject, why = _subject(actor, target, list(seq or []), False), _reason(reason)
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.subjects.request(
            app_id, subject, why, op.actor, op.origin, _operator_id(op)
        ),
    )  # fmt: skip
    result = done.result
    line = (
        f"{result['id']}: erased the content of {result['erased']} entries"
        if result["status"] == "done"
        else f"{result['id']}: {result['matched']} entries matched; pending "
        f"({result['approvals']} of {result['approvals_required']} approvals)"
    )
    _show(done, as_json, line)


@erase_cli.command("approve")
def erase_approve(
    erasure_id: Annotated[str, typer.Argument(help="The erasure's id (`era_...`).")],
    app_id: AppOpt,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Approve a pending erasure as an owner (logged); carried out once approvals suffice."""
    done = administer(
        data_dir, database_url, app_id,
        lambda op: op.subjects.approve(app_id, erasure_id, _operator_id(op), op.actor, op.origin),
    )  # fmt: skip
    _show(done, as_json, f"{erasure_id}: {done.result['status']}")


@erase_cli.command("list")
def erase_list(
    app_id: AppOpt, as_json: AsJson = False, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:  # fmt: skip
    """List an app's erasure requests, newest first (never their subject)."""
    found = administer(data_dir, database_url, app_id, lambda op: op.subjects.erasures(app_id))
    if as_json:
        print_json(found)
        return
    table = Table(Column("erasure id", no_wrap=True), "status", "matched", "erased",
                  "approvals", "reason", "requested")  # fmt: skip
    for era in found:
        table.add_row(
            cell(era["id"]), cell(era["status"]), str(era["matched"]), str(era["erased"]),
            f"{era['approvals']}/{era['approvals_required']}", cell(era["reason"]),
            cell(era["created_at"][:16]),
        )  # fmt: skip
    out.print(table)
