"""Spending limits per tier, per agent and overall, checked before every request.

Config (`tiergate_settings.budgets`; every scope takes one budget or a list of them):

    tiergate_settings:
      budgets:
        warn_at: 0.8                      # default warning threshold, a fraction of the limit
        overall:
          - {period: month, limit: 100}   # US dollars
        tiers:
          orchestrator: {period: day, limit: 5, on_exceed: {downgrade_to: helper}}
        agents:
          aider:
            - {period: day, limit: 1}
            - {period: week, limit: 4, warn_at: 0.5}

`period` is a calendar day, week (from Monday) or month in local time; `on_exceed` is `refuse` (the
default: the client gets a 429 naming the budget and when it resets) or `{downgrade_to: <tier>}` (the
request is answered by that tier instead). Budget names look like "overall/month", "tier:orchestrator/day",
"agent:aider/week".

What counts: the known `cost` of every recorded request, charged to the tier that actually answered (a
downgraded request counts against the cheaper tier) and to its agent. Requests whose price is unknown add
nothing (reports flag them). Spend is kept in memory, fed from `UsageRecorded` events and seeded from the
database at start, so `check` costs O(number of budgets) and never touches the disk.

Deciding (`check(agent, tier)`): every budget that applies to the agent, the tier, or everything, and whose
spend has reached its limit, is "exceeded". If any exceeded budget says refuse, the request is refused. Else
the first exceeded budget with downgrade_to moves the request to that tier and the check runs again for it
(a budget whose downgrade target is the tier being checked is satisfied: the excess already goes where it
said). A downgrade chain that comes back to a tier already tried is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Literal

from app.config.schema import Section
from app.errors import BudgetExceeded
from app.events import BudgetExceededEvent, BudgetWarning, EventBus, UsageRecorded
from app.ledger.aggregates import PERIODS, period_bounds
from app.usage import UsageRecord

DEFAULT_WARN_AT = 0.8
_BUDGET_KEYS = {"period", "limit", "warn_at", "on_exceed"}


@dataclass(frozen=True, slots=True)
class Budget:
    scope: Literal["overall", "tier", "agent"]
    target: str  # tier or agent name; "" for overall
    period: Literal["day", "week", "month"]
    limit: float  # US dollars
    warn_at: float = DEFAULT_WARN_AT
    downgrade_to: str | None = None  # None: refuse

    @property
    def name(self) -> str:
        head = "overall" if self.scope == "overall" else f"{self.scope}:{self.target}"
        return f"{head}/{self.period}"

    @property
    def action(self) -> str:
        return f"downgrade:{self.downgrade_to}" if self.downgrade_to else "refuse"

    def applies(self, agent: str, tier: str) -> bool:
        return (self.scope == "overall" or (self.scope == "tier" and self.target == tier)
                or (self.scope == "agent" and self.target == agent))


@dataclass(slots=True)
class BudgetSettings:
    budgets: list[Budget] = field(default_factory=list)

    @classmethod
    def from_section(cls, section: Section, *, tiers: Iterable[str] | None = None) -> "BudgetSettings":
        """Validate `tiergate_settings.budgets`. With `tiers`, tier names and downgrade targets must exist.
        Raises app.errors.ConfigError located at the offending line."""
        data = section.data
        unknown = set(data) - {"warn_at", "overall", "tiers", "agents"}
        if unknown:
            key = sorted(unknown)[0]
            raise section.error(f"unknown key {key!r} (expected warn_at, overall, tiers, agents)", key)
        default_warn = _fraction(section, data.get("warn_at", DEFAULT_WARN_AT), ("warn_at",))
        known_tiers = set(tiers) if tiers is not None else None
        out: list[Budget] = []
        if "overall" in data:
            out += _budget_list(section, ("overall",), data["overall"], "overall", "", default_warn, known_tiers)
        for scope_key, scope in (("tiers", "tier"), ("agents", "agent")):
            group = data.get(scope_key)
            if group is None:
                continue
            if not isinstance(group, dict):
                raise section.error(f"expected a mapping of {scope} name to budget(s)", scope_key)
            for name, value in group.items():
                if known_tiers is not None and scope == "tier" and name not in known_tiers:
                    raise section.error(f"no tier named {name!r} in model_list", scope_key, name)
                out += _budget_list(section, (scope_key, name), value, scope, str(name), default_warn, known_tiers)
        seen: set[str] = set()
        for b in out:
            if b.name in seen:
                raise section.error(f"two budgets named {b.name}: one per scope and period")
            seen.add(b.name)
        return cls(out)


def _budget_list(section: Section, path: tuple[Any, ...], value: Any, scope: Any, target: str,
                 default_warn: float, known_tiers: set[str] | None) -> list[Budget]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        where = path + (i,) if isinstance(value, list) else path
        if not isinstance(item, dict):
            raise section.error("expected a budget mapping like {period: day, limit: 5}", *where)
        unknown = set(item) - _BUDGET_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise section.error(f"unknown key {key!r} (expected period, limit, warn_at, on_exceed)", *where, key)
        period = item.get("period")
        if period not in PERIODS:
            raise section.error(f"period must be one of {', '.join(PERIODS)}", *where, "period")
        limit = item.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
            raise section.error("limit must be an amount in US dollars (a number >= 0)", *where, "limit")
        warn = _fraction(section, item.get("warn_at", default_warn), where + ("warn_at",))
        downgrade = _on_exceed(section, item.get("on_exceed", "refuse"), where + ("on_exceed",))
        if downgrade is not None and known_tiers is not None and downgrade not in known_tiers:
            raise section.error(f"no tier named {downgrade!r} to downgrade to", *where, "on_exceed")
        if downgrade is not None and scope == "tier" and downgrade == target:
            raise section.error("a tier cannot downgrade to itself", *where, "on_exceed")
        out.append(Budget(scope, target, period, float(limit), warn, downgrade))
    return out


def _fraction(section: Section, value: Any, where: tuple[Any, ...]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise section.error("warn_at must be a fraction of the limit, above 0 and at most 1 (e.g. 0.8)", *where)
    return float(value)


def _on_exceed(section: Section, value: Any, where: tuple[Any, ...]) -> str | None:
    if value == "refuse":
        return None
    if isinstance(value, dict) and set(value) == {"downgrade_to"} and isinstance(value["downgrade_to"], str) \
            and value["downgrade_to"]:
        return value["downgrade_to"]
    raise section.error("on_exceed must be 'refuse' or {downgrade_to: <tier>}", *where)


# ------------------------------------------------------------------------------------------ runtime
@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """What to do with a request. `tier` is the tier to route to (the asked one unless downgraded)."""

    action: Literal["ok", "downgrade", "refuse"]
    tier: str
    budget: str | None = None  # the budget that decided, when not ok
    error: BudgetExceeded | None = None  # when refused

    @property
    def ok(self) -> bool:
        return self.action == "ok"

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    name: str
    spent: float
    limit: float
    fraction: float
    resets_at: float
    state: Literal["ok", "warning", "exceeded"]
    action: str


@dataclass(slots=True)
class _State:
    budget: Budget
    start: float = 0.0
    end: float = 0.0
    spent: float = 0.0
    warned: bool = False
    exceeded: bool = False


class Budgets:
    """Live budget state. `observe` every record (or `attach(bus)`), `check` before routing."""

    def __init__(self, settings: BudgetSettings, bus: EventBus | None = None, *, now: float | None = None) -> None:
        self.bus = bus
        t = time.time() if now is None else now
        self._states = [_State(b) for b in settings.budgets]
        for s in self._states:
            s.start, s.end = period_bounds(s.budget.period, t)

    def __bool__(self) -> bool:
        return bool(self._states)

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to `UsageRecorded` on `bus`; returns the unsubscribe function."""
        return bus.subscribe(lambda e: self.observe(e.record), UsageRecorded)  # type: ignore[attr-defined]

    def earliest_start(self, now: float | None = None) -> float:
        """The start of the oldest current window (what seeding must read from)."""
        t = time.time() if now is None else now
        return min((period_bounds(s.budget.period, t)[0] for s in self._states), default=t)

    async def seed(self, ledger: Any) -> None:
        """Load spend of the current windows from the ledger (`Ledger.spend_rows`). Call before serving."""
        if self._states:
            self.seed_rows(await ledger.spend_rows(self.earliest_start()))

    def seed_rows(self, rows: Iterable[tuple[float, str, str, float]], *, now: float | None = None) -> None:
        t = time.time() if now is None else now
        for s in self._states:
            self._roll(s, t)
            s.spent = 0.0
        for ts, agent, tier, cost in rows:
            self._add(ts, agent, tier, cost, t)

    def observe(self, rec: UsageRecord, *, now: float | None = None) -> None:
        if rec.cost:
            self._add(rec.ts, rec.agent, rec.tier, rec.cost, time.time() if now is None else now)

    def _add(self, ts: float, agent: str, tier: str, cost: float, now: float) -> None:
        for s in self._states:
            b = s.budget
            if not b.applies(agent, tier):
                continue
            self._roll(s, now)
            if s.start <= ts < s.end:
                s.spent += cost
                self._announce(s)

    @staticmethod
    def _roll(s: _State, now: float) -> None:
        if not s.start <= now < s.end:
            s.start, s.end = period_bounds(s.budget.period, now)
            s.spent, s.warned, s.exceeded = 0.0, False, False

    def _announce(self, s: _State) -> None:
        b = s.budget
        if not s.warned and s.spent >= b.warn_at * b.limit:
            s.warned = True
            if self.bus is not None:
                self.bus.emit(BudgetWarning(budget=b.name, spent=s.spent, limit=b.limit,
                                            fraction=s.spent / b.limit if b.limit else 1.0, resets_at=s.end))
        if not s.exceeded and s.spent >= b.limit:
            s.exceeded = True
            if self.bus is not None:
                self.bus.emit(BudgetExceededEvent(budget=b.name, spent=s.spent, limit=b.limit, resets_at=s.end,
                                                  action=b.action))

    def check(self, agent: str, tier: str, *, now: float | None = None) -> BudgetVerdict:
        """May `agent` use `tier` now? O(budgets), no I/O."""
        if not self._states:
            return BudgetVerdict("ok", tier)
        t = time.time() if now is None else now
        tried = [tier]
        current = tier
        decided_by: str | None = None
        while True:
            downgrade: _State | None = None
            for s in self._states:
                b = s.budget
                if not b.applies(agent, current):
                    continue
                self._roll(s, t)
                if s.spent < b.limit or b.downgrade_to == current:
                    continue
                if b.downgrade_to is None:
                    return BudgetVerdict("refuse", tier, b.name, _refusal(s))
                downgrade = downgrade or s
            if downgrade is None:
                return BudgetVerdict("ok", tier) if current == tier else BudgetVerdict("downgrade", current,
                                                                                      decided_by)
            target = downgrade.budget.downgrade_to
            assert target is not None
            if target in tried:
                return BudgetVerdict("refuse", tier, downgrade.budget.name, _refusal(downgrade))
            tried.append(target)
            current = target
            decided_by = decided_by or downgrade.budget.name

    def status(self, *, now: float | None = None) -> list[BudgetStatus]:
        t = time.time() if now is None else now
        out = []
        for s in self._states:
            self._roll(s, t)
            b = s.budget
            fraction = s.spent / b.limit if b.limit else (1.0 if s.spent else 0.0)
            state = "exceeded" if s.spent >= b.limit else "warning" if s.spent >= b.warn_at * b.limit else "ok"
            out.append(BudgetStatus(b.name, s.spent, b.limit, fraction, s.end, state, b.action))
        return out


def _refusal(s: _State) -> BudgetExceeded:
    b = s.budget
    resets = datetime.fromtimestamp(s.end).astimezone()
    when = resets.strftime("%H:%M on %a %d %b %Y")
    zone = resets.strftime("%Z") or resets.strftime("UTC%z")
    message = (f"Budget {b.name} is used up: ${s.spent:.2f} spent of ${b.limit:.2f} this {b.period}. "
               f"It resets at {when} (local time, {zone}).")
    return BudgetExceeded(message, details={
        "budget": b.name, "spent": round(s.spent, 6), "limit": b.limit, "period": b.period,
        "resets_at": s.end, "retry_after": max(0, int(s.end - time.time()) + 1),
    })
