"""The one typed accessor for `STATEHOUSE_*` settings, read when asked, never at import."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class StatehouseSettings:
    max_value_bytes: int
    max_transaction_operations: int
    lease_seconds: float
    worker_concurrency: int
    resume_max_attempts: int
    resume_backoff_seconds: float
    resume_entry_points: tuple[tuple[str, str], ...]


@functools.cache
def get_settings() -> StatehouseSettings:
    """The settings, read once (a commit asks on every call); tests that override a
    STATEHOUSE_* setting clear the cache through `setting_changed` (see apps.py)."""
    return StatehouseSettings(
        max_value_bytes=int(getattr(settings, "STATEHOUSE_MAX_VALUE_BYTES", 1024 * 1024)),
        max_transaction_operations=int(
            getattr(settings, "STATEHOUSE_MAX_TRANSACTION_OPERATIONS", 100_000)
        ),
        lease_seconds=float(getattr(settings, "STATEHOUSE_LEASE_SECONDS", 30.0)),
        worker_concurrency=int(getattr(settings, "STATEHOUSE_WORKER_CONCURRENCY", 4)),
        resume_max_attempts=int(getattr(settings, "STATEHOUSE_RESUME_MAX_ATTEMPTS", 3)),
        resume_backoff_seconds=float(getattr(settings, "STATEHOUSE_RESUME_BACKOFF_SECONDS", 5.0)),
        resume_entry_points=_entry_point_patterns(
            getattr(settings, "STATEHOUSE_RESUME_ENTRY_POINTS", ())
        ),
    )


def _entry_point_patterns(raw: object) -> tuple[tuple[str, str], ...]:
    """Accept a mapping {pattern: dotted} or a list of "pattern=dotted" strings."""
    items = raw.items() if isinstance(raw, dict) else [_split(entry) for entry in raw]  # type: ignore[union-attr]
    return tuple((str(pattern), str(target)) for pattern, target in items)


def _split(entry: object) -> tuple[str, str]:
    pattern, sep, target = str(entry).partition("=")
    if not sep or not pattern.strip() or not target.strip():
        raise ImproperlyConfigured(
            f"STATEHOUSE_RESUME_ENTRY_POINTS entry {entry!r} is not "
            "'pattern=package.module:function'"
        )
    return pattern.strip(), target.strip()
