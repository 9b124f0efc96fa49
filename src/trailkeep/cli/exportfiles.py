"""The files of an export folder: the data files in each format, and ``_manifest.json``.

``DIR/app=<app>/date=YYYY-MM-DD/<first>-<last>.<ext>`` holds entries ``first..last`` (seqs,
zero-padded so that names sort); ``DIR/app=<app>/_manifest.json`` lists every file with its seq
range, row count and SHA-256, the erased seqs, and the signed checkpoint that covers them.
A file whose entries were erased after it was written is rewritten with their stubs by the next
run, which records the rewrite in the manifest (``rewrites``).
Every file, the manifest included, is written under a temporary name and renamed into place, so
a reader (or a rerun) never sees half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from trailkeep.cli.common import CliError
from trailkeep.cli.exportcols import arrow, table_of
from trailkeep.log import ocsf, seqs
from trailkeep.log.render import CSV_COLUMNS, csv_row

FileFormat = Literal["parquet", "ndjson", "csv", "ocsf"]
FORMATS: Final = ("parquet", "ndjson", "csv", "ocsf")
#: Formats that keep each entry's exact bytes, so that a folder of them verifies.
VERIFIABLE: Final = ("parquet", "ndjson")
MANIFEST: Final = "_manifest.json"
#: What the manifest says it is, so that a folder of another kind is refused, not misread.
KIND: Final = "trailkeep-export/1"
#: A data file's name: 20 digits hold any seq, so names sort as their seqs do.
DATA_NAME: Final = re.compile(r"^(\d{20})-(\d{20})\.(parquet|ndjson|csv|ocsf\.ndjson)$")
#: The file name extension of each format: OCSF events are NDJSON too.
EXTENSIONS: Final = {"parquet": "parquet", "ndjson": "ndjson", "csv": "csv", "ocsf": "ocsf.ndjson"}


def data_name(first: int, last: int, fmt: str) -> str:
    """The name of the file holding entries ``first..last``."""
    return f"{first:020d}-{last:020d}.{EXTENSIONS[fmt]}"


@dataclass(slots=True)
class FileRecord:
    """One data file as the manifest lists it (``path`` is relative to the app's folder)."""

    path: str
    first_seq: int
    last_seq: int
    rows: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    """``_manifest.json``: the files, the erased seqs and the checkpoint that covers them.

    ``left`` holds the hashes of the complete subtrees of entries ``0..first_seq-1`` (when the
    export does not start at 0), ``tail_proof`` the consistency proof from ``next_seq`` entries
    to the checkpoint's size (when the export stops short of it): with them it verifies.
    ``erased_size`` is the log size from which the next run asks what was erased since (None:
    from the start), and ``rewrites`` says which files later runs rewrote, and why.
    """

    app_id: str
    format: str
    first_seq: int
    next_seq: int
    checkpoint: str
    left: list[str] = field(default_factory=list)
    tail_proof: list[str] = field(default_factory=list)
    erased: list[list[int]] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    erased_size: int | None = None
    rewrites: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        """The manifest as it is written (indented: people read it)."""
        return orjson.dumps({"kind": KIND, **asdict(self)}, option=orjson.OPT_INDENT_2) + b"\n"

    def add_erased(self, found: Sequence[int]) -> None:
        """Note these seqs (in increasing order) as exported stubs."""
        if found:
            self.erased = seqs.union(self.erased, seqs.runs(found))

    def add_stubs(self, first_seq: int, lines: Sequence[bytes]) -> None:
        """Note the stubs among these exported entries (seqs ``first_seq``…) as erased seqs."""
        if b"\n" + STUB_PREFIX not in b"\n" + b"\n".join(lines):
            return  # one search of the joined lines, not one call per line
        stubs = seqs.runs(
            seq for seq, line in enumerate(lines, first_seq) if line.startswith(STUB_PREFIX)
        )
        if stubs:
            self.erased = seqs.union(self.erased, stubs)


def read_manifest(app_dir: Path) -> Manifest | None:
    """The folder's manifest, None when there is none; a clear error when it is not one."""
    path = app_dir / MANIFEST
    if not path.exists():
        return None
    try:
        data: Any = orjson.loads(path.read_bytes())
        if not isinstance(data, dict) or data.pop("kind", None) != KIND:
            raise ValueError(f"not a {KIND} manifest")
        files = [FileRecord(**f) for f in data.pop("files")]
        manifest = Manifest(**data, files=files)
        if manifest.format not in FORMATS:
            raise ValueError(f"unknown format {manifest.format!r}")
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise CliError(f"{path}: not a readable export manifest ({exc})") from None
    return manifest


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, synced, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    # The rename itself is durable only once the folder is synced.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def strays(app_dir: Path, manifest: Manifest | None) -> list[Path]:
    """Files a killed run left behind: temporaries, and data files the manifest does not list."""
    listed = {f.path for f in manifest.files} if manifest else set()
    found = []
    for path in sorted(app_dir.glob("date=*/*")):
        relative = path.relative_to(app_dir).as_posix()
        is_temp = path.name.startswith(".") and path.name.endswith(".tmp")
        if is_temp or (DATA_NAME.match(path.name) and relative not in listed):
            found.append(path)
    return found


# -- the formats ------------------------------------------------------------------------------

#: A stub's line as the server writes it (keys sorted): what verify --export counts as a stub.
STUB_PREFIX: Final = b'{"erased":true'
#: Columns worth a dictionary (few distinct values); the rest are nearly unique per row, where
#: trying one only costs the writer time (measured: bench/report_notes.md).
_DICTIONARY: Final = [
    "action", "kind", "actor_type", "actor_id", "actor_name", "actor_role", "target_type", "ip",
    "user_agent", "project", "server", "forwarded_by", "erased_by",
]  # fmt: skip


#: zstd for the columns warehouses read; LZ4 for ``entry``, which ``verify --export`` reads
#: whole: it decodes about three times faster, for about half as much again on disk
#: (bench/report_notes.md has the figures).
_COMPRESSION: Final = {"entry": "lz4"}


def parquet_bytes(table: Any) -> bytes:
    """A Parquet file of the table (the export's schema, exportcols.table_of)."""
    sink = io.BytesIO()
    codecs = {name: _COMPRESSION.get(name, "zstd") for name in table.column_names}
    arrow().parquet.write_table(table, sink, compression=codecs, use_dictionary=_DICTIONARY)
    return sink.getvalue()


def render(fmt: str, lines: Sequence[bytes]) -> bytes:
    """One data file's bytes in ``fmt``."""
    if fmt == "ndjson":
        return b"\n".join(lines) + b"\n"
    if fmt == "ocsf":
        # NDJSON of OCSF events, the mapping of the server's format=ocsf; stubs have none.
        return ocsf.ndjson(lines)
    if fmt == "csv":
        buffer = io.StringIO()
        # RFC 4180 line ends, as the server's CSV; cells defused the same way (csv_row).
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(line) for line in lines)
        return buffer.getvalue().encode()
    return parquet_bytes(table_of(lines))


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 the manifest records for a file."""
    return hashlib.sha256(data).hexdigest()
