"""Changes to an app, each made with the entry that records it, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trailkeep.log.credentials import SCOPES
from trailkeep.log.record import Actor, EntryError, EventWrite, Origin, prepare
from trailkeep.server.auth import new_key
from trailkeep.server.governance.settings import changes_of, shortens
from trailkeep.server.ids import new_entry_id
from trailkeep.server.ingest.commit import append_groups
from trailkeep.server.store import AdminTx, AppendTx, KeyRecord, Store


class Forbidden(Exception):
    """The actor may not make this change; ``code`` is the API's stable error code."""

    def __init__(self, detail: str, code: str = "forbidden") -> None:
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


@dataclass(frozen=True, slots=True)
class Done:
    """What a change left: its result, and the entry that records it (None if nothing changed)."""

    result: Any
    entry: bytes | None


# What a change does inside the transaction: given the app's settings, it makes the change and
# says what to record (or None when there was nothing to change), and what to hand back.
Change = Callable[[AdminTx, dict[str, Any]], tuple[EventWrite | None, list[dict[str, Any]], Any]]


class Administrator:
    """Changes apps' settings and keys, and logs each change in the app's own log."""

    def __init__(self, store: Store, metadata_max_bytes: int = 10_240) -> None:
        self._store = store
        self._max = metadata_max_bytes

    def settings(self, app_id: str) -> dict[str, Any]:
        """The app's settings; ``LookupError`` if there is no such app."""
        with self._store.admin_tx() as tx:
            found = tx.settings(app_id)
        if found is None:
            raise LookupError(app_id)
        return found

    def update_settings(
        self,
        app_id: str,
        values: Mapping[str, Any],
        by: Actor,
        origin: Origin,
        *,
        at_once: bool = False,
    ) -> Done:
        """Change settings (validated by ``validate_patch``); log ``app.settings.change``.

        A shorter retention destroys history: only an operator at the host (``at_once``) makes
        it take effect at once. Over the API it needs the approvals and notice period of
        DESIGN §5, which are not built yet, so it is refused with a code that says so.
        """

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            shorter = "retention_days" in values and shortens(
                current["retention_days"], values["retention_days"]
            )
            if shorter and not at_once:
                raise Forbidden(
                    "retention_days: shortening retention over the API needs a notice "
                    "period and owners' approvals, not available yet; an operator on the "
                    "host can shorten it with `trailkeep apps update --retention-days`",
                    code="approval_required",
                )
            changes = changes_of(current, values)
            if not changes:
                return None, [], current
            wanted = {item["path"][1:]: item["new"] for item in changes}
            tx.update_settings(app_id, wanted)
            event = EventWrite(action="app.settings.change", target_type="app", target_id=app_id)
            return event, changes, current | wanted

        return self._administer(app_id, by, origin, change)

    def create_key(
        self,
        app_id: str,
        scopes: Iterable[str],
        name: str | None,
        by: Actor,
        origin: Origin,
        *,
        held: frozenset[str] | None = None,
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

        def change(tx: AdminTx, current: dict[str, Any]) -> Any:
            key_id, key, secret_hash = new_key(wanted)
            tx.insert_key(key_id, app_id, secret_hash, wanted, name)
            metadata: dict[str, Any] = {"scopes": wanted}
            if name is not None:
                metadata["name"] = name
            event = EventWrite(
                action="key.create", target_type="api_key", target_id=key_id, metadata=metadata
            )
            return event, [], NewKey(key_id, key, wanted, name)

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
                return Done(result, None)
            entry = record(tx, app_id, event, by, origin, self._max, changes)
        return Done(result, entry)


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
