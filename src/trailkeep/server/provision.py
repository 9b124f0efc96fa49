"""Creating apps and keys: what the CLI and the demo set-up share."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from trailkeep.log.credentials import SCOPES
from trailkeep.server.auth import new_app_id, new_key, new_session_secret
from trailkeep.server.files import private_dir
from trailkeep.server.store import Store


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the full key is shown once and never stored."""

    key_id: str
    key: str
    scopes: list[str]


@dataclass(frozen=True)
class NewApp:
    """A freshly made app, with a key that has every scope and its session secret."""

    app_id: str
    name: str
    key_id: str
    key: str
    session_secret: str


def create_key(store: Store, app_id: str, scopes: Sequence[str], name: str | None = None) -> NewKey:
    """Make a key for an app; ``LookupError`` if the app does not exist."""
    if store.get_app(app_id) is None:
        raise LookupError(f"no app {app_id!r}")
    if not scopes:
        raise ValueError(f"give at least one scope: {', '.join(SCOPES)}")
    key_id, key, secret_hash = new_key(scopes)
    store.create_key(key_id, app_id, secret_hash, scopes, name)
    return NewKey(key_id, key, sorted(set(scopes)))


def create_app(store: Store, name: str) -> NewApp:
    """Make an app with a session secret and a key that has every scope."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("an app's name is 1 to 200 characters")
    app = store.create_app(new_app_id(), name, new_session_secret())
    key = create_key(store, app.id, SCOPES, name="initial key")
    return NewApp(app.id, app.name, key.key_id, key.key, app.session_secret)


def demo_app(store: Store, data_dir: Path) -> NewApp:
    """The demo app of ``make run``: made on first start, its credentials kept in a 0600 file."""
    path = data_dir / "demo-credentials.json"
    if path.exists():
        saved = NewApp(**json.loads(path.read_text()))
        if store.get_app(saved.app_id) is not None:
            return saved
    made = create_app(store, "Demo app")
    private_dir(data_dir)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(asdict(made), handle, indent=2)
    return made


_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_origin(text: str) -> str:
    """A web origin as browsers send it (``scheme://host[:port]``), or ValueError."""
    hint = f"{text!r} is not an origin: expected scheme://host[:port], e.g. https://app.example"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(hint) from None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        raise ValueError(hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{text!r}: an origin has no path, query or fragment")
    if ":" in host:  # IPv6
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(hint) from None
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()  # browsers send the A-label
        except UnicodeError:
            raise ValueError(hint) from None
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            raise ValueError(hint)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    if port == 0:
        raise ValueError(hint)
    return f"{scheme}://{host}:{port}"
