"""Time windows of the pages (15m, 1h, 24h, 7d, 30d or a custom range) and their chart
buckets. Pure: the caller passes `now`; every time is naive UTC, as the mirror stores it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PRESETS: dict[str, dt.timedelta] = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DEFAULT = "24h"
CUSTOM = "custom"
# A custom range reads at most this much of the mirror (the server's cost grows with it).
MAX_CUSTOM = dt.timedelta(days=92)
# Bucket sizes a chart may use: the smallest that gives at most MAX_BUCKETS bars.
_BUCKETS = [dt.timedelta(seconds=s) for s in
            (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
             7 * 86400)]
MAX_BUCKETS = 48


class WindowError(ValueError):
    """A window the user asked for that cannot be served; the message says why."""


@dataclass(frozen=True)
class Window:
    key: str  # a preset name or "custom"
    start: dt.datetime
    end: dt.datetime
    bucket: dt.timedelta

    @property
    def buckets(self) -> int:
        return max(1, -(-(self.end - self.start) // self.bucket))

    def bucket_start(self, index: int) -> dt.datetime:
        return self.start + index * self.bucket

    def label(self) -> str:
        if self.key != CUSTOM:
            return f"last {self.key}"
        return f"{format_time(self.start)} to {format_time(self.end)} UTC"


def bucket_for(span: dt.timedelta) -> dt.timedelta:
    for size in _BUCKETS:
        if span / size <= MAX_BUCKETS:
            return size
    return _BUCKETS[-1]


def parse_window(key: str | None, start: str | None, end: str | None,
                 now: dt.datetime) -> Window:
    """The window named by the query parameters `window`, `from` and `to`."""
    key = key or DEFAULT
    if key in PRESETS:
        span = PRESETS[key]
        return Window(key, now - span, now, bucket_for(span))
    if key != CUSTOM:
        raise WindowError(f"unknown window {key!r}: choose one of "
                          f"{', '.join(PRESETS)} or custom")
    begin, finish = parse_time(start, "from"), parse_time(end, "to") if end else now
    if finish <= begin:
        raise WindowError("the window's end must be after its start")
    if finish - begin > MAX_CUSTOM:
        raise WindowError(f"a custom window spans at most {MAX_CUSTOM.days} days")
    return Window(CUSTOM, begin, finish, bucket_for(finish - begin))


def parse_time(value: str | None, name: str) -> dt.datetime:
    """`YYYY-MM-DDTHH:MM` (what an HTML datetime-local input sends) or a full ISO 8601
    time; a time with an offset is converted to naive UTC."""
    if not value:
        raise WindowError(f"a custom window needs '{name}'")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise WindowError(f"'{name}' is not a time (use YYYY-MM-DDTHH:MM, UTC)") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def format_time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def format_age(seconds: float) -> str:
    """A duration for people: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
