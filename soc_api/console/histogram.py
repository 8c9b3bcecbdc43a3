"""A histogram over time of the events an event search matches, drawn on the server as SVG (no script, nothing for
the Content Security Policy to refuse).

Each bar is counted by the store (``Store.aggregate``: a date histogram on the engines, SQL on SQLite) over the
caller's scope with the same filters and free text as the results, so every bar is exact however many events match.
If the store cannot aggregate that query, each bar is counted with the search itself instead, limited to
:data:`BUCKET_CAP` events: a bar at the cap is drawn and labelled "at least" (``capped``), and the page says so.

Buckets have a "round" width (a minute … a month) chosen so the range needs at most :data:`MAX_BUCKETS` of them, and
are aligned in the user's time zone (a day bucket starts at local midnight); the first and last are cut to the
range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Callable

from soc import ecs

MAX_BUCKETS = 30
BUCKET_CAP = 200  # events counted per bucket at most (so at most MAX_BUCKETS × BUCKET_CAP read per histogram)
WIDTHS = tuple(timedelta(seconds=s) for s in (
    60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400,
    14 * 86400, 30 * 86400, 90 * 86400, 365 * 86400))
# The drawing (SVG user units; the SVG scales to the page's width).
WIDTH, HEIGHT = 1200, 160
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 14, 28
BAR = "#0b5394"  # the console's link colour: 7.7:1 on white
CAPPED = "#7a3e00"  # a bar at the cap: a darker, warmer colour (and a "+" on top; colour is not the only sign)
AXIS = "#4a5560"


@dataclass
class Bucket:
    start: datetime
    end: datetime
    count: int = 0
    capped: bool = False  # the count reached the cap: at least this many

    @property
    def start_iso(self) -> str:
        return ecs.utc_iso(self.start)

    @property
    def end_iso(self) -> str:
        return ecs.utc_iso(self.end)


@dataclass
class Histogram:
    buckets: list[Bucket]
    width: timedelta
    cap: int  # with exact counts: 0
    exact: bool = False  # counted by the store (every bar exact), not by searching up to the cap
    svg_bars: list[dict] = field(default_factory=list)  # set by layout(): each bar's place in the drawing
    ticks: list[dict] = field(default_factory=list)  # set by layout(): the times written under the bars
    top: int = 0  # set by layout(): the count at the top of the y axis
    geometry: dict = field(default_factory=dict)  # set by layout(): the drawing's size and axes

    @property
    def total(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def capped(self) -> bool:
        return any(b.capped for b in self.buckets)

    @property
    def peak(self) -> int:
        return max((b.count for b in self.buckets), default=0)

    @property
    def empty(self) -> bool:
        return self.total == 0


def _aligned(start: datetime, width: timedelta, zone: tzinfo) -> datetime:
    """The start of the bucket of ``width`` that holds ``start``, counted from midnight in ``zone`` (a week and
    longer: from ``start`` itself, there is no calendar to align to)."""
    if width >= timedelta(days=7):
        return start
    offset = start.astimezone(zone).utcoffset() or timedelta(0)
    local = start + offset - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return start - (local % width)


def bucket_width(start: datetime, end: datetime, zone: tzinfo = timezone.utc,
                 max_buckets: int = MAX_BUCKETS) -> timedelta:
    """The smallest round width whose aligned buckets cover [start, end) in at most ``max_buckets``."""
    for width in WIDTHS:
        if -(-(end - _aligned(start, width, zone)) // width) <= max_buckets:
            return width
    return WIDTHS[-1] * (int((end - start) / WIDTHS[-1] / max_buckets) + 1)


def edges(start: datetime, end: datetime, zone: tzinfo, max_buckets: int = MAX_BUCKETS
          ) -> tuple[list[tuple[datetime, datetime]], timedelta]:
    """The buckets of [start, end): (from, to) pairs aligned to the width in ``zone`` (a day bucket starts at local
    midnight), the first and last cut to the range."""
    if end <= start:
        return [], timedelta(0)
    width = bucket_width(start, end, zone, max_buckets)
    out = []
    moment = _aligned(start, width, zone)
    while moment < end and len(out) < max_buckets:
        following = moment + width
        out.append((max(moment, start), min(following, end)))
        moment = following
    return out, width


def aligned_start(start: datetime, width: timedelta, zone: tzinfo) -> datetime:
    """Where the first bucket of ``width`` for a range from ``start`` begins (before the range cuts it)."""
    return _aligned(start, width, zone)


def from_counts(buckets: list[tuple[datetime, datetime]], width: timedelta, first: datetime,
                counts: dict[str, int]) -> Histogram:
    """The buckets with the store's exact counts, ``counts`` keyed by each aligned bucket's start (ISO 8601 UTC);
    ``first`` is the first bucket's aligned start (the range may cut it)."""
    out = []
    for i, (start, end) in enumerate(buckets):
        out.append(Bucket(start, end, int(counts.get(ecs.utc_iso(first + i * width), 0))))
    return Histogram(out, width, cap=0, exact=True)


def count(buckets: list[tuple[datetime, datetime]], search: Callable[[str, str, int], int], width: timedelta,
          cap: int = BUCKET_CAP) -> Histogram:
    """Count each bucket with ``search(from_iso, to_iso, limit)`` (how many events it found, at most ``limit``)."""
    out = []
    for start, end in buckets:
        found = search(ecs.utc_iso(start), ecs.utc_iso(end), cap)
        out.append(Bucket(start, end, found, found >= cap))
    return Histogram(out, width, cap)


def nice_ceiling(value: int) -> int:
    """A round top for the y axis: 1, 2, 5, 10, 20, 50, … at or above ``value``."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def layout(histogram: Histogram, label: Callable[[datetime], str], ticks: int = 6) -> Histogram:
    """Place the bars and the time labels in the SVG's coordinates (the template draws them)."""
    n = len(histogram.buckets)
    if not n:
        return histogram
    top = nice_ceiling(histogram.peak)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first, last = histogram.buckets[0].start, histogram.buckets[-1].end
    total_seconds = max(1.0, (last - first).total_seconds())

    def x_of(moment: datetime) -> float:
        return LEFT + inner_w * (moment - first).total_seconds() / total_seconds

    bars = []
    for bucket in histogram.buckets:
        x0, x1 = x_of(bucket.start), x_of(bucket.end)
        gap = min(2.0, (x1 - x0) * 0.15)
        height = inner_h * bucket.count / top if bucket.count else 0.0
        bars.append({"x": round(x0 + gap / 2, 2), "w": round(max(0.5, x1 - x0 - gap), 2),
                     "y": round(TOP + inner_h - height, 2), "h": round(height, 2), "bucket": bucket,
                     "fill": CAPPED if bucket.capped else BAR, "mid": round((x0 + x1) / 2, 2)})
    # Times under the bars at whole bucket starts (the first bucket, cut to the range's start, has none).
    whole = histogram.buckets
    if len(whole) > 1 and whole[0].end - whole[0].start < histogram.width:
        whole = whole[1:]
    every = max(1, -(-len(whole) // ticks))
    marks = [{"x": round(x_of(b.start), 2), "text": label(b.start)} for b in whole[::every]
             if x_of(b.start) < WIDTH - RIGHT - 60]
    histogram.svg_bars = bars
    histogram.ticks = marks
    histogram.top = top
    histogram.geometry = {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
                          "bottom": HEIGHT - BOTTOM, "axis": AXIS}
    return histogram


def label_style(width: timedelta) -> str:
    """How the time under a bar is written: hours and minutes for buckets under six hours, the date and time up to a
    day, the date from a day on."""
    return "date" if width >= timedelta(days=1) else ("minute" if width >= timedelta(hours=6) else "clock")
