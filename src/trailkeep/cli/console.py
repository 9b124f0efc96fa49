"""``trailkeep console link``: a sign-in link to the admin console, for one person and role.

The link carries an HS256 session (minted with the app's session secret, as ``sessions mint``
does) in its fragment: ``<public url>/console#session=<token>``. Browsers never send a fragment
to a server, so the session appears in no server's or proxy's access log; the console moves it
into the tab's storage and clears it from the address bar at once.
"""

from __future__ import annotations

import os
import re
import sys
from enum import StrEnum
from typing import Annotated, Final

import typer

from trailkeep.cli.common import AppOpt, CliError, DatabaseUrl, DataDir, open_store
from trailkeep.log.credentials import SESSION_MAX_TTL_SECONDS
from trailkeep.sdk.sessions import mint_session

console_cli = typer.Typer(help="The admin console at /console.", no_args_is_help=True)

LOCAL_URL: Final = "http://127.0.0.1:8000"
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"^(\d+)([smhd]?)$")


class Role(StrEnum):
    """What the person may do: owners manage, admins and auditors read (auditors only that)."""

    owner = "owner"
    admin = "admin"
    auditor = "auditor"


def parse_ttl(text: str) -> int:
    """Seconds of a duration such as ``15m``, ``2h``, ``1d`` or ``900`` (seconds)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise CliError(f"--ttl {text!r}: a duration such as 15m, 2h, 1d or 900 (seconds)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 < seconds <= SESSION_MAX_TTL_SECONDS:
        raise CliError(f"--ttl {text!r}: from 1 second to 7 days")
    return seconds


def public_url(given: str | None = None) -> str:
    """Where people reach the server: ``--public-url``, ``TRAILKEEP_PUBLIC_URL``, or local."""
    url = (given or os.environ.get("TRAILKEEP_PUBLIC_URL") or LOCAL_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"public URL {url!r}: give it as http(s)://host[:port][/path]")
    return url


def link(base: str, app_id: str, secret: str, sub: str, role: str, name: str | None,
         ttl: int) -> str:  # fmt: skip
    """The console's sign-in link: a fresh session in the fragment of ``base/console``."""
    token = mint_session(app_id, secret, sub, role=role, name=name, ttl=ttl)
    return f"{base}/console#session={token}"


@console_cli.command("link")
def console_link(
    app_id: AppOpt,
    sub: Annotated[str, typer.Option(help="The person's id (the actor id of their reads).")],
    role: Annotated[Role, typer.Option(help="owner, admin or auditor (reads and verifies).")],
    name: Annotated[str | None, typer.Option(help="The person's name, shown and logged.")] = None,
    ttl: Annotated[str, typer.Option(help="How long the session lasts: 15m, 2h, 1d.")] = "15m",
    public: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="The server's address as people reach it (default TRAILKEEP_PUBLIC_URL, else "
            f"{LOCAL_URL}).",
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print a sign-in link to the console for one person (a session in its fragment)."""
    seconds = parse_ttl(ttl)
    base = public_url(public)
    found = open_store(data_dir, database_url).get_app(app_id)
    if found is None:
        raise CliError(f"no app {app_id!r}")
    url = link(base, app_id, found.session_secret, sub, role.value, name, seconds)
    sys.stdout.write(url + "\n")
