"""Erasure of a data subject and legal holds, over HTTP and the CLI (DESIGN §5; issue 21).

An erasure reaches the subject's entries and the records of reads that named it, is recorded by
a keyed hash of the subject and the seqs it erased, leaves stubs that `verify` accounts for,
and is refused by a hold; with two approvals required it waits for a second owner.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.http_api import (
    check_entry,
    checkpoint_verifier,
    expect_problem,
    expect_status,
    export_lines,
    wait_for_checkpoint,
)
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)

SUBJECT = "user_zq_erasure_42"


def entries_of(server: Server, tenant: Tenant) -> list[dict[str, Any]]:
    """Every entry and stub of the app, in seq order (read with a key: not recorded)."""
    with server.client(tenant.key) as reader:
        return [orjson.loads(line) for line in export_lines(reader, tenant.app_id, {})]


def owner(server: Server, tenant: Tenant, sub: str = "ada") -> httpx.Client:
    """A client with an owner's session."""
    return server.client(server.session(tenant, sub, role="owner"))


def url(tenant: Tenant, tail: str) -> str:
    """A route of the tenant's app."""
    return f"/v1/apps/{tenant.app_id}{tail}"


def seed(server: Server, tenant: Tenant) -> dict[str, list[int]]:
    """The subject acts (its session) and is acted on (a key); others too; an owner reads with
    a filter naming the subject. Returns the seqs of each kind."""
    seqs: dict[str, list[int]] = {"subject": [], "other": [], "read": []}
    with server.client(server.session(tenant, SUBJECT)) as subject:
        for i in range(3):
            response = subject.post(
                url(tenant, "/events"), json={"action": "doc.edit", "metadata": {"n": i}}
            )
            seqs["subject"].append(expect_status(response, 201).json()["seq"])
    with server.client(server.new_key(tenant.app_id, "events:write").key) as backend:
        body = {"action": "user.suspend", "target_type": "user", "target_id": SUBJECT}
        seqs["subject"].append(
            expect_status(backend.post(url(tenant, "/events"), json=body), 201).json()["seq"]
        )
        body = {"action": "user.suspend", "target_type": "user", "target_id": "user_other"}
        seqs["other"].append(
            expect_status(backend.post(url(tenant, "/events"), json=body), 201).json()["seq"]
        )
    with server.client(server.session(tenant, "auditor_1", role="auditor")) as auditor:
        expect_status(auditor.get(url(tenant, "/events"), params={"actor": SUBJECT}))
    seqs["read"] = [e["seq"] for e in entries_of(server, tenant) if e.get("action") == "audit.read"]
    # `verify --app` later needs a checkpoint: the background signer makes one within a second.
    with server.client(tenant.key) as reader:
        wait_for_checkpoint(reader, tenant.app_id, 1, checkpoint_verifier(server), within=10)
    return seqs


def test_an_owner_erases_a_subject_everywhere_and_every_proof_stays_valid(
    server: Server, tenant: Tenant
) -> None:
    seqs = seed(server, tenant)
    before = {e["seq"]: e for e in entries_of(server, tenant)}
    with owner(server, tenant) as client:
        answer = expect_status(
            client.post(url(tenant, "/erasures"),
                        json={"subject": {"actor_id": SUBJECT}, "reason": "GDPR art. 17"}),
            202,
        ).json()  # fmt: skip
    assert answer["status"] == "done"
    erased = sorted(seqs["subject"][:3] + seqs["read"])
    assert answer["matched"] == answer["erased"] == len(erased)
    after = entries_of(server, tenant)
    for seq in erased:
        assert after[seq] == {
            "seq": seq, "id": before[seq]["id"], "time": before[seq]["time"], "erased": True,
            "erased_by": answer["id"], "leaf_hash": before[seq]["leaf_hash"],
        }  # fmt: skip
    # The entry where the subject is the target was not reached by an actor erasure.
    assert after[seqs["subject"][3]] == before[seqs["subject"][3]]
    request, done = [e for e in after if e.get("action", "").startswith("erasure.")]
    for entry in (request, done):
        check_entry(entry)
        assert entry["kind"] == "admin"
        assert SUBJECT not in json.dumps(entry)  # named by a keyed hash only
    assert request["metadata"]["subject"]["kind"] == "actor_id"
    assert len(request["metadata"]["subject"]["hmac"]) == 64
    assert done["metadata"]["erased"] == len(erased)
    assert [s for a, b in done["metadata"]["seq_ranges"] for s in range(a, b + 1)] == erased
    # Nothing of the subject as an actor is left to find, and the whole log verifies.
    left = [e for e in after if e["seq"] != seqs["subject"][3]]
    assert SUBJECT not in "".join(json.dumps(e) for e in left)
    verified = server.cli("verify", "--app", tenant.app_id)
    assert f"({len(erased)} erased)" in verified.stdout


def test_a_target_erasure_and_a_seq_erasure(server: Server, tenant: Tenant) -> None:
    seqs = seed(server, tenant)
    with owner(server, tenant) as client:
        by_target = expect_status(
            client.post(
                url(tenant, "/erasures"),
                json={"subject": {"target": {"type": "user", "id": SUBJECT}}, "reason": "asked"},
            ),
            202,
        )
        assert by_target.json()["erased"] >= 1
        by_seq = expect_status(
            client.post(
                url(tenant, "/erasures"),
                json={"subject": {"seqs": [seqs["other"][0]]}, "reason": "mistake"},
            ),
            202,
        ).json()
        assert by_seq["erased"] == 1
        nothing = expect_status(
            client.post(
                url(tenant, "/erasures"),
                json={"subject": {"actor_id": "nobody_at_all"}, "reason": "asked"},
            ),
            202,
        ).json()
        assert nothing["matched"] == 0  # still recorded
        assert nothing["status"] == "done"
        own = [e["seq"] for e in entries_of(server, tenant) if e.get("action") == "erasure.done"]
        expect_problem(
            client.post(
                url(tenant, "/erasures"), json={"subject": {"seqs": [own[0]]}, "reason": "x"}
            ),
            400,
            "invalid_request",
        )
        expect_problem(
            client.post(
                url(tenant, "/erasures"), json={"subject": {"seqs": [10**9]}, "reason": "x"}
            ),
            400,
            "invalid_request",
        )
    server.cli("verify", "--app", tenant.app_id)


def test_two_approvals_wait_for_a_second_owner(server: Server, tenant: Tenant) -> None:
    seed(server, tenant)
    server.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    with owner(server, tenant, "ada") as ada:
        pending = expect_status(
            ada.post(
                url(tenant, "/erasures"), json={"subject": {"actor_id": SUBJECT}, "reason": "asked"}
            ),
            202,
        ).json()
        assert pending["status"] == "pending"
        assert pending["approvals"] == 1
        era = pending["id"]
        expect_problem(ada.post(url(tenant, f"/erasures/{era}/approve")), 409, "already_approved")
    assert not any(e.get("erased") for e in entries_of(server, tenant))
    manage_key = server.new_key(tenant.app_id, "manage").key
    with server.client(manage_key) as key:
        expect_problem(key.post(url(tenant, f"/erasures/{era}/approve")), 403, "forbidden")
    with server.client(server.session(tenant, "bob", role="admin")) as admin:
        expect_problem(admin.post(url(tenant, f"/erasures/{era}/approve")), 403, "forbidden")
    with owner(server, tenant, "grace") as grace:
        done = expect_status(grace.post(url(tenant, f"/erasures/{era}/approve"))).json()
        assert done["status"] == "done"
        assert done["erased"] >= 3
        expect_problem(grace.post(url(tenant, f"/erasures/{era}/approve")), 409, "already_done")
        listed = expect_status(grace.get(url(tenant, "/erasures"))).json()["erasures"]
        assert [e["id"] for e in listed] == [era]
        assert "subject" not in listed[0]
    actions = [e.get("action") for e in entries_of(server, tenant)]
    assert actions.count("erasure.approve") == 1
    server.cli("verify", "--app", tenant.app_id)


def test_the_operator_approves_from_the_cli(server: Server, tenant: Tenant) -> None:
    seed(server, tenant)
    server.cli("apps", "update", tenant.app_id, "--erasure-approvals", "2")
    made = server.cli("erase", "--app", tenant.app_id, "--actor", SUBJECT, "--reason", "asked",
                      "--json")  # fmt: skip
    era = json.loads(made.stdout)
    assert era["status"] == "pending"  # the operator is the first approval, not both
    twice = server.cli("erase", "approve", era["id"], "--app", tenant.app_id, check=False)
    assert twice.returncode == 1
    assert "already" in twice.stderr
    with owner(server, tenant) as ada:
        done = expect_status(ada.post(url(tenant, f"/erasures/{era['id']}/approve"))).json()
    assert done["status"] == "done"
    listed = json.loads(server.cli("erase", "list", "--app", tenant.app_id, "--json").stdout)
    assert listed[0]["id"] == era["id"]
    assert listed[0]["status"] == "done"
    request = [e for e in entries_of(server, tenant) if e.get("action") == "erasure.request"]
    assert request[0]["actor"]["type"] == "operator"


def test_a_hold_refuses_erasure_and_keeps_entries_from_retention(
    server: Server, tenant: Tenant
) -> None:
    seed(server, tenant)
    with owner(server, tenant) as client:
        hold = expect_status(
            client.post(
                url(tenant, "/holds"),
                json={"subject": {"actor_id": SUBJECT}, "reason": "litigation"},
            ),
            201,
        ).json()
        assert hold["entries"][0]["action"] == "hold.place"
        assert SUBJECT not in json.dumps(hold["entries"][0])
        expect_problem(
            client.post(
                url(tenant, "/erasures"), json={"subject": {"actor_id": SUBJECT}, "reason": "asked"}
            ),
            409,
            "held",
        )
    assert not any(e.get("erased") for e in entries_of(server, tenant))
    # Retention skips what the hold covers, and erases the rest.
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    server.cli("purge", "--app", tenant.app_id, "--before", later)
    after = entries_of(server, tenant)
    kept = [e for e in after if not e.get("erased") and e.get("actor", {}).get("id") == SUBJECT]
    assert len(kept) == 3
    with owner(server, tenant) as client:
        released = expect_status(client.delete(url(tenant, f"/holds/{hold['id']}"))).json()
        assert released["released_at"] is not None
        again = expect_status(client.delete(url(tenant, f"/holds/{hold['id']}"))).json()
        assert again["entries"] == []
        expect_problem(client.delete(url(tenant, "/holds/hold_nosuchhold")), 404, "not_found")
        listed = expect_status(client.get(url(tenant, "/holds"))).json()["holds"]
        assert [(h["id"], h["subject"]) for h in listed] == [(hold["id"], {"actor_id": SUBJECT})]
        erased = expect_status(
            client.post(
                url(tenant, "/erasures"), json={"subject": {"actor_id": SUBJECT}, "reason": "asked"}
            ),
            202,
        ).json()
        # The released hold no longer names the subject it kept: the erasure's keyed hash does.
        listed = expect_status(client.get(url(tenant, "/holds"))).json()["holds"]
        assert listed[0]["subject"] == {"erased": True, "hmac": erased["subject_hmac"]}
    assert SUBJECT not in server.cli("holds", "list", "--app", tenant.app_id).stdout
    assert server.query(
        "SELECT count(*) FROM holds WHERE actor_id = :s OR target_id = :s", s=SUBJECT
    ) == [(0,)]
    server.cli("verify", "--app", tenant.app_id)


def test_a_hold_on_the_whole_app_stops_retention(server: Server, tenant: Tenant) -> None:
    seed(server, tenant)
    placed = server.cli("holds", "place", "--app", tenant.app_id, "--all", "--reason", "audit",
                        "--json")  # fmt: skip
    hold_id = json.loads(placed.stdout)["id"]
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    report = server.cli("purge", "--app", tenant.app_id, "--before", later, "--json")
    assert json.loads(report.stdout)[0]["erased"] == 0
    server.cli("holds", "release", hold_id, "--app", tenant.app_id)
    listed = json.loads(server.cli("holds", "list", "--app", tenant.app_id, "--json").stdout)
    assert listed[0]["released_at"] is not None


def test_bad_requests_are_clear_and_change_nothing(server: Server, tenant: Tenant) -> None:
    other = server.new_app("another")
    with owner(server, tenant) as client:
        for body in ({}, {"subject": {"actor_id": SUBJECT}}, {"reason": "x"},
                     {"subject": {"actor_id": ""}, "reason": "x"},
                     {"subject": {"all": True}, "reason": "x"},
                     {"subject": {"seqs": []}, "reason": "x"},
                     {"subject": {"actor_id": "a", "seqs": [1]}, "reason": "x"},
                     {"subject": {"actor_id": "a"}, "reason": "x", "extra": 1}):  # fmt: skip
            expect_problem(client.post(url(tenant, "/erasures"), json=body), 400,
                           "invalid_request")  # fmt: skip
        expect_problem(
            client.post(url(tenant, "/holds"), json={"subject": {"seqs": [1]}, "reason": "x"}),
            400,
            "invalid_request",
        )
        expect_problem(client.get(url(tenant, "/erasures/era_nosuchone")), 404, "not_found")
    with server.client(other.key) as foreign:
        expect_problem(
            foreign.post(
                url(tenant, "/erasures"), json={"subject": {"actor_id": SUBJECT}, "reason": "x"}
            ),
            404,
            "not_found",
        )
    with server.client(server.session(tenant, "bob", role="admin")) as admin:
        expect_problem(
            admin.post(url(tenant, "/holds"), json={"subject": {"all": True}, "reason": "x"}),
            403,
            "forbidden",
        )
    assert [e for e in entries_of(server, tenant) if e.get("kind") == "admin"] == []


def test_erased_content_is_gone_from_the_sqlite_files(sqlite_server: Server) -> None:
    sqlite_server.start()
    tenant = sqlite_server.new_app("gone")
    seed(sqlite_server, tenant)
    files = [sqlite_server.sqlite_file, Path(f"{sqlite_server.sqlite_file}-wal")]
    assert any(SUBJECT.encode() in f.read_bytes() for f in files if f.exists())
    sqlite_server.cli("erase", "--app", tenant.app_id, "--actor", SUBJECT, "--reason", "asked")
    sqlite_server.cli("erase", "--app", tenant.app_id, "--target", f"user:{SUBJECT}",
                      "--reason", "asked")  # fmt: skip
    for path in files:
        if path.exists():
            assert SUBJECT.encode() not in path.read_bytes(), path


def test_an_erasure_of_scattered_seqs_is_recorded_in_parts(server: Server, tenant: Tenant) -> None:
    with server.client(server.new_key(tenant.app_id, "events:write").key) as backend:
        for _ in range(3):
            body = {"events": [{"action": "doc.view"}] * 1000}
            expect_status(backend.post(url(tenant, "/events/batch"), json=body), 201)
    with server.client(tenant.key) as reader:  # `verify --app` below needs a checkpoint
        wait_for_checkpoint(reader, tenant.app_id, 1, checkpoint_verifier(server), within=10)
    scattered = list(range(0, 2400, 2))  # 1,200 runs of one seq: more than one entry holds
    with owner(server, tenant) as client:
        done = expect_status(
            client.post(
                url(tenant, "/erasures"), json={"subject": {"seqs": scattered}, "reason": "bulk"}
            ),
            202,
        ).json()
    assert done["erased"] == len(scattered)
    parts = [e for e in entries_of(server, tenant) if e.get("action") == "erasure.done"]
    assert [(p["metadata"]["part"], p["metadata"]["parts"]) for p in parts] == [(1, 2), (2, 2)]
    named = [s for p in parts for a, b in p["metadata"]["seq_ranges"] for s in range(a, b + 1)]
    assert named == scattered
    verified = server.cli("verify", "--app", tenant.app_id)
    assert f"({len(scattered)} erased)" in verified.stdout


def test_another_apps_ids_are_not_found_and_its_subjects_match_nothing(
    server: Server, tenant: Tenant
) -> None:
    """Ids of another app's requests and holds are 404 through this app; its subjects match 0."""
    other = server.new_app("another")
    seed(server, other)
    server.cli("apps", "update", other.app_id, "--erasure-approvals", "2")
    with owner(server, other) as theirs:
        era = expect_status(
            theirs.post(url(other, "/erasures"), json={"subject": {"actor_id": SUBJECT},
                                                       "reason": "asked"}), 202,
        ).json()["id"]  # fmt: skip
        hold = expect_status(
            theirs.post(url(other, "/holds"), json={"subject": {"actor_id": "user_other"},
                                                    "reason": "litigation"}), 201,
        ).json()["id"]  # fmt: skip
    with owner(server, tenant, "grace") as client:
        expect_problem(client.get(url(tenant, f"/erasures/{era}")), 404, "not_found")
        expect_problem(client.post(url(tenant, f"/erasures/{era}/approve")), 404, "not_found")
        expect_problem(client.delete(url(tenant, f"/holds/{hold}")), 404, "not_found")
        # A subject that only the other app knows matches nothing here, answered exactly as a
        # subject that nobody knows: a 404 would tell this app's owner that another tenant has
        # entries about that person.
        answers = [
            expect_status(
                client.post(url(tenant, "/erasures"),
                            json={"subject": {"actor_id": name}, "reason": "asked"}), 202,
            ).json()
            for name in (SUBJECT, "user_nobody_anywhere")
        ]  # fmt: skip
        assert [(a["status"], a["matched"], a["erased"]) for a in answers] == [("done", 0, 0)] * 2
    with owner(server, other) as theirs:
        assert expect_status(theirs.get(url(other, f"/erasures/{era}"))).json()["status"] == (
            "pending"
        )
        held = expect_status(theirs.get(url(other, "/holds"))).json()["holds"]
        assert [(h["id"], h["released_at"]) for h in held] == [(hold, None)]
    assert not any(e.get("erased") for e in entries_of(server, other))
