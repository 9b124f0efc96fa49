"""Secrets at rest: a copy of the database or the data directory gives no session secret away.

The data directory is 0700 and every file in it 0600 (whatever the umask of the process that
started the server); an app's session secret is stored sealed under a key kept outside the
database, on SQLite and PostgreSQL; a database from an earlier version has its secrets sealed by
the migration; a node holding another key stops at start and says why.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from tests.servers import Server
from trailkeep.server.secrets import SecretBox, is_sealed
from trailkeep.server.store import Store
from trailkeep.server.store.engine import MIGRATIONS, create_engines

pytestmark = pytest.mark.timeout(180)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - as an operator's `mkdir` under umask 022 leaves it
    srv = Server(data)
    previous = os.umask(0o022)
    try:
        srv.start()
        tenant = srv.new_app("private")
        with srv.client(tenant.key) as client:
            assert client.post(f"/v1/apps/{tenant.app_id}/events", json={"action": "a"}).is_success
    finally:
        os.umask(previous)
        srv.stop()
    assert _mode(data) == 0o700
    files = sorted(p.name for p in data.iterdir() if p.is_file() and not p.name.endswith(".log"))
    assert {"trailkeep.db", "signing.key", "secret.key"} <= set(files), files
    for name in files:
        assert _mode(data / name) == 0o600, name


def test_no_session_secret_is_stored_in_clear(server: Server) -> None:
    tenant = server.new_app("sealed")
    (stored,) = server.query("SELECT session_secret FROM apps WHERE id = :app", app=tenant.app_id)[
        0
    ]
    assert is_sealed(stored)
    assert tenant.session_secret not in stored
    if server.backend == "sqlite":
        for path in server.sqlite_file.parent.glob("trailkeep.db*"):
            assert tenant.session_secret.encode() not in path.read_bytes(), path
    # The server opens it: a session signed with the secret is accepted.
    with server.client(server.session(tenant, "ada")) as user:
        response = user.post(f"/v1/apps/{tenant.app_id}/events", json={"action": "a"})
    assert response.status_code == 201, response.text


def _database_at_0006(path: Path, secret: str) -> str:
    """A SQLite file as version 0006 left it, with one app whose secret is in clear."""
    url = f"sqlite:///{path}"
    writer, reader = create_engines(url)
    reader.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writer.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
        connection.execute(
            text("INSERT INTO apps (id, name, session_secret, created_at) "
                 "VALUES ('app_old', 'old', :secret, '2026-01-01 00:00:00.000000')"),
            {"secret": secret},
        )  # fmt: skip
        connection.execute(text("INSERT INTO log_heads (app_id, size) VALUES ('app_old', 0)"))
    writer.dispose()
    return url


def test_the_migration_seals_secrets_an_earlier_version_kept_in_clear(tmp_path: Path) -> None:
    secret = "an-old-secret-" + "x" * 30
    url = _database_at_0006(tmp_path / "old.db", secret)
    without = Store(url)
    with pytest.raises(RuntimeError, match="secret key"):
        without.migrate()
    without.close()
    box = SecretBox.load(tmp_path / "secret.key")
    store = Store(url, secrets=box)
    try:
        store.migrate()
        app = store.get_app("app_old")
        assert app is not None
        assert is_sealed(app.sealed_secret)
        assert app.session_secret == secret
    finally:
        store.close()
    assert secret.encode() not in (tmp_path / "old.db").read_bytes()


def test_a_node_with_another_secret_key_stops_at_start_and_says_why(
    tmp_path: Path,
) -> None:
    srv = Server(tmp_path / "data")
    srv.new_app("sealed with the first key")
    srv.env["TRAILKEEP_SECRET_KEY_FILE"] = str(tmp_path / "another.key")
    with pytest.raises(RuntimeError) as failed:  # Server.start: "server exited: <its log>"
        srv.start()
    srv.stop()
    assert "sealed under secret key" in str(failed.value)
    assert "TRAILKEEP_SECRET_KEY_FILE" in str(failed.value)
