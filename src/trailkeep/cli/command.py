"""The ``trailkeep`` command: its subcommands put together, and the entry point."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from trailkeep.cli.apps import apps_cli, keys_cli, sessions_cli
from trailkeep.cli.common import SERVER_PACKAGES, CliError, cell, err
from trailkeep.cli.events import events_cli
from trailkeep.cli.purge import purge
from trailkeep.cli.serve import migrate, serve
from trailkeep.cli.verify import verify

app = typer.Typer(
    help="Trailkeep: a verifiable, append-only audit log for your apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(serve)
app.command()(migrate)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(sessions_cli, name="sessions")
app.add_typer(events_cli, name="events")
app.command()(verify)
app.command()(purge)


def main() -> None:
    """Entry point: run the CLI; user errors are one line on stderr and a non-zero exit."""
    try:
        status = app(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: one line, not Typer's framed panel
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_PACKAGES:
            _fail(f"{type(exc).__name__}: {exc}", 1)
        _fail(
            f"this command runs the server's code, which needs {exc.name!r}: "
            "pip install 'trailkeep[server]'",
            1,
        )
    except (CliError, LookupError, ValueError, OSError) as exc:
        _fail(str(exc), 1)
    except Exception as exc:  # one line, never a traceback, for anything else too
        _fail(f"{type(exc).__name__}: {exc}", 1)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    # Messages echo user input and servers' words: shown as inert text, never markup.
    err.print("error: ", style="red", end="")
    err.print(cell(message), highlight=False, soft_wrap=True)
    sys.exit(status)
