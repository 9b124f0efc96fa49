"""Webhook destinations, their cursors, leases, attempts and erasure notices, in SQL.

Every change a delivering node makes to a destination is fenced: it holds only while the node
still holds the destination's lease and no replay moved the cursor since (``generation``), so a
node that lost its lease, or a delivery that a replay overtook, cannot move a cursor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, or_, select, update

from trailkeep.server.ids import new_id
from trailkeep.server.store import schema
from trailkeep.server.store.append import utc

#: Attempts kept per destination for ``GET .../deliveries``; older ones are dropped.
DELIVERIES_KEPT = 100

hooks = schema.webhooks
heads = schema.log_heads
notices = schema.webhook_notices


@dataclass(frozen=True, slots=True)
class Hook:
    """A webhook destination as stored (its secret still sealed)."""

    id: str
    app_id: str
    url: str
    filter: dict[str, Any]
    format: str
    sealed_secret: str
    status: str
    disabled_reason: str | None
    cursor: int
    generation: int
    batch_id: str | None
    batch_last: int | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """The destination as the API and the CLI show it: never its secret."""
        return {
            "id": self.id, "url": self.url, "filter": self.filter, "format": self.format,
            "status": self.status, "disabled_reason": self.disabled_reason,
            "cursor": self.cursor, "attempts": self.attempts, "last_error": self.last_error,
            "next_attempt_at": None if self.next_attempt_at is None
            else self.next_attempt_at.isoformat(),
            "created_at": self.created_at.isoformat(),
        }  # fmt: skip


def _hook(row: Any) -> Hook:
    return Hook(
        id=row.id, app_id=row.app_id, url=row.url, filter=json.loads(row.filter),
        format=row.format, sealed_secret=row.secret, status=row.status,
        disabled_reason=row.disabled_reason, cursor=row.cursor, generation=row.generation,
        batch_id=row.batch_id, batch_last=row.batch_last, attempts=row.attempts,
        next_attempt_at=utc(row.next_attempt_at), last_error=row.last_error,
        created_at=utc(row.created_at) or datetime.now(UTC),
    )  # fmt: skip


def secret_context(app_id: str, hook_id: str) -> str:
    """What a webhook's sealed secret is bound to: its app and destination."""
    return f"apps/{app_id}/webhooks/{hook_id}/secret"


def insert_hook(c: Connection, values: dict[str, Any]) -> None:
    """Store a new destination (``filter`` as a dict; ``secret`` sealed already)."""
    c.execute(insert(hooks).values({**values, "filter": json.dumps(values["filter"])}))


def get(c: Connection, hook_id: str, app_id: str | None = None) -> Hook | None:
    """One destination (of ``app_id``, when given), or None."""
    query = select(hooks).where(hooks.c.id == hook_id)
    if app_id is not None:
        query = query.where(hooks.c.app_id == app_id)
    row = c.execute(query).one_or_none()
    return None if row is None else _hook(row)


def of_app(c: Connection, app_id: str) -> list[Hook]:
    """Every destination of an app, oldest first."""
    rows = c.execute(select(hooks).where(hooks.c.app_id == app_id).order_by(hooks.c.created_at))
    return [_hook(row) for row in rows]


def reseal(c: Connection, hook_id: str, sealed: str) -> None:
    """Store a destination's secret sealed again (under a new secret key)."""
    c.execute(update(hooks).where(hooks.c.id == hook_id).values(secret=sealed))


def remove(c: Connection, app_id: str, hook_id: str) -> bool:
    """Delete a destination, its attempts and its notices; False if there was none."""
    gone = c.execute(delete(hooks).where(hooks.c.id == hook_id, hooks.c.app_id == app_id))
    if gone.rowcount != 1:
        return False
    c.execute(
        delete(schema.webhook_deliveries).where(schema.webhook_deliveries.c.webhook_id == hook_id)
    )
    c.execute(delete(schema.webhook_notices).where(schema.webhook_notices.c.webhook_id == hook_id))
    return True


def replay(c: Connection, app_id: str, hook_id: str, from_seq: int) -> bool:
    """Move the cursor back to just before ``from_seq`` and re-enable; False if no such hook."""
    done = c.execute(
        update(hooks)
        .where(hooks.c.id == hook_id, hooks.c.app_id == app_id)
        .values(
            cursor=from_seq - 1, generation=hooks.c.generation + 1, status="active",
            disabled_reason=None, batch_id=None, batch_last=None, attempts=0,
            next_attempt_at=None, last_error=None,
        )
    )  # fmt: skip
    return done.rowcount == 1


def queue_erased(
    c: Connection, app_id: str, ranges: list[list[int]], erased_by: str, size: int
) -> None:
    """Queue an ``audit.erased`` notice for each destination of the app (in the erasing tx).

    ``size`` is the app's log size under the erasing transaction's lock.
    """
    ids = c.execute(select(hooks.c.id).where(hooks.c.app_id == app_id)).scalars().all()
    if not ids or not ranges:
        return
    now = datetime.now(UTC)
    c.execute(
        insert(schema.webhook_notices),
        [
            {"id": new_id("whn"), "webhook_id": hook_id, "app_id": app_id,
             "seq_ranges": json.dumps(ranges), "erased_by": erased_by,
             "at_size": size, "created_at": now}
            for hook_id in ids
        ],
    )  # fmt: skip


def first_notice(c: Connection, hook_id: str) -> tuple[str, list[list[int]], str] | None:
    """The oldest queued notice of a destination: (id, seq ranges, erased_by), or None."""
    notices = schema.webhook_notices
    row = c.execute(
        select(notices.c.id, notices.c.seq_ranges, notices.c.erased_by)
        .where(notices.c.webhook_id == hook_id)
        .order_by(notices.c.at_size, notices.c.created_at, notices.c.id)
        .limit(1)
    ).one_or_none()
    return None if row is None else (row.id, json.loads(row.seq_ranges), row.erased_by)


def log_size(c: Connection, app_id: str) -> int:
    """The app's log size."""
    return int(c.execute(select(heads.c.size).where(heads.c.app_id == app_id)).scalar() or 0)


def due(c: Connection, now: datetime, limit: int) -> list[str]:
    """Active destinations whose next attempt is due and whose lease is free or lapsed."""
    return list(
        c.execute(
            select(hooks.c.id)
            .join(heads, heads.c.app_id == hooks.c.app_id)
            .where(
                hooks.c.status == "active",
                or_(hooks.c.next_attempt_at.is_(None), hooks.c.next_attempt_at <= now),
                or_(hooks.c.lease_owner.is_(None), hooks.c.lease_until < now),
                # Something to send: entries past the cursor, or a queued notice.
                or_(
                    hooks.c.cursor < heads.c.size - 1,
                    exists().where(notices.c.webhook_id == hooks.c.id),
                ),
            )
            .order_by(hooks.c.next_attempt_at)
            .limit(limit)
        ).scalars()
    )


def take_lease(c: Connection, hook_id: str, node: str, now: datetime, until: datetime) -> bool:
    """Take (or renew) the destination's lease; False if another node holds it.

    One UPDATE whose condition the database re-checks under the row's lock, so of two nodes
    racing for a lapsed lease exactly one wins, on SQLite and PostgreSQL alike.
    """
    done = c.execute(
        update(hooks)
        .where(
            hooks.c.id == hook_id,
            or_(hooks.c.lease_owner.is_(None), hooks.c.lease_owner == node,
                hooks.c.lease_until < now),
        )
        .values(lease_owner=node, lease_until=until)
    )  # fmt: skip
    return done.rowcount == 1


def release(c: Connection, hook_id: str, node: str) -> None:
    """Give the lease back, if this node still holds it."""
    c.execute(
        update(hooks)
        .where(hooks.c.id == hook_id, hooks.c.lease_owner == node)
        .values(lease_owner=None, lease_until=None)
    )


def fenced_update(c: Connection, hook: Hook, node: str, values: dict[str, Any]) -> bool:
    """Change a destination if this node holds its lease and no replay overtook ``hook``."""
    done = c.execute(
        update(hooks)
        .where(
            hooks.c.id == hook.id, hooks.c.lease_owner == node,
            hooks.c.generation == hook.generation,
        )
        .values(values)
    )  # fmt: skip
    return done.rowcount == 1


def drop_notice(c: Connection, notice_id: str) -> None:
    """A delivered notice goes."""
    c.execute(delete(schema.webhook_notices).where(schema.webhook_notices.c.id == notice_id))


def add_delivery(c: Connection, values: dict[str, Any], trim: bool = True) -> None:
    """Record one attempt; with ``trim``, keep only the newest :data:`DELIVERIES_KEPT`.

    Trimming now and then (the caller decides) is enough: reads show the newest ones only.
    """
    table = schema.webhook_deliveries
    c.execute(insert(table).values({"id": new_id("whd"), **values}))
    if not trim:
        return
    hook = table.c.webhook_id == values["webhook_id"]
    # The time of the newest one not kept, by the (webhook_id, at) index; older ones go.
    cut = select(table.c.at).where(hook).order_by(table.c.at.desc()).offset(DELIVERIES_KEPT)
    c.execute(delete(table).where(hook, table.c.at <= cut.limit(1).scalar_subquery()))


def deliveries(c: Connection, hook_id: str, limit: int = DELIVERIES_KEPT) -> list[dict[str, Any]]:
    """A destination's recent attempts, newest first."""
    table = schema.webhook_deliveries
    rows = c.execute(
        select(table).where(table.c.webhook_id == hook_id).order_by(table.c.at.desc()).limit(limit)
    )
    return [
        {"message_id": row.message_id, "type": row.type, "first_seq": row.first_seq,
         "last_seq": row.last_seq, "status_code": row.status_code, "error": row.error,
         "at": (utc(row.at) or row.at).isoformat()}
        for row in rows
    ]  # fmt: skip
