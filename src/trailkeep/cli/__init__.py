"""The ``trailkeep`` command line: serve a node, manage apps and keys, read and verify logs.

Server-side commands (``serve``, ``apps``, ``keys``, ``migrate``, ``verify --app``) open the
database through :mod:`trailkeep.server`; commands that talk to a running server use the SDK's
client. See ``trailkeep --help``.
"""

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    # Lazily: a worker process that imports one module of the package (``verify --export``'s
    # file checks) need not import every command, Typer and Rich first.
    if name in __all__:
        from trailkeep.cli import command

        return getattr(command, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
