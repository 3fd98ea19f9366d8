"""The one typed accessor for `STATEHOUSE_*` settings, read when asked, never at import."""

from __future__ import annotations

import functools
import ipaddress
import os
import tempfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from statehouse.errors import ValidationError
from statehouse.validation import check_entry_point


@dataclass(frozen=True, slots=True)
class StatehouseSettings:
    max_value_bytes: int
    max_transaction_operations: int
    lease_seconds: float
    worker_concurrency: int
    resume_max_attempts: int
    resume_backoff_seconds: float
    resume_entry_points: tuple[tuple[str, str], ...]
    worker_start: str  # "fork" or "spawn"
    pg_prepare: bool
    pg_commit_function: bool
    resume_timeout_seconds: float
    resume_timeouts: tuple[tuple[str, float], ...]
    liveness_handles: bool
    liveness_dir: str
    detect_interval: float
    auto_resume: bool
    metrics_token: str
    retention_finished_days: float | None
    retention_drop_days: float | None
    retention_interval_seconds: float
    pause_timeout_seconds: float
    metrics_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    api_rate_limit: int  # requests a minute per token (docs/api.md)
    behind_proxy: bool

    def timeout_for(self, entry_point: str) -> float:
        """The run time limit of `entry_point`: its own, else STATEHOUSE_RESUME_TIMEOUT_SECONDS."""
        return dict(self.resume_timeouts).get(entry_point, self.resume_timeout_seconds)


@functools.cache
def get_settings() -> StatehouseSettings:
    """The settings, read once (a commit asks on every call); tests that override a
    STATEHOUSE_* setting clear the cache through `setting_changed` (see apps.py).

    statehouse_site/settings.py parses the environment; this checks the values again, so
    that a deployment's own settings module gets the same clear errors."""
    return StatehouseSettings(
        max_value_bytes=int(_number("STATEHOUSE_MAX_VALUE_BYTES", 1024 * 1024, 1, integer=True)),
        max_transaction_operations=int(
            _number("STATEHOUSE_MAX_TRANSACTION_OPERATIONS", 100_000, 1, integer=True)
        ),
        lease_seconds=_number("STATEHOUSE_LEASE_SECONDS", 30.0, 0.5),
        worker_concurrency=int(_number("STATEHOUSE_WORKER_CONCURRENCY", 4, 1, integer=True)),
        resume_max_attempts=int(_number("STATEHOUSE_RESUME_MAX_ATTEMPTS", 3, 1, integer=True)),
        resume_backoff_seconds=_number("STATEHOUSE_RESUME_BACKOFF_SECONDS", 5.0, 0.0),
        resume_entry_points=_entry_point_patterns(
            getattr(settings, "STATEHOUSE_RESUME_ENTRY_POINTS", ())
        ),
        worker_start=_choice("STATEHOUSE_WORKER_START", "fork", ("fork", "spawn")),
        pg_prepare=_flag("STATEHOUSE_PG_PREPARE", True),
        pg_commit_function=_flag("STATEHOUSE_PG_COMMIT_FUNCTION", True),
        resume_timeout_seconds=_number("STATEHOUSE_RESUME_TIMEOUT_SECONDS", 3600.0, 0.1),
        resume_timeouts=_timeouts(getattr(settings, "STATEHOUSE_RESUME_TIMEOUTS", ())),
        liveness_handles=_flag("STATEHOUSE_LIVENESS_HANDLES", True),
        liveness_dir=_path("STATEHOUSE_LIVENESS_DIR"),
        detect_interval=_number("STATEHOUSE_DETECT_INTERVAL", 0.5, 0.05),
        auto_resume=_flag("STATEHOUSE_AUTO_RESUME", False),
        pause_timeout_seconds=_number("STATEHOUSE_PAUSE_TIMEOUT_SECONDS", 3600.0, 0.0),
        metrics_token=_metrics_token(getattr(settings, "STATEHOUSE_METRICS_TOKEN", "")),
        retention_finished_days=_retention_days()[0],
        retention_drop_days=_retention_days()[1],
        retention_interval_seconds=_number("STATEHOUSE_RETENTION_INTERVAL_SECONDS", 3600.0, 0.0),
        metrics_networks=_networks(
            "STATEHOUSE_METRICS_NETWORKS",
            getattr(settings, "STATEHOUSE_METRICS_NETWORKS", DEFAULT_METRICS_NETWORKS),
        ),
        api_rate_limit=int(
            _number("STATEHOUSE_API_RATE_LIMIT", DEFAULT_API_RATE_LIMIT, 1, integer=True)
        ),
        behind_proxy=_flag("STATEHOUSE_BEHIND_PROXY", False),
    )


DEFAULT_API_RATE_LIMIT = 120_000  # requests a minute per token: 2,000 a second


def _retention_days() -> tuple[float | None, float | None]:
    """The retention policy (docs/retention.md): days of full history kept for finished
    agents, and days before finished agents are dropped (None: never)."""
    finished = _optional_days("STATEHOUSE_RETENTION_FINISHED_DAYS")
    drop = _optional_days("STATEHOUSE_RETENTION_DROP_DAYS")
    if finished is not None and drop is not None and drop <= finished:
        raise ImproperlyConfigured(
            f"STATEHOUSE_RETENTION_DROP_DAYS={drop:g} must be more than "
            f"STATEHOUSE_RETENTION_FINISHED_DAYS={finished:g}: an agent's history is compacted "
            "before the agent is dropped"
        )
    return finished, drop


def _optional_days(name: str) -> float | None:
    value = getattr(settings, name, None)
    if value is None:
        return None
    return _number(name, 0.0, 0.01)


# `/metrics` answers the host itself unless told otherwise (docs/metrics.md).
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128")
METRICS_TOKEN_MIN_LENGTH = 16


def _metrics_token(raw: object) -> str:
    name = "STATEHOUSE_METRICS_TOKEN"
    if not isinstance(raw, str):
        raise ImproperlyConfigured(f"{name} is not a string")
    if raw and (
        len(raw) < METRICS_TOKEN_MIN_LENGTH
        or not raw.isascii()
        or not raw.isprintable()
        or any(c.isspace() for c in raw)
    ):
        raise ImproperlyConfigured(
            f"{name} must be at least {METRICS_TOKEN_MIN_LENGTH} printable ASCII characters "
            "without spaces (for example: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return raw


def _networks(name: str, raw: object) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of networks in CIDR notation (`10.0.0.0/8`; a bare address is one host)."""
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a list of networks such as 10.0.0.0/8")
    networks = []
    for entry in raw:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=True))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not a network: {exc}") from None
    return tuple(networks)


def _number(name: str, default: float, minimum: float, *, integer: bool = False) -> float:
    value = getattr(settings, name, default)
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a number"
        raise ImproperlyConfigured(f"{name}={value!r} is not {expected}")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}")
    return float(value)


def _flag(name: str, default: bool) -> bool:
    value = getattr(settings, name, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{name}={value!r} is not a boolean")
    return value


def _path(name: str) -> str:
    """A directory: absolute, or (unset) `liveness` under the data directory."""
    value = getattr(settings, name, None)
    if value is None:
        data_dir = getattr(settings, "DATA_DIR", None)
        return os.path.join(str(data_dir) if data_dir else tempfile.gettempdir(), "liveness")
    if not isinstance(value, str | os.PathLike) or not os.path.isabs(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not an absolute path")
    return str(value)


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = getattr(settings, name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: use {' or '.join(choices)}")
    return str(value)


def _entry_point_patterns(raw: object) -> tuple[tuple[str, str], ...]:
    """Accept a mapping {pattern: dotted} or a list of "pattern=dotted" strings."""
    if not isinstance(raw, dict | list | tuple):
        raise ImproperlyConfigured(
            f"STATEHOUSE_RESUME_ENTRY_POINTS={raw!r} is not a list of "
            "'pattern=package.module:function' entries"
        )
    name = "STATEHOUSE_RESUME_ENTRY_POINTS"
    items = raw.items() if isinstance(raw, dict) else [_split(name, entry) for entry in raw]
    return tuple((str(pattern), _entry_point(name, target)) for pattern, target in items)


def _timeouts(raw: object) -> tuple[tuple[str, float], ...]:
    """Accept a mapping {dotted: seconds} or a list of "dotted=seconds" strings."""
    name = "STATEHOUSE_RESUME_TIMEOUTS"
    if not isinstance(raw, dict | list | tuple):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a list of 'dotted=seconds' entries")
    items = raw.items() if isinstance(raw, dict) else [_split(name, entry) for entry in raw]
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
