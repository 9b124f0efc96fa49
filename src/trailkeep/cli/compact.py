"""``trailkeep compact``: on PostgreSQL, make erased content gone from the database's files."""

from __future__ import annotations

from typing import Annotated

import typer

from trailkeep.cli.common import AsJson, CliError, DatabaseUrl, DataDir, open_store, out, print_json


def compact(
    app_id: Annotated[
        str | None,
        typer.Option("--app", help="Only the partitions holding this app's erased entries."),
    ] = None,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            min=0.001,
            help="Seconds to wait for each table's lock before skipping it (exit status 1).",
        ),
    ] = 5.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the tables that would be rewritten.")
    ] = False,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Rewrite the tables erased entries were deleted from (PostgreSQL, as the schema owner)."""
    from trailkeep.server.store.compact import Compacted, CompactError, tables_to_compact
    from trailkeep.server.store.compact import compact as rewrite

    store = open_store(data_dir, database_url)
    try:
        if store.dialect != "postgresql":
            # The transactions that erase already overwrite it (secure_delete), then
            # checkpoint the WAL: there is nothing left to rewrite.
            out.print("SQLite overwrites erased content as it erases it: nothing to compact")
            return
        if app_id is not None and store.get_app(app_id) is None:
            raise CliError(f"no app {app_id!r}")
        try:
            tables = tables_to_compact(store.writer_engine, app_id)
            done: list[Compacted] = (
                [] if dry_run else rewrite(store.writer_engine, tables, lock_timeout)
            )
        except CompactError as exc:
            raise CliError(str(exc)) from None
    finally:
        store.close()
    if as_json:
        print_json(
            [{"table": t, "dry_run": True} for t in tables]
            if dry_run
            else [
                {"table": d.table, "skipped": d.skipped, "bytes_before": d.bytes_before,
                 "bytes_after": d.bytes_after, "seconds": round(d.seconds, 3)}
                for d in done
            ]
        )  # fmt: skip
    elif not tables:
        out.print("no erased entries: nothing to compact")
    elif dry_run:
        for table in tables:
            out.print(f"would rewrite {table}", highlight=False)
    for d in done if not as_json else []:
        if d.skipped:
            out.print(f"{d.table}: skipped, its lock was not granted in time", highlight=False)
        else:
            out.print(
                f"{d.table}: rewritten in {d.seconds:.2f} s, {d.bytes_before:,} -> "
                f"{d.bytes_after:,} bytes",
                highlight=False,
            )
    skipped = [d.table for d in done if d.skipped]
    if skipped:
        raise CliError(f"not rewritten (locked by others): {', '.join(skipped)}; run it again")
