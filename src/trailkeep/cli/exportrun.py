"""One run of ``trailkeep export``: the server's stream made into files, listed as they land.

The stream is read on a thread of its own (``readahead``) so that the server streams on while
rows are made; Parquet rows are cut from each block of entries (``exportcols``), here or on
other processes (``--jobs``); a file is encoded and written on another thread, and listed in
the manifest, in order, once it is on disk.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from trailkeep.cli.common import CliError
from trailkeep.cli.exportcols import arrow, block_table, table_of
from trailkeep.cli.exportfiles import (
    FileRecord,
    Manifest,
    data_name,
    parquet_bytes,
    render,
    sha256_hex,
    write_atomic,
)
from trailkeep.cli.readahead import ahead
from trailkeep.sdk import Client, SignedCheckpoint


class Run:
    """One export run into ``app_dir``: the manifest it grows and the checkpoint it works to.

    A file is encoded and written on a thread of its own while the next entries come in
    (Arrow and the file system let go of the GIL); it is listed in the manifest, in order, once
    it is on disk, so a run killed at any point leaves at worst an unlisted file.
    """

    def __init__(self, client: Client, app_dir: Path, manifest: Manifest, signed: SignedCheckpoint,
                 rows_per_file: int, writer: ThreadPoolExecutor) -> None:  # fmt: skip
        self.client, self.app_dir, self.manifest = client, app_dir, manifest
        self.signed, self.rows_per_file, self.writer = signed, rows_per_file, writer
        self.lines: list[bytes] = []
        self.tables: list[Any] = []  # the pending lines' Parquet rows, in parts (Parquet only)
        self.first = 0
        self.date = ""
        self.files = 0
        # The file on its way: its record to come, first seq, lines, and its stubs' seqs when
        # its Parquet rows told them (else the lines are searched).
        self.writing: tuple[Future[FileRecord], int, list[bytes], list[int] | None] | None = None

    def add(self, lines: list[bytes], first: int, date: str, table: Any) -> None:
        """Take the next entries (seqs ``first``…, all of ``date``), cutting a file at each new
        date and every ``rows_per_file``; ``table``: their Parquet rows, for Parquet."""
        start = 0
        while start < len(lines):
            if self.lines and (date != self.date or len(self.lines) >= self.rows_per_file):
                self.flush()
            stop = min(len(lines), start + self.rows_per_file - len(self.lines))
            if not self.lines:
                self.first, self.date = first + start, date
            self.lines += lines[start:stop]
            if table is not None:
                self.tables.append(table.slice(start, stop - start))
            start = stop

    def flush(self) -> None:
        """Start writing the pending file (after listing the one written before it)."""
        if not self.lines:
            return
        m = self.manifest
        last = self.first + len(self.lines) - 1
        relative = f"date={self.date}/{data_name(self.first, last, m.format)}"
        table = arrow().concat_tables(self.tables) if self.tables else None
        self.finish()
        task = self.writer.submit(write_file, self.app_dir, m.format, relative, self.first,
                                  self.lines, table)  # fmt: skip
        stubs = None
        if table is not None:
            found = arrow().compute.indices_nonzero(table.column("erased")).to_pylist()
            stubs = [self.first + offset for offset in found]
        self.writing = (task, self.first, self.lines, stubs)
        self.lines, self.tables = [], []

    def finish(self) -> None:
        """Wait for the file being written, then list it in the manifest."""
        if self.writing is None:
            return
        task, first, lines, stubs = self.writing
        self.writing = None
        m = self.manifest
        m.files.append(task.result())
        if stubs is None:
            m.add_stubs(first, lines)
        else:
            m.add_erased(stubs)
        m.next_seq, m.checkpoint = m.files[-1].last_seq + 1, self.signed.note
        m.tail_proof = (
            self.client.consistency_proof(m.next_seq, self.signed.size)
            if m.next_seq < self.signed.size
            else []
        )
        # Killed before this rename, the rerun finds the file unlisted and writes it again.
        write_atomic(self.app_dir / "_manifest.json", m.to_json())
        self.files += 1


def write_file(
    app_dir: Path, fmt: str, relative: str, first: int, lines: list[bytes], table: Any = None
) -> FileRecord:
    """Write one data file (atomically); the record that lists it."""
    last = first + len(lines) - 1
    if fmt == "parquet":
        data = parquet_bytes(table if table is not None else table_of(lines))
    else:
        data = render(fmt, lines)
    write_atomic(app_dir / relative, data)
    return FileRecord(relative, first, last, len(lines), sha256_hex(data))


def _columns(lines: list[bytes], block: bytes, fmt: str, table: Any) -> tuple[Any, Any, Any]:
    """The lines' seqs and times (Arrow arrays), and for Parquet their rows (else None).

    For Parquet the seqs and times come from the file's own columns (exportcols, cut from the
    bytes in C): no entry is parsed in Python, and each is looked at once. ``table``: those
    rows, when a worker process made them already.
    """
    pa = arrow()
    if fmt == "parquet":
        table = table if table is not None else table_of(lines, block)
        return table.column("seq").combine_chunks(), table.column("time").combine_chunks(), table
    try:
        docs = [orjson.loads(line) for line in lines]
        seqs = pa.array([d["seq"] for d in docs], pa.int64())
        times = pa.array([d.get("time") for d in docs], pa.string())
        return seqs, times.cast(pa.timestamp("us", tz="UTC")), None
    except (orjson.JSONDecodeError, KeyError, TypeError, pa.ArrowException) as exc:
        raise CliError(f"the server's export holds a line that is not an entry ({exc})") from None


#: Below this many entries to export, the Parquet rows are made in this process: starting a
#: process per core (Python and Arrow imported again in each) would cost more than it saves.
PARALLEL_ROWS: Final = 200_000


def tables(blocks: Iterator[bytes], jobs: int) -> Iterator[tuple[bytes, Any]]:
    """Each block, with its Parquet rows made on one of ``jobs`` processes (None: not made).

    Cutting the columns is most of the export's work, and blocks are independent: each goes to
    a process, and they come back in order. At most two per process wait, so memory stays
    bounded however far ahead the server is.
    """
    if jobs <= 1:
        yield from ((block, None) for block in blocks)
        return
    window: deque[tuple[bytes, Future[Any]]] = deque()
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        for block in blocks:
            window.append((block, pool.submit(block_table, block)))
            if len(window) >= 2 * jobs:
                done, task = window.popleft()
                yield done, task.result()
        while window:
            done, task = window.popleft()
            yield done, task.result()
    finally:
        pool.shutdown(cancel_futures=True)


def jobs_for(jobs: int | None, fmt: str, total: int) -> int:
    """How many processes make Parquet rows: ``--jobs``, else one per core but one.

    This process keeps a core busy reading the stream and writing the files. On two cores the
    default is then none: measured, the processes' hand-offs cost more than they gave
    (bench/report_notes.md).
    """
    if fmt != "parquet":
        return 1
    if jobs is not None:
        return jobs
    return max(1, (os.cpu_count() or 1) - 1) if total >= PARALLEL_ROWS else 1


def _first(mask: Any) -> int | None:
    """The index of the first true value of a boolean array, or None."""
    found = arrow().compute.indices_nonzero(mask)
    return None if not len(found) else int(found[0].as_py())


def pull(run: Run, until: datetime | None, advance: Any, jobs: int) -> int:
    """Stream the entries after the manifest's last one, up to the checkpoint; return how many."""
    pa = arrow()
    pc = pa.compute
    m, size = run.manifest, run.signed.size
    expected, count = m.next_seq, 0
    stop_time = None if until is None else pa.scalar(until, pa.timestamp("us", tz="UTC"))
    blocks = run.client.audit.export_blocks(after_seq=expected - 1 if expected else None)
    for block, made in tables(ahead(blocks), jobs):
        lines = block.split(b"\n")[:-1]  # a block is whole lines, each ending in a newline
        seqs, times, table = _columns(lines, block, m.format, made)
        # The server skips to after_seq where it supports it; an older one sends every entry,
        # and those before the resume point are dropped here.
        low = _first(pc.greater_equal(seqs, expected))
        if low is None:
            continue
        seqs, times = seqs.slice(low), times.slice(low)
        past = pc.greater_equal(seqs, size)
        if stop_time is not None:
            past = pc.or_(past, pc.fill_null(pc.greater(times, stop_time), False))
        high = _first(past)
        done = high is not None
        high = len(seqs) if high is None else high
        seqs, times = seqs.slice(0, high), times.slice(0, high)
        # Past the resume point the stream must run on without a gap or a step back.
        wrong = _first(pc.not_equal(seqs, pa.array(range(expected, expected + high), pa.int64())))
        if wrong is not None:
            seq = seqs[wrong].as_py()
            went = "skipped" if seq > expected + wrong else "went back"
            raise CliError(f"the server's export {went} from seq {expected + wrong} to {seq}")
        if times.null_count:
            at = expected + _first(pc.is_null(times))  # type: ignore[operator]
            raise CliError(f"the server's export has no time for seq {at}: no date partition")
        # A day as a date (a cast) rather than as text (formatting costs ~2 µs an entry).
        days = pc.run_end_encode(times.cast(pa.date32()))
        start = 0
        dates = [day.isoformat() for day in days.values.to_pylist()]
        for end, date in zip(days.run_ends.to_pylist(), dates, strict=True):
            part = None if table is None else table.slice(low + start, end - start)
            run.add(lines[low + start : low + end], expected + start, date, part)
            start = end
        expected += high
        count += high
        advance(high)
        if done:
            break
    run.flush()
    run.finish()
    return count
