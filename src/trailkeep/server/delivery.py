"""Webhook delivery: a background task of ``trailkeep serve`` (DESIGN §6, Standard Webhooks).

Each destination is delivered by one task at a time on one node, which holds the destination's
lease (a row with an expiry, renewed at each step, taken over by another node once it lapses).
A task sends the destination's queued ``audit.erased`` notices first, then batches of up to
:data:`BATCH_MAX` matching entries after its cursor, each only once the one before succeeded
(2xx): the cursor, in the database, moves on only then. A failed batch is pinned (its id and
last seq) and retried, with the same ``webhook-id`` and entries, after an exponential backoff
with jitter (or the destination's ``Retry-After``); 410 disables the destination, and so does a
schedule run out. Every task has its own timeout and the tasks are bounded in number, so a slow
or dead destination holds up neither writes nor other destinations.

A batch costs one write of bookkeeping (``Store.bookkeeping``: no fsync, see there): the
attempt's outcome, the cursor and the lease's renewal together. A task that has caught up
waits for this node's next commit to the app (``wake``) for up to the poll interval before it
lets the destination go, so that under a steady stream of writes each batch leaves within
milliseconds of its entries' commit, with no lease taken and given back in between.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import itertools
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import orjson

from trailkeep import __version__
from trailkeep.log import ocsf
from trailkeep.log.record import format_time
from trailkeep.server.egress import EgressError, pinned, resolve
from trailkeep.server.governance.webhooks import ALLOW_PRIVATE, filters_of
from trailkeep.server.ids import new_id
from trailkeep.server.settings import Settings
from trailkeep.server.store import Store
from trailkeep.server.store import webhooks as rows

log = logging.getLogger(__name__)

BATCH_MAX: Final = 100
TRIM_EVERY: Final = 16  # settles between two trims of the recent deliveries kept
LOOK_GAP: Final = 0.01  # seconds between two looks for due destinations, at the least
DELAY_CAP: Final = 12 * 3600.0  # no single wait longer than this
ERROR_MAX: Final = 500  # characters of an error kept


def schedule(base: float, total: float) -> list[float]:
    """Waits before each retry: ``base`` doubling (at most 12 h) until they add up to ``total``."""
    delays: list[float] = []
    while sum(delays) < total:
        delays.append(min(base * 2 ** len(delays), DELAY_CAP))
    return delays


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of a message: ``v1,`` and HMAC-SHA256 over ``id.timestamp.body``
    with the secret's bytes (the base64 after ``whsec_``), in base64."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


@dataclass(frozen=True, slots=True)
class Message:
    """One thing to send: a batch of entries (``batch_last``) or a notice (``notice_id``)."""

    id: str
    type: str
    body: bytes
    first_seq: int | None
    last_seq: int | None
    notice_id: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A message ready to go: the addresses checked for it, or why its URL is refused."""

    message: Message
    addresses: list[str]
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a send went: the status (None: no answer) and the error, if it failed."""

    status: int | None
    error: str | None
    wait: float | None  # what the destination's Retry-After asked for


class Deliverer:
    """This node's webhook deliveries: finds due destinations, leases them, sends."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._node = new_id("node")
        self._schedule = schedule(settings.webhook_retry_base, settings.webhook_retry_total)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._settles = itertools.count()
        self._woken: asyncio.Event | None = None  # the loop's: some app's log grew
        self._waiting: dict[str, set[asyncio.Event]] = {}  # caught-up tasks, by app

    def wake(self, app_ids: set[str]) -> None:
        """These apps' logs grew on this node (called on the event loop after each commit)."""
        if self._woken is not None:
            self._woken.set()
        for app_id in app_ids:
            for event in self._waiting.get(app_id, ()):
                event.set()

    async def start(self) -> None:
        """Start looking for due destinations."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._settings.webhook_timeout),
            follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self._settings.webhook_concurrency),
        )  # fmt: skip
        self._woken = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="trailkeep-webhooks")

    async def stop(self) -> None:
        """Stop every delivery and give the leases back."""
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    async def _loop(self) -> None:
        assert self._woken is not None
        while True:
            try:
                await self._tick()
            except Exception:
                log.exception("looking for webhook deliveries failed; trying again shortly")
            # Another node's entries (or a retry coming due) are found by the poll; this
            # node's own, at once. At most one look per LOOK_GAP however fast the commits come.
            await asyncio.sleep(LOOK_GAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._settings.webhook_poll_interval)
            self._woken.clear()

    async def _tick(self) -> None:
        free = self._settings.webhook_concurrency - len(self._running)
        if free <= 0:
            return
        found = await asyncio.to_thread(self._due, free + len(self._running))
        for hook_id in found:
            if hook_id in self._running or len(self._running) >= self._settings.webhook_concurrency:
                continue
            if not await asyncio.to_thread(self._lease, hook_id):
                continue  # another node delivers it
            task = asyncio.create_task(self._drive(hook_id), name=f"trailkeep-webhook-{hook_id}")
            self._running[hook_id] = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        for hook_id, running in list(self._running.items()):
            if running is task:
                del self._running[hook_id]

    # -- one destination -----------------------------------------------------------------

    async def _drive(self, hook_id: str) -> None:
        woken = asyncio.Event()
        app_id: str | None = None
        try:
            hook = await asyncio.to_thread(self._renewed, hook_id)
            step: Step | None = None
            while hook is not None and hook.status == "active":
                if hook.next_attempt_at is not None and hook.next_attempt_at > datetime.now(UTC):
                    return
                if app_id is None:
                    app_id = hook.app_id
                    self._waiting.setdefault(app_id, set()).add(woken)
                if step is None:
                    woken.clear()
                    step = await asyncio.to_thread(self._prepare, hook)
                    if step is None:
                        # Caught up: the next commit to the app wakes this task; none within
                        # the poll interval, and the destination is let go for the loop to find.
                        try:
                            await asyncio.wait_for(
                                woken.wait(), self._settings.webhook_poll_interval
                            )
                        except TimeoutError:
                            return
                        hook = await asyncio.to_thread(self._get, hook_id)
                        continue
                woken.clear()
                hook, step = await self._deliver(hook, step)
        except Exception:
            log.exception("delivering webhook %s failed; trying again shortly", hook_id)
        finally:
            if app_id is not None:
                self._waiting.get(app_id, set()).discard(woken)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(self._release, hook_id))

    async def _deliver(self, hook: rows.Hook, step: Step) -> tuple[rows.Hook | None, Step | None]:
        """Send one message and settle it: the destination as it is then, and its next step
        (None, None: stop, for a retry later or because another node took over)."""
        message = step.message
        after = replace(
            hook, cursor=hook.cursor if message.last_seq is None else message.last_seq,
            attempts=0, last_error=None, next_attempt_at=None, batch_id=None, batch_last=None,
        )  # fmt: skip
        # The next batch is read while this one is on its way (it is sent only once this one
        # succeeded). Not after a notice: until it is settled, the notice is still queued.
        ahead = None
        if message.notice_id is None:
            ahead = asyncio.ensure_future(asyncio.to_thread(self._prepare, after, False))
        try:
            outcome = await self._send(hook, step)
            settled = await asyncio.to_thread(self._settle, hook, message, outcome)
            if not settled or outcome.error is not None:
                return None, None
            if ahead is None:
                return after, await asyncio.to_thread(self._prepare, after)
            return after, await ahead
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()

    async def _send(self, hook: rows.Hook, step: Step) -> Outcome:
        assert self._client is not None
        assert self._store.secrets is not None
        if step.refused is not None:
            return Outcome(None, f"url: {step.refused}", None)
        message = step.message
        try:
            target, extra, extensions = hook.url, {}, {}
            if step.addresses:
                # To the address just checked, not one a rebinding DNS answers with next.
                target, host, name = pinned(hook.url, step.addresses[0])
                extra, extensions = {"host": host}, {"sni_hostname": name}
            secret = self._store.secrets.open(
                hook.sealed_secret, rows.secret_context(hook.app_id, hook.id)
            )
            stamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": f"trailkeep-webhooks/{__version__}",
                "webhook-id": message.id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign(secret, message.id, stamp, message.body),
            }
            response = await asyncio.wait_for(
                self._client.post(
                    target, content=message.body, headers=headers | extra, extensions=extensions
                ),
                self._settings.webhook_timeout,
            )
        except TimeoutError:
            return Outcome(None, f"no answer within {self._settings.webhook_timeout:g} s", None)
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_MAX], None)
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(status, None, None)
        return Outcome(status, f"HTTP {status}", retry_after(response.headers.get("retry-after")))

    # -- in worker threads -----------------------------------------------------------------

    def _due(self, limit: int) -> list[str]:
        with self._store.reader_engine.connect() as c:
            return rows.due(c, datetime.now(UTC), limit)

    def _lease(self, hook_id: str) -> bool:
        now = datetime.now(UTC)
        with self._store.bookkeeping.begin() as c:
            return rows.take_lease(c, hook_id, self._node, now, self._lease_end(now))

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.webhook_lease_seconds)

    def _renewed(self, hook_id: str) -> rows.Hook | None:
        if not self._lease(hook_id):
            return None
        return self._get(hook_id)

    def _get(self, hook_id: str) -> rows.Hook | None:
        with self._store.reader_engine.connect() as c:
            return rows.get(c, hook_id)

    def _release(self, hook_id: str) -> None:
        with self._store.bookkeeping.begin() as c:
            rows.release(c, hook_id, self._node)

    def _prepare(self, hook: rows.Hook, skip: bool = True) -> Step | None:
        """The next message and where to send it, or None when there is nothing to send.

        ``skip`` lets it move the cursor past entries that match no filter: never while the
        batch before is unsettled (a failure must find the cursor where it was).
        """
        message = self._next(hook, skip)
        if message is None:
            return None
        try:
            # Again before each send: the host's addresses may have changed since.
            allow = self._settings.webhook_allow_private
            return Step(message, resolve(hook.url, allow, ALLOW_PRIVATE))
        except EgressError as exc:
            return Step(message, [], str(exc))

    def _next(self, hook: rows.Hook, skip: bool) -> Message | None:
        """The destination's next message: a queued notice, the batch it retries, or a new one."""
        # One snapshot: the size and the entries below it agree, and one connection serves all.
        with self._store.snapshot() as c:
            notice = rows.first_notice(c, hook.id)
            if notice is not None:
                notice_id, ranges, erased_by = notice
                data: dict[str, Any] = {"app_id": hook.app_id, "seq_ranges": ranges,
                                        "erased_by": erased_by}  # fmt: skip
                body = _body("audit.erased", data)
                return Message(notice_id, "audit.erased", body, None, None, notice_id)
            size = rows.log_size(c, hook.app_id)
            filters = filters_of(hook.filter)
            found = self._store.page(hook.app_id, filters, hook.cursor, BATCH_MAX, False, c)
        if hook.batch_last is not None:
            found = [(seq, entry) for seq, entry in found if seq <= hook.batch_last]
        if not found:
            # Nothing after the cursor matches: move it past what was looked at.
            if skip and size - 1 > hook.cursor:
                with self._store.bookkeeping.begin() as c:
                    rows.fenced_update(
                        c,
                        hook,
                        self._node,
                        {"cursor": size - 1, "batch_id": None, "batch_last": None},
                    )
            return None  # fmt: skip
        first, last = found[0][0], hook.batch_last if hook.batch_last is not None else found[-1][0]
        # Pinned when it first fails (_settle), so that every retry is the same message. A node
        # that dies mid-send pins nothing: its successor sends the entries again, perhaps with
        # more after them, under the id of that batch (at least once; receivers dedupe by seq).
        message_id = hook.batch_id or f"msg_{hook.id}_{hook.generation}_{first}_{last}"
        if hook.format == "ocsf":
            # The same mapping as the export's format=ocsf; stubs have no OCSF event.
            events = [ocsf.event(orjson.loads(entry)) for _, entry in found]
            kept = [event for event in events if event is not None]
            data = {"app_id": hook.app_id, "entries": kept, "tree_size": size}
            body = _body("audit.entries", data)
        else:
            body = _entries_body(hook.app_id, [entry for _, entry in found], size)
        return Message(message_id, "audit.entries", body, first, last)

    def _settle(self, hook: rows.Hook, message: Message, outcome: Outcome) -> bool:
        """Record the attempt; False if this node no longer delivers the destination."""
        status, error, wait = outcome.status, outcome.error, outcome.wait
        now = datetime.now(UTC)
        values: dict[str, Any] = {"lease_until": self._lease_end(now)}  # renewed as it goes
        if error is None:
            values |= {"attempts": 0, "last_error": None, "next_attempt_at": None}
            if message.notice_id is None:
                values |= {"cursor": message.last_seq, "batch_id": None, "batch_last": None}
        else:
            attempts = hook.attempts + 1
            values |= {"attempts": attempts, "last_error": error}
            if message.notice_id is None:
                values |= {"batch_id": message.id, "batch_last": message.last_seq}
            if status == 410:
                values |= {"status": "disabled",
                           "disabled_reason": "the destination answered 410 Gone"}  # fmt: skip
            elif attempts > len(self._schedule):
                values |= {"status": "disabled", "disabled_reason": (
                    f"{attempts} attempts failed over "
                    f"{sum(self._schedule):g} s of retries; the last: {error}")}  # fmt: skip
            else:
                delay = self._schedule[attempts - 1] * random.uniform(0.8, 1.2)
                if wait is not None:
                    delay = max(delay, min(wait, DELAY_CAP))
                values["next_attempt_at"] = now + timedelta(seconds=delay)
        with self._store.bookkeeping.begin() as c:
            if not rows.fenced_update(c, hook, self._node, values):
                return False  # a replay overtook this delivery, or another node took over
            if error is None and message.notice_id is not None:
                rows.drop_notice(c, message.notice_id)
            rows.add_delivery(c, {
                "webhook_id": hook.id, "message_id": message.id, "type": message.type,
                "first_seq": message.first_seq, "last_seq": message.last_seq,
                "status_code": status, "error": error, "at": now,
            }, trim=next(self._settles) % TRIM_EVERY == 0)  # fmt: skip
        return True


def _body(kind: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "timestamp": format_time(datetime.now(UTC)), "data": data})


def _entries_body(app_id: str, entries: list[bytes], size: int) -> bytes:
    """What ``_body`` makes of these entries, with each entry's stored bytes as they are.

    Entries are JSON objects already (what ``GET /events/{id}`` returns): parsing them only to
    encode them again was most of a batch's cost.
    """
    return b"".join((
        b'{"type":"audit.entries","timestamp":', orjson.dumps(format_time(datetime.now(UTC))),
        b',"data":{"app_id":', orjson.dumps(app_id), b',"entries":[', b",".join(entries),
        b'],"tree_size":', str(size).encode(), b"}}",
    ))  # fmt: skip
