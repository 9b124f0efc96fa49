"""Browser fixtures: Debian's Chromium driven by Playwright, and a page server on its own origin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.console_pages import Seeded, seed
from tests.browser.sdk_pages import PageServer
from tests.servers import Server

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here as a browser test."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def backend() -> str:
    """SQLite only: the SDK and CORS read nothing the two stores do differently (the store's own
    tests cover allowed origins on both), and a browser run costs seconds per test."""
    return "sqlite"


@pytest.fixture(scope="session")
def server(shared_sqlite_server: Server) -> Server:
    """The shared SQLite server, named here: the session-wide ``server`` may still hold the
    PostgreSQL one when a worker comes here from PostgreSQL tests."""
    return shared_sqlite_server


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the browser tests.

    Package scope on purpose: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and later tests that call ``asyncio.run`` would find it there.
    """
    # A missing browser fails the run rather than skipping it: a skipped test proves nothing.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's `chromium` (CI and `make test` do)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def pages() -> Iterator[PageServer]:
    """Test pages on http://127.0.0.1:<another port>: a different origin from the server."""
    served = PageServer().start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def seeded(request: pytest.FixtureRequest, server: Server) -> Seeded:
    """An app with admin and user entries, named by the test module's ``APP_NAME``."""
    return seed(server, request.module.APP_NAME)
