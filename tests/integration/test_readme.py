"""The README's examples run as printed (issue 20): its quick start against a real server, and
every `trailkeep` line of it against the real command's subcommands and options.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server
from trailkeep.cli.command import command

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: What `make run` runs (the Makefile's `run` target), which the quick start follows.
MAKE_RUN = "$(BIN)/trailkeep serve --demo --host 127.0.0.1 --port 8000 --data-dir ./data"


def quick_start() -> str:
    """The shell block that follows the README's ``<!-- quick-start -->`` marker."""
    marker = README.index("<!-- quick-start -->")
    found = BLOCK.search(README, marker)
    assert found is not None
    return found.group(1)


def test_no_placeholder_is_left_in_a_shell_example() -> None:
    for block in BLOCK.findall(README):
        assert "…" not in block, block  # an elided value cannot be run as printed


def test_the_quick_start_runs_as_printed(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"\t{MAKE_RUN}\n" in makefile  # `make run`, as the test starts it below
    # The README's folder, as `make run` leaves it: `.venv` (this one), `data` (made below).
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    srv = Server(tmp_path / "data", args=("--demo", "--host", "127.0.0.1"))
    try:
        srv.start()
        script = quick_start().replace("127.0.0.1:8000", f"127.0.0.1:{srv.port}")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TRAILKEEP_") and k != "VIRTUAL_ENV"}  # fmt: skip
        # `events` asks http://127.0.0.1:8000 by default; this server has a port of its own.
        env.update(TRAILKEEP_SERVER=srv.url, COLUMNS="200", PATH="/usr/bin:/bin")
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        srv.stop()
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stderr == "", done.stderr
    shown = done.stdout
    assert shown.startswith('{"action":"order.refund"'), shown  # the curl's 201: the entry
    rows = [line for line in shown.splitlines()[1:] if "order.refund" in line]
    assert len(rows) == 2, shown  # a row of `events list` and one of `events stats`
    assert "order:ord_9" in rows[0], shown
    # The checkpoint is signed within a second of the write: the export verifies against it
    # whole, or (fetched in that second) as one entry newer than it.
    assert re.search(r"^OK: (1 entry|0 entries) verified against the signed checkpoint$",
                     shown, re.MULTILINE), shown  # fmt: skip


# --- every `trailkeep` line names real subcommands and options ---------------------------


def _commands() -> dict[tuple[str, ...], set[str]]:
    """Each command's path and its options' spellings."""
    found: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        spellings = [
            [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])] for p in cmd.params
        ]
        found[path] = {option for names in spellings for option in names}
        found[path].add("--help")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(command(), ())
    return found


def readme_command_lines() -> list[str]:
    """Every line of the README's shell blocks that runs `trailkeep` (comments dropped)."""
    lines = []
    for block in BLOCK.findall(README):
        for line in block.splitlines():
            code = line.split("  #", 1)[0].strip()
            if code.startswith("trailkeep "):
                lines.append(code)
    return lines


def test_every_trailkeep_line_names_real_commands_and_options() -> None:
    commands = _commands()
    lines = readme_command_lines()
    assert len(lines) >= 15
    seen = set()
    for line in lines:
        words = [w for w in re.split(r"[\s\[\]|]+", line) if w]
        path: tuple[str, ...] = ()
        for word in words[1:]:
            if (*path, word) in commands:
                path = (*path, word)
            else:
                break
        assert path or words[1:] == ["--version"], line
        seen.add(path)
        options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        unknown = options - commands[path]
        assert unknown == set(), (line, unknown)
    # The CLI section shows every command.
    leaves = {p for p in commands if p and not any(q[: len(p)] == p and q != p for q in commands)}
    assert leaves <= seen, sorted(leaves - seen)
