"""Export as OCSF events and resumable exports over real HTTP (issue 23), on both backends.

OCSF lines are validated against OCSF's own schema (the ocsf-json-schema package) and compared
with the NDJSON export of the same app; `after_seq` resumes are compared with a whole export.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from typing import Any

import httpx
import jsonschema_rs
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from tests.integration.corpus import build_corpus, filtered
from tests.integration.http_api import Entry, events_url, expect_problem, expect_status, write_batch
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(240)

#: The schema version the events claim (checked against the events, not assumed).
OCSF_VERSION = "1.8.0"
ERASED_ACTOR = "dave"
HOSTILE = '\x1b]0;owned\x07 \u202etxt.exe =cmd|\' /C calc\'!A0 "}\n{"class_uid":1'


@functools.cache
def validator(class_uid: int) -> Any:
    """A validator of one OCSF class, from the package's copy of OCSF's exported schema."""
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    name = schema.lookup_class_name_from_uid(class_uid)
    return jsonschema_rs.validator_for(schema.get_class_schema(name))


@pytest.fixture(scope="module")
def app(server: Server) -> tuple[Tenant, list[Entry]]:
    """An app with the mixed corpus, account and entity actions, and one actor's entries erased.

    Returns the tenant and every entry as the NDJSON export gives it (stubs included).
    """
    corpus = build_corpus(server, "ocsf corpus")
    tenant = corpus.tenant
    with server.client(corpus.write_key, **{"User-Agent": "ua/1"}) as client:
        write_batch(client, tenant.app_id, [
            {"action": "user.create", "target_type": "user", "target_id": "u_9"},
            {"action": "user.password.reset"},
            {"action": "mfa.disable", "target_type": "user", "target_id": HOSTILE},
            {"action": "doc.delete", "target_type": "doc", "target_id": HOSTILE,
             "metadata": {HOSTILE: HOSTILE}, "project": HOSTILE},
            {"action": "order.refund"},
        ])  # fmt: skip
    owner = server.session(tenant, "ada", role="owner")
    with server.client(owner) as client:
        answer = client.post(
            events_url(tenant.app_id, "erasures"),
            json={"subject": {"actor_id": ERASED_ACTOR}, "reason": "GDPR art. 17"},
        )
        assert expect_status(answer, 202).json()["status"] == "done"
    with server.client(tenant.key) as client:
        body = expect_status(client.get(events_url(tenant.app_id, "export"))).content
    entries = [json.loads(line) for line in body.splitlines()]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert any(e.get("erased") for e in entries)
    return tenant, entries


def export(server: Server, tenant: Tenant, params: dict[str, Any]) -> httpx.Response:
    """One export of the app with a key (reads by keys are not recorded)."""
    with server.client(tenant.key) as client:
        return expect_status(client.get(events_url(tenant.app_id, "export"), params=params))


def seqs_of(response: httpx.Response, fmt: str) -> list[int]:
    """The seqs an export holds, in its order, whatever its format."""
    if fmt == "csv":
        _, *rows = csv.reader(io.StringIO(response.text, newline=""))
        return [int(row[0]) for row in rows]
    lines = [json.loads(line) for line in response.content.splitlines()]
    return [line["unmapped"]["seq"] if fmt == "ocsf" else line["seq"] for line in lines]


def test_ocsf_export_is_valid_ocsf_one_event_per_kept_entry(
    server: Server, app: tuple[Tenant, list[Entry]]
) -> None:
    tenant, entries = app
    response = export(server, tenant, {"format": "ocsf"})
    assert response.headers["content-type"] == "application/x-ndjson"
    disposition = f'attachment; filename="{tenant.app_id}.ocsf.ndjson"'
    assert response.headers["content-disposition"] == disposition
    assert response.content.endswith(b"\n")
    events = [json.loads(line) for line in response.content.splitlines()]
    kept = [e for e in entries if not e.get("erased")]
    assert len(kept) < len(entries)  # the erased actor's stubs are left out
    assert [e["metadata"]["uid"] for e in events] == [e["id"] for e in kept]
    classes = set()
    for event, entry in zip(events, kept, strict=True):
        errors = [f"{x.instance_path}: {x.message}" for x in
                  validator(event["class_uid"]).iter_errors(event)]  # fmt: skip
        assert errors == [], (entry["action"], errors)
        classes.add(event["class_uid"])
        assert event["metadata"]["version"] == OCSF_VERSION
        assert event["metadata"]["tenant_uid"] == tenant.app_id
        assert event["unmapped"]["seq"] == entry["seq"]
        assert event["unmapped"]["leaf_hash"] == entry["leaf_hash"]
        assert event["metadata"]["event_code"] == entry["action"]
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert event["actor"]["user"]["uid"] == entry["actor"]["id"]
    assert classes == {6003, 3004, 3001}
    deleted = next(e for e in events if e["metadata"]["event_code"] == "doc.delete")
    assert deleted["entity"]["uid"] == HOSTILE  # kept as data, newline and all
    assert deleted["unmapped"]["metadata"] == {HOSTILE: HOSTILE}
    assert deleted["unmapped"]["project"] == HOSTILE
    assert deleted["http_request"] == {"user_agent": "ua/1"}


FILTERS: list[dict[str, Any]] = [
    {},
    {"action_prefix": "user."},
    {"actor": "alice"},
    {"kind": "admin"},
    {"action": ["order.refund", "order.create"]},
]


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "ocsf"])
@pytest.mark.parametrize("spec", FILTERS, ids=lambda s: "&".join(sorted(s)) or "all")
def test_after_seq_resumes_exactly(
    server: Server, app: tuple[Tenant, list[Entry]], fmt: str, spec: dict[str, Any]
) -> None:
    tenant, entries = app
    kept = entries if fmt != "ocsf" else [e for e in entries if not e.get("erased")]
    want = [e["seq"] for e in filtered([e for e in kept if "action" in e], spec)]
    if fmt != "ocsf" and not spec:
        want = [e["seq"] for e in entries]  # an unfiltered export carries the stubs too
    whole = seqs_of(export(server, tenant, {**spec, "format": fmt}), fmt)
    assert whole == want
    assert want, spec
    # Cut before the first, inside, on the last and past the end: the rest, no more, no less.
    for cut in (0, want[0], want[len(want) // 2], want[-1], want[-1] + 1, 10**12):
        rest = seqs_of(export(server, tenant, {**spec, "format": fmt, "after_seq": cut}), fmt)
        assert rest == [seq for seq in want if seq > cut], cut
        done = [seq for seq in want if seq <= cut]
        assert done + rest == want  # the two runs together: no duplicate, no gap


@pytest.mark.parametrize(
    "value", ["-1", "abc", "1.5", "", str(2**63 - 1), str(2**64)]
)  # fmt: skip
def test_a_bad_after_seq_is_400_naming_it(
    server: Server, app: tuple[Tenant, list[Entry]], value: str
) -> None:
    tenant, _ = app
    with server.client(tenant.key) as client:
        response = client.get(events_url(tenant.app_id, "export"), params={"after_seq": value})
    assert expect_problem(response, 400, "invalid_request")["detail"].startswith("after_seq")


def test_the_largest_after_seq_is_an_empty_export(
    server: Server, app: tuple[Tenant, list[Entry]]
) -> None:
    tenant, _ = app
    for fmt in ("ndjson", "ocsf"):
        assert export(server, tenant, {"format": fmt, "after_seq": 2**63 - 2}).content == b""


def test_a_resume_crosses_store_pages(server: Server) -> None:
    tenant = server.new_app("ocsf pages")
    with server.client(tenant.key) as client:
        for b in range(2):
            write_batch(client, tenant.app_id, [
                {"action": f"page.a{i % 2}", "metadata": {"i": b * 600 + i}} for i in range(600)
            ])  # fmt: skip
    # The export reads 500 entries a page: resume before, at and after a page's edge.
    for cut in (498, 499, 500, 1000, 1198):
        for spec in ({}, {"action": "page.a1"}):
            response = export(server, tenant, {**spec, "format": "ocsf", "after_seq": cut})
            got = seqs_of(response, "ocsf")
            step = 2 if spec else 1
            first = cut + 1 if not spec or cut % 2 == 0 else cut + 2
            assert got == list(range(first, 1200, step)), (cut, spec)


def test_a_persons_resumed_export_is_recorded_with_its_after_seq(server: Server) -> None:
    tenant = server.new_app("ocsf recorded")
    with server.client(tenant.key) as client:
        write_batch(client, tenant.app_id, [{"action": "doc.view"} for _ in range(5)])
    auditor = server.session(tenant, "eve", role="auditor")
    with server.client(auditor) as client:
        url = events_url(tenant.app_id, "export")
        got = client.get(url, params={"format": "ocsf", "after_seq": 2, "action": "doc.view"})
        assert seqs_of(expect_status(got), "ocsf") == [3, 4]
    last = json.loads(export(server, tenant, {}).content.splitlines()[-1])
    assert last["action"] == "audit.export"
    assert last["metadata"] == {"format": "ocsf", "filters": {"action": ["doc.view"]},
                                "after_seq": 2}  # fmt: skip
