"""``trailkeep purge``: retention now, by the operator, logged in each app's log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from trailkeep.cli.common import (
    AsJson,
    CliError,
    DatabaseUrl,
    DataDir,
    Operator,
    administer,
    open_store,
    out,
    print_json,
)

if TYPE_CHECKING:
    from trailkeep.server.governance.retention import PurgeReport


def purge(
    app_id: Annotated[
        str | None,
        typer.Option("--app", help="Only this app (every app with a retention if left out)."),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Erase the content of entries older than this RFC 3339 time, whatever the "
            "app's retention (needs --app).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say how many entries would lose their content.")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase the content of entries past their retention; each chunk is logged as yours."""
    from trailkeep.log.record import parse_time
    from trailkeep.server.governance.retention import cutoff_of

    if before is not None and app_id is None:
        raise CliError("--before erases by date whatever the retention: give --app as well")
    cutoff: datetime | None = None
    if before is not None:
        try:
            cutoff = parse_time(before)
        except ValueError as exc:
            raise CliError(f"--before: {exc}") from None
    now = datetime.now(UTC)
    store = open_store(data_dir, database_url)
    targets = [app_id] if app_id is not None else [app.id for app in store.list_apps()]
    reports: list[PurgeReport] = []
    for target in targets:
        if store.get_app(target) is None:
            raise CliError(f"no app {target!r}")

        def job(op: Operator, target: str = target) -> PurgeReport | None:
            if not dry_run:
                # A shorter retention approved over the API whose notice period is over
                # applies first, as the scheduler in `serve` would apply it.
                op.admin.apply_due(now, op.actor, op.origin, target)
            days = op.admin.settings(target)["retention_days"]
            moment = cutoff or cutoff_of(days, now)
            if moment is None:
                if app_id is None:
                    return None  # kept forever: nothing to purge
                raise CliError(f"{target} keeps its entries forever: give --before TIME to trim it")
            report: PurgeReport = op.retention.purge(
                target, moment, op.actor, op.origin, dry_run=dry_run
            )
            return report

        done = administer(data_dir, database_url, target, job)
        if done is not None:
            reports.append(done)
    if as_json:
        print_json([
            {"app_id": r.app_id, "cutoff": r.cutoff.isoformat(), "erased": r.erased,
             "chunks": r.chunks, "dry_run": dry_run}
            for r in reports
        ])  # fmt: skip
        return
    if not reports:
        out.print("no app keeps its entries for a limited time: nothing to purge")
    for r in reports:
        verb = "would erase" if dry_run else "erased"
        out.print(
            f"{r.app_id}: {verb} the content of {r.erased:,} entries older than "
            f"{r.cutoff.isoformat()}",
            highlight=False,
        )
