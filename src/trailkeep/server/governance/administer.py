"""Changes to an app, each made with the entry that records it, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trailkeep.log.credentials import SCOPES
from trailkeep.log.record import Actor, EntryError, EventWrite, Origin, format_time, prepare
from trailkeep.server.auth import new_key, new_session_secret
from trailkeep.server.governance.settings import changes_of, shortens
from trailkeep.server.ids import new_entry_id, new_id
from trailkeep.server.ingest.commit import append_groups
from trailkeep.server.secrets import SecretBox
from trailkeep.server.store import AdminTx, AppendTx, KeyRecord, Store
from trailkeep.server.store.records import next_secret_context, session_secret_context

#: How long a shortened retention waits, over the API, before it takes effect (DESIGN §5).
RETENTION_CHANGE_DELAY = timedelta(hours=24)


class Forbidden(Exception):
    """The actor may not make this change; ``code`` is the API's stable error code."""

    def __init__(self, detail: str, code: str = "forbidden") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class Conflict(Exception):
    """The request cannot be carried out as things stand; ``code`` is the API's (409)."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: the full key is shown once and never stored, nor logged."""

    key_id: str
    key: str
    scopes: list[str]
    name: str | None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """What a change left: its result, and the entries that record it (none if nothing changed)."""

    result: Any
    entries: tuple[bytes, ...] = ()

    @property
    def entry(self) -> bytes | None:
        """The last entry the change appended, or None."""
        return self.entries[-1] if self.entries else None


# What a change does inside the transaction: given the app's settings, it makes the change and
# says what to record (or None when there was nothing to change), and what to hand back.
Change = Callable[[AdminTx, dict[str, Any]], tuple[EventWrite | None, list[dict[str, Any]], Any]]


class Administrator:
    """Changes apps' settings and keys, and logs each change in the app's own log."""

    def __init__(
        self,
        store: Store,
        metadata_max_bytes: int = 10_240,
        retention_change_delay: timedelta = RETENTION_CHANGE_DELAY,
    ) -> None:
        self._store = store
        self._max = metadata_max_bytes
        self._delay = retention_change_delay

    def settings(self, app_id: str) -> dict[str, Any]:
        """The app's settings, and the shorter retention that waits, if any."""
        with self._store.admin_view() as tx:
            found = tx.settings(app_id)
            if found is None:
                raise LookupError(app_id)
            return found | {"pending_retention": _pending_json(tx.pending_retention(app_id))}

    def update_settings(
        self,
        app_id: str,
        values: Mapping[str, Any],
        by: Actor,
        origin: Origin,
        *,
        at_once: bool = False,
        approver: str | None = None,
    ) -> Done:
        """Change settings (validated by ``validate_patch``); log ``app.settings.change``.

        A shorter retention destroys history: an operator at the host (``at_once``) applies it
        at once; over the API it becomes a request (``retention.change.request``) that takes
        effect after the notice period, once the app's ``erasure_approvals`` owners approved
        (``approver``, an owner, is the first). The other settings change at once.
        """
        with self._store.admin_tx() as tx:
            current = tx.settings(app_id)
            if current is None:
                raise LookupError(app_id)
            wanted = dict(values)
            entries = []
            waiting = tx.pending_retention(app_id)
            if at_once and "retention_days" in wanted and waiting is not None:
                # The operator's retention replaces the one that waited.
                entries.append(self._cancel(tx, app_id, waiting, by, origin))
            elif not at_once and "retention_days" in wanted:
                if shortens(current["retention_days"], wanted["retention_days"]):
                    days = wanted.pop("retention_days")
                    entries.append(self._request_retention(tx, app_id, current, days, by,
                                                           origin, approver))  # fmt: skip
                elif waiting is not None:
                    raise Conflict(
                        "retention_days: a shorter retention waits for approval; cancel it "
                        "(DELETE /v1/apps/{app}/retention-change) before changing retention",
                        "already_pending",
                    )
            changes = changes_of(current, wanted)
            if changes:
                new = {item["path"][1:]: item["new"] for item in changes}
                tx.update_settings(app_id, new)
                event = EventWrite(action="app.settings.change", target_type="app",
                                   target_id=app_id)  # fmt: skip
                entries.append(record(tx, app_id, event, by, origin, self._max, changes))
                current = current | new
            pending = _pending_json(tx.pending_retention(app_id))
        return Done(current | {"pending_retention": pending}, tuple(entries))

    def _request_retention(
        self, tx: AdminTx, app_id: str, current: dict[str, Any], days: int, by: Actor,
        origin: Origin, approver: str | None,
    ) -> bytes:  # fmt: skip
        if tx.pending_retention(app_id) is not None:
            raise Conflict(
                "retention_days: a shorter retention waits already; cancel it first",
                "already_pending",
            )
        change_id = new_id("ret")
        now = datetime.now(UTC)
        effective = now + self._delay
        tx.insert_retention_change({
            "id": change_id, "app_id": app_id, "days": days, "status": "pending",
            "approvals": [approver] if approver else [],
            "required": current["erasure_approvals"], "effective_at": effective,
            "created_at": now,
        })  # fmt: skip
        event = EventWrite(
            action="retention.change.request", target_type="app", target_id=app_id,
            metadata={"change_id": change_id, "effective_at": format_time(effective),
                      "approvals_required": current["erasure_approvals"]},
        )  # fmt: skip
        changes = [{"path": "/retention_days", "old": current["retention_days"], "new": days}]
        return record(tx, app_id, event, by, origin, self._max, changes)

    def approve_retention(self, app_id: str, approver: str, by: Actor, origin: Origin) -> Done:
        """Approve the shorter retention that waits, as another owner."""
        with self._store.admin_tx() as tx:
            pending = self._pending(tx, app_id)
            if approver in pending["approvals"]:
                raise Conflict(f"{approver} approved it already", "already_approved")
            approvals = [*pending["approvals"], approver]
            tx.update_retention_change(pending["id"], {"approvals": approvals})
            event = EventWrite(action="retention.change.approve", target_type="app",
                               target_id=app_id, metadata={"change_id": pending["id"]})  # fmt: skip
            entry = record(tx, app_id, event, by, origin, self._max)
            found = _pending_json(tx.pending_retention(app_id))
        return Done({"pending_retention": found}, (entry,))

    def cancel_retention(self, app_id: str, by: Actor, origin: Origin) -> Done:
        """Cancel the shorter retention that waits."""
        with self._store.admin_tx() as tx:
            entry = self._cancel(tx, app_id, self._pending(tx, app_id), by, origin)
        return Done({"pending_retention": None}, (entry,))

    def _cancel(
        self, tx: AdminTx, app_id: str, pending: dict[str, Any], by: Actor, origin: Origin
    ) -> bytes:
        tx.update_retention_change(
            pending["id"], {"status": "cancelled", "done_at": datetime.now(UTC)}
        )
        event = EventWrite(
            action="retention.change.cancel", target_type="app", target_id=app_id,
            metadata={"change_id": pending["id"]},
        )  # fmt: skip
        return record(tx, app_id, event, by, origin, self._max)

    def apply_due(
        self, now: datetime, by: Actor, origin: Origin, app_id: str | None = None
    ) -> list[str]:
        """Apply every approved retention change whose notice period is over (of one app, if
        given); return their apps."""
        applied = []
        with self._store.admin_view() as tx:
            due = [
                c for c in tx.due_retention_changes(now)
                if len(c["approvals"]) >= c["required"] and app_id in (None, c["app_id"])
            ]  # fmt: skip
        for change in due:
            target = change["app_id"]
            with self._store.admin_tx() as tx:
                current = tx.settings(target)
                pending = tx.pending_retention(target)
                if current is None or pending is None or pending["id"] != change["id"]:
                    continue  # cancelled or applied since
                tx.update_settings(target, {"retention_days": change["days"]})
                tx.update_retention_change(change["id"], {"status": "done", "done_at": now})
                event = EventWrite(
                    action="app.settings.change", target_type="app", target_id=target,
                    metadata={"change_id": change["id"]},
                )  # fmt: skip
                changes = [{"path": "/retention_days", "old": current["retention_days"],
                            "new": change["days"]}]  # fmt: skip
                record(tx, target, event, by, origin, self._max, changes)
            applied.append(target)
        return applied

    @staticmethod
    def _pending(tx: AdminTx, app_id: str) -> dict[str, Any]:
        if tx.settings(app_id) is None:
            raise LookupError(app_id)
        pending = tx.pending_retention(app_id)
        if pending is None:
            raise LookupError("no retention change waits")
        return pending

    def create_key(
        self,
        app_id: str,
        scopes: Iterable[str],
        name: str | None,
        by: Actor,
        origin: Origin,
        *,
        held: frozenset[str] | None = None,
        expires_at: datetime | None = None,
    ) -> Done:
        """Make a key (``held``: the creator's own scopes, which bound the new key's)."""
        wanted = sorted(set(scopes))
        if not wanted:
            raise EntryError(f"scopes: give at least one of {', '.join(SCOPES)}")
        unknown = [scope for scope in wanted if scope not in SCOPES]
        if unknown:
            raise EntryError(
                f"scopes: unknown scope {unknown[0]!r}; choose from {', '.join(SCOPES)}"
            )
        if held is not None and not set(wanted) <= held:
            missing = sorted(set(wanted) - held)
            raise Forbidden(f"scopes: a key creates only keys whose scopes it holds ({missing[0]})")
        if name is not None and not 1 <= len(name) <= 200:
            raise EntryError("name: 1 to 200 characters")
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise EntryError("expires_at: a key must expire in the future")

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            key_id, key, secret_hash = new_key(wanted)
            tx.insert_key(key_id, app_id, secret_hash, wanted, name, expires_at)
            metadata: dict[str, Any] = {"scopes": wanted}
            if name is not None:
                metadata["name"] = name
            if expires_at is not None:
                metadata["expires_at"] = format_time(expires_at)
            event = EventWrite(
                action="key.create", target_type="api_key", target_id=key_id, metadata=metadata
            )
            return event, [], NewKey(key_id, key, wanted, name, expires_at)

        return self._administer(app_id, by, origin, change)

    def revoke_key(self, app_id: str, key_id: str, by: Actor, origin: Origin) -> Done:
        """Revoke one of the app's keys; ``LookupError`` if it has no such active key."""

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            found: KeyRecord | None = tx.key(app_id, key_id)
            if found is None:
                raise LookupError(key_id)
            if found.revoked_at is not None or not tx.revoke_key(app_id, key_id):
                return None, [], found  # revoking twice changes nothing and logs nothing
            event = EventWrite(action="key.revoke", target_type="api_key", target_id=key_id)
            return event, [], tx.key(app_id, key_id)

        return self._administer(app_id, by, origin, change)

    def rotate_session_secret(self, app_id: str, by: Actor, origin: Origin) -> Done:
        """Issue a new session secret beside the current one (shown once; both verify)."""
        secrets = self._sealer()

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            sealed, sealed_next = tx.sealed_secrets(app_id)
            if sealed_next is not None:
                raise Conflict(
                    "a new session secret is already out: retire the old one first "
                    f"(`trailkeep secrets retire-session --app {app_id}`, or POST "
                    f"/v1/apps/{app_id}/session-secret/retire)",
                    "rotation_pending",
                )
            secret = new_session_secret()
            tx.store_secrets(app_id, sealed, secrets.seal(secret, next_secret_context(app_id)))
            event = EventWrite(action="session_secret.rotate", target_type="app", target_id=app_id)
            return event, [], secret

        return self._administer(app_id, by, origin, change)

    def retire_session_secret(self, app_id: str, by: Actor, origin: Origin) -> Done:
        """Retire the old session secret: from now on only the new one verifies."""
        secrets = self._sealer()

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            _, sealed_next = tx.sealed_secrets(app_id)
            if sealed_next is None:
                raise Conflict("no new session secret is out: rotate first", "nothing_to_retire")
            secret = secrets.open(sealed_next, next_secret_context(app_id))
            tx.store_secrets(app_id, secrets.seal(secret, session_secret_context(app_id)), None)
            event = EventWrite(action="session_secret.retire", target_type="app", target_id=app_id)
            return event, [], None

        return self._administer(app_id, by, origin, change)

    def _sealer(self) -> SecretBox:
        if self._store.secrets is None:
            raise Forbidden("rotating a session secret needs the node's secret key", "unavailable")
        return self._store.secrets

    def keys(self, app_id: str) -> Sequence[KeyRecord]:
        """Every key of the app, revoked ones included (never their secrets)."""
        return self._store.list_keys(app_id)

    def _administer(self, app_id: str, by: Actor, origin: Origin, change: Change) -> Done:
        with self._store.admin_tx() as tx:
            current = tx.settings(app_id)
            if current is None:
                raise LookupError(app_id)
            event, changes, result = change(tx, current)
            if event is None:
                return Done(result)
            entry = record(tx, app_id, event, by, origin, self._max, changes)
        return Done(result, (entry,))


def _pending_json(pending: dict[str, Any] | None) -> dict[str, Any] | None:
    """A waiting retention change as the API shows it."""
    if pending is None:
        return None
    return {
        "id": pending["id"], "retention_days": pending["days"],
        "effective_at": pending["effective_at"].isoformat(),
        "approvals": len(pending["approvals"]), "approvals_required": pending["required"],
    }  # fmt: skip


def record(
    tx: AppendTx,
    app_id: str,
    event: EventWrite,
    by: Actor,
    origin: Origin,
    metadata_max_bytes: int,
    changes: Sequence[Mapping[str, Any]] = (),
) -> bytes:
    """Append the ``admin`` entry that records a change, in the change's transaction."""
    pending = prepare(
        app_id, new_entry_id(), event, by, origin, metadata_max_bytes, kind="admin",
        changes=changes,
    )  # fmt: skip
    return append_groups(tx, app_id, [[pending]], datetime.now(UTC)).stored[0][0]
