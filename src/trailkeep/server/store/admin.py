"""The administering transaction: an app's settings and keys change with their log entry.

Governance changes an app and appends the entry that records the change in one transaction, so
the log never shows a change that did not happen, nor misses one that did. The app's lock (as
``AppendTx`` takes it) is taken first: two administrators changing one app take turns, and each
reads the settings the other committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from trailkeep.server.store import schema
from trailkeep.server.store.append import AppendTx, utc
from trailkeep.server.store.records import KeyRecord

#: The settings an administrator may change, as the ``apps`` table names them.
SETTINGS = ("retention_days", "allowed_origins", "erasure_approvals")


class AdminTx(AppendTx):
    """An appending transaction that may also change an app's settings and its keys."""

    def settings(self, app_id: str) -> dict[str, Any] | None:
        """The app's settings under its lock, or None if there is no such app."""
        self.lock(app_id)
        apps = schema.apps
        row = self._c.execute(
            select(*(apps.c[name] for name in SETTINGS)).where(apps.c.id == app_id)
        ).one_or_none()
        if row is None:
            return None
        found = {str(name): value for name, value in row._asdict().items()}
        found["allowed_origins"] = json.loads(found["allowed_origins"])
        return found

    def update_settings(self, app_id: str, values: Mapping[str, Any]) -> None:
        """Store new values of :data:`SETTINGS` (the caller validated them)."""
        stored = dict(values)
        if "allowed_origins" in stored:
            stored["allowed_origins"] = json.dumps(list(stored["allowed_origins"]))
        self._c.execute(update(schema.apps).where(schema.apps.c.id == app_id).values(stored))

    def insert_key(
        self, key_id: str, app_id: str, secret_hash: bytes, scopes: Sequence[str], name: str | None
    ) -> None:
        """Store a new key's hash and scopes (never the key)."""
        self._c.execute(
            insert(schema.api_keys).values(
                id=key_id, app_id=app_id, secret_hash=secret_hash,
                scopes=" ".join(sorted(scopes)), name=name, created_at=datetime.now(UTC),
            )
        )  # fmt: skip

    def key(self, app_id: str, key_id: str) -> KeyRecord | None:
        """One of the app's keys (another app's key is None, as a missing one is)."""
        keys = schema.api_keys
        row = self._c.execute(
            select(keys).where(keys.c.id == key_id, keys.c.app_id == app_id)
        ).one_or_none()
        if row is None:
            return None
        return KeyRecord(
            id=row.id, app_id=row.app_id, secret_hash=bytes(row.secret_hash),
            scopes=frozenset(row.scopes.split()), name=row.name,
            created_at=utc(row.created_at) or datetime.now(UTC), revoked_at=utc(row.revoked_at),
        )  # fmt: skip

    def revoke_key(self, app_id: str, key_id: str) -> bool:
        """Revoke one of the app's keys; False if it is not the app's or was revoked already."""
        keys = schema.api_keys
        result = self._c.execute(
            update(keys)
            .where(keys.c.id == key_id, keys.c.app_id == app_id, keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        return result.rowcount == 1
