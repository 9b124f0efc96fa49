"""CORS on the write and read routes, over plain HTTP; `trailkeep apps update --allow-origin`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from tests.integration.http_api import batch_url, events_url, expect_problem, log_size
from tests.servers import Server, Tenant
from trailkeep.cli import app as cli_app
from trailkeep.cli.common import CliError
from trailkeep.server.provision import normalize_origin

pytestmark = pytest.mark.timeout(120)

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
EXPOSED = "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Idempotent-Replayed"


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """An app that allows one origin (made in the database directly: the CLI is tested below)."""
    return server.new_app("cors", origins=(ALLOWED, "http://127.0.0.1:3000"))


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    """A client without credentials."""
    with server.client() as client:
        yield client


def preflight(http: httpx.Client, path: str, origin: str, method: str = "POST") -> httpx.Response:
    """What a browser sends before a cross-origin write with an Authorization header."""
    return http.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    })  # fmt: skip


@pytest.mark.parametrize("path", [events_url("APP"), batch_url("APP")])
def test_a_preflight_from_an_allowed_origin_is_answered(
    http: httpx.Client, app: Tenant, path: str
) -> None:
    response = preflight(http, path.replace("APP", app.app_id), ALLOWED)
    assert response.status_code == 204
    assert response.content == b""
    headers = response.headers
    assert headers["access-control-allow-origin"] == ALLOWED
    assert headers["access-control-allow-methods"] == "POST"
    assert headers["access-control-allow-headers"] == (
        "Authorization, Content-Type, Idempotency-Key"
    )
    assert headers["access-control-max-age"] == "600"
    assert "Origin" in headers["vary"]
    assert "access-control-allow-credentials" not in headers


@pytest.mark.parametrize(
    ("origin", "method", "app_id"),
    [
        (OTHER, "POST", None),
        ("null", "POST", None),
        ("https://app.example.evil.example", "POST", None),
        ("http://app.example", "POST", None),  # another scheme is another origin
        (ALLOWED, "POST", "app_doesnotexist"),
        (ALLOWED, "DELETE", None),
        (ALLOWED, "PUT", None),
    ],
)
def test_any_other_preflight_is_refused(
    http: httpx.Client, app: Tenant, origin: str, method: str, app_id: str | None
) -> None:
    response = preflight(http, events_url(app_id or app.app_id), origin, method)
    problem = expect_problem(response, 403, "forbidden")
    assert "access-control-allow-origin" not in response.headers
    if method == "POST":
        assert problem["detail"] == (
            f"the origin {origin} may not write to this app from a browser; "
            "`trailkeep apps update APP --allow-origin ORIGIN` allows an origin"
        )


def test_a_write_from_a_disallowed_origin_is_refused_before_anything_happens(
    server: Server, app: Tenant
) -> None:
    with server.client(app.key) as client:
        before = log_size(client, app.app_id)
        for path in (events_url(app.app_id), batch_url(app.app_id)):
            body = {"action": "cors.refused"} if path.endswith("events") else {
                "events": [{"action": "cors.refused"}]
            }  # fmt: skip
            response = client.post(path, json=body, headers={"Origin": OTHER})
            expect_problem(response, 403, "forbidden")
            assert "access-control-allow-origin" not in response.headers
            assert "ratelimit-limit" not in response.headers  # refused before being counted
        # Without an Origin (a backend, curl) or from the server's own origin, nothing changes.
        plain = client.post(events_url(app.app_id), json={"action": "cors.backend"})
        same = client.post(
            events_url(app.app_id), json={"action": "cors.same"}, headers={"Origin": server.url}
        )
        assert (plain.status_code, same.status_code) == (201, 201)
        assert "access-control-allow-origin" not in plain.headers
        assert log_size(client, app.app_id) == before + 2


def test_responses_to_an_allowed_origin_are_readable_errors_included(
    server: Server, app: Tenant
) -> None:
    with server.client(app.key, Origin=ALLOWED) as client:
        created = client.post(
            events_url(app.app_id), json={"action": "cors.ok"}, headers={"Idempotency-Key": "k1"}
        )
        replayed = client.post(
            events_url(app.app_id), json={"action": "cors.ok"}, headers={"Idempotency-Key": "k1"}
        )
        invalid = client.post(events_url(app.app_id), json={"action": "no spaces"})
        batch = client.post(batch_url(app.app_id), json={"events": [{"action": "cors.batch"}]})
    assert (created.status_code, replayed.status_code, batch.status_code) == (201, 201, 201)
    assert replayed.json() == created.json()
    assert replayed.headers["idempotent-replayed"] == "true"
    expect_problem(invalid, 400, "invalid_request")
    for response in (created, replayed, invalid, batch):
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert response.headers["access-control-expose-headers"] == EXPOSED
        assert "Origin" in response.headers["vary"]
        assert response.headers["ratelimit-limit"] == "1000000"


READS = ("/events", "/events/evt_x", "/events/stream", "/stats", "/actions", "/checkpoint",
         "/proofs/inclusion", "/proofs/consistency")  # fmt: skip


@pytest.mark.parametrize("path", READS)
def test_the_viewers_reads_are_open_to_an_allowed_origin_only(
    http: httpx.Client, app: Tenant, path: str
) -> None:
    # What the embedded console (<trailkeep-log>) reads from an app's page.
    url = f"/v1/apps/{app.app_id}{path}"
    response = http.options(url, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,trailkeep-reader",
    })  # fmt: skip
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-methods"] == "GET"
    assert response.headers["access-control-allow-headers"] == "Authorization, Trailkeep-Reader"
    for origin, method in ((OTHER, "GET"), (ALLOWED, "POST"), (ALLOWED, "DELETE")):
        if path == "/events" and method == "POST":
            continue  # the write route
        refused = preflight(http, url, origin, method)
        expect_problem(refused, 403, "forbidden")
        assert "access-control-allow-origin" not in refused.headers


def test_reads_from_an_allowed_origin_are_readable_and_from_another_refused(
    server: Server, app: Tenant
) -> None:
    with server.client(app.key) as client:
        allowed = client.get(events_url(app.app_id), params={"limit": 1},
                             headers={"Origin": ALLOWED})  # fmt: skip
        refused = client.get(events_url(app.app_id), headers={"Origin": OTHER})
        # Export and settings are not the viewer's: no CORS for them, from any origin.
        export = client.get(f"/v1/apps/{app.app_id}/export", headers={"Origin": ALLOWED})
        key = client.get("/v1/checkpoint-key", headers={"Origin": OTHER})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert allowed.headers["access-control-expose-headers"] == (
        "Link, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
    )
    assert "Origin" in allowed.headers["vary"]
    assert expect_problem(refused, 403, "forbidden")["detail"] == (
        f"the origin {OTHER} may not read this app from a browser; "
        "`trailkeep apps update APP --allow-origin ORIGIN` allows an origin"
    )
    assert "access-control-allow-origin" not in refused.headers
    assert export.status_code == 200
    assert "access-control-allow-origin" not in export.headers
    # The checkpoint key is public and the same for every app: any page may read it.
    assert key.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("https://app.example", "https://app.example"),
        ("HTTPS://App.Example:443/", "https://app.example"),
        ("http://app.example:80", "http://app.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("https://my_host.example:8443", "https://my_host.example:8443"),
    ],
)
def test_origins_are_normalised_as_browsers_send_them(given: str, normal: str) -> None:
    assert normalize_origin(given) == normal


@pytest.mark.parametrize(
    "given",
    [
        "app.example", "null", "*", "ftp://app.example", "https://", "https://a.example/path",
        "https://a.example/?q", "https://a.example#top", "https://user@a.example",
        "https://a.example:0", "https://a.example:65536", "https://-a.example", "http://[zz]",
        "https://a b.example",
    ],
)  # fmt: skip
def test_anything_but_an_origin_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(given)


def test_apps_update_sets_adds_and_clears_origins(server: Server) -> None:
    app_id = server.new_app("origins").app_id
    # One run of the real command; the rest in-process (a CLI process costs seconds here).
    real = server.cli("apps", "update", app_id, "--allow-origin", "HTTPS://App.Example:443/",
                      "--allow-origin", "http://127.0.0.1:8080", "--json")  # fmt: skip
    shown = json.loads(real.stdout)
    assert shown["app_id"] == app_id
    assert shown["allowed_origins"] == ["https://app.example", "http://127.0.0.1:8080"]
    assert shown["logged"] is True  # the change is an entry of the app's log
    runner = CliRunner()
    env = {name: value for name, value in server.env.items() if name.startswith("TRAILKEEP_")}

    def update(*args: str) -> list[str]:
        result = runner.invoke(cli_app, ["apps", "update", app_id, *args, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return list(json.loads(result.stdout)["allowed_origins"])

    def refused(*args: str) -> str:
        result = runner.invoke(cli_app, ["apps", "update", *args], env=env)
        assert result.exit_code == 1
        assert isinstance(result.exception, ValueError | CliError)
        return str(result.exception)

    assert update("--allow-origin", "http://127.0.0.1:8080", "--allow-origin",
                  "https://b.example") == [
        "https://app.example", "http://127.0.0.1:8080", "https://b.example",
    ]  # fmt: skip
    assert refused(app_id, "--allow-origin", "https://c.example/x") == (
        "allowed_origins: 'https://c.example/x': an origin has no path, query or fragment"
    )
    assert refused(app_id).startswith("nothing to change: give --allow-origin URL, --clear-origins")
    assert refused("app_nope", "--clear-origins").startswith("no app 'app_nope'")
    listed = runner.invoke(cli_app, ["apps", "list", "--json"], env=env)
    assert next(a for a in json.loads(listed.stdout) if a["app_id"] == app_id)[
        "allowed_origins"
    ] == ["https://app.example", "http://127.0.0.1:8080", "https://b.example"]
    assert update("--clear-origins", "--allow-origin", "https://c.example") == ["https://c.example"]
    assert update("--clear-origins") == []
