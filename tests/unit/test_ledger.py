"""Usage ledger: batched writes off the loop, exact stored figures, reports, live counters, schema."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import datetime

import pytest

from app.canonical import Usage
from app.config.schema import Config, Deployment
from app.events import EventBus, UsageRecorded
from app.ledger import store as store_mod
from app.ledger.aggregates import LiveCounters, period_bounds, total_row, usage_summary
from app.ledger.pricing import Pricing
from app.ledger.store import COLUMNS, Ledger, open_db, open_readonly, read_records
from app.usage import UsageRecord


def rec(i: int = 0, *, ts: float | None = None, **kw) -> UsageRecord:
    base = dict(request_id=f"req-{i}", ts=time.time() if ts is None else ts, agent="aider", tier="coder",
                requested_model="coder", deployment="coder/openai/gpt-5", provider="openai", model="gpt-5",
                dialect_in="openai_chat", status="ok")
    base.update(kw)
    return UsageRecord(**base)


@pytest.fixture
async def ledger(tmp_path):
    bus = EventBus()
    led = Ledger(tmp_path / "usage.sqlite3", bus, flush_interval=0.05)
    await led.start()
    yield led
    await led.close()


async def test_record_queues_emits_and_flushes_in_the_worker_thread(ledger, monkeypatch):
    events = []
    ledger.bus.subscribe(events.append, UsageRecorded)
    threads = []
    real = store_mod.write_batch
    monkeypatch.setattr(store_mod, "write_batch", lambda c, rows: threads.append(threading.current_thread().name)
                        or real(c, rows))
    r = rec(1)
    ledger.record(r)
    assert ledger.pending == 1 and events[0].record is r  # nothing written yet: record() did no I/O
    for _ in range(100):
        if ledger.flushed_total:
            break
        await asyncio.sleep(0.02)
    assert ledger.flushed_total == 1 and ledger.pending == 0  # the background flusher wrote it
    assert threads and all(t.startswith("tiergate-ledger") for t in threads)
    assert threading.current_thread().name not in threads


async def test_every_field_round_trips(ledger):
    r = rec(7, tier="orchestrator", requested_model="gpt-4o", deployment="orch/anthropic/claude-opus-4-5",
            provider="anthropic", model="claude-opus-4-5", dialect_in="anthropic", status="error", http_status=502,
            error="upstream_timeout", input_tokens=11, output_tokens=22, cache_read_tokens=33, cache_write_tokens=44,
            reasoning_tokens=5, cost=None, saved=None, price_known=False, latency_ms=123.5, ttft_ms=None,
            overhead_ms=1.25, stream=True, cache_hit=False, fallback_path=["a/b/c", "d/e/f"], privacy="local",
            privacy_rule="secrets", location="cloud")
    r2 = rec(8, ttft_ms=45.5, cache_hit=True, cost=0.0, saved=0.123)
    ledger.record(r)
    ledger.record(r2)
    assert await ledger.records() == [r, r2]


async def test_close_writes_everything_queued(tmp_path):
    path = tmp_path / "u.sqlite3"
    led = Ledger(path, flush_interval=60)  # the timer never fires: only close() can write
    await led.start()
    for i in range(2_500):
        led.record(rec(i, input_tokens=i))
    await led.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*), SUM(input_tokens) FROM usage").fetchone() == (2_500, sum(range(2_500)))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_records_before_start_are_kept(tmp_path):
    led = Ledger(tmp_path / "u.sqlite3")
    led.record(rec(1))
    await led.start()
    assert led.live.total().requests == 1
    await led.close()
    conn = sqlite3.connect(tmp_path / "u.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == 1


async def test_record_after_close_is_dropped_quietly(tmp_path, caplog):
    led = Ledger(tmp_path / "u.sqlite3")
    await led.start()
    await led.close()
    led.record(rec(1))
    assert "after the ledger closed" in caplog.text


async def test_failed_write_is_retried(ledger, monkeypatch):
    real = store_mod.write_batch
    fails = [sqlite3.OperationalError("database is locked")]

    def flaky(conn, rows):
        if fails:
            raise fails.pop()
        return real(conn, rows)

    monkeypatch.setattr(store_mod, "write_batch", flaky)
    ledger.record(rec(1))
    ledger.record(rec(2))
    assert await ledger.flush() == 0 and ledger.pending == 2
    ledger.record(rec(3))
    assert await ledger.flush() == 3
    assert [r.request_id for r in await ledger.records()] == ["req-1", "req-2", "req-3"]


# ------------------------------------------------------------------------- replayed upstream usage
ANTHROPIC_BODY = {"input_tokens": 2_000, "cache_creation_input_tokens": 10_000, "cache_read_input_tokens": 90_000,
                  "output_tokens": 1_000}
OPENAI_CHAT_BODY = {"prompt_tokens": 12_000, "completion_tokens": 3_000, "total_tokens": 15_000,
                    "prompt_tokens_details": {"cached_tokens": 8_000, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 2_048, "audio_tokens": 0}}
OPENAI_RESPONSES_BODY = {"input_tokens": 1_000_000, "input_tokens_details": {"cached_tokens": 500_000},
                         "output_tokens": 1_000_000, "output_tokens_details": {"reasoning_tokens": 0},
                         "total_tokens": 2_000_000}
OLLAMA_BODY = {"prompt_eval_count": 1_500, "eval_count": 300}


def _deps() -> list[Deployment]:
    return [
        Deployment(id="orch", tier="orchestrator", provider="anthropic", model="claude-haiku-4-5",
                   api_base="https://api.anthropic.com"),
        Deployment(id="coder", tier="coder", provider="openai", model="gpt-5", api_base="https://api.openai.com/v1"),
        Deployment(id="resp", tier="coder", provider="openai", model="gpt-4o-mini",
                   api_base="https://api.openai.com/v1", api="responses"),
        Deployment(id="local", tier="helper", provider="ollama", model="gemma3:4b", api_base="http://localhost:11434"),
        Deployment(id="helper-cloud", tier="helper", provider="anthropic", model="claude-haiku-4-5",
                   api_base="https://api.anthropic.com"),
    ]


async def test_replayed_upstream_usage_is_stored_to_the_token_and_the_cent(ledger):
    deps = {d.id: d for d in _deps()}
    pricing = Pricing(Config(deployments=list(deps.values())))
    usages = {
        "orch": Usage(input_tokens=ANTHROPIC_BODY["input_tokens"], output_tokens=ANTHROPIC_BODY["output_tokens"],
                      cache_read_tokens=ANTHROPIC_BODY["cache_read_input_tokens"],
                      cache_write_tokens=ANTHROPIC_BODY["cache_creation_input_tokens"]),
        "coder": Usage.from_openai(OPENAI_CHAT_BODY),
        "resp": Usage.from_openai(OPENAI_RESPONSES_BODY),
        "local": Usage(input_tokens=OLLAMA_BODY["prompt_eval_count"], output_tokens=OLLAMA_BODY["eval_count"]),
    }
    for n, (dep_id, usage) in enumerate(usages.items()):
        for stream in (False, True):  # a streamed and a buffered copy of each exchange
            d = deps[dep_id]
            r = rec(n * 2 + stream, tier=d.tier, deployment=d.id, provider=d.provider, model=d.model, stream=stream)
            pricing.fill(r, d, usage)
            ledger.record(r)
    rows = {r.key: r for r in await ledger.summary("day", "deployment")}
    assert set(rows) == {"orch", "coder", "resp", "local"}
    o = rows["orch"]
    assert (o.requests, o.input_tokens, o.cache_read_tokens, o.cache_write_tokens, o.output_tokens) == \
        (2, 4_000, 180_000, 20_000, 2_000)
    assert o.cost == 0.057  # 2 x $0.0285
    c = rows["coder"]
    assert (c.input_tokens, c.cache_read_tokens, c.output_tokens, c.reasoning_tokens) == (8_000, 16_000, 6_000, 4_096)
    assert c.cost == 0.072  # 2 x $0.036
    assert rows["resp"].cost == 1.425  # 2 x $0.7125
    loc = rows["local"]
    assert (loc.cost, loc.saved, loc.input_tokens, loc.output_tokens) == (0.0, 0.006, 3_000, 600)  # haiku: 2 x $0.003
    total = total_row(rows.values())
    assert round(total.cost, 2) == 1.55 and total.unknown_price == 0
    stored = await ledger.records()
    for a, b in zip(stored[::2], stored[1::2]):  # streamed copy == buffered copy, figure for figure
        assert (a.cost, a.saved, a.input_tokens, a.output_tokens, a.cache_read_tokens) == \
            (b.cost, b.saved, b.input_tokens, b.output_tokens, b.cache_read_tokens)


# ------------------------------------------------------------------------------------------ reports
async def test_summary_groups_and_counts(ledger):
    ledger.record(rec(1, latency_ms=100, cost=0.5, input_tokens=10))
    ledger.record(rec(2, latency_ms=300, cost=None, price_known=False, input_tokens=20))
    ledger.record(rec(3, latency_ms=200, status="error", error="upstream_timeout", cost=0.0))
    ledger.record(rec(4, agent="codex", tier="orchestrator", model="claude-opus-4-5", cache_hit=True, cost=0.0,
                      saved=0.25, latency_ms=1))
    ledger.record(rec(5, agent="codex", tier="", status="refused", http_status=429, error="budget_exceeded",
                      deployment="", model=""))
    by_tier = {r.key: r for r in await ledger.summary("day", "tier")}
    assert set(by_tier) == {"coder", "orchestrator", "(none)"}
    c = by_tier["coder"]
    assert (c.requests, c.input_tokens, c.cost, c.unknown_price, c.errors, c.p50_latency_ms) == (3, 30, 0.5, 1, 1, 200)
    assert (by_tier["orchestrator"].cache_hits, by_tier["orchestrator"].saved) == (1, 0.25)
    assert by_tier["(none)"].refused == 1
    by_agent = {r.key: r.requests for r in await ledger.summary("week", "agent")}
    assert by_agent == {"aider": 3, "codex": 2}
    by_model = [r.key for r in await ledger.summary("month", "model")]
    assert by_model[0] == "gpt-5"  # most expensive first


def test_periods_are_local_calendar_periods(tmp_path):
    conn = open_db(tmp_path / "u.sqlite3")
    now = datetime(2026, 4, 15, 12, 0).timestamp()  # a Wednesday, local time
    stamps = {
        "today": datetime(2026, 4, 15, 0, 0, 1).timestamp(),
        "monday": datetime(2026, 4, 13, 9, 0).timestamp(),
        "sunday": datetime(2026, 4, 12, 23, 59, 59).timestamp(),
        "april1": datetime(2026, 4, 1, 0, 0).timestamp(),
        "march": datetime(2026, 3, 31, 23, 59).timestamp(),
    }
    store_mod.write_batch(conn, [store_mod.row_of(rec(i, ts=t, agent=name)) for i, (name, t) in
                                 enumerate(stamps.items())])
    agents = lambda p: sorted(r.key for r in usage_summary(conn, p, "agent", now=now))  # noqa: E731
    assert agents("day") == ["today"]
    assert agents("week") == ["monday", "today"]
    assert agents("month") == ["april1", "monday", "sunday", "today"]
    start, end = period_bounds("month", datetime(2026, 12, 31, 23, 0).timestamp())
    assert (datetime.fromtimestamp(start), datetime.fromtimestamp(end)) == (datetime(2026, 12, 1), datetime(2027, 1, 1))


def test_day_with_a_dst_change_is_23_hours(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        start, end = period_bounds("day", datetime(2026, 3, 29, 12, 0).timestamp())
        assert end - start == 23 * 3600
        assert datetime.fromtimestamp(start) == datetime(2026, 3, 29)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_live_counters_roll_over_at_midnight():
    day1 = datetime(2026, 4, 15, 23, 0).timestamp()
    day2 = datetime(2026, 4, 16, 0, 30).timestamp()
    live = LiveCounters(now=day1)
    live.add(rec(1, ts=day1, cost=1.0), now=day1)
    live.add(rec(2, ts=day1, cost=2.0, tier="helper"), now=day1)
    assert {k: v.cost for k, v in live.today(now=day1).items()} == {"coder": 1.0, "helper": 2.0}
    assert live.total(now=day1).requests == 2
    live.add(rec(3, ts=day1 + 10, cost=4.0), now=day2)  # arrived before midnight, finished after: yesterday's
    assert live.today(now=day2) == {}
    live.add(rec(4, ts=day2, cost=8.0), now=day2)
    assert live.total(now=day2).cost == 8.0


async def test_live_counters_are_seeded_from_the_database(tmp_path):
    path = tmp_path / "u.sqlite3"
    led = Ledger(path)
    await led.start()
    led.record(rec(1, cost=0.25, input_tokens=5))
    await led.close()
    led2 = Ledger(path)
    await led2.start()
    led2.record(rec(2, cost=0.5, input_tokens=7))
    coder = led2.live.today()["coder"]
    assert (coder.requests, coder.cost, coder.input_tokens) == (2, 0.75, 12)
    await led2.close()


# ------------------------------------------------------------------------------------------- schema
def test_schema_version_indices_and_wal(tmp_path):
    conn = open_db(tmp_path / "u.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(store_mod.SCHEMA_VERSION,)]
    indices = {r[1] for r in conn.execute("PRAGMA index_list(usage)")}
    assert {"usage_ts", "usage_agent_ts", "usage_tier_ts"} <= indices
    cols = [r[1] for r in conn.execute("PRAGMA table_info(usage)")]
    assert cols == ["id", *COLUMNS]


def test_missing_columns_are_added_on_open(tmp_path):
    path = tmp_path / "u.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version VALUES (1)")
    old.execute("CREATE TABLE usage (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL DEFAULT '', ts REAL NOT NULL)")
    old.execute("INSERT INTO usage (request_id, ts) VALUES ('old', 1.0)")
    old.commit()
    old.close()
    conn = open_db(path)
    (r,) = read_records(conn)
    assert (r.request_id, r.ts, r.agent, r.cost, r.fallback_path, r.cache_hit) == ("old", 1.0, "", None, [], False)


async def test_readonly_reader_while_the_ledger_writes(ledger):
    ledger.record(rec(1, cost=0.1))
    await ledger.flush()
    ro = open_readonly(ledger.db_path)
    assert [r.requests for r in usage_summary(ro, "day", "tier")] == [1]
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("DELETE FROM usage")
    ro.close()


@pytest.mark.parametrize("count", [1, 2, 127, 128, 129, 300, 1000])
@pytest.mark.parametrize("variable_limit", [None, 999, 40])
def test_write_batch_stores_every_row_in_order_in_multi_row_inserts(tmp_path, count, variable_limit):
    conn = open_db(tmp_path / "u.sqlite3")
    if variable_limit is not None:  # an SQLite built with a lower parameter limit (999 before 3.32)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    records = [rec(i, ts=1_700_000_000 + i * 0.25, fallback_path=[f"d{i}"] if i % 3 == 0 else [],
                   stream=bool(i % 2), cost=None if i % 5 == 0 else i * 1e-6) for i in range(count)]
    store_mod.write_records(conn, records)
    assert read_records(conn) == records
    inserts = [s for s in statements if s.startswith("INSERT")]
    per_statement = max(1, min(128, (variable_limit or 32766) // len(COLUMNS)))
    assert len(inserts) >= -(-count // per_statement) and len(inserts) <= count // per_statement + 8
    conn.close()


def test_a_failed_batch_writes_nothing(tmp_path):
    conn = open_db(tmp_path / "u.sqlite3")
    rows = [store_mod.row_of(rec(i)) for i in range(200)]
    rows[150] = rows[150][:-1]  # one parameter short: that statement fails
    with pytest.raises(sqlite3.Error):
        store_mod.write_batch(conn, rows)
    assert read_records(conn) == []
    conn.close()
