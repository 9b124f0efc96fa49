"""``trailkeep verify --export DIR``: a whole export folder, offline, through the one core.

The manifest is only a table of contents (anyone can edit it); what binds is the signed
checkpoint in it. The files must be the ones it lists (SHA-256, rows) and follow each other
without a gap; their entries go through :func:`trailkeep.log.verify.verify_entries`, which
rechecks every leaf and folds the tree up to the checkpoint's root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import orjson

from trailkeep.cli.common import CliError
from trailkeep.cli.exportcols import arrow, table_of
from trailkeep.cli.exportfiles import (
    DATA_NAME,
    MANIFEST,
    VERIFIABLE,
    FileRecord,
    Manifest,
    read_manifest,
    sha256_hex,
)
from trailkeep.log import seqs
from trailkeep.log.notes import NoteVerifier
from trailkeep.log.verify import Report, VerifyError, app_of, open_signed, verify_entries

_TIME_KEY: Final = b',"time":"'
_STUB: Final = b'{"erased":true'
_DATE: Final = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")


def app_folders(root: Path) -> list[Path]:
    """The app folders of an export: ``root`` itself, or its ``app=*`` folders."""
    if (root / MANIFEST).exists():
        return [root]
    found = sorted(p for p in root.glob("app=*") if (p / MANIFEST).exists())
    if not found:
        raise CliError(f"--export: no {MANIFEST} in {root} or its app=* folders")
    return found


class _Files:
    """The manifest's files in order, their entries yielded one by one, each file checked."""

    def __init__(self, app_dir: Path, manifest: Manifest) -> None:
        self.app_dir, self.manifest = app_dir, manifest
        self.current: FileRecord | None = None
        self.stubs: list[int] = []

    def entries(self) -> Iterator[bytes]:
        """Every entry of every file, in seq order; file-level problems as VerifyError."""
        for record in self.manifest.files:
            self.current = record
            path = self.app_dir / record.path
            if not path.is_file():
                raise VerifyError(f"the file is missing (entries {record.first_seq}.."
                                  f"{record.last_seq})", record.first_seq, "missing")  # fmt: skip
            data = path.read_bytes()
            lines = self._read(record, data)
            date = record.path.split("/", 1)[0].removeprefix("date=").encode()
            for seq, line in enumerate(lines, record.first_seq):
                # Date-filtered queries read only their partitions: a row must be in its own.
                at = line.rfind(_TIME_KEY) + len(_TIME_KEY)
                if line[at : at + 10] != date:
                    raise VerifyError("the entry's time is not in its file's date partition", seq)
                if line.startswith(_STUB):
                    self.stubs.append(seq)
                yield line
            # The entries verified: now the bytes must be the ones the manifest lists.
            if len(lines) != record.rows:
                raise VerifyError(f"holds {len(lines)} rows, the manifest says {record.rows}",
                                  record.first_seq, "missing")  # fmt: skip
            if sha256_hex(data) != record.sha256:
                raise VerifyError("its SHA-256 differs from the manifest's", record.first_seq)
        self.current = None

    def _read(self, record: FileRecord, data: bytes) -> list[bytes]:
        if self.manifest.format == "ndjson":
            return [line for line in data.split(b"\n") if line]
        pa = arrow()
        try:
            # The file reader, not read_table's dataset scanner: the scanner's threads, torn
            # down at exit, once aborted the process after it had printed its verdict.
            table = pa.parquet.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise VerifyError(f"not a readable Parquet file ({exc})", record.first_seq,
                              "malformed") from None  # fmt: skip
        if "entry" not in table.column_names:
            raise VerifyError("no `entry` column", record.first_seq, "malformed")
        entries = table.column("entry")
        # As bytes straight from Arrow: no str made and encoded again per entry.
        lines: list[bytes] = (
            entries.cast(pa.binary()).to_pylist()
            if entries.type == pa.string() and not entries.null_count
            else [str(v).encode() for v in entries.to_pylist()]
        )
        # The typed columns are what warehouses query: each must say what the entry says.
        try:
            expected = table_of(lines)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            expected = None
        if expected is None or not table.equals(expected):
            _first_difference(table, expected, lines)
        return lines


def _first_difference(table: object, expected: object, lines: list[bytes]) -> None:
    # Only on failure: compare row by row to name the first bad seq and column.
    got = table.to_pylist()  # type: ignore[attr-defined]
    want = expected.to_pylist() if expected is not None else []  # type: ignore[attr-defined]
    for index, row in enumerate(got):
        seq = row.get("seq")
        if index >= len(want):
            raise VerifyError("the `entry` column is not an entry", seq, "malformed")
        for name, value in want[index].items():
            if row.get(name) != value:
                raise VerifyError(
                    f"the Parquet column {name} holds {row.get(name)!r}, but the entry "
                    f"says {value!r}", seq, "index")  # fmt: skip
    raise VerifyError("the Parquet schema is not the export's", want[0]["seq"] if want else None,
                      "malformed")  # fmt: skip


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
    app_dir: Path, verifier: NoteVerifier, progress: Callable[[int], None] | None = None
) -> Report:
    """Verify one ``app=<app>`` folder; VerifyError names the first bad file and seq."""
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
    files = _Files(app_dir, m)
    try:
        left = [bytes.fromhex(h) for h in m.left]
        proof = [bytes.fromhex(h) for h in m.tail_proof]
    except ValueError:
        raise VerifyError(
            f"{MANIFEST}: left or tail_proof is not hex", reason="malformed"
        ) from None
    try:
        report = verify_entries(
            files.entries(), signed, app_id=m.app_id, progress=progress, first=m.first_seq,
            left=left, tail_proof=proof if m.next_seq < signed.size else None,
        )  # fmt: skip
    except VerifyError as exc:
        where = files.current.path if files.current is not None else MANIFEST
        raise VerifyError(f"{where}: {exc.detail}", exc.seq, exc.reason) from None
    erased = seqs.runs(files.stubs)
    if erased != m.erased:
        raise VerifyError(f"{MANIFEST}: its erased seqs are not the stubs the files hold",
                          reason="malformed")  # fmt: skip
    return report
