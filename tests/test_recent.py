"""Bounded in-process memory (statehouse/_recent.py): the entries set most recently stay,
the one set longest ago goes first, whichever way it was set."""

from __future__ import annotations

import pytest

from statehouse._recent import RecentDict, RecentSet


def test_a_recent_dict_drops_its_oldest_keys_past_its_limit() -> None:
    recent: RecentDict[str, int] = RecentDict(3)
    recent["a"] = 1
    recent.setdefault("b", 2)
    recent.update({"c": 3, "d": 4})
    assert list(recent.items()) == [("b", 2), ("c", 3), ("d", 4)]
    recent["b"] = 20  # set again: the newest now
    assert recent.get("c") == 3  # a read changes nothing
    recent["e"] = 5
    assert list(recent.items()) == [("d", 4), ("b", 20), ("e", 5)]


def test_a_recent_set_drops_its_oldest_members_past_its_limit() -> None:
    recent: RecentSet[int] = RecentSet(2)
    recent.update([1, 2])
    recent.add(3)
    assert (1 in recent, 2 in recent, 3 in recent, len(recent)) == (False, True, True, 2)
    recent.add(2)  # added again: the newest now
    recent.add(4)
    assert list(recent) == [2, 4]
    recent.discard(2)
    recent.discard(99)  # not a member: nothing happens
    assert list(recent) == [4]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one entry, not 0"):
        RecentDict(0)
