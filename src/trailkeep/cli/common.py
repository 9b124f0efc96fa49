"""What the ``trailkeep`` subcommands share: consoles, option types and opening the store.

The server's packages are imported only by the commands that need them, so that ``pip install
trailkeep`` (the SDK and the verifier, without ``[server]``) still runs ``trailkeep verify``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from trailkeep.log.render import json_line, visible

if TYPE_CHECKING:
    from trailkeep.log.record import Actor, Origin
    from trailkeep.server.governance.administer import Administrator
    from trailkeep.server.governance.retention import Retention
    from trailkeep.server.governance.subjects import Subjects
    from trailkeep.server.governance.webhooks import Webhooks
    from trailkeep.server.settings import Settings
    from trailkeep.server.store import Store

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

# Help texts are Rich markup: "[env ...]" in one would vanish as an unknown tag, leaving an
# empty "Data directory ." behind, so the variables are named in parentheses.
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: TRAILKEEP_DATA_DIR, or ./data)."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database URL (default: TRAILKEEP_DATABASE_URL, or the data directory's SQLite file).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AppOpt = Annotated[str, typer.Option("--app", help="The app id.")]
#: The one spelling of an API key across commands (``--key`` is the verifier key file).
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="TRAILKEEP_KEY", help="An API key (or a session token)."),
]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 1."""


#: The top-level packages of ``trailkeep[server]``: a command that misses one says what to install.
SERVER_PACKAGES = frozenset(
    {"fastapi", "fastapi_offline", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg",
     "redis", "limits", "pydantic_settings", "prometheus_client"}
)  # fmt: skip


def settings_from(**overrides: Any) -> Settings:
    """Environment settings, overridden by the options that were given."""
    from trailkeep.server.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def open_store(data_dir: Path | None, database_url: str | None, *, create: bool = False) -> Store:
    """Open and migrate the configured database, with the node's secret key.

    Without ``create``, a SQLite file that does not exist is an error rather than a new, empty
    database: a command run in the wrong folder would otherwise answer "no apps".
    """
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    if create:
        require_reachable(settings)
    else:
        require_database(settings)
    return store_of(settings)


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for PostgreSQL or an in-memory database)."""
    if not url.startswith("sqlite"):
        return None
    database = url.split("///", 1)[1] if "///" in url else ""
    database = database.split("?", 1)[0]
    return Path(database) if database and database != ":memory:" else None


def require_reachable(settings: Settings) -> None:
    """Fail now, in one line, if the configured PostgreSQL cannot be connected to."""
    from trailkeep.server.store.engine import is_postgres, redacted, unreachable

    url = settings.resolved_database_url
    if is_postgres(url) and (reason := unreachable(url)) is not None:
        raise CliError(f"cannot connect to the database {redacted(url)}: {reason}")


def require_database(settings: Settings) -> None:
    """Fail with the reason if the configured database does not exist yet (or is out of reach)."""
    require_reachable(settings)
    path = sqlite_file(settings.resolved_database_url)
    if path is not None and not path.exists():
        raise CliError(
            f"no database at {path}: give --data-dir (or TRAILKEEP_DATA_DIR) or --database-url "
            "of an existing one; `trailkeep apps create` or `trailkeep serve` makes a new one"
        )


def store_of(settings: Settings) -> Store:
    """The database of ``settings``, migrated, holding the secret key (made on first use)."""
    from trailkeep.server.secrets import SecretBox
    from trailkeep.server.store import Store

    secrets = SecretBox.load(settings.resolved_secret_key_file, settings.previous_secret_key_file)
    store = Store(settings.resolved_database_url, secrets=secrets)
    store.migrate()
    return store


@dataclass(frozen=True)
class Operator:
    """What a governance command acts with: the operator, where from, and the app's stores."""

    actor: Actor
    origin: Origin
    admin: Administrator
    retention: Retention
    subjects: Subjects
    webhooks: Webhooks


def administer(
    data_dir: Path | None, database_url: str | None, app_id: str, job: Callable[[Operator], T]
) -> T:
    """Run a governance change as this host's operator, logged in the app's log and signed.

    The entries are appended beside a running server's writes (the app's lock orders them), and
    a checkpoint covering them is signed here, so that they can be proved without waiting for
    the next write to reach a server.
    """
    from trailkeep import __version__
    from trailkeep.log.record import EntryError, Origin
    from trailkeep.server.governance import Administrator, Forbidden, operator
    from trailkeep.server.governance.administer import Conflict
    from trailkeep.server.governance.retention import Retention
    from trailkeep.server.governance.subjects import Subjects
    from trailkeep.server.governance.webhooks import Webhooks
    from trailkeep.server.ingest.checkpointer import Checkpointer, load_signer

    settings = settings_from(data_dir=data_dir, database_url=database_url)
    require_database(settings)
    store = store_of(settings)
    size = store.log_size(app_id) if store.get_app(app_id) is not None else 0
    acting = Operator(
        operator(),
        Origin(ip=None, user_agent=f"trailkeep-cli/{__version__}"),
        Administrator(store, settings.metadata_max_bytes),
        Retention(store, settings.metadata_max_bytes),
        Subjects(store, settings.metadata_max_bytes),
        Webhooks(store, settings.metadata_max_bytes),
    )
    try:
        done = job(acting)
    except LookupError:
        raise CliError(f"no app {app_id!r}, or nothing of that id in it") from None
    except (Forbidden, Conflict, EntryError) as exc:
        raise CliError(exc.detail) from None
    if store.log_size(app_id) == size:
        return done
    key_file = settings.resolved_signing_key_file
    if key_file.exists():
        # Never a key of its own: a checkpoint must be signed by the deployment's key.
        signer = load_signer(key_file, settings.origin)
        Checkpointer(store, signer, settings.origin).latest(app_id, 0.0)
    else:
        err.print(
            f"note: no signing key at {key_file}: the servers sign the checkpoint that covers "
            "this change when the app is next written to",
            highlight=False,
        )
    return done


def data_dir_of(option: Path | None) -> Path:
    """The data directory: ``--data-dir``, else ``TRAILKEEP_DATA_DIR``, else ``./data``."""
    return option or Path(os.environ.get("TRAILKEEP_DATA_DIR") or "./data")


def print_json(value: Any) -> None:
    """Write a JSON document to stdout (ASCII only: nothing in it reaches the terminal raw)."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_json_line(value: Any) -> None:
    """Write one JSON value as a line: the same value, with no raw control or bidi character."""
    sys.stdout.write(json_line(json.dumps(value, ensure_ascii=False)) + "\n")


def cell(value: object) -> Text:
    """A table cell holding ``value`` as inert text: never Rich markup, controls made visible."""
    return Text("" if value is None else visible(str(value)))
