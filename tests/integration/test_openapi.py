"""The OpenAPI document says what the server does (issue 20), checked against a real server.

Errors are RFC 9457 problems, the SDK is JavaScript, the rules the server applies are in the
schema, a single-valued parameter given twice is refused, ``OPTIONS`` and 405 name every method
a path serves, every operation has an id of its own, and `/docs` and `/redoc` come with their
assets from the server itself.
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.integration.http_api import events_url, expect_problem, expect_status, write_one
from tests.servers import Server, Tenant

pytestmark = pytest.mark.timeout(120)

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def srv(shared_sqlite_server: Server) -> Server:
    """The shared SQLite server: nothing here depends on the database."""
    return shared_sqlite_server


@pytest.fixture(scope="module")
def doc(srv: Server) -> dict[str, Any]:
    """The served OpenAPI document."""
    document: dict[str, Any] = expect_status(httpx.get(f"{srv.url}/openapi.json")).json()
    return document


@pytest.fixture(scope="module")
def app(srv: Server) -> Tenant:
    """An app with one entry, so that reads and proofs have something to answer with."""
    tenant = srv.new_app("openapi")
    with srv.client(tenant.key) as client:
        write_one(client, tenant.app_id, {"action": "openapi.one"})
    return tenant


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every documented operation."""
    return [(p, m, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def concrete(path: str, app_id: str) -> str:
    """A documented path with its parameters filled in."""
    return path.replace("{app_id}", app_id).replace("{entry_id}", "evt_nosuchentry")


# --- the document --------------------------------------------------------------------------


def test_no_two_operations_share_an_id(doc: dict[str, Any]) -> None:
    ids = Counter(op.get("operationId") for _, _, op in operations(doc))
    assert None not in ids
    assert [name for name, n in ids.items() if n > 1] == []


def test_errors_are_documented_as_problems(doc: dict[str, Any]) -> None:
    assert set(doc["components"]["schemas"]["ProblemOut"]["required"]) >= {"code", "status"}
    for path, method, op in operations(doc):
        responses = op["responses"]
        assert "422" not in responses, (method, path)  # invalid requests are 400 problems
        for status, response in responses.items():
            if status[0] in "45":
                assert list(response["content"]) == [PROBLEM], (method, path, status)
                schema = response["content"][PROBLEM]["schema"]
                assert schema == {"$ref": "#/components/schemas/ProblemOut"}
        if path.startswith("/v1/apps/"):
            assert {"400", "401", "404"} <= set(responses), (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_errors_are_served_as_problems(srv: Server, app: Tenant) -> None:
    with srv.client(app.key) as client:
        answers = [
            client.get(events_url(app.app_id), params={"limit": 0}),
            client.get(events_url(app.app_id, "checkpoint"), headers={"Authorization": "x"}),
            client.get(events_url(app.app_id, "events/evt_nosuchentry")),
        ]
    for answer in answers:
        assert answer.headers["content-type"] == PROBLEM, answer.text
        assert answer.status_code >= 400


def test_the_sdk_is_documented_and_served_as_javascript(srv: Server, doc: dict[str, Any]) -> None:
    for name in ("trailkeep.js", "trailkeep.mjs"):
        path = f"/sdk/{name}"
        assert set(doc["paths"][path]) == {"get", "head"}
        for op in doc["paths"][path].values():
            assert list(op["responses"]["200"]["content"]) == ["text/javascript"]
            assert "304" in op["responses"]
        served = expect_status(httpx.get(srv.url + path))
        assert served.headers["content-type"].split(";")[0] == "text/javascript"


# --- the rules the server applies, stated in the schema and applied ----------------------


def _params(doc: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}


def test_the_rules_are_in_the_schema_and_applied(
    srv: Server, doc: dict[str, Any], app: Tenant
) -> None:
    filters = _params(doc, "/v1/apps/{app_id}/events")
    for name in ("since", "until"):
        schema = filters[name]["schema"]  # beside anyOf [string, null]: they bind strings only
        assert schema["format"] == "date-time"
        pattern = re.compile(schema["pattern"])
        assert pattern.match("2026-11-23T08:15:30Z")
        assert pattern.match("2026-11-23T08:15:30.5+05:30")
        assert not pattern.match("2026-11-23T08:15:30")  # no offset: refused below too
        assert "RFC 3339" in filters[name]["description"]
    assert "target_id" in filters["target_type"]["description"]
    assert "target_type" in filters["target_id"]["description"]
    body = doc["components"]["schemas"]["EventWrite"]
    assert body["dependentRequired"] == {
        "target_type": ["target_id"], "target_id": ["target_type"],
        "before": ["after"], "after": ["before"],
    }  # fmt: skip
    inclusion = _params(doc, "/v1/apps/{app_id}/proofs/inclusion")
    assert "seq < tree_size" in inclusion["seq"]["description"]
    consistency = _params(doc, "/v1/apps/{app_id}/proofs/consistency")
    assert "at most `to`" in consistency["from"]["description"]
    export = _params(doc, "/v1/apps/{app_id}/export")
    assert export["format"]["schema"]["enum"] == ["ndjson", "csv", "ocsf"]
    assert "OCSF" in export["format"]["description"]
    after = next(s for s in export["after_seq"]["schema"]["anyOf"] if s["type"] == "integer")
    assert (after["minimum"], after["maximum"]) == (0, 2**63 - 2)
    assert "Resume" in export["after_seq"]["description"]

    a = app.app_id
    with srv.client(app.key) as client:
        for bad in (
            client.get(events_url(a), params={"since": "2026-11-23T08:15:30"}),
            client.get(events_url(a), params={"since": "2026-11-24T00:00:00Z",
                                              "until": "2026-11-23T00:00:00Z"}),
            client.post(events_url(a), json={"action": "x.y", "target_type": "doc"}),
            client.post(events_url(a), json={"action": "x.y", "target_id": "doc_1"}),
            client.get(events_url(a, "proofs/inclusion"), params={"seq": 1, "tree_size": 1}),
            client.get(events_url(a, "proofs/consistency"), params={"from": 2, "to": 1}),
            client.get(events_url(a, "export"), params={"after_seq": -1}),
            client.get(events_url(a, "export"), params={"format": "ocsf2"}),
        ):  # fmt: skip
            expect_problem(bad, 400, "invalid_request")


# --- one value per single-valued parameter -----------------------------------------------


def test_a_repeated_single_valued_parameter_is_refused(
    srv: Server, doc: dict[str, Any], app: Tenant
) -> None:
    checked = 0
    with srv.client(app.key) as client:
        for path, method, op in operations(doc):
            for param in op.get("parameters", []):
                schema = param["schema"]
                is_list = "array" in {schema.get("type"), *(s.get("type") for s in
                                                            schema.get("anyOf", []))}  # fmt: skip
                if param["in"] != "query" or is_list:
                    continue
                url = concrete(path, app.app_id) + f"?{param['name']}=1&{param['name']}=2"
                problem = expect_problem(client.request(method, url), 400, "invalid_request")
                assert problem["detail"].startswith(f"{param['name']}: given more than once")
                checked += 1
        assert checked >= 20  # every filter, limit, cursor, group_by, format, proof, seq, ...
        # A list parameter repeats as it always did.
        listed = client.get(events_url(app.app_id), params=[("action", "a"), ("action", "b")])
        assert expect_status(listed).json()["data"] == []


# --- OPTIONS and 405 name every method served --------------------------------------------


def test_options_and_405_name_every_method_a_path_serves(
    srv: Server, doc: dict[str, Any], app: Tenant
) -> None:
    with srv.client() as client:
        for path, ops in doc["paths"].items():
            url = concrete(path, app.app_id)
            served = {m.upper() for m in ops}
            if path.endswith("/events/batch"):
                served.add("GET")  # `batch` is a value of `/events/{entry_id}` too (a 404 entry)
            answer = client.options(url)
            assert answer.status_code == 204, (path, answer.text)
            allowed = set(answer.headers["allow"].split(", "))
            if path.endswith("/events/{entry_id}"):
                assert allowed == {"GET", "OPTIONS"}, path  # `evt_...` is not `batch`
            else:
                assert allowed == served | {"OPTIONS"}, path
            unserved = next(m for m in ("PATCH", "PUT", "DELETE") if m not in served)
            refused = client.request(unserved, url)
            assert refused.status_code == 405, path
            assert set(refused.headers["allow"].split(", ")) == allowed, path
        both = client.options(events_url(app.app_id))
        assert set(both.headers["allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
        assert client.options("/no/such/path").status_code == 404
        # Paths outside the API document answer OPTIONS too.
        for path, served in {
            "/docs": "GET, OPTIONS", "/redoc": "GET, OPTIONS",
            "/openapi.json": "GET, HEAD, OPTIONS", "/docs/assets/swagger-ui.css": "GET, OPTIONS",
        }.items():  # fmt: skip
            answer = client.options(path)
            assert (answer.status_code, answer.headers["allow"]) == (204, served), path
            assert answer.content == b""


# --- /docs and /redoc: their assets come from this server --------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_this_server(srv: Server, page: str) -> None:
    with srv.client() as client:
        html = expect_status(client.get(page))
        assert "default-src 'self'" in html.headers["content-security-policy"]
        parser = _Assets()
        parser.feed(html.text)
        assert len(parser.urls) >= 2, html.text
        for url in parser.urls:
            assert url.startswith("/docs/assets/"), url  # ours, never a CDN
            asset = expect_status(client.get(url))
            kind = TYPES[url[url.rindex(".") :]]
            assert asset.headers["content-type"].split(";")[0] == kind, url
            assert len(asset.content) > 1000, url
            again = client.get(url, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304
        assert client.get("/docs/assets/nothing.js").status_code == 404
