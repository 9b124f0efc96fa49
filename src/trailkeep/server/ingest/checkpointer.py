"""Signed checkpoints: kept up to date while writes continue, stored before they are published.

A node signs an app's checkpoint when its tree has grown, at most once a second per app, in
the background; a proof request never signs one itself (40 of them once stored 40
checkpoints), it waits for the background signer instead. Before signing it proves, from the
stored tree, that the new tree extends the last signed one, so it never signs a fork of its
own history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint, NoteSigner
from trailkeep.server.files import read_or_create
from trailkeep.server.store import CheckpointRecord, Store
from trailkeep.server.store.errors import outage

log = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 1.0
#: How long a proof request waits for a checkpoint covering its entry: one signing interval,
#: with a margin for the signing itself.
COVER_WAIT_SECONDS = MIN_INTERVAL_SECONDS + 0.25


def load_signer(path: Path, name: str) -> NoteSigner:
    """The node's Ed25519 note signer, created (mode 0600) on first start."""
    text = read_or_create(path, lambda: NoteSigner(name, os.urandom(32)).signer_key())
    return NoteSigner.from_signer_key(text)


def tree_root(store: Store, app_id: str, size: int) -> bytes:
    """The root of the app's tree at ``size``, from its stored complete subtrees."""
    ids = merkle.frontier(size)
    nodes = store.nodes(app_id, ids)
    return merkle.root_from_frontier([nodes[node] for node in ids])


class Checkpointer:
    """Signs and stores checkpoints for the apps this node appends to."""

    def __init__(self, store: Store, signer: NoteSigner, origin: str) -> None:
        self.store = store
        self.signer = signer
        self.origin = origin
        self._dirty: set[str] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Set after each signing round, then replaced: what waiters for a checkpoint await.
        self._signed = asyncio.Event()

    def origin_of(self, app_id: str) -> str:
        """The checkpoint origin line of an app."""
        return f"{self.origin}/{app_id}"

    def mark(self, app_ids: set[str]) -> None:
        """Note that these apps' trees grew (called by the writer after each commit)."""
        self._dirty |= app_ids
        self._wakeup.set()

    async def start(self) -> None:
        """Start signing in the background."""
        self._task = asyncio.create_task(self._run(), name="trailkeep-checkpointer")

    async def stop(self) -> None:
        """Sign what is pending, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for app_id in sorted(self._dirty):
            await asyncio.to_thread(self.latest, app_id, 0.0)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            apps, self._dirty = self._dirty, set()
            for app_id in sorted(apps):
                try:
                    await asyncio.to_thread(self.latest, app_id, 0.0)
                except Exception as exc:
                    reason = outage(exc)
                    if reason is None:
                        log.exception("could not sign a checkpoint for %s", app_id)
                        continue
                    # The database will be back (disk full, restarting): try again at the next
                    # interval rather than leave the grown tree unsigned until the next write.
                    log.warning("could not sign a checkpoint for %s: %s", app_id, reason)
                    self.mark({app_id})
            signed, self._signed = self._signed, asyncio.Event()
            signed.set()
            await asyncio.sleep(MIN_INTERVAL_SECONDS)

    async def covering(
        self, app_id: str, size: int, within: float = COVER_WAIT_SECONDS
    ) -> CheckpointRecord | None:
        """The latest checkpoint once it covers ``size`` entries; None if none does in time.

        Never signs: it asks the background signer (which signs at most once a second) and
        waits for its next round, so any number of requests cost at most one signature.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            record = await asyncio.to_thread(self.store.latest_checkpoint, app_id)
            if record is not None and record.size >= size:
                return record
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # Another node may have appended: this node's signer only knows of its own writes.
            signed = self._signed
            self.mark({app_id})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signed.wait(), remaining)

    def latest(self, app_id: str, max_age: float = MIN_INTERVAL_SECONDS) -> CheckpointRecord:
        """The newest checkpoint; a new one is signed if the tree grew and max_age has passed."""
        stored = self.store.latest_checkpoint(app_id)
        size = self.store.log_size(app_id)
        now = datetime.now(UTC)
        if stored is not None and (
            stored.size >= size or (now - stored.created_at).total_seconds() < max_age
        ):
            return stored
        root = tree_root(self.store, app_id, size)
        if stored is not None and stored.size > 0:
            self._check_extends(app_id, stored, size, root)
        text = Checkpoint(self.origin_of(app_id), size, root).to_text()
        record = CheckpointRecord(app_id, size, root, self.signer.sign(text), now)
        if not self.store.put_checkpoint(record):
            # Another node stored this size first; publish the stored one, never a second note.
            again = self.store.latest_checkpoint(app_id)
            assert again is not None
            return again
        return record

    def _check_extends(self, app_id: str, old: CheckpointRecord, size: int, root: bytes) -> None:
        proof = self.store.consistency_proof(app_id, old.size, size)
        merkle.verify_consistency(old.size, size, old.root, root, proof)
