"""Request building and response parsing, shared by :class:`Client` and :class:`AsyncClient`.

Everything here is pure: a :class:`Call` says what to send (method, path, query, exact body
bytes, headers) and the ``*_of`` functions turn an answer's bytes into typed values. The two
clients differ only in how they send a call and wait between retries.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypedDict
from urllib.parse import quote

from trailkeep.log import seqs
from trailkeep.log.record import (
    EntryError,
    caller_changes,
    canonical,
    canonical_metadata,
    format_time,
    validate_write,
)

from .context import RequestContext
from .errors import TrailkeepError, local_error
from .models import (
    Entry,
    Erased,
    Event,
    GroupBy,
    GroupCount,
    InclusionProof,
    Kind,
    ProvenEntry,
    SignedCheckpoint,
    Stats,
)

ExportFormat = Literal["ndjson", "csv"]
MAX_PAGE: Final = 1000


class Filters(TypedDict, total=False):
    """Read filters (they combine with AND); ``action`` may list several (any of them)."""

    action: str | Sequence[str]
    exclude_action: str | Sequence[str]
    action_prefix: str
    actor: str
    target_type: str
    target_id: str
    kind: Kind
    since: datetime | str
    until: datetime | str
    changed_path: str


_FILTER_NAMES: Final = frozenset(Filters.__annotations__)


def filter_params(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query parameters of ``filters``; unknown names are refused before sending."""
    unknown = sorted(set(filters) - _FILTER_NAMES)
    if unknown:
        raise local_error(
            "invalid_request",
            f"{unknown[0]}: not a read filter (use {', '.join(sorted(_FILTER_NAMES))})",
        )
    params: list[tuple[str, str]] = []
    for name, value in filters.items():
        if value is None:
            continue
        if name in ("action", "exclude_action") and not isinstance(value, str):
            params.extend((name, str(a)) for a in value)
        elif isinstance(value, datetime):
            if value.tzinfo is None:
                raise local_error("invalid_request", f"{name}: the datetime needs a timezone")
            params.append((name, format_time(value)))
        else:
            params.append((name, str(value)))
    return params


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make: ``content`` is encoded once so every retry sends its bytes."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    # Sent instead when the server refuses a session that a middleware captured (it may be the
    # host app's own bearer token): the same write, recorded without the session.
    fallback: Call | None = None


def _encode(body: Any) -> bytes:
    # ensure_ascii=False keeps the bytes short; allow_nan=False refuses what JSON cannot carry.
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise local_error("invalid_request", f"the body is not valid JSON: {exc}") from None


def event_of(item: Event | Mapping[str, Any]) -> Event:
    """An :class:`Event` from an ``Event`` or a mapping of its fields."""
    if isinstance(item, Event):
        return item
    if not isinstance(item, Mapping):
        raise local_error("invalid_request", "each event must be an Event or a mapping")
    try:
        return Event(**item)
    except TypeError as exc:
        raise local_error("invalid_request", f"event: {exc}") from None


def checked_body(event: Event, where: str = "", metadata_max_bytes: int | None = None) -> Any:
    """The event's body, refused locally by the server's own rules (action, sizes, nesting)."""
    body = event.body()
    try:
        # Without a configured limit only nesting and encodability are checked here: the
        # server's limit is configurable and it has the last word.
        validated = validate_write(body, where)
        changes = caller_changes(validated)
        spent = len(canonical(changes, "changes")) if changes else 0
        canonical_metadata(body.get("metadata"), metadata_max_bytes or sys.maxsize, spent)
    except EntryError as exc:
        detail = exc.detail if exc.detail.startswith(where) else where + exc.detail
        raise local_error(exc.code, detail) from None
    return body


_JWT_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
log = logging.getLogger("trailkeep.sdk")
_warned: set[str] = set()


def _is_session_like(token: str) -> bool:
    """Whether a captured token can be a Trailkeep session: a printable three-part JWT."""
    parts = token.split(".")
    return len(parts) == 3 and all(_JWT_SEGMENT.fullmatch(part) for part in parts)


def _warn_once(reason: str, what: str) -> None:
    # Once per process and reason: a host app that sends its own tokens would see it on every
    # request otherwise. The fix is in the middleware's options (session_header=None).
    if reason not in _warned:
        _warned.add(reason)
        log.warning(
            "%s: entries are recorded without it (set session_header=None on the middleware "
            "if your app's bearer tokens are its own)",
            what,
        )


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key (a random UUID), kept across one write's retries."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Builder:
    """Builds the calls of one app's API."""

    app: str
    metadata_max_bytes: int | None = None

    @property
    def base(self) -> str:
        """The path prefix of the app's routes."""
        return f"/v1/apps/{quote(self.app, safe='')}"

    def _write(
        self, path: str, body: Any, context: RequestContext, idempotency_key: str | None
    ) -> Call:
        if context.captured and context.session and not _is_session_like(context.session):
            _warn_once("not_a_session", "the request's bearer token is not a Trailkeep session")
            context = context.without_session()
        key = idempotency_key or new_idempotency_key()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            **context.headers(),
        }
        for name in ("Idempotency-Key", "Trailkeep-Session", "Trailkeep-Client-IP"):
            value = headers.get(name, "")
            if not value.isprintable() or not value.isascii():  # the user agent is made safe
                raise local_error("invalid_request", f"{name}: printable ASCII only")
        fallback = None
        if context.captured and context.session:
            fallback = self._write(path, body, context.without_session(), key)
        return Call("POST", path, content=_encode(body), headers=headers, fallback=fallback)

    def log(self, event: Event, context: RequestContext, idempotency_key: str | None) -> Call:
        """Append one entry."""
        body = checked_body(event, "", self.metadata_max_bytes)
        return self._write(f"{self.base}/events", body, context, idempotency_key)

    def log_many(
        self,
        events: Iterable[Event | Mapping[str, Any]],
        context: RequestContext,
        idempotency_key: str | None,
    ) -> Call:
        """Append a batch, all or none."""
        bodies = [
            checked_body(event_of(item), f"events[{i}].", self.metadata_max_bytes)
            for i, item in enumerate(events)
        ]
        if not bodies:
            raise local_error("invalid_request", "events: give at least one event")
        return self._write(
            f"{self.base}/events/batch", {"events": bodies}, context, idempotency_key
        )

    def page(self, filters: Mapping[str, Any], limit: int, cursor: str | None) -> Call:
        """One page of a list, newest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise local_error("invalid_request", f"limit: 1 to {MAX_PAGE}")
        params = [*filter_params(filters), ("limit", str(limit))]
        if cursor is not None:
            params.append(("cursor", cursor))
        return Call("GET", f"{self.base}/events", tuple(params))

    def get(self, entry_id: str, proof: bool) -> Call:
        """One entry (with its proof and a signed checkpoint when ``proof``)."""
        if not entry_id:
            raise local_error("invalid_request", "id: must not be empty")
        params = (("proof", "true"),) if proof else ()
        return Call("GET", f"{self.base}/events/{quote(entry_id, safe='')}", params)

    def stats(self, group_by: GroupBy, filters: Mapping[str, Any]) -> Call:
        """Counts grouped by ``group_by``."""
        params = (*filter_params(filters), ("group_by", group_by))
        return Call("GET", f"{self.base}/stats", params)

    def export(self, format: ExportFormat, filters: Mapping[str, Any]) -> Call:
        """The export stream, oldest first."""
        if format not in ("ndjson", "csv"):
            raise local_error("invalid_request", "format: `ndjson` or `csv`")
        params = (*filter_params(filters), ("format", format))
        return Call("GET", f"{self.base}/export", params, stream=True)

    def erased(self, since_size: int, below_seq: int | None, cursor: str | None) -> Call:
        """One page of the seqs erased since the log had ``since_size`` entries."""
        params = [("since_size", str(since_size))]
        if below_seq is not None:
            params.append(("below_seq", str(below_seq)))
        if cursor is not None:
            params.append(("cursor", cursor))
        return Call("GET", f"{self.base}/erased", tuple(params))

    def stream(
        self, filters: Mapping[str, Any], after_seq: int | None, last_event_id: int | None
    ) -> Call:
        """The live stream of new entries (Server-Sent Events), resumed after a seq if given."""
        params = filter_params(filters)
        if after_seq is not None:
            params.append(("after_seq", str(after_seq)))
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        return Call("GET", f"{self.base}/events/stream", tuple(params), headers=headers,
                    stream=True)  # fmt: skip

    def checkpoint(self) -> Call:
        """The latest signed checkpoint."""
        return Call("GET", f"{self.base}/checkpoint")

    def consistency(self, old: int, new: int) -> Call:
        """The consistency proof between two tree sizes."""
        return Call(
            "GET", f"{self.base}/proofs/consistency", (("from", str(old)), ("to", str(new)))
        )

    def inclusion(self, seq: int, size: int) -> Call:
        """The inclusion proof of entry ``seq`` in the tree of ``size`` entries."""
        return Call(
            "GET", f"{self.base}/proofs/inclusion", (("seq", str(seq)), ("tree_size", str(size)))
        )

    @staticmethod
    def checkpoint_key() -> Call:
        """The server's note verifier key."""
        return Call("GET", "/v1/checkpoint-key")


def _json(content: bytes, what: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise TrailkeepError(
            "invalid_response", None, f"the server's {what} is not JSON", local=True
        ) from None


def _field(data: Any, name: str, what: str) -> Any:
    if not isinstance(data, Mapping) or name not in data:
        raise TrailkeepError(
            "invalid_response", None, f"the server's {what} has no `{name}`", local=True
        )
    return data[name]


def entry_of(content: bytes) -> Entry:
    """The entry a write or a get answered."""
    return Entry.from_json(_json(content, "entry"))


def entries_of(content: bytes) -> list[Entry]:
    """The entries a batch write answered, in seq order."""
    items = _field(_json(content, "batch answer"), "events", "batch answer")
    return [Entry.from_json(item) for item in items]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: entries newest first, and the cursor of the next page."""

    data: tuple[Entry, ...]
    next_cursor: str | None


def page_of(content: bytes) -> Page:
    """A list page."""
    data = _json(content, "page")
    items, cursor = _field(data, "data", "page"), _field(data, "next_cursor", "page")
    return Page(tuple(Entry.from_json(i) for i in items), cursor if cursor else None)


def proven_of(content: bytes) -> ProvenEntry:
    """An entry with its inclusion proof and signed checkpoint (``?proof=true``)."""
    data = _json(content, "proven entry")
    note = _field(data, "checkpoint", "proven entry")
    if not isinstance(note, str):
        raise TrailkeepError("invalid_response", None, "the checkpoint is not text", local=True)
    return ProvenEntry(
        entry=Entry.from_json(_field(data, "entry", "proven entry")),
        proof=InclusionProof.from_json(_field(data, "proof", "proven entry")),
        checkpoint=SignedCheckpoint.parse(note),
    )


def stats_of(content: bytes) -> Stats:
    """Counts per group."""
    data = _json(content, "stats")
    groups = tuple(
        GroupCount(key=g.get("key"), count=int(g.get("count", 0)))
        for g in _field(data, "groups", "stats")
    )
    return Stats(group_by=str(_field(data, "group_by", "stats")), groups=groups)


class ErasedPages:
    """The pages of ``GET .../erased`` as they come: the first page's size, every run."""

    def __init__(self) -> None:
        """Nothing read yet: the first page is asked without a cursor."""
        self.more = True
        self.cursor: str | None = None
        self._size: int | None = None
        self._runs: list[list[int]] = []

    def add(self, content: bytes) -> None:
        """Take one page; ``more`` and ``cursor`` say whether and how to ask for the next."""
        data = _json(content, "erased")
        self._runs.extend([int(a), int(b)] for a, b in _field(data, "seq_ranges", "erased"))
        if self._size is None:  # later pages may be ahead: the question starts from the first
            self._size = int(_field(data, "size", "erased"))
        cursor = _field(data, "next_cursor", "erased")
        self.cursor = None if cursor is None else str(cursor)
        self.more = self.cursor is not None

    def result(self) -> Erased:
        """Every page's runs, merged."""
        return Erased(self._size or 0, seqs.normalized(self._runs))


class Records:
    """Cuts a streamed export into records: NDJSON lines, or CSV records.

    Lines end at ``\\n`` only, and a CSV record spans lines while a quoted field is open (the
    server's CSV quotes any field holding a newline or a quote, doubling quotes inside).
    """

    def __init__(self, csv: bool) -> None:
        """Start with nothing pending."""
        self._csv = csv
        self._rest = ""
        self._pending: list[str] = []
        self._quotes = 0

    def _records(self, lines: Iterable[str]) -> list[str]:
        out: list[str] = []
        for line in lines:
            if not self._csv:
                if line:
                    out.append(line)
                continue
            self._pending.append(line)
            self._quotes += line.count('"')
            if self._quotes % 2 == 0:  # an odd count of quotes means a field is still open
                out.append("\n".join(self._pending))
                self._pending, self._quotes = [], 0
        return out

    def feed(self, chunk: str) -> list[str]:
        """The records that ``chunk`` completes."""
        *lines, self._rest = (self._rest + chunk).split("\n")
        return self._records(lines)

    def end(self) -> list[str]:
        """Whatever is left once the stream ended."""
        out = self._records([self._rest] if self._rest else [])
        if self._pending:
            out.append("\n".join(self._pending))
        self._rest, self._pending, self._quotes = "", [], 0
        return out
