"""What :class:`Client` and :class:`AsyncClient` share: configuration, trust, sessions."""

from __future__ import annotations

import logging
import threading
from typing import Final
from urllib.parse import urlsplit

from trailkeep import __version__
from trailkeep.log.notes import NoteVerifier

from .build import Builder, Call
from .context import EMPTY, RequestContext, current
from .errors import (
    ConfigurationError,
    NotFound,
    TrailkeepError,
    Unauthenticated,
    VerificationError,
)
from .models import Entry, ProvenEntry, SignedCheckpoint
from .retry import Attempts, OnRetry, RetryPolicy
from .verify import Witness, open_signed, parse_verifier_key, verify_proven

USER_AGENT: Final = f"trailkeep-python/{__version__}"
log = logging.getLogger("trailkeep.sdk")
KEY_PREFIX: Final = "tk_"


class Core:
    """The configuration and trust state of one client, independent of how it sends."""

    def __init__(
        self,
        endpoint: str,
        app: str,
        key: str,
        *,
        verifier_key: str | None,
        retry: RetryPolicy,
        on_retry: OnRetry | None,
        metadata_max_bytes: int | None,
    ) -> None:
        """Check the configuration; nothing is sent yet."""
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"endpoint: expected an http(s) URL, got {endpoint!r}")
        if not app or not key:
            raise ConfigurationError("app and key are required")
        self.endpoint = endpoint.rstrip("/")
        self.app = app
        self.builder = Builder(app, metadata_max_bytes)
        self.headers = {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
        # Only a key may forward an end user's session, IP and user agent (the server refuses
        # them from a session), so a client holding a session ignores the request context.
        self.forwards = key.startswith(KEY_PREFIX)
        self.retry = retry
        self.on_retry = on_retry
        self.pinned = verifier_key is not None
        self._verifier = parse_verifier_key(verifier_key) if verifier_key is not None else None
        self._lock = threading.Lock()
        self.witness = Witness()

    def context(
        self, session: str | None, client_ip: str | None, user_agent: str | None
    ) -> RequestContext:
        """The end user to act for: the bound request context, overridden by explicit values."""
        bound = current() if self.forwards else EMPTY
        return bound.merged(session, client_ip, user_agent)

    def fallback(self, call: Call, error: TrailkeepError) -> Call | None:
        """The call to send instead when the server refused a session a middleware captured.

        A host app's own bearer token looks like a session to the middleware; refused, the
        write is recorded without it (the key acts) rather than failing the host's request.
        """
        if call.fallback is None or not isinstance(error, Unauthenticated | NotFound):
            return None
        log.warning(
            "Trailkeep refused the session found in the request (%s): recording without it; "
            "set session_header=None on the middleware if your app's bearer tokens are its own",
            error.detail,
        )
        return call.fallback

    def attempts(self, call: Call) -> Attempts:
        """Fresh retry state for ``call``."""
        return Attempts(
            self.retry, self.on_retry, call.method, call.path, call.headers.get("Idempotency-Key")
        )

    @property
    def verifier(self) -> NoteVerifier | None:
        """The trusted checkpoint key: pinned, or fetched once (``None`` before that)."""
        return self._verifier

    def learn_verifier(self, text: str) -> NoteVerifier:
        """Trust the key the server published, unless one is known already (first one wins)."""
        parsed = parse_verifier_key(text)
        with self._lock:
            if self._verifier is None:
                self._verifier = parsed
            return self._verifier

    def with_proof(self, entry: Entry, fetched: ProvenEntry) -> ProvenEntry:
        """The caller's own copy of the entry, with the proof and checkpoint just fetched."""
        if fetched.entry.id != entry.id:
            raise VerificationError("malformed", "the server answered for another entry")
        return ProvenEntry(entry=entry, proof=fetched.proof, checkpoint=fetched.checkpoint)

    def check_proven(self, proven: ProvenEntry, verifier: NoteVerifier) -> None:
        """Verify leaf, inclusion and signature locally, for this client's app."""
        if proven.entry.app_id != self.app:
            raise VerificationError(
                "origin", f"the entry is of app {proven.entry.app_id!r}, not {self.app!r}"
            )
        verify_proven(proven, verifier)

    def check_checkpoint(self, note: str, verifier: NoteVerifier) -> SignedCheckpoint:
        """Parse a checkpoint note of this app and check its signature."""
        checkpoint = SignedCheckpoint.parse(note)
        open_signed(checkpoint, verifier)
        if checkpoint.app_id != self.app:
            raise VerificationError(
                "origin", f"the checkpoint is of {checkpoint.origin!r}, not of app {self.app!r}"
            )
        return checkpoint


def text_of(content: bytes, what: str) -> str:
    """A text answer (checkpoint, key) decoded strictly."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise TrailkeepError(
            "invalid_response", None, f"the server's {what} is not UTF-8", local=True
        ) from None


def unproven(sizes: tuple[int, int], refusal: TrailkeepError) -> VerificationError:
    """The server would not prove two signed checkpoints consistent: treat it as a fork."""
    return VerificationError(
        "consistency",
        f"the server did not prove tree {sizes[0]} a prefix of tree {sizes[1]}: {refusal.detail}",
    )
