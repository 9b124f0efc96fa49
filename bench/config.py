"""How big and how long each benchmark runs: the full run, and the smoke run's tiny sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Every count and duration a run uses; the smoke run takes the same code paths, smaller."""

    ingest_batch100_entries: int = 100_000
    ingest_batch1_entries: int = 6_000  # long enough that fsync jitter does not decide a ratio
    ingest_concurrent_entries: int = 20_000
    ingest_max_seconds: float = 15.0
    ingest_rounds: int = 2  # variants run interleaved this many times; the best round counts
    # The one-entry variants run this many rounds more: they are short, and fsync jitter and the
    # machine's pace move their ratios from one round to the next.
    ingest_batch1_extra_rounds: int = 2
    concurrencies: tuple[int, ...] = (1, 4, 16, 32, 64, 256)
    load_seconds: float = 5.0
    nodes: int = 3  # PostgreSQL multi-node run
    reads_entries: int = 1_000_000  # per app; two apps share the file
    deep_offset: int = 900_000
    read_repeats: int = 50
    export_max_seconds: float = 30.0
    proof_tree_size: int = 10_000_000
    proof_repeats: int = 200
    soak_seconds: float = 120.0
    soak_sample_seconds: float = 5.0
    soak_warmup_seconds: float = 60.0
    soak_connections: int = 16
    purge_pg_entries: int = 200_000  # the PostgreSQL purge: a fresh database filled this far
    steady_rounds: int = 6  # steady write + retention: rounds of writing and purging
    steady_entries: int = 50_000  # written (and later purged) each round
    stream_subscribers: int = 200  # live stream: subscribers on one app
    stream_writes: int = 2_000  # single writes while they listen
    stream_write_rate: float = 100.0  # writes a second: 200 × 100 = 20,000 events out a second
    stream_listener_processes: int = 2  # asyncio processes the subscribers are spread over
    webhook_entries: int = 100_000  # the backlog one destination is sent
    webhook_write_rate: float = 2_000.0  # single writes a second while two destinations follow
    webhook_live_seconds: float = 10.0  # how long those writes go on
    webhook_writer_processes: int = 2  # the paced writers, each an asyncio process
    console_repeats: int = 5  # each console figure is the median of this many


FULL = Sizes()

SMOKE = Sizes(
    ingest_batch100_entries=2_000,
    ingest_batch1_entries=100,
    ingest_concurrent_entries=500,
    ingest_max_seconds=3.0,
    ingest_rounds=1,
    ingest_batch1_extra_rounds=0,
    concurrencies=(1, 32, 64),
    load_seconds=1.0,
    reads_entries=5_000,
    deep_offset=4_500,
    read_repeats=10,
    export_max_seconds=5.0,
    proof_tree_size=10_000,
    proof_repeats=20,
    soak_seconds=3.0,
    soak_sample_seconds=1.0,
    soak_warmup_seconds=1.0,
    soak_connections=4,
    purge_pg_entries=3_000,
    steady_rounds=3,
    steady_entries=2_000,
    stream_subscribers=5,
    stream_writes=100,
    webhook_entries=2_000,
    webhook_write_rate=200.0,
    webhook_live_seconds=1.0,
    console_repeats=2,
)

SUITES = (
    "ingest",
    "http_write",
    "reads",
    "proofs",
    "verify",
    "governance",
    "stream",
    "webhooks",
    "console",
    "soak",
)
