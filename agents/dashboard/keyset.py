"""Keyset ("seek") pagination, shared by the list, audit and replay screens.

A page is the rows after (or before) the last (or first) row shown, in an order by one
field then the primary key, so page 2,000 costs what page 1 costs: no OFFSET, no count of
the rows skipped. A position is that pair of values, as a screen's cursor carries it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models
from django.db.models import Q

M = TypeVar("M", bound=models.Model)

Position = tuple[Any, int]  # (the ordering field's value, the primary key)


def seek(
    rows: models.QuerySet[M],
    *,
    by: str,
    descending: bool,
    after: Position | None,
    before: Position | None,
    size: int,
) -> tuple[list[M], bool, bool]:
    """One page of `rows` ordered by (`by`, pk), after or before a position.

    Return (rows, has_prev, has_next). `descending` is the order of the forward pages;
    reading `before` a position walks the other way and turns the page round.
    """
    backwards = before is not None
    position = before if backwards else after
    down = descending != backwards
    op = "lt" if down else "gt"
    if position is not None:
        value, pk = position
        rows = rows.filter(
            # The first condition alone bounds an index range scan on (by, pk).
            Q(**{f"{by}__{op}e": value}),
            Q(**{f"{by}__{op}": value}) | Q(**{by: value, f"pk__{op}": pk}),
        )
    ordering = [f"-{by}", "-pk"] if down else [by, "pk"]
    found = list(rows.order_by(*ordering)[: size + 1])
    more = len(found) > size
    found = found[:size]
    if backwards:
        found.reverse()
        return found, more, True
    return found, position is not None, more
