"""What the ``trailkeep`` subcommands share: consoles, option types and opening the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trailkeep.server.settings import Settings
from trailkeep.server.store import Store

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory [env TRAILKEEP_DATA_DIR].")
]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Database URL [env TRAILKEEP_DATABASE_URL].")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AppOpt = Annotated[str, typer.Option("--app", help="The app id.")]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 1."""


def settings_from(**overrides: Any) -> Settings:
    """Environment settings, overridden by the options that were given."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def open_store(data_dir: Path | None, database_url: str | None) -> Store:
    """Open and migrate the configured database."""
    store = Store(settings_from(data_dir=data_dir, database_url=database_url).resolved_database_url)
    store.migrate()
    return store


def print_json(value: Any) -> None:
    """Write a JSON document to stdout."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
