"""Text of the dashboard: stored JSON shown indented or on one line, durations, diffs.

The admin shows values with the same `pretty_json`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import timedelta

from statehouse import text

PREVIEW_CHARS = 1200
PREVIEW_LINES = 24
INLINE_FULL_LIMIT = 64 * 1024  # larger values are shown whole on the history page only


def pretty_json(value_json: str | None, *, sort_keys: bool = False) -> str:
    """Indented JSON text of a stored value ("" for a tombstone)."""
    if value_json is None:
        return ""
    try:
        return json.dumps(json.loads(value_json), indent=2, ensure_ascii=False, sort_keys=sort_keys)
    except ValueError:
        return value_json


@dataclass(frozen=True)
class ShownValue:
    """A value as the dashboard shows it: a preview, and the whole text when it is small."""

    preview: str
    full: str
    truncated: bool
    inline_full: bool
    size: int

    @classmethod
    def of(cls, value_json: str | None) -> ShownValue:
        text = pretty_json(value_json)
        lines = text.splitlines()
        preview = "\n".join(lines[:PREVIEW_LINES])
        preview = preview[:PREVIEW_CHARS]
        truncated = preview != text
        inline = len(text) <= INLINE_FULL_LIMIT
        return cls(
            preview=preview + ("\n…" if truncated else ""),
            full=text if truncated and inline else "",
            truncated=truncated,
            inline_full=inline,
            size=len(text),
        )


def one_line(value_json: str | None, limit: int = 160) -> str:
    """A stored value on one line, shortened ("" for a tombstone)."""
    return "" if value_json is None else text.one_line(value_json, limit)


def json_text(value_json: str) -> str:
    """Pretty JSON for display; a plain string (an error message, say) shown as itself."""
    if not value_json:
        return ""
    if value_json.startswith('"'):
        try:
            text = json.loads(value_json)
        except ValueError:
            return value_json
        if isinstance(text, str):
            return text
    return pretty_json(value_json)


def duration_text(delta: timedelta | None) -> str:
    """A short human duration: "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min"."""
    if delta is None:
        return ""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "context", "added", "removed" or "gap"
    old: int | None
    new: int | None
    text: str

    @property
    def sign(self) -> str:
        return {"added": "+", "removed": "\u2212", "context": " ", "gap": "…"}[self.kind]


def diff_lines(old_text: str, new_text: str, *, context: int = 3) -> list[DiffLine]:
    """Line diff of two texts (difflib), as rows of a table, with `context` lines of context."""
    old, new = old_text.splitlines(), new_text.splitlines()
    rows: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for index, group in enumerate(matcher.get_grouped_opcodes(context)):
        if index:
            rows.append(DiffLine("gap", None, None, ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [
                    DiffLine("context", i + 1, j + 1, old[i])
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                ]
                continue
            if tag in ("replace", "delete"):
                rows += [DiffLine("removed", i + 1, None, old[i]) for i in range(i1, i2)]
            if tag in ("replace", "insert"):
                rows += [DiffLine("added", None, j + 1, new[j]) for j in range(j1, j2)]
    return rows
