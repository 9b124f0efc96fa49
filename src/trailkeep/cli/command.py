"""The ``trailkeep`` command: its subcommands put together, and the entry point."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from trailkeep import __version__
from trailkeep.cli.apps import apps_cli, keys_cli, sessions_cli
from trailkeep.cli.common import SERVER_PACKAGES, CliError, cell, err
from trailkeep.cli.compact import compact
from trailkeep.cli.console import console_cli
from trailkeep.cli.events import events_cli
from trailkeep.cli.export import export
from trailkeep.cli.purge import purge
from trailkeep.cli.secrets import secrets_cli
from trailkeep.cli.serve import migrate, serve
from trailkeep.cli.subjects import erase_cli, holds_cli
from trailkeep.cli.verify import verify
from trailkeep.cli.webhooks import webhooks_cli

if TYPE_CHECKING:
    from typer._click import Command  # Typer 0.29 ships click inside itself

app = typer.Typer(
    help="Trailkeep: a verifiable, append-only audit log for your apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"trailkeep {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Trailkeep: a verifiable, append-only audit log for your apps."""


app.command()(serve)
app.command()(migrate)
app.add_typer(apps_cli, name="apps")
app.add_typer(keys_cli, name="keys")
app.add_typer(sessions_cli, name="sessions")
app.add_typer(events_cli, name="events")
app.command()(export)
app.command()(verify)
app.command()(purge)
app.add_typer(holds_cli, name="holds")
app.add_typer(erase_cli, name="erase")
app.add_typer(webhooks_cli, name="webhooks")
app.command()(compact)
app.add_typer(secrets_cli, name="secrets")
app.add_typer(console_cli, name="console")


def command() -> Command:
    """The click command behind ``app``, its flags shown without a ``<bool>`` type."""
    root = typer.main.get_command(app)
    _plain_flags(root)
    return root


def _plain_flags(command: Command) -> None:
    # Typer labels every option with its type; a flag takes no value, so "<bool>" beside
    # `--json` or `--help` reads as if it wanted one. An empty metavar shows nothing there.
    # `--help` is made on first use and then kept by its command: made here, it is kept plain.
    helper = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([helper] if helper else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


def main() -> None:
    """Entry point: run the CLI; user errors are one line on stderr and a non-zero exit."""
    try:
        status = command().main(standalone_mode=False)
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
