"""Single writes with an identity provider's session against the app's own HS256 session.

Part of the ``http_write`` suite (suite_http.py calls it with its SQLite server). One app takes
HS256 sessions minted with its secret; another has registered an identity provider (its key set
given inline, so no provider is fetched during the run) and takes RS256 tokens. Each load sends
one token on every connection, as one busy user would: what is compared is a repeat request,
which the server answers from its cache of verified credentials without checking the signature
again. A token's first request pays one RSA verification (tens of microseconds).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bench.config import Sizes
from bench.harness import BenchServer, Result, Run, load, new_apps
from trailkeep.sdk import mint_session

SUITE = "http_write"
ISSUER = "https://idp.bench.example/realms/bench"


def idp_vs_hs256(run: Run, sizes: Sizes, server: BenchServer, url: str, body: str) -> None:
    """POST /events at 64 clients: an RS256 session of the app's provider vs an HS256 session."""
    own, registered = new_apps(url, 2, "sessions")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": "k1"}
    owner = mint_session(registered["app_id"], registered["session_secret"], "op", role="owner")
    issuer = {"issuer": ISSUER, "jwks": {"keys": [jwk]}}
    answer = httpx.patch(f"{server.url}/v1/apps/{registered['app_id']}",
                         json={"session_issuer": issuer},
                         headers={"Authorization": f"Bearer {owner}"}, timeout=30)  # fmt: skip
    answer.raise_for_status()
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "user_1", "aud": registered["app_id"], "iat": now,
              "exp": now + 3600}  # fmt: skip
    idp_token = jwt.encode(claims, private, "RS256", headers={"kid": "k1"})
    hs_token = mint_session(own["app_id"], own["session_secret"], "user_1", ttl=3600)
    rates = {}
    for name, app, token in (("hs256", own, hs_token), ("idp", registered, idp_token)):
        got = load(f"{server.url}/v1/apps/{app['app_id']}/events", connections=64,
                   seconds=sizes.load_seconds, method="POST", body=body,
                   headers={"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"})  # fmt: skip
        rates[name] = got
        print(f"  single c=64, {name} session: {got.requests_per_second:,.0f} entries/s",
              flush=True)  # fmt: skip
    idp, hs = rates["idp"], rates["hs256"]
    run.series[f"{SUITE}:idp_sessions"] = {
        "idp_entries_s": idp.requests_per_second, "hs256_entries_s": hs.requests_per_second,
        "failed": idp.non_2xx + hs.non_2xx,
    }  # fmt: skip
    ratio = idp.requests_per_second / hs.requests_per_second if hs.requests_per_second else 0.0
    run.add(Result(
        SUITE, "POST /events, 64 clients, an identity provider's RS256 session (SQLite)",
        idp.requests_per_second, "entries/s", baseline=hs.requests_per_second,
        baseline_name="the same load with the app's own HS256 session, same run",
        ratio_target="≥ 0.8", ratio_met=ratio >= 0.8,
        notes=f"one token per load, so repeat requests are answered from the verified-"
        f"credential cache; p99 {idp.p99_ms:.0f} vs {hs.p99_ms:.0f} ms"
        + (f"; {idp.non_2xx + hs.non_2xx} failed requests" if idp.non_2xx + hs.non_2xx else ""),
    ))  # fmt: skip
