"""Erasure travels downstream (DESIGN §5, §6; issue 23): ``GET .../erased`` and the next export.

After a folder was exported, a data subject's entries are erased on the server. The next
`trailkeep export` run asks what was erased since the last run, rewrites the files holding
those entries with their stubs, and records the rewrite in the manifest: the subject is gone
from the folder's bytes, and the folder still verifies. ``GET .../erased`` itself answers by
log size, so that asking from the size it returned gives only what was erased since.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.integration.export_folders import (
    duck_rows,
    export,
    key_file,
    manifest,
    verify,
    written,
)
from tests.integration.http_api import checkpoint_verifier, wait_for_checkpoint
from tests.servers import Server, Tenant
from trailkeep.sdk import AsyncClient, Client, Erased

pytestmark = pytest.mark.timeout(240)


def _write_as(server: Server, tenant: Tenant, subject: str, count: int) -> None:
    with server.client(server.session(tenant, subject)) as c:
        for i in range(count):
            body = {"action": "doc.edit", "metadata": {"n": i}}
            c.post(f"/v1/apps/{tenant.app_id}/events", json=body).raise_for_status()


def _erased(c: httpx.Client, tenant: Tenant, **params: int | str) -> dict[str, object]:
    response = c.get(f"/v1/apps/{tenant.app_id}/erased", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
def test_an_erasure_after_an_export_is_carried_into_the_files_holding_it(
    server: Server, tenant: Tenant, tmp_path: Path, fmt: str
) -> None:
    subject = f"user_downstream_{fmt}"
    _write_as(server, tenant, subject, 3)  # seqs 0..2
    written(server, tenant, 3, 20)  # 3..22
    _write_as(server, tenant, subject, 2)  # 23, 24
    with server.client(tenant.key) as c:
        wait_for_checkpoint(c, tenant.app_id, 25, checkpoint_verifier(server))
    out, key = tmp_path / "out", key_file(server, tmp_path)
    export(server, tenant, out, "--format", fmt, "--rows-per-file", "4", "--quiet")
    app_dir = out / f"app={tenant.app_id}"
    before = manifest(out, tenant)
    assert before["erased"] == []
    assert before["rewrites"] == []
    data_files = list(app_dir.rglob(f"*.{fmt}"))
    if fmt == "ndjson":
        assert any(subject.encode() in p.read_bytes() for p in data_files)
    untouched = {f["path"]: f["sha256"] for f in before["files"] if f["first_seq"] >= 3
                 and f["last_seq"] <= 22}  # fmt: skip

    server.cli("erase", "--app", tenant.app_id, "--actor", subject, "--reason", "asked")
    with server.client(tenant.key) as c:
        size = int(c.get(f"/v1/apps/{tenant.app_id}/export").text.count("\n"))
        wait_for_checkpoint(c, tenant.app_id, size, checkpoint_verifier(server))
    result = export(server, tenant, out, "--format", fmt, "--rows-per-file", "4")
    after = manifest(out, tenant)
    holding = [f["path"] for f in after["files"]
               if f["first_seq"] <= 2 or f["first_seq"] <= 24 <= f["last_seq"]
               or f["first_seq"] <= 23 <= f["last_seq"]]  # fmt: skip
    assert f"rewrote {len(holding)} files holding 5 entries erased" in result.stdout
    assert after["erased"] == [[0, 2], [23, 24]]
    assert len(after["rewrites"]) == 1
    assert after["rewrites"][0]["seq_ranges"] == [[0, 2], [23, 24]]
    assert sorted(after["rewrites"][0]["files"]) == sorted(holding)
    assert after["erased_size"] >= 25
    # Only the files holding erased entries were rewritten; the rest are byte for byte the same.
    assert {f["path"]: f["sha256"] for f in after["files"] if f["path"] in untouched} == untouched
    if fmt == "ndjson":
        assert not any(subject.encode() in p.read_bytes() for p in app_dir.rglob("*.ndjson"))
        rows = duck_rows(out, fmt, "seq, erased")
    else:
        rows = duck_rows(out, fmt, "seq, erased, actor_id")
        assert not [r for r in rows if r[2] == subject]
    assert [r[0] for r in rows if r[1]] == [0, 1, 2, 23, 24]
    assert [r[0] for r in rows] == list(range(len(rows)))  # still each seq once, no gap
    checked = verify(out, key)
    assert checked.returncode == 0, checked.stderr
    assert "(5 erased)" in checked.stdout

    # Nothing erased since: the next run rewrites nothing and says nothing about it.
    again = export(server, tenant, out, "--format", fmt, "--rows-per-file", "4")
    assert "rewrote" not in again.stdout
    assert len(manifest(out, tenant)["rewrites"]) == 1


def test_a_folder_from_before_erasures_were_tracked_asks_from_the_start(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    subject = "user_downstream_old"
    _write_as(server, tenant, subject, 2)
    written(server, tenant, 2, 6)
    out = tmp_path / "out"
    export(server, tenant, out, "--format", "ndjson", "--quiet")
    path = out / f"app={tenant.app_id}" / "_manifest.json"
    # An earlier version's manifest has neither field.
    old = json.loads(path.read_text())
    del old["erased_size"], old["rewrites"]
    path.write_text(json.dumps(old))
    server.cli("erase", "--app", tenant.app_id, "--actor", subject, "--reason", "asked")
    result = export(server, tenant, out, "--format", "ndjson")
    assert "holding 2 entries erased" in result.stdout
    assert manifest(out, tenant)["erased"] == [[0, 1]]


def test_erased_answers_by_log_size_page_by_page(server: Server, tenant: Tenant) -> None:
    _write_as(server, tenant, "user_er_a", 3)  # 0..2
    written(server, tenant, 3, 5)  # 3..7
    _write_as(server, tenant, "user_er_b", 2)  # 8, 9
    with server.client(tenant.key) as c:
        first = _erased(c, tenant)
        assert first["seq_ranges"] == []
        assert first["next_cursor"] is None
        server.cli("erase", "--app", tenant.app_id, "--actor", "user_er_a", "--reason", "asked")
        seen = _erased(c, tenant, since_size=int(str(first["size"])))
        assert seen["seq_ranges"] == [[0, 2]]
        assert int(str(seen["size"])) > int(str(first["size"]))  # the erasure's own entries
        assert _erased(c, tenant, since_size=int(str(seen["size"])))["seq_ranges"] == []
        server.cli("erase", "--app", tenant.app_id, "--actor", "user_er_b", "--reason", "asked")
        # Only what was erased since the size it was given, whatever came before.
        assert _erased(c, tenant, since_size=int(str(seen["size"])))["seq_ranges"] == [[8, 9]]
        assert _erased(c, tenant)["seq_ranges"] == [[0, 2], [8, 9]]
        assert _erased(c, tenant, below_seq=8)["seq_ranges"] == [[0, 2]]
        # One stub a page: the cursor walks them all, each once.
        pages, cursor = [], None
        while True:
            params: dict[str, int | str] = {"limit": 1}
            if cursor is not None:
                params["cursor"] = cursor
            page = _erased(c, tenant, **params)
            pages.extend(page["seq_ranges"])  # type: ignore[arg-type]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == [[0, 0], [1, 1], [2, 2], [8, 8], [9, 9]]
        bad = c.get(f"/v1/apps/{tenant.app_id}/erased", params={"cursor": "x"})
        assert bad.status_code == 400
        assert bad.json()["code"] == "invalid_request"
        bad = c.get(f"/v1/apps/{tenant.app_id}/erased", params={"since_size": -1})
        assert bad.status_code == 400
    # The SDK follows the pages and keeps the first page's size.
    with Client(server.url, tenant.app_id, tenant.key) as sdk:
        found = sdk.audit.erased(since_size=0)
        assert found.seq_ranges == [[0, 2], [8, 9]]
        assert found.size >= 10
        assert sdk.audit.erased(since_size=found.size).seq_ranges == []

    async def erased_async() -> Erased:
        async with AsyncClient(server.url, tenant.app_id, tenant.key) as client:
            return await client.audit.erased(below_seq=9)

    assert asyncio.run(erased_async()).seq_ranges == [[0, 2], [8, 8]]
    # Another app's key learns nothing about this app.
    other = server.new_app("other")
    with server.client(other.key) as c:
        response = c.get(f"/v1/apps/{tenant.app_id}/erased")
        assert response.status_code in (403, 404)


def test_a_rewrite_cut_short_before_its_manifest_is_finished_by_the_rerun(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    subject = "user_downstream_cut"
    _write_as(server, tenant, subject, 2)
    written(server, tenant, 2, 6)
    out, key = tmp_path / "out", key_file(server, tmp_path)
    export(server, tenant, out, "--format", "ndjson", "--rows-per-file", "3", "--quiet")
    path = out / f"app={tenant.app_id}" / "_manifest.json"
    stale = path.read_bytes()
    server.cli("erase", "--app", tenant.app_id, "--actor", subject, "--reason", "asked")
    export(server, tenant, out, "--format", "ndjson", "--rows-per-file", "3", "--quiet")
    # As if killed after rewriting the files and before the manifest said so: the old
    # manifest no longer matches them, and still asks from the old size.
    path.write_bytes(stale)
    assert verify(out, key).returncode != 0
    result = export(server, tenant, out, "--format", "ndjson", "--rows-per-file", "3")
    assert "holding 2 entries erased" in result.stdout
    checked = verify(out, key)
    assert checked.returncode == 0, checked.stderr
    assert manifest(out, tenant)["erased"] == [[0, 1]]


def test_a_page_read_while_its_entries_are_erased_holds_each_seq_once(
    server: Server, tenant: Tenant
) -> None:
    from sqlalchemy import event

    from trailkeep.log.query import Filters

    subject = "user_page_race"
    _write_as(server, tenant, subject, 3)
    written(server, tenant, 3, 4)
    erased_between = []

    def erase_now(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        # Right after the page's read of entries, before its read of stubs.
        if "FROM events" in statement and not erased_between:
            erased_between.append(True)
            server.cli("erase", "--app", tenant.app_id, "--actor", subject, "--reason", "race")

    with server.store() as store:
        event.listen(store.reader_engine, "after_cursor_execute", erase_now)
        rows = store.page(tenant.app_id, Filters(), None, 100, False)
    assert erased_between
    seqs = [seq for seq, _ in rows]
    assert seqs == sorted(set(seqs)), "an entry and its stub both in one page"
    assert seqs[:7] == list(range(7))
