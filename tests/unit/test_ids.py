"""Entry ids: unique, unguessable, and in creation order."""

from __future__ import annotations

import re
import time

from trailkeep.server.ids import new_entry_id


def test_entry_ids_carry_at_least_96_random_bits() -> None:
    ids = {new_entry_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    for ident in list(ids)[:50]:
        assert re.fullmatch(r"evt_[0-9a-f]{44}", ident)
    # Apart from the 12-digit time, no two ids share even their first random digits often.
    assert len({ident[16:32] for ident in ids}) == 2_000


def test_entry_ids_sort_by_creation_millisecond() -> None:
    first = new_entry_id()
    time.sleep(0.003)
    second = new_entry_id()
    assert first[4:16] < second[4:16]
    assert first < second
    assert abs(int(second[4:16], 16) - time.time_ns() // 1_000_000) < 60_000
