"""The egress guard that JWKS fetches and webhook deliveries share (server/egress.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.receiver import receiver
from trailkeep.server.egress import EgressError, check_url, pinned, resolve

SETTING = "TRAILKEEP_WEBHOOK_ALLOW_PRIVATE"


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/latest",
     "https://[::1]/x", "https://[::ffff:127.0.0.1]/x", "https://localhost/x",
     "http://8.8.8.8/x", "ftp://8.8.8.8/x", "https://user:pw@8.8.8.8/x", "https://8.8.8.8/ x"],
)  # fmt: skip
def test_private_plain_or_odd_destinations_are_refused(url: str) -> None:
    with pytest.raises(EgressError):
        check_url(url, allow_private=False, setting=SETTING)


def test_the_setting_named_in_the_refusal_lifts_it() -> None:
    with pytest.raises(EgressError, match=SETTING):
        check_url("https://127.0.0.1/x", allow_private=False, setting=SETTING)
    assert resolve("http://127.0.0.1:9/x", allow_private=True, setting=SETTING) == []


def test_a_public_literal_resolves_to_itself() -> None:
    assert resolve("https://8.8.8.8/x", allow_private=False, setting=SETTING) == ["8.8.8.8"]


def test_pinning_keeps_the_name_in_host_and_tls_but_fixes_the_address() -> None:
    assert pinned("https://hooks.example.com:8443/in?a=1", "93.184.216.34") == (
        "https://93.184.216.34:8443/in?a=1", "hooks.example.com:8443", "hooks.example.com",
    )  # fmt: skip
    assert pinned("https://hooks.example.com/in", "2606:2800::1") == (
        "https://[2606:2800::1]/in", "hooks.example.com", "hooks.example.com",
    )  # fmt: skip


def test_a_pinned_request_reaches_the_address_and_names_the_host() -> None:
    with receiver() as rx:
        named = f"http://localhost:{rx.port}/hook"
        target, host, _ = pinned(named, "127.0.0.1")
        assert target == f"http://127.0.0.1:{rx.port}/hook"
        answer = httpx.post(target, content=b"{}", headers={"host": host}, timeout=5)
        assert answer.status_code == 204
        assert rx.requests[0].headers["host"] == f"localhost:{rx.port}"
