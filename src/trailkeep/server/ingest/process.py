"""The group-commit writer in a process of its own, so that its Python has a GIL of its own.

In one process the event loop (parsing and validating requests) and the writer thread
(canonical bytes, hashes, SQLite) take turns on one GIL: under load each waits for the other,
and the server cannot use a second core. Here the writer runs
:class:`~trailkeep.server.ingest.writer.Ingest` unchanged in a child process; the server
hands it validated entries over a socket pair and gets the stored entries back.

The child is the only process that appends, so everything ``Ingest`` relies on (one writer per
SQLite file, its cached tree frontier) still holds. It ends when the server closes its end of
the socket, after committing what it was given; if the server dies, it sees the same end of file.

The messages are pickles. Both ends are this module in two processes of one server, joined by a
``socketpair`` no other process can reach, so nothing untrusted is ever unpickled; credentials
(a PostgreSQL URL's password) go over the socket rather than the command line, where ``ps``
would show them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import pickle
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from trailkeep.log.record import PendingEntry
from trailkeep.server.ingest.writer import (
    IDEMPOTENCY_TTL,
    MAX_BATCH_ENTRIES,
    Appended,
    Idempotency,
    IdempotencyConflict,
    Ingest,
    IngestStats,
    WriterUnavailable,
)
from trailkeep.server.store import Store
from trailkeep.server.store.errors import StorageUnavailable

log = logging.getLogger(__name__)

_HEADER = 4
_READY_TIMEOUT_SECONDS = 60.0
_RESPAWN_DELAY_SECONDS = 1.0
# A frame is at most one request: a full batch of entries, each with metadata at its size
# limit, and then some.
_MAX_FRAME = 64 * 1024 * 1024

# Entries cross as plain tuples: pickling a slotted dataclass goes through copyreg per object.
_FIELDS = tuple(f.name for f in dataclasses.fields(PendingEntry))
_as_tuple = operator.attrgetter(*_FIELDS)


def _frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(payload).to_bytes(_HEADER, "big") + payload


async def _read(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at the end of the stream (or of a stream gone wrong)."""
    try:
        header = await reader.readexactly(_HEADER)
        size = int.from_bytes(header, "big")
        if size > _MAX_FRAME:
            # Not something either end sends: treat the stream as over, as for a dead peer.
            log.error("a frame of %d bytes from the other end; closing the stream", size)
            return None
        # Safe to unpickle: the only peer is the other end of our own socketpair (see above).
        return pickle.loads(await reader.readexactly(size))  # noqa: S301
    except (asyncio.IncompleteReadError, ConnectionError):
        # A peer that died with our data unread resets the connection rather than closing it.
        return None


class WriterProcess:
    """The :class:`~.writer.Ingest` API, served by a writer in a child process."""

    def __init__(
        self,
        database_url: str,
        *,
        max_batch_entries: int = MAX_BATCH_ENTRIES,
        idempotency_ttl: timedelta = IDEMPOTENCY_TTL,
        stats: IngestStats | None = None,
        on_appended: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._config = {
            "database_url": database_url,
            "max_batch_entries": max_batch_entries,
            "idempotency_ttl_seconds": idempotency_ttl.total_seconds(),
        }
        self._stats = stats or IngestStats()
        self._on_appended = on_appended
        self._waiting: dict[int, tuple[str, asyncio.Future[Appended]]] = {}
        self._next_id = 0
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._respawner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start the writer process and wait until it has opened the database."""
        await self._spawn()

    async def stop(self) -> None:
        """Let the writer commit what it was given, answer it, and end."""
        self._closing = True
        if self._respawner is not None:
            await self._respawner  # a writer it starts now is stopped below, like any other
        if self._writer is not None and not self._writer.is_closing():
            # End of file tells the child to drain and exit; its answers still come back.
            self._writer.write_eof()
        if self._receiver is not None:
            await self._receiver
        if self._process is not None:
            await self._process.wait()

    async def append(
        self, app_id: str, entries: Sequence[PendingEntry], idempotency: Idempotency | None = None
    ) -> Appended:
        """Append entries (all or none) and return them once they are durably committed."""
        writer = self._writer
        if self._closing or writer is None:
            raise RuntimeError("the writer is not running")
        if writer.is_closing():
            raise WriterUnavailable("the writer process is restarting")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (app_id, future)
        key = (idempotency.key, idempotency.fingerprint) if idempotency is not None else None
        try:
            writer.write(_frame((request_id, app_id, [_as_tuple(e) for e in entries], key)))
            await writer.drain()
        except ConnectionError:
            # It died before this was sent; the receiver sees the end and starts another.
            self._waiting.pop(request_id, None)
            raise WriterUnavailable("the writer process ended") from None
        return await future

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            # Its own session: a Ctrl-C at the terminal reaches the server, which then stops
            # the writer in order, rather than both at once.
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "trailkeep.server.ingest.process", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), start_new_session=True,
            )  # fmt: skip
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        try:
            writer.write(_frame(self._config))
            ready = await asyncio.wait_for(_read(reader), _READY_TIMEOUT_SECONDS)
            if ready != "ready":
                raise RuntimeError("the writer process ended as it started")
        except BaseException:
            writer.close()
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
            raise
        self._writer = writer
        self._receiver = asyncio.create_task(self._receive(reader), name="trailkeep-writer-replies")

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await _read(reader)) is not None:
                self._settle(message)
        finally:
            self._gone()

    def _gone(self) -> None:
        gone = WriterUnavailable("the writer process ended before answering")
        for _, future in self._waiting.values():
            if not future.done():
                future.set_exception(gone)
        self._waiting.clear()
        if self._writer is not None:
            self._writer.close()
        if not self._closing:
            self._respawner = asyncio.create_task(self._respawn(), name="trailkeep-writer-respawn")

    def _settle(self, message: Any) -> None:
        kind = message[0]
        if kind == "commit":
            self._stats.on_commit(message[1], message[2])
            return
        app_id, future = self._waiting.pop(message[1])
        if kind == "appended" and self._on_appended is not None:
            self._on_appended({app_id})  # the log grew, whether or not its caller still waits
        if future.done():  # the caller went away
            return
        if kind == "appended":
            _, _, entries, first_seq, replayed = message
            future.set_result(Appended(entries, first_seq, replayed))
        elif kind == "conflict":
            future.set_exception(IdempotencyConflict(message[2]))
        elif kind == "unavailable":
            future.set_exception(StorageUnavailable(message[2]))
        else:
            future.set_exception(RuntimeError(f"append failed in the writer process: {message[2]}"))

    async def _respawn(self) -> None:
        assert self._process is not None
        code = await self._process.wait()
        log.error("the writer process ended unexpectedly (exit code %s); starting another", code)
        while not self._closing:
            await asyncio.sleep(_RESPAWN_DELAY_SECONDS)
            try:
                await self._spawn()
                return
            except Exception:
                log.exception("the writer process did not start; trying again")


async def _serve(sock: socket.socket) -> None:
    """The child's side: run an Ingest, answer each request as its commit lands."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    config = await _read(reader)
    if config is None:
        return
    store = Store(config["database_url"])
    ingest = Ingest(
        store,
        max_batch_entries=config["max_batch_entries"],
        idempotency_ttl=timedelta(seconds=config["idempotency_ttl_seconds"]),
        stats=IngestStats(on_commit=lambda size, s: writer.write(_frame(("commit", size, s)))),
    )
    await ingest.start()
    writer.write(_frame("ready"))
    working: set[asyncio.Task[None]] = set()

    async def one(request_id: int, app_id: str, rows: list[tuple[Any, ...]], key: Any) -> None:
        idempotency = Idempotency(*key) if key is not None else None
        try:
            done = await ingest.append(app_id, [PendingEntry(*row) for row in rows], idempotency)
        except IdempotencyConflict as exc:
            reply: tuple[Any, ...] = ("conflict", request_id, str(exc))
        except StorageUnavailable as exc:
            reply = ("unavailable", request_id, str(exc))
        except Exception as exc:
            reply = ("failed", request_id, f"{type(exc).__name__}: {exc}")
        else:
            reply = ("appended", request_id, done.entries, done.first_seq, done.replayed)
        writer.write(_frame(reply))

    try:
        while (request := await _read(reader)) is not None:
            task = asyncio.create_task(one(*request))
            working.add(task)
            task.add_done_callback(working.discard)
    finally:
        await ingest.stop()
        if working:
            await asyncio.gather(*working)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        store.close()


def main(argv: Sequence[str]) -> None:
    """Entry point of the child: ``python -m trailkeep.server.ingest.process FD``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     [writer] %(message)s")
    # The server stops the writer by closing the socket, once its own requests are done. A
    # SIGTERM meant for the whole service (systemd signals every process of a unit) must not
    # end the writer first, under requests the server is still finishing.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    asyncio.run(_serve(socket.socket(fileno=int(argv[1]))))


if __name__ == "__main__":
    main(sys.argv)
