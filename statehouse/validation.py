"""Validation of ids and values, done when an operation is staged (docs/contract.md §2)."""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from statehouse.errors import ValidationError

MAX_ID_LENGTH = 255
# The column that keeps an agent's resume entry point holds this many characters; the
# check below runs before any database sees the value, so both refuse it alike.
MAX_ENTRY_POINT_LENGTH = 255
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENTRY_POINT = re.compile(rf"{_NAME}(?:\.{_NAME})*:{_NAME}")


def check_identifier(kind: str, value: object) -> str:
    """Return `value` if it is a valid namespace, agent id or key; raise ValidationError."""
    if not isinstance(value, str):
        raise ValidationError(f"{kind} must be a string, not {type(value).__name__}")
    if not value:
        raise ValidationError(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(
            f"{kind} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}: {value[:40]!r}…"
        )
    if value.isascii() and value.isprintable():
        return value  # no ASCII character but the control ones is Cc (nor any Cs)
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValidationError(
                f"{kind} {value!r} contains the control character {char!r}"
                if unicodedata.category(char) == "Cc"
                else f"{kind} {value!r} contains a lone surrogate"
            )
    return value


def check_prefix(value: object) -> str:
    """Return `value` if it can start a key (empty, or what a key may hold); else raise."""
    if not isinstance(value, str):
        raise ValidationError(f"prefix must be a string, not {type(value).__name__}")
    return check_identifier("prefix", value) if value else value


def encode_value(value: Any, *, key: str, max_bytes: int) -> str:
    """Return the compact JSON text of `value`, or raise ValidationError naming `key`."""
    try:
        _check_json(value, 0)
    except _NotJson as exc:
        path = "value" + "".join(reversed(exc.path))
        raise ValidationError(f"value of key {key!r} " + exc.problem(path)) from None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ValidationError(f"value of key {key!r} is not JSON: {exc}") from None
    if size > max_bytes:
        raise ValidationError(
            f"value of key {key!r} is {size} bytes of JSON; the limit is {max_bytes} bytes"
        )
    return text


_MAX_DEPTH = 200


class _NotJson(Exception):
    """What `_check_json` found, and where: `path` collects the steps from the offending
    element up (each container adds its own on the way out), so a value that is fine
    costs no path strings at all."""

    def __init__(self, problem: Callable[[str], str]) -> None:
        self.problem = problem  # the message after "value of key …", given the path
        self.path: list[str] = []


def _non_string_key(name: object) -> _NotJson:
    return _NotJson(lambda path: f"has a non-string object key {name!r} at {path}")


def _check_json(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _NotJson(lambda path: f"nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(lambda path: f"has {value} at {path}; JSON has no NaN/Infinity")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            try:
                _check_json(item, depth + 1)
            except _NotJson as exc:
                exc.path.append(f"[{index}]")
                raise
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise _non_string_key(name)
            try:
                _check_json(item, depth + 1)
            except _NotJson as exc:
                exc.path.append(f"[{name!r}]")
                raise
        return
    hint = " (use a list)" if isinstance(value, (tuple, set, frozenset)) else ""
    raise _NotJson(lambda path: f"has a {type(value).__name__} at {path}, which is not JSON{hint}")


def check_expected_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"expected_version must be None or an integer >= 0, not {value!r}")
    return value


def check_entry_point(entry_point: object) -> str:
    """Return `entry_point` if it is "package.module:function"; raise ValidationError.

    The one check of every way in (the client, `import_agent`, the settings, the admin).
    The whole string must match (a trailing newline is not allowed), and nothing is
    imported: the target's module runs only in the resume run itself (docs/client.md).
    """
    if not isinstance(entry_point, str):
        raise ValidationError(
            f"resume entry point must be a string, not {type(entry_point).__name__}"
        )
    if len(entry_point) > MAX_ENTRY_POINT_LENGTH:
        raise ValidationError(
            f"resume entry point is {len(entry_point)} characters long; the limit is "
            f"{MAX_ENTRY_POINT_LENGTH}: {entry_point[:40]!r}…"
        )
    if not _ENTRY_POINT.fullmatch(entry_point):
        raise ValidationError(
            f"resume entry point {entry_point!r} is not of the form 'package.module:function'"
        )
    return entry_point


# Only ASCII digits make a step number ("step:٣" is a plain key); 0 <= n < 2**31, the
# range the step projection stores. See docs/client.md, steps.
STEP_KEY = re.compile(r"step[:/]([0-9]+)")
MAX_STEP_NUMBER = 2**31 - 1


def check_step_key(key: str) -> str:
    """Return `key`, or raise ValidationError if it names a step number the store cannot
    hold (checked at staging, so nothing is written)."""
    match = STEP_KEY.fullmatch(key)
    if match and int(match.group(1)) > MAX_STEP_NUMBER:
        raise ValidationError(
            f"key {key!r} names step {int(match.group(1))}; step numbers are 0 to {MAX_STEP_NUMBER}"
        )
    return key


# LLM metadata of a step (docs/contract.md §3): the fields of a step's value, and the
# largest token count a step may record (the columns are 64-bit).
LLM_FIELDS = ("model", "tokens_in", "tokens_out", "cost")
MAX_TOKENS = 2**63 - 1


def check_llm_metadata(value: Any, *, where: str) -> dict[str, Any]:
    """The LLM metadata present in a step's value (a dict), checked; ValidationError
    naming the field and `where` (the step) when one has the wrong type.

    `model` is a non-empty name of at most 255 characters; `tokens_in` and `tokens_out`
    are integers from 0; `cost` is a finite number from 0 (in the currency the agent
    uses). A field that is absent, or None, is not recorded."""
    if not isinstance(value, dict):
        return {}
    found: dict[str, Any] = {}
    for name in LLM_FIELDS:
        field = value.get(name)
        if field is None:
            continue
        if name == "model":
            if not isinstance(field, str) or not field:
                raise ValidationError(f"{where}: model must be a non-empty string, not {field!r}")
            check_identifier(f"{where}: model", field)
        elif name in ("tokens_in", "tokens_out"):
            if isinstance(field, bool) or not isinstance(field, int):
                raise ValidationError(f"{where}: {name} must be an integer, not {field!r}")
            if not 0 <= field <= MAX_TOKENS:
                raise ValidationError(
                    f"{where}: {name} must be from 0 to {MAX_TOKENS}, not {field}"
                )
        else:
            if isinstance(field, bool) or not isinstance(field, int | float):
                raise ValidationError(f"{where}: cost must be a number, not {field!r}")
            if not math.isfinite(field) or field < 0:
                raise ValidationError(f"{where}: cost must be a finite number from 0, not {field}")
            field = float(field)
        found[name] = field
    return found


def env_seconds(name: str) -> float | None:
    """A client setting from the environment: a positive number of seconds, or None when
    the variable is unset or empty; anything else is a ValidationError naming it."""
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not seconds > 0 or math.isinf(seconds):
        raise ValidationError(f"{name} must be a positive number of seconds, not {raw!r}")
    return seconds
