"""An app's settings as administrators change them: validation, and what a change changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trailkeep.log.record import EntryError
from trailkeep.server.provision import normalize_origin

#: The longest retention that can be set: a hundred years (null keeps entries forever).
RETENTION_DAYS_MAX = 36_500
#: The most web origins an app may allow.
ORIGINS_MAX = 100


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


def validate_patch(body: Any) -> dict[str, Any]:
    """The settings a PATCH body changes, validated; ``EntryError`` names the bad field."""
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
    return values


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
