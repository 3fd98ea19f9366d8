"""Bounded in-process memory (statehouse/_recent.py): the newest entries stay, the oldest
go first, whichever way an entry was inserted."""

from __future__ import annotations

import pytest

from statehouse._recent import RecentDict, RecentSet


def test_a_recent_dict_drops_its_oldest_keys_past_its_limit() -> None:
    recent: RecentDict[str, int] = RecentDict(3)
    recent["a"] = 1
    recent.setdefault("b", 2)
    recent.update({"c": 3, "d": 4})
    assert list(recent.items()) == [("b", 2), ("c", 3), ("d", 4)]
    recent["b"] = 20  # replacing a key keeps its place
    recent["e"] = 5
    assert list(recent.items()) == [("c", 3), ("d", 4), ("e", 5)]


def test_a_recent_set_drops_its_oldest_members_past_its_limit() -> None:
    recent: RecentSet[int] = RecentSet(2)
    recent.update([1, 2])
    recent.add(3)
    assert (1 in recent, 2 in recent, 3 in recent, len(recent)) == (False, True, True, 2)
    recent.discard(2)
    recent.discard(99)  # not a member: nothing happens
    assert list(recent) == [3]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one entry, not 0"):
        RecentDict(0)
