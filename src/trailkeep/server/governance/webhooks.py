"""Webhook destinations of an app: made, listed, replayed and deleted, each change logged.

The secret is made here, shown once, and stored sealed under the node's secret key; the log
entries that record a change name the destination and its URL, never the secret.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from trailkeep.log.query import Filters, QueryError
from trailkeep.log.record import Actor, EntryError, EventWrite, Origin
from trailkeep.server.egress import EgressError, check_url
from trailkeep.server.governance.administer import Done, Forbidden, record
from trailkeep.server.ids import new_id
from trailkeep.server.store import Store
from trailkeep.server.store import webhooks as rows

URL_MAX: Final = 2_048
FORMATS: Final = ("trailkeep", "ocsf")  # entries as stored, or OCSF events (log/ocsf.py)
#: The filters a destination may have: those of a list, but time (a destination has no end).
FILTER_FIELDS: Final = ("action", "action_prefix", "actor", "target_type", "target_id", "kind")
ALLOW_PRIVATE: Final = "TRAILKEEP_WEBHOOK_ALLOW_PRIVATE"


def parse_url(value: Any, allow_private: bool) -> str:
    """A destination URL the egress guard lets through; ``EntryError`` naming ``url``."""
    if not isinstance(value, str) or not 1 <= len(value) <= URL_MAX:
        raise EntryError(f"url: a string of 1 to {URL_MAX} characters")
    try:
        check_url(value, allow_private, ALLOW_PRIVATE)
    except EgressError as exc:
        raise EntryError(f"url: {exc}") from None
    return value


def parse_filter(value: Any) -> dict[str, Any]:
    """A destination's filter, as a list's (no time bounds); ``EntryError`` naming the field."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EntryError('filter: an object of list filters, e.g. {"action_prefix": "user."}')
    for name, given in value.items():
        if name not in FILTER_FIELDS:
            raise EntryError(f"filter.{name}: unknown filter (one of {', '.join(FILTER_FIELDS)})")
        if name == "action":
            ok = (
                isinstance(given, list)
                and 1 <= len(given) <= 500
                and all(isinstance(a, str) and 1 <= len(a) <= 128 for a in given)
            )
        elif name == "kind":
            ok = given in ("admin", "user")
        else:
            ok = isinstance(given, str) and 1 <= len(given) <= 256
        if not ok or "\x00" in str(given):  # PostgreSQL text holds no NUL
            raise EntryError(f"filter.{name}: not a valid value")
    filters_of(value)
    return dict(value)


def filters_of(value: dict[str, Any]) -> Filters:
    """The stored filter as the store's ``Filters``."""
    try:
        return Filters(
            actions=tuple(value.get("action", ())), action_prefix=value.get("action_prefix"),
            actor=value.get("actor"), target_type=value.get("target_type"),
            target_id=value.get("target_id"), kind=value.get("kind"),
        )  # fmt: skip
    except QueryError as exc:
        raise EntryError(f"filter: {exc}") from None


def parse_format(value: Any) -> str:
    """``trailkeep`` (the default); ``EntryError`` naming ``format`` otherwise."""
    if value is None:
        return "trailkeep"
    if value not in FORMATS:
        raise EntryError(f"format: one of {', '.join(FORMATS)}")
    return str(value)


def parse_from_seq(value: Any) -> int:
    """A seq to replay from: a non-negative integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EntryError("from_seq: a non-negative integer")
    return value


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def shown_url(url: str) -> str:
    """The URL as a log entry records it: without its query or fragment (tokens live there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _known(hook_id: str) -> None:
    # Ids the server made never hold NUL, which PostgreSQL cannot even be asked about.
    if "\x00" in hook_id:
        raise LookupError(hook_id)


class Webhooks:
    """An app's webhook destinations, each change logged in the app's own log."""

    def __init__(self, store: Store, metadata_max_bytes: int = 10_240) -> None:
        self._store = store
        self._max = metadata_max_bytes

    def create(
        self, app_id: str, url: str, filter_: dict[str, Any], format_: str, by: Actor,
        origin: Origin,
    ) -> Done:  # fmt: skip
        """Make a destination; the result holds its secret, which is never shown again."""
        if self._store.secrets is None:
            raise Forbidden("a webhook needs the node's secret key", code="unavailable")
        hook_id, secret = new_id("wh"), new_secret()
        sealed = self._store.secrets.seal(secret, rows.secret_context(app_id, hook_id))
        with self._store.admin_tx() as tx:
            if tx.settings(app_id) is None:
                raise LookupError(app_id)
            # From the webhook.create entry on: what is appended from now is delivered.
            start = tx.log_size(app_id) - 1
            rows.insert_hook(tx.connection, {
                "id": hook_id, "app_id": app_id, "url": url, "filter": filter_,
                "format": format_, "secret": sealed, "status": "active", "cursor": start,
                "created_at": datetime.now(UTC),
            })  # fmt: skip
            event = EventWrite(
                action="webhook.create", target_type="webhook", target_id=hook_id,
                metadata={"url": shown_url(url), "filter": filter_, "format": format_},
            )  # fmt: skip
            entry = record(tx, app_id, event, by, origin, self._max)
            hook = rows.get(tx.connection, hook_id)
        assert hook is not None
        return Done(hook.public() | {"secret": secret}, (entry,))

    def all(self, app_id: str) -> list[dict[str, Any]]:
        """Every destination of the app (never a secret)."""
        with self._store.admin_view() as tx:
            if tx.settings(app_id) is None:
                raise LookupError(app_id)
            return [hook.public() for hook in rows.of_app(tx.connection, app_id)]

    def get(self, app_id: str, hook_id: str) -> dict[str, Any]:
        """One destination; ``LookupError`` if the app has none of that id."""
        _known(hook_id)
        with self._store.admin_view() as tx:
            hook = rows.get(tx.connection, hook_id, app_id)
        if hook is None:
            raise LookupError(hook_id)
        return hook.public()

    def deliveries(self, app_id: str, hook_id: str) -> list[dict[str, Any]]:
        """A destination's recent attempts, newest first."""
        _known(hook_id)
        with self._store.admin_view() as tx:
            if rows.get(tx.connection, hook_id, app_id) is None:
                raise LookupError(hook_id)
            return rows.deliveries(tx.connection, hook_id)

    def delete(self, app_id: str, hook_id: str, by: Actor, origin: Origin) -> Done:
        """Delete a destination (logged as ``webhook.delete``)."""
        _known(hook_id)
        with self._store.admin_tx() as tx:
            if tx.settings(app_id) is None or not rows.remove(tx.connection, app_id, hook_id):
                raise LookupError(hook_id)
            event = EventWrite(action="webhook.delete", target_type="webhook", target_id=hook_id)
            entry = record(tx, app_id, event, by, origin, self._max)
        return Done({"id": hook_id, "deleted": True}, (entry,))

    def replay(self, app_id: str, hook_id: str, from_seq: int, by: Actor, origin: Origin) -> Done:
        """Deliver again from ``from_seq`` on, re-enabling the destination (``webhook.replay``)."""
        _known(hook_id)
        with self._store.admin_tx() as tx:
            if tx.settings(app_id) is None:
                raise LookupError(app_id)
            size = tx.log_size(app_id)
            if from_seq > size:
                raise EntryError(f"from_seq: the log has {size} entries")
            if not rows.replay(tx.connection, app_id, hook_id, from_seq):
                raise LookupError(hook_id)
            event = EventWrite(
                action="webhook.replay", target_type="webhook", target_id=hook_id,
                metadata={"from_seq": from_seq},
            )  # fmt: skip
            entry = record(tx, app_id, event, by, origin, self._max)
            hook = rows.get(tx.connection, hook_id)
        assert hook is not None
        return Done(hook.public(), (entry,))
