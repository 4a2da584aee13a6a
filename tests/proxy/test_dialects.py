"""Inbound dialect × upstream dialect, with the official SDKs as clients: Anthropic Messages and OpenAI
Responses in, OpenAI / Anthropic / Ollama / Responses-only upstreams out, streaming and not, with tools."""

from __future__ import annotations

import json

import anthropic
import pytest

from tests.fakes import Reply

MATRIX = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: codex
    litellm_params: {{model: openai/gpt-5-codex, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 32768, max_tokens: 2048}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
  model_aliases:
    "claude-*haiku*": helper
    "claude-sonnet-4-5": coder
"""

TIERS = ["orchestrator", "coder", "codex", "helper"]
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
WEATHER_FN = {"type": "function", "name": "get_weather", "description": "Weather for a city",
              "parameters": WEATHER["input_schema"]}


def _upstream(tier, fake_openai, fake_anthropic, fake_ollama):
    return {"orchestrator": fake_anthropic, "coder": fake_openai, "codex": fake_openai, "helper": fake_ollama}[tier]


# ------------------------------------------------------------------------------- Anthropic Messages in
@pytest.mark.parametrize("tier", TIERS)
async def test_anthropic_sdk_messages(proxy, tier):
    p = await proxy(MATRIX)
    msg = await p.anthropic().messages.create(model=tier, max_tokens=100,
                                              messages=[{"role": "user", "content": "hello there"}])
    assert msg.content[0].text == "hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 3 and msg.usage.output_tokens == 3


@pytest.mark.parametrize("tier", TIERS)
async def test_anthropic_sdk_stream_with_tool_use(proxy, tier, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(MATRIX)
    _upstream(tier, fake_openai, fake_anthropic, fake_ollama).replies.append(
        Reply(text="Checking.", tool_calls=[("get_weather", '{"city": "Paris"}')], chunks=5))
    async with p.anthropic().messages.stream(model=tier, max_tokens=200, tools=[WEATHER],
                                             system=[{"type": "text", "text": "be brief",
                                                      "cache_control": {"type": "ephemeral"}}],
                                             messages=[{"role": "user", "content": "weather in Paris?"}]) as s:
        final = await s.get_final_message()
    tool = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert [(t.name, t.input) for t in tool] == [("get_weather", {"city": "Paris"})]
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


@pytest.mark.parametrize("tier", TIERS)
async def test_anthropic_tool_result_round_trip(proxy, tier, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(MATRIX)
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"}]},
    ]
    msg = await p.anthropic().messages.create(model=tier, max_tokens=100, tools=[WEATHER], messages=messages)
    assert msg.content[0].type == "text"
    sent = _upstream(tier, fake_openai, fake_anthropic, fake_ollama).requests[-1].json
    dumped = json.dumps(sent)
    assert "18C" in dumped and "get_weather" in dumped


async def test_claude_code_shaped_request_to_openai_upstream(proxy, fake_openai):
    """Claude Code: ?beta=true, anthropic-beta, thinking adaptive, context_management, output_config,
    cache_control, a huge max_tokens — none of it may reach (and break) an OpenAI upstream."""
    p = await proxy(MATRIX)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 128000, "stream": True,
            "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
            "output_config": {"effort": "high"}, "metadata": {"user_id": "session-1"},
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "tools": [WEATHER], "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]}
    status, headers, text = await p.request(
        "POST", "/v1/messages?beta=true", json=body,
        headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
                 "anthropic-version": "2023-06-01", "x-claude-code-session-id": "abc"})
    assert status == 200, text
    assert headers["x-tiergate-tier"] == "coder"
    assert "event: message_stop" in text
    sent = fake_openai.requests[-1].json
    assert not {"thinking", "context_management", "output_config", "metadata"} & set(sent)


async def test_claude_code_betas_are_forwarded_to_anthropic(proxy, fake_anthropic):
    p = await proxy(MATRIX)
    async with p.anthropic(default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}).messages.stream(
            model="orchestrator", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        await s.get_final_message()
    sent = fake_anthropic.requests[-1]
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["x-api-key"] == fake_anthropic.api_key  # Tiergate's key, not the agent's


async def test_haiku_background_calls_land_on_the_helper_tier(proxy, fake_ollama):
    p = await proxy(MATRIX)
    raw = await p.anthropic().messages.with_raw_response.create(
        model="claude-haiku-4-5-20251001", max_tokens=50, messages=[{"role": "user", "content": "title?"}])
    assert raw.headers["x-tiergate-tier"] == "helper"
    assert [r.path for r in fake_ollama.requests].count("/api/chat") == 1


async def test_anthropic_errors_come_in_anthropic_shape(proxy):
    p = await proxy(MATRIX)
    with pytest.raises(anthropic.NotFoundError) as e:
        await p.anthropic().messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    status, _, body = await p.request("POST", "/v1/messages", data=b"{bad", headers={"content-type": "application/json"})
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


async def test_count_tokens_exact_from_anthropic_and_estimated_elsewhere(proxy, fake_anthropic):
    p = await proxy(MATRIX)
    fake_anthropic.token_count = 1234
    c = p.anthropic()
    exact = await c.messages.with_raw_response.count_tokens(model="orchestrator",
                                                            messages=[{"role": "user", "content": "hello"}])
    assert (await exact.parse()).input_tokens == 1234 and exact.headers["x-tiergate-estimate"] == "false"
    est = await c.messages.with_raw_response.count_tokens(model="coder", messages=[{"role": "user", "content": "x" * 400}])
    assert est.headers["x-tiergate-estimate"] == "true" and 100 <= (await est.parse()).input_tokens <= 120


# -------------------------------------------------------------------------------- OpenAI Responses in
@pytest.mark.parametrize("tier", TIERS)
async def test_openai_sdk_responses(proxy, tier):
    p = await proxy(MATRIX)
    r = await p.openai().responses.create(model=tier, input="hello there", instructions="be brief")
    assert r.output_text == "hello there"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens == 3


@pytest.mark.parametrize("tier", TIERS)
async def test_openai_sdk_responses_stream_with_function_call(proxy, tier, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(MATRIX)
    _upstream(tier, fake_openai, fake_anthropic, fake_ollama).replies.append(
        Reply(text="", tool_calls=[("get_weather", '{"city": "Oslo"}')], chunks=4))
    async with p.openai().responses.stream(model=tier, input=[
            {"role": "developer", "content": "use tools"},
            {"role": "user", "content": "weather in Oslo?"}], tools=[WEATHER_FN]) as s:
        final = await s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert final.usage is not None and final.usage.output_tokens > 0


async def test_codex_shaped_request_to_anthropic(proxy, fake_anthropic):
    """Codex CLI: developer messages, store false, include encrypted reasoning, non-function tools."""
    p = await proxy(MATRIX)
    body = {"model": "orchestrator", "stream": True, "store": False, "instructions": "You are Codex.",
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "client_metadata": {"a": "b"},
            "tools": [WEATHER_FN, {"type": "web_search"}, {"type": "namespace", "name": "x", "tools": []}],
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    status, _, text = await p.request("POST", "/v1/responses", json=body)
    assert status == 200, text
    assert "response.completed" in text
    sent = fake_anthropic.requests[-1].json
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]


async def test_responses_pass_through_to_a_responses_only_model(proxy, fake_openai):
    p = await proxy(MATRIX)
    r = await p.openai().responses.create(model="codex", input="hello there", store=False,
                                          extra_body={"prompt_cache_key": "abc"})
    assert r.output_text == "hello there"
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/responses" and sent.json["model"] == "gpt-5-codex"
    assert sent.json["prompt_cache_key"] == "abc"  # unknown fields kept on the same-dialect fast path


async def test_chat_completions_client_to_responses_only_model(proxy, fake_openai):
    p = await proxy(MATRIX)
    r = await p.openai().chat.completions.create(model="codex", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "hello there"
    assert fake_openai.requests[-1].path == "/v1/responses"


async def test_local_max_tokens_are_clamped(proxy, fake_ollama):
    p = await proxy(MATRIX)
    async with p.anthropic().messages.stream(model="helper", max_tokens=128000,
                                             messages=[{"role": "user", "content": "x"}]) as s:
        await s.get_final_message()
    assert fake_ollama.requests[-1].json["options"]["num_predict"] == 2048


async def test_translated_effort_goes_only_to_models_that_take_it(proxy, fake_openai):
    """Claude Code always asks for thinking/effort; gpt-4o-mini would refuse `reasoning_effort`."""
    p = await proxy(MATRIX)
    async with p.anthropic().messages.stream(model="coder", max_tokens=100, thinking={"type": "enabled",
                                                                                      "budget_tokens": 2048},
                                             messages=[{"role": "user", "content": "hi"}]) as s:
        await s.get_final_message()
    assert "reasoning_effort" not in fake_openai.requests[-1].json
