"""The `trailkeep` command's surface (issue 20): its version, its help, `--json` on every list,
what it says where there is no database, and `serve` refusing a bad start before making anything.

Every call runs the real command in a subprocess.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, free_port, run_cli
from trailkeep import __version__
from trailkeep.cli.command import command
from trailkeep.log.notes import NoteSigner

pytestmark = pytest.mark.timeout(240)

CliResult = subprocess.CompletedProcess[str]


def failed(result: CliResult) -> str:
    """Assert a user error: non-zero exit, one line on stderr, no traceback; return the line."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def command_paths() -> Iterator[list[str]]:
    """The path of words to every command and group of the real `trailkeep`, root first."""

    def walk(cmd: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(command(), [])


def test_version() -> None:
    result = run_cli("--version")
    assert result.stdout == f"trailkeep {__version__}\n"


@pytest.mark.parametrize("path", list(command_paths()), ids=lambda p: " ".join(p) or "trailkeep")
def test_help_has_no_stray_types_or_empty_sentences(path: list[str]) -> None:
    text = run_cli(*path, "--help", env={"COLUMNS": "100", "NO_COLOR": "1"}).stdout
    assert "Usage: trailkeep" in text, text
    assert "<bool>" not in text, text  # a flag takes no value
    assert not re.search(r"\w \.(?=\s|$)", text), text  # a sentence whose words went missing
    assert "()" not in text, text
    assert "[]" not in text, text


def test_every_option_and_argument_is_explained() -> None:
    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        for param in cmd.params:
            yield " ".join(path), param
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    silent = [
        f"{where}: {param.name}"
        for where, param in walk(command(), ["trailkeep"])
        if not getattr(param, "hidden", False) and not (getattr(param, "help", None) or "").strip()
    ]
    assert silent == []


# --- one meaning per flag ----------------------------------------------------------------


def test_the_api_key_is_api_key_everywhere_and_key_only_the_verifier_key() -> None:
    meanings: dict[str, set[str]] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                meanings.setdefault(opt, set()).add(" ".join(path))
                if opt == "--api-key":
                    assert param.envvar == "TRAILKEEP_KEY", path
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(command(), [])
    assert meanings["--key"] == {"verify"}
    assert meanings["--api-key"] == {
        "events list",
        "events stats",
        "events tail",
        "export",
        "verify",
    }


# --- --json on every list ----------------------------------------------------------------


def test_every_list_command_takes_json() -> None:
    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    lists = [(path, cmd) for path, cmd in walk(command(), []) if path and path[-1] == "list"]
    assert {" ".join(p) for p, _ in lists} >= {"apps list", "keys list", "events list"}
    for path, cmd in lists:
        assert any("--json" in getattr(p, "opts", []) for p in cmd.params), path


def test_keys_list_json(tmp_path: Path) -> None:
    env = {"TRAILKEEP_DATA_DIR": str(tmp_path / "data")}
    made = json.loads(run_cli("apps", "create", "keys json", "--json", env=env).stdout)
    second = json.loads(
        run_cli("keys", "create", "--app", made["app_id"], "--scope", "events:read",
                "--name", "reader", "--json", env=env).stdout
    )  # fmt: skip
    run_cli("keys", "revoke", second["key_id"], env=env)
    listed = json.loads(run_cli("keys", "list", "--app", made["app_id"], "--json", env=env).stdout)
    by_id = {k["key_id"]: k for k in listed}
    assert set(by_id) == {made["key_id"], second["key_id"]}
    assert by_id[second["key_id"]]["scopes"] == ["events:read"]
    assert by_id[second["key_id"]]["name"] == "reader"
    assert by_id[second["key_id"]]["revoked_at"] is not None
    assert by_id[made["key_id"]]["revoked_at"] is None
    text = json.dumps(listed)
    assert made["key"] not in text  # never a secret
    assert second["key"] not in text
    failed(run_cli("keys", "list", "--app", "app_nosuchapp", "--json", env=env, check=False))


# --- where there is no database ----------------------------------------------------------

NO_DATABASE = [
    ["apps", "list"],
    ["apps", "list", "--json"],
    ["apps", "update", "app_x", "--clear-origins"],
    ["keys", "list", "--app", "app_x"],
    ["keys", "create", "--app", "app_x", "--scope", "events:read"],
    ["keys", "revoke", "key_x"],
    ["sessions", "mint", "--app", "app_x", "--sub", "u"],
]


@pytest.mark.parametrize("args", NO_DATABASE, ids=" ".join)
def test_a_command_without_a_database_says_so_and_makes_none(
    tmp_path: Path, args: list[str]
) -> None:
    data = tmp_path / "nothing-here"
    line = failed(run_cli(*args, env={"TRAILKEEP_DATA_DIR": str(data)}, check=False))
    assert "no database at" in line, line
    assert str(data) in line, line
    assert not data.exists()


def test_a_command_with_an_unreachable_postgresql_says_so(tmp_path: Path) -> None:
    url = f"postgresql://trailkeep:hunter2@127.0.0.1:{free_port()}/trailkeep"
    env = {"TRAILKEEP_DATA_DIR": str(tmp_path / "data"), "TRAILKEEP_DATABASE_URL": url}
    for args in (["apps", "list"], ["apps", "create", "x"], ["migrate"]):
        line = failed(run_cli(*args, env=env, check=False))
        assert "cannot connect to the database" in line, line
        assert "hunter2" not in line
    assert not (tmp_path / "data").exists()


def test_verify_app_without_a_database_makes_none(tmp_path: Path) -> None:
    data = tmp_path / "nothing-here"
    key = tmp_path / "key.txt"
    key.write_text(NoteSigner("trailkeep.local", bytes(32)).verifier_key() + "\n")
    result = run_cli("verify", "--app", "app_x", "--key", str(key),
                     env={"TRAILKEEP_DATA_DIR": str(data)}, check=False)  # fmt: skip
    assert "no database at" in failed(result)
    assert not data.exists()


# --- serve: a bad start says why, in one line, and leaves nothing behind -----------------


def test_serve_on_a_taken_port_makes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--data-dir", str(data), check=False)
    line = failed(result)
    assert f"127.0.0.1:{port}" in line, line
    assert "taken" in line, line
    assert not data.exists()


def test_serve_with_an_unreachable_postgresql_makes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"postgresql://trailkeep:hunter2@127.0.0.1:{free_port()}/trailkeep"
    result = run_cli("serve", "--port", str(free_port()), "--data-dir", str(data),
                     "--database-url", url, check=False)  # fmt: skip
    line = failed(result)
    assert "cannot connect to the database" in line, line
    assert "hunter2" not in line  # the password is masked
    assert not data.exists()


def test_serve_still_starts_after_those_checks(sqlite_server: Server) -> None:
    # The port check binds and lets go at once: the real server takes the same port after it.
    sqlite_server.start()
    assert not sqlite_server.cli("apps", "list", "--json").stderr


# --- verify: a CSV export is refused with the reason ------------------------------------


def test_verify_refuses_a_csv_export_and_says_why(server: Server, tmp_path: Path) -> None:
    tenant = server.new_app("verify csv")
    with server.client(tenant.key) as client:
        for n in range(3):
            write = {"action": "csv.row", "target_type": "doc", "target_id": f"=HYPERLINK({n})"}
            assert client.post(f"/v1/apps/{tenant.app_id}/events", json=write).status_code == 201
        files = {
            "export.csv": client.get(f"/v1/apps/{tenant.app_id}/export", params={"format": "csv"}),
            "export.ndjson": client.get(f"/v1/apps/{tenant.app_id}/export"),
            "checkpoint.txt": client.get(f"/v1/apps/{tenant.app_id}/checkpoint"),
            "key.txt": client.get("/v1/checkpoint-key"),
        }
    for name, response in files.items():
        assert response.status_code == 200, (name, response.text)
        (tmp_path / name).write_bytes(response.content)
    args = ["--checkpoint", str(tmp_path / "checkpoint.txt"), "--key", str(tmp_path / "key.txt")]
    assert run_cli("verify", "--entries", str(tmp_path / "export.ndjson"), *args).returncode == 0
    for name in ("export.csv", "renamed.txt"):  # known by its header, whatever its name
        (tmp_path / name).write_bytes(files["export.csv"].content)
        line = failed(run_cli("verify", "--entries", str(tmp_path / name), *args, check=False))
        assert "CSV export, which cannot be verified" in line, line
        assert "canonical bytes" in line, line
        assert "format=ndjson" in line, line
