"""A per-token rate limit that holds across processes and hosts (docs/api.md).

A fixed one-minute window per token, counted in the token's own row (`window_start`,
`window_count`). Each process adds its requests to that shared counter in batches — at
least once a second, and after every `limit // 50` requests (every request for small
limits) — and reads everyone's count back from the row it authenticates with, so a
request costs no extra query until its process's batch is due. The overshoot is at most
one batch per process per window: exact for small limits, within 2 % for large ones.
The same flush records the token's last use (to within a second).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from statehouse_agents.conf import get_settings
from statehouse_agents.models import ApiToken

from statehouse.errors import RateLimitedError

FLUSH_SECONDS = 1.0


@dataclass
class _Window:
    start: datetime
    known: int  # everyone's count as last read from the database
    unsynced: int = 0  # this process's requests not yet added to it
    flushed_at: float = 0.0


def default_limit() -> int:
    return get_settings().api_rate_limit


class RateLimiter:
    def __init__(self) -> None:
        self._windows: dict[int, _Window] = {}
        self._lock = threading.Lock()

    def hit(self, token: ApiToken) -> None:
        """Count one request of `token`; raise RateLimitedError past its limit."""
        limit = token.rate_limit or default_limit()
        now = timezone.now()
        start = now.replace(second=0, microsecond=0)
        shared = token.window_count if token.window_start == start else 0
        with self._lock:
            window = self._windows.get(token.pk)
            if window is None or window.start != start:
                window = self._windows[token.pk] = _Window(start, shared)
            window.known = max(window.known, shared)
            window.unsynced += 1
            due = window.unsynced >= max(1, limit // 50) or (
                time.monotonic() - window.flushed_at >= FLUSH_SECONDS
            )
            if due:
                count, window.unsynced = window.unsynced, 0
                window.flushed_at = time.monotonic()
        if due:
            window.known = _flush(token.pk, start, count, now)
        if window.known + window.unsynced > limit:
            retry = math.ceil((start + timedelta(minutes=1) - now).total_seconds())
            raise RateLimitedError(
                f"API token {token.prefix}… made more than {limit} requests this minute; "
                f"retry in {retry} s",
            )

    def forget(self) -> None:
        with self._lock:
            self._windows.clear()


def _flush(pk: int, start: datetime, count: int, now: datetime) -> int:
    """Add `count` requests to the token's shared window; return the window's total."""
    with transaction.atomic():
        ApiToken.objects.filter(pk=pk).update(
            window_count=Case(
                When(window_start=start, then=F("window_count") + count), default=Value(count)
            ),
            window_start=start,
            last_used_at=now,
        )
        total = ApiToken.objects.filter(pk=pk).values_list("window_count", flat=True).first()
    return int(total or 0)


limiter = RateLimiter()
