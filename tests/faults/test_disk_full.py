"""Disk full: the data directory's file system fills under load, then space comes back.

The server's data directory (SQLite database, WAL, keys) is a tmpfs of a few MiB that the test
mounts (the suite runs as root) and fills with a filler file while writers are busy. Writes must
then be refused with ``503 storage_unavailable`` and ``Retry-After`` (never a 500 nor a hang),
reads go on, nothing acknowledged is lost, and once the filler is deleted writes succeed again
by themselves: no restart of the server or of its writer.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.load import STRESS, Writers, check_survivors, scaled, wait_until
from tests.integration.http_api import events_url, expect_status
from tests.pg import PostgresCluster, RedisServer
from tests.servers import Server

pytestmark = pytest.mark.timeout(600 if STRESS else 180)

THREADS = 6
# Room for the migrated database, its keys and the WAL the test's writes grow (about 10 KiB a
# commit: SQLite copies it back only at 32 MiB, WAL_AUTOCHECKPOINT_PAGES), so that the filler,
# not the log, decides when the disk is full: 1 round writes about 8 MiB, 5 rounds past 32 MiB.
SIZE = "16m" if not STRESS else "96m"
# A cluster's files: about 40 MiB after initdb, plus WAL segments of 16 MiB, which it keeps few.
PG_SIZE = "160m"
PG_SETTINGS = ("min_wal_size=32MB", "max_wal_size=64MB")


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``mountpoint`` (needs root), unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(mountpoint)], check=True, capture_output=True)  # fmt: skip
    try:
        yield mountpoint
    finally:
        # Lazy: a process the test failed to stop must not leave the mount behind.
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no room left; return how many bytes it took."""
    chunk, written = b"\0" * 65_536, 0
    with path.open("wb", buffering=0) as filler:
        with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012 - ends by raising
            while True:
                written += filler.write(chunk) or 0
        assert full.value.errno == errno.ENOSPC, full.value
        # The last partial pages too, so that not even one more WAL frame fits.
        with contextlib.suppress(OSError):
            while filler.write(b"\0" * 512):
                written += 512
    return written


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_full_disk_answers_503_loses_nothing_and_writes_resume_when_space_returns(
    tmp_path: Path, writer: str
) -> None:
    with small_filesystem(tmp_path / "data", SIZE) as data:
        srv = Server(data, {"TRAILKEEP_WRITER": writer})
        srv.log = tmp_path / "server.log"  # off the full disk, so it still tells what happened
        try:
            srv.start()
            tenant = srv.new_app("disk full")
            with Writers([srv], tenant, THREADS) as writers:
                for _ in range(scaled(1, 5)):
                    writers.wait_for_acks(200)
                    filler = data / "filler"
                    assert fill(filler) > 0
                    # Refused while full: every failure is a 503 with Retry-After, none a 500.
                    seen = writers.unavailable_count()
                    wait_until(
                        lambda seen=seen: (
                            writers.unavailable_count() >= seen + 20 or bool(writers.refused)
                        ),
                        60,
                        "writes refused with 503 on the full disk",
                    )
                    assert writers.refused == [], writers.refused[:3]
                    # Reads need no room: they go on.
                    with srv.client(tenant.key) as reader:
                        expect_status(reader.get(events_url(tenant.app_id), params={"limit": 5}))
                    filler.unlink()
                    # No restart: the writer takes writes again as soon as there is room.
                    writers.wait_for_acks(200, within=60)
            assert writers.refused == [], writers.refused[:3]
            details = set()
            for response in writers.unavailable:
                assert response.status_code == 503
                assert response.headers["content-type"] == "application/problem+json"
                problem = response.json()
                assert problem["code"] == "storage_unavailable", problem
                assert int(response.headers["Retry-After"]) >= 1
                details.add(problem["detail"].split(";")[0])
            # SQLite says SQLITE_FULL of a full WAL; an I/O error of its shared memory may come
            # along, which is an outage too.
            assert "the database's disk is full" in details, details
            assert srv.proc is not None
            assert srv.proc.poll() is None  # the same server all along
            check_survivors(srv, tenant, dict(writers.acked), THREADS)
            assert "Traceback" not in srv.log.read_text()
        finally:
            srv.stop()


@pytest.mark.postgres
def test_postgres_on_a_full_disk_answers_503_and_writes_resume_when_space_returns(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The same on PostgreSQL: its files (data and WAL) on a tmpfs that fills under load.

    PostgreSQL refuses to extend a table (``53100 disk_full``) or, when its WAL cannot grow,
    stops its backends and recovers; either way a write is refused 503. Should the server have
    stopped itself, it is started again once there is room, as an operator would: the node
    itself is never restarted.
    """
    # Under the cluster's own directory: the unprivileged user it runs as cannot enter tmp_path.
    cluster = PostgresCluster(settings=PG_SETTINGS)
    with small_filesystem(cluster.root / "disk", PG_SIZE) as disk:
        cluster.data = disk / "data"
        try:
            cluster.start()
            database = cluster.database()
            srv = Server(
                tmp_path / "node",
                {"TRAILKEEP_DATABASE_URL": database.service_url,
                 "TRAILKEEP_REDIS_URL": redis_server.url()},
            )  # fmt: skip
            srv.owner_url = database.owner_url
            try:
                srv.start()
                tenant = srv.new_app("postgres disk full")
                with Writers([srv], tenant, THREADS) as writers:
                    for _ in range(scaled(1, 3)):
                        writers.wait_for_acks(200)
                        filler = disk / "filler"
                        assert fill(filler) > 0
                        seen = writers.unavailable_count()
                        wait_until(
                            lambda seen=seen: (
                                writers.unavailable_count() >= seen + 20 or bool(writers.refused)
                            ),
                            90,
                            "writes refused with 503 on PostgreSQL's full disk",
                        )
                        assert writers.refused == [], writers.refused[:3]
                        filler.unlink()
                        if not cluster.running():
                            cluster.start_server()
                        writers.wait_for_acks(200, within=90)
                assert writers.refused == [], writers.refused[:3]
                for response in writers.unavailable:
                    assert response.json()["code"] == "storage_unavailable", response.text
                    assert int(response.headers["Retry-After"]) >= 1
                assert srv.proc is not None
                assert srv.proc.poll() is None
                check_survivors(srv, tenant, dict(writers.acked), THREADS)
            finally:
                srv.stop()
        finally:
            cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)  # the mount point is left after unmounting
