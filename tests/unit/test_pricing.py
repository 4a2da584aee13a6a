"""Pricing: exact figures for known models (genai-prices 0.2.x data, per-million prices written next to each
figure), prompt-cache rates, overrides, local models, unknown models, and agreement with genai-prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage as GUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from app.canonical import Usage
from app.config.schema import Config, Deployment, RouterSettings
from app.ledger import pricing as pricing_mod
from app.ledger.pricing import Pricing, is_local
from app.usage import UsageRecord

ANTHROPIC = "https://api.anthropic.com"
OPENAI = "https://api.openai.com/v1"


def dep(model: str, *, tier: str = "coder", provider: str = "anthropic", api_base: str | None = None,
        id: str | None = None, **kw) -> Deployment:
    base = api_base if api_base is not None else {"anthropic": ANTHROPIC, "openai": OPENAI,
                                                   "ollama": "http://localhost:11434"}[provider]
    return Deployment(id=id or f"{tier}/{provider}/{model}", tier=tier, provider=provider, model=model,
                      api_base=base, **kw)


def anthropic_usage(body: dict) -> Usage:
    """What the Anthropic dialect reads from a Messages `usage` object."""
    return Usage(input_tokens=body.get("input_tokens") or 0, output_tokens=body.get("output_tokens") or 0,
                 cache_read_tokens=body.get("cache_read_input_tokens") or 0,
                 cache_write_tokens=body.get("cache_creation_input_tokens") or 0)


# ------------------------------------------------------------------------------------ known prices
def test_claude_haiku_4_5_plain():
    # $1 / MTok input, $5 / MTok output
    p = Pricing().price(dep("claude-haiku-4-5"), Usage(input_tokens=1_234, output_tokens=567))
    assert p.known and p.source == "genai-prices"
    assert p.exact == Decimal("0.004069")  # 1234*1 + 567*5 = 4069 micro-dollars
    assert p.cost == 0.004069


def test_anthropic_prompt_cache_read_and_write_priced_separately():
    # Recorded Anthropic usage: 2k fresh input, 90k read from the cache, 10k written to it, 1k output.
    usage = anthropic_usage({"input_tokens": 2_000, "cache_read_input_tokens": 90_000,
                             "cache_creation_input_tokens": 10_000, "output_tokens": 1_000})
    p = Pricing()
    # haiku 4.5: input $1, cache read $0.10, cache write $1.25, output $5 per MTok
    # 2000*1 + 90000*0.1 + 10000*1.25 + 1000*5 = 2000 + 9000 + 12500 + 5000 = 28500 micro-dollars
    assert p.price(dep("claude-haiku-4-5"), usage).exact == Decimal("0.0285")
    # opus 4.1: input $15, cache read $1.50, cache write $18.75, output $75
    # 30000 + 135000 + 187500 + 75000 = 427500
    assert p.price(dep("claude-opus-4-1"), usage).exact == Decimal("0.4275")
    # opus 4.5: input $5, cache read $0.50, cache write $6.25, output $25
    # 10000 + 45000 + 62500 + 25000 = 142500
    assert p.price(dep("claude-opus-4-5"), usage).cost == 0.1425
    # The same tokens without the cache would have cost 102000*1 + 1000*5 = 107000 on haiku.
    flat = Usage(input_tokens=102_000, output_tokens=1_000)
    assert p.price(dep("claude-haiku-4-5"), flat).exact == Decimal("0.107")


def test_dated_model_name_resolves():
    p = Pricing().price(dep("claude-haiku-4-5-20251001"), Usage(input_tokens=1_000_000))
    assert p.exact == Decimal(1)


def test_gpt5_with_cached_and_reasoning_tokens():
    # Recorded Chat Completions usage; reasoning tokens are part of completion tokens and billed as output.
    usage = Usage.from_openai({"prompt_tokens": 12_000, "completion_tokens": 3_000, "total_tokens": 15_000,
                               "prompt_tokens_details": {"cached_tokens": 8_000},
                               "completion_tokens_details": {"reasoning_tokens": 2_048}})
    assert (usage.input_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (4_000, 8_000, 2_048)
    # gpt-5: input $1.25, cached input $0.125, output $10 per MTok: 5000 + 1000 + 30000 = 36000
    p = Pricing().price(dep("gpt-5", provider="openai"), usage)
    assert p.exact == Decimal("0.036")


def test_gpt4o_mini_responses_api_usage():
    usage = Usage.from_openai({"input_tokens": 1_000_000, "output_tokens": 1_000_000,
                               "input_tokens_details": {"cached_tokens": 500_000},
                               "output_tokens_details": {"reasoning_tokens": 0}})
    # gpt-4o-mini: input $0.15, cached $0.075, output $0.60: 0.075 + 0.0375 + 0.6
    assert Pricing().price(dep("gpt-4o-mini", provider="openai"), usage).exact == Decimal("0.7125")


def test_tiered_price_uses_total_prompt_size():
    # sonnet 4.5: $3 / $0.30 / $3.75 / $15 up to 200k prompt tokens, $6 / $0.60 / $7.50 / $22.50 above.
    p = Pricing()
    below = Usage(input_tokens=100_000, cache_read_tokens=100_000, output_tokens=1_000)  # prompt = 200k exactly
    assert p.price(dep("claude-sonnet-4-5"), below).exact == Decimal("0.345")  # 300000+30000+15000
    above = Usage(input_tokens=100_001, cache_read_tokens=100_000, output_tokens=1_000)
    # 100001*6 + 100000*0.6 + 1000*22.5 = 600006 + 60000 + 22500 = 682506
    assert p.price(dep("claude-sonnet-4-5"), above).exact == Decimal("0.682506")


def test_time_of_day_price_is_resolved_for_the_request_time():
    # deepseek-chat (found through its api_base): $0.27/MTok input 00:30-16:30 UTC, $0.135 otherwise.
    d = dep("deepseek-chat", provider="openai", api_base="https://api.deepseek.com/v1")
    p = Pricing()
    peak = datetime(2026, 6, 1, 10, 0, tzinfo=UTC).timestamp()
    off = datetime(2026, 6, 1, 20, 0, tzinfo=UTC).timestamp()
    u = Usage(input_tokens=1_000_000)
    assert p.price(d, u, at=peak).exact == Decimal("0.27")
    assert p.price(d, u, at=off).exact == Decimal("0.135")
    assert p.price(d, u, at=peak + 30).exact == Decimal("0.27")


def test_price_lookup_is_cached_per_deployment(monkeypatch):
    calls = []
    real = pricing_mod._find_model
    monkeypatch.setattr(pricing_mod, "_find_model", lambda s, d: calls.append(d.id) or real(s, d))
    p = Pricing()
    d = dep("claude-haiku-4-5")
    for i in range(100):
        p.price(d, Usage(input_tokens=i + 1, output_tokens=1))
    assert calls == [d.id]


# ------------------------------------------------------------------------------ overrides & unknown
def test_unknown_model_is_flagged_not_zero():
    d = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted")
    p = Pricing().price(d, Usage(input_tokens=10, output_tokens=10))
    assert (p.cost, p.known, p.source) == (None, False, "unknown")


def test_no_tokens_costs_zero_even_when_unknown():
    d = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted")
    p = Pricing().price(d, Usage())
    assert (p.cost, p.known) == (0.0, True)


def test_overrides_price_an_unknown_model():
    d = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted",
            input_cost_per_token=2e-6, output_cost_per_token=8e-6)
    p = Pricing().price(d, Usage(input_tokens=1_000, cache_read_tokens=500, output_tokens=250))
    # no cache rate set: cache reads charged as input. 1500*2 + 250*8 = 5000 micro-dollars
    assert (p.exact, p.source) == (Decimal("0.005"), "override")
    d2 = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted",
             input_cost_per_token=2e-6, output_cost_per_token=8e-6, cache_read_input_token_cost=5e-7,
             cache_creation_input_token_cost=2.5e-6)
    p2 = Pricing().price(d2, Usage(input_tokens=1_000, cache_read_tokens=500, cache_write_tokens=400,
                                   output_tokens=250))
    assert p2.exact == Decimal("0.00525")  # 2000 + 250 + 1000 + 2000 micro-dollars


def test_partial_override_keeps_library_rates_for_the_rest():
    d = dep("claude-haiku-4-5", output_cost_per_token=1e-5)
    p = Pricing().price(d, Usage(input_tokens=1_000, cache_read_tokens=10_000, output_tokens=100))
    assert p.exact == Decimal("0.003")  # 1000*1 + 10000*0.1 + 100*10


def test_override_missing_a_needed_rate_is_unknown():
    d = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted",
            input_cost_per_token=1e-6)
    p = Pricing()
    assert p.price(d, Usage(input_tokens=10)).known
    assert not p.price(d, Usage(input_tokens=10, output_tokens=1)).known


def test_zero_override_is_a_known_zero():
    d = dep("my-finetune", provider="openai", api_base="http://10.1.2.3:8000/v1", location="trusted",
            input_cost_per_token=0.0, output_cost_per_token=0.0)
    assert Pricing().price(d, Usage(input_tokens=10, output_tokens=5)).cost == 0.0


# ------------------------------------------------------------------------------------ local & saved
def _config(*deps: Deployment, fallbacks: dict | None = None) -> Config:
    return Config(deployments=list(deps), router=RouterSettings(fallbacks=fallbacks or {}))


def test_local_detection():
    assert is_local(dep("gemma3:4b", provider="ollama"))
    assert is_local(dep("qwen", provider="openai", api_base="http://127.0.0.1:1234/v1"))
    assert is_local(dep("qwen", provider="openai", api_base="http://localhost:1234/v1"))
    assert not is_local(dep("qwen", provider="openai", api_base="http://127.0.0.1:1234/v1", location="trusted"))
    assert is_local(dep("gpt-5", provider="openai", location="local"))
    assert not is_local(dep("gpt-5", provider="openai"))


def test_local_costs_zero_and_records_what_the_tiers_cloud_model_would_cost():
    local = dep("gemma3:4b", provider="ollama", tier="helper")
    cloud = dep("claude-haiku-4-5", tier="helper")
    p = Pricing(_config(local, cloud))
    # Ollama usage as recorded: prompt_eval_count 1500, eval_count 300
    usage = Usage(input_tokens=1_500, output_tokens=300)
    price = p.price(local, usage)
    assert (price.cost, price.known, price.source) == (0.0, True, "local")
    assert p.cloud_equivalent("helper") is cloud
    assert p.saved(local, usage) == 0.003  # 1500*1 + 300*5 micro-dollars on haiku
    assert p.saved(cloud, usage) == 0.0


def test_saved_uses_first_priced_cloud_deployment_then_fallback_tiers():
    local = dep("gemma3:4b", provider="ollama", tier="helper")
    unpriced = dep("mystery", provider="openai", api_base="https://llm.example.com/v1", tier="helper")
    coder = dep("gpt-4o-mini", provider="openai", tier="coder")
    p = Pricing(_config(local, unpriced, coder, fallbacks={"helper": ["coder"]}))
    assert p.cloud_equivalent("helper") is coder
    assert p.saved(local, Usage(input_tokens=1_000_000)) == 0.15
    lonely = Pricing(_config(local))
    assert lonely.cloud_equivalent("helper") is None
    assert lonely.saved(local, Usage(input_tokens=10)) == 0.0


def test_fill_record_for_cloud_local_cache_hit_and_unreached():
    local = dep("gemma3:4b", provider="ollama", tier="helper")
    cloud = dep("claude-haiku-4-5", tier="helper")
    p = Pricing(_config(local, cloud))
    usage = Usage(input_tokens=2_000, output_tokens=1_000, cache_read_tokens=90_000, cache_write_tokens=10_000,
                  reasoning_tokens=7)

    def rec(**kw) -> UsageRecord:
        return UsageRecord(request_id="r", ts=1.8e9, agent="a", tier="helper", requested_model="helper",
                           deployment="", provider="", model="", dialect_in="anthropic", **{"status": "ok", **kw})

    r = rec()
    p.fill(r, cloud, usage)
    assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.reasoning_tokens) == \
        (2_000, 1_000, 90_000, 10_000, 7)
    assert (r.cost, r.saved, r.price_known) == (0.0285, 0.0, True)
    r = rec()
    p.fill(r, local, usage)
    assert (r.cost, r.saved, r.price_known) == (0.0, 0.0285, True)
    r = rec(cache_hit=True)
    p.fill(r, cloud, usage)
    assert (r.cost, r.saved, r.price_known) == (0.0, 0.0285, True)
    r = rec(cache_hit=True)
    p.fill(r, local, usage)
    assert (r.cost, r.saved) == (0.0, 0.0285)
    r = rec(status="refused")
    p.fill(r, None, Usage())
    assert (r.cost, r.saved, r.price_known) == (0.0, 0.0, True)
    unknown = dep("mystery", provider="openai", api_base="https://llm.example.com/v1")
    r = rec()
    p.fill(r, unknown, usage)
    assert (r.cost, r.price_known) == (None, False)


def test_streamed_and_buffered_usage_cost_the_same():
    # Anthropic stream: message_start carries the input side (and output_tokens 1), message_delta the final
    # output count; the decoder merges them. The buffered response carries all of it at once.
    streamed = anthropic_usage({"input_tokens": 2_000, "cache_read_input_tokens": 90_000,
                                "cache_creation_input_tokens": 10_000, "output_tokens": 1})
    streamed.merge(anthropic_usage({"output_tokens": 1_000}))
    buffered = anthropic_usage({"input_tokens": 2_000, "cache_read_input_tokens": 90_000,
                                "cache_creation_input_tokens": 10_000, "output_tokens": 1_000})
    p = Pricing()
    a, b = p.price(dep("claude-haiku-4-5"), streamed), p.price(dep("claude-haiku-4-5"), buffered)
    assert a == b and a.exact == Decimal("0.0285")


# ------------------------------------------------------------------------- agreement with the library
MODELS = [("anthropic", "claude-haiku-4-5"), ("anthropic", "claude-opus-4-1"), ("anthropic", "claude-sonnet-4-5"),
          ("anthropic", "claude-opus-4-5"), ("openai", "gpt-5"), ("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"),
          ("openai", "gpt-5-mini")]


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from(MODELS), fresh=st.integers(0, 400_000), read=st.integers(0, 300_000),
       write=st.integers(0, 100_000), out=st.integers(0, 100_000))
def test_matches_genai_prices_calc_price(model, fresh, read, write, out):
    provider, name = model
    usage = Usage(input_tokens=fresh, cache_read_tokens=read, cache_write_tokens=write, output_tokens=out)
    when = datetime(2026, 6, 1, tzinfo=UTC)
    ours = PRICING.price(dep(name, provider=provider), usage, at=when.timestamp())
    theirs = calc_price(GUsage(input_tokens=fresh + read + write, cache_read_tokens=read,
                               cache_write_tokens=write, output_tokens=out),
                        name, provider_id=provider, genai_request_timestamp=when)
    if usage.total_tokens == 0:
        assert ours.exact == 0
    else:
        assert ours.exact == theirs.total_price


PRICING = Pricing()


@pytest.mark.parametrize("when,expected", [
    # claude-opus-4-6 had 200k-tier prices until 2026-03-13, flat $5/MTok input after.
    (datetime(2026, 1, 10, tzinfo=UTC), Decimal("2.5")),  # 250k tokens at $10
    (datetime(2026, 6, 10, tzinfo=UTC), Decimal("1.25")),  # 250k tokens at $5
])
def test_dated_prices(when, expected):
    p = Pricing()
    assert p.price(dep("claude-opus-4-6"), Usage(input_tokens=250_000), at=when.timestamp()).exact == expected
