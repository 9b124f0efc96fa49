"""The one verification core: entries and stubs, exports, stored trees, proofs and checkpoints.

Nothing here trusts the server. Each entry's leaf hash is recomputed from its content; seqs must
run 0, 1, 2, … with no gap; the tree head is rebuilt from the leaves; checkpoints are opened with
a key the user holds; proofs are folded up to the signed root. ``trailkeep verify`` (an export,
or the local database through ``trailkeep.server.verify_app``) and the SDK's ``verify_entry``
all call these functions, so an entry is judged the same way wherever it is checked. The first
problem is reported with the seq it concerns and a ``reason`` a program can act on.
"""

from trailkeep.log.verify.entries import (
    STUB_FIELDS,
    Reason,
    Report,
    TreeHead,
    VerifyError,
    check_head,
    check_ledger,
    committed_leaf,
    leaf_of,
)
from trailkeep.log.verify.ledger import Ledger
from trailkeep.log.verify.proofs import app_of, open_signed, verify_consistency, verify_inclusion
from trailkeep.log.verify.spans import Span, check_span, fold, verify_entries
from trailkeep.log.verify.stored import (
    StoredRow,
    StoredTree,
    check_indexed,
    check_stored,
    stored_leaves,
)

__all__ = [
    "STUB_FIELDS",
    "Ledger",
    "Reason",
    "Report",
    "Span",
    "StoredRow",
    "StoredTree",
    "TreeHead",
    "VerifyError",
    "app_of",
    "check_head",
    "check_indexed",
    "check_ledger",
    "check_span",
    "check_stored",
    "committed_leaf",
    "fold",
    "leaf_of",
    "open_signed",
    "stored_leaves",
    "verify_consistency",
    "verify_entries",
    "verify_inclusion",
]
