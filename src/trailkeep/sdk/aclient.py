"""The asynchronous client: :class:`AsyncClient`, the twin of :class:`~trailkeep.sdk.Client`.

Requests are built and answers parsed by the same code (:mod:`trailkeep.sdk.build`); only
sending, waiting between retries and streaming are awaited here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
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


class AsyncClient:
    """An asyncio Trailkeep client for one app; see :class:`~trailkeep.sdk.Client`."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Configure the client; no request is made until a method is awaited."""
        self._core = Core(
            endpoint, app, key, verifier_key=verifier_key, retry=retry or RetryPolicy(),
            on_retry=on_retry, metadata_max_bytes=metadata_max_bytes,
        )  # fmt: skip
        self._http = httpx.AsyncClient(
            base_url=self._core.endpoint,
            headers=self._core.headers,
            timeout=timeout,
            transport=transport,
        )
        self._witness_lock = asyncio.Lock()
        self.audit = AsyncAudit(self)
        self.sessions = Sessions(app, session_secret)

    @property
    def app(self) -> str:
        """The app this client writes to and reads from."""
        return self._core.app

    async def send(self, call: Call) -> httpx.Response:
        """Send ``call``, retrying as the policy says; a non-2xx answer raises its error."""
        request = self._http.build_request(
            call.method, call.path, params=call.params, content=call.content, headers=call.headers
        )
        attempts = self._core.attempts(call)
        while True:
            try:
                response = await self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                await asyncio.sleep(attempts.after_error(exc))
                continue
            if response.is_success:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            delay = attempts.after_answer(response)
            if delay is None:
                error = error_of(response)
                fallback = self._core.fallback(call, error)
                if fallback is None:
                    raise error
                return await self.send(fallback)
            await asyncio.sleep(delay)

    async def checkpoint_key(self) -> str:
        """The trusted checkpoint verifier key (pinned, or fetched from the server once)."""
        verifier = self._core.verifier
        if verifier is None:
            answer = await self.send(self._core.builder.checkpoint_key())
            verifier = self._core.learn_verifier(text_of(answer.content, "key"))
        return verifier.verifier_key()

    async def checkpoint(self) -> SignedCheckpoint:
        """The app's latest checkpoint, its signature checked and consistent with earlier ones."""
        await self.checkpoint_key()
        assert self._core.verifier is not None
        answer = await self.send(self._core.builder.checkpoint())
        checkpoint = self._core.check_checkpoint(
            text_of(answer.content, "checkpoint"), self._core.verifier
        )
        await self._witness(checkpoint)
        return checkpoint

    async def verify_entry(self, entry: Entry | ProvenEntry) -> Verified:
        """Prove locally that ``entry`` is in the app's signed log; raises VerificationError."""
        if isinstance(entry, ProvenEntry):
            proven = entry
        else:
            proven = self._core.with_proof(entry, await self.audit.get(entry.id, proof=True))
        await self.checkpoint_key()
        verifier = self._core.verifier
        assert verifier is not None
        self._core.check_proven(proven, verifier)
        await self._witness(proven.checkpoint)
        return Verified(proven.entry, proven.checkpoint, verifier.name)

    async def consistency_proof(self, old: int, new: int) -> list[str]:
        """The server's RFC 9162 proof (hex hashes) that tree ``old`` is a prefix of ``new``."""
        answer = await self.send(self._core.builder.consistency(old, new))
        return consistency_path(answer.json())

    async def _witness(self, checkpoint: SignedCheckpoint) -> None:
        async with self._witness_lock:  # one proof at a time, so each is against the latest
            sizes = self._core.witness.needs_proof(checkpoint)
            path = None
            if sizes is not None:
                try:
                    path = await self.consistency_proof(*sizes)
                except (InvalidRequest, NotFound) as exc:
                    raise unproven(sizes, exc) from exc
            self._core.witness.accept(checkpoint, path)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        """Use as an async context manager that closes the client."""
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the client."""
        await self.aclose()


class AsyncAudit:
    """The app's audit log: ``await client.audit.log(...)`` and the reads."""

    def __init__(self, client: AsyncClient) -> None:
        """Bind to ``client``."""
        self._client = client
        self._core = client._core
        self._build = client._core.builder

    async def log(
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
        """Record one entry and return it as stored (see :meth:`Audit.log`)."""
        event = Event(
            action, target_type, target_id, metadata, project, server, request_id,
            changes=changes, before=before, after=after,
        )  # fmt: skip
        context = self._core.context(session, client_ip, user_agent)
        answer = await self._client.send(self._build.log(event, context, idempotency_key))
        return entry_of(answer.content)

    async def log_many(
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
        return await self.send_batch(events, context, idempotency_key)

    async def send_batch(
        self,
        events: Iterable[Event | Mapping[str, Any]],
        context: RequestContext,
        idempotency_key: str | None = None,
    ) -> list[Entry]:
        """Record a batch for exactly ``context`` (what :class:`AsyncAuditBuffer` uses)."""
        call = self._build.log_many(events, context, idempotency_key)
        return entries_of((await self._client.send(call)).content)

    async def page(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Unpack[Filters]
    ) -> Page:
        """One page of matching entries, newest first; pass ``next_cursor`` for the next."""
        return page_of((await self._client.send(self._build.page(filters, limit, cursor))).content)

    def list(self, *, page_size: int = 100, **filters: Unpack[Filters]) -> AsyncIterator[Entry]:
        """Every matching entry, newest first, following cursors (``async for``)."""
        self._build.page(filters, page_size, None)  # refuse bad filters now
        return self._iterate(page_size, filters)

    async def _iterate(self, page_size: int, filters: Filters) -> AsyncIterator[Entry]:
        cursor: str | None = None
        while True:
            page = await self.page(cursor=cursor, limit=page_size, **filters)
            for entry in page.data:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @overload
    async def get(self, entry_id: str, *, proof: Literal[False] = False) -> Entry: ...
    @overload
    async def get(self, entry_id: str, *, proof: Literal[True]) -> ProvenEntry: ...
    async def get(self, entry_id: str, *, proof: bool = False) -> Entry | ProvenEntry:
        """One entry; with ``proof=True`` also its inclusion proof and a signed checkpoint."""
        content = (await self._client.send(self._build.get(entry_id, proof))).content
        return proven_of(content) if proof else entry_of(content)

    async def erased(self, *, since_size: int = 0, below_seq: int | None = None) -> Erased:
        """The seqs erased (by retention or an erasure) since the log had ``since_size`` entries.

        Keep the returned ``size`` and pass it as ``since_size`` next time to learn only what
        was erased since; ``below_seq`` limits the answer to the entries a copy holds. This is
        how a copy of the log (a warehouse table) learns what to erase too.
        """
        pages = ErasedPages()
        while pages.more:
            call = self._build.erased(since_size, below_seq, pages.cursor)
            pages.add((await self._client.send(call)).content)
        return pages.result()

    async def stats(self, group_by: GroupBy = "action", **filters: Unpack[Filters]) -> Stats:
        """Counts of matching entries per action, actor, target type or day."""
        return stats_of((await self._client.send(self._build.stats(group_by, filters))).content)

    def export(
        self, format: ExportFormat = "ndjson", **filters: Unpack[Filters]
    ) -> AsyncIterator[str]:
        """Stream matching entries, oldest first (see :meth:`Audit.export`), ``async for``."""
        return self._records(self._build.export(format, filters), csv=format == "csv")

    async def export_entries(self, **filters: Unpack[Filters]) -> AsyncIterator[Entry]:
        """Stream matching entries as :class:`Entry` values, oldest first."""
        async for line in self.export("ndjson", **filters):
            yield entry_of(line.encode())

    async def stream(
        self, *, after_seq: int | None = None, last_event_id: int | None = None,
        **filters: Unpack[Filters],
    ) -> AsyncEntryStream:  # fmt: skip
        """New matching entries as they are appended, over one connection, oldest first.

        Awaiting it opens the connection (a refusal raises here); then ``async for`` the
        entries. As :meth:`Audit.stream`: ``after_seq`` or ``last_event_id`` first replays the
        stored entries after that seq; iteration ends when the server ends the stream; resume
        with its ``last_seq``; a broken connection raises :class:`ConnectionFailed`.
        """
        call = self._build.stream(filters, after_seq, last_event_id)
        return AsyncEntryStream(await self._client.send(call))

    async def _records(self, call: Call, csv: bool) -> AsyncIterator[str]:
        response = await self._client.send(call)
        records = Records(csv)
        try:
            async for chunk in response.aiter_text():
                for record in records.feed(chunk):
                    yield record
            for record in records.end():
                yield record
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                "connection_failed", None, f"the export stream broke: {exc}"
            ) from exc
        finally:
            await response.aclose()


class AsyncEntryStream:
    """The entries of one live-stream connection, ``async for``; ``last_seq`` is where to resume."""

    def __init__(self, response: httpx.Response) -> None:
        """Read ``response``, an open live stream."""
        self._response = response
        self._chunks = response.aiter_bytes()
        self._reader = StreamReader()

    @property
    def last_seq(self) -> int | None:
        """The seq to resume after (``last_event_id``), once the stream named one."""
        return self._reader.last_seq

    def __aiter__(self) -> AsyncEntryStream:
        """The stream is its own iterator."""
        return self

    async def __anext__(self) -> Entry:
        """The next entry; ``StopAsyncIteration`` when the server ended the stream."""
        try:
            while (data := self._reader.next_data()) is None:
                if self._reader.ended:
                    break
                self._reader.feed(await anext(self._chunks, None))
            else:
                return entry_of(data.encode())
        except httpx.TransportError as exc:
            await self.aclose()
            raise ConnectionFailed(
                "connection_failed", None, f"the live stream broke: {exc}"
            ) from exc
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Hang up."""
        await self._response.aclose()

    async def __aenter__(self) -> AsyncEntryStream:
        """Use as an async context manager that hangs up."""
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Hang up."""
        await self.aclose()
