"""Issue 4 end to end, budgets and agents: spending limits per tier, per agent and overall (warning at the
threshold; over the limit refused with a 429 in each client's own dialect, or downgraded to a cheaper tier),
per-agent keys with their own records, and per-agent allowed tiers.

Spend is made with gpt-4o-mini at genai-prices' rates ($0.15 input / $0.60 output per million tokens):
one `SPEND` reply (1,000,000 input + 100,000 output tokens) costs exactly $0.21.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import anthropic
import openai
import pytest

from app.config.loader import parse_config
from app.core import Tiergate
from app.errors import ConfigError
from app.events import BudgetExceededEvent, BudgetWarning, Event
from app.ledger.aggregates import period_bounds
from app.secrets.store import SecretStore
from tests.fakes import Reply
from tests.proxy.conftest import ENV

BASE = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}"}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
  cache:
    enabled: false
"""

CODER_DAY = BASE + """
  budgets:
    warn_at: 0.5
    tiers:
      coder:
        period: day
        limit: 0.40
"""

MINI = "coder/openai/gpt-4o-mini"
MSG = [{"role": "user", "content": "hello there"}]
SPEND_COST = 0.21


def spend() -> Reply:
    return Reply(text="ok", input_tokens=1_000_000, output_tokens=100_000)


def events(core: Any, *kinds: type[Event]) -> list[Event]:
    seen: list[Event] = []
    for kind in kinds:
        core.bus.subscribe(seen.append, kind)
    return seen


async def spend_twice(p: Any, fake_openai: Any, key: str | None = None) -> None:
    """Two $0.21 requests on coder: $0.42 spent, over a $0.40 limit."""
    for i in range(2):
        fake_openai.replies.append(spend())
        await p.openai(key).chat.completions.create(model="coder", messages=[{"role": "user", "content": f"q{i}"}])


def reset_text() -> str:
    """How the refusal names the reset time of a daily budget: next local midnight."""
    end = datetime.fromtimestamp(period_bounds("day")[1]).astimezone()
    return f"It resets at {end.strftime('%H:%M on %a %d %b %Y')}"


async def records(p: Any) -> list[Any]:
    await p.core.ledger.flush()
    return await p.core.ledger.records()


# --------------------------------------------------------------------------------------- warning, refusal
async def test_warning_at_the_threshold_then_exceeded(proxy, fake_openai):
    p = await proxy(CODER_DAY)
    seen = events(p.core, BudgetWarning, BudgetExceededEvent)
    fake_openai.replies.append(spend())
    await p.openai().chat.completions.create(model="coder", messages=MSG)
    [warning] = seen
    assert isinstance(warning, BudgetWarning)
    assert (warning.budget, warning.spent, warning.limit) == ("tier:coder/day", SPEND_COST, 0.40)
    assert warning.fraction == pytest.approx(0.525)
    assert warning.resets_at == period_bounds("day")[1]
    fake_openai.replies.append(spend())
    await p.openai().chat.completions.create(model="coder", messages=[{"role": "user", "content": "again"}])
    assert len(seen) == 2 and isinstance(seen[1], BudgetExceededEvent)
    assert (seen[1].budget, seen[1].action, seen[1].limit) == ("tier:coder/day", "refuse", 0.40)
    assert seen[1].spent == pytest.approx(0.42)
    # other tiers are not affected
    await p.openai().chat.completions.create(model="orchestrator", messages=MSG)


def _assert_refusal_message(message: str) -> None:
    assert "tier:coder/day" in message
    assert "$0.42 spent of $0.40 this day" in message
    assert reset_text() in message


def _assert_retry_after(headers: Any) -> None:
    retry = int(headers["retry-after"])
    assert 0 < retry <= period_bounds("day")[1] - time.time() + 2


async def test_over_budget_openai_chat_is_a_rate_limit_error_naming_the_budget(proxy, fake_openai):
    p = await proxy(CODER_DAY)
    await spend_twice(p, fake_openai)
    o = p.openai()
    with pytest.raises(openai.RateLimitError) as e:
        await o.chat.completions.create(model="coder", messages=MSG)
    err = e.value
    assert err.status_code == 429
    assert err.body["code"] == "budget_exceeded"
    _assert_refusal_message(err.body["message"])
    _assert_retry_after(err.response.headers)
    with pytest.raises(openai.RateLimitError):  # a stream is refused before it starts
        await o.chat.completions.create(model="coder", messages=MSG, stream=True)
    assert len(fake_openai.requests) == 2  # the upstream never saw the refused requests
    recs = await records(p)
    assert [(r.status, r.http_status, r.error) for r in recs[2:]] == [("refused", 429, "budget_exceeded")] * 2
    assert [r.cost for r in recs] == [SPEND_COST, SPEND_COST, 0.0, 0.0]


async def test_over_budget_anthropic_sdk_gets_anthropics_error_shape(proxy, fake_openai):
    p = await proxy(CODER_DAY)
    await spend_twice(p, fake_openai)
    a = p.anthropic()
    with pytest.raises(anthropic.RateLimitError) as e:
        await a.messages.create(model="coder", max_tokens=10, messages=MSG)
    err = e.value
    assert err.status_code == 429
    assert err.body["type"] == "error" and err.body["error"]["type"] == "rate_limit_error"
    _assert_refusal_message(err.body["error"]["message"])
    _assert_retry_after(err.response.headers)
    with pytest.raises(anthropic.RateLimitError):
        async with a.messages.stream(model="coder", max_tokens=10, messages=MSG) as s:
            await s.get_final_message()
    assert len(fake_openai.requests) == 2


async def test_over_budget_responses_api_is_a_rate_limit_error(proxy, fake_openai):
    p = await proxy(CODER_DAY)
    await spend_twice(p, fake_openai)
    with pytest.raises(openai.RateLimitError) as e:
        await p.openai().responses.create(model="coder", input="hello there")
    err = e.value
    assert err.status_code == 429 and err.body["code"] == "budget_exceeded"
    _assert_refusal_message(err.body["message"])
    _assert_retry_after(err.response.headers)
    with pytest.raises(openai.RateLimitError):
        await p.openai().responses.create(model="coder", input="hello there", stream=True)
    assert len(fake_openai.requests) == 2


async def test_budget_is_seeded_from_the_ledger_after_a_restart(proxy, fake_openai, tmp_path):
    p = await proxy(CODER_DAY)
    await spend_twice(p, fake_openai)
    await p.core.stop()
    text = CODER_DAY.format(openai=fake_openai.base_url, anthropic="http://127.0.0.1:9", ollama="http://127.0.0.1:9")
    core = Tiergate(parse_config(text, str(tmp_path / "config.yaml")), data_dir=p.core.data_dir, env=ENV,
                    secret_store=SecretStore())
    await core.start()
    try:
        client = openai.AsyncOpenAI(base_url=core.base_url + "/v1", api_key=p.key, max_retries=0)
        with pytest.raises(openai.RateLimitError) as e:
            await client.chat.completions.create(model="coder", messages=MSG)
        _assert_refusal_message(e.value.body["message"])
        await client.close()
    finally:
        await core.stop()


# ------------------------------------------------------------------------------------------- downgrade
DOWNGRADE = BASE + """
  budgets:
    tiers:
      orchestrator:
        period: day
        limit: 0.40
        on_exceed:
          downgrade_to: helper
"""


async def test_over_budget_downgrades_to_the_cheaper_tier(proxy, fake_anthropic, fake_ollama):
    p = await proxy(DOWNGRADE)
    seen = events(p.core, BudgetExceededEvent)
    # $0.30 input + $0.15 output at claude-opus-4-1's $15 / $75 per million: $0.45, over the $0.40 limit
    fake_anthropic.replies.append(Reply(text="expensive", input_tokens=20_000, output_tokens=2_000))
    first = await p.openai().chat.completions.with_raw_response.create(model="orchestrator", messages=MSG)
    assert first.headers["x-tiergate-tier"] == "orchestrator"
    assert [(e.budget, e.action) for e in seen] == [("tier:orchestrator/day", "downgrade:helper")]

    raw = await p.openai().chat.completions.with_raw_response.create(model="orchestrator", messages=MSG)
    assert raw.parse().choices[0].message.content == "hello there"
    assert raw.headers["x-tiergate-tier"] == "helper"
    assert raw.headers["x-tiergate-deployment"] == "helper/ollama/llama3.2:latest"
    araw = await p.anthropic().messages.with_raw_response.create(model="orchestrator", max_tokens=10, messages=MSG)
    assert araw.headers["x-tiergate-tier"] == "helper" and (await araw.parse()).content[0].text == "hello there"
    async with p.anthropic().messages.stream(model="orchestrator", max_tokens=10, messages=MSG) as s:
        assert (await s.get_final_message()).content[0].text == "hello there"
    assert len(fake_anthropic.requests) == 1
    assert [r.path for r in fake_ollama.requests if r.path == "/api/chat"] == ["/api/chat"] * 3

    recs = await records(p)
    assert recs[0].cost == 0.45
    assert [(r.requested_model, r.tier, r.provider, r.status, r.cost) for r in recs[1:]] == \
        [("orchestrator", "helper", "ollama", "ok", 0.0)] * 3


# ------------------------------------------------------------------------------------ agents and overall
AGENT_AND_OVERALL = BASE + """
  budgets:
    agents:
      tester:
        period: day
        limit: 0.40
    overall:
      - period: month
        limit: 0.80
"""


async def test_agent_budget_refuses_only_that_agent_and_overall_budget_refuses_everyone(proxy, fake_openai):
    p = await proxy(AGENT_AND_OVERALL)
    other = p.core.agents.add("other")
    await spend_twice(p, fake_openai)  # tester: $0.42 of its $0.40
    with pytest.raises(openai.RateLimitError) as e:
        await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert "agent:tester/day" in e.value.body["message"]
    await spend_twice(p, fake_openai, key=other)  # other is still served: $0.84 overall, over $0.80
    with pytest.raises(openai.RateLimitError) as e:
        await p.openai(other).chat.completions.create(model="helper", messages=MSG)
    assert "overall/month" in e.value.body["message"]
    assert "$0.84 spent of $0.80 this month" in e.value.body["message"]
    recs = await records(p)
    assert [(r.agent, r.status) for r in recs] == [("tester", "ok"), ("tester", "ok"), ("tester", "refused"),
                                                   ("other", "ok"), ("other", "ok"), ("other", "refused")]


async def test_budget_written_in_the_agent_settings_is_enforced_or_rejected(proxy, fake_openai):
    """`tiergate_settings.agents.NAME.budget` is accepted by the agent settings (app.agents). A limit written
    there must either be enforced or be refused when the config loads — never accepted and ignored."""
    config = BASE + """
  agents:
    tester:
      budget:
        period: day
        limit: 0.40
"""
    try:
        p = await proxy(config)
    except ConfigError:
        return  # rejected with a located error: acceptable
    await spend_twice(p, fake_openai)
    with pytest.raises(openai.RateLimitError):
        await p.openai().chat.completions.create(model="coder", messages=MSG)


# ------------------------------------------------------------------------------------------ agent keys
async def test_two_agents_each_get_their_own_records(proxy, fake_openai, fake_anthropic):
    p = await proxy(BASE)
    aider = p.core.agents.add("aider")
    codex = p.core.agents.add("codex")
    fake_openai.replies.extend([Reply(input_tokens=1_000, output_tokens=100), Reply(input_tokens=2_000, output_tokens=200)])
    await p.openai(aider).chat.completions.create(model="coder", messages=MSG)
    await p.anthropic(codex).messages.create(model="coder", max_tokens=10, messages=MSG)
    await p.openai(codex).chat.completions.create(model="helper", messages=MSG)
    recs = await records(p)
    assert [(r.agent, r.tier, r.input_tokens, r.output_tokens) for r in recs] == [
        ("aider", "coder", 1_000, 100), ("codex", "coder", 2_000, 200), ("codex", "helper", 3, 3)]
    rows = {r.key: r for r in await p.core.ledger.summary("day", "agent")}
    assert (rows["aider"].requests, rows["aider"].cost) == (1, (1_000 * 0.15 + 100 * 0.6) / 1e6)
    assert (rows["codex"].requests, rows["codex"].input_tokens) == (2, 2_003)
    status, _, body = await p.request("GET", "/tiergate/usage?by=agent", key=p.master)
    assert status == 200 and {r["key"]: r["requests"] for r in body["rows"]} == {"aider": 1, "codex": 2}
    # a revoked key stops working at once
    p.core.agents.revoke("aider")
    with pytest.raises(openai.AuthenticationError):
        await p.openai(aider).chat.completions.create(model="coder", messages=MSG)


ALLOWED = BASE + """
  agents:
    limited:
      allowed_tiers: [helper]
"""


async def test_allowed_tiers_refuse_other_tiers_with_403_in_each_dialect(proxy, fake_openai):
    p = await proxy(ALLOWED)
    limited = p.core.agents.add("limited")
    with pytest.raises(openai.PermissionDeniedError) as e:
        await p.openai(limited).chat.completions.create(model="coder", messages=MSG)
    assert "'limited'" in e.value.body["message"] and "'coder'" in e.value.body["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as ea:
        await p.anthropic(limited).messages.create(model="orchestrator", max_tokens=10, messages=MSG)
    assert ea.value.body["error"]["type"] == "permission_error"
    with pytest.raises(openai.PermissionDeniedError):
        await p.openai(limited).responses.create(model="coder", input="hi")
    r = await p.openai(limited).chat.completions.create(model="helper", messages=MSG)
    assert r.choices[0].message.content == "hello there"
    await p.openai().chat.completions.create(model="coder", messages=MSG)  # other agents are not limited
    assert len(fake_openai.requests) == 1
    recs = await records(p)
    assert [(r.agent, r.requested_model, r.status, r.http_status) for r in recs] == [
        ("limited", "coder", "refused", 403), ("limited", "orchestrator", "refused", 403),
        ("limited", "coder", "refused", 403), ("limited", "helper", "ok", 200), ("tester", "coder", "ok", 200)]
