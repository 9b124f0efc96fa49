"""`/console`: static files from the package, a strict CSP on every answer, ETags and 304s; and
`trailkeep console link`, whose session (in the URL's fragment) reads the log as that person."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from importlib.resources import files
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from tests.integration.http_api import expect_status
from tests.servers import Server, run_cli

STATIC = files("trailkeep").joinpath("server/console/static")
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MODULE_IMPORT = re.compile(r"""^import (?:[^"']+ from )?["']([^"']+)["'];$""", re.MULTILINE)


@pytest.fixture(scope="module")
def srv(shared_sqlite_server: Server) -> Server:
    """The shared SQLite server: the console's files are the same on every store."""
    return shared_sqlite_server


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "style" or "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(tag)
        if tag == "script":
            if not found.get("src"):
                self.inline.append("script")
            else:
                self.urls.append(str(found["src"]))
        if tag in ("link", "img") and (found.get("href") or found.get("src")):
            self.urls.append(str(found.get("href") or found.get("src")))


def check_headers(response: httpx.Response) -> None:
    """The headers every console answer carries."""
    assert response.headers["content-security-policy"] == POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"


def test_the_page_and_every_module_come_from_this_server_with_a_strict_policy(srv: Server) -> None:
    with srv.client() as client:
        page = expect_status(client.get("/console"))
        check_headers(page)
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        parser = _Page()
        parser.feed(page.text)
        assert parser.inline == []  # no inline script, style or handler: the CSP forbids them
        assert sorted(parser.urls) == [
            "/console/console.css", "/console/icon.svg", "/console/icon.svg", "/console/main.mjs"
        ]  # fmt: skip
        # Every module the page reaches, by following imports: all served here, as JavaScript.
        seen, todo = set(), ["main.mjs"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            module = expect_status(client.get(f"/console/{name}"))
            check_headers(module)
            assert module.headers["content-type"] == "text/javascript; charset=utf-8"
            assert module.content == STATIC.joinpath(name).read_bytes()
            for target in MODULE_IMPORT.findall(module.text):
                assert target.startswith("./"), (name, target)  # never another host
                todo.append(target[2:])
        assert {"query.mjs", "verify.mjs", "log.mjs", "entry.mjs", "signin.mjs"} <= seen
        css = expect_status(client.get("/console/console.css"))
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert "url(" not in css.text
        assert "@import" not in css.text
        etag = css.headers["etag"]
        assert etag == '"' + hashlib.sha256(css.content).hexdigest()[:32] + '"'
        again = client.get("/console/console.css", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        check_headers(again)
        head = client.head("/console")
        assert head.status_code == 200
        assert head.headers["etag"] == page.headers["etag"]
        for path in ("/console", "/console/main.mjs"):
            options = client.options(path)
            assert (options.status_code, options.headers["allow"]) == (204, "GET, HEAD, OPTIONS")
            refused = client.post(path)
            # (Like /docs and /openapi.json, paths outside the API document name no OPTIONS in
            # a 405's Allow: that is Starlette's answer, not the API's rule.)
            assert refused.status_code == 405
            assert {"GET", "HEAD"} <= set(refused.headers["allow"].split(", "))


def test_nothing_but_the_console_files_is_served(srv: Server) -> None:
    with srv.client() as client:
        for path in ("/console/nothing.mjs", "/console/__init__.py", "/console/..%2Fapi%2Fapp.py",
                     "/console/Main.mjs", "/console/static"):  # fmt: skip
            assert client.get(path).status_code == 404, path


def test_no_console_module_writes_markup() -> None:
    # Everything in the log is untrusted: the console makes DOM nodes and text, never HTML.
    for item in STATIC.iterdir():
        if item.name.endswith(".mjs"):
            text = item.read_text()
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in text, (item.name, sink)


def test_a_console_link_carries_a_session_for_that_person_in_its_fragment(srv: Server) -> None:
    app = srv.new_app("console link")
    env = {"TRAILKEEP_PUBLIC_URL": "https://audit.example.com/"}
    made = run_cli("console", "link", "--app", app.app_id, "--sub", "ada", "--role", "auditor",
                   "--name", "Ada", "--ttl", "15m", env={**srv.env, **env})  # fmt: skip
    url = made.stdout.strip()
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == (
        "https", "audit.example.com", "/console", ""
    )  # fmt: skip
    assert parts.fragment.startswith("session=")
    token = parts.fragment.removeprefix("session=")
    claims = jwt.decode(token, app.session_secret, algorithms=["HS256"], audience=app.app_id)
    assert (claims["sub"], claims["role"], claims["name"]) == ("ada", "auditor", "Ada")
    assert claims["exp"] - claims["iat"] == 900
    with srv.client(token) as client:
        expect_status(client.get(f"/v1/apps/{app.app_id}/events"))
    with srv.client(app.key) as client:
        listed = client.get(f"/v1/apps/{app.app_id}/events", params={"action": "audit.read"})
        reads = expect_status(listed).json()["data"]
    assert [r["actor"] for r in reads] == [
        {"type": "user", "id": "ada", "name": "Ada", "role": "auditor"}
    ]
    # Without TRAILKEEP_PUBLIC_URL the link is the local server's; a bad role or TTL is refused.
    local = run_cli("console", "link", "--app", app.app_id, "--sub", "bo", "--role", "owner",
                    env={**srv.env, "TRAILKEEP_PUBLIC_URL": ""})  # fmt: skip
    assert local.stdout.startswith("http://127.0.0.1:8000/console#session=")
    for bad in (["--role", "user"], ["--role", "owner", "--ttl", "8d"],
                ["--role", "owner", "--ttl", "soon"]):  # fmt: skip
        refused = srv.cli("console", "link", "--app", app.app_id, "--sub", "x", *bad, check=False)
        assert refused.returncode != 0, bad
    unknown = srv.cli("console", "link", "--app", "app_nope", "--sub", "x", "--role", "owner",
                      check=False)  # fmt: skip
    assert unknown.returncode != 0
    assert "no app" in unknown.stderr
