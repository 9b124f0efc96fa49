"""The server's start-up: once it is up, what it built is frozen out of the collector's reach."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from trailkeep.server.api.app import create_app
from trailkeep.server.settings import Settings


def test_start_up_freezes_what_it_built(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    gc.unfreeze()

    async def start_and_stop() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    try:
        frozen = asyncio.run(start_and_stop())
    finally:
        gc.unfreeze()
    # The app, its routes, pools and every module loaded by then: tens of thousands of objects.
    assert frozen > 10_000
    assert (tmp_path / "trailkeep.db").exists()
