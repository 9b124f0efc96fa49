"""Rotating the node's secret key: every sealed secret sealed again under the new key.

The secrets a database keeps (session secrets, the subject of an erasure that waits) are sealed
under the node's secret key. To replace that key without downtime, every node first runs with
the new key as ``TRAILKEEP_SECRET_KEY_FILE`` and the old one as
``TRAILKEEP_PREVIOUS_SECRET_KEY_FILE`` (they seal with the new and open both); then this seals
every value again under the new key, an app at a time, each app's in one transaction with the
``secret_key.rotate`` entry that records it (key ids only: they name a key, never reveal it);
then the old key can go.
"""

from __future__ import annotations

from dataclasses import dataclass

from trailkeep.log.record import Actor, EventWrite, Origin
from trailkeep.server.governance.administer import Forbidden, record
from trailkeep.server.governance.subjects import subject_context
from trailkeep.server.secrets import SecretBox
from trailkeep.server.store import Store, webhooks
from trailkeep.server.store.records import next_secret_context, session_secret_context


@dataclass(frozen=True, slots=True)
class Resealed:
    """One app's secrets sealed again: how many, from which keys, and the entry recording it."""

    app_id: str
    resealed: int
    from_keys: tuple[str, ...]
    entry: bytes | None


def rotate_secret_key(
    store: Store, by: Actor, origin: Origin, metadata_max_bytes: int = 10_240
) -> list[Resealed]:
    """Seal every stored secret under the node's current key; log it in each app it changed."""
    box = store.secrets
    if box is None:
        raise Forbidden("rotating the secret key needs the node's secret key", "unavailable")
    done = []
    for app in store.list_apps():
        with store.admin_tx() as tx:
            if tx.settings(app.id) is None:
                continue
            old: set[str] = set()

            def again(sealed: str, context: str, box: SecretBox = box, old: set[str] = old) -> str:
                resealed = box.reseal(sealed, context)
                if resealed != sealed:
                    old.add(box.sealed_by(sealed))
                return resealed

            sealed, sealed_next = tx.sealed_secrets(app.id)
            new = again(sealed, session_secret_context(app.id))
            new_next = sealed_next
            if sealed_next is not None:
                new_next = again(sealed_next, next_secret_context(app.id))
            count = int(new != sealed) + int(new_next != sealed_next)
            if count:
                tx.store_secrets(app.id, new, new_next)
            for erasure in tx.erasures(app.id):
                if erasure["subject"] is not None:
                    resealed = again(erasure["subject"], subject_context(app.id, erasure["id"]))
                    if resealed != erasure["subject"]:
                        tx.update_erasure(erasure["id"], {"subject": resealed})
                        count += 1
            for hook in webhooks.of_app(tx.connection, app.id):
                context = webhooks.secret_context(app.id, hook.id)
                resealed = again(hook.sealed_secret, context)
                if resealed != hook.sealed_secret:
                    webhooks.reseal(tx.connection, hook.id, resealed)
                    count += 1
            entry = None
            if count:
                event = EventWrite(
                    action="secret_key.rotate", target_type="app", target_id=app.id,
                    metadata={"resealed": count, "from_keys": sorted(old), "to_key": box.key_id},
                )  # fmt: skip
                entry = record(tx, app.id, event, by, origin, metadata_max_bytes)
        done.append(Resealed(app.id, count, tuple(sorted(old)), entry))
    return done
