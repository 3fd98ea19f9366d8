"""The key conventions of docs/contract.md §3: which keys name a task, steps and answer."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from statehouse.steps import STEP_STATUSES
from statehouse.text import one_line
from statehouse.validation import MAX_STEP_NUMBER, STEP_KEY, check_step_key

# Re-exported: the key rule lives in statehouse.validation, the statuses in statehouse.steps.
__all__ = ["MAX_STEP_NUMBER", "STEP_STATUSES", "check_step_key"]

TASK_KEY = "task"
ANSWER_KEY = "answer"
# Statehouse's own convention beside the contract's: writing `failure` marks the agent failed.
FAILURE_KEY = "failure"


class KeyKind(Enum):
    TASK = "task"
    STEP = "step"
    ANSWER = "answer"
    FAILURE = "failure"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class KeyMeaning:
    kind: KeyKind
    step_number: int | None = None

    @property
    def takes_lease(self) -> bool:
        """Writes of these keys mean "this process runs the agent" (docs/contract.md §3)."""
        return self.kind is not KeyKind.OTHER

    @property
    def ends_run(self) -> bool:
        """Writes of these keys finish the agent (completed or failed) and free its lease."""
        return self.kind in (KeyKind.ANSWER, KeyKind.FAILURE)


@functools.lru_cache(maxsize=8192)
def classify(key: str) -> KeyMeaning:
    if key == TASK_KEY:
        return KeyMeaning(KeyKind.TASK)
    if key == ANSWER_KEY:
        return KeyMeaning(KeyKind.ANSWER)
    if key == FAILURE_KEY:
        return KeyMeaning(KeyKind.FAILURE)
    match = STEP_KEY.fullmatch(key)
    if match:
        number = int(match.group(1))
        if number <= MAX_STEP_NUMBER:
            return KeyMeaning(KeyKind.STEP, number)
    return KeyMeaning(KeyKind.OTHER)


def step_status(value: Any) -> str:
    """The step's status as written, or "unknown" for a value without a known one."""
    if isinstance(value, dict):
        status = value.get("status")
        if status in STEP_STATUSES:
            return str(status)
    return "unknown"


def field_json(value: Any, name: str) -> str:
    """JSON text of `value[name]` when present (for the dashboard), else ""."""
    if isinstance(value, dict) and name in value:
        return json.dumps(value[name], ensure_ascii=False)
    return ""


def summarize(value: Any, limit: int = 200) -> str:
    """A one-line human summary of a task value: its `task` text when it has one."""
    if isinstance(value, dict) and isinstance(value.get("task"), str):
        text = value["task"]
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    return one_line(text, limit)
