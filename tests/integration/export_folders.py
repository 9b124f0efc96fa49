"""Helpers of the export-folder tests: the real `trailkeep export` and `verify --export`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import duckdb

from tests.integration.http_api import checkpoint_verifier, wait_for_checkpoint, write_numbered
from tests.integration.independent_checks import checkpoint_key
from tests.servers import Server, Tenant, run_cli

EXT = {"parquet": "parquet", "ndjson": "ndjson", "csv": "csv"}


def written(server: Server, tenant: Tenant, first: int, count: int) -> int:
    """Append ``count`` numbered entries and wait until a checkpoint covers them; the size."""
    with server.client(tenant.key) as c:
        write_numbered(c, tenant.app_id, first, count)
        wait_for_checkpoint(c, tenant.app_id, first + count, checkpoint_verifier(server))
    return first + count


def export(server: Server, tenant: Tenant, out: Path, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The real `trailkeep export` of the tenant's app into ``out``."""
    return run_cli("export", "--server", server.url, "--app", tenant.app_id, "--out", str(out),
                   *args, env={"TRAILKEEP_KEY": tenant.key}, check=check)  # fmt: skip


def key_file(server: Server, folder: Path) -> Path:
    """The server's checkpoint verifier key, saved to a file."""
    path = folder / "key.txt"
    path.write_text(checkpoint_key(server) + "\n")
    return path


def verify(folder: Path, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`trailkeep verify --export`, not checked."""
    return run_cli("verify", "--export", str(folder), "--key", str(key), *args, check=False)


def manifest(out: Path, tenant: Tenant) -> dict[str, Any]:
    """The app folder's manifest."""
    data: dict[str, Any] = json.loads((out / f"app={tenant.app_id}" / "_manifest.json").read_text())
    return data


def duck_rows(out: Path, fmt: str, columns: str = "seq") -> list[tuple[Any, ...]]:
    """The folder read by DuckDB with Hive partitioning, ordered by seq."""
    glob = f"{out}/**/*.{EXT[fmt]}"
    reader = {
        "parquet": f"read_parquet('{glob}', hive_partitioning=true)",
        "ndjson": f"read_json('{glob}', format='newline_delimited', hive_partitioning=true)",
        "csv": f"read_csv('{glob}', hive_partitioning=true, header=true)",
    }[fmt]
    with duckdb.connect() as con:
        return con.execute(f"SELECT {columns} FROM {reader} ORDER BY seq").fetchall()
