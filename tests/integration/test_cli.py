"""The `trailkeep` command as a user meets it (issue 2): apps, keys, sessions, `serve --demo`.

Every call runs the real command in a subprocess, on a data directory of the test's own (or the
shared server's, where a running server must accept what the CLI made).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.http_api import check_entry, events_url, expect_created, key_id_of
from tests.servers import BIN, Server, run_cli

pytestmark = pytest.mark.timeout(120)

CliResult = subprocess.CompletedProcess[str]


def cli_env(data_dir: Path) -> dict[str, str]:
    """The environment of a user whose data directory is ``data_dir``, on an 80-column screen."""
    return {"TRAILKEEP_DATA_DIR": str(data_dir), "COLUMNS": "80"}


def failed(result: CliResult) -> str:
    """Assert a user error: non-zero exit, one line on stderr, no traceback; return the line."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data directory of this module's own."""
    return cli_env(tmp_path_factory.mktemp("cli") / "data")


@pytest.fixture(scope="module")
def made(home: dict[str, str]) -> dict[str, Any]:
    """`trailkeep apps create --json` of an app in ``home``."""
    result = run_cli("apps", "create", "Shop backend", "--json", env=home)
    made: dict[str, Any] = json.loads(result.stdout)
    return made


# --- apps --------------------------------------------------------------------------------


def test_apps_create_prints_the_app_and_its_credentials(made: dict[str, Any]) -> None:
    assert set(made) >= {"app_id", "key", "key_id", "session_secret"}
    assert re.fullmatch(r"app_[a-z0-9]{8,}", made["app_id"]), made
    assert re.fullmatch(r"tk_[a-z0-9]+_[a-z0-9]+", made["key"]), made
    assert made["key_id"] == key_id_of(made["key"])
    assert len(made["session_secret"]) >= 32


def test_apps_list_shows_every_app(home: dict[str, str], made: dict[str, Any]) -> None:
    text = run_cli("apps", "create", "Billing", env=home).stdout
    second = re.search(r"app_[a-z0-9]+", text)
    assert second is not None, text
    assert re.search(r"tk_[a-z0-9]+_[a-z0-9]+", text), text
    listed = json.loads(run_cli("apps", "list", "--json", env=home).stdout)
    by_id = {a["app_id"]: a for a in listed}
    assert set(by_id) == {made["app_id"], second.group()}
    assert by_id[made["app_id"]]["name"] == "Shop backend"
    assert by_id[second.group()]["name"] == "Billing"
    assert by_id[made["app_id"]]["entries"] == 0
    table = run_cli("apps", "list", env=home).stdout
    assert made["app_id"] in table
    assert second.group() in table


# --- keys --------------------------------------------------------------------------------


def test_keys_create_revoke_and_revoke_again(home: dict[str, str], made: dict[str, Any]) -> None:
    result = run_cli(
        "keys",
        "create",
        "--app",
        made["app_id"],
        "--scope",
        "events:write",
        "--scope",
        "events:read",
        "--json",
        env=home,
    )
    key = json.loads(result.stdout)
    assert set(key) == {"key_id", "key", "scopes", "expires_at"}
    assert key["scopes"] == ["events:read", "events:write"]
    assert key["key_id"] == key_id_of(key["key"])
    assert key["key_id"] != made["key_id"]
    revoked = run_cli("keys", "revoke", key["key_id"], env=home)
    assert key["key_id"] in revoked.stdout
    assert key["key_id"] in failed(run_cli("keys", "revoke", key["key_id"], env=home, check=False))


def test_keys_list_shows_whole_key_ids(home: dict[str, str], made: dict[str, Any]) -> None:
    # The id is what `keys revoke` needs: it must be there to copy, whole, on a plain terminal.
    table = run_cli("keys", "list", "--app", made["app_id"], env=home).stdout
    assert made["key_id"] in table, table


# --- errors: one line, non-zero, never a traceback ---------------------------------------

ERRORS = [
    pytest.param(["keys", "create", "--app", "app_nosuchapp", "--scope", "events:read"],
                 "app_nosuchapp", id="unknown-app"),
    pytest.param(["keys", "create", "--app", "{app}", "--scope", "events:delete-all"],
                 "events:delete-all", id="unknown-scope"),
    pytest.param(["keys", "revoke", "key_nosuchkey"], "key_nosuchkey", id="unknown-key-id"),
    pytest.param(["sessions", "mint", "--app", "{app}", "--sub", "u", "--ttl", "0"], "--ttl",
                 id="ttl-zero"),
    pytest.param(["keys", "create", "--app", "{app}"], "--scope", id="no-scope"),
    pytest.param(["keys", "revoke", "[/red]key_x"], "[/red]key_x", id="markup-in-input"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "word"), ERRORS)
def test_errors_are_one_clear_line(
    home: dict[str, str], made: dict[str, Any], args: list[str], word: str
) -> None:
    result = run_cli(*(a.format(app=made["app_id"]) for a in args), env=home, check=False)
    assert word in failed(result)


# --- sessions ----------------------------------------------------------------------------


def test_a_minted_session_is_accepted_by_the_server(server: Server) -> None:
    # The app too is made by the CLI, beside the running server that must accept it.
    made = json.loads(server.cli("apps", "create", "cli-sessions", "--json").stdout)
    app_id = made["app_id"]
    args = ["--sub", "user_42", "--role", "admin", "--name", "Ada Lovelace", "--ttl", "120"]
    token = server.cli("sessions", "mint", "--app", app_id, *args).stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, made["session_secret"], algorithms=["HS256"], audience=app_id)
    assert {k: claims[k] for k in ("sub", "aud", "role", "name")} == {
        "sub": "user_42",
        "aud": app_id,
        "role": "admin",
        "name": "Ada Lovelace",
    }
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 60
    with server.client(token) as ada:
        entry = expect_created(ada.post(events_url(app_id), json={"action": "cli.session"}))
        assert entry["actor"] == {
            "type": "user",
            "id": "user_42",
            "name": "Ada Lovelace",
            "role": "admin",
        }
        assert entry["kind"] == "admin"
        assert ada.get(f"{events_url(app_id)}/{entry['id']}").status_code == 200


# --- serve --demo ------------------------------------------------------------------------


def serve_demo(srv: Server) -> str:
    """Start `trailkeep serve --demo` on the server's data dir; return what this start printed."""
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    offset = srv.log.stat().st_size if srv.log.exists() else 0
    with srv.log.open("ab") as log:
        srv.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(srv.port), "--demo"],
            env=srv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        assert srv.proc.poll() is None, srv.log.read_text()
        try:
            if httpx.get(f"{srv.url}/healthz", timeout=1).status_code == 200:
                return srv.log.read_bytes()[offset:].decode()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, srv.log.read_text()
        time.sleep(0.05)


def printed(text: str, label: str) -> str:
    """The value printed after ``label:`` on a line of its own."""
    match = re.search(rf"^\s*{re.escape(label)}:\s*(\S+)\s*$", text, re.MULTILINE)
    assert match, (label, text)
    return match.group(1)


def test_serve_demo_prints_credentials_and_a_curl_line_that_works(tmp_path: Path) -> None:
    srv = Server(tmp_path / "demo")
    try:
        text = serve_demo(srv)
        app_id, key = printed(text, "app id"), printed(text, "key (all scopes)")
        secret = printed(text, "session secret")
        assert re.fullmatch(r"app_[a-z0-9]+", app_id)
        curl = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
        assert len(curl) == 1, text
        assert f"{srv.url}/v1/apps/{app_id}/events" in curl[0]
        assert key in curl[0]
        # Run the line as a shell would split it, asking curl for the status as well.
        done = subprocess.run(
            [*shlex.split(curl[0]), "-w", "\n%{http_code}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        body, _, status = done.stdout.rpartition("\n")
        assert (done.returncode, status) == (0, "201"), (done.stdout, done.stderr)
        entry = json.loads(body)
        check_entry(entry)
        assert (entry["app_id"], entry["seq"]) == (app_id, 0)
        assert entry["actor"] == {"type": "api_key", "id": key_id_of(key)}
        assert entry["context"]["user_agent"].startswith("curl/")
        # The printed session secret is the app's: a session made with it writes too.
        from trailkeep.sdk import mint_session

        with srv.client(mint_session(app_id, secret, "demo_user")) as user:
            assert (
                expect_created(user.post(events_url(app_id), json={"action": "demo.user"}))["seq"]
                == 1
            )
        # The console's address, and a link that signs the demo app's owner in.
        assert printed(text, "console") == f"{srv.url}/console"
        link = printed(text, "sign in (1 h)")
        assert link.startswith(f"{srv.url}/console#session=")
        with srv.client(link.partition("#session=")[2]) as owner:
            listed = owner.get(events_url(app_id))
            assert listed.status_code == 200, listed.text
            assert owner.get(f"/v1/apps/{app_id}").status_code == 200  # an owner manages
        saved = srv.data_dir / "demo-credentials.json"
        assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
        # A later start keeps the same app and prints the same credentials (and a fresh link).
        srv.stop()
        again = serve_demo(srv)
        assert (printed(again, "app id"), printed(again, "key (all scopes)")) == (app_id, key)
        assert printed(again, "sign in (1 h)").startswith(f"{srv.url}/console#session=")
        with srv.client(key) as client:
            again_entry = client.post(events_url(app_id), json={"action": "demo.again"})
            # After the two writes and the owner's recorded read (`audit.read`, seq 2).
            assert expect_created(again_entry)["seq"] == 3
    finally:
        srv.stop()
