"""A small identity provider for the tests: keys made here, a JWKS served on loopback.

Each key set is published at a path of its own (``/<name>/jwks``), so tests sharing the server
never share a set, and every request is counted per path (the tests bound fetches by it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example/realms/trailkeep"


@dataclass
class SigningKey:
    """A private key, its ``kid`` and the algorithm its type signs with."""

    algorithm: str
    private: Any
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, as a provider publishes it."""
        public = self.private.public_key()
        maker = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}
        found: dict[str, Any] = maker[self.algorithm].to_jwk(public, as_dict=True)
        return {**found, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token with these claims, signed by this key (``kid`` in its header)."""
        return jwt.encode(claims, self.private, self.algorithm, headers={"kid": self.kid, **header})


def new_key(algorithm: str) -> SigningKey:
    """A fresh key for ``RS256``, ``ES256`` or ``EdDSA``."""
    if algorithm == "RS256":
        return SigningKey(algorithm, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if algorithm == "ES256":
        return SigningKey(algorithm, ec.generate_private_key(ec.SECP256R1()))
    return SigningKey(algorithm, ed25519.Ed25519PrivateKey.generate())


def claims(audience: str | list[str], sub: str = "user_1", **more: Any) -> dict[str, Any]:
    """Valid claims from :data:`ISSUER` for ``audience``, with overrides (None drops one)."""
    now = int(time.time())
    base = {"iss": ISSUER, "sub": sub, "aud": audience, "iat": now, "exp": now + 600,
            "jti": uuid.uuid4().hex}  # fmt: skip
    return {k: v for k, v in {**base, **more}.items() if v is not None}


class Provider:
    """JWKS documents served over HTTP on loopback, by path; requests counted."""

    def __init__(self) -> None:
        self.sets: dict[str, list[dict[str, Any]]] = {}
        self.down: set[str] = set()  # paths that answer 503
        self.cache_control = "max-age=300"
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    provider.requests[self.path] += 1
                    keys = provider.sets.get(self.path)
                    down = self.path in provider.down
                if down or keys is None:
                    self.send_response(503 if down else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", provider.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # the tests count requests; a log line each is noise

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, name: str, *keys: SigningKey) -> str:
        """Publish these keys at ``/<name>/jwks`` (replacing what was there); returns the URL."""
        path = f"/{name}/jwks"
        with self._lock:
            self.sets[path] = [key.jwk() for key in keys]
        return self.url + path

    def fetches(self, name: str) -> int:
        """Requests made for ``/<name>/jwks`` so far."""
        with self._lock:
            return self.requests[f"/{name}/jwks"]

    def set_down(self, name: str, down: bool = True) -> None:
        """Make ``/<name>/jwks`` answer 503 (or serve again)."""
        with self._lock:
            (self.down.add if down else self.down.discard)(f"/{name}/jwks")


@contextmanager
def provider() -> Iterator[Provider]:
    """A running :class:`Provider`, shut down afterwards."""
    served = Provider()
    served._thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
