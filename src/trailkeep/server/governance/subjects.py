"""Data subjects: legal holds, and erasure of a subject's entries with owners' approvals.

An erasure request names its subject (an actor id, a target, or seqs); it reaches the entries
where the subject is the actor or the target, and the records of reads whose filters named it.
The log's own records of its administration are never erased. The entries that record an
erasure name the subject only by a keyed hash under the node's secret key, and the seqs they
erased as ranges with a digest, so that `verify` accounts for every stub without learning who
was erased. A hold covering a matched entry refuses the erasure (409 ``held``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from trailkeep.log import seqs
from trailkeep.log.record import (
    RESERVED_ACTIONS,
    TARGET_ID_MAX,
    TARGET_TYPE_MAX,
    Actor,
    EntryError,
    EventWrite,
    Origin,
)
from trailkeep.server.governance.administer import Conflict, Forbidden, record
from trailkeep.server.ids import new_id
from trailkeep.server.store import Hold, Match, Store, Subject, SubjectTx

#: Seqs one erasure may name; more is a series of requests.
SEQS_MAX: Final = 10_000
REASON_MAX: Final = 1_000
#: Ranges of erased seqs one ``erasure.done`` entry names (about 32 KiB of metadata at most).
RANGES_PER_ENTRY: Final = 1_000
#: The metadata limit of the log's own records of erasure, whatever the callers' limit is.
RECORD_MAX_BYTES: Final = 65_536


def parse_subject(body: Any, *, whole_app: bool = False) -> Subject:
    """The subject of a request: ``{actor_id}``, ``{target: {type, id}}``, ``{seqs}``, or (holds
    only) ``{all: true}``; ``EntryError`` naming what is wrong."""
    if not isinstance(body, dict) or len(body) != 1:
        kinds = "actor_id, target, " + ("all" if whole_app else "seqs")
        raise EntryError(f"subject: an object with one of {kinds}")
    ((kind, value),) = body.items()
    if kind == "actor_id" and isinstance(value, str) and 1 <= len(value) <= TARGET_ID_MAX:
        return Subject(actor_id=value)
    if kind == "target" and isinstance(value, dict) and set(value) == {"type", "id"}:
        kind_ok = isinstance(value["type"], str) and 1 <= len(value["type"]) <= TARGET_TYPE_MAX
        id_ok = isinstance(value["id"], str) and 1 <= len(value["id"]) <= TARGET_ID_MAX
        if kind_ok and id_ok:
            return Subject(target_type=value["type"], target_id=value["id"])
    if kind == "seqs" and not whole_app and _seqs(value):
        return Subject(seqs=tuple(sorted(set(value))))
    if kind == "all" and whole_app and value is True:
        return Subject(whole_app=True)
    raise EntryError(f"subject.{kind}: not a valid subject")


def _seqs(value: Any) -> bool:
    return (
        isinstance(value, list) and 1 <= len(value) <= SEQS_MAX
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    )  # fmt: skip


def parse_reason(value: Any) -> str:
    """Why: 1 to 1,000 characters."""
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= REASON_MAX:
        raise EntryError(f"reason: 1 to {REASON_MAX} characters")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Recorded:
    """What a request left: its result and the entries that record it, in order."""

    result: dict[str, Any]
    entries: tuple[bytes, ...]


class Subjects:
    """Holds and erasures of an app's data subjects, each step logged in the app's log."""

    def __init__(self, store: Store, metadata_max_bytes: int = 10_240) -> None:
        self._store = store
        self._max = metadata_max_bytes

    # -- holds -------------------------------------------------------------------------

    def holds(self, app_id: str) -> list[dict[str, Any]]:
        """Every hold of the app, released ones included."""
        with self._store.admin_view() as tx:
            self._app(tx, app_id)
            return [self._hold_json(hold) for hold in tx.holds(app_id, active=False)]

    def place_hold(
        self, app_id: str, subject: Subject, reason: str, by: Actor, origin: Origin
    ) -> Recorded:
        """Place a hold: the entries it covers survive retention and refuse erasure."""
        with self._store.admin_tx() as tx:
            self._app(tx, app_id)
            hold_id = new_id("hold")
            tx.place_hold(hold_id, app_id, subject, reason)
            event = EventWrite(
                action="hold.place", target_type="hold", target_id=hold_id,
                metadata={"subject": self._named(app_id, subject), "reason": reason},
            )  # fmt: skip
            entry = record(tx, app_id, event, by, origin, self._max)
            hold = tx.hold(app_id, hold_id)
        assert hold is not None
        return Recorded(self._hold_json(hold), (entry,))

    def release_hold(self, app_id: str, hold_id: str, by: Actor, origin: Origin) -> Recorded:
        """Release a hold; releasing a released one changes and records nothing."""
        with self._store.admin_tx() as tx:
            self._app(tx, app_id)
            if tx.hold(app_id, hold_id) is None:
                raise LookupError(hold_id)
            entries: tuple[bytes, ...] = ()
            if tx.release_hold(app_id, hold_id):
                event = EventWrite(action="hold.release", target_type="hold", target_id=hold_id)
                entries = (record(tx, app_id, event, by, origin, self._max),)
            hold = tx.hold(app_id, hold_id)
        assert hold is not None
        return Recorded(self._hold_json(hold), entries)

    # -- erasures ----------------------------------------------------------------------

    def erasures(self, app_id: str) -> list[dict[str, Any]]:
        """The app's erasure requests, newest first (never their subject)."""
        with self._store.admin_view() as tx:
            self._app(tx, app_id)
            return [_erasure_json(found) for found in tx.erasures(app_id)]

    def erasure(self, app_id: str, erasure_id: str) -> dict[str, Any]:
        """One erasure request; ``LookupError`` if the app has none of that id."""
        with self._store.admin_view() as tx:
            found = tx.erasure(app_id, erasure_id)
        if found is None:
            raise LookupError(erasure_id)
        return _erasure_json(found)

    def request(
        self,
        app_id: str,
        subject: Subject,
        reason: str,
        by: Actor,
        origin: Origin,
        approver: str | None,
    ) -> Recorded:
        """Ask for an erasure; the requester (a person) is its first approval.

        With enough approvals (the app's ``erasure_approvals``) it is carried out at once, in
        the same transaction; otherwise it waits for :meth:`approve`.
        """
        secrets = self._secrets()
        with self._store.admin_tx() as tx:
            settings = self._app(tx, app_id)
            matches = self._matches(tx, app_id, subject)
            erasure_id = new_id("era")
            approvals = [approver] if approver else []
            tx.insert_erasure({
                "id": erasure_id, "app_id": app_id, "status": "pending",
                "subject_hmac": self._hmac(app_id, subject),
                "subject": secrets.seal(orjson.dumps(subject.as_json()).decode(),
                                        subject_context(app_id, erasure_id)),
                "reason": reason, "approvals": approvals,
                "required": settings["erasure_approvals"], "matched": len(matches),
                "created_at": datetime.now(UTC),
            })  # fmt: skip
            event = EventWrite(
                action="erasure.request", target_type="erasure", target_id=erasure_id,
                metadata={"subject": self._named(app_id, subject), "reason": reason,
                          "matched": len(matches),
                          "approvals_required": settings["erasure_approvals"]},
            )  # fmt: skip
            entries = [record(tx, app_id, event, by, origin, self._max)]
            if len(approvals) >= settings["erasure_approvals"]:
                entries += self._carry_out(tx, app_id, erasure_id, subject, matches, by, origin)
            found = tx.erasure(app_id, erasure_id)
        assert found is not None
        if found["status"] == "done":
            self._store.checkpoint_wal()  # the erased pages' old copies leave SQLite's WAL too
        return Recorded(_erasure_json(found), tuple(entries))

    def approve(
        self, app_id: str, erasure_id: str, approver: str, by: Actor, origin: Origin
    ) -> Recorded:
        """Approve a pending erasure as another owner; carried out once approvals suffice."""
        secrets = self._secrets()
        with self._store.admin_tx() as tx:
            self._app(tx, app_id)
            found = tx.erasure(app_id, erasure_id)
            if found is None:
                raise LookupError(erasure_id)
            if found["status"] != "pending":
                raise Conflict(f"erasure {erasure_id} is {found['status']} already", "already_done")
            if approver in found["approvals"]:
                raise Conflict(f"{approver} approved {erasure_id} already", "already_approved")
            approvals = [*found["approvals"], approver]
            tx.update_erasure(erasure_id, {"approvals": approvals})
            event = EventWrite(
                action="erasure.approve", target_type="erasure", target_id=erasure_id
            )
            entries = [record(tx, app_id, event, by, origin, self._max)]
            if len(approvals) >= found["required"]:
                sealed = found["subject"]
                subject = parse_subject(
                    orjson.loads(secrets.open(sealed, subject_context(app_id, erasure_id)))
                )
                # Matched again: the subject may have acted since the request.
                matches = self._matches(tx, app_id, subject)
                entries += self._carry_out(tx, app_id, erasure_id, subject, matches, by, origin)
            done = tx.erasure(app_id, erasure_id)
        assert done is not None
        if done["status"] == "done":
            self._store.checkpoint_wal()  # the erased pages' old copies leave SQLite's WAL too
        return Recorded(_erasure_json(done), tuple(entries))

    # -- inside the transaction ----------------------------------------------------------

    def _matches(self, tx: SubjectTx, app_id: str, subject: Subject) -> list[Match]:
        if subject.seqs:
            size = tx.log_size(app_id)
            beyond = [seq for seq in subject.seqs if seq >= size]
            if beyond:
                raise EntryError(f"subject.seqs: the log has no seq {beyond[0]} (size {size})")
        matches = tx.matching(app_id, subject, RESERVED_ACTIONS)
        if subject.seqs:
            own = sorted(
                set(subject.seqs) - {m.seq for m in matches} - tx.erased_seqs(app_id, subject.seqs)
            )
            if own:
                raise EntryError(
                    f"subject.seqs: seq {own[0]} is one of the log's own records, which are "
                    "never erased"
                )
        holds = tx.holds(app_id)
        for match in matches:
            for hold in holds:
                if hold.covers(match.actor_id, match.target_type, match.target_id):
                    raise Conflict(
                        f"seq {match.seq} is under legal hold {hold.id}: nothing was erased",
                        "held",
                    )
        return matches

    def _carry_out(
        self,
        tx: SubjectTx,
        app_id: str,
        erasure_id: str,
        subject: Subject,
        matches: Sequence[Match],
        by: Actor,
        origin: Origin,
    ) -> list[bytes]:
        """Erase the matches and append the ``erasure.done`` entries that account for them.

        A subject's entries may be scattered over the whole log: their ranges are recorded
        in parts of at most :data:`RANGES_PER_ENTRY`, one entry each, so that no record
        outgrows what an entry holds. Each part says which of how many it is.
        """
        tx.erase(app_id, matches, erasure_id)
        # A released hold of the subject still names it: it keeps the keyed hash instead.
        tx.forget_released(app_id, subject, self._hmac(app_id, subject))
        erased = [m.seq for m in matches]
        tx.update_erasure(erasure_id, {
            "status": "done", "subject": None, "matched": len(erased), "erased": len(erased),
            "done_at": datetime.now(UTC),
        })  # fmt: skip
        ranges = seqs.runs(erased)
        parts = [ranges[i : i + RANGES_PER_ENTRY] for i in range(0, len(ranges), RANGES_PER_ENTRY)]
        entries = []
        for number, part in enumerate(parts or [[]], start=1):
            covered = [s for first, last in part for s in range(first, last + 1)]
            event = EventWrite(
                action="erasure.done", target_type="erasure", target_id=erasure_id,
                metadata={"erased": len(covered), "seq_ranges": part,
                          "seqs_sha256": hashlib.sha256(orjson.dumps(covered)).hexdigest(),
                          "part": number, "parts": max(len(parts), 1)},
            )  # fmt: skip
            entries.append(record(tx, app_id, event, by, origin, RECORD_MAX_BYTES))
        return entries

    def _app(self, tx: SubjectTx, app_id: str) -> dict[str, Any]:
        settings = tx.settings(app_id)
        if settings is None:
            raise LookupError(app_id)
        return settings

    def _secrets(self) -> Any:
        if self._store.secrets is None:
            raise Forbidden("erasure needs the node's secret key", code="unavailable")
        return self._store.secrets

    def _hmac(self, app_id: str, subject: Subject) -> str:
        canonical = orjson.dumps(subject.as_json(), option=orjson.OPT_SORT_KEYS).decode()
        hashed: str = self._secrets().keyed_hash(canonical, f"apps/{app_id}/subject")
        return hashed

    def _named(self, app_id: str, subject: Subject) -> dict[str, Any]:
        """How a log entry names a subject: its kind and keyed hash, never the id itself."""
        if subject.whole_app:
            return {"all": True}
        if subject.seqs:
            # As many as 10,000: a count and a digest here; the ranges erased are named by the
            # erasure.done entries, in parts.
            digest = hashlib.sha256(orjson.dumps(list(subject.seqs))).hexdigest()
            return {"seqs": len(subject.seqs), "seqs_sha256": digest}
        kind = "actor_id" if subject.actor_id is not None else "target"
        return {"kind": kind, "hmac": self._hmac(app_id, subject)}

    def _hold_json(self, hold: Hold) -> dict[str, Any]:
        subject = (
            hold.subject.as_json()
            if hold.subject_hmac is None
            else {"erased": True, "hmac": hold.subject_hmac}
        )
        return {
            "id": hold.id, "subject": subject, "reason": hold.reason,
            "placed_at": hold.placed_at.isoformat(),
            "released_at": None if hold.released_at is None else hold.released_at.isoformat(),
        }  # fmt: skip


def subject_context(app_id: str, erasure_id: str) -> str:
    """What the sealed subject of an erasure that waits is bound to: its app and request."""
    return f"apps/{app_id}/erasures/{erasure_id}/subject"


def _erasure_json(found: dict[str, Any]) -> dict[str, Any]:
    done = found["done_at"]
    return {
        "id": found["id"], "status": found["status"], "matched": found["matched"],
        "erased": found["erased"], "reason": found["reason"],
        "approvals": len(found["approvals"]), "approvals_required": found["required"],
        "subject_hmac": found["subject_hmac"], "created_at": found["created_at"].isoformat(),
        "done_at": None if done is None else done.isoformat(),
    }  # fmt: skip
