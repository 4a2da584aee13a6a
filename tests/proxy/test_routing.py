"""Issue 2 end to end: the OpenAI SDK against Tiergate in front of fake OpenAI, Anthropic and Ollama
upstreams — tiers, translation both ways (streaming included), fallbacks, retries, cooldowns, errors."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes import Fault, Reply
from tests.proxy.conftest import TIERS

MSG = [{"role": "user", "content": "hello there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


async def _collect(stream):
    text, usage, calls, finish = "", None, {}, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            d = choice.delta
            text += d.content or ""
            for tc in d.tool_calls or ():
                c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                c["id"] = tc.id or c["id"]
                if tc.function and tc.function.name:
                    c["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    c["arguments"] += tc.function.arguments
            finish = choice.finish_reason or finish
    return text, usage, calls, finish


@pytest.mark.parametrize("tier", ["coder", "orchestrator", "helper"])
async def test_each_tier_answers_non_streaming(proxy, tier, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy()
    raw = await p.openai().chat.completions.with_raw_response.create(model=tier, messages=MSG)
    r = raw.parse()
    assert r.choices[0].message.content == "hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 3  # the fakes' len//4+1 figures
    assert raw.headers["x-tiergate-tier"] == tier
    assert raw.headers["x-tiergate-deployment"].startswith(tier + "/")
    assert raw.headers["x-request-id"].startswith("tg-")
    assert float(raw.headers["x-tiergate-overhead-ms"]) >= 0
    upstream = {"coder": fake_openai, "orchestrator": fake_anthropic, "helper": fake_ollama}[tier]
    chat_paths = ("/v1/chat/completions", "/v1/messages", "/api/chat")
    assert len([r for r in upstream.requests if r.path in chat_paths]) == 1


@pytest.mark.parametrize("tier", ["coder", "orchestrator", "helper"])
async def test_each_tier_streams_with_usage_in_the_last_chunk(proxy, tier):
    p = await proxy()
    stream = await p.openai().chat.completions.create(model=tier, messages=MSG, stream=True,
                                                      stream_options={"include_usage": True})
    text, usage, _, finish = await _collect(stream)
    assert text == "hello there" and finish == "stop"
    assert usage is not None and usage.prompt_tokens == 3 and usage.completion_tokens == 3


@pytest.mark.parametrize("tier", ["coder", "orchestrator", "helper"])
async def test_stream_without_include_usage_shows_no_usage_but_records_it(proxy, tier, fake_openai):
    p = await proxy()
    seen = []
    p.core.bus.subscribe(lambda e: seen.append(e.record) if hasattr(e, "record") else None)
    stream = await p.openai().chat.completions.create(model=tier, messages=MSG, stream=True)
    text, usage, _, _ = await _collect(stream)
    assert text == "hello there" and usage is None
    if tier == "coder":  # usage was asked of the upstream even though the client did not ask
        assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}
    assert [(r.tier, r.input_tokens, r.output_tokens, r.status) for r in seen] == [(tier, 3, 3, "ok")]


@pytest.mark.parametrize("tier", ["coder", "orchestrator", "helper"])
async def test_streamed_tool_calls_reassemble(proxy, tier, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy()
    upstream = {"coder": fake_openai, "orchestrator": fake_anthropic, "helper": fake_ollama}[tier]
    upstream.replies.append(Reply(text="", tool_calls=[("get_weather", '{"city": "Paris"}')], chunks=4))
    stream = await p.openai().chat.completions.create(model=tier, messages=MSG, tools=TOOLS, stream=True)
    text, _, calls, finish = await _collect(stream)
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [("get_weather", {"city": "Paris"})]
    assert all(c["id"] for c in calls.values())


async def test_tool_round_trip_reaches_anthropic_as_tool_use_and_result(proxy, fake_anthropic):
    p = await proxy()
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]
    r = await p.openai().chat.completions.create(model="orchestrator", messages=messages, tools=TOOLS)
    assert r.choices[0].message.content
    sent = fake_anthropic.requests[-1].json
    assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "call_1", "name": "get_weather",
                                                 "input": {"city": "Paris"}}
    result = sent["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    assert sent["tools"][0]["name"] == "get_weather" and "input_schema" in sent["tools"][0]


async def test_ollama_gets_num_ctx_and_keep_alive_from_config(proxy, fake_ollama):
    p = await proxy()
    await p.openai().chat.completions.create(model="helper", messages=MSG, max_tokens=50)
    sent = fake_ollama.requests[-1]
    assert sent.path == "/api/chat"
    assert sent.json["options"]["num_ctx"] == 32768
    assert sent.json["options"]["num_predict"] == 50
    assert sent.json["keep_alive"] == "10m"
    assert sent.json["model"] == "llama3.2:latest"


async def test_request_body_cannot_choose_the_upstream(proxy, fake_openai):
    p = await proxy()
    status, _, body = await p.request("POST", "/v1/chat/completions", json={
        "model": "coder", "messages": MSG, "api_base": "http://127.0.0.2:1", "base_url": "http://127.0.0.2:1",
        "api_key": "sk-attacker", "headers": {"x-evil": "1"}})
    assert status == 200, body
    sent = fake_openai.requests[-1]
    assert not {"api_base", "base_url", "api_key", "headers"} & set(sent.json)
    assert sent.headers["Authorization"] == f"Bearer {fake_openai.api_key}"
    assert "x-evil" not in {k.lower() for k in sent.headers}


async def test_unknown_model_is_404_listing_the_tiers(proxy):
    p = await proxy()
    with pytest.raises(openai.NotFoundError) as e:
        await p.openai().chat.completions.create(model="gpt-17", messages=MSG)
    err = e.value.body
    assert err["code"] == "model_not_found"
    assert "coder" in err["message"] and "orchestrator" in err["message"]
    assert sorted(err["tiers"]) == ["coder", "helper", "orchestrator"]


async def test_concrete_deployment_name_is_accepted(proxy, fake_anthropic):
    p = await proxy()
    r = await p.openai().chat.completions.create(model="anthropic/claude-opus-4-1", messages=MSG)
    assert r.choices[0].message.content == "hello there"
    assert len(fake_anthropic.requests) == 1


async def test_malformed_json_and_wrong_types_are_400_in_openai_shape(proxy):
    p = await proxy()
    status, _, body = await p.request("POST", "/v1/chat/completions", data=b'{"model": "coder", "messages": [',
                                      headers={"content-type": "application/json"})
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, _, body = await p.request("POST", "/v1/chat/completions", json={"model": "coder", "messages": "hi"})
    assert status == 400 and "messages" in body["error"]["message"]
    status, _, body = await p.request("POST", "/v1/chat/completions", json=[1, 2])
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_body_over_the_limit_is_413(proxy):
    p = await proxy(TIERS + "  max_body_bytes: 2000\n")
    status, _, body = await p.request("POST", "/v1/chat/completions",
                                      json={"model": "coder", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert status == 413 and "error" in body


async def test_upstream_4xx_is_passed_through_with_its_message(proxy, fake_openai):
    p = await proxy()
    fake_openai.faults.append(Fault.status(400, "Invalid value for 'temperature'"))
    with pytest.raises(openai.BadRequestError) as e:
        await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert "Invalid value for 'temperature'" in e.value.message
    assert len(fake_openai.requests) == 1  # a 4xx is not retried


async def test_429_and_500_are_retried_on_the_same_deployment(proxy, fake_openai):
    p = await proxy()
    fake_openai.faults += [Fault.status(429, "slow down")]
    r = await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert r.choices[0].message.content == "hello there"
    assert len(fake_openai.requests) == 2


FALLBACK = """
model_list:
  - model_name: helper-local
    litellm_params: {{model: ollama_chat/gemma3:4b, api_base: "{ollama}", num_ctx: 8192}}
  - model_name: helper-cloud
    litellm_params: {{model: anthropic/claude-haiku-4-5, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY, timeout: 1}}
  - model_name: coder
    litellm_params: {{model: anthropic/claude-sonnet-4-5, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
router_settings:
  num_retries: 0
  allowed_fails: 2
  cooldown_time: 60
  fallbacks: [{{helper-local: [helper-cloud]}}]
tiergate_settings:
  port: 0
"""


async def test_ollama_unreachable_falls_back_without_the_client_noticing(proxy, fake_ollama, fake_anthropic):
    p = await proxy(FALLBACK)
    await fake_ollama.close()  # Ollama not running: connection refused
    for stream in (False, True):  # (different prompts: the second must not be a cache hit)
        if stream:
            text, *_ = await _collect(await p.openai().chat.completions.create(
                model="helper-local", messages=[{"role": "system", "content": "be brief"}, *MSG], stream=True))
        else:
            raw = await p.openai().chat.completions.with_raw_response.create(model="helper-local", messages=MSG)
            text = raw.parse().choices[0].message.content
            assert raw.headers["x-tiergate-tier"] == "helper-cloud"
        assert text == "hello there"
    assert len(fake_anthropic.requests) == 2


@pytest.mark.parametrize("fault", [Fault.status(500), Fault.status(503), Fault.hang(3), Fault.drop(),
                                   Fault.garbage()], ids=["500", "503", "hang", "drop", "garbage"])
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
async def test_faults_fall_back_to_the_next_deployment(proxy, fake_openai, fake_anthropic, fault, stream):
    p = await proxy(FALLBACK)
    fake_openai.faults.append(fault)
    if stream:
        text, *_ = await _collect(await p.openai().chat.completions.create(model="coder", messages=MSG, stream=True))
    else:
        text = (await p.openai().chat.completions.create(model="coder", messages=MSG)).choices[0].message.content
    assert text == "hello there"
    assert len(fake_openai.requests) == 1 and len(fake_anthropic.requests) == 1
    # and the proxy keeps serving
    r = await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert r.choices[0].message.content == "hello there"


async def test_failing_deployment_cools_down_and_is_skipped(proxy, fake_openai, fake_anthropic):
    p = await proxy(FALLBACK)
    fake_openai.faults += [Fault.status(500), Fault.status(500)]
    no_cache = {"x-tiergate-cache": "off"}
    for _ in range(2):
        await p.openai().chat.completions.create(model="coder", messages=MSG, extra_headers=no_cache)
    assert len(fake_openai.requests) == 2
    for _ in range(3):  # cooling down: not even tried
        await p.openai().chat.completions.create(model="coder", messages=MSG, extra_headers=no_cache)
    assert len(fake_openai.requests) == 2 and len(fake_anthropic.requests) == 5
    status, _, body = await p.request("GET", "/health/upstreams")
    states = {d["deployment"]: d["state"] for d in body["deployments"]}
    assert states["coder/openai/gpt-4o-mini"] == "cooling_down"


async def test_all_deployments_failing_is_502_naming_what_was_tried(proxy, fake_openai, fake_anthropic):
    p = await proxy(FALLBACK)
    fake_openai.faults.append(Fault.status(500))
    fake_anthropic.faults.append(Fault.status(529, "Overloaded"))
    with pytest.raises(openai.APIStatusError) as e:
        await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert e.value.status_code == 502
    assert "coder/openai/gpt-4o-mini" in e.value.message and "coder/anthropic/claude-sonnet-4-5" in e.value.message


async def test_reset_mid_stream_ends_with_an_error_not_a_silent_success(proxy, fake_openai):
    p = await proxy(FALLBACK)
    fake_openai.replies.append(Reply(text="one two three four five six seven eight", chunks=8))
    fake_openai.faults.append(Fault.reset_after_chunks(3))
    stream = await p.openai().chat.completions.create(model="coder", messages=MSG, stream=True)
    with pytest.raises(openai.APIError):
        await _collect(stream)
    r = await p.openai().chat.completions.create(model="coder", messages=MSG)
    assert r.choices[0].message.content == "hello there"


async def test_models_and_health(proxy):
    p = await proxy()
    models = await p.openai().models.list()
    assert sorted(m.id for m in models.data) == ["coder", "helper", "orchestrator"]
    status, _, body = await p.request("GET", "/health", key="none")
    assert status == 200 and body["status"] == "ok"
    status, _, body = await p.request("GET", "/health/upstreams")
    assert status == 200 and body["total"] == 3


@pytest.mark.parametrize("tier", ["coder", "helper"])
async def test_embeddings(proxy, tier):
    p = await proxy()
    r = await p.openai().embeddings.create(model=tier, input=["alpha", "beta"])
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0


async def test_local_requests_go_through_the_ollama_guard(proxy, fake_ollama):
    """A local request loads its model (once, with the configured context) and the router then prefers
    the deployment whose model is loaded."""
    p = await proxy()
    for i in range(3):
        await p.openai().chat.completions.create(model="helper", messages=[{"role": "user", "content": f"q{i}"}])
    assert len(fake_ollama.loads) == 1
    host = p.core.ollama.host_for(fake_ollama.base_url)
    assert host is not None and p.core.ollama.loaded_on(host, "llama3.2:latest")
    assert fake_ollama.loads[0] == ("llama3.2:latest", 32768)


async def test_ollama_host_down_is_reported_with_the_fix(proxy, fake_ollama):
    from app.events import UpstreamHealthChanged

    p = await proxy()
    seen = []
    p.core.bus.subscribe(seen.append, UpstreamHealthChanged)
    await fake_ollama.close()
    health = {h.url: h for h in await p.core.ollama.health()}[fake_ollama.base_url]
    assert health.state in ("not_running", "not_installed")
    assert "ollama" in (health.fix or "").lower()
    assert not p.core.ollama.deployment_available(p.core.config.tiers["helper"][0])


async def test_thinking_asked_of_a_local_model_that_cannot_think_is_dropped(proxy, fake_ollama):
    """Claude Code always asks for thinking; llama3.2 has no thinking capability and Ollama refuses `think`."""
    p = await proxy()
    for n in range(2):
        async with p.anthropic().messages.stream(model="helper", max_tokens=200, thinking={"type": "enabled",
                                                                                           "budget_tokens": 1024},
                                                 messages=[{"role": "user", "content": f"hi {n}"}]) as s:
            final = await s.get_final_message()
        assert final.content[-1].text == f"hi {n}"
    chats = [r.json for r in fake_ollama.requests if r.path == "/api/chat"]
    assert [c.get("think") for c in chats] == [True, None, None]  # refused once, then never asked again
