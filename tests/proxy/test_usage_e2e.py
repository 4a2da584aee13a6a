"""Issue 4 end to end, usage and cost: every request through the real proxy becomes one usage record whose
token figures are the upstream's own (to the token) and whose cost follows genai-prices' rates (to the
cent, exactly), read back through the ledger API, `GET /tiergate/usage` and the `tiergate usage --json` CLI.

Rates used below, copied by hand from genai-prices' data set (US dollars per million tokens), and checked
against `genai_prices.calc_price` in `test_hand_rates_match_genai_prices`:

    anthropic claude-opus-4-1   input 15     output 75    cache read 1.5     cache write 18.75
    openai    gpt-4o-mini       input 0.15   output 0.6   cache read 0.075   (no cache-write rate)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from app.events import UsageRecorded
from app.usage import UsageRecord
from tests.fakes import Fault, Reply, count_tokens, prompt_tokens

# Every priced deployment says where it runs: the fakes listen on 127.0.0.1, which would otherwise make them
# "local" (free). The cache is off here so that identical requests each reach the upstream.
CONFIG = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 8192}}
  - model_name: mystery
    litellm_params: {{model: openai/acme-unpriced-1, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
router_settings:
  num_retries: 0
  allowed_fails: 100
  fallbacks: {{orchestrator: [coder], helper: [coder]}}
tiergate_settings:
  port: 0
  cache: {{enabled: false}}
"""

OPUS = "orchestrator/anthropic/claude-opus-4-1"
MINI = "coder/openai/gpt-4o-mini"
LLAMA = "helper/ollama/llama3.2:latest"
MYSTERY = "mystery/openai/acme-unpriced-1"

M = Decimal(1_000_000)
OPUS_RATES = {"input": Decimal("15"), "output": Decimal("75"), "cache_read": Decimal("1.5"),
              "cache_write": Decimal("18.75")}
MINI_RATES = {"input": Decimal("0.15"), "output": Decimal("0.6"), "cache_read": Decimal("0.075")}

MSG = [{"role": "user", "content": "hello there"}]


def hand_cost(rates: dict[str, Decimal], *, input: int = 0, output: int = 0, cache_read: int = 0,
              cache_write: int = 0) -> Decimal:
    """The cost worked out by hand: tokens x per-million rate (cache tokens at their own rates)."""
    return (input * rates["input"] + output * rates["output"] + cache_read * rates["cache_read"]
            + cache_write * rates.get("cache_write", rates["input"])) / M


class Watch:
    """Collects every UsageRecorded the core emits; `await wait(n)` until n records have arrived."""

    def __init__(self, core: Any) -> None:
        self.records: list[UsageRecord] = []
        self._changed = asyncio.Event()
        core.bus.subscribe(self._on, UsageRecorded)

    def _on(self, ev: UsageRecorded) -> None:
        self.records.append(ev.record)
        self._changed.set()

    async def wait(self, n: int, timeout: float = 5.0) -> list[UsageRecord]:
        async def until() -> None:
            while len(self.records) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.records


async def stored(p: Any) -> list[UsageRecord]:
    """The records as the ledger stored them (after a flush to SQLite)."""
    await p.core.ledger.flush()
    return await p.core.ledger.records()


def test_hand_rates_match_genai_prices():
    """The hand-copied rates are genai-prices' own: same figure as its calc_price for a mixed usage."""
    opus = calc_price(GPUsage(input_tokens=2_000 + 90_000 + 10_000, cache_read_tokens=90_000,
                              cache_write_tokens=10_000, output_tokens=1_000),
                      model_ref="claude-opus-4-1", provider_id="anthropic")
    assert opus.total_price == hand_cost(OPUS_RATES, input=2_000, cache_read=90_000, cache_write=10_000,
                                         output=1_000) == Decimal("0.4275")
    mini = calc_price(GPUsage(input_tokens=2_000, cache_read_tokens=800, output_tokens=300),
                      model_ref="gpt-4o-mini", provider_id="openai")
    assert mini.total_price == hand_cost(MINI_RATES, input=1_200, cache_read=800, output=300) == Decimal("0.00042")


# ----------------------------------------------------------------------------------- OpenAI upstream
async def test_openai_upstream_record_has_every_field(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(Reply(text="Four.", input_tokens=1_200, cache_read_tokens=800, output_tokens=300,
                                     reasoning_tokens=120))
    raw = await p.openai().chat.completions.with_raw_response.create(model="coder", messages=MSG)
    r = raw.parse()
    assert (r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens, r.usage.completion_tokens,
            r.usage.completion_tokens_details.reasoning_tokens) == (2_000, 800, 300, 120)
    [rec] = await stored(p)
    assert rec.request_id == raw.headers["x-request-id"]
    assert (rec.agent, rec.tier, rec.requested_model, rec.deployment, rec.provider, rec.model, rec.dialect_in) == \
        ("tester", "coder", "coder", MINI, "openai", "gpt-4o-mini", "openai_chat")
    assert (rec.status, rec.http_status, rec.error) == ("ok", 200, "")
    assert (rec.input_tokens, rec.cache_read_tokens, rec.cache_write_tokens, rec.output_tokens,
            rec.reasoning_tokens, rec.usage_estimated) == (1_200, 800, 0, 300, 120, False)
    assert rec.cost == float(hand_cost(MINI_RATES, input=1_200, cache_read=800, output=300)) == 0.00042
    assert (rec.price_known, rec.saved, rec.cache_hit, rec.fallback_path) == (True, 0.0, False, [])
    assert (rec.privacy, rec.location, rec.stream, rec.ttft_ms) == ("any", "cloud", False, None)
    assert rec.latency_ms > 0 and 0 <= rec.overhead_ms <= rec.latency_ms


async def test_openai_stream_asks_for_usage_and_strips_it_when_the_client_did_not(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(Reply(text="Streamed words here.", input_tokens=1_200, cache_read_tokens=800,
                                     output_tokens=300, reasoning_tokens=120, chunks=4))
    stream = await p.openai().chat.completions.create(model="coder", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed words here."
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)  # no usage chunk leaked
    assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}
    [rec] = await stored(p)
    assert (rec.input_tokens, rec.cache_read_tokens, rec.output_tokens, rec.reasoning_tokens) == (1_200, 800, 300, 120)
    assert rec.cost == 0.00042 and rec.stream and rec.status == "ok"
    assert rec.ttft_ms is not None and 0 < rec.ttft_ms <= rec.latency_ms


async def test_openai_stream_with_include_usage_gets_exactly_one_usage_chunk(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(Reply(text="ok", input_tokens=1_200, cache_read_tokens=800, output_tokens=300))
    stream = await p.openai().chat.completions.create(model="coder", messages=MSG, stream=True,
                                                      stream_options={"include_usage": True})
    usages = [c.usage for c in [c async for c in stream] if c.usage is not None]
    assert [(u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens) for u in usages] == \
        [(2_000, 800, 300)]
    [rec] = await stored(p)
    assert (rec.input_tokens, rec.cache_read_tokens, rec.output_tokens, rec.cost) == (1_200, 800, 300, 0.00042)


# -------------------------------------------------------------------- Anthropic prompt caching, stream vs not
async def test_streamed_and_buffered_anthropic_with_prompt_caching_cost_exactly_the_same(proxy, fake_anthropic):
    """Other proxies overcharge 4-7x on streams with prompt caching (cache tokens counted again from
    message_delta, or as plain input). Here four copies of one exchange — Anthropic SDK and OpenAI SDK,
    streamed and not — store the same figures and cost $0.4275 each, the hand-computed price."""
    p = await proxy(CONFIG)
    figures = dict(input_tokens=2_000, cache_read_tokens=90_000, cache_write_tokens=10_000, output_tokens=1_000)
    for _ in range(4):
        fake_anthropic.replies.append(Reply(text="The cached context says hello.", chunks=5, **figures))
    a, o = p.anthropic(), p.openai()
    system = [{"type": "text", "text": "long shared context", "cache_control": {"type": "ephemeral"}}]
    buffered = await a.messages.create(model="orchestrator", max_tokens=2_000, system=system, messages=MSG)
    async with a.messages.stream(model="orchestrator", max_tokens=2_000, system=system, messages=MSG) as s:
        streamed = await s.get_final_message()
    for m in (buffered, streamed):  # the client sees the upstream's own figures, not a sum of two events
        assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens,
                m.usage.output_tokens) == (2_000, 90_000, 10_000, 1_000)
    await o.chat.completions.create(model="orchestrator", messages=MSG, max_tokens=2_000)
    stream = await o.chat.completions.create(model="orchestrator", messages=MSG, max_tokens=2_000, stream=True,
                                             stream_options={"include_usage": True})
    [usage] = [c.usage async for c in stream if c.usage is not None]
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens, usage.completion_tokens) == \
        (102_000, 90_000, 1_000)

    recs = await stored(p)
    expected = hand_cost(OPUS_RATES, input=2_000, cache_read=90_000, cache_write=10_000, output=1_000)
    assert expected == Decimal("0.4275")
    assert [(r.dialect_in, r.stream) for r in recs] == [("anthropic", False), ("anthropic", True),
                                                        ("openai_chat", False), ("openai_chat", True)]
    for r in recs:
        assert (r.input_tokens, r.cache_read_tokens, r.cache_write_tokens, r.output_tokens) == \
            (2_000, 90_000, 10_000, 1_000), r
        assert r.cost == float(expected) and f"{r.cost:.2f}" == "0.43"
        assert r.deployment == OPUS and r.price_known and not r.usage_estimated
    assert len({r.cost for r in recs}) == 1


# ------------------------------------------------------------------------------------------ local models
@pytest.mark.parametrize("stream", [False, True])
async def test_ollama_counts_are_recorded_cost_nothing_and_save_the_cloud_price(proxy, fake_ollama, stream):
    p = await proxy(CONFIG)
    fake_ollama.replies.append(Reply(text="local answer", input_tokens=4_000, output_tokens=500))
    r = await p.openai().chat.completions.create(model="helper", messages=MSG, stream=stream)
    if stream:
        assert "".join([c.choices[0].delta.content or "" async for c in r if c.choices]) == "local answer"
    sent = fake_ollama.requests[-1]
    assert sent.path == "/api/chat" and sent.json["options"]["num_ctx"] == 8192
    [rec] = await stored(p)
    assert (rec.deployment, rec.provider, rec.location) == (LLAMA, "ollama", "local")
    assert (rec.input_tokens, rec.output_tokens, rec.usage_estimated) == (4_000, 500, False)  # prompt_eval_count/eval_count
    assert rec.cost == 0.0 and rec.price_known
    # saved: the same tokens on the tier's cloud equivalent (helper falls back to coder: gpt-4o-mini)
    assert rec.saved == float(hand_cost(MINI_RATES, input=4_000, output=500)) == 0.0009


# ----------------------------------------------------------------------------------------- unknown price
async def test_unknown_price_is_none_and_flagged_never_zero(proxy):
    p = await proxy(CONFIG)
    await p.openai().chat.completions.create(model="mystery", messages=MSG)
    await p.openai().chat.completions.create(model="coder", messages=MSG)
    recs = await stored(p)
    assert [(r.deployment, r.input_tokens, r.output_tokens, r.cost, r.price_known) for r in recs] == [
        (MYSTERY, 3, 3, None, False), (MINI, 3, 3, float(hand_cost(MINI_RATES, input=3, output=3)), True)]
    rows = {r.key: r for r in await p.core.ledger.summary("day", "tier")}
    assert (rows["mystery"].unknown_price, rows["mystery"].cost, rows["mystery"].requests) == (1, 0.0, 1)
    assert rows["coder"].unknown_price == 0
    status, _, body = await p.request("GET", "/tiergate/usage?by=deployment", key=p.master)
    assert status == 200
    by_dep = {r["key"]: r for r in body["rows"]}
    assert by_dep[MYSTERY]["unknown_price"] == 1 and by_dep[MINI]["unknown_price"] == 0


# ----------------------------------------------------------------------- fallbacks, failures, refusals
async def test_fallback_is_recorded_with_its_path_and_priced_on_the_deployment_that_answered(proxy, fake_anthropic,
                                                                                             fake_openai):
    p = await proxy(CONFIG)
    fake_anthropic.faults.append(Fault.status(500))
    fake_openai.replies.append(Reply(text="from the fallback", input_tokens=1_000, output_tokens=100))
    raw = await p.openai().chat.completions.with_raw_response.create(model="orchestrator", messages=MSG)
    assert raw.headers["x-tiergate-deployment"] == MINI
    [rec] = await stored(p)
    assert (rec.requested_model, rec.tier, rec.deployment, rec.fallback_path, rec.status) == \
        ("orchestrator", "coder", MINI, [OPUS], "ok")
    assert (rec.input_tokens, rec.output_tokens) == (1_000, 100)
    assert rec.cost == float(hand_cost(MINI_RATES, input=1_000, output=100))


async def test_failed_request_is_recorded_as_an_error_costing_nothing(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.faults.append(Fault.status(500))
    with pytest.raises(openai.InternalServerError) as e:
        await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert e.value.status_code == 502
    [rec] = await stored(p)
    assert (rec.status, rec.http_status, rec.error, rec.requested_model, rec.tier) == \
        ("error", 502, "all_deployments_failed", "coder", "coder")
    assert (rec.input_tokens, rec.output_tokens, rec.cost, rec.price_known) == (0, 0, 0.0, True)


async def test_failed_request_records_the_deployments_it_tried(proxy, fake_anthropic, fake_openai):
    """A request every deployment failed keeps its path: which deployments were tried, in order."""
    p = await proxy(CONFIG)
    fake_anthropic.faults.append(Fault.status(500))
    fake_openai.faults.append(Fault.status(503))
    with pytest.raises(openai.InternalServerError):
        await p.openai().chat.completions.create(model="orchestrator", messages=MSG)
    [rec] = await stored(p)
    assert rec.status == "error"
    assert rec.fallback_path == [OPUS, MINI]


async def test_refused_requests_are_recorded(proxy):
    p = await proxy(CONFIG)
    with pytest.raises(openai.NotFoundError):
        await p.openai().chat.completions.create(model="gpt-17", messages=MSG)
    [rec] = await stored(p)
    assert (rec.status, rec.http_status, rec.error, rec.requested_model, rec.deployment, rec.cost) == \
        ("refused", 404, "model_not_found", "gpt-17", "", 0.0)


# ------------------------------------------------------------------------------------ abandoned streams
async def test_stream_abandoned_by_an_anthropic_client_is_recorded_with_what_was_used(proxy, fake_anthropic):
    p = await proxy(CONFIG)
    watch = Watch(p.core)
    fake_anthropic.replies.append(Reply(text="x" * 800, chunks=40, delay=0.02, input_tokens=5_000,
                                        cache_read_tokens=1_000))
    received = ""
    async with p.anthropic().messages.stream(model="orchestrator", max_tokens=1_000, messages=MSG) as s:
        async for ev in s:
            if ev.type == "content_block_delta":
                received += ev.delta.text
                break
    [rec] = await watch.wait(1)
    assert (rec.status, rec.http_status, rec.stream, rec.deployment) == ("client_closed", 499, True, OPUS)
    assert (rec.input_tokens, rec.cache_read_tokens) == (5_000, 1_000)  # message_start's exact figures
    assert len(received) == 20
    # at least what the client was sent was generated (message_start's output_tokens: 1 is a placeholder)
    assert rec.output_tokens >= count_tokens(received), rec
    assert rec.usage_estimated
    assert rec.cost == float(hand_cost(OPUS_RATES, input=5_000, cache_read=1_000, output=rec.output_tokens))
    assert len(await stored(p)) == 1


@pytest.mark.parametrize("tier", ["coder", "helper"])
async def test_stream_abandoned_by_an_openai_client_is_recorded_with_an_estimate(proxy, fake_openai, fake_ollama,
                                                                                tier):
    """OpenAI and Ollama report usage only at the end: a stream cut short is recorded with an estimate
    (flagged), never as zero tokens."""
    p = await proxy(CONFIG)
    watch = Watch(p.core)
    fake = fake_openai if tier == "coder" else fake_ollama
    fake.replies.append(Reply(text="y" * 800, chunks=40, delay=0.02))
    stream = await p.openai().chat.completions.create(model=tier, messages=MSG, stream=True)
    received = ""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += chunk.choices[0].delta.content
            break
    await stream.close()
    [rec] = await watch.wait(1)
    assert (rec.status, rec.http_status, rec.stream) == ("client_closed", 499, True)
    assert rec.usage_estimated and rec.input_tokens > 0
    assert count_tokens(received) <= rec.output_tokens < count_tokens("y" * 800)
    if tier == "coder":
        assert rec.cost == float(hand_cost(MINI_RATES, input=rec.input_tokens, output=rec.output_tokens)) > 0
    else:
        assert rec.cost == 0.0 and rec.saved > 0


async def test_stream_broken_by_the_upstream_is_recorded_as_an_error_with_what_was_used(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(Reply(text="z" * 400, chunks=10, error_after=3, delay=0.005))
    stream = await p.openai().chat.completions.create(model="coder", messages=MSG, stream=True)
    received = ""
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert received == "z" * 120  # three 40-character deltas, then the upstream's in-stream error
    [rec] = await stored(p)
    assert (rec.status, rec.stream, rec.deployment) == ("error", True, MINI)
    assert rec.error and rec.usage_estimated
    assert rec.output_tokens == count_tokens(received) and rec.input_tokens > 0
    assert rec.cost == float(hand_cost(MINI_RATES, input=rec.input_tokens, output=rec.output_tokens))


# ---------------------------------------------------------------------- every upstream, every client dialect
@pytest.mark.parametrize("tier", ["orchestrator", "coder", "helper"])
async def test_recorded_tokens_are_the_upstreams_own_in_every_client_dialect(proxy, tier, fake_openai,
                                                                           fake_anthropic, fake_ollama):
    p = await proxy(CONFIG)
    fake = {"orchestrator": fake_anthropic, "coder": fake_openai, "helper": fake_ollama}[tier]
    a, o = p.anthropic(), p.openai()
    for stream in (False, True):
        await o.chat.completions.create(model=tier, messages=MSG, stream=stream,
                                        extra_body={"user": "u"} if stream else None)
        if stream:
            async with a.messages.stream(model=tier, max_tokens=50, messages=MSG) as s:
                await s.get_final_message()
            r = await o.responses.create(model=tier, input="hello there", stream=True)
            [final] = [ev async for ev in r if ev.type == "response.completed"]
        else:
            await a.messages.create(model=tier, max_tokens=50, messages=MSG)
            await o.responses.create(model=tier, input="hello there")
    recs = await stored(p)
    served = fake.served
    assert len(recs) == len(served) == 6
    assert [(r.dialect_in, r.stream) for r in recs] == [
        ("openai_chat", False), ("anthropic", False), ("openai_responses", False),
        ("openai_chat", True), ("anthropic", True), ("openai_responses", True)]
    for rec, turn in zip(recs, served):
        assert (rec.input_tokens, rec.output_tokens) == (turn.input_tokens, turn.output_tokens) == \
            (prompt_tokens("hello there"), count_tokens("hello there")), rec
        assert rec.tier == tier and rec.status == "ok" and not rec.usage_estimated
    costs = {r.cost for r in recs}
    assert len(costs) == 1
    if tier == "orchestrator":
        assert costs == {float(hand_cost(OPUS_RATES, input=3, output=3))}
    elif tier == "coder":
        assert costs == {float(hand_cost(MINI_RATES, input=3, output=3))}
    else:
        assert costs == {0.0}


# ------------------------------------------------------------------------------ reading the figures back
def _expected_rows() -> dict[str, dict[str, Any]]:
    opus = hand_cost(OPUS_RATES, input=2_000, cache_read=90_000, cache_write=10_000, output=1_000)
    mini = hand_cost(MINI_RATES, input=1_200, cache_read=800, output=300)
    return {
        "orchestrator": dict(requests=2, input_tokens=4_000, output_tokens=2_000, cache_read_tokens=180_000,
                             cache_write_tokens=20_000, cost=float(opus * 2), saved=0.0, unknown_price=0),
        "coder": dict(requests=1, input_tokens=1_200, output_tokens=300, cache_read_tokens=800,
                      cache_write_tokens=0, cost=float(mini), saved=0.0, unknown_price=0),
        "helper": dict(requests=1, input_tokens=4_000, output_tokens=500, cache_read_tokens=0, cache_write_tokens=0,
                       cost=0.0, saved=float(hand_cost(MINI_RATES, input=4_000, output=500)), unknown_price=0),
        "mystery": dict(requests=1, input_tokens=3, output_tokens=3, cache_read_tokens=0, cache_write_tokens=0,
                        cost=0.0, saved=0.0, unknown_price=1),
    }


def _pick(row: dict[str, Any], names: Any) -> dict[str, Any]:
    return {k: row[k] for k in names}


async def test_figures_read_back_through_ledger_api_usage_endpoint_and_cli(proxy, fake_anthropic, fake_openai,
                                                                           fake_ollama, tmp_path):
    p = await proxy(CONFIG)
    for _ in range(2):
        fake_anthropic.replies.append(Reply(text="cached", input_tokens=2_000, cache_read_tokens=90_000,
                                            cache_write_tokens=10_000, output_tokens=1_000))
    fake_openai.replies.append(Reply(text="ok", input_tokens=1_200, cache_read_tokens=800, output_tokens=300))
    fake_ollama.replies.append(Reply(text="local", input_tokens=4_000, output_tokens=500))
    a, o = p.anthropic(), p.openai()
    await a.messages.create(model="orchestrator", max_tokens=10, messages=MSG)
    async with a.messages.stream(model="orchestrator", max_tokens=10, messages=MSG) as s:
        await s.get_final_message()
    await o.chat.completions.create(model="coder", messages=MSG)
    await o.chat.completions.create(model="helper", messages=MSG, stream=True)
    await o.chat.completions.create(model="mystery", messages=MSG)
    expected = _expected_rows()
    names = list(expected["coder"])

    # 1. the ledger API
    await p.core.ledger.flush()
    rows = {r.key: r.to_dict() for r in await p.core.ledger.summary("day", "tier")}
    assert {k: _pick(v, names) for k, v in rows.items()} == expected
    by_agent = await p.core.ledger.summary("month", "agent")
    assert [(r.key, r.requests, r.unknown_price) for r in by_agent] == [("tester", 5, 1)]
    assert by_agent[0].cost == sum(v["cost"] for v in expected.values())

    # 2. the management API with the master key
    status, _, body = await p.request("GET", "/tiergate/usage?period=day&by=tier", key=p.master)
    assert status == 200 and (body["period"], body["by"]) == ("day", "tier")
    assert {r["key"]: _pick(r, names) for r in body["rows"]} == expected
    assert [r["key"] for r in body["rows"]][0] == "orchestrator"  # most expensive first

    # 3. the CLI, as a separate process, against the data directory once the core has stopped
    db = p.core.data_dir / "usage.sqlite3"
    await p.core.stop()
    out = subprocess.run([sys.executable, "-m", "app", "usage", "--json", "--period", "week", "--by", "tier",
                          "--db", str(db)], capture_output=True, text=True, timeout=30, cwd=str(tmp_path.parent),
                         env={"PYTHONPATH": str(_repo_root()), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert {r["key"]: _pick(r, names) for r in doc["rows"]} == expected
    total = doc["total"]
    assert (total["requests"], total["unknown_price"], total["cache_read_tokens"]) == (5, 1, 180_800)
    assert total["cost"] == sum(v["cost"] for v in expected.values())


def _repo_root() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
