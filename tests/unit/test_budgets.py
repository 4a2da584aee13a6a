"""Budgets: config validation with lines, spend tracking, warnings once, refuse / downgrade, seeding."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from app.config import parse_config
from app.errors import BudgetExceeded, ConfigError
from app.events import BudgetExceededEvent, BudgetWarning, EventBus
from app.ledger.budgets import Budgets, BudgetSettings
from app.ledger.store import Ledger
from app.usage import UsageRecord

MODELS = """model_list:
  - model_name: orchestrator
    litellm_params: {model: anthropic/claude-opus-4-5, api_key: os.environ/X}
  - model_name: coder
    litellm_params: {model: openai/gpt-5, api_key: os.environ/Y}
  - model_name: helper
    litellm_params: {model: ollama_chat/gemma3:4b}
"""
NOW = datetime(2026, 4, 15, 12, 0).timestamp()  # Wednesday noon, local time


# MODELS is 7 lines, then "tiergate_settings:" and "budgets:": the first budget line is line 10.
def settings(budgets_yaml: str, *, tiers: bool = True) -> BudgetSettings:
    cfg = parse_config(MODELS + "tiergate_settings:\n  budgets:\n" + budgets_yaml, "config.yaml")
    return BudgetSettings.from_section(cfg.section("budgets"), tiers=cfg.tiers if tiers else None)


def spend(b: Budgets, cost: float, *, agent: str = "aider", tier: str = "orchestrator", ts: float = NOW,
          now: float = NOW) -> None:
    b.observe(UsageRecord(request_id="r", ts=ts, agent=agent, tier=tier, requested_model=tier, deployment="d",
                          provider="anthropic", model="m", dialect_in="anthropic", status="ok", cost=cost), now=now)


# --------------------------------------------------------------------------------------------- config
def test_parses_every_scope():
    s = settings("""    warn_at: 0.5
    overall: {period: month, limit: 100}
    tiers:
      orchestrator:
        - {period: day, limit: 5, on_exceed: {downgrade_to: helper}}
        - {period: week, limit: 20, warn_at: 0.9}
    agents:
      aider: {period: day, limit: 1}
""")
    got = [(b.name, b.limit, b.warn_at, b.action) for b in s.budgets]
    assert got == [("overall/month", 100.0, 0.5, "refuse"), ("tier:orchestrator/day", 5.0, 0.5, "downgrade:helper"),
                   ("tier:orchestrator/week", 20.0, 0.9, "refuse"), ("agent:aider/day", 1.0, 0.5, "refuse")]


@pytest.mark.parametrize("yaml,line,fragment", [
    ("    tiers:\n      orchestrator:\n        - {period: day, limit: 5}\n        - period: week\n          limit: oops\n",
     14, "limit must be an amount"),
    ("    overall: {period: fortnight, limit: 5}\n", 10, "period must be one of day, week, month"),
    ("    agents:\n      aider: {period: day, limit: 1, warn_at: 1.5}\n", 11, "warn_at must be a fraction"),
    ("    tiers:\n      orchestrator: {period: day, limit: 5, on_exceed: {downgrade_to: nowhere}}\n", 11,
     "no tier named 'nowhere'"),
    ("    tiers:\n      coder: {period: day, limit: 5, on_exceed: downgrade}\n", 11, "on_exceed must be"),
    ("    tiers:\n      ghost: {period: day, limit: 5}\n", 11, "no tier named 'ghost'"),
    ("    overall: {period: day, limit: 5, limt: 3}\n", 10, "unknown key 'limt'"),
    ("    everyone: {period: day, limit: 5}\n", 10, "unknown key 'everyone'"),
    ("    overall:\n      - {period: day, limit: 5}\n      - {period: day, limit: 6}\n", None, "two budgets named"),
])
def test_config_errors_name_the_line(yaml, line, fragment):
    with pytest.raises(ConfigError) as e:
        settings(yaml)
    assert fragment in e.value.reason
    assert e.value.path == "config.yaml"
    if line is not None:
        assert e.value.line == line


def test_empty_section_means_no_budgets():
    cfg = parse_config(MODELS, "config.yaml")
    s = BudgetSettings.from_section(cfg.section("budgets"))
    assert s.budgets == [] and not Budgets(s)
    assert Budgets(s).check("aider", "coder").ok


# ------------------------------------------------------------------------------------------- runtime
def test_warning_once_then_exceeded_once():
    bus = EventBus()
    events = []
    bus.subscribe(events.append)
    b = Budgets(settings("    overall: {period: day, limit: 10}\n"), bus, now=NOW)
    spend(b, 7.0)
    assert events == []
    spend(b, 1.0)  # 8.0 >= 0.8 * 10
    spend(b, 1.0)
    assert [type(e) for e in events] == [BudgetWarning]
    w = events[0]
    assert (w.budget, w.spent, w.limit, w.fraction) == ("overall/day", 8.0, 10.0, 0.8)
    assert w.resets_at == datetime(2026, 4, 16).timestamp()
    assert b.check("aider", "coder", now=NOW).ok
    spend(b, 1.0)
    spend(b, 1.0)
    assert [type(e) for e in events] == [BudgetWarning, BudgetExceededEvent]
    assert (events[1].spent, events[1].action) == (10.0, "refuse")


def test_refusal_names_budget_spend_limit_and_reset_time():
    b = Budgets(settings("    agents:\n      aider: {period: week, limit: 2}\n"), now=NOW)
    spend(b, 2.5)
    v = b.check("aider", "coder", now=NOW)
    assert (v.action, v.tier, v.budget) == ("refuse", "coder", "agent:aider/week")
    err = v.error
    assert isinstance(err, BudgetExceeded) and err.status == 429 and err.code == "budget_exceeded"
    assert "agent:aider/week" in err.message and "$2.50 spent of $2.00" in err.message
    assert "resets at 00:00 on Mon 20 Apr 2026 (local time" in err.message
    assert err.details["resets_at"] == datetime(2026, 4, 20).timestamp()
    with pytest.raises(BudgetExceeded):
        v.raise_if_refused()
    assert b.check("codex", "coder", now=NOW).ok  # another agent is not affected


def test_downgrade_to_cheaper_tier_and_recheck_it():
    b = Budgets(settings("""    tiers:
      orchestrator: {period: day, limit: 5, on_exceed: {downgrade_to: coder}}
      coder: {period: day, limit: 3, on_exceed: {downgrade_to: helper}}
"""), now=NOW)
    spend(b, 5.0, tier="orchestrator")
    v = b.check("aider", "orchestrator", now=NOW)
    assert (v.action, v.tier, v.budget) == ("downgrade", "coder", "tier:orchestrator/day")
    spend(b, 3.0, tier="coder")  # downgraded traffic counts against the tier that answered
    v = b.check("aider", "orchestrator", now=NOW)
    assert (v.action, v.tier) == ("downgrade", "helper")
    assert b.check("aider", "helper", now=NOW).ok


def test_overall_downgrade_lets_the_target_tier_through():
    b = Budgets(settings("    overall: {period: month, limit: 1, on_exceed: {downgrade_to: helper}}\n"), now=NOW)
    spend(b, 1.0)
    assert b.check("aider", "coder", now=NOW).tier == "helper"
    assert b.check("aider", "helper", now=NOW).ok


def test_refuse_wins_over_downgrade():
    b = Budgets(settings("""    overall: {period: day, limit: 1, on_exceed: {downgrade_to: helper}}
    agents:
      aider: {period: day, limit: 1}
"""), now=NOW)
    spend(b, 1.0)
    assert b.check("aider", "coder", now=NOW).action == "refuse"


def test_downgrade_cycle_is_refused():
    b = Budgets(settings("""    tiers:
      orchestrator: {period: day, limit: 1, on_exceed: {downgrade_to: coder}}
      coder: {period: day, limit: 1, on_exceed: {downgrade_to: orchestrator}}
"""), now=NOW)
    spend(b, 1.0, tier="orchestrator")
    spend(b, 1.0, tier="coder")
    v = b.check("aider", "orchestrator", now=NOW)
    assert v.action == "refuse" and v.error is not None


def test_period_rolls_over_and_warnings_rearm():
    bus = EventBus()
    warnings = []
    bus.subscribe(warnings.append, BudgetWarning)
    b = Budgets(settings("    overall: {period: day, limit: 1}\n"), bus, now=NOW)
    spend(b, 1.0)
    assert b.check("a", "coder", now=NOW).action == "refuse"
    tomorrow = NOW + 86_400
    assert b.check("a", "coder", now=tomorrow).ok
    spend(b, 0.5, ts=NOW, now=tomorrow)  # a late record of yesterday's request does not count today
    assert b.status(now=tomorrow)[0].spent == 0.0
    spend(b, 0.9, ts=tomorrow, now=tomorrow)
    assert len(warnings) == 2


def test_unpriced_records_add_nothing():
    b = Budgets(settings("    overall: {period: day, limit: 1}\n"), now=NOW)
    b.observe(UsageRecord(request_id="r", ts=NOW, agent="a", tier="coder", requested_model="x", deployment="d",
                          provider="openai", model="m", dialect_in="openai_chat", status="ok", cost=None,
                          price_known=False), now=NOW)
    assert b.status(now=NOW)[0].spent == 0.0


def test_status_for_the_tray():
    b = Budgets(settings("    overall: {period: day, limit: 10}\n    agents:\n      aider: {period: day, limit: 1}\n"),
                now=NOW)
    spend(b, 0.9)
    st = {s.name: (s.spent, s.fraction, s.state) for s in b.status(now=NOW)}
    assert st == {"overall/day": (0.9, 0.09, "ok"), "agent:aider/day": (0.9, 0.9, "warning")}


async def test_seeded_from_the_ledger_and_fed_by_its_events(tmp_path):
    bus = EventBus()
    path = tmp_path / "u.sqlite3"
    led = Ledger(path, bus)
    await led.start()
    now = time.time()
    for cost in (0.4, 0.3, None):
        led.record(UsageRecord(request_id="r", ts=now, agent="aider", tier="coder", requested_model="coder",
                               deployment="d", provider="openai", model="gpt-5", dialect_in="openai_chat",
                               status="ok", cost=cost, price_known=cost is not None))
    led.record(UsageRecord(request_id="old", ts=now - 40 * 86_400, agent="aider", tier="coder",
                           requested_model="coder", deployment="d", provider="openai", model="gpt-5",
                           dialect_in="openai_chat", status="ok", cost=100.0))
    await led.close()

    led = Ledger(path, bus)
    await led.start()
    b = Budgets(settings("    agents:\n      aider: {period: month, limit: 1}\n"), bus)
    await b.seed(led)
    assert round(b.status()[0].spent, 10) == 0.7
    unsubscribe = b.attach(bus)
    led.record(UsageRecord(request_id="n", ts=time.time(), agent="aider", tier="coder", requested_model="coder",
                           deployment="d", provider="openai", model="gpt-5", dialect_in="openai_chat",
                           status="ok", cost=0.3))
    assert b.check("aider", "coder").action == "refuse"
    unsubscribe()
    await led.close()
