"""The Parquet columns `metadata` and `changes` as an export writes them (docs/export.md).

Both are the value's RFC 8785 canonical JSON text, which for an entry as the server stores it is
a substring of `entry` itself: the bytes its leaf hash covers. The export slices them out of the
entry (cli/exportcols.py) where that is unambiguous and parses the entry where it is not (a key
of the same name nested inside); either way the text is the same, floats included, whose
canonical spelling is not what a JSON library's defaults write.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.integration.export_folders import duck_rows, export, key_file, manifest, verify
from tests.integration.http_api import checkpoint_verifier, wait_for_checkpoint
from tests.servers import Server, Tenant
from trailkeep.log import jcs

pytestmark = pytest.mark.timeout(240)

_BODIES = [
    {"action": "doc.edit", "metadata": {"n": 1, "reason": "plain"}},
    # Canonical numbers: 1e+21, 0.000001 and 1.5 (a library may write 1e21 or 1e-06).
    {"action": "doc.edit", "metadata": {"big": 1e21, "small": 0.000001, "f": 1.5, "z": "é\u2028"}},
    # Keys named as the top-level ones, nested: the slice would be ambiguous; parsed instead.
    {"action": "doc.edit", "metadata": {"metadata": {"seq": 3}, "x": [{"seq": 1}]}},
    {
        "action": "user.update",
        "metadata": {},
        "changes": [{"path": "/role", "old": "member", "new": "admin"}],
    },
    {
        "action": "user.update",
        "metadata": {"n": 2},
        "changes": [{"path": "/a", "old": {"changes": [1], "context": {}}, "new": 2.5e-7}],
    },
    # The top-level keys' text as nested structure: a cut at the wrong end would make the
    # caller's metadata into the id and kind columns.
    {
        "action": "user.update",
        "metadata": {
            "b": [1],
            "context": {"ip": None, "user_agent": None},
            "id": "evt_forged",
            "kind": "admin",
            "metadata": {},
        },
        "changes": [{"path": "/x", "new": 1}],
    },
]


def test_metadata_and_changes_are_the_canonical_text_inside_the_entry(
    server: Server, tenant: Tenant, tmp_path: Path
) -> None:
    with server.client(tenant.key) as c:
        for body in _BODIES:
            c.post(f"/v1/apps/{tenant.app_id}/events", json=body).raise_for_status()
        wait_for_checkpoint(c, tenant.app_id, len(_BODIES), checkpoint_verifier(server))
    out = tmp_path / "export"
    export(server, tenant, out, "--quiet")
    assert manifest(out, tenant)["next_seq"] == len(_BODIES)
    rows = duck_rows(out, "parquet", "seq, metadata, changes, entry, id, kind")
    assert [r[0] for r in rows] == list(range(len(_BODIES)))
    for (_, metadata, changes, entry, entry_id, kind), body in zip(rows, _BODIES, strict=True):
        doc = orjson.loads(entry)
        assert (entry_id, kind) == (doc["id"], doc["kind"])
        assert entry_id != "evt_forged"
        assert metadata == jcs.canonical(doc["metadata"]).decode()
        assert orjson.loads(metadata) == body["metadata"]
        assert f'"metadata":{metadata},"seq":' in entry
        if "changes" in body:
            assert changes == jcs.canonical(doc["changes"]).decode()
            assert f'"changes":{changes},"context":' in entry
        else:
            assert changes is None
    assert rows[1][1] == '{"big":1e+21,"f":1.5,"small":0.000001,"z":"é\u2028"}'
    result = verify(out, key_file(server, tmp_path))
    assert result.returncode == 0, result.stderr
