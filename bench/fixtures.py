"""Databases the read, proof and verify benchmarks need, built once and cached in bench/out.

A cache entry is a data directory (``trailkeep.db``, ``signing.key``, ``meta.json``) named by the
data generator's version and the size, built under a temporary name and renamed when complete, so
an interrupted build is never used.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import datagen
from bench.harness import ORIGIN, secret_key
from trailkeep.log.notes import Checkpoint
from trailkeep.server.ingest.checkpointer import load_signer
from trailkeep.server.provision import create_app
from trailkeep.server.store import CheckpointRecord, Store


@dataclass(frozen=True)
class DataDir:
    """A cached data directory and what was made in it."""

    path: Path
    meta: dict[str, Any]

    @property
    def url(self) -> str:
        """Its SQLite database URL."""
        return f"sqlite:///{self.path / 'trailkeep.db'}"


def _cached(cache: Path, name: str, build: Any) -> DataDir:
    final = cache / name
    if (final / "meta.json").exists():
        return DataDir(final, json.loads((final / "meta.json").read_text()))
    # Databases an older data generator made are never read again (their names carry its
    # version): drop them before building, or each upgrade leaves gigabytes behind.
    kind, _, size = name.split("-")
    for stale in cache.glob(f"{kind}-v*-{size}*"):
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    building = cache / f"{name}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.monotonic()
    meta: dict[str, Any] = build(building)
    meta["build_seconds"] = round(time.monotonic() - started, 1)
    (building / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    return DataDir(final, meta)


def _app(made: Any) -> dict[str, str]:
    return {"app_id": made.app_id, "key": made.key, "session_secret": made.session_secret}


def reads_db(cache: Path, count: int) -> DataDir:
    """Two apps of ``count`` entries each, interleaved in one SQLite file."""

    def build(path: Path) -> dict[str, Any]:
        print(f"  building the read database: 2 x {count:,} entries (cached afterwards)")
        store = Store(f"sqlite:///{path / 'trailkeep.db'}", secrets=secret_key())
        store.migrate()
        apps = [_app(create_app(store, "bench A")), _app(create_app(store, "bench B"))]
        last = [time.monotonic()]

        def progress(done: int) -> None:
            if time.monotonic() - last[0] > 15:
                last[0] = time.monotonic()
                print(f"    {done:,} / {count:,} per app", flush=True)

        datagen.fill(store, [a["app_id"] for a in apps], count, progress=progress)
        store.close()
        return {"apps": apps, "count": count, "version": datagen.VERSION}

    return _cached(cache, f"reads-v{datagen.VERSION}-{count}", build)


def proofs_db(cache: Path, size: int) -> DataDir:
    """An app whose tree has ``size`` leaves (its tiles only) and a signed checkpoint of it."""

    def build(path: Path) -> dict[str, Any]:
        print(f"  building the proof database: a tree of {size:,} leaves (cached afterwards)")
        db = path / "trailkeep.db"
        store = Store(f"sqlite:///{db}", secrets=secret_key())
        store.migrate()
        app = _app(create_app(store, "bench proofs"))
        store.close()
        root = datagen.fill_tree(db, app["app_id"], size)
        store = Store(f"sqlite:///{db}")
        with store.append_tx() as tx:
            tx.reserve(app["app_id"], size, datetime.now(UTC))  # the log's size is the tree's
        if datagen.stored_root(db, app["app_id"], size) != root:
            raise RuntimeError("the generated tree's stored root differs from the computed one")
        _sign(store, path, app["app_id"], size, root)
        store.close()
        return {"app": app, "size": size, "root": root.hex(), "version": datagen.VERSION}

    return _cached(cache, f"proofs-v{datagen.VERSION}-{size}", build)


def _sign(store: Store, path: Path, app_id: str, size: int, root: bytes) -> str:
    """Sign and store a checkpoint with the data directory's key, as the server would."""
    signer = load_signer(path / "signing.key", ORIGIN)
    note = signer.sign(Checkpoint(f"{ORIGIN}/{app_id}", size, root).to_text())
    store.put_checkpoint(CheckpointRecord(app_id, size, root, note, datetime.now(UTC)))
    return note


def export_files(data: DataDir, app: dict[str, str]) -> tuple[Path, Path, Path]:
    """(NDJSON export of every entry, signed checkpoint, verifier key) of an app, made once."""
    count = int(data.meta["count"])
    entries = data.path / f"export-{app['app_id']}.ndjson"
    checkpoint = data.path / f"checkpoint-{app['app_id']}.txt"
    key = data.path / "checkpoint-key.txt"
    if entries.exists() and checkpoint.exists() and key.exists():
        return entries, checkpoint, key
    store = Store(data.url)
    try:
        partial = entries.with_suffix(".partial")
        with partial.open("wb") as handle:
            for seq in range(0, count, 20_000):
                for entry in store.entries(app["app_id"], seq, min(20_000, count - seq)):
                    handle.write(entry + b"\n")
        partial.rename(entries)
        stored = store.latest_checkpoint(app["app_id"])
        if stored is not None and stored.size == count:
            note = stored.note  # `verify --app` checks against the stored one: use the same
        else:
            root = datagen.stored_root(data.path / "trailkeep.db", app["app_id"], count)
            note = _sign(store, data.path, app["app_id"], count, root)
        checkpoint.write_text(note)
        key.write_text(load_signer(data.path / "signing.key", ORIGIN).verifier_key() + "\n")
    finally:
        store.close()
    return entries, checkpoint, key
