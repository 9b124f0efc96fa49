"""`trailkeep export` to a folder and `trailkeep verify --export` (DESIGN §6; issue 23).

A real server's log goes into a Hive-partitioned folder in each format; DuckDB reads it as a
warehouse would, every row exactly once with its types. A rerun appends only what is new, a
run killed with SIGKILL mid-file resumes without a duplicate or a gap, an export that starts
mid-log or holds stubs still verifies, and verify names the file and seq of what was tampered.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.export_folders import (
    EXT,
    duck_rows,
    export,
    key_file,
    manifest,
    verify,
    written,
)
from tests.integration.http_api import checkpoint_verifier, wait_for_checkpoint
from tests.servers import BIN, Server, Tenant

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("fmt", ["parquet", "ndjson", "csv"])
def test_each_format_is_read_by_duckdb_once_per_row_with_types(
    server: Server, tenant: Tenant, tmp_path: Path, fmt: str
) -> None:
    size = written(server, tenant, 0, 130)
    out = tmp_path / "export"
    export(server, tenant, out, "--format", fmt, "--rows-per-file", "50", "--quiet")
    m = manifest(out, tenant)
    assert [(f["first_seq"], f["last_seq"], f["rows"]) for f in m["files"]] == [
        (0, 49, 50), (50, 99, 50), (100, 129, 30)]  # fmt: skip
    for f in m["files"]:
        path = out / f"app={tenant.app_id}" / f["path"]
        assert path.name == f"{f['first_seq']:020d}-{f['last_seq']:020d}.{EXT[fmt]}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"]
    rows = duck_rows(out, fmt, "seq, app, date, action")
    assert [r[0] for r in rows] == list(range(size))
    assert {r[1] for r in rows} == {tenant.app_id}
    assert {r[3] for r in rows} == {"doc.edit"}
    with duckdb.connect() as con:
        glob = f"{out}/**/*.{EXT[fmt]}"
        if fmt == "parquet":
            types = dict(con.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                f"read_parquet('{glob}', hive_partitioning=true))").fetchall())  # fmt: skip
            assert types["seq"] == "BIGINT"
            assert types["time"] == "TIMESTAMP WITH TIME ZONE"
            assert types["metadata"] == types["entry"] == "VARCHAR"
            meta = con.execute(f"SELECT json_extract(metadata, '$.n')::INT FROM read_parquet("
                               f"'{glob}') ORDER BY seq").fetchall()  # fmt: skip
            assert [m[0] for m in meta] == list(range(size))
    key = key_file(server, tmp_path)
    result = verify(out, key)
    if fmt == "csv":
        assert result.returncode == 1
        assert "CSV export, which cannot be verified" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert f"OK: {size} entries verified" in result.stdout


def test_a_rerun_appends_only_new_files(server: Server, tenant: Tenant, tmp_path: Path) -> None:
    written(server, tenant, 0, 40)
    out = tmp_path / "export"
    export(server, tenant, out, "--rows-per-file", "25", "--quiet")
    before = manifest(out, tenant)
    app_dir = out / f"app={tenant.app_id}"
    stamps = {f["path"]: (app_dir / f["path"]).stat().st_mtime_ns for f in before["files"]}
    again = export(server, tenant, out, "--rows-per-file", "25")
    assert "exported 0 entries" in again.stdout
    size = written(server, tenant, 40, 30)
    # The rows made on two other processes this time (--jobs): the same folder comes out.
    export(server, tenant, out, "--rows-per-file", "25", "--quiet", "--jobs", "2")
    after = manifest(out, tenant)
    assert after["files"][: len(before["files"])] == before["files"]
    assert after["files"][len(before["files"]) :][0]["first_seq"] == 40
    assert after["next_seq"] == size
    for path, stamp in stamps.items():
        assert (app_dir / path).stat().st_mtime_ns == stamp  # not rewritten
    assert [r[0] for r in duck_rows(out, "parquet")] == list(range(size))
    assert verify(out, key_file(server, tmp_path)).returncode == 0


def test_a_killed_export_resumes_without_duplicate_or_gap(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    size = 0
    for start in range(0, 3000, 1000):
        size = written(server, tenant, start, 1000)
    out = tmp_path / "export"
    args = ["export", "--server", server.url, "--app", tenant.app_id, "--out", str(out),
            "--format", "ndjson", "--rows-per-file", "7", "--quiet"]  # fmt: skip
    process = subprocess.Popen([str(BIN), *args], env={**os.environ, "TRAILKEEP_KEY": tenant.key})
    path = out / f"app={tenant.app_id}" / "_manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and len(json.loads(path.read_bytes())["files"]) >= 20:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = manifest(out, tenant)["next_seq"]
    assert 0 < killed_at < size, "the export finished before it was killed"
    # What it listed before the kill verifies already (its tail proof joins it to the
    # checkpoint), unless the kill fell between a file's rename and the manifest's: then verify
    # names the unlisted file, which the rerun below deletes.
    key = key_file(server, tmp_path)
    assert manifest(out, tenant)["tail_proof"]
    killed = verify(out, key)
    assert killed.returncode == 0 or "is not in _manifest.json" in killed.stderr, killed.stderr
    # What a kill between the file's rename and the manifest's leaves: an unlisted file, and
    # a half-written temporary.
    app_dir = out / f"app={tenant.app_id}"
    date = manifest(out, tenant)["files"][-1]["path"].split("/")[0]
    (app_dir / date / f"{killed_at:020d}-{killed_at + 3:020d}.ndjson").write_bytes(b"{}\n")
    (app_dir / date / f".{killed_at:020d}-{killed_at + 6:020d}.ndjson.tmp").write_bytes(b"{")
    export(server, tenant, out, "--format", "ndjson", "--rows-per-file", "500", "--quiet")
    assert [r[0] for r in duck_rows(out, "ndjson")] == list(range(size))
    assert not list(app_dir.glob("date=*/.*.tmp"))
    result = verify(out, key)
    assert result.returncode == 0, result.stderr


def _tamper_line(path: Path, index: int) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[index] = lines[index].replace(b'"doc.edit"', b'"doc.view"')
    path.write_bytes(b"\n".join(lines))


def _set_manifest_sha(app_dir: Path, relative: str) -> None:
    path = app_dir / "_manifest.json"
    data = json.loads(path.read_text())
    for f in data["files"]:
        if f["path"] == relative:
            f["sha256"] = hashlib.sha256((app_dir / relative).read_bytes()).hexdigest()
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_verify_names_the_file_and_seq_of_what_was_tampered(
    server: Server, tenant: Tenant, tmp_path: Path, fmt: str
) -> None:
    written(server, tenant, 0, 60)
    out = tmp_path / "export"
    export(server, tenant, out, "--format", fmt, "--rows-per-file", "20", "--quiet")
    key = key_file(server, tmp_path)
    app_dir = out / f"app={tenant.app_id}"
    second = manifest(out, tenant)["files"][1]["path"]
    original = (app_dir / second).read_bytes()
    original_manifest = (app_dir / "_manifest.json").read_bytes()

    def fails(*expected: str, jobs: str = "1") -> None:
        result = verify(out, key, "--jobs", jobs)
        assert result.returncode == 1, result.stdout
        for text in expected:
            assert text in result.stderr, result.stderr
        (app_dir / second).write_bytes(original)
        (app_dir / "_manifest.json").write_bytes(original_manifest)

    # A row's content changed (its hash in the manifest updated too, as an attacker would).
    if fmt == "ndjson":
        _tamper_line(app_dir / second, 3)
    else:
        table = pq.read_table(app_dir / second)
        entries = table.column("entry").to_pylist()
        entries[3] = entries[3].replace('"doc.edit"', '"doc.view"')
        table = table.set_column(table.schema.get_field_index("entry"), "entry",
                                 pa.array(entries, pa.string()))  # fmt: skip
        pq.write_table(table, app_dir / second)
    _set_manifest_sha(app_dir, second)
    # Checked on three processes (the other cases on one): the same first problem is named.
    fails("seq 23", second, jobs="3")
    if fmt == "parquet":
        # Only a typed column changed: the entry still verifies, the column must not lie.
        table = pq.read_table(app_dir / second)
        actors = table.column("actor_id").to_pylist()
        actors[5] = "someone_else"
        table = table.set_column(table.schema.get_field_index("actor_id"), "actor_id",
                                 pa.array(actors, pa.string()))  # fmt: skip
        pq.write_table(table, app_dir / second)
        _set_manifest_sha(app_dir, second)
        fails("seq 25", "actor_id", second)
    # The bytes changed, the manifest not: its SHA-256 says so.
    (app_dir / second).write_bytes(original + (b"\n" if fmt == "ndjson" else b"\0"))
    fails("seq 20", second, "SHA-256" if fmt == "ndjson" else "")
    # A file deleted.
    (app_dir / second).unlink()
    fails("seq 20", second, "missing")
    # The manifest edited: a file dropped from it, then a seq range moved.
    data = orjson.loads(original_manifest)
    dropped = {**data, "files": [data["files"][0], data["files"][2]]}
    (app_dir / "_manifest.json").write_bytes(orjson.dumps(dropped))
    fails("seq 20")
    elsewhere = orjson.loads(original_manifest)
    elsewhere["files"][1]["path"] = "../../outside.ndjson"
    (app_dir / "_manifest.json").write_bytes(orjson.dumps(elsewhere))
    fails("seq 20", "is not the name of a")
    note = data["checkpoint"].split("\n")
    note[1] = str(int(note[1]) - 1)  # the size line: the signature no longer covers it
    data["checkpoint"] = "\n".join(note)
    (app_dir / "_manifest.json").write_bytes(orjson.dumps(data))
    fails("checkpoint")
    assert verify(out, key).returncode == 0
    assert verify(out, key, "--jobs", "3").returncode == 0


def test_an_export_with_stubs_and_one_from_mid_log_verify(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    subject = "user_export_erased_7"
    with server.client(server.session(tenant, subject)) as c:
        for i in range(5):
            c.post(f"/v1/apps/{tenant.app_id}/events", json={"action": "doc.edit",
                   "metadata": {"n": i}}).raise_for_status()  # fmt: skip
    written(server, tenant, 5, 20)
    server.cli("erase", "--app", tenant.app_id, "--actor", subject, "--reason", "asked")
    with server.client(tenant.key) as c:
        size = wait_for_checkpoint(c, tenant.app_id, 27, checkpoint_verifier(server))[0].size
    key = key_file(server, tmp_path)
    out = tmp_path / "all"
    export(server, tenant, out, "--rows-per-file", "4", "--quiet")
    assert manifest(out, tenant)["erased"] == [[0, 4]]
    rows = duck_rows(out, "parquet", "seq, erased, actor_id, date")
    assert [(r[0], r[1], r[2]) for r in rows[:5]] == [(s, True, None) for s in range(5)]
    result = verify(out, key)
    assert result.returncode == 0, result.stderr
    assert "(5 erased)" in result.stdout
    # From mid-log: the subtrees left of its first seq come along in the manifest.
    with server.client(tenant.key) as c:
        lines = c.get(f"/v1/apps/{tenant.app_id}/export").content.splitlines()
    since = orjson.loads(lines[13])["time"]
    mid = tmp_path / "mid"
    export(server, tenant, mid, "--format", "ndjson", "--since", since, "--quiet")
    m = manifest(mid, tenant)
    assert m["first_seq"] <= 13
    assert m["left"]
    assert m["next_seq"] == size
    assert verify(mid, key).returncode == 0
    # Up to a time: it stops short of the checkpoint, and its tail proof joins it.
    until = orjson.loads(lines[20])["time"]
    short = tmp_path / "short"
    export(server, tenant, short, "--format", "ndjson", "--since", since, "--until", until,
           "--quiet")  # fmt: skip
    m = manifest(short, tenant)
    assert 20 < m["next_seq"] < size
    assert m["tail_proof"]
    assert verify(short, key).returncode == 0
    assert export(server, tenant, short, "--format", "parquet", check=False).returncode == 1


def test_an_ocsf_folder_is_valid_ocsf_partitioned_by_date_and_not_verifiable(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    from tests.integration.test_export_ocsf import validator

    size = written(server, tenant, 0, 60)
    out = tmp_path / "export"
    export(server, tenant, out, "--format", "ocsf", "--rows-per-file", "25", "--quiet")
    files = sorted((out / f"app={tenant.app_id}").glob("date=*/*.ocsf.ndjson"))
    assert len(files) == 3
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT metadata.uid, app, unmapped.seq FROM read_json('{out}/**/*.ocsf.ndjson', "
            "format='newline_delimited', hive_partitioning=true) ORDER BY unmapped.seq"
        ).fetchall()
    assert [r[2] for r in rows] == list(range(size))
    assert {r[1] for r in rows} == {tenant.app_id}
    for path in files:
        for line in path.read_bytes().splitlines():
            event = json.loads(line)
            validator(event["class_uid"]).validate(event)
    result = verify(out, key_file(server, tmp_path))
    assert result.returncode == 1
    assert "OCSF export, which cannot be verified" in result.stderr
