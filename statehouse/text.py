"""Text shortened for display: one rule for the dashboard, the admin, the CLI and the store."""

from __future__ import annotations

__all__ = ["one_line", "shorten"]


def shorten(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` if it fits in `limit` characters, else its start and `ellipsis`, `limit` long."""
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis


def one_line(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` with each run of whitespace (newlines included) one space, then shortened."""
    return shorten(" ".join(text.split()), limit, ellipsis=ellipsis)
