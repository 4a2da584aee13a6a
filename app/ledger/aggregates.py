"""Usage reports: totals per tier / model / agent / deployment for today, this week, this month.

Periods are calendar periods in local time: "day" starts at local midnight, "week" on Monday 00:00,
"month" on the 1st at 00:00 (so a report at 09:00 on a Tuesday covers Monday and Tuesday morning).
A request belongs to the period its arrival time (`UsageRecord.ts`) falls in.

`usage_summary` reads the database (call it in a worker thread; `Ledger.summary` does). `LiveCounters`
keeps today's totals per tier in memory so the tray can show them without a query.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal

from app.errors import BadRequest
from app.usage import UsageRecord

Period = Literal["day", "week", "month"]
GroupBy = Literal["tier", "model", "agent", "deployment"]
PERIODS: tuple[str, ...] = ("day", "week", "month")
GROUP_BY: tuple[str, ...] = ("tier", "model", "agent", "deployment")


@dataclass(slots=True)
class UsageRow:
    """Totals for one group over one period. `cost` sums known costs only; `unknown_price` counts the
    requests whose price was unknown (their cost is missing from `cost`)."""

    key: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    saved: float = 0.0
    unknown_price: int = 0
    errors: int = 0  # status "error"
    refused: int = 0  # status "refused" (budget, privacy)
    cache_hits: int = 0
    p50_latency_ms: float | None = None

    def add(self, rec: UsageRecord) -> None:
        self.requests += 1
        self.input_tokens += rec.input_tokens
        self.output_tokens += rec.output_tokens
        self.cache_read_tokens += rec.cache_read_tokens
        self.cache_write_tokens += rec.cache_write_tokens
        self.reasoning_tokens += rec.reasoning_tokens
        self.cost += rec.cost or 0.0
        self.saved += rec.saved or 0.0
        self.unknown_price += 0 if rec.price_known else 1
        self.errors += rec.status == "error"
        self.refused += rec.status == "refused"
        self.cache_hits += bool(rec.cache_hit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- periods
def _local(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now().astimezone()
    if isinstance(now, (int, float)):
        return datetime.fromtimestamp(now).astimezone()
    return now.astimezone() if now.tzinfo is None else now


def period_bounds(period: str, now: datetime | float | None = None) -> tuple[float, float]:
    """(start, end) unix times of the calendar period containing `now`, in local time."""
    local = _local(now)
    day = datetime(local.year, local.month, local.day)  # naive local midnight; astimezone() resolves DST
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = datetime(local.year, local.month, 1)
        end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1)
    else:
        raise BadRequest(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return start.astimezone().timestamp(), end.astimezone().timestamp()


# -------------------------------------------------------------------------------------------- query
class _Median:
    """SQLite aggregate: the median of non-null values."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


class _FSum:
    """SQLite aggregate: the correctly rounded sum of non-null values (no float drift over many rows)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float:
        return math.fsum(self.values)


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_aggregate("tg_median", 1, _Median)
    conn.create_aggregate("tg_fsum", 1, _FSum)


_SUMMARY_SQL = """
SELECT CASE WHEN {col} = '' THEN '(none)' ELSE {col} END AS key, COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cache_read_tokens),
       TOTAL(cache_write_tokens), TOTAL(reasoning_tokens), tg_fsum(cost), tg_fsum(saved),
       SUM(price_known = 0), SUM(status = 'error'), SUM(status = 'refused'), SUM(cache_hit), {median}
FROM usage WHERE ts >= ? AND ts < ? GROUP BY key ORDER BY tg_fsum(cost) DESC, COUNT(*) DESC, key
"""


def usage_summary(conn: sqlite3.Connection, period: str, by: str, *, now: datetime | float | None = None,
                  with_latency: bool = True) -> list[UsageRow]:
    """Totals per `by` over the current `period`, most expensive first. Blocking: run in a worker thread."""
    if by not in GROUP_BY:
        raise BadRequest(f"by must be one of {', '.join(GROUP_BY)}, not {by!r}")
    start, end = period_bounds(period, now)
    median = "tg_median(latency_ms)" if with_latency else "NULL"
    register_functions(conn)
    rows = conn.execute(_SUMMARY_SQL.format(col=by, median=median), (start, end)).fetchall()
    return [
        UsageRow(key=r[0], requests=r[1], input_tokens=int(r[2]), output_tokens=int(r[3]),
                 cache_read_tokens=int(r[4]), cache_write_tokens=int(r[5]), reasoning_tokens=int(r[6]),
                 cost=r[7], saved=r[8], unknown_price=r[9] or 0, errors=r[10] or 0, refused=r[11] or 0,
                 cache_hits=r[12] or 0, p50_latency_ms=r[13])
        for r in rows
    ]


def total_row(rows: Iterable[UsageRow], key: str = "total") -> UsageRow:
    """The sum of `rows` (p50 left empty: medians do not add up)."""
    out = UsageRow(key)
    for r in rows:
        for name in ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                     "reasoning_tokens", "cost", "saved", "unknown_price", "errors", "refused", "cache_hits"):
            setattr(out, name, getattr(out, name) + getattr(r, name))
    return out


def spend_rows(conn: sqlite3.Connection, since: float) -> list[tuple[float, str, str, float]]:
    """(ts, agent, tier, cost) of every priced request since `since`: what budgets are seeded from."""
    return conn.execute(
        "SELECT ts, agent, tier, cost FROM usage WHERE ts >= ? AND cost > 0 ORDER BY ts", (since,)
    ).fetchall()


# ------------------------------------------------------------------------------------ live counters
class LiveCounters:
    """Today's totals per tier, in memory. Fed every record; rolls over at local midnight."""

    def __init__(self, now: float | None = None) -> None:
        self._start, self._end = period_bounds("day", now)
        self._tiers: dict[str, UsageRow] = {}

    def _roll(self, now: float) -> None:
        if now >= self._end or now < self._start:
            self._start, self._end = period_bounds("day", now)
            self._tiers = {}

    def add(self, rec: UsageRecord, *, now: float | None = None) -> None:
        self._roll(time.time() if now is None else now)
        if self._start <= rec.ts < self._end:
            tier = rec.tier or "(none)"
            row = self._tiers.get(tier)
            if row is None:
                row = self._tiers[tier] = UsageRow(tier)
            row.add(rec)

    def seed(self, rows: Iterable[UsageRow], *, now: float | None = None) -> None:
        """Start from today's per-tier rows as read from the database."""
        self._roll(time.time() if now is None else now)
        self._tiers = {r.key: UsageRow(**{**r.to_dict(), "p50_latency_ms": None}) for r in rows}

    def today(self, *, now: float | None = None) -> dict[str, UsageRow]:
        """Copies of today's rows per tier."""
        self._roll(time.time() if now is None else now)
        return {k: UsageRow(**v.to_dict()) for k, v in self._tiers.items()}

    def total(self, *, now: float | None = None) -> UsageRow:
        return total_row(self.today(now=now).values(), "today")
