"""Bounded in-process memory: the newest entries of a dict or a set.

A long-lived process (a worker running graph after graph) must not grow with every
super-step it ever ran. The LangGraph saver keeps what it wrote in these, to save reads;
an entry that falls out is read from the store again, or its saving is lost (see each
use in statehouse/langgraph.py, and docs/langgraph.md, "Memory").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import TypeVar

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class RecentDict(OrderedDict[_K, _V]):
    """A dict that keeps its `limit` most recently set keys: setting one more drops the
    one set longest ago (`setdefault` of a new key and `update` set too; reading does not count)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a RecentDict keeps at least one entry, not {limit}")
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: _K, value: _V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)


class RecentSet(Iterable[_K]):
    """A set that keeps its `limit` most recently added members."""

    def __init__(self, limit: int) -> None:
        self._members: RecentDict[_K, None] = RecentDict(limit)

    def add(self, member: _K) -> None:
        self._members[member] = None

    def update(self, members: Iterable[_K]) -> None:
        for member in members:
            self._members[member] = None

    def discard(self, member: _K) -> None:
        self._members.pop(member, None)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __iter__(self) -> Iterator[_K]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)
