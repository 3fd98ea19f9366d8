"""The overview's SVG bar charts: counts per hour, drawn as rectangles by the template."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncHour


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    caption: str
    bars: list[Bar]
    total: int
    peak: int
    start: datetime
    end: datetime
    width: int = 480
    height: int = 120


def hourly_chart(
    title: str, caption: str, rows: Iterable[tuple[datetime, int]], since: datetime, hours: int
) -> Chart:
    buckets = [0] * hours
    for hour, n in rows:
        if hour is None:
            continue
        if hour.tzinfo is None:
            hour = hour.replace(tzinfo=UTC)
        index = int((hour - since).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index] += n
    peak = max(buckets) or 1
    width, height, gap = 480, 120, 2
    slot = width / hours
    bars = []
    for index, n in enumerate(buckets):
        h = round(n / peak * (height - 4), 1) if n else 0.0
        start = since + timedelta(hours=index)
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 1),
                y=round(height - h, 1),
                width=round(slot - gap, 1),
                height=h,
                count=n,
                label=f"{start:%H:00} to {start + timedelta(hours=1):%H:00} UTC: {n}",
            )
        )
    return Chart(
        title=title,
        caption=caption,
        bars=bars,
        total=sum(buckets),
        peak=max(buckets),
        start=since,
        end=since + timedelta(hours=hours),
    )


def per_hour(queryset: Any, field_name: str, since: datetime) -> list[tuple[datetime, int]]:
    return list(
        queryset.filter(**{f"{field_name}__gte": since})
        .annotate(hour=TruncHour(field_name))
        .order_by()
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
