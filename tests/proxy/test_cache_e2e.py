"""Issue 4 end to end, the response cache: an identical request within the TTL is answered from the cache
(the upstream is not asked again), recorded as a hit that cost nothing and saved what the original cost;
entries are per agent; `Cache-Control: no-cache` bypasses; streamed and buffered copies share one entry and
each client gets a proper answer in its own form (stream or not, OpenAI or Anthropic)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes import Reply

CONFIG = """
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
  fallbacks: {{helper: [coder]}}
tiergate_settings:
  port: 0
"""

MSG = [{"role": "user", "content": "what is the weather in Paris?"}]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather for a city",
                    "input_schema": TOOLS_OPENAI[0]["function"]["parameters"]}]
ANSWER = Reply(text="Let me check that for you.", tool_calls=[("get_weather", '{"city": "Paris"}')], chunks=4,
               input_tokens=1_000, output_tokens=100)
# 1,000 input + 100 output tokens at genai-prices' rates
OPUS_COST = float((1_000 * Decimal("15") + 100 * Decimal("75")) / 1_000_000)  # $0.0225
MINI_COST = float((1_000 * Decimal("0.15") + 100 * Decimal("0.6")) / 1_000_000)  # $0.00021


def upstream_chats(fake: Any) -> int:
    return sum(1 for r in fake.requests if r.path in ("/v1/chat/completions", "/v1/messages", "/api/chat",
                                                      "/v1/responses"))


async def records(p: Any) -> list[Any]:
    await p.core.ledger.flush()
    return await p.core.ledger.records()


async def openai_stream(client: Any, **kw: Any) -> tuple[str, list[tuple[str, str, dict]], str | None]:
    """Text, tool calls (id, name, arguments) and finish reason of an OpenAI SDK stream."""
    stream = await client.chat.completions.create(stream=True, **kw)
    text, calls, finish = "", {}, None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or ():
                c = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                c["id"] = tc.id or c["id"]
                c["name"] += (tc.function.name or "") if tc.function else ""
                c["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    return text, [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()], finish


def openai_message(r: Any) -> tuple[str, list[tuple[str, str, dict]], str | None]:
    m = r.choices[0].message
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or ()]
    return m.content or "", calls, r.choices[0].finish_reason


def anthropic_message(m: Any) -> tuple[str, list[tuple[str, str, dict]], str | None]:
    text = "".join(b.text for b in m.content if b.type == "text")
    calls = [(b.id, b.name, b.input) for b in m.content if b.type == "tool_use"]
    return text, calls, m.stop_reason


# ------------------------------------------------------------------------------------------ hits and TTL
@pytest.mark.parametrize("tier", ["orchestrator", "coder", "helper"])
async def test_identical_request_is_answered_from_the_cache_at_no_cost(proxy, tier, fake_openai, fake_anthropic,
                                                                       fake_ollama):
    p = await proxy(CONFIG)
    fake = {"orchestrator": fake_anthropic, "coder": fake_openai, "helper": fake_ollama}[tier]
    fake.replies.append(Reply(text="It is sunny.", input_tokens=1_000, output_tokens=100))
    o = p.openai()
    first = await o.chat.completions.with_raw_response.create(model=tier, messages=MSG)
    second = await o.chat.completions.with_raw_response.create(model=tier, messages=MSG)
    assert upstream_chats(fake) == 1
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content == "It is sunny."
    assert second.parse().usage.prompt_tokens == 1_000 and second.parse().usage.completion_tokens == 100
    assert second.headers["x-tiergate-tier"] == tier
    original, hit = await records(p)
    assert not original.cache_hit and hit.cache_hit
    assert (hit.status, hit.cost, hit.price_known, hit.provider, hit.tier) == ("ok", 0.0, True, "cache", tier)
    assert (hit.input_tokens, hit.output_tokens) == (original.input_tokens, original.output_tokens) == (1_000, 100)
    # genai-prices' rates per million tokens: opus-4-1 $15 / $75, gpt-4o-mini $0.15 / $0.60; a local answer
    # (helper) is compared with its tier's cloud equivalent (helper falls back to coder: gpt-4o-mini)
    expected_saved = {"orchestrator": OPUS_COST, "coder": MINI_COST, "helper": MINI_COST}[tier]
    assert hit.saved == (original.saved if tier == "helper" else original.cost) == expected_saved
    rows = {r.key: r for r in await p.core.ledger.summary("day", "tier")}
    assert (rows[tier].requests, rows[tier].cache_hits) == (2, 1)


async def test_entries_expire_after_the_ttl(proxy, fake_openai):
    p = await proxy(CONFIG + "  cache:\n    ttl: 0.5\n")
    o = p.openai()
    await o.chat.completions.create(model="coder", messages=MSG)
    await o.chat.completions.create(model="coder", messages=MSG)
    assert upstream_chats(fake_openai) == 1
    await asyncio.sleep(0.6)
    await o.chat.completions.create(model="coder", messages=MSG)
    assert upstream_chats(fake_openai) == 2
    assert [r.cache_hit for r in await records(p)] == [False, True, False]


async def test_a_different_request_is_not_a_hit(proxy, fake_openai):
    p = await proxy(CONFIG)
    o = p.openai()
    await o.chat.completions.create(model="coder", messages=MSG)
    await o.chat.completions.create(model="coder", messages=MSG, temperature=0.1)
    await o.chat.completions.create(model="coder", messages=MSG, max_tokens=7)
    await o.chat.completions.create(model="coder", messages=[{"role": "user", "content": "and in Rome?"}])
    assert upstream_chats(fake_openai) == 4


async def test_cache_is_scoped_per_agent(proxy, fake_openai):
    p = await proxy(CONFIG)
    other = p.core.agents.add("other")
    fake_openai.replies.extend([Reply(text="for tester"), Reply(text="for other")])
    a = await p.openai().chat.completions.create(model="coder", messages=MSG)
    b = await p.openai(other).chat.completions.create(model="coder", messages=MSG)
    assert (a.choices[0].message.content, b.choices[0].message.content) == ("for tester", "for other")
    assert upstream_chats(fake_openai) == 2
    a2 = await p.openai().chat.completions.create(model="coder", messages=MSG)
    b2 = await p.openai(other).chat.completions.create(model="coder", messages=MSG)
    assert (a2.choices[0].message.content, b2.choices[0].message.content) == ("for tester", "for other")
    assert upstream_chats(fake_openai) == 2
    assert [(r.agent, r.cache_hit) for r in await records(p)] == [
        ("tester", False), ("other", False), ("tester", True), ("other", True)]


async def test_no_cache_header_bypasses_the_cache_and_refreshes_it(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.extend([Reply(text="old"), Reply(text="fresh")])
    o = p.openai()
    assert (await o.chat.completions.create(model="coder", messages=MSG)).choices[0].message.content == "old"
    fresh = await o.chat.completions.create(model="coder", messages=MSG, extra_headers={"Cache-Control": "no-cache"})
    assert fresh.choices[0].message.content == "fresh"
    assert upstream_chats(fake_openai) == 2
    again = await o.chat.completions.create(model="coder", messages=MSG)
    assert again.choices[0].message.content == "fresh" and upstream_chats(fake_openai) == 2
    assert [r.cache_hit for r in await records(p)] == [False, False, True]


# ------------------------------------------------------------------------------------ streams and the cache
async def test_buffered_answer_is_replayed_as_an_openai_stream(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(ANSWER)
    o = p.openai()
    buffered = openai_message(await o.chat.completions.create(model="coder", messages=MSG, tools=TOOLS_OPENAI))
    streamed = await openai_stream(o, model="coder", messages=MSG, tools=TOOLS_OPENAI)
    assert streamed == buffered
    assert streamed[0] == "Let me check that for you." and streamed[2] == "tool_calls"
    assert [(name, args) for _, name, args in streamed[1]] == [("get_weather", {"city": "Paris"})]
    assert upstream_chats(fake_openai) == 1
    hit = (await records(p))[1]
    assert hit.cache_hit and hit.stream and hit.ttft_ms is not None and hit.cost == 0.0


async def test_streamed_answer_is_replayed_to_a_buffered_openai_request(proxy, fake_anthropic):
    p = await proxy(CONFIG)
    fake_anthropic.replies.append(ANSWER)
    o = p.openai()
    streamed = await openai_stream(o, model="orchestrator", messages=MSG, tools=TOOLS_OPENAI)
    buffered = openai_message(await o.chat.completions.create(model="orchestrator", messages=MSG,
                                                               tools=TOOLS_OPENAI))
    assert buffered == streamed
    assert buffered[0] == "Let me check that for you." and [c[1:] for c in buffered[1]] == [
        ("get_weather", {"city": "Paris"})]
    assert upstream_chats(fake_anthropic) == 1
    original, hit = await records(p)
    assert (original.stream, hit.stream, hit.cache_hit) == (True, False, True)
    assert hit.saved == original.cost == OPUS_COST


async def test_buffered_answer_is_replayed_as_an_anthropic_stream(proxy, fake_anthropic):
    p = await proxy(CONFIG)
    fake_anthropic.replies.append(ANSWER)
    a = p.anthropic()
    buffered = await a.messages.create(model="orchestrator", max_tokens=500, messages=MSG, tools=TOOLS_ANTHROPIC)
    async with a.messages.stream(model="orchestrator", max_tokens=500, messages=MSG, tools=TOOLS_ANTHROPIC) as s:
        texts = [t async for t in s.text_stream]
        streamed = await s.get_final_message()
    assert "".join(texts) == "Let me check that for you."
    assert anthropic_message(streamed) == anthropic_message(buffered)
    assert [c[1:] for c in anthropic_message(streamed)[1]] == [("get_weather", {"city": "Paris"})]
    assert streamed.stop_reason == "tool_use"
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (1_000, 100)
    assert upstream_chats(fake_anthropic) == 1


async def test_streamed_answer_is_replayed_to_a_buffered_anthropic_request(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(ANSWER)
    a = p.anthropic()
    async with a.messages.stream(model="coder", max_tokens=500, messages=MSG, tools=TOOLS_ANTHROPIC) as s:
        streamed = await s.get_final_message()
    buffered = await a.messages.create(model="coder", max_tokens=500, messages=MSG, tools=TOOLS_ANTHROPIC)
    assert anthropic_message(buffered) == anthropic_message(streamed)
    assert anthropic_message(buffered)[0] == "Let me check that for you."
    assert upstream_chats(fake_openai) == 1
    assert [(r.stream, r.cache_hit) for r in await records(p)] == [(True, False), (False, True)]


# ------------------------------------------------------------------------------------------ across dialects
SYSTEM = "You are terse."


async def test_openai_then_anthropic_sdk_form_of_the_same_request_share_the_entry(proxy, fake_anthropic):
    """The cache key is computed from the canonical request (app.router.cache): the same conversation sent
    as OpenAI Chat and then as Anthropic Messages by the official SDKs is one entry."""
    p = await proxy(CONFIG)
    fake_anthropic.replies.append(Reply(text="Sunny, 21C.", input_tokens=1_000, output_tokens=100))
    await p.openai().chat.completions.create(model="orchestrator", max_tokens=300,
                                             messages=[{"role": "system", "content": SYSTEM}, *MSG])
    m = await p.anthropic().messages.create(model="orchestrator", max_tokens=300, system=SYSTEM, messages=MSG)
    assert m.content[0].text == "Sunny, 21C."
    assert upstream_chats(fake_anthropic) == 1
    assert [(r.dialect_in, r.cache_hit) for r in await records(p)] == [("openai_chat", False), ("anthropic", True)]


async def test_openai_then_raw_anthropic_form_of_the_same_request_share_the_entry(proxy, fake_anthropic):
    """The same, with a hand-written Messages request that sends no anthropic-version header."""
    p = await proxy(CONFIG)
    fake_anthropic.replies.append(Reply(text="Sunny, 21C.", input_tokens=1_000, output_tokens=100))
    await p.openai().chat.completions.create(model="orchestrator", max_tokens=300,
                                             messages=[{"role": "system", "content": SYSTEM}, *MSG])
    status, headers, body = await p.request("POST", "/v1/messages", json={
        "model": "orchestrator", "max_tokens": 300, "system": SYSTEM, "messages": MSG})
    assert status == 200 and body["content"][0]["text"] == "Sunny, 21C."
    assert body["usage"]["input_tokens"] == 1_000
    assert upstream_chats(fake_anthropic) == 1
