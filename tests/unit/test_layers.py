"""The package's layers as a user installs them: the SDK and the verifier need no server.

`make lint` checks the import contracts statically (import-linter, pyproject.toml); these tests
check what actually loads, in fresh interpreters, and that `pip install trailkeep` without the
`[server]` extra still verifies an export: every server package is made unimportable there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.signers import new_signer
from tests.trees import root_of
from trailkeep.cli.common import SERVER_PACKAGES
from trailkeep.log import merkle
from trailkeep.log.notes import Checkpoint
from trailkeep.log.record import Actor, EventWrite, Origin, prepare, with_leaf_hash
from trailkeep.server.ids import new_entry_id

# Run first in the child: every package of `trailkeep[server]` then fails to import, as it
# would where only `pip install trailkeep` was run.
WITHOUT_SERVER = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def _python(code: str, *, without_server: bool = False) -> subprocess.CompletedProcess[str]:
    prelude = WITHOUT_SERVER.format(names=sorted(SERVER_PACKAGES)) if without_server else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120
    )


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    loaded = _python(
        "import sys, json, trailkeep.sdk, trailkeep.log.verify\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(SERVER_PACKAGES)!r} or m.startswith('trailkeep.server'))))"
    )
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == []


def test_the_sdk_works_without_the_server_packages() -> None:
    result = _python(
        "from trailkeep.sdk import Client, mint_session\n"
        "import jwt\n"
        "token = mint_session('app_x', 's' * 32, 'ada', role='owner')\n"
        "claims = jwt.decode(token, 's' * 32, algorithms=['HS256'], audience='app_x')\n"
        "assert claims['sub'] == 'ada'\n"
        "Client('http://127.0.0.1:9', 'app_x', 'tk_x_y').close()\n"
        "print('ok')",
        without_server=True,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def _export(folder: Path, count: int) -> list[str]:
    """An export of ``count`` entries, its signed checkpoint and the key: files in ``folder``."""
    signer = new_signer("trailkeep.local")
    actor, origin = Actor(type="api_key", id="key_x"), Origin(ip="127.0.0.1", user_agent="t")
    lines, leaves = [], []
    for seq in range(count):
        event = EventWrite(action="doc.view", target_type="doc", target_id=f"d{seq}")
        document = prepare("app_x", new_entry_id(), event, actor, origin, 10_240).canonical(
            seq, "2026-12-01T00:00:00.000000Z"
        )
        leaves.append(merkle.hash_leaf(document))
        lines.append(with_leaf_hash(document, leaves[-1]))
    checkpoint = Checkpoint("trailkeep.local/app_x", count, root_of(leaves)).to_text()
    (folder / "entries.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))
    (folder / "cp.txt").write_text(signer.sign(checkpoint))
    (folder / "key.txt").write_text(signer.verifier_key() + "\n")
    return [str(folder / name) for name in ("entries.ndjson", "cp.txt", "key.txt")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys\nfrom trailkeep.cli import main\nsys.argv = ['trailkeep', *{args!r}]\nmain()"
    )
    return _python(code, without_server=True)


def test_verify_runs_without_the_server_packages(tmp_path: Path) -> None:
    entries, checkpoint, key = _export(tmp_path, 5)
    result = _cli("verify", "--entries", entries, "--checkpoint", checkpoint, "--key", key)
    assert result.returncode == 0, result.stderr
    assert "OK: 5 entries verified against the signed checkpoint" in result.stdout
    # A changed entry is still caught, by the same core the server's side uses.
    Path(entries).write_text(Path(entries).read_text().replace('"d3"', '"d4"'))
    result = _cli("verify", "--entries", entries, "--checkpoint", checkpoint, "--key", key)
    assert result.returncode == 1
    assert "seq 3" in result.stderr


def test_a_server_command_without_the_server_packages_says_what_to_install() -> None:
    for args in (("serve",), ("apps", "list"), ("verify", "--app", "app_x")):
        result = _cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "pip install 'trailkeep[server]'" in result.stderr, (args, result.stderr)
