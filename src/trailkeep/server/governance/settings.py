"""An app's settings as administrators change them: validation, and what a change changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trailkeep.log.record import EntryError
from trailkeep.server.jwks import JwksError, parse_jwks
from trailkeep.server.provision import normalize_origin

#: The longest retention that can be set: a hundred years (null keeps entries forever).
RETENTION_DAYS_MAX = 36_500
#: The most web origins an app may allow.
ORIGINS_MAX = 100
#: A session issuer's settings as JSON, at most: its change's entry holds the old and the new.
SESSION_ISSUER_MAX_BYTES = 4_096


class SessionIssuer(BaseModel):
    """The app's own identity provider, whose RS256, ES256 and EdDSA sessions it accepts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    issuer: str = Field(min_length=1, max_length=512, description="The tokens' `iss`, exactly.")
    jwks_uri: str | None = Field(
        default=None, min_length=1, max_length=2_048, description="Where its JWKS is published."
    )
    jwks: dict[str, Any] | None = Field(
        default=None, description="Its JWKS itself, instead of `jwks_uri`."
    )
    audience: str | None = Field(
        default=None, min_length=1, max_length=256, description="The `aud` wanted; the app id."
    )
    role_claim: str = Field(
        default="role",
        max_length=200,
        pattern=r"^[^.\s]+(\.[^.\s]+)*$",
        description="A dotted path to the role(s), e.g. `realm_access.roles`.",
    )
    role_map: dict[str, Literal["owner", "admin", "auditor"]] = Field(
        default_factory=dict,
        max_length=100,
        description="The provider's role names -> owner, admin or auditor; others: no role.",
    )


class SettingsPatch(BaseModel):
    """``PATCH /v1/apps/{app}``: the settings to change; the ones left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=RETENTION_DAYS_MAX,
        description="Days an entry's content is kept; null keeps it forever (the default).",
    )
    allowed_origins: list[str] | None = Field(
        default=None,
        max_length=ORIGINS_MAX,
        description="Web origins (scheme://host[:port]) whose pages may write from a browser.",
    )
    erasure_approvals: Literal[1, 2] | None = Field(
        default=None, description="How many distinct owners approve an erasure: 1 or 2."
    )
    session_issuer: SessionIssuer | None = Field(
        default=None, description="The app's identity provider (see docs/identity.md); null: none."
    )


def validate_patch(body: Any, app_id: str | None = None) -> dict[str, Any]:
    """The settings a PATCH body changes, validated; ``EntryError`` names the bad field.

    A ``session_issuer`` without an ``audience`` gets ``app_id`` (when given) as its audience.
    Whether a ``jwks_uri``'s host is a public address is checked by the caller (it resolves
    names): see :func:`trailkeep.server.jwks.check_uri`.
    """
    if not isinstance(body, dict):
        raise EntryError("body: expected a JSON object of settings")
    try:
        patch = SettingsPatch.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            raise EntryError(f"{where}: unknown setting") from None
        raise EntryError(f"{where}: {first['msg']}") from None
    values = patch.model_dump(include=patch.model_fields_set)
    for name in ("allowed_origins", "erasure_approvals"):
        if name in values and values[name] is None:
            raise EntryError(f"{name}: cannot be null")
    if "allowed_origins" in values:
        try:
            origins = [normalize_origin(origin) for origin in values["allowed_origins"]]
        except ValueError as exc:
            raise EntryError(f"allowed_origins: {exc}") from None
        values["allowed_origins"] = list(dict.fromkeys(origins))
    if values.get("session_issuer") is not None:
        values["session_issuer"] = _issuer(values["session_issuer"], app_id)
    return values


def _issuer(issuer: dict[str, Any], app_id: str | None) -> dict[str, Any]:
    """A session issuer as stored: one source of keys, a usable JWKS, the audience set."""
    if (issuer["jwks_uri"] is None) == (issuer["jwks"] is None):
        raise EntryError("session_issuer: give `jwks_uri` or `jwks`, one of them")
    if issuer["jwks"] is not None:
        try:
            parse_jwks(issuer["jwks"])
        except JwksError as exc:
            raise EntryError(f"session_issuer.jwks: {exc}") from None
    stored = {name: value for name, value in issuer.items() if value is not None}
    if "audience" not in stored and app_id is not None:
        stored["audience"] = app_id
    if len(json.dumps(stored)) > SESSION_ISSUER_MAX_BYTES:
        raise EntryError(
            f"session_issuer: at most {SESSION_ISSUER_MAX_BYTES} bytes as JSON "
            "(publish a large key set at a `jwks_uri` instead)"
        )
    return stored


def changes_of(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{path, old, new}]`` for each setting whose value differs (RFC 6901 paths)."""
    return [
        {"path": f"/{name}", "old": current[name], "new": value}
        for name, value in sorted(wanted.items())
        if current[name] != value
    ]


def shortens(old: int | None, new: int | None) -> bool:
    """True when a retention change keeps entries for less time than before."""
    return new is not None and (old is None or new < old)
