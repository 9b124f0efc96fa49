"""``trailkeep verify --export DIR``: a whole export folder, offline, through the one core.

The manifest is only a table of contents (anyone can edit it); what binds is the signed
checkpoint in it. The files must be the ones it lists (SHA-256, rows) and follow each other
without a gap. Each file is a span for the verification core (``check_span``: every entry
against its leaf hash, the subtrees that cover it), checked on a process per core; the spans
then fold into the tree head the checkpoint signs (``fold``). A Parquet file's typed columns
must say what its entries say: each row's columns rebuild its entry byte for byte (in Arrow's
C++, exportcols), and the rows that do not, or whose entry the core did not prove by its exact
bytes, are compared with the entry's parse.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trailkeep.cli.common import CliError
from trailkeep.cli.exportcols import arrow, mismatches, python_rows, schema
from trailkeep.cli.exportfiles import (
    DATA_NAME,
    MANIFEST,
    VERIFIABLE,
    FileRecord,
    Manifest,
    read_manifest,
    sha256_hex,
)
from trailkeep.log.notes import NoteVerifier
from trailkeep.log.verify import (
    Ledger,
    Reason,
    Report,
    Span,
    VerifyError,
    app_of,
    check_span,
    fold,
    open_signed,
)

_TIME_KEY: Final = b',"time":"'
_DATE: Final = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
#: Below this many entries the files are checked in this process: starting a process per core
#: (Python and Arrow imported again in each) would cost more than it saves.
PARALLEL_ROWS: Final = 300_000


def app_folders(root: Path) -> list[Path]:
    """The app folders of an export: ``root`` itself, or its ``app=*`` folders."""
    if (root / MANIFEST).exists():
        return [root]
    found = sorted(p for p in root.glob("app=*") if (p / MANIFEST).exists())
    if not found:
        raise CliError(f"--export: no {MANIFEST} in {root} or its app=* folders")
    return found


@dataclass(frozen=True, slots=True)
class FileCheck:
    """A data file's outcome: its span, or the first problem in it (message, seq, reason)."""

    span: Span | None
    error: tuple[str, int | None, Reason] | None = None


def check_file(
    app_dir: Path, fmt: str, app_id: str, record: FileRecord, cuts: tuple[int, ...]
) -> FileCheck:
    """Check one data file: its entries (a span of the core), its columns, its bytes."""
    try:
        return FileCheck(_check_file(app_dir, fmt, app_id, record, cuts))
    except VerifyError as exc:
        return FileCheck(None, (f"{record.path}: {exc.detail}", exc.seq, exc.reason))


def _check_file(
    app_dir: Path, fmt: str, app_id: str, record: FileRecord, cuts: tuple[int, ...]
) -> Span:
    path = app_dir / record.path
    if not path.is_file():
        raise VerifyError(f"the file is missing (entries {record.first_seq}..{record.last_seq})",
                          record.first_seq, "missing")  # fmt: skip
    data = path.read_bytes()
    date = record.path.split("/", 1)[0].removeprefix("date=")
    if fmt == "ndjson":
        lines = [line for line in data.split(b"\n") if line]
        _check_dates(lines, date, record.first_seq)
        span = check_span(lines, record.first_seq, app_id=app_id, cuts=cuts)
    else:
        table, lines = _parquet(data, record.first_seq)
        # Columns first: a changed entry is named by the column that no longer says what it says.
        bad = set(mismatches(table, app_id))
        _compare(table, lines, sorted(bad), record.first_seq)
        _check_seqs(table, record.first_seq)
        # The rows rebuilt exactly hold their seq (just checked) and the app's id (rebuilt in).
        placed = _Placed(len(lines), bad)
        span = check_span(lines, record.first_seq, app_id=app_id, cuts=cuts, placed=placed)
        _compare(table, lines, sorted(set(span.parsed) - bad), record.first_seq)
        _check_column_dates(table, date, record.first_seq)
    # The entries verified: now the bytes must be the ones the manifest lists.
    if len(lines) != record.rows:
        raise VerifyError(f"holds {len(lines)} rows, the manifest says {record.rows}",
                          record.first_seq, "missing")  # fmt: skip
    if sha256_hex(data) != record.sha256:
        raise VerifyError("its SHA-256 differs from the manifest's", record.first_seq)
    return span


class _Placed:
    """Offsets ``0..count-1`` but those in ``bad``, without a set of every one."""

    def __init__(self, count: int, bad: set[int]) -> None:
        self.count, self.bad = count, bad

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and 0 <= offset < self.count and offset not in self.bad


def _check_seqs(table: Any, first: int) -> None:
    """The seq column must run first, first + 1, … (each row's entry says the same)."""
    pa = arrow()
    seq = table.column("seq")
    expected = pa.array(range(first, first + table.num_rows), pa.int64())
    wrong = pa.compute.indices_nonzero(
        pa.compute.fill_null(pa.compute.not_equal(seq, expected), True)
    )
    if len(wrong):
        at = first + wrong[0].as_py()
        found = seq[wrong[0].as_py()].as_py()
        raise VerifyError(f"out of order: found seq {found!r} where {at} belongs", at)


def _check_dates(lines: Sequence[bytes], date: str, first: int) -> None:
    # Date-filtered queries read only their partitions: a row must be in its own.
    want = date.encode()
    for seq, line in enumerate(lines, first):
        at = line.rfind(_TIME_KEY) + len(_TIME_KEY)
        if line[at : at + 10] != want:
            raise VerifyError("the entry's time is not in its file's date partition", seq)


def _check_column_dates(table: Any, date: str, first: int) -> None:
    pa = arrow()
    pc = pa.compute
    days = table.column("time").cast(pa.date32())
    wrong = pc.indices_nonzero(
        pc.fill_null(pc.not_equal(days, pa.scalar(date).cast(pa.date32())), True)
    )
    if len(wrong):
        raise VerifyError(
            "the entry's time is not in its file's date partition", first + wrong[0].as_py()
        )


def _parquet(data: bytes, first: int) -> tuple[Any, list[bytes]]:
    """The file's table and its entries' bytes."""
    pa = arrow()
    try:
        # The file reader, not read_table's dataset scanner: the scanner's threads, torn
        # down at exit, once aborted the process after it had printed its verdict.
        table = pa.parquet.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise VerifyError(f"not a readable Parquet file ({exc})", first, "malformed") from None
    if "entry" not in table.column_names:
        raise VerifyError("no `entry` column", first, "malformed")
    if not table.schema.equals(schema()) or table.column("entry").null_count:
        raise VerifyError("the Parquet schema is not the export's", first, "malformed")
    # As bytes straight from Arrow: no str made and encoded again per entry.
    lines: list[bytes] = table.column("entry").cast(pa.binary()).to_pylist()
    return table, lines


def _compare(table: Any, lines: Sequence[bytes], rows: Sequence[int], first: int) -> None:
    """The rows' columns against their entries' parse; the first difference names its column."""
    if not rows:
        return
    got = table.take(rows).to_pylist()
    try:
        want = python_rows([lines[i] for i in rows])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise VerifyError(
            "the `entry` column is not an entry", first + rows[0], "malformed"
        ) from None
    for index, row, expected in zip(rows, got, want, strict=True):
        for name, value in expected.items():
            if row.get(name) != value:
                raise VerifyError(
                    f"the Parquet column {name} holds {row.get(name)!r}, but the entry "
                    f"says {value!r}", first + index, "index")  # fmt: skip


def _check_layout(app_dir: Path, m: Manifest) -> None:
    """The files must follow each other from first_seq to next_seq, and be all there is."""
    expected = m.first_seq
    for record in m.files:
        date, _, name = record.path.partition("/")
        named = DATA_NAME.match(name)
        if not (_DATE.match(date) and named and named.group(3) == m.format
                and (int(named.group(1)), int(named.group(2)))
                == (record.first_seq, record.last_seq)):  # fmt: skip
            raise VerifyError(f"{MANIFEST}: {record.path!r} is not the name of a {m.format} file "
                              f"of entries {record.first_seq}..{record.last_seq}", record.first_seq,
                              "malformed")  # fmt: skip
        if record.first_seq != expected or record.last_seq < record.first_seq:
            raise VerifyError(
                f"{MANIFEST}: {record.path} holds entries {record.first_seq}..{record.last_seq}, "
                f"but the previous file ends at {expected - 1}", expected, "missing")  # fmt: skip
        expected = record.last_seq + 1
    if expected != m.next_seq:
        raise VerifyError(f"{MANIFEST}: the files end at {expected - 1}, but next_seq is "
                          f"{m.next_seq}", expected, "missing")  # fmt: skip
    listed = {record.path for record in m.files}
    for path in sorted(app_dir.glob("date=*/*")):
        relative = path.relative_to(app_dir).as_posix()
        if DATA_NAME.match(path.name) and relative not in listed:
            raise VerifyError(f"{relative} is not in {MANIFEST}: a reader would count its rows "
                              "twice or read rows that nothing vouches for")  # fmt: skip


def verify_app_folder(
    app_dir: Path,
    verifier: NoteVerifier,
    progress: Callable[[int], None] | None = None,
    jobs: int | None = None,
) -> Report:
    """Verify one ``app=<app>`` folder; VerifyError names the first bad file and seq.

    ``jobs``: processes checking files (default: one per core for a large folder, else none).
    """
    m = read_manifest(app_dir)
    assert m is not None
    if m.format not in VERIFIABLE:
        raise CliError(
            f"--export: {app_dir.name} is a {m.format.upper()} export, which cannot be "
            "verified: CSV (for spreadsheets) and OCSF (for SIEMs) are renderings, so the bytes "
            "each leaf hash covers are lost; export with --format parquet or ndjson"
        )
    signed = open_signed(m.checkpoint, verifier, f"{MANIFEST}'s checkpoint")
    if app_of(signed) != m.app_id:
        raise VerifyError(f"{MANIFEST}'s checkpoint is of {app_of(signed)}, not {m.app_id}",
                          reason="origin")  # fmt: skip
    _check_layout(app_dir, m)
    try:
        left = [bytes.fromhex(h) for h in m.left]
        proof = [bytes.fromhex(h) for h in m.tail_proof]
    except ValueError:
        raise VerifyError(
            f"{MANIFEST}: left or tail_proof is not hex", reason="malformed"
        ) from None
    spans = []
    ledger = Ledger()
    for result in _check_files(app_dir, m, (signed.size,), progress, jobs):
        if result.error is not None:
            raise VerifyError(*result.error)
        assert result.span is not None
        spans.append(result.span)
        ledger.merge(result.span.ledger)
    try:
        report = fold(spans, signed, first=m.first_seq, left=left,
                      tail_proof=proof if m.next_seq < signed.size else None)  # fmt: skip
    except VerifyError as exc:
        raise VerifyError(f"{MANIFEST}: {exc.detail}", exc.seq, exc.reason) from None
    if ledger.stubs != m.erased:
        raise VerifyError(f"{MANIFEST}: its erased seqs are not the stubs the files hold",
                          reason="malformed")  # fmt: skip
    return report


def _check_files(
    app_dir: Path,
    m: Manifest,
    cuts: tuple[int, ...],
    progress: Callable[[int], None] | None,
    jobs: int | None,
) -> list[FileCheck]:
    """Every file's check, in the manifest's order, up to the first that fails.

    With ``jobs`` above one, this process checks files too, beside ``jobs - 1`` others: it is
    ready at once, while each other process first starts Python and imports Arrow. Each takes
    the next file not yet taken, so a slow start costs only what it delays.
    """
    if jobs is None:
        jobs = os.cpu_count() or 1 if m.next_seq - m.first_seq >= PARALLEL_ROWS else 1
    jobs = max(1, min(jobs, len(m.files)))

    def check(index: int) -> FileCheck:
        return check_file(app_dir, m.format, m.app_id, m.files[index], cuts)

    if jobs == 1:
        results: list[FileCheck] = []
        for index, record in enumerate(m.files):
            results.append(check(index))
            if progress is not None:
                progress(record.rows)
            if results[-1].error is not None:
                break
        return results
    taken = iter(range(len(m.files)))
    lock = threading.Lock()
    failed = threading.Event()
    futures: dict[int, Future[FileCheck]] = {}
    own: dict[int, FileCheck] = {}

    def take() -> int | None:
        with lock:
            return None if failed.is_set() else next(taken, None)

    # spawn, not fork: this process holds Rich's refresh thread.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs - 1, mp_context=context) as pool:

        def feed(_: object = None) -> None:
            index = take()
            if index is not None:
                future = pool.submit(check_file, app_dir, m.format, m.app_id, m.files[index], cuts)
                futures[index] = future
                future.add_done_callback(feed)

        for _ in range(jobs - 1):
            feed()
        while (mine := take()) is not None:
            own[mine] = check(mine)
            if own[mine].error is not None:
                failed.set()
        results = []
        for index, record in enumerate(m.files):
            if index in own:
                result = own[index]
            elif index in futures:
                result = futures[index].result()
            else:
                break  # never taken: an earlier file failed
            results.append(result)
            if progress is not None:
                progress(record.rows)
            if result.error is not None:
                failed.set()
                break
    return results
