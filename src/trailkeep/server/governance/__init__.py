"""Governance: an app's settings and keys changed by its administrators, each change logged.

Every change appends an ``admin`` entry to the app's own log in the transaction that makes it
(DESIGN §5), whoever makes it: an owner over HTTP, a management key, or an operator at the CLI.
"""

from trailkeep.server.governance.actors import RETENTION, operator
from trailkeep.server.governance.administer import Administrator, Forbidden, NewKey
from trailkeep.server.governance.settings import SettingsPatch, validate_patch

__all__ = [
    "RETENTION",
    "Administrator",
    "Forbidden",
    "NewKey",
    "SettingsPatch",
    "operator",
    "validate_patch",
]
