"""``trailkeep verify``: check an export or the local database against signed checkpoints."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trailkeep.cli.common import (
    CliError,
    DatabaseUrl,
    DataDir,
    cell,
    err,
    out,
    require_database,
    settings_from,
)
from trailkeep.log.notes import NoteError, NoteSigner, NoteVerifier
from trailkeep.log.verify import (
    Report,
    VerifyError,
    app_of,
    open_signed,
    verify_consistency,
    verify_entries,
)
from trailkeep.sdk import Client, RetryPolicy, TrailkeepError

if TYPE_CHECKING:
    from trailkeep.server.settings import Settings
    from trailkeep.server.store import Store

FileOpt = Path | None
_FILE = {"exists": True, "dir_okay": False, "readable": True}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


#: What the first line of a CSV export starts with (its header row).
CSV_HEADER = b"seq,id,time,action,"


def _refuse_csv(path: Path) -> None:
    """Fail with the reason when ``path`` is a CSV export: only NDJSON can be verified."""
    with path.open("rb") as handle:
        first = next((line for line in handle if line.strip()), b"")
    if first.lstrip(b"\xef\xbb\xbf").startswith(CSV_HEADER) or (
        path.suffix.lower() == ".csv" and not first.lstrip().startswith(b"{")
    ):
        raise CliError(
            f"--entries: {path.name} is a CSV export, which cannot be verified: CSV is a "
            "rendering for spreadsheets (cells that could run as formulas are prefixed with ', "
            "control characters are escaped, the entry is flattened into columns), so the "
            "canonical bytes that each leaf hash covers are lost; export with format=ndjson "
            "and verify that"
        )


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield line


def _fetch_proof(server: str, api_key: str | None, app_id: str, old: int, new: int) -> list[bytes]:
    if not api_key:
        raise CliError("--server needs --api-key (or TRAILKEEP_KEY): any key of the app")
    try:
        with Client(server, app_id, api_key, timeout=30, retry=RetryPolicy(max_retries=2)) as c:
            path = c.consistency_proof(old, new)
    except TrailkeepError as exc:
        raise CliError(f"the server refused the consistency proof: {exc}") from None
    return [bytes.fromhex(h) for h in path]


def _proof_file(path: Path) -> list[bytes]:
    data = orjson.loads(path.read_bytes())
    hashes = data["path"] if isinstance(data, dict) else data
    return [bytes.fromhex(h) for h in hashes]


def _local_verifier(settings: Settings) -> NoteVerifier:
    # Read, never create: a verifier that made a fresh key would "verify" against nothing,
    # and a later `serve` would sign with the stray key.
    path = settings.resolved_signing_key_file
    if not path.exists():
        raise CliError(f"no signing key at {path}: give --key (the server's checkpoint key)")
    return NoteSigner.from_signer_key(path.read_text().strip()).verifier()


def _key_file(path: Path) -> NoteVerifier:
    try:
        return NoteVerifier.from_verifier_key(_read(path).strip())
    except NoteError as exc:
        raise CliError(f"--key: {exc}") from None


def verify(
    entries: Annotated[
        FileOpt,
        typer.Option("--entries", **_FILE, help="An NDJSON export (CSV cannot be verified)."),
    ] = None,
    checkpoint: Annotated[
        FileOpt, typer.Option("--checkpoint", **_FILE, help="A signed checkpoint.")
    ] = None,
    key: Annotated[
        FileOpt,
        typer.Option(
            "--key", **_FILE, help="The checkpoint verifier key file (GET /v1/checkpoint-key)."
        ),
    ] = None,
    old_checkpoint: Annotated[
        FileOpt,
        typer.Option("--old-checkpoint", **_FILE, help="An older checkpoint to prove consistent."),
    ] = None,
    consistency_proof: Annotated[
        FileOpt, typer.Option("--consistency-proof", **_FILE, help="JSON proof from old to new.")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Fetch the consistency proof from this server.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="TRAILKEEP_KEY", help="An API key of the app, for --server."
        ),
    ] = None,
    app_id: Annotated[
        str | None, typer.Option("--app", help="Verify this app in the local database instead.")
    ] = None,
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export", exists=True, file_okay=False, help="A `trailkeep export` folder (offline)."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", min=1, help="Processes for --app and --export (default: one per core)."
        ),
    ] = None,
    span_bits: Annotated[int | None, typer.Option("--span-bits", min=1, max=40, hidden=True)] = (
        None
    ),
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Verify entries, their root against a signed checkpoint, and checkpoint consistency."""
    try:
        if export_dir is not None:
            if key is None:
                raise CliError("--export needs --key (the checkpoint verifier key file)")
            _verify_export(export_dir, _key_file(key), jobs)
            return
        if app_id is not None:
            report = _local(
                app_id, key, checkpoint, old_checkpoint, consistency_proof, server, api_key,
                jobs, span_bits, data_dir, database_url,
            )  # fmt: skip
        else:
            if entries is None or checkpoint is None or key is None:
                raise CliError(
                    "give --entries, --checkpoint and --key (or --app for the local log)"
                )
            _refuse_csv(entries)
            verifier = _key_file(key)
            signed = open_signed(_read(checkpoint), verifier, "--checkpoint")
            with _progress(signed.size) as advance:
                report = verify_entries(
                    _lines(entries), signed, app_id=app_of(signed), progress=advance
                )
            if old_checkpoint is not None:
                _check_old(report, _read(old_checkpoint), verifier, consistency_proof,
                           None, server, api_key)  # fmt: skip
    except VerifyError as exc:
        # The message may quote the export's own bytes: inert text, never markup.
        err.print("FAILED ", style="red", end="")
        err.print(cell(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    _print_report(report)


def _verify_export(root: Path, verifier: NoteVerifier, jobs: int | None) -> None:
    """Verify every app folder of an export (``--export``), printing a report for each."""
    from trailkeep.cli.exportcheck import app_folders, verify_app_folder
    from trailkeep.cli.exportfiles import read_manifest

    for app_dir in app_folders(root):
        manifest = read_manifest(app_dir)
        total = manifest.next_seq - manifest.first_seq if manifest else 0
        with _progress(total) as advance:
            report = verify_app_folder(app_dir, verifier, advance, jobs)
        out.print(f"{app_dir.name}: ", end="", highlight=False)
        _print_report(report)


def _local(
    app_id: str, key: Path | None, checkpoint: Path | None, old_checkpoint: Path | None,
    consistency_proof: Path | None, server: str | None, api_key: str | None, jobs: int | None,
    span_bits: int | None, data_dir: Path | None, database_url: str | None,
) -> Report:  # fmt: skip
    """Verify an app in the local database (``--app``); this needs ``trailkeep[server]``."""
    from trailkeep.server.secrets import SecretBox
    from trailkeep.server.store import Store

    settings = settings_from(data_dir=data_dir, database_url=database_url)
    # The key first: a run that cannot verify anything must not create a database either.
    verifier = _key_file(key) if key else _local_verifier(settings)
    require_database(settings)
    url = settings.resolved_database_url
    # Verifying needs no secret; the key is used only if there is one, for an older schema's
    # migration to seal what it finds in clear.
    sealing = settings.resolved_secret_key_file
    store = Store(url, secrets=SecretBox.load(sealing) if sealing.exists() else None)
    try:
        store.migrate()
        report = _verify_local(store, url, app_id, checkpoint, verifier, jobs, span_bits)
        if old_checkpoint is not None:
            _check_old(report, _read(old_checkpoint), verifier, consistency_proof,
                       store.consistency_proof, server, api_key)  # fmt: skip
        return report
    finally:
        store.close()


def _verify_local(
    store: Store, url: str, app_id: str, checkpoint: Path | None, verifier: NoteVerifier,
    jobs: int | None, span_bits: int | None,
) -> Report:  # fmt: skip
    from trailkeep.server.verify_app import SPAN_BITS, verify_app

    app = store.get_app(app_id)
    if app is None:
        raise CliError(f"no app {app_id!r} in this database")
    if checkpoint is not None:
        signed = open_signed(_read(checkpoint), verifier, "--checkpoint")
    else:
        record = store.latest_checkpoint(app_id)
        if record is None:
            raise CliError(f"no checkpoint of {app_id} is stored yet: start the server")
        signed = open_signed(record.note, verifier, "the latest stored checkpoint")
    size = store.log_size(app_id)
    with _progress(size) as advance:
        return verify_app(
            store, url, app, signed, size, jobs=jobs, bits=span_bits or SPAN_BITS,
            progress=advance,
        )  # fmt: skip


def _check_old(
    report: Report, note: str, verifier: NoteVerifier, proof_file: Path | None,
    local_proof: Callable[[str, int, int], list[bytes]] | None, server: str | None,
    api_key: str | None,
) -> None:  # fmt: skip
    """Prove the older checkpoint ``note`` consistent with the one just verified."""
    assert report.checkpoint is not None
    old, new = open_signed(note, verifier, "--old-checkpoint"), report.checkpoint
    if proof_file is not None:
        proof = _proof_file(proof_file)
    elif not old.size:
        proof = []
    elif local_proof is not None:
        proof = local_proof(app_of(old), old.size, new.size)
    elif server is not None:
        proof = _fetch_proof(server, api_key, app_of(old), old.size, new.size)
    else:
        raise CliError("--old-checkpoint needs --consistency-proof or --server")
    verify_consistency(old, new, proof)
    out.print(f"consistent: checkpoint {old.size} is a prefix of {new.size}")


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    with Progress(
        TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=total < 50_000,
    ) as bar:  # fmt: skip
        task = bar.add_task("entries", total=total)
        yield lambda n: bar.advance(task, n)


def _entries(count: int, adjective: str = "") -> str:
    return f"{count} {adjective}{'entry' if count == 1 else 'entries'}"


def _print_report(report: Report) -> None:
    root = base64.b64encode(report.root).decode()
    erased = f" ({report.erased} erased)" if report.erased else ""
    out.print(f"OK: {_entries(report.size)}{erased} verified against the signed checkpoint")
    out.print(f"tree size {report.size}, root {root}")
    if report.beyond_checkpoint:
        newer = _entries(report.beyond_checkpoint, "newer ")
        out.print(f"{newer} checked, not yet in a checkpoint")
    if report.erased:
        # A stub proves its place in the tree; the records of the log say why its content went.
        stubs = (
            "1 erased entry is a stub"
            if report.erased == 1
            else (f"{report.erased} erased entries are stubs")
        )
        out.print(
            f"{stubs} (only the leaf hash is left), each accounted for by the retention.purge "
            "or erasure.done entry that erased it",
            soft_wrap=True,
        )
