"""Webhooks (DESIGN §6, issue 23): real servers delivering to a real receiver on loopback.

Every delivery the receiver accepted is checked with the `standardwebhooks` package's own
verifier, so the signatures are what the Standard Webhooks spec says, not what we think it says.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.http_api import expect_problem, expect_status, export_lines, write_numbered
from tests.receiver import Receiver, receiver
from tests.servers import Server, Tenant
from trailkeep.server.secrets import SecretBox

pytestmark = pytest.mark.timeout(240)


def hooks(app_id: str, tail: str = "") -> str:
    """The app's webhook routes."""
    return f"/v1/apps/{app_id}/webhooks{tail}"


def create(client: httpx.Client, app_id: str, url: str, **body: Any) -> dict[str, Any]:
    """Make a destination; its answer (with the secret)."""
    made: dict[str, Any] = expect_status(
        client.post(hooks(app_id), json={"url": url, **body}), 201
    ).json()
    return made


def entries_of(bodies: list[Any]) -> list[dict[str, Any]]:
    """Every entry of the audit.entries bodies, in the order they arrived."""
    return [e for b in bodies if b["type"] == "audit.entries" for e in b["data"]["entries"]]


def delivered_seqs(rx: Receiver, secret: str) -> list[int]:
    """The seqs of every entry the receiver accepted, in arrival order (signatures checked)."""
    return [e["seq"] for e in entries_of(rx.verified(secret))]


def hook_state(client: httpx.Client, app_id: str, hook_id: str) -> dict[str, Any]:
    """``GET .../webhooks/{id}``."""
    found: dict[str, Any] = expect_status(client.get(hooks(app_id, f"/{hook_id}"))).json()
    return found


def wait_for(check: Any, timeout: float = 30.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_create_list_get_delete_keep_the_secret_sealed_and_log_each_change(
    server: Server, tenant: Tenant
) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        secret = made["secret"]
        assert secret.startswith("whsec_")
        assert made["status"] == "active"
        listed = expect_status(client.get(hooks(tenant.app_id))).json()["webhooks"]
        assert [h["id"] for h in listed] == [made["id"]]
        assert "secret" not in listed[0]
        got = hook_state(client, tenant.app_id, made["id"])
        assert got["filter"] == {"action_prefix": "doc."}
        assert "secret" not in got
        # Neither the database nor the log holds the secret in clear.
        (stored,) = server.query("SELECT secret FROM webhooks WHERE id = :id", id=made["id"])
        assert stored[0].startswith("tk-sealed-v1:")
        assert secret not in stored[0]
        assert secret[6:] not in stored[0]
        expect_status(client.delete(hooks(tenant.app_id, f"/{made['id']}")))
        expect_problem(client.get(hooks(tenant.app_id, f"/{made['id']}")), 404, "not_found")
        lines = b"\n".join(export_lines(client, tenant.app_id, {"kind": "admin"}))
    assert secret.encode() not in lines
    assert secret[6:].encode() not in lines
    actions = [orjson.loads(line)["action"] for line in lines.splitlines()]
    assert "webhook.create" in actions
    assert "webhook.delete" in actions


def test_batches_arrive_signed_in_seq_order_and_the_cursor_follows(
    server: Server, tenant: Tenant
) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        written = []
        for first in range(0, 250, 50):
            written += [e["seq"] for e in write_numbered(client, tenant.app_id, first, 50)]
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 250)
        bodies = rx.verified(made["secret"])
        assert delivered_seqs(rx, made["secret"]) == written  # in order, each once
        assert all(len(b["data"]["entries"]) <= 100 for b in bodies)
        assert all(b["data"]["app_id"] == tenant.app_id for b in bodies)
        assert all(b["data"]["tree_size"] > b["data"]["entries"][-1]["seq"] for b in bodies)
        ids = [r.headers["webhook-id"] for r in rx.ok()]
        assert len(set(ids)) == len(ids)
        wait_for(lambda: hook_state(client, tenant.app_id, made["id"])["cursor"] >= written[-1])


def test_a_failed_batch_is_retried_with_the_same_id_and_nothing_later_overtakes_it(
    server: Server, tenant: Tenant
) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        rx.answers = [(500, {}), (503, {}), (500, {})]
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        first = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 3)]
        rx.wait(lambda r: len(r.requests) >= 2)
        later = [e["seq"] for e in write_numbered(client, tenant.app_id, 3, 3)]
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 6)
        statuses = [r.status for r in rx.requests]
        assert statuses[:4] == [500, 503, 500, 204]
        # The failed batch went again, the same message each time, before anything later.
        assert len({r.headers["webhook-id"] for r in rx.requests[:4]}) == 1
        assert [e["seq"] for e in rx.requests[3].json()["data"]["entries"]] == first
        assert delivered_seqs(rx, made["secret"]) == first + later
        attempts = expect_status(
            client.get(hooks(tenant.app_id, f"/{made['id']}/deliveries"))
        ).json()["deliveries"]
        codes = [a["status_code"] for a in reversed(attempts)]
        assert codes[:4] == [500, 503, 500, 204]
        assert attempts[-1]["first_seq"] == first[0]
        assert attempts[-1]["last_seq"] == first[-1]


def test_retry_after_is_honoured(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        rx.answers = [(429, {"Retry-After": "2"})]
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        write_numbered(client, tenant.app_id, 0, 1)
        rx.wait(lambda r: len(r.ok()) >= 1)
        assert [r.status for r in rx.requests[:2]] == [429, 204]
        # The schedule alone would have waited about 0.1 s.
        assert rx.requests[1].at - rx.requests[0].at >= 1.9
        assert len(rx.verified(made["secret"])) == 1


def test_410_disables_and_replay_delivers_again(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        rx.answers = [(410, {})]
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        seqs = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 4)]
        wait_for(lambda: hook_state(client, tenant.app_id, made["id"])["status"] == "disabled")
        state = hook_state(client, tenant.app_id, made["id"])
        assert "410" in state["disabled_reason"]
        time.sleep(0.5)
        assert len(rx.requests) == 1  # disabled: nothing more is sent
        replayed = expect_status(
            client.post(hooks(tenant.app_id, f"/{made['id']}/replay"), json={"from_seq": seqs[1]})
        ).json()
        assert replayed["status"] == "active"
        rx.wait(lambda r: len(r.ok()) >= 1)
        assert delivered_seqs(rx, made["secret"]) == seqs[1:]
        # A replay after success sends the same entries again, as a new message.
        old_id = rx.ok()[0].headers["webhook-id"]
        expect_status(
            client.post(hooks(tenant.app_id, f"/{made['id']}/replay"), json={"from_seq": seqs[0]})
        )
        rx.wait(lambda r: len(r.ok()) >= 2)
        assert delivered_seqs(rx, made["secret"]) == seqs[1:] + seqs
        assert rx.ok()[1].headers["webhook-id"] != old_id
        lines = export_lines(client, tenant.app_id, {"action": "webhook.replay"})
        assert [orjson.loads(x)["metadata"]["from_seq"] for x in lines] == [seqs[1], seqs[0]]
        expect_problem(
            client.post(hooks(tenant.app_id, f"/{made['id']}/replay"), json={"from_seq": -1}),
            400, "invalid_request",
        )  # fmt: skip


def test_a_destination_failing_through_the_whole_schedule_is_disabled_with_the_reason(
    server: Server, tenant: Tenant
) -> None:
    with server.client(tenant.key) as client, receiver(default=500) as rx:
        made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        write_numbered(client, tenant.app_id, 0, 1)
        wait_for(lambda: hook_state(client, tenant.app_id, made["id"])["status"] == "disabled")
        state = hook_state(client, tenant.app_id, made["id"])
        assert "attempts failed" in state["disabled_reason"]
        assert "HTTP 500" in state["disabled_reason"]
        # The schedule of the tests' servers: 0.1 s doubling to 3 s in all, five retries.
        assert len(rx.requests) == 6
        gaps = [b.at - a.at for a, b in zip(rx.requests, rx.requests[1:], strict=False)]
        assert gaps[-1] > gaps[0]


def test_a_dead_and_a_stalled_destination_do_not_hold_up_a_live_one(
    server: Server, tenant: Tenant
) -> None:
    with (
        server.client(tenant.key) as client,
        receiver() as live,
        receiver(stall=8) as stalled,
        receiver() as dead,
    ):
        dead.stop()  # connections refused
        for rx in (dead, stalled):
            create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        made = create(client, tenant.app_id, live.url, filter={"action_prefix": "doc."})
        for n in range(5):
            started = time.monotonic()
            seq = write_numbered(client, tenant.app_id, n, 1)[0]["seq"]
            live.wait(lambda r, s=seq: s in delivered_seqs(r, made["secret"]), timeout=10)
            assert time.monotonic() - started < 5


def test_an_erasure_travels_downstream_as_audit_erased(server: Server, tenant: Tenant) -> None:
    with (
        server.client(tenant.key) as client,
        server.client(server.session(tenant, "user_42")) as subject,
        server.client(server.session(tenant, "ada", role="owner")) as owner,
        receiver() as rx,
    ):
        made = create(client, tenant.app_id, rx.url)
        theirs = [
            expect_status(subject.post(f"/v1/apps/{tenant.app_id}/events",
                                       json={"action": "doc.view"}), 201).json()["seq"]
            for _ in range(3)
        ]  # fmt: skip
        rx.wait(lambda r: theirs[-1] in delivered_seqs(r, made["secret"]))
        expect_status(
            owner.post(f"/v1/apps/{tenant.app_id}/erasures",
                       json={"subject": {"actor_id": "user_42"}, "reason": "GDPR art. 17"}),
            202,
        )  # fmt: skip
        rx.wait(lambda r: any(b["type"] == "audit.erased" for b in r.verified(made["secret"])))
        bodies = rx.verified(made["secret"])
        (notice,) = [b for b in bodies if b["type"] == "audit.erased"]
        ranges = notice["data"]["seq_ranges"]
        assert sorted(s for a, b in ranges for s in range(a, b + 1)) == theirs
        assert notice["data"]["erased_by"].startswith("era_")
        # The notice comes before the entries that record the erasure.
        rx.wait(lambda r: any(e["action"] == "erasure.done"
                              for e in entries_of(r.verified(made["secret"]))))  # fmt: skip
        kinds = [(b["type"], [e["action"] for e in b["data"].get("entries", [])]) for b in bodies]
        at = kinds.index(("audit.erased", []))
        assert not any("erasure.done" in actions for _, actions in kinds[:at])


def test_the_cursor_survives_a_restart_of_the_server_and_of_the_receiver(
    fresh_server: Server,
) -> None:
    fresh_server.start()
    tenant = fresh_server.new_app()
    rx = Receiver().start()
    try:
        with fresh_server.client(tenant.key) as client:
            made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
            before = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 5)]
            rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) == 5)
            rx.stop()
            after = [e["seq"] for e in write_numbered(client, tenant.app_id, 5, 5)]
            time.sleep(0.5)
        fresh_server.stop()
        rx.start()  # the same port
        fresh_server.start()
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 10)
        assert delivered_seqs(rx, made["secret"]) == before + after
    finally:
        rx.stop()


def test_a_private_destination_is_refused_without_the_setting(
    sqlite_server: Server, tmp_path: Path
) -> None:
    sqlite_server.env["TRAILKEEP_WEBHOOK_ALLOW_PRIVATE"] = "0"
    sqlite_server.start()
    tenant = sqlite_server.new_app()
    with sqlite_server.client(tenant.key) as client:
        for url in ("http://127.0.0.1:9/hook", "https://127.0.0.1/hook", "https://10.1.2.3/x",
                    "https://169.254.169.254/latest", "https://[::1]/x"):  # fmt: skip
            problem = expect_problem(
                client.post(hooks(tenant.app_id), json={"url": url}), 400, "invalid_request"
            )
            assert problem["detail"].startswith("url:"), problem
        bad = [({"url": "https://example.com/h", "filter": {"nope": 1}}, "filter.nope"),
               ({"url": "https://example.com/h", "filter": {"kind": "x"}}, "filter.kind"),
               ({"url": "https://example.com/h", "format": "xml"}, "format"),
               ({"url": 5}, "url"),
               ({"url": "https://example.com/h", "extra": 1}, "extra")]  # fmt: skip
        for body, field in bad:
            problem = expect_problem(client.post(hooks(tenant.app_id), json=body), 400,
                                     "invalid_request")  # fmt: skip
            assert problem["detail"].startswith(f"{field}:"), problem
        assert sqlite_server.query("SELECT count(*) FROM webhooks") == [(0,)]


def test_the_cli_creates_lists_replays_and_deletes_as_the_operator(
    server: Server, tenant: Tenant
) -> None:
    with receiver() as rx, server.client(tenant.key) as client:
        made = orjson.loads(
            server.cli("webhooks", "create", "--app", tenant.app_id, "--url", rx.url,
                       "--filter", "action_prefix=doc.", "--json").stdout
        )  # fmt: skip
        seqs = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 2)]
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 2)
        listed = orjson.loads(
            server.cli("webhooks", "list", "--app", tenant.app_id, "--json").stdout
        )
        assert [h["id"] for h in listed] == [made["id"]]
        server.cli(
            "webhooks", "replay", made["id"], "--app", tenant.app_id, "--from-seq", str(seqs[0])
        )
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 4)
        assert delivered_seqs(rx, made["secret"]) == seqs + seqs
        server.cli("webhooks", "delete", made["id"], "--app", tenant.app_id)
        assert expect_status(client.get(hooks(tenant.app_id))).json()["webhooks"] == []
        logged = [orjson.loads(x) for x in export_lines(client, tenant.app_id, {"kind": "admin"})]
    mine = [e for e in logged if e["action"].startswith("webhook.")]
    assert [e["action"] for e in mine] == ["webhook.create", "webhook.replay", "webhook.delete"]
    assert all(e["actor"]["type"] == "operator" for e in mine)
    assert made["secret"] not in orjson.dumps(logged).decode()
    refused = server.cli("webhooks", "create", "--app", tenant.app_id, "--url", "ftp://x/y",
                         check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "--url:" in refused.stderr + refused.stdout


def test_a_purge_travels_downstream_as_audit_erased(server: Server, tenant: Tenant) -> None:
    with server.client(tenant.key) as client, receiver() as rx:
        made = create(client, tenant.app_id, rx.url)
        seqs = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 3)]
        rx.wait(lambda r: seqs[-1] in delivered_seqs(r, made["secret"]))
        cutoff = datetime.now(UTC) + timedelta(seconds=1)
        time.sleep(1.2)
        server.cli("purge", "--app", tenant.app_id, "--before", cutoff.isoformat())
        rx.wait(lambda r: any(b["type"] == "audit.erased" for b in r.verified(made["secret"])))
    (notice,) = [b for b in rx.verified(made["secret"]) if b["type"] == "audit.erased"]
    assert notice["data"]["erased_by"] == "retention"
    erased = {s for a, b in notice["data"]["seq_ranges"] for s in range(a, b + 1)}
    assert set(seqs) <= erased


def test_rotating_the_secret_key_reseals_webhook_secrets_and_delivery_goes_on(
    sqlite_server: Server,
) -> None:
    server = sqlite_server.start()
    tenant = server.new_app()
    with receiver() as rx:
        with server.client(tenant.key) as client:
            made = create(client, tenant.app_id, rx.url, filter={"action_prefix": "doc."})
        server.stop()
        old_key, new_key = server.secret_key_file, server.data_dir / "secret-2.key"
        SecretBox.load(new_key)
        server.env["TRAILKEEP_SECRET_KEY_FILE"] = str(new_key)
        server.env["TRAILKEEP_PREVIOUS_SECRET_KEY_FILE"] = str(old_key)
        done = orjson.loads(server.cli("secrets", "rotate-key", "--json").stdout)
        assert [d["resealed"] for d in done] == [2]  # the session secret and the webhook's
        del server.env["TRAILKEEP_PREVIOUS_SECRET_KEY_FILE"]
        (sealed,) = server.query("SELECT secret FROM webhooks")
        assert sealed[0].split(":")[1] == SecretBox.load(new_key).key_id
        server.start()
        with server.client(tenant.key) as client:
            seqs = [e["seq"] for e in write_numbered(client, tenant.app_id, 0, 2)]
        rx.wait(lambda r: len(delivered_seqs(r, made["secret"])) >= 2)
        assert delivered_seqs(rx, made["secret"]) == seqs


def test_an_ocsf_destination_receives_valid_ocsf_events(server: Server, tenant: Tenant) -> None:
    """``format: "ocsf"``: the same mapping as the export's, each event valid OCSF."""
    from tests.integration.test_export_ocsf import validator

    with server.client(tenant.key) as client, receiver() as rx:
        made = create(client, tenant.app_id, rx.url, format="ocsf")
        assert hook_state(client, tenant.app_id, made["id"])["format"] == "ocsf"
        written = write_numbered(client, tenant.app_id, 0, 5)
        rx.wait(lambda r: len(entries_of(r.verified(made["secret"]))) >= 5)
        events = entries_of(rx.verified(made["secret"]))
    uids = [e["metadata"]["uid"] for e in events]
    assert uids[-5:] == [e["id"] for e in written]
    for event in events:
        validator(event["class_uid"]).validate(event)
