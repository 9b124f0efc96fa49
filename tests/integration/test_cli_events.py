"""`trailkeep events list|stats|tail` against a real server (issue 3), compared with the API."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http_api import Entry, events_url, expect_status, list_all, write_batch
from tests.servers import BIN, Server, Tenant, free_port, run_cli

pytestmark = pytest.mark.timeout(240)

# Wide enough that Rich neither wraps nor elides a cell; UTF-8 so the box characters are stable.
WIDE = {"COLUMNS": "400", "PYTHONIOENCODING": "utf-8"}


@dataclass
class CliApp:
    """An app with known entries and a read key; the CLI reads it through the server."""

    server: Server
    tenant: Tenant
    read_key: str
    entries: list[Entry]  # oldest first

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.tenant.app_id

    def cli(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """`trailkeep events ...` with this server and key given as options."""
        return run_cli(
            "events", *args, "--app", self.app_id, "--server", self.server.url,
            "--api-key", self.read_key, env={**WIDE, **env}, check=check,
        )  # fmt: skip


@pytest.fixture(scope="module")
def app(server: Server) -> CliApp:
    """24 entries by a management key (admin) and 12 by a plain user's session (user)."""
    tenant = server.new_app("cli events")
    entries: list[Entry] = []
    ada = server.session(tenant, "ada", role="member", name="Ada")
    with server.client(tenant.key) as key, server.client(ada) as user:
        for b in range(3):
            entries += write_batch(key, tenant.app_id, [
                {"action": ("cli.login", "cli.logout", "cli.refund")[i % 3],
                 "target_type": "order", "target_id": f"o{b}{i}"} for i in range(8)
            ])  # fmt: skip
            entries += write_batch(user, tenant.app_id, [{"action": "cli.login"}] * 4)
    assert [e["seq"] for e in entries] == list(range(36))
    return CliApp(server, tenant, server.new_key(tenant.app_id, "events:read").key, entries)


@pytest.fixture(scope="module")
def other(server: Server) -> Tenant:
    """A second app: its key is foreign to `app`, and `tail` follows it."""
    return server.new_app("cli other")


@pytest.fixture(scope="module")
def api(app: CliApp) -> Iterator[httpx.Client]:
    """The same reads through the HTTP API, with the same key."""
    with app.server.client(app.read_key) as client:
        yield client


def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a Rich table (not its heading), as lists of stripped cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in stdout.splitlines() if line.startswith("│")]  # fmt: skip


def ndjson(stdout: str) -> list[Entry]:
    """Each line of the output parsed as JSON."""
    return [json.loads(line) for line in stdout.splitlines()]


def test_list_prints_a_table_of_the_newest_entries(app: CliApp) -> None:
    result = app.cli("list", "--limit", "7")
    assert "action" in result.stdout.splitlines()[1]  # the heading
    rows = table_rows(result.stdout)
    newest = list(reversed(app.entries))[:7]
    assert [row[0] for row in rows] == [str(e["seq"]) for e in newest]
    assert [row[3] for row in rows] == [e["action"] for e in newest]
    assert [row[2] for row in rows] == [e["kind"] for e in newest]
    assert [row[1] for row in rows] == [e["time"] for e in newest]
    assert rows[0][4] == "Ada"  # the actor's name when there is one
    assert next(row for row in rows if row[5])[5] == "order:o27"


def test_list_json_with_filters_equals_the_api(app: CliApp, api: httpx.Client) -> None:
    result = app.cli(
        "list", "--json", "--action", "cli.login", "--action", "cli.refund", "--kind", "admin",
        "--since", app.entries[10]["time"], "--limit", "5",
    )  # fmt: skip
    params = {"action": ["cli.login", "cli.refund"], "kind": "admin",
              "since": app.entries[10]["time"], "limit": 5}  # fmt: skip
    first_page = expect_status(api.get(events_url(app.app_id), params=params)).json()["data"]
    assert len(first_page) == 5
    assert ndjson(result.stdout) == first_page
    assert result.stderr == ""


def test_list_all_follows_cursors_with_env_credentials(app: CliApp, api: httpx.Client) -> None:
    env = {**WIDE, "TRAILKEEP_SERVER": app.server.url, "TRAILKEEP_KEY": app.read_key}
    result = run_cli("events", "list", "--app", app.app_id, "--all", "--limit", "7", "--json",
                     "--action-prefix", "cli.log", env=env)  # fmt: skip
    want = list_all(api, app.app_id, {"action_prefix": "cli.log", "limit": 1000})
    assert len(want) == 30
    assert ndjson(result.stdout) == want


def test_stats_by_action_shows_the_counts(app: CliApp, api: httpx.Client) -> None:
    counts = Counter(e["action"] for e in app.entries)
    rows = table_rows(app.cli("stats", "--by", "action").stdout)
    assert {row[0]: int(row[1]) for row in rows} == dict(counts)
    assert [int(row[1]) for row in rows] == sorted(counts.values(), reverse=True)
    by_actor = json.loads(app.cli("stats", "--by", "actor", "--kind", "user", "--json").stdout)
    groups = expect_status(api.get(events_url(app.app_id, "stats"), params={"group_by": "actor",
                                                                 "kind": "user"}))  # fmt: skip
    assert by_actor == groups.json()["groups"] == [{"key": "ada", "count": 12}]


def _read_lines(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


def test_tail_prints_the_entries_written_after_it_started(server: Server, other: Tenant) -> None:
    tenant = other  # an app of its own: the flood below leaves `app` as the other tests know it
    with server.client(tenant.key) as writer:
        before = write_batch(writer, tenant.app_id, [{"action": "tail.old"}] * 5)
        proc = subprocess.Popen(
            [str(BIN), "events", "tail", "--app", tenant.app_id, "--interval", "0.1", "--json",
             "--server", server.url, "--api-key", tenant.key],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **WIDE},
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            # Until tail prints something, it may not have read the log's end yet: probe.
            deadline = time.monotonic() + 90
            while not lines:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "tail printed nothing"
                write_batch(writer, tenant.app_id, [{"action": "tail.probe"}])
                time.sleep(0.3)
            written = write_batch(writer, tenant.app_id, [{"action": "tail.new"}] * 5)
            for _ in range(2):  # more than one page (1,000) of news between two polls
                written += write_batch(writer, tenant.app_id, [{"action": "tail.flood"}] * 1000)
            last = written[-1]["seq"]
            deadline = time.monotonic() + 60
            while not lines or json.loads(lines[-1])["seq"] < last:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, f"tail stopped at {lines[-1][:80]}"
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(15)
            reader.join(15)
        printed = ndjson("".join(lines))
        log = {e["seq"]: e for e in list_all(writer, tenant.app_id, {"limit": 1000})}
    seqs = [e["seq"] for e in printed]
    assert seqs[0] > before[-1]["seq"]  # nothing from before it started
    assert seqs == list(range(seqs[0], last + 1))  # oldest first, none skipped or repeated
    assert printed == [log[seq] for seq in seqs]
    assert {e["action"] for e in printed} >= {"tail.new", "tail.flood"}


ERRORS = [
    pytest.param(["list", "--kind", "x"], "kind", id="bad kind"),
    pytest.param(["stats", "--by", "nope"], "group_by", id="bad group"),
    pytest.param(["list", "--api-key", "tk_nosuchkey_" + "a" * 40], "401", id="wrong key"),
    pytest.param(["list", "--api-key", "<member session>"], "403", id="plain user"),
    pytest.param(["list", "--api-key", "<other app key>"], "404", id="other app"),
    pytest.param(["list", "--server", "<nothing listens>"], "cannot reach", id="unreachable"),
    pytest.param(["list", "--api-key", ""], "--api-key", id="no key"),
]


@pytest.mark.parametrize(("args", "says"), ERRORS)
def test_errors_are_one_line_and_a_failure(
    app: CliApp, other: Tenant, tmp_path: Path, args: list[str], says: str
) -> None:
    swap = {
        "<member session>": app.server.session(app.tenant, "mia", role="member"),
        "<other app key>": other.key,
        "<nothing listens>": f"http://127.0.0.1:{free_port()}",
    }
    args = [swap.get(arg, arg) for arg in args]
    defaults = {"--server": app.server.url, "--api-key": app.read_key}
    for option, value in defaults.items():
        if option not in args:
            args += [option, value]
    env = {"TRAILKEEP_DATA_DIR": str(tmp_path), "TRAILKEEP_KEY": ""}  # no demo key to fall to
    result = run_cli("events", *args, "--app", app.app_id, env=env, check=False)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0], lines[0]


HOSTILE = {
    "ESC": "\x1b[2J\x1b]0;pwned\x07",  # clear screen, set the window title
    "CSI": "\x9b31m",  # the 8-bit form of ESC [
    "BIDI": "invoice\u202efdp.exe",  # shows as "invoiceexe.pdf"
    "MARKUP": "[/] [bold red]x[/bold red] [link=http://x]y[/link]",  # Rich's markup
}


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c not in "\n") or 0x7F <= ord(c) < 0xA0
            or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]  # fmt: skip


def test_hostile_values_reach_the_terminal_as_inert_text(server: Server) -> None:
    tenant = server.new_app("cli hostile")
    session = server.session(tenant, "mallory", role="member", name=HOSTILE["ESC"] + "Mal")
    with server.client(session) as user:
        write_batch(user, tenant.app_id, [
            {"action": "doc.share", "target_type": "doc", "target_id": value, "project": name}
            for name, value in HOSTILE.items()
        ])  # fmt: skip
    base = ("--app", tenant.app_id, "--server", server.url, "--api-key", tenant.key)
    table = run_cli("events", "list", *base, env=WIDE)
    assert _raw_controls(table.stdout) == [], table.stdout
    assert "doc:\\x1b[2J\\x1b]0;pwned\\x07" in table.stdout  # the bytes, made visible
    assert "doc:\\x9b31m" in table.stdout
    assert "doc:invoice\\u202efdp.exe" in table.stdout
    assert "doc:[/] [bold red]x[/bold red] [link=http://x]y[/link]" in table.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07Mal" in table.stdout  # the actor's name too
    lines = run_cli("events", "list", *base, "--json", env=WIDE).stdout
    assert _raw_controls(lines) == []
    assert {e["target"]["id"] for e in ndjson(lines)} == set(HOSTILE.values())  # exact values
    stats = run_cli("events", "stats", *base, "--by", "actor", env=WIDE).stdout
    assert _raw_controls(stats) == []


def test_tail_follows_the_log_through_a_server_restart(sqlite_server: Server) -> None:
    srv = sqlite_server.start()
    tenant = srv.new_app("tail restart")
    proc = subprocess.Popen(
        [str(BIN), "events", "tail", "--app", tenant.app_id, "--interval", "0.2", "--json",
         "--server", srv.url, "--api-key", tenant.key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **WIDE},
    )  # fmt: skip
    lines: list[str] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True),
        threading.Thread(target=_read_lines, args=(proc.stderr, errors), daemon=True),
    ]
    for thread in threads:
        thread.start()

    def shown_up_to(seq: int) -> None:
        deadline = time.monotonic() + 90
        while not lines or json.loads(lines[-1])["seq"] < seq:
            assert proc.poll() is None, "".join(errors)
            assert time.monotonic() < deadline, f"tail stopped at {lines[-1:]}: {errors}"
            time.sleep(0.05)

    try:
        with srv.client(tenant.key) as writer:
            deadline = time.monotonic() + 90
            while not lines:  # until tail has read the log's end, a write may come before it
                assert proc.poll() is None, "".join(errors)
                assert time.monotonic() < deadline, "tail printed nothing"
                write_batch(writer, tenant.app_id, [{"action": "tail.probe"}])
                time.sleep(0.3)
            before = write_batch(writer, tenant.app_id, [{"action": "tail.before"}] * 3)
            shown_up_to(before[-1]["seq"])
        srv.stop()
        time.sleep(1.5)  # several polls find nothing listening
        assert proc.poll() is None, "".join(errors)
        srv.start()
        with srv.client(tenant.key) as writer:
            after = write_batch(writer, tenant.app_id, [{"action": "tail.after"}] * 3)
        shown_up_to(after[-1]["seq"])
    finally:
        proc.terminate()
        proc.wait(15)
        for thread in threads:
            thread.join(15)
    seqs = [e["seq"] for e in ndjson("".join(lines))]
    assert seqs == list(range(seqs[0], after[-1]["seq"] + 1))  # none skipped or repeated
    assert any("retrying" in line for line in errors), errors
    assert any("reconnected" in line for line in errors), errors
