"""The one typed accessor for `STATEHOUSE_*` settings, read when asked, never at import."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from statehouse.errors import ValidationError
from statehouse.validation import check_entry_point


@dataclass(frozen=True, slots=True)
class StatehouseSettings:
    max_value_bytes: int
    lease_seconds: float
    worker_concurrency: int
    resume_max_attempts: int
    resume_backoff_seconds: float
    resume_entry_points: tuple[tuple[str, str], ...]
    resume_timeout_seconds: float
    resume_timeouts: tuple[tuple[str, float], ...]

    def timeout_for(self, entry_point: str) -> float:
        """The run time limit of `entry_point`: its own, else STATEHOUSE_RESUME_TIMEOUT_SECONDS."""
        return dict(self.resume_timeouts).get(entry_point, self.resume_timeout_seconds)


@functools.cache
def get_settings() -> StatehouseSettings:
    """The settings, read once (a commit asks on every call); tests that override a
    STATEHOUSE_* setting clear the cache through `setting_changed` (see apps.py)."""
    return StatehouseSettings(
        max_value_bytes=int(getattr(settings, "STATEHOUSE_MAX_VALUE_BYTES", 1024 * 1024)),
        lease_seconds=float(getattr(settings, "STATEHOUSE_LEASE_SECONDS", 30.0)),
        worker_concurrency=int(getattr(settings, "STATEHOUSE_WORKER_CONCURRENCY", 4)),
        resume_max_attempts=int(getattr(settings, "STATEHOUSE_RESUME_MAX_ATTEMPTS", 3)),
        resume_backoff_seconds=float(getattr(settings, "STATEHOUSE_RESUME_BACKOFF_SECONDS", 5.0)),
        resume_entry_points=_entry_point_patterns(
            getattr(settings, "STATEHOUSE_RESUME_ENTRY_POINTS", ())
        ),
        resume_timeout_seconds=float(
            getattr(settings, "STATEHOUSE_RESUME_TIMEOUT_SECONDS", 3600.0)
        ),
        resume_timeouts=_timeouts(getattr(settings, "STATEHOUSE_RESUME_TIMEOUTS", ())),
    )


def _entry_point_patterns(raw: object) -> tuple[tuple[str, str], ...]:
    """Accept a mapping {pattern: dotted} or a list of "pattern=dotted" strings."""
    name = "STATEHOUSE_RESUME_ENTRY_POINTS"
    items = raw.items() if isinstance(raw, dict) else [_split(name, entry) for entry in raw]  # type: ignore[union-attr]
    return tuple((str(pattern), _entry_point(name, target)) for pattern, target in items)


def _timeouts(raw: object) -> tuple[tuple[str, float], ...]:
    """Accept a mapping {dotted: seconds} or a list of "dotted=seconds" strings."""
    name = "STATEHOUSE_RESUME_TIMEOUTS"
    items = raw.items() if isinstance(raw, dict) else [_split(name, entry) for entry in raw]  # type: ignore[union-attr]
    timeouts = []
    for target, seconds in items:
        try:
            value = float(seconds)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise ImproperlyConfigured(f"{name}: {seconds!r} for {target!r} is not seconds > 0")
        timeouts.append((_entry_point(name, target), value))
    return tuple(timeouts)


def _entry_point(name: str, target: object) -> str:
    try:
        return check_entry_point(str(target).strip())
    except ValidationError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def _split(name: str, entry: object) -> tuple[str, str]:
    left, sep, right = str(entry).partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ImproperlyConfigured(
            f"{name} entry {entry!r} is not 'pattern=package.module:function'"
            if name == "STATEHOUSE_RESUME_ENTRY_POINTS"
            else f"{name} entry {entry!r} is not 'package.module:function=seconds'"
        )
    return left.strip(), right.strip()
