"""Credentials over real HTTP: session tokens, revoked keys, tenancy, forwarding.

What test_writes.py already covers (who may read, write-only keys, key kinds, forwarding headers
from an untrusted peer) is not repeated here.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.http_api import (
    batch_url,
    events_url,
    expect_created,
    expect_problem,
    next_seq,
)
from tests.servers import Server, Tenant

pytestmark = [
    pytest.mark.timeout(120),
    # HS512 with the app's (HS256-sized) secret is one of the refused tokens, on purpose.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


@pytest.fixture(scope="module")
def app(server: Server) -> Tenant:
    """The app under test."""
    return server.new_app("auth")


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    """Another app on the same server."""
    return server.new_app("auth-other")


@pytest.fixture(scope="module")
def client(server: Server, app: Tenant) -> Iterator[httpx.Client]:
    """A client with the app's all-scopes (management) key."""
    with server.client(app.key) as c:
        yield c


@pytest.fixture(scope="module")
def written(client: httpx.Client, app: Tenant) -> str:
    """The id of an entry to read back."""
    return str(
        expect_created(client.post(events_url(app.app_id), json={"action": "auth.seed"}))["id"]
    )


def claims_for(app: Tenant, **claims: Any) -> dict[str, Any]:
    """Valid session claims for the app, with overrides (a value of None drops the claim)."""
    now = int(time.time())
    base = {"sub": "user_1", "aud": app.app_id, "iat": now, "exp": now + 600}
    return {k: v for k, v in {**base, **claims}.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    """base64url of a JSON object, unpadded, as in a JWT."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(app: Tenant) -> str:
    """`alg: none`: a token that claims to need no signature."""
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(app))}."


def tampered(app: Tenant) -> str:
    """A genuine token whose payload was changed afterwards (the signature no longer fits)."""
    header, _, signature = jwt.encode(claims_for(app), app.session_secret, "HS256").split(".")
    return f"{header}.{b64(claims_for(app, sub='someone_else', role='owner'))}.{signature}"


def rs256(app: Tenant) -> str:
    """Signed with RS256 by a key the app never registered (only HS256 is accepted)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims_for(app), key, "RS256")


BAD_SESSIONS: dict[str, Callable[[Tenant, Tenant], str]] = {
    "expired": lambda a, o: jwt.encode(
        claims_for(a, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        a.session_secret, "HS256"),
    "other-apps-secret": lambda a, o: jwt.encode(claims_for(a), o.session_secret, "HS256"),
    "alg-none": lambda a, o: unsigned(a),
    "hs512-right-secret": lambda a, o: jwt.encode(claims_for(a), a.session_secret, "HS512"),
    "rs256": lambda a, o: rs256(a),
    "tampered": lambda a, o: tampered(a),
    "no-exp": lambda a, o: jwt.encode(claims_for(a, exp=None), a.session_secret, "HS256"),
    "no-sub": lambda a, o: jwt.encode(claims_for(a, sub=None), a.session_secret, "HS256"),
    "no-aud": lambda a, o: jwt.encode(claims_for(a, aud=None), a.session_secret, "HS256"),
    "empty-sub": lambda a, o: jwt.encode(claims_for(a, sub=""), a.session_secret, "HS256"),
    "not-yet-valid": lambda a, o: jwt.encode(
        claims_for(a, nbf=int(time.time()) + 3600), a.session_secret, "HS256"),
    "lives-8-days": lambda a, o: jwt.encode(
        claims_for(a, exp=int(time.time()) + 8 * 86400), a.session_secret, "HS256"),
    "exp-beyond-any-date": lambda a, o: jwt.encode(
        claims_for(a, exp=10**400), a.session_secret, "HS256"),
    "exp-as-a-string": lambda a, o: jwt.encode(
        claims_for(a, exp=str(int(time.time()) + 600)), a.session_secret, "HS256"),
    "exp-true": lambda a, o: jwt.encode(claims_for(a, exp=True), a.session_secret, "HS256"),
    "exp-nan": lambda a, o: jwt.encode(claims_for(a, exp=float("nan")), a.session_secret, "HS256"),
    "nbf-as-a-string": lambda a, o: jwt.encode(
        claims_for(a, nbf=str(int(time.time()) - 60)), a.session_secret, "HS256"),
    "iat-negative": lambda a, o: jwt.encode(claims_for(a, iat=-1), a.session_secret, "HS256"),
    "garbage": lambda a, o: "garbage",
    "three-dots": lambda a, o: "a.b.c",
    "not-json": lambda a, o: "eyJub3Q.eyJqc29u.c2ln",
    "key-prefix-only": lambda a, o: "tk_",
    "key-unknown": lambda a, o: "tk_nosuchkeyid000_secretsecretsecret",
    "key-wrong-secret": lambda a, o: a.key[:-4] + ("b" if a.key.endswith("a") else "a") * 4,
    "key-no-secret": lambda a, o: a.key.rsplit("_", 1)[0],
}  # fmt: skip


@pytest.mark.parametrize("make", BAD_SESSIONS.values(), ids=BAD_SESSIONS.keys())
def test_bad_credentials_are_401(
    server: Server,
    app: Tenant,
    other: Tenant,
    client: httpx.Client,
    written: str,
    make: Callable[[Tenant, Tenant], str],
) -> None:
    before = next_seq(client, app.app_id)
    with server.client(make(app, other)) as bad:
        for response in (
            bad.post(events_url(app.app_id), json={"action": "auth.bad"}),
            bad.post(batch_url(app.app_id), json={"events": [{"action": "auth.bad"}]}),
            bad.get(f"{events_url(app.app_id)}/{written}"),
        ):
            expect_problem(response, 401, "unauthenticated")
    assert next_seq(client, app.app_id) == before + 1


def test_an_expired_session_says_so(server: Server, app: Tenant, other: Tenant) -> None:
    with server.client(BAD_SESSIONS["expired"](app, other)) as expired:
        problem = expect_problem(
            expired.post(events_url(app.app_id), json={"action": "a"}), 401, "unauthenticated"
        )
    assert "expired" in problem["detail"]


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Token {key}", "{key}", "Bearer{key}", ""],
)
def test_malformed_authorization_headers_are_401(
    server: Server, app: Tenant, authorization: str
) -> None:
    with server.client() as anonymous:
        response = anonymous.post(
            events_url(app.app_id),
            json={"action": "auth.bad"},
            headers={"Authorization": authorization.format(key=app.key)},
        )
    expect_problem(response, 401, "unauthenticated")


def test_the_bearer_scheme_is_case_insensitive(server: Server, app: Tenant) -> None:
    with server.client() as anonymous:
        response = anonymous.post(
            events_url(app.app_id),
            json={"action": "auth.case"},
            headers={"Authorization": f"bEaReR {app.key}"},
        )
    assert expect_created(response)["actor"] == {"type": "api_key", "id": app.key_id}


# --- tenancy -----------------------------------------------------------------------------


def test_another_apps_session_is_404(
    server: Server, app: Tenant, other: Tenant, client: httpx.Client, written: str
) -> None:
    before = next_seq(client, app.app_id)
    for token in (
        server.session(other, "user_1", role="owner"),  # the other app's own token
        jwt.encode(claims_for(app, aud=other.app_id), app.session_secret, "HS256"),
    ):
        with server.client(token) as stranger:
            expect_problem(
                stranger.post(events_url(app.app_id), json={"action": "x"}), 404, "not_found"
            )
            expect_problem(stranger.get(f"{events_url(app.app_id)}/{written}"), 404, "not_found")
    assert next_seq(client, app.app_id) == before + 1


def test_a_key_of_one_app_cannot_write_to_another(
    server: Server, app: Tenant, other: Tenant, client: httpx.Client
) -> None:
    before = next_seq(client, app.app_id)
    with server.client(other.key) as stranger:
        expect_problem(
            stranger.post(events_url(app.app_id), json={"action": "x"}), 404, "not_found"
        )
        expect_problem(
            stranger.post(batch_url(app.app_id), json={"events": [{"action": "x"}]}),
            404,
            "not_found",
        )
        # Nor does an unknown app exist for it, and its own app still works.
        expect_problem(
            stranger.post(events_url("app_nosuchapp00000000"), json={"action": "x"}),
            404,
            "not_found",
        )
        assert expect_created(stranger.post(events_url(other.app_id), json={"action": "x"}))
    assert next_seq(client, app.app_id) == before + 1


def test_a_revoked_key_is_refused_within_seconds(
    server: Server, app: Tenant, client: httpx.Client
) -> None:
    doomed_key = server.new_key(app.app_id, "events:write")
    with server.client(doomed_key.key) as doomed:
        assert expect_created(doomed.post(events_url(app.app_id), json={"action": "k.live"}))
        server.cli("keys", "revoke", doomed_key.key_id)
        deadline = time.monotonic() + 10
        while (
            response := doomed.post(events_url(app.app_id), json={"action": "k.dead"})
        ).status_code == 201:
            assert time.monotonic() < deadline, "the revoked key was still accepted after 10 s"
            time.sleep(0.2)
        problem = expect_problem(response, 401, "unauthenticated")
        assert "revoked" in problem["detail"]
        before = next_seq(client, app.app_id)
        for _ in range(3):
            expect_problem(
                doomed.post(events_url(app.app_id), json={"action": "k.dead"}),
                401,
                "unauthenticated",
            )
    assert next_seq(client, app.app_id) == before + 1  # the app's other key is unaffected


# --- who the actor is --------------------------------------------------------------------

ROLES = [(None, None, "user"), ("member", "Ada", "user"), ("owner", "Ada", "admin"),
         ("admin", None, "admin"), ("Owner", "Ada", "user"), ("administrator", None, "user"),
         ]  # fmt: skip


@pytest.mark.parametrize(("role", "name", "kind"), ROLES)
def test_a_session_writes_as_its_user(
    server: Server, app: Tenant, role: str | None, name: str | None, kind: str
) -> None:
    with server.client(server.session(app, "user_42", role=role, name=name)) as user:
        entry = expect_created(user.post(events_url(app.app_id), json={"action": "s.write"}))
    # An unset name or role is left out of the actor, not stored as null.
    claims = {"name": name, "role": role}
    expected = {"type": "user", "id": "user_42"} | {k: v for k, v in claims.items() if v}
    assert entry["actor"] == expected
    assert entry["kind"] == kind
    assert entry["context"] == {
        "ip": "127.0.0.1",
        "user_agent": f"python-httpx/{httpx.__version__}",
    }


FORWARDED_ROLES = [("member", "user"), (None, "user"), ("owner", "admin"), ("admin", "admin")]


@pytest.mark.parametrize(("role", "kind"), FORWARDED_ROLES)
def test_a_key_forwarding_a_session_writes_as_that_user(
    server: Server, app: Tenant, client: httpx.Client, role: str | None, kind: str
) -> None:
    # The app's key has `manage` (its own entries are `admin`): the forwarded user decides.
    session = server.session(app, "user_9", role=role, name="Bo")
    response = client.post(
        events_url(app.app_id), json={"action": "f.session"}, headers={"Trailkeep-Session": session}
    )
    entry = expect_created(response)
    assert entry["actor"] == {"type": "user", "id": "user_9", "name": "Bo"} | (
        {"role": role} if role else {}
    )
    assert entry["kind"] == kind
    assert entry["context"]["ip"] == "127.0.0.1"


def test_a_forwarded_session_records_the_key_that_forwarded_it(
    server: Server, app: Tenant, client: httpx.Client
) -> None:
    session = server.session(app, "user_9", role="member")
    entry = expect_created(
        client.post(
            events_url(app.app_id),
            json={"action": "f.session"},
            headers={"Trailkeep-Session": session},
        )
    )
    assert entry["context"].get("forwarded_by") == app.key_id


def test_a_key_forwards_its_users_address_and_agent(app: Tenant, client: httpx.Client) -> None:
    headers = {"Trailkeep-Client-IP": "203.0.113.7", "Trailkeep-Client-User-Agent": "Firefox/1"}
    entry = expect_created(
        client.post(events_url(app.app_id), json={"action": "f.origin"}, headers=headers)
    )
    assert entry["actor"] == {"type": "api_key", "id": app.key_id}
    assert entry["kind"] == "admin"
    assert entry["context"] == {
        "ip": "203.0.113.7",
        "user_agent": "Firefox/1",
        "forwarded_by": app.key_id,
    }
    only_ip = expect_created(
        client.post(
            events_url(app.app_id),
            json={"action": "f.ip"},
            headers={"Trailkeep-Client-IP": "2001:db8::1"},
        )
    )
    assert only_ip["context"] == {
        "ip": "2001:db8::1",
        "forwarded_by": app.key_id,
        "user_agent": f"python-httpx/{httpx.__version__}",
    }


def test_a_key_forwards_session_address_and_agent_together(
    server: Server, app: Tenant, client: httpx.Client
) -> None:
    headers = {
        "Trailkeep-Session": server.session(app, "user_5", role="admin"),
        "Trailkeep-Client-IP": "198.51.100.4",
        "Trailkeep-Client-User-Agent": "Safari",
    }
    response = client.post(
        batch_url(app.app_id), json={"events": [{"action": "f.all"}]}, headers=headers
    )
    assert response.status_code == 201, response.text
    entry = response.json()["events"][0]
    assert entry["actor"] == {"type": "user", "id": "user_5", "role": "admin"}
    assert entry["kind"] == "admin"
    assert entry["context"] == {
        "ip": "198.51.100.4",
        "user_agent": "Safari",
        "forwarded_by": app.key_id,
    }


@pytest.mark.parametrize(
    "address",
    ["not-an-ip", "203.0.113.7, 10.0.0.1", "", "999.1.1.1", "fe80::1%=1+1", "fe80::1%",
     "fe80::1%eth0 x", "fe80::1%" + "a" * 65],
)  # fmt: skip
def test_a_forwarded_address_must_be_an_ip(app: Tenant, client: httpx.Client, address: str) -> None:
    response = client.post(
        events_url(app.app_id), json={"action": "f.bad"}, headers={"Trailkeep-Client-IP": address}
    )
    problem = expect_problem(response, 400, "invalid_request")
    assert "Trailkeep-Client-IP" in problem["detail"]


def test_a_forwarded_link_local_address_keeps_its_zone(app: Tenant, client: httpx.Client) -> None:
    response = client.post(
        events_url(app.app_id), json={"action": "f.zone"},
        headers={"Trailkeep-Client-IP": "fe80::1%eth0"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["context"]["ip"] == "fe80::1%eth0"


def test_a_forwarded_session_is_checked_like_any_other(
    server: Server, app: Tenant, other: Tenant, client: httpx.Client
) -> None:
    before = next_seq(client, app.app_id)
    for token, status, code in (
        (BAD_SESSIONS["expired"](app, other), 401, "unauthenticated"),
        (BAD_SESSIONS["alg-none"](app, other), 401, "unauthenticated"),
        ("garbage", 401, "unauthenticated"),
        (server.session(other, "user_1"), 404, "not_found"),
    ):
        response = client.post(
            events_url(app.app_id), json={"action": "f.bad"}, headers={"Trailkeep-Session": token}
        )
        expect_problem(response, status, code)
    assert next_seq(client, app.app_id) == before + 1


def test_a_forwarding_key_keeps_its_own_scopes(server: Server, app: Tenant) -> None:
    read_only = server.new_key(app.app_id, "events:read").key
    with server.client(read_only) as reader:
        response = reader.post(
            events_url(app.app_id),
            json={"action": "f.scope"},
            headers={"Trailkeep-Session": server.session(app, "u", role="owner")},
        )
    expect_problem(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("header", "value", "status", "code"),
    [
        ("Trailkeep-Client-IP", "203.0.113.7", 400, "invalid_request"),
        ("Trailkeep-Client-User-Agent", "Forged/1", 400, "invalid_request"),
        ("Trailkeep-Session", "{session}", 401, "unauthenticated"),
    ],
)
def test_a_session_may_not_forward_anything(
    server: Server,
    app: Tenant,
    client: httpx.Client,
    header: str,
    value: str,
    status: int,
    code: str,
) -> None:
    before = next_seq(client, app.app_id)
    other_user = server.session(app, "user_2", role="owner")
    with server.client(server.session(app, "user_1", role="member")) as user:
        response = user.post(
            events_url(app.app_id),
            json={"action": "f.session"},
            headers={header: value.format(session=other_user)},
        )
    problem = expect_problem(response, status, code)
    assert header in problem["detail"]
    assert next_seq(client, app.app_id) == before + 1
