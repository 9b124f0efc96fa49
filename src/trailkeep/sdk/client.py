"""The synchronous client: :class:`Client`, with ``client.audit`` and ``client.sessions``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal, Unpack, overload

import httpx

from .build import (
    Call,
    ErasedPages,
    ExportFormat,
    Filters,
    Page,
    Records,
    entries_of,
    entry_of,
    page_of,
    proven_of,
    stats_of,
)
from .context import RequestContext
from .core import Core, text_of, unproven
from .errors import ConnectionFailed, InvalidRequest, NotFound
from .models import Entry, Erased, Event, GroupBy, ProvenEntry, SignedCheckpoint, Stats, Verified
from .retry import OnRetry, RetryPolicy, error_of
from .sessions import Sessions
from .sse import StreamReader
from .verify import consistency_path

#: About how much of an export one block holds (export_blocks).
BLOCK_BYTES = 1 << 20


def _without_blank_lines(block: bytes) -> bytes:
    # The server writes none; a proxy or a hand-made stream might. Each line still ends in \n.
    if not block.startswith(b"\n") and b"\n\n" not in block:
        return block
    return b"".join(line + b"\n" for line in block.split(b"\n") if line)


class Client:
    """A Trailkeep client for one app, authenticated with an API key.

    ``verifier_key`` pins the server's checkpoint key (``/v1/checkpoint-key``, obtained once
    out of band): then nothing the server says can make a forged log verify. Without it, the
    key is fetched from the server on first use and trusted from then on.
    """

    def __init__(
        self,
        endpoint: str,
        app: str,
        key: str,
        *,
        session_secret: str | None = None,
        verifier_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        metadata_max_bytes: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Configure the client; no request is made until a method is called."""
        self._core = Core(
            endpoint, app, key, verifier_key=verifier_key, retry=retry or RetryPolicy(),
            on_retry=on_retry, metadata_max_bytes=metadata_max_bytes,
        )  # fmt: skip
        self._http = httpx.Client(
            base_url=self._core.endpoint,
            headers=self._core.headers,
            timeout=timeout,
            transport=transport,
        )
        self._witness_lock = threading.Lock()
        self.audit = Audit(self)
        self.sessions = Sessions(app, session_secret)

    @property
    def app(self) -> str:
        """The app this client writes to and reads from."""
        return self._core.app

    def send(self, call: Call) -> httpx.Response:
        """Send ``call``, retrying as the policy says; a non-2xx answer raises its error."""
        request = self._http.build_request(
            call.method, call.path, params=call.params, content=call.content, headers=call.headers
        )
        attempts = self._core.attempts(call)
        while True:
            try:
                response = self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                time.sleep(attempts.after_error(exc))
                continue
            if response.is_success:
                return response
            try:
                response.read()
            finally:
                response.close()
            delay = attempts.after_answer(response)
            if delay is None:
                error = error_of(response)
                fallback = self._core.fallback(call, error)
                if fallback is None:
                    raise error
                return self.send(fallback)
            time.sleep(delay)

    def checkpoint_key(self) -> str:
        """The trusted checkpoint verifier key (pinned, or fetched from the server once)."""
        verifier = self._core.verifier
        if verifier is None:
            text = text_of(self.send(self._core.builder.checkpoint_key()).content, "key")
            verifier = self._core.learn_verifier(text)
        return verifier.verifier_key()

    def checkpoint(self) -> SignedCheckpoint:
        """The app's latest checkpoint, its signature checked and consistent with earlier ones."""
        self.checkpoint_key()
        assert self._core.verifier is not None
        note = text_of(self.send(self._core.builder.checkpoint()).content, "checkpoint")
        checkpoint = self._core.check_checkpoint(note, self._core.verifier)
        self._witness(checkpoint)
        return checkpoint

    def verify_entry(self, entry: Entry | ProvenEntry) -> Verified:
        """Prove locally that ``entry`` is in the app's signed log; raises VerificationError.

        Checks that the entry's content hashes to its leaf hash, that the inclusion proof leads
        from it to the checkpoint's root, that the checkpoint is signed by the trusted key, and
        that it extends every checkpoint this client verified before.
        """
        if isinstance(entry, ProvenEntry):
            proven = entry
        else:
            proven = self._core.with_proof(entry, self.audit.get(entry.id, proof=True))
        self.checkpoint_key()
        verifier = self._core.verifier
        assert verifier is not None
        self._core.check_proven(proven, verifier)
        self._witness(proven.checkpoint)
        return Verified(proven.entry, proven.checkpoint, verifier.name)

    def consistency_proof(self, old: int, new: int) -> list[str]:
        """The server's RFC 9162 proof (hex hashes) that tree ``old`` is a prefix of ``new``.

        Unchecked as it comes: :meth:`checkpoint` and :meth:`verify_entry` check it against the
        signed roots, as ``trailkeep verify --old-checkpoint`` does.
        """
        return consistency_path(self.send(self._core.builder.consistency(old, new)).json())

    def inclusion_proof(self, seq: int, size: int) -> list[str]:
        """The server's RFC 9162 audit path (hex hashes) of entry ``seq`` in tree ``size``.

        Unchecked as it comes: it binds only once folded up to a signed root.
        """
        return consistency_path(self.send(self._core.builder.inclusion(seq, size)).json())

    def _witness(self, checkpoint: SignedCheckpoint) -> None:
        with self._witness_lock:  # one proof at a time, so each is against the latest seen
            sizes = self._core.witness.needs_proof(checkpoint)
            path = None
            if sizes is not None:
                try:
                    path = self.consistency_proof(*sizes)
                except (InvalidRequest, NotFound) as exc:
                    raise unproven(sizes, exc) from exc
            self._core.witness.accept(checkpoint, path)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        """Use as a context manager that closes the client."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the client."""
        self.close()


class Audit:
    """The app's audit log: ``client.audit.log(...)`` and the reads."""

    def __init__(self, client: Client) -> None:
        """Bind to ``client``."""
        self._client = client
        self._core = client._core
        self._build = client._core.builder

    def log(
        self,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        project: str | None = None,
        server: str | None = None,
        request_id: str | None = None,
        changes: Sequence[Mapping[str, Any]] | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        session: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        idempotency_key: str | None = None,
    ) -> Entry:
        """Record one entry and return it as stored.

        ``session``, ``client_ip`` and ``user_agent`` are the end user's (by default those the
        middleware bound for the current request); the server makes that user the actor.
        """
        event = Event(
            action, target_type, target_id, metadata, project, server, request_id,
            changes=changes, before=before, after=after,
        )  # fmt: skip
        context = self._core.context(session, client_ip, user_agent)
        return entry_of(self._client.send(self._build.log(event, context, idempotency_key)).content)

    def log_many(
        self,
        events: Iterable[Event | Mapping[str, Any]],
        *,
        session: str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        """Record a batch (up to 1,000), all or none, in one request."""
        context = self._core.context(session, client_ip, user_agent)
        return self.send_batch(events, context, idempotency_key)

    def send_batch(
        self,
        events: Iterable[Event | Mapping[str, Any]],
        context: RequestContext,
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        """Record a batch for exactly ``context`` (what :class:`AuditBuffer` uses)."""
        call = self._build.log_many(events, context, idempotency_key)
        return entries_of(self._client.send(call).content)

    def page(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Unpack[Filters]
    ) -> Page:
        """One page of matching entries, newest first; pass ``next_cursor`` for the next."""
        return page_of(self._client.send(self._build.page(filters, limit, cursor)).content)

    def list(self, *, page_size: int = 100, **filters: Unpack[Filters]) -> Iterator[Entry]:
        """Every matching entry, newest first, following cursors page by page."""
        self._build.page(filters, page_size, None)  # refuse bad filters now, not at first next()
        return self._iterate(page_size, filters)

    def _iterate(self, page_size: int, filters: Filters) -> Iterator[Entry]:
        cursor: str | None = None
        while True:
            page = self.page(cursor=cursor, limit=page_size, **filters)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @overload
    def get(self, entry_id: str, *, proof: Literal[False] = False) -> Entry: ...
    @overload
    def get(self, entry_id: str, *, proof: Literal[True]) -> ProvenEntry: ...
    def get(self, entry_id: str, *, proof: bool = False) -> Entry | ProvenEntry:
        """One entry; with ``proof=True`` also its inclusion proof and a signed checkpoint."""
        content = self._client.send(self._build.get(entry_id, proof)).content
        return proven_of(content) if proof else entry_of(content)

    def erased(self, *, since_size: int = 0, below_seq: int | None = None) -> Erased:
        """The seqs erased (by retention or an erasure) since the log had ``since_size`` entries.

        Keep the returned ``size`` and pass it as ``since_size`` next time to learn only what
        was erased since; ``below_seq`` limits the answer to the entries a copy holds. This is
        how a copy of the log (a warehouse table) learns what to erase too.
        """
        pages = ErasedPages()
        while pages.more:
            call = self._build.erased(since_size, below_seq, pages.cursor)
            pages.add(self._client.send(call).content)
        return pages.result()

    def stats(self, group_by: GroupBy = "action", **filters: Unpack[Filters]) -> Stats:
        """Counts of matching entries per action, actor, target type or day."""
        return stats_of(self._client.send(self._build.stats(group_by, filters)).content)

    def export(self, format: ExportFormat = "ndjson", **filters: Unpack[Filters]) -> Iterator[str]:
        """Stream matching entries, oldest first: one NDJSON line or one CSV record at a time.

        CSV starts with its header record; a record may hold a newline inside a quoted field,
        so parse with ``csv.reader(...)`` rather than by splitting.
        """
        return self._records(self._build.export(format, filters), csv=format == "csv")

    def export_entries(self, **filters: Unpack[Filters]) -> Iterator[Entry]:
        """Stream matching entries as :class:`Entry` values, oldest first."""
        return (entry_of(line.encode()) for line in self.export("ndjson", **filters))

    def stream(
        self, *, after_seq: int | None = None, last_event_id: int | None = None,
        **filters: Unpack[Filters],
    ) -> EntryStream:  # fmt: skip
        """New matching entries as they are appended, over one connection, oldest first.

        ``after_seq`` (or ``last_event_id``, as a reconnecting client sends it) first replays
        the stored entries after that seq. The iterator ends when the server ends the stream
        (it stops, or this client fell too far behind); resume with its ``last_seq`` as
        ``last_event_id``. A broken connection raises :class:`ConnectionFailed`.
        """
        return EntryStream(self._client.send(self._build.stream(filters, after_seq, last_event_id)))

    def export_lines(
        self, *, after_seq: int | None = None, **filters: Unpack[Filters]
    ) -> Iterator[bytes]:
        """Stream matching entries oldest first as their exact NDJSON bytes, past ``after_seq``.

        The lines are the entries as stored (what their leaf hashes cover), without the newline.
        """
        call = self._build.export("ndjson", filters)
        if after_seq is not None:
            call = replace(call, params=(*call.params, ("after_seq", str(after_seq))))
        return self._lines(call)

    def export_blocks(
        self, *, after_seq: int | None = None, **filters: Unpack[Filters]
    ) -> Iterator[bytes]:
        """Stream matching entries as blocks of whole NDJSON lines, each ending in a newline.

        For tools that handle many entries at a time (``trailkeep export``): a block is about
        a mebibyte, one bytes object instead of one per entry.
        """
        call = self._build.export("ndjson", filters)
        if after_seq is not None:
            call = replace(call, params=(*call.params, ("after_seq", str(after_seq))))
        return self._blocks(call)

    def _lines(self, call: Call) -> Iterator[bytes]:
        for block in self._blocks(call):
            yield from (line for line in block.split(b"\n") if line)

    def _blocks(self, call: Call, size: int = BLOCK_BYTES) -> Iterator[bytes]:
        response = self._client.send(call)
        held: list[bytes] = []
        count = 0
        try:
            for chunk in response.iter_bytes():
                held.append(chunk)
                count += len(chunk)
                if count < size:
                    continue
                data = b"".join(held)
                cut = data.rfind(b"\n") + 1
                held, count = [data[cut:]], len(data) - cut
                if cut:
                    yield _without_blank_lines(data[:cut])
            rest = b"".join(held)
            if rest.strip():
                yield _without_blank_lines(rest if rest.endswith(b"\n") else rest + b"\n")
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                "connection_failed", None, f"the export stream broke: {exc}"
            ) from exc
        finally:
            response.close()

    def _records(self, call: Call, csv: bool) -> Iterator[str]:
        response = self._client.send(call)
        records = Records(csv)
        try:
            for chunk in response.iter_text():
                yield from records.feed(chunk)
            yield from records.end()
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                "connection_failed", None, f"the export stream broke: {exc}"
            ) from exc
        finally:
            response.close()


class EntryStream:
    """The entries of one live-stream connection; ``last_seq`` is where to resume from."""

    def __init__(self, response: httpx.Response) -> None:
        """Read ``response``, an open live stream."""
        self._response = response
        self._chunks = response.iter_bytes()
        self._reader = StreamReader()

    @property
    def last_seq(self) -> int | None:
        """The seq to resume after (``last_event_id``), once the stream named one."""
        return self._reader.last_seq

    def __iter__(self) -> EntryStream:
        """The stream is its own iterator."""
        return self

    def __next__(self) -> Entry:
        """The next entry; ``StopIteration`` when the server ended the stream."""
        try:
            while (data := self._reader.next_data()) is None:
                if self._reader.ended:
                    break
                self._reader.feed(next(self._chunks, None))
            else:
                return entry_of(data.encode())
        except httpx.TransportError as exc:
            self.close()
            raise ConnectionFailed(
                "connection_failed", None, f"the live stream broke: {exc}"
            ) from exc
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Hang up."""
        self._response.close()

    def __enter__(self) -> EntryStream:
        """Use as a context manager that hangs up."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Hang up."""
        self.close()
