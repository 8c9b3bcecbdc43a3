"""Report periods: a month (``2026-10``) or a quarter (``2026-Q4``), bounded in the province's local time.

A month in Vietnam starts at 00:00 local time (UTC+7), so the store is asked for [start, end) in UTC instants that
correspond to local midnight. Charts over a month bucket by day, over a quarter by week.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

from soc import ecs

_MONTH = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})$")
_QUARTER = re.compile(r"^(?P<year>\d{4})-[Qq](?P<quarter>[1-4])$")


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    label: str  # "2026-10" or "2026-Q4"
    kind: str  # month | quarter
    first_day: date  # local
    end_day: date  # local, exclusive
    zone: tzinfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, datetime.min.time(), self.zone)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_day, datetime.min.time(), self.zone)

    @property
    def start_iso(self) -> str:
        return ecs.utc_iso(self.start)

    @property
    def end_iso(self) -> str:
        return ecs.utc_iso(self.end)

    @property
    def bucket_days(self) -> int:
        return 1 if self.kind == "month" else 7

    def buckets(self) -> list[date]:
        """The first local day of each chart bucket."""
        out, day = [], self.first_day
        while day < self.end_day:
            out.append(day)
            day += timedelta(days=self.bucket_days)
        return out

    def bucket_of(self, moment: datetime) -> int:
        local = moment.astimezone(self.zone).date()
        return (local - self.first_day).days // self.bucket_days

    def hours(self) -> int:
        return int((self.end - self.start).total_seconds() // 3600)

    def contains(self, iso: str | None) -> bool:
        return bool(iso) and self.start_iso <= _utc(iso) < self.end_iso


def _utc(iso: str) -> str:
    return ecs.utc_iso(ecs.parse_time(iso))


def _month_end(year: int, month: int) -> date:
    return date(year + (month == 12), month % 12 + 1, 1)


def parse_period(text: str, zone: tzinfo) -> Period:
    text = text.strip()
    if m := _MONTH.match(text):
        year, month = int(m["year"]), int(m["month"])
        if not 1 <= month <= 12:
            raise PeriodError(f"{text!r}: the month must be 01 to 12")
        return Period(text, "month", date(year, month, 1), _month_end(year, month), zone)
    if m := _QUARTER.match(text):
        year, quarter = int(m["year"]), int(m["quarter"])
        first_month = 3 * (quarter - 1) + 1
        return Period(f"{year}-Q{quarter}", "quarter", date(year, first_month, 1),
                      _month_end(year, first_month + 2), zone)
    raise PeriodError(f"{text!r} is not a period: use a month (2026-10) or a quarter (2026-Q4)")


def previous_month(today: date, zone: tzinfo) -> Period:
    first = today.replace(day=1)
    last_month = first - timedelta(days=1)
    return parse_period(f"{last_month.year:04d}-{last_month.month:02d}", zone)


def previous_quarter(today: date, zone: tzinfo) -> Period:
    quarter = (today.month - 1) // 3  # the current quarter, 0-based; the previous one is quarter - 1
    year = today.year if quarter > 0 else today.year - 1
    return parse_period(f"{year}-Q{quarter if quarter > 0 else 4}", zone)


def now_local(zone: tzinfo) -> datetime:
    return datetime.now(timezone.utc).astimezone(zone)
