"""Readable renderings of the store's values and history (the original SDK's module).

Pure functions: no I/O, no client. `replay_pretty` and the command line print with them.

    for line in client.replay_pretty("a1"):
        print(line)
    # 2026-12-01T21:00:00.123Z a1 WRITE step:0 v1 {"status": "done", "result": 42}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from statehouse.types import Operation, ReplayEvent

__all__ = [
    "event_lines",
    "format_event_json",
    "format_event_pretty",
    "format_event_verbose",
    "format_key",
    "format_operation",
    "format_ts",
    "format_value_summary",
]

SUMMARY_WIDTH = 60


def format_ts(moment: datetime | int | float) -> str:
    """ISO 8601 in UTC to the millisecond, e.g. "2026-12-01T21:00:00.123Z".

    A number is read as seconds since the Unix epoch.
    """
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_key(key: str, width: int | None = None) -> str:
    """The key as shown in a line: padded to `width`, or cut with "…" past it."""
    if width is None:
        return key
    return key.ljust(width) if len(key) <= width else key[: width - 1] + "…"


def format_value_summary(value: Any, max_length: int = SUMMARY_WIDTH) -> str:
    """Compact JSON of `value`, cut to `max_length` characters with "..."."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= max_length else text[: max(0, max_length - 3)] + "..."


def format_operation(event: ReplayEvent, op: Operation, *, verbose: bool = False) -> str:
    """One line for one operation: time, agent, WRITE/DEL, key, version, value."""
    parts = [format_ts(event.committed_at), event.agent_id, f"{op.name:<5}", op.key]
    parts.append(f"v{op.version}")
    if verbose:
        parts += [f"ts={event.commit_ts}", f"txn={event.txn_id}"]
    if not op.is_delete:
        parts.append(
            json.dumps(op.value, ensure_ascii=False) if verbose else format_value_summary(op.value)
        )
    return " ".join(parts)


def format_event_pretty(event: ReplayEvent) -> str:
    """One short line per operation of the event (values summarized)."""
    return "\n".join(format_operation(event, op) for op in event.operations)


def format_event_verbose(event: ReplayEvent) -> str:
    """One line per operation with the whole value, the commit_ts and the txn_id."""
    return "\n".join(format_operation(event, op, verbose=True) for op in event.operations)


def format_event_json(event: ReplayEvent) -> str:
    """The event as one line of JSON (`ReplayEvent.to_dict()`)."""
    return json.dumps(event.to_dict(), ensure_ascii=False)


def event_lines(event: ReplayEvent, *, verbose: bool = False) -> list[str]:
    """The lines `replay_pretty` yields for one event (pretty, or verbose)."""
    render = format_event_verbose if verbose else format_event_pretty
    return render(event).splitlines()
