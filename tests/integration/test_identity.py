"""Sessions from an app's own identity provider (DESIGN §2, issue 22): RS256, ES256 and EdDSA
tokens verified against keys published by a real HTTP server on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.idp import ISSUER, Provider, claims, new_key, provider
from tests.integration.http_api import events_url, expect_problem, expect_status, export_lines
from tests.servers import Server, Tenant
from trailkeep.sdk import Client, Forbidden, bind

pytestmark = pytest.mark.timeout(240)

#: The server's wait between fetches of one key set for unknown kids (jwks.REFETCH_SECONDS).
REFETCH = 5.0


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    """The identity provider of this module's tests."""
    with provider() as served:
        yield served


def owner(server: Server, tenant: Tenant) -> httpx.Client:
    """A client with the app's own (HS256) owner session."""
    return server.client(server.session(tenant, "ada", role="owner", name="Ada"))


def register(server: Server, tenant: Tenant, issuer: dict[str, Any] | None) -> dict[str, Any]:
    """Set (or with None remove) the app's session issuer; the answer's body."""
    with owner(server, tenant) as client:
        answer = client.patch(f"/v1/apps/{tenant.app_id}", json={"session_issuer": issuer})
    return dict(expect_status(answer).json())


def write(server: Server, tenant: Tenant, token: str) -> httpx.Response:
    """A write with ``token`` as the bearer credential."""
    with server.client(token) as client:
        return client.post(events_url(tenant.app_id), json={"action": "idp.write"})


def named(test: str) -> str:
    """A key set's path of its own for one test (no two tests share a cache entry)."""
    return f"{test}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_is_accepted(
    server: Server, tenant: Tenant, idp: Provider, algorithm: str
) -> None:
    key = new_key(algorithm)
    uri = idp.publish(named(algorithm), key)
    answer = register(server, tenant, {"issuer": ISSUER, "jwks_uri": uri,
                                       "role_map": {"trailkeep-owner": "owner"}})  # fmt: skip
    assert answer["session_issuer"] == {
        "issuer": ISSUER, "jwks_uri": uri, "audience": tenant.app_id, "role_claim": "role",
        "role_map": {"trailkeep-owner": "owner"},
    }  # fmt: skip
    token = key.sign(claims(tenant.app_id, sub="u_7", name="Grace", role="trailkeep-owner"))
    entry = expect_status(write(server, tenant, token), 201).json()
    assert entry["actor"] == {"type": "user", "id": "u_7", "name": "Grace", "role": "owner"}
    with server.client(token) as client:  # an owner reads, and manages
        expect_status(client.get(events_url(tenant.app_id)))
        expect_status(client.get(f"/v1/apps/{tenant.app_id}"))
    # The app's own HS256 sessions keep working beside the provider's.
    expect_status(write(server, tenant, server.session(tenant, "own_1")), 201)


def test_keycloak_shaped_tokens(server: Server, tenant: Tenant, idp: Provider) -> None:
    key = new_key("RS256")
    uri = idp.publish(named("keycloak"), key)
    register(server, tenant, {
        "issuer": ISSUER, "jwks_uri": uri, "audience": "trailkeep-app",
        "role_claim": "realm_access.roles",
        "role_map": {"audit-viewer": "auditor", "tk-admin": "admin"},
    })  # fmt: skip
    roles = ["offline_access", "audit-viewer", "tk-admin", "uma_authorization"]
    admin = key.sign(claims(["account", "trailkeep-app"], sub="kc-1", azp="trailkeep-app",
                            preferred_username="ada", realm_access={"roles": roles}))  # fmt: skip
    entry = expect_status(write(server, tenant, admin), 201).json()
    assert entry["actor"]["role"] == "admin"  # the highest mapped role of the list
    with server.client(admin) as client:
        expect_status(client.get(events_url(tenant.app_id)))
        expect_problem(client.get(f"/v1/apps/{tenant.app_id}"), 403, "forbidden")
    plain = key.sign(claims("trailkeep-app", sub="kc-2", realm_access={"roles": ["owner"]}))
    entry = expect_status(write(server, tenant, plain), 201).json()
    assert entry["actor"] == {"type": "user", "id": "kc-2"}  # unmapped: a plain user
    with server.client(plain) as client:
        expect_problem(client.get(events_url(tenant.app_id)), 403, "forbidden")
    # The app id is no longer the audience: the configured one is.
    wrong = key.sign(claims(tenant.app_id, sub="kc-3"))
    assert "aud" in expect_problem(write(server, tenant, wrong), 401, "unauthenticated")["detail"]


def test_refused_tokens_are_401(server: Server, tenant: Tenant, idp: Provider) -> None:
    rsa_key, ec_key = new_key("RS256"), new_key("ES256")
    uri = idp.publish(named("refused"), rsa_key, ec_key)
    register(server, tenant, {"issuer": ISSUER, "jwks_uri": uri})
    expect_status(write(server, tenant, rsa_key.sign(claims(tenant.app_id))), 201)
    now = int(time.time())
    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cases = {
        "wrong issuer": (rsa_key.sign(claims(tenant.app_id, iss="https://evil.example")), "iss"),
        "wrong audience": (rsa_key.sign(claims("someone-else")), "aud"),
        "expired": (rsa_key.sign(claims(tenant.app_id, iat=now - 7200, exp=now - 3600)),
                    "expired"),
        "not yet valid": (rsa_key.sign(claims(tenant.app_id, nbf=now + 3600)), "not yet"),
        "lives 8 days": (rsa_key.sign(claims(tenant.app_id, exp=now + 8 * 86400)), "7 days"),
        "no sub": (rsa_key.sign(claims(tenant.app_id, sub=None)), "sub"),
        # An HMAC keyed with the RSA public key: goes the HS256 way, where the secret is the app's.
        "HS256 with the public key": (_hmac_token(claims(tenant.app_id), rsa_key.kid, pem),
                                      "not valid"),
        "alg none": (_unsigned(claims(tenant.app_id), rsa_key.kid), "not valid"),
        "alg a list": (_unsigned(claims(tenant.app_id), rsa_key.kid, ["RS256"]), "not valid"),
        # A real ES256 signature, naming the RSA key: the key's type decides, not the token.
        "ES256 header on an RSA key": (ec_key.sign(claims(tenant.app_id), kid=rsa_key.kid),
                                       "not its key's"),
        "RS256 header on an EC key": (rsa_key.sign(claims(tenant.app_id), kid=ec_key.kid),
                                      "not its key's"),
        "signed by another key": (new_key("RS256").sign(claims(tenant.app_id), kid=rsa_key.kid),
                                  "not valid"),
    }  # fmt: skip
    for name, (token, detail) in cases.items():
        problem = expect_problem(write(server, tenant, token), 401, "unauthenticated")
        assert detail in problem["detail"], (name, problem)


def test_an_app_without_an_issuer_refuses_provider_tokens(server: Server, tenant: Tenant) -> None:
    token = new_key("ES256").sign(claims(tenant.app_id))
    problem = expect_problem(write(server, tenant, token), 401, "unauthenticated")
    assert "identity provider" in problem["detail"]


def test_a_new_key_is_accepted_within_seconds_and_an_unknown_kid_is_refused(
    server: Server, tenant: Tenant, idp: Provider
) -> None:
    name = named("rotation")
    old, new = new_key("RS256"), new_key("EdDSA")
    uri = idp.publish(name, old)
    register(server, tenant, {"issuer": ISSUER, "jwks_uri": uri})
    expect_status(write(server, tenant, old.sign(claims(tenant.app_id))), 201)
    assert idp.fetches(name) == 1
    idp.publish(name, old, new)  # the provider rotates: the new key is published beside the old
    deadline = time.monotonic() + REFETCH + 10
    while (answer := write(server, tenant, new.sign(claims(tenant.app_id)))).status_code != 201:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    assert idp.fetches(name) == 2
    # A kid the provider never published: one more fetch (once the wait is over), then 401.
    time.sleep(REFETCH + 0.5)
    unknown = new_key("RS256").sign(claims(tenant.app_id))
    problem = expect_problem(write(server, tenant, unknown), 401, "unauthenticated")
    assert "no signing key" in problem["detail"]
    assert idp.fetches(name) == 3


def test_a_flood_of_unknown_kids_makes_a_bounded_number_of_fetches(
    server: Server, tenant: Tenant, idp: Provider
) -> None:
    name = named("flood")
    key = new_key("ES256")
    uri = idp.publish(name, key)
    register(server, tenant, {"issuer": ISSUER, "jwks_uri": uri})
    started = time.monotonic()
    with server.client() as client:
        for _ in range(300):
            token = key.sign(claims(tenant.app_id), kid=uuid.uuid4().hex)
            answer = client.post(events_url(tenant.app_id), json={"action": "f"},
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            expect_problem(answer, 401, "unauthenticated")
    elapsed = time.monotonic() - started
    # One fetch when the set was first needed, then at most one per wait.
    assert idp.fetches(name) <= 2 + elapsed / REFETCH, (idp.fetches(name), elapsed)
    expect_status(write(server, tenant, key.sign(claims(tenant.app_id))), 201)


def test_a_provider_that_is_down_stops_no_token_signed_by_a_cached_key(
    server: Server, tenant: Tenant, idp: Provider
) -> None:
    name = named("down")
    key = new_key("RS256")
    uri = idp.publish(name, key)
    register(server, tenant, {"issuer": ISSUER, "jwks_uri": uri})
    expect_status(write(server, tenant, key.sign(claims(tenant.app_id))), 201)
    idp.set_down(name)
    for sub in ("a", "b", "c"):  # distinct tokens: none is answered from the answer cache
        expect_status(write(server, tenant, key.sign(claims(tenant.app_id, sub=sub))), 201)
    assert idp.fetches(name) == 1


def test_an_inline_jwks_and_removing_the_issuer(server: Server, tenant: Tenant) -> None:
    key = new_key("EdDSA")
    jwks = {"keys": [key.jwk()]}
    register(server, tenant, {"issuer": ISSUER, "jwks": jwks, "role_map": {"boss": "owner"}})
    token = key.sign(claims(tenant.app_id, role="boss"))
    assert expect_status(write(server, tenant, token), 201).json()["actor"]["role"] == "owner"
    answer = register(server, tenant, None)
    assert answer["session_issuer"] is None
    assert answer["entry"]["action"] == "app.settings.change"
    (change,) = answer["entry"]["changes"]
    assert change["path"] == "/session_issuer"
    assert change["new"] is None
    assert change["old"]["jwks"] == jwks
    expect_problem(write(server, tenant, key.sign(claims(tenant.app_id))), 401, "unauthenticated")


BAD_ISSUERS: dict[str, tuple[Any, str]] = {
    "not an object": ("https://idp", "session_issuer"),
    "no issuer": ({"jwks_uri": "https://idp.example/jwks"}, "session_issuer.issuer"),
    "neither source": ({"issuer": ISSUER}, "session_issuer"),
    "both sources": ({"issuer": ISSUER, "jwks_uri": "https://idp.example/jwks",
                      "jwks": {"keys": []}}, "session_issuer"),
    "unknown role": ({"issuer": ISSUER, "jwks_uri": "https://idp.example/jwks",
                      "role_map": {"x": "superuser"}}, "session_issuer.role_map.x"),
    "bad role claim": ({"issuer": ISSUER, "jwks_uri": "https://idp.example/jwks",
                        "role_claim": "realm_access..roles"}, "session_issuer.role_claim"),
    "unusable jwks": ({"issuer": ISSUER, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
                      "session_issuer.jwks"),
    "not a URL": ({"issuer": ISSUER, "jwks_uri": "idp.example/jwks"}, "session_issuer.jwks_uri"),
    "a bad IPv6 host": ({"issuer": ISSUER, "jwks_uri": "https://[zz]/j"},
                        "session_issuer.jwks_uri"),
    "a space in the host": ({"issuer": ISSUER, "jwks_uri": "https://a b/j"},
                            "session_issuer.jwks_uri"),
    "unknown field": ({"issuer": ISSUER, "jwks_uri": "https://idp.example/jwks", "alg": "HS256"},
                      "session_issuer.alg"),
}  # fmt: skip


def test_bad_issuers_are_400_naming_the_field(server: Server, tenant: Tenant) -> None:
    with owner(server, tenant) as client:
        for name, (value, field) in BAD_ISSUERS.items():
            answer = client.patch(f"/v1/apps/{tenant.app_id}", json={"session_issuer": value})
            problem = expect_problem(answer, 400, "invalid_request")
            assert problem["detail"].startswith(field), (name, problem)


def test_a_loopback_jwks_uri_is_refused_without_the_setting(
    sqlite_server: Server, idp: Provider
) -> None:
    sqlite_server.env["TRAILKEEP_JWKS_ALLOW_PRIVATE"] = "0"
    tenant = sqlite_server.start().new_app()
    with owner(sqlite_server, tenant) as client:
        for uri in (idp.publish("private", new_key("RS256")),
                    "https://127.0.0.1/jwks", "https://10.1.2.3/jwks", "https://[::1]/jwks",
                    "https://169.254.169.254/jwks", "https://localhost/jwks"):  # fmt: skip
            wanted = {"session_issuer": {"issuer": ISSUER, "jwks_uri": uri}}
            answer = client.patch(f"/v1/apps/{tenant.app_id}", json=wanted)
            problem = expect_problem(answer, 400, "invalid_request")
            assert problem["detail"].startswith("session_issuer.jwks_uri"), (uri, problem)
        assert client.get(f"/v1/apps/{tenant.app_id}").json()["session_issuer"] is None
    refused = sqlite_server.cli("apps", "update", tenant.app_id, "--issuer", ISSUER,
                                "--jwks-uri", "https://127.0.0.1/jwks", check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "jwks-uri" in refused.stderr + refused.stdout


def test_the_cli_sets_and_removes_the_issuer(server: Server, tenant: Tenant, idp: Provider) -> None:
    key = new_key("ES256")
    uri = idp.publish(named("cli"), key)
    server.cli("apps", "update", tenant.app_id, "--issuer", ISSUER, "--jwks-uri", uri,
               "--role-claim", "realm_access.roles", "--role-map", "tk-owner=owner")  # fmt: skip
    token = key.sign(claims(tenant.app_id, realm_access={"roles": ["tk-owner"]}))
    entry = expect_status(write(server, tenant, token), 201).json()
    assert entry["actor"]["role"] == "owner"
    with owner(server, tenant) as client:
        found = expect_status(client.get(f"/v1/apps/{tenant.app_id}")).json()["session_issuer"]
    assert found == {
        "issuer": ISSUER, "jwks_uri": uri, "audience": tenant.app_id,
        "role_claim": "realm_access.roles", "role_map": {"tk-owner": "owner"},
    }  # fmt: skip
    server.cli("apps", "update", tenant.app_id, "--no-issuer")
    with server.client(tenant.key) as reader:
        lines = export_lines(reader, tenant.app_id, {"action": "app.settings.change"})
    changes = [json.loads(line)["changes"] for line in lines]
    assert changes == [
        [{"path": "/session_issuer", "old": None, "new": found}],
        [{"path": "/session_issuer", "old": found, "new": None}],
    ]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_token(body: dict[str, Any], kid: str, secret: bytes) -> str:
    """HS256 over the claims, keyed by ``secret`` (PyJWT refuses to make one with a PEM)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    signed = f"{head}.{_b64(json.dumps(body).encode())}"
    mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_b64(mac)}"


def _unsigned(body: dict[str, Any], kid: str, alg: Any = "none") -> str:
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    return f"{head}.{_b64(json.dumps(body).encode())}."


def test_the_python_sdk_forwards_a_providers_token(
    server: Server, tenant: Tenant, idp: Provider
) -> None:
    key = new_key("ES256")
    register(server, tenant, {"issuer": ISSUER, "jwks_uri": idp.publish(named("sdk"), key),
                              "role_claim": "realm_access.roles",
                              "role_map": {"auditors": "auditor"}})  # fmt: skip
    token = key.sign(claims(tenant.app_id, sub="kc-9", name="Kim",
                            realm_access={"roles": ["auditors"]}))  # fmt: skip
    with Client(server.url, tenant.app_id, tenant.key) as sdk:
        entry = sdk.audit.log("doc.share", session=token)
        # What the middlewares do with a request's Authorization header: bind its session.
        with bind(session=token, client_ip="198.51.100.9"):
            bound = sdk.audit.log("doc.open")
    for made in (entry, bound):
        assert (made.actor.type, made.actor.id, made.actor.name, made.actor.role) == (
            "user", "kc-9", "Kim", "auditor",
        )  # fmt: skip
        assert made.context.forwarded_by == tenant.key_id
    assert bound.context.ip == "198.51.100.9"
    # The key lends the session nothing it lacks, and the session only what its role gives.
    reader = server.new_key(tenant.app_id, "events:read").key
    with Client(server.url, tenant.app_id, reader) as sdk, pytest.raises(Forbidden):
        sdk.audit.log("doc.share", session=token)
