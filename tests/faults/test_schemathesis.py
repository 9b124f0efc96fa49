"""Schemathesis against a real server's /openapi.json, with real credentials.

Every operation the server documents is called with requests generated from its schema, both
valid ones (positive) and ones that break the schema (negative), as each of three real callers
of one real app: a key that may only write, a key that may only read, and a person's session.
The app id in the path is the app's own, and an entry id is half the time one that exists, so
the requests get past the credential and the lookup into the handlers. No answer may be a 5xx,
and every answer must match the response schema the document gives for its status.

Bounded: a fixed number of examples per operation, caller and mode, drawn deterministically
(``derandomize``), so a run takes the same requests every time; ``make stress`` draws more.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.faults.load import STRESS, scaled
from tests.integration.http_api import write_numbered
from tests.servers import Server

pytestmark = pytest.mark.timeout(1800 if STRESS else 180)

EXAMPLES = scaled(10, 200)
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass
class Api:
    """A running server, one of its apps, three callers of it and some of its entry ids."""

    server: Server
    app_id: str
    callers: dict[str, str]  # who -> bearer credential
    entry_ids: list[str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # Live streams end after a moment here: a generated stream request must come to an end.
    stream_env = {"TRAILKEEP_STREAM_MAX_SECONDS": "0.2", "TRAILKEEP_STREAMS_PER_CLIENT": "1000"}
    srv = Server(tmp_path_factory.mktemp("schemathesis") / "data", stream_env)
    try:
        srv.start()
        tenant = srv.new_app("schemathesis")
        with srv.client(tenant.key) as client:
            entry_ids = [e["id"] for e in write_numbered(client, tenant.app_id, 0, 20)]
        callers = {
            "write_key": srv.new_key(tenant.app_id, "events:write").key,
            "read_key": srv.new_key(tenant.app_id, "events:read").key,
            "session": srv.session(tenant, "auditor@example.com", role="admin"),
        }
        yield Api(srv, tenant.app_id, callers, entry_ids)
    finally:
        srv.stop()


def _run(
    api: Api,
    operation: Any,
    who: str,
    mode: schemathesis.GenerationMode,
    statuses: collections.Counter[tuple[str, str, int]],
) -> list[str]:
    """Call ``operation`` with ``EXAMPLES`` generated requests; the distinct failures.

    Counts each answer's status in ``statuses``, by operation and caller.
    """
    failures: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {api.callers[who]}"}

    @given(case=operation.as_strategy(generation_mode=mode), real_entry=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any, real_entry: bool) -> None:
        path = case.path_parameters
        if path and "app_id" in path:
            path["app_id"] = api.app_id
        if path and "entry_id" in path and real_entry:
            path["entry_id"] = api.entry_ids[len(str(path["entry_id"])) % len(api.entry_ids)]
        try:
            response = case.call_and_validate(
                base_url=api.server.url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )
        except BaseException as exc:  # schemathesis's FailureGroup is an ExceptionGroup
            if isinstance(exc, KeyboardInterrupt):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.setdefault(first, str(exc)[:2000])
            return
        statuses[operation.label, who, response.status_code] += 1

    try:
        check()
    except Unsatisfiable:
        # An operation with no parameter and no body has nothing a negative case could break.
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return [f"{operation.label} as {who} ({mode.value}): {text}" for text in failures.values()]


def test_no_5xx_and_no_response_schema_violation(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # The document lists what the server serves: the write and read routes are there.
    assert {"POST /v1/apps/{app_id}/events", "GET /v1/apps/{app_id}/events"} <= labels, labels
    statuses: collections.Counter[tuple[str, str, int]] = collections.Counter()
    failures = [
        failure
        for operation in operations
        for who in api.callers
        for mode in MODES
        for failure in _run(api, operation, who, mode, statuses)
    ]
    assert failures == [], "\n\n".join(failures[:5])
    # The callers were real: their generated requests got past the credential into the log.
    write, read = "POST /v1/apps/{app_id}/events", "GET /v1/apps/{app_id}/events"
    assert statuses[write, "write_key", 201] > 0, statuses
    assert statuses[write, "session", 201] > 0, statuses
    assert statuses[read, "read_key", 200] > 0, statuses
    assert statuses[read, "session", 200] > 0, statuses
