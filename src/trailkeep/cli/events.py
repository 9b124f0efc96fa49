"""``trailkeep events``: list, follow and count entries through a server's HTTP API.

Every request goes through the SDK's client (``trailkeep.sdk.Client``): its retries, its errors
and its parsing, so the CLI has no HTTP client of its own.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Column, Table
from rich.text import Text

from trailkeep.cli.common import (
    ApiKey,
    AppOpt,
    AsJson,
    CliError,
    DataDir,
    cell,
    data_dir_of,
    err,
    out,
    print_json_line,
)
from trailkeep.sdk import Audit, Client, ConnectionFailed, RetryPolicy, TrailkeepError
from trailkeep.sdk.models import GroupBy

events_cli = typer.Typer(help="Read an app's log through the API.", no_args_is_help=True)

Server = Annotated[
    str, typer.Option("--server", envvar="TRAILKEEP_SERVER", help="The Trailkeep server.")
]
Actions = Annotated[list[str] | None, typer.Option("--action", help="Exact action (repeatable).")]
Prefix = Annotated[str | None, typer.Option("--action-prefix", help="Actions starting with.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Actor id.")]
TargetType = Annotated[
    str | None, typer.Option("--target-type", help="Target type (give --target-id with it).")
]
TargetId = Annotated[
    str | None, typer.Option("--target-id", help="Target id (give --target-type with it).")
]
Kind = Annotated[str | None, typer.Option("--kind", help="admin or user.")]
Since = Annotated[str | None, typer.Option("--since", help="RFC 3339, inclusive.")]
Until = Annotated[str | None, typer.Option("--until", help="RFC 3339, inclusive.")]

DEFAULT_SERVER = "http://127.0.0.1:8000"
#: A command line answers quickly: a couple of retries, not the SDK's patient default.
RETRY = RetryPolicy(max_retries=2)


def _credential(key: str | None, app_id: str, data_dir: Path | None) -> str:
    if key:
        return key
    # `make run` keeps the demo app's credentials in the data directory: use them if they fit.
    path = data_dir_of(data_dir) / "demo-credentials.json"
    if path.exists():
        demo = json.loads(path.read_text())
        if demo.get("app_id") == app_id:
            return str(demo["key"])
    raise CliError("give --api-key (or set TRAILKEEP_KEY): a key with events:read")


@contextmanager
def _audit(server: str, app_id: str, key: str | None, data_dir: Path | None) -> Iterator[Audit]:
    """The app's log on ``server``; the SDK's errors become one-line CLI errors."""
    credential = _credential(key, app_id, data_dir)
    try:
        with Client(server, app_id, credential, timeout=60, retry=RETRY) as client:
            yield client.audit
    except ConnectionFailed as exc:
        raise CliError(f"cannot reach the server: {exc.detail}") from None
    except TrailkeepError as exc:
        raise CliError(
            exc.detail if exc.status is None else f"{exc.status}: {exc.detail}"
        ) from None


def _filters(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value not in (None, [])}


def _table(entries: list[Mapping[str, Any]]) -> Table:
    table = Table("seq", "time", "kind", "action", "actor", "target", "ip")
    for e in entries:
        target = e.get("target") or {}
        table.add_row(
            cell(e["seq"]), cell(e["time"]), cell(e["kind"]), cell(e["action"]),
            cell(e["actor"].get("name") or e["actor"]["id"]),
            cell(f"{target['type']}:{target['id']}" if target else ""),
            cell(e["context"].get("ip")),
        )  # fmt: skip
    return table


@events_cli.command("list")
def list_events(
    app_id: AppOpt,
    action: Actions = None,
    action_prefix: Prefix = None,
    actor: ActorOpt = None,
    target_type: TargetType = None,
    target_id: TargetId = None,
    kind: Kind = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(help="Entries per page.", min=1, max=1000)] = 50,
    follow_all: Annotated[bool, typer.Option("--all", help="Follow cursors to the end.")] = False,
    as_json: AsJson = False,
    server: Server = DEFAULT_SERVER,
    key: ApiKey = None,
    data_dir: DataDir = None,
) -> None:
    """List entries, newest first: a table, or NDJSON with --json."""
    filters = _filters(
        action=action, action_prefix=action_prefix, actor=actor, target_type=target_type,
        target_id=target_id, kind=kind, since=since, until=until,
    )  # fmt: skip
    with _audit(server, app_id, key, data_dir) as audit:
        if follow_all:
            entries = (e.raw for e in audit.list(page_size=limit, **filters))
        else:
            entries = (e.raw for e in audit.page(limit=limit, **filters).data)
        if as_json:
            for entry in entries:
                print_json_line(entry)
            return
        shown = list(entries)
    out.print(_table(shown))


@events_cli.command("tail")
def tail(
    app_id: AppOpt,
    action: Actions = None,
    action_prefix: Prefix = None,
    actor: ActorOpt = None,
    target_type: TargetType = None,
    target_id: TargetId = None,
    kind: Kind = None,
    since: Since = None,
    until: Until = None,
    after_seq: Annotated[
        int | None,
        typer.Option("--after-seq", help="First print the stored entries after this seq.", min=-1),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between reconnection attempts.", min=0.1)
    ] = 1.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many entries.")] = None,
    as_json: AsJson = False,
    server: Server = DEFAULT_SERVER,
    key: ApiKey = None,
    data_dir: DataDir = None,
) -> None:
    """Follow new entries live, oldest first (one line each, or NDJSON with --json); Ctrl-C stops.

    It follows the server's live stream and, when the stream ends or breaks (a restart, or
    this terminal fell behind), reconnects after the last entry shown: none skipped or repeated.
    """
    filters = _filters(
        action=action, action_prefix=action_prefix, actor=actor, target_type=target_type,
        target_id=target_id, kind=kind, since=since, until=until,
    )  # fmt: skip
    try:
        with _audit(server, app_id, key, data_dir) as audit:
            _follow(audit, filters, after_seq, interval, count, as_json)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a tail ends: no traceback, a clean exit


def _follow(
    audit: Audit, filters: dict[str, Any], after_seq: int | None, interval: float,
    count: int | None, as_json: bool,
) -> None:  # fmt: skip
    seen: int | None = None  # where a reconnection resumes: the stream says so, entry by entry
    shown, down = 0, False
    while count is None or shown < count:
        try:
            stream = audit.stream(after_seq=after_seq, last_event_id=seen, **filters)
            try:
                if down:
                    err.print("reconnected", style="yellow")
                    down = False
                for entry in stream:
                    _print_entry(entry.raw, as_json)
                    seen, shown = entry.seq, shown + 1
                    if count is not None and shown >= count:
                        return
            finally:
                stream.close()
                seen = stream.last_seq if stream.last_seq is not None else seen
        except (ConnectionFailed, TrailkeepError) as exc:
            if not _passing(exc):
                raise
            # A restart or a deploy: keep following from the last seq shown, say so once.
            if not down:
                err.print(cell(f"server unreachable ({exc.detail}); retrying"), style="yellow")
            down = True
            time.sleep(interval)
            continue
        # The server ended the stream (it fell behind, or the node stopped): resume at once.


def _print_entry(entry: Mapping[str, Any], as_json: bool) -> None:
    """One entry as a line: NDJSON, or the list's columns as inert text."""
    if as_json:
        print_json_line(entry)
    elif entry.get("erased") is True:
        out.print(Text("  ").join([cell(entry["seq"]), cell(entry["time"]), cell("(erased)")]))
    else:
        target = entry.get("target") or {}
        cells = [
            entry["seq"], entry["time"], entry["kind"], entry["action"],
            entry["actor"].get("name") or entry["actor"]["id"],
            f"{target['type']}:{target['id']}" if target else "-", entry["context"].get("ip"),
        ]  # fmt: skip
        out.print(Text("  ").join(cell(c) for c in cells), soft_wrap=True)
    sys.stdout.flush()


def _passing(exc: TrailkeepError) -> bool:
    """Whether ``exc`` is a server that is away for now (down, restarting), not a refusal."""
    return isinstance(exc, ConnectionFailed) or exc.status in (502, 503, 504)


@events_cli.command("stats")
def stats(
    app_id: AppOpt,
    by: Annotated[
        str, typer.Option("--by", help="action, actor, target_type, day or hour.")
    ] = "action",
    action: Actions = None,
    action_prefix: Prefix = None,
    actor: ActorOpt = None,
    target_type: TargetType = None,
    target_id: TargetId = None,
    kind: Kind = None,
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
    server: Server = DEFAULT_SERVER,
    key: ApiKey = None,
    data_dir: DataDir = None,
) -> None:
    """Count entries grouped by action, actor, target type, day or hour."""
    filters = _filters(
        action=action, action_prefix=action_prefix, actor=actor, target_type=target_type,
        target_id=target_id, kind=kind, since=since, until=until,
    )  # fmt: skip
    with _audit(server, app_id, key, data_dir) as audit:
        # The server names what it accepts: `--by` is passed on as given.
        groups = audit.stats(cast(GroupBy, by), **filters).groups
    if as_json:
        print_json_line([{"key": g.key, "count": g.count} for g in groups])
        return
    table = Table(Column(header=cell(by)), "count")
    for group in groups:
        table.add_row(cell(group.key), cell(group.count))
    out.print(table)
