"""The actors of administration that no credential names: the operator and the system."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Final

from trailkeep.log.record import TARGET_ID_MAX, Actor

#: The retention scheduler, as its entries name it (DESIGN §1).
RETENTION: Final = Actor(type="system", id="retention")


def operator() -> Actor:
    """The person at this host's shell, ``user@host``: the CLI's actor."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        # A container's uid with no passwd entry still acts; it is named by its number.
        user = f"uid{os.getuid()}"
    return Actor(type="operator", id=f"{user}@{socket.gethostname()}"[:TARGET_ID_MAX])
