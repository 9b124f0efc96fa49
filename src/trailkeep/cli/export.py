"""``trailkeep export``: an app's log into a Hive-partitioned folder that warehouses read.

Entries come from ``GET /v1/apps/{app}/export`` through the SDK's client, up to the signed
checkpoint fetched at the start, so that every file is covered by the manifest's checkpoint.
After each file the manifest is rewritten (atomically): a rerun resumes after its last seq, and
drops what a killed run left beyond it, so no rerun duplicates or skips an entry.

Erasure travels downstream (DESIGN §5): each run first asks the server which of the entries it
already exported were erased since the last run asked, and rewrites the files holding them with
their stubs, so that the copy in a warehouse forgets what the log forgot.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from trailkeep.cli.common import ApiKey, AppOpt, CliError, out
from trailkeep.cli.events import DEFAULT_SERVER, RETRY, Server
from trailkeep.cli.exportfiles import (
    FORMATS,
    MANIFEST,
    Manifest,
    read_manifest,
    strays,
    write_atomic,
)
from trailkeep.cli.exportrun import Run, jobs_for, pull, write_file
from trailkeep.log import merkle, seqs
from trailkeep.sdk import Client, ConnectionFailed, TrailkeepError

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="parquet, ndjson, csv or ocsf (CSV and OCSF cannot be verified)."
    ),
]


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "", style="progress.data.speed")


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Any]:
    with Progress(
        TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), _Rate(),
        TimeRemainingColumn(), console=out, transient=True,
        disable=quiet or not out.is_terminal,
    ) as bar:  # fmt: skip
        task = bar.add_task("rows", total=total)
        yield lambda n: bar.advance(task, n)


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"{name}: not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise CliError(f"{name}: give the time with its offset (Z or ±hh:mm)")
    return parsed


def _erase_downstream(client: Client, app_dir: Path, m: Manifest) -> tuple[int, int]:
    """Rewrite the files holding entries erased since the last run asked; (entries, files).

    The manifest is rewritten after each file, and its ``erased_size`` moves only at the end:
    killed midway, the rerun asks the same question again and finishes the job.
    """
    found = client.audit.erased(since_size=m.erased_size or 0, below_seq=m.next_seq)
    held = [[max(a, m.first_seq), b] for a, b in found.seq_ranges if b >= m.first_seq]
    news = seqs.difference(held, m.erased)
    touched = [i for i, f in enumerate(m.files) if seqs.overlaps(news, f.first_seq, f.last_seq)]
    for i in touched:
        old = m.files[i]
        lines: list[bytes] = []
        after = old.first_seq - 1 if old.first_seq else None
        for line in client.audit.export_lines(after_seq=after):
            seq = orjson.loads(line)["seq"]
            if seq > old.last_seq:
                break
            if seq != old.first_seq + len(lines):
                raise CliError(f"the server's export skipped seq {old.first_seq + len(lines)}")
            lines.append(line)
        if len(lines) != old.last_seq - old.first_seq + 1:
            raise CliError(f"the server's export ended before seq {old.last_seq}")
        m.files[i] = write_file(app_dir, m.format, old.path, old.first_seq, lines)
        m.add_stubs(old.first_seq, lines)
        write_atomic(app_dir / MANIFEST, m.to_json())
    if news:
        m.rewrites.append({
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "seq_ranges": news, "files": [m.files[i].path for i in touched],
        })  # fmt: skip
    m.erased_size = found.size
    write_atomic(app_dir / MANIFEST, m.to_json())
    return seqs.count(news), len(touched)


def _first_seq(client: Client, since: str | None, size: int) -> int | None:
    """The seq the export starts at: 0, or the first entry at or after ``since``."""
    if since is None:
        return 0
    for line in client.audit.export_lines(since=since):
        seq: int = orjson.loads(line)["seq"]
        return seq if seq < size else None
    return None


def _start(client: Client, app_id: str, fmt: str, since: str | None, size: int) -> Manifest | None:
    first = _first_seq(client, since, size)
    if first is None:
        return None
    left = []
    if first:
        path = [bytes.fromhex(h) for h in client.inclusion_proof(first, size)]
        left = [h.hex() for h in merkle.left_subtrees(first, size, path)]
    # Anything erased from here on was erased at this size or later: asked from it next time.
    return Manifest(app_id=app_id, format=fmt, first_seq=first, next_seq=first, checkpoint="",
                    left=left, erased_size=size)  # fmt: skip


def export(
    app_id: AppOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="The export folder.", file_okay=False)],
    fmt: FormatOpt = "parquet",
    since: Annotated[
        str | None, typer.Option("--since", help="Start at this time (RFC 3339; first run only).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Stop after this time (RFC 3339).")
    ] = None,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    rows_per_file: Annotated[
        int, typer.Option("--rows-per-file", min=1, help="Rows per file at most.")
    ] = 100_000,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", min=1, help="Processes making Parquet rows (default: one per core but one)."
        ),
    ] = None,
) -> None:
    """Export an app's log to a folder of Parquet, NDJSON, CSV or OCSF files (resumable)."""
    if fmt not in FORMATS:
        raise CliError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
    if not api_key:
        raise CliError("give --api-key (or set TRAILKEEP_KEY): a key with events:read")
    _time(since, "--since")
    until_at = _time(until, "--until")
    app_dir = out_dir / f"app={app_id}"
    manifest = read_manifest(app_dir)
    if manifest is not None and (manifest.app_id, manifest.format) != (app_id, fmt):
        raise CliError(
            f"{app_dir} holds a {manifest.format} export of {manifest.app_id}: export to "
            "another folder, or give the same --format"
        )
    for path in strays(app_dir, manifest):
        path.unlink()  # left by a killed run: rewritten from the stream below
    try:
        with Client(server, app_id, api_key, timeout=60, retry=RETRY) as client:
            signed = client.checkpoint()
            erased = files = 0
            if manifest is None:
                manifest = _start(client, app_id, fmt, since, signed.size)
            else:
                erased, files = _erase_downstream(client, app_dir, manifest)
            if manifest is None:
                if not quiet:
                    out.print("nothing to export yet (no entry in a signed checkpoint)")
                return
            total = max(signed.size - manifest.next_seq, 0)
            with (
                ThreadPoolExecutor(1, "export-writer") as writer,
                _progress(total, quiet) as advance,
            ):
                run = Run(client, app_dir, manifest, signed, rows_per_file, writer)
                count = pull(run, until_at, advance, jobs_for(jobs, fmt, total))
    except ConnectionFailed as exc:
        raise CliError(f"cannot reach the server: {exc.detail}") from None
    except TrailkeepError as exc:
        raise CliError(
            exc.detail if exc.status is None else f"{exc.status}: {exc.detail}"
        ) from None
    if not quiet and erased:
        out.print(
            f"rewrote {files} files holding {erased} entries erased since the last run",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    if not quiet:
        out.print(
            f"exported {count} entries in {run.files} files to {app_dir} (entries "
            f"{manifest.first_seq}..{manifest.next_seq - 1}, checkpoint size {signed.size})",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
