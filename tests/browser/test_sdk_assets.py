"""`GET /sdk/trailkeep.js` and `/sdk/trailkeep.mjs`: one source, content-hash ETags, 304s."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib.resources import files

import httpx
import pytest

from tests.integration.http_api import expect_problem
from tests.servers import Server
from trailkeep.server.api.sdk_assets import classic_script

SOURCE = files("trailkeep").joinpath("sdk/static/trailkeep.mjs").read_bytes()
CACHE_CONTROL = "public, max-age=86400, stale-while-revalidate=604800"


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    """A client without credentials: the SDK is public."""
    with server.client() as client:
        yield client


def etag_of(body: bytes) -> str:
    """The ETag the server promises: the first 128 bits of the body's SHA-256, quoted."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def test_the_module_is_the_source_file_byte_for_byte(http: httpx.Client) -> None:
    response = http.get("/sdk/trailkeep.mjs")
    assert response.status_code == 200
    assert response.content == SOURCE
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["etag"] == etag_of(SOURCE)
    assert response.headers["cache-control"] == CACHE_CONTROL
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_classic_script_wraps_the_module(http: httpx.Client) -> None:
    response = http.get("/sdk/trailkeep.js")
    assert response.status_code == 200
    body = response.content
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["etag"] == etag_of(body)
    assert response.headers["etag"] != etag_of(SOURCE)
    assert response.headers["cache-control"] == CACHE_CONTROL
    source_lines = SOURCE.decode().rstrip("\n").split("\n")
    assert source_lines[-1].startswith("export {")
    expected = (
        '(function () {\n"use strict";\n'
        + "\n".join(source_lines[:-1])
        + "\nglobalThis.trailkeep = trailkeep;\n})();\n"
    )
    assert body.decode() == expected


@pytest.mark.parametrize("name", ["trailkeep.js", "trailkeep.mjs"])
def test_a_matching_if_none_match_gets_304(http: httpx.Client, name: str) -> None:
    full = http.get(f"/sdk/{name}")
    etag = full.headers["etag"]
    for condition in (etag, f"W/{etag}", f'"0000", {etag}', "*"):
        again = http.get(f"/sdk/{name}", headers={"If-None-Match": condition})
        assert again.status_code == 304, condition
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == CACHE_CONTROL
    stale = http.get(f"/sdk/{name}", headers={"If-None-Match": '"0123456789abcdef"'})
    assert stale.status_code == 200
    assert stale.content == full.content


def test_head_answers_the_headers_alone(http: httpx.Client) -> None:
    full = http.get("/sdk/trailkeep.js")
    head = http.head("/sdk/trailkeep.js")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == full.headers["etag"]
    assert head.headers["content-length"] == str(len(full.content))


def test_other_names_are_not_found(http: httpx.Client) -> None:
    expect_problem(http.get("/sdk/trailkeep.min.js"), 404, "not_found")


@pytest.mark.parametrize(
    "module",
    [
        "const a = 1;\n",  # no export at all
        "export const a = 1;\nexport { a as b };\n",  # two exports
        "const a = 1;\nexport { a };\nconst b = 2;\n",  # export not last
        'import x from "./x.mjs";\nexport { x };\n',  # module-only syntax
        "const u = import.meta.url;\nexport { u };\n",
    ],
)
def test_a_module_that_cannot_become_a_classic_script_is_refused(module: str) -> None:
    with pytest.raises(RuntimeError, match=r"sdk/static/trailkeep\.mjs"):
        classic_script(module)
