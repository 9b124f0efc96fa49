"""The key sets of identity providers: parsing, the address rule, caching against a real server.

The server is tests/idp.py's, on loopback; the caches are made with a TTL floor of zero so that
what happens after ``max-age`` is seen in seconds rather than minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.idp import Provider, SigningKey, new_key, provider
from trailkeep.server import jwks
from trailkeep.server.jwks import JwksCache, JwksError, check_uri, parse_jwks

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    """A provider of this module's own."""
    with provider() as served:
        yield served


def test_only_public_signing_keys_of_the_three_types_are_used() -> None:
    good = [new_key(alg) for alg in ("RS256", "ES256", "EdDSA")]
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (refused)
    small = SigningKey("RS256", weak)
    enc = {**new_key("RS256").jwk(), "use": "enc"}
    pss = {**new_key("RS256").jwk(), "alg": "PS256"}
    secret = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    leaked = SigningKey("ES256", new_key("ES256").private)
    leaked_jwk = {**leaked.jwk(), "d": "AAAA"}
    keys = parse_jwks({"keys": [*(key.jwk() for key in good), small.jwk(), enc, pss, secret,
                                leaked_jwk]})  # fmt: skip
    assert {kid: key.algorithm for kid, key in keys.items()} == {
        key.kid: key.algorithm for key in good
    }
    for bad in ({"keys": [secret]}, {"keys": "x"}, [], {"no": "keys"}):
        with pytest.raises(JwksError):
            parse_jwks(bad)


MALFORMED = frozenset({
    "ftp://8.8.8.8/k", "https://user:pw@8.8.8.8/jwks", "jwks", "https://[zz]/jwks",
    "https://8.8.8.8:99999/j", "https://exa mple.com/jwks", "https://8.8.8.8/\x00",
})  # fmt: skip


@pytest.mark.parametrize(
    "uri",
    ["https://127.0.0.1/jwks", "https://10.0.0.8/jwks", "https://[::1]/jwks",
     "https://[::ffff:192.168.1.1]/jwks", "https://169.254.169.254/latest", "https://[fe80::1]/k",
     "https://100.64.0.1/jwks", "https://0.0.0.0/jwks", "http://8.8.8.8/jwks", "ftp://8.8.8.8/k",
     "https://user:pw@8.8.8.8/jwks", "jwks", "https://[zz]/jwks", "https://8.8.8.8:99999/j",
     "https://exa mple.com/jwks", "https://8.8.8.8/\x00"],
)  # fmt: skip
def test_non_public_or_plain_uris_are_refused(uri: str) -> None:
    with pytest.raises(JwksError):
        check_uri(uri, allow_private=False)
    if uri in MALFORMED:
        with pytest.raises(JwksError):  # whatever the setting
            check_uri(uri, allow_private=True)


def test_a_public_address_and_the_operators_own_network_pass() -> None:
    check_uri("https://8.8.8.8/jwks", allow_private=False)
    check_uri("http://127.0.0.1:8080/realms/x/protocol/openid-connect/certs", allow_private=True)


def test_max_age_is_kept_within_the_floor_and_the_ceiling() -> None:
    floor = jwks.TTL_FLOOR
    assert jwks._max_age("max-age=5", floor) == floor
    assert jwks._max_age("public, max-age=3600", floor) == 3600
    assert jwks._max_age("max-age=99999999", floor) == jwks.TTL_CEILING
    assert jwks._max_age(None, floor) == jwks.TTL_DEFAULT
    assert jwks._max_age("no-store", floor) == jwks.TTL_DEFAULT


def test_a_set_larger_than_the_limit_is_refused(idp: Provider) -> None:
    one = new_key("RS256")  # one key under many kids: a set of about 90 KB
    uri = idp.publish("large", *(SigningKey("RS256", one.private) for _ in range(200)))
    with pytest.raises(JwksError, match="larger than"):
        JwksCache(allow_private=True).key(uri, None)


def test_stale_keys_serve_while_the_provider_is_down_and_a_refresh_finds_new_ones(
    idp: Provider,
) -> None:
    idp.cache_control = "max-age=0"
    first, second = new_key("ES256"), new_key("EdDSA")
    uri = idp.publish("stale", first)
    cache = JwksCache(allow_private=True, ttl_floor=0)
    assert cache.key(uri, first.kid).algorithm == "ES256"
    assert idp.fetches("stale") == 1
    idp.set_down("stale")
    time.sleep(jwks.REFETCH_SECONDS + 0.2)
    for _ in range(3):  # stale, and the refresh fails: the cached key still serves
        assert cache.key(uri, first.kid).kid == first.kid
    time.sleep(0.5)
    assert idp.fetches("stale") == 2  # one background attempt, not one per use
    idp.set_down("stale", down=False)
    idp.publish("stale", first, second)
    time.sleep(jwks.REFETCH_SECONDS + 0.2)
    cache.key(uri, first.kid)  # starts a refresh in the background, answers at once
    deadline = time.monotonic() + 5
    while idp.fetches("stale") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert cache.key(uri, second.kid).algorithm == "EdDSA"
    assert idp.fetches("stale") == 3
    idp.cache_control = "max-age=300"


def test_an_unknown_kid_refetches_at_most_once_per_wait(idp: Provider) -> None:
    key = new_key("RS256")
    uri = idp.publish("unknown", key)
    cache = JwksCache(allow_private=True)
    cache.key(uri, key.kid)
    for _ in range(50):
        with pytest.raises(JwksError, match="no signing key"):
            cache.key(uri, "made-up")
    assert idp.fetches("unknown") == 1
    with pytest.raises(JwksError, match="TRAILKEEP_JWKS_ALLOW_PRIVATE"):
        JwksCache(allow_private=False).key(uri, key.kid)  # checked at fetch time too
