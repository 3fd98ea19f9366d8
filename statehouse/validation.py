"""Validation of ids and values, done when an operation is staged (docs/contract.md §2)."""

from __future__ import annotations

import json
import math
import re
import unicodedata
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
    _check_json(value, key=key, path="value", depth=0)
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


def _check_json(value: Any, *, key: str, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValidationError(f"value of key {key!r} nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"value of key {key!r} has {value} at {path}; JSON has no NaN/Infinity"
            )
        return
    if isinstance(value, str):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, key=key, path=f"{path}[{index}]", depth=depth + 1)
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise ValidationError(
                    f"value of key {key!r} has a non-string object key {name!r} at {path}"
                )
            _check_json(item, key=key, path=f"{path}[{name!r}]", depth=depth + 1)
        return
    hint = " (use a list)" if isinstance(value, (tuple, set, frozenset)) else ""
    raise ValidationError(
        f"value of key {key!r} has a {type(value).__name__} at {path}, which is not JSON{hint}"
    )


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
