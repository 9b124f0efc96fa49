"""The node's own files (its data directory, keys, the SQLite database): private to its user.

The data directory holds what lets anyone mint sessions or sign checkpoints: the secret key,
the signing key, the database. It is made ``0700`` and each file ``0600``, and an existing one
found looser is tightened, whatever the umask of the process that started the server.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its missing parents) a directory only its owner may enter.

    A sticky directory (``/tmp``) is shared by design: a key or database put straight into one
    leaves it as it is, since closing it would break every other user of the machine.
    """
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if not path.stat().st_mode & stat.S_ISVTX:
        _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if it is missing, and make it readable by its owner only."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    _tighten(path, PRIVATE_FILE)
    return path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The text of a key file, made by ``make`` (mode 0600) when it does not exist yet."""
    if path.exists():
        _tighten(path, PRIVATE_FILE)
        return path.read_text().strip()
    private_dir(path.parent)
    text = make()
    try:
        # O_EXCL: when several processes start at once, exactly one key wins; the rest read it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    return text


def _tighten(path: Path, mode: int) -> None:
    # Only what this user owns: a shared mount or a file of another user is left as it is
    # (and the server still works), rather than failing the start.
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
