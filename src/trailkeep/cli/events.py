"""``trailkeep events``: list, follow and count entries through a server's HTTP API."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from trailkeep.cli.common import AppOpt, AsJson, CliError, DataDir, out, settings_from

events_cli = typer.Typer(help="Read an app's log through the API.", no_args_is_help=True)

Server = Annotated[
    str, typer.Option("--server", envvar="TRAILKEEP_SERVER", help="The Trailkeep server.")
]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="TRAILKEEP_KEY", help="A key with events:read (or a session)."),
]
Actions = Annotated[list[str] | None, typer.Option("--action", help="Exact action (repeatable).")]
Prefix = Annotated[str | None, typer.Option("--action-prefix", help="Actions starting with.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Actor id.")]
TargetType = Annotated[str | None, typer.Option("--target-type")]
TargetId = Annotated[str | None, typer.Option("--target-id")]
Kind = Annotated[str | None, typer.Option("--kind", help="admin or user.")]
Since = Annotated[str | None, typer.Option("--since", help="RFC 3339, inclusive.")]
Until = Annotated[str | None, typer.Option("--until", help="RFC 3339, inclusive.")]

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _credential(key: str | None, app_id: str, data_dir: Any) -> str:
    if key:
        return key
    # `make run` keeps the demo app's credentials in the data directory: use them if they fit.
    path = settings_from(data_dir=data_dir).data_dir / "demo-credentials.json"
    if path.exists():
        demo = json.loads(path.read_text())
        if demo.get("app_id") == app_id:
            return str(demo["key"])
    raise CliError("give --key (or set TRAILKEEP_KEY): a key with events:read")


class _Api:
    def __init__(self, server: str, app_id: str, credential: str) -> None:
        self.client = httpx.Client(
            base_url=f"{server.rstrip('/')}/v1/apps/{app_id}",
            headers={"Authorization": f"Bearer {credential}"},
            timeout=60,
        )

    def get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self.client.get(path, params=params)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the server: {exc}") from None
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise CliError(f"{response.status_code}: {detail}")
        return response.json()

    def pages(self, params: dict[str, Any], follow: bool) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.get("/events", {**params, **({"cursor": cursor} if cursor else {})})
            yield from page["data"]
            cursor = page["next_cursor"]
            if not follow or cursor is None:
                return


def _filters(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value not in (None, [])}


def _table(entries: list[dict[str, Any]]) -> Table:
    table = Table("seq", "time", "kind", "action", "actor", "target", "ip")
    for e in entries:
        target = e.get("target") or {}
        table.add_row(
            str(e["seq"]), e["time"], e["kind"], e["action"],
            e["actor"].get("name") or e["actor"]["id"],
            f"{target['type']}:{target['id']}" if target else "", e["context"].get("ip") or "",
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
    key: Key = None,
    data_dir: DataDir = None,
) -> None:
    """List entries, newest first: a table, or NDJSON with --json."""
    api = _Api(server, app_id, _credential(key, app_id, data_dir))
    params = _filters(
        action=action, action_prefix=action_prefix, actor=actor, target_type=target_type,
        target_id=target_id, kind=kind, since=since, until=until, limit=limit,
    )  # fmt: skip
    entries = api.pages(params, follow_all)
    if as_json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return
    out.print(_table(list(entries)))


@events_cli.command("tail")
def tail(
    app_id: AppOpt,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many entries.")] = None,
    server: Server = DEFAULT_SERVER,
    key: Key = None,
    data_dir: DataDir = None,
) -> None:
    """Follow new entries as they arrive (NDJSON, oldest first)."""
    api = _Api(server, app_id, _credential(key, app_id, data_dir))
    latest = api.get("/events", {"limit": 1})["data"]
    seen = latest[0]["seq"] if latest else -1
    shown = 0
    while count is None or shown < count:
        fresh: list[dict[str, Any]] = []
        for entry in api.pages({"limit": 1000}, follow=True):
            if entry["seq"] <= seen:
                break
            fresh.append(entry)
        for entry in reversed(fresh):
            sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            seen, shown = entry["seq"], shown + 1
            if count is not None and shown >= count:
                return
        time.sleep(interval)


@events_cli.command("stats")
def stats(
    app_id: AppOpt,
    by: Annotated[str, typer.Option("--by", help="action, actor, target_type or day.")] = "action",
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
    key: Key = None,
    data_dir: DataDir = None,
) -> None:
    """Count entries grouped by action, actor, target type or day."""
    api = _Api(server, app_id, _credential(key, app_id, data_dir))
    params = _filters(
        group_by=by, action=action, action_prefix=action_prefix, actor=actor,
        target_type=target_type, target_id=target_id, kind=kind, since=since, until=until,
    )  # fmt: skip
    groups = api.get("/stats", params)["groups"]
    if as_json:
        sys.stdout.write(json.dumps(groups) + "\n")
        return
    table = Table(by, "count")
    for group in groups:
        table.add_row(str(group["key"]), str(group["count"]))
    out.print(table)
