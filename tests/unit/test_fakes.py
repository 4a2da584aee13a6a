"""The fake upstreams are faithful: the official SDKs parse everything they send, figures are exact, requests
the real APIs reject are rejected with the real error shapes, and scripted faults are observable."""

from __future__ import annotations

import base64
import json
import struct

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from anthropic import AsyncAnthropic
from multidict import CIMultiDict
from openai import AsyncOpenAI

from tests.fakes import (
    DEFAULT_ANTHROPIC_KEY,
    DEFAULT_OPENAI_KEY,
    FakeAnthropic,
    FakeOpenAI,
    Fault,
    Reply,
    count_tokens,
    prompt_tokens,
)
from tests.fakes.fixtures import fake_anthropic, fake_openai  # noqa: F401  (fixtures)
from tests.fakes.scripts import split

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ARGS = '{"city": "Paris", "unit": "celsius"}'


def oai(fake: FakeOpenAI, **kw) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=DEFAULT_OPENAI_KEY, max_retries=0, **kw)


def ant(fake: FakeAnthropic, **kw) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=fake.base_url, api_key=DEFAULT_ANTHROPIC_KEY, max_retries=0, **kw)


@pytest_asyncio.fixture
async def oclient(fake_openai):
    async with oai(fake_openai) as client:
        yield client


@pytest_asyncio.fixture
async def aclient(fake_anthropic):
    async with ant(fake_anthropic) as client:
        yield client


async def raw(fake, path: str, body, headers: dict[str, str]) -> tuple[int, CIMultiDict[str], str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(fake.base_url + path, data=json.dumps(body), headers=headers) as r:
            return r.status, CIMultiDict(r.headers), await r.text()


def sse_events(text: str) -> list[tuple[str | None, str]]:
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        event = data = None
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data))
    return out


OAI_HEADERS = {"Authorization": f"Bearer {DEFAULT_OPENAI_KEY}", "Content-Type": "application/json"}
ANT_HEADERS = {"x-api-key": DEFAULT_ANTHROPIC_KEY, "anthropic-version": "2023-06-01",
               "Content-Type": "application/json"}


def test_scripts_figures():
    assert count_tokens("") == 1 and count_tokens("abcd") == 2 and count_tokens("abc") == 1
    assert prompt_tokens("Be brief.", "hello") == count_tokens("Be brief.\nhello")
    assert split("abcdefg", 3) == ["abc", "de", "fg"] and split("ab", 5) == ["a", "b"] and split("", 3) == []


# ------------------------------------------------------------------------------------------ OpenAI chat
async def test_openai_chat_default_reply_echoes_with_exact_usage(fake_openai, oclient):
    r = await oclient.chat.completions.create(model="gpt-4o-mini", messages=USER)
    text = "What is the capital of France?"
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == "stop" and r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-") and r.system_fingerprint.startswith("fp_") and r.service_tier == "default"
    assert r.usage.prompt_tokens == prompt_tokens("Be brief.", text) == 11
    assert r.usage.completion_tokens == count_tokens(text) == 8 and r.usage.total_tokens == 19
    assert r._request_id.startswith("req_")
    assert fake_openai.requests[-1].json["messages"] == USER
    assert fake_openai.requests[-1].headers["Authorization"] == f"Bearer {DEFAULT_OPENAI_KEY}"


async def test_openai_chat_stream_usage_chunk_only_with_include_usage(fake_openai, oclient):
    client = oclient
    fake_openai.replies.append(Reply(text="Paris is the capital.", chunks=4, cache_read_tokens=64,
                                     input_tokens=10, output_tokens=6, reasoning_tokens=2))
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris is the capital."
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 5 + ["stop"]
    last = chunks[-1]
    assert last.choices == [] and all(c.usage is None for c in chunks[:-1])
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (74, 6, 80)
    assert last.usage.prompt_tokens_details.cached_tokens == 64
    assert last.usage.completion_tokens_details.reasoning_tokens == 2

    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    status, _, body = await raw(fake_openai, "/v1/chat/completions",
                                {"model": "m", "messages": USER, "stream": True}, OAI_HEADERS)
    events = sse_events(body)
    assert status == 200 and events[-1] == (None, "[DONE]")
    assert all("usage" not in json.loads(d) for _, d in events[:-1])


async def test_openai_tool_calls_stream_in_fragments_and_reassemble(fake_openai, oclient):
    fake_openai.replies.append(Reply(text="Checking.", tool_calls=[("get_weather", ARGS), ("get_weather", "{}")]))
    async with oclient.chat.completions.stream(model="gpt-4o-mini", messages=USER, tools=TOOLS) as s:
        final = await s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    calls = choice.message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", ARGS), ("get_weather", "{}")]
    assert [c.id for c in calls] == [t.id for t in fake_openai.served[-1].tool_calls]
    assert all(c.id.startswith("call_") and len(c.id) == 29 for c in calls)

    fake_openai.replies.append(Reply(tool_calls=[("get_weather", ARGS)], chunks=3))
    _, _, body = await raw(fake_openai, "/v1/chat/completions",
                           {"model": "m", "messages": USER, "tools": TOOLS, "stream": True}, OAI_HEADERS)
    deltas = [json.loads(d)["choices"][0]["delta"] for _, d in sse_events(body)[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": None}
    assert deltas[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1]]
    assert len(fragments) == 3 and "".join(fragments) == ARGS


async def test_openai_responses_stream_and_plain(fake_openai, oclient):
    client = oclient
    fake_openai.replies.append(Reply(text="It is sunny.", thinking="Look it up.", tool_calls=[("get_weather", ARGS)],
                                     cache_read_tokens=5))
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    async with client.responses.stream(model="gpt-5", input="Weather?", instructions="Be brief.", tools=tools) as s:
        events = [e async for e in s]
        final = await s.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    assert events[-1].type == "response.completed"
    assert final.output_text == "It is sunny." and final.id.startswith("resp_") and final.status == "completed"
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert (call.name, call.arguments, call.call_id) == ("get_weather", ARGS, fake_openai.served[-1].tool_calls[0].id)
    turn = fake_openai.served[-1]
    assert final.usage.input_tokens == prompt_tokens("Be brief.", "Weather?") + 5 == turn.prompt_tokens
    assert final.usage.input_tokens_details.cached_tokens == 5
    assert final.usage.output_tokens == turn.output_tokens and final.usage.output_tokens_details.reasoning_tokens == 3
    assert sum(e.type == "response.function_call_arguments.delta" for e in events) == 3

    fake_openai.replies.append(Reply(text="cut", stop_reason="max_tokens"))
    r = await client.responses.create(model="gpt-5", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Hi"}]}], max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == "cut" and r.usage.input_tokens == 1


async def test_openai_embeddings_and_models(fake_openai, oclient):
    client = oclient
    r = await client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta gamma"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 1536
    assert abs(sum(x * x for x in r.data[0].embedding) - 1.0) < 1e-4
    assert r.usage.prompt_tokens == count_tokens("alpha") + count_tokens("beta gamma") == r.usage.total_tokens
    assert fake_openai.requests[-1].json["encoding_format"] == "base64"  # the SDK's default, decoded by the SDK
    f = await client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float",
                                       dimensions=8)
    b = await client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=8)
    assert len(f.data[0].embedding) == 8 and f.data[0].embedding == b.data[0].embedding
    assert r.data[0].embedding != r.data[1].embedding
    assert [m.id async for m in client.models.list()] == fake_openai.models


# ------------------------------------------------------------------------------ OpenAI errors and validation
async def test_openai_auth_errors(fake_openai):
    bad = AsyncOpenAI(base_url=fake_openai.base_url + "/v1", api_key="sk-wrong-key-123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        async with bad:
            await bad.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert e.value.code == "invalid_api_key" and "sk-wrong-key-123456789" not in str(e.value)
    assert "6789" in e.value.message and e.value.request_id.startswith("req_")
    status, _, body = await raw(fake_openai, "/v1/chat/completions", {"model": "m", "messages": USER},
                                {"Content-Type": "application/json"})
    assert status == 401 and json.loads(body)["error"]["message"].startswith("You didn't provide an API key")


@pytest.mark.parametrize("path,body,message,param", [
    ("/v1/chat/completions", {"model": "m", "messages": USER, "thinking": {"type": "enabled"}},
     "Unrecognized request argument supplied: thinking", None),
    ("/v1/chat/completions", {"model": "m", "messages": USER, "output_config": {}, "context_management": {}},
     "Unrecognized request arguments supplied: context_management, output_config", None),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]},
     "Unknown parameter: 'messages[0].content[0].cache_control'.", "messages[0].content[0].cache_control"),
    ("/v1/chat/completions", {"model": "m"}, "Missing required parameter: 'messages'.", "messages"),
    ("/v1/chat/completions", {"messages": USER}, "you must provide a model parameter", None),
    ("/v1/chat/completions", {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
     "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"),
    ("/v1/chat/completions", {"model": "m", "messages": USER + [{"role": "tool", "tool_call_id": "x", "content": "1"}]},
     "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
     "messages.[2].role"),
    ("/v1/chat/completions", {"model": "m", "messages": USER + [
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "Invalid type for 'messages[2].tool_calls[0].function.arguments': expected a string, but got an object instead.",
     "messages[2].tool_calls[0].function.arguments"),
    ("/v1/chat/completions", {"model": "m", "messages": USER + [
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "and?"}]},
     "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
     "The following tool_call_ids did not have response messages: call_1", "messages.[2].role"),
    ("/v1/chat/completions", {"model": "m", "messages": USER, "tools": [
        {"name": "f", "input_schema": {}, "type": "function"}]}, "Unknown parameter: 'tools[0].name'.", "tools[0].name"),
    ("/v1/chat/completions", {"model": "gpt-5-mini", "messages": USER, "max_tokens": 100},
     "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
     "max_tokens"),
    ("/v1/chat/completions", {"model": "o3", "messages": USER, "temperature": 0.2},
     "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is "
     "supported.", "temperature"),
    ("/v1/responses", {"model": "m", "input": "hi", "thinking": {}}, "Unknown parameter: 'thinking'.", "thinking"),
    ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
     "Invalid value: 'text'. Supported values are: 'input_text', 'input_image', 'output_text', 'refusal', "
     "'input_file', 'computer_screenshot', and 'summary_text'.", "input[0].content[0]"),
    ("/v1/responses", {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]},
     "No tool call found for function call output with call_id c.", "input"),
])
async def test_openai_rejects_what_openai_rejects(fake_openai, path, body, message, param):
    status, headers, text = await raw(fake_openai, path, body, OAI_HEADERS)
    error = json.loads(text)["error"]
    assert status == 400 and error["message"] == message and error["param"] == param
    assert error["type"] == "invalid_request_error" and headers["x-request-id"].startswith("req_")
    assert fake_openai.served == []


async def test_openai_bad_request_is_typed_in_sdk(fake_openai, oclient):
    with pytest.raises(openai.BadRequestError) as e:
        await oclient.chat.completions.create(model="m", messages=USER, extra_body={"thinking": {}})
    assert e.value.status_code == 400 and e.value.body["message"].endswith("thinking")


# ------------------------------------------------------------------------------------------ OpenAI faults
async def test_openai_status_faults_raise_typed_errors(fake_openai, oclient):
    client = oclient
    fake_openai.faults.append(Fault.status(429, "Rate limit reached", headers={"retry-after": "3"}))
    with pytest.raises(openai.RateLimitError) as e:
        await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert e.value.response.headers["retry-after"] == "3" and e.value.code == "rate_limit_exceeded"
    assert e.value.body["type"] == "requests" and e.value.request_id.startswith("req_")
    fake_openai.faults.append(Fault.status(503, "overloaded", path="/v1/embeddings"))
    await client.chat.completions.create(model="gpt-4o-mini", messages=USER)  # not consumed by another path
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(model="text-embedding-3-small", input="x")


async def test_openai_transport_faults(fake_openai):
    async with oai(fake_openai, timeout=0.3) as client:
        fake_openai.faults.append(Fault.hang(5))
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        fake_openai.faults.append(Fault.drop())
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        fake_openai.faults.append(Fault.garbage())
        with pytest.raises(ValueError):  # the SDK cannot parse it: json.JSONDecodeError
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    fake_openai.faults.append(Fault.garbage())
    status, _, body = await raw(fake_openai, "/v1/chat/completions", {"model": "m", "messages": USER}, OAI_HEADERS)
    assert status == 200 and body.startswith("<html>") and len(fake_openai.served) == 0


async def test_openai_stream_reset_and_in_stream_error(fake_openai, oclient):
    client = oclient
    fake_openai.faults.append(Fault.reset_after_chunks(2))
    got = []
    with pytest.raises(openai.APIConnectionError):
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        async for chunk in stream:
            got.append(chunk)
    assert len(got) == 2
    fake_openai.replies.append(Reply(text="abcdef", chunks=3, error_after=1))
    got = []
    with pytest.raises(openai.APIError) as e:
        async for chunk in await client.chat.completions.create(model="m", messages=USER, stream=True):
            got.append(chunk)
    assert "server had an error" in e.value.message and [c.choices[0].delta.content for c in got] == ["", "ab"]


# --------------------------------------------------------------------------------------------- Anthropic
async def test_anthropic_message_default_reply(fake_anthropic, aclient):
    m = await aclient.messages.create(model="claude-sonnet-4-6", max_tokens=256, system="Be brief.",
                                                  messages=[{"role": "user", "content": "Capital of France?"}])
    assert m.id.startswith("msg_01") and len(m.id) == 28 and m.content[0].text == "Capital of France?"
    assert m.stop_reason == "end_turn" and m.model == "claude-sonnet-4-6"
    assert m.usage.input_tokens == prompt_tokens("Be brief.", "Capital of France?") == 8
    assert m.usage.output_tokens == count_tokens("Capital of France?") == 5
    assert (m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (0, 0)
    assert m._request_id.startswith("req_011C")


async def test_anthropic_stream_thinking_text_tools_and_cache_usage(fake_anthropic, aclient):
    fake_anthropic.replies.append(Reply(thinking="The user wants weather.", text="Let me check.",
                                        tool_calls=[("get_weather", ARGS)], cache_read_tokens=2048,
                                        cache_write_tokens=300, input_tokens=12))
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    async with aclient.messages.stream(model="claude-sonnet-4-6", max_tokens=4096, tools=tools,
                                                   thinking={"type": "enabled", "budget_tokens": 1024},
                                                   messages=[{"role": "user", "content": "Weather?"}]) as s:
        m = await s.get_final_message()
    turn = fake_anthropic.served[-1]
    assert [b.type for b in m.content] == ["thinking", "text", "tool_use"]
    assert m.content[0].thinking == "The user wants weather." and m.content[0].signature == turn.signature
    assert m.content[2].input == {"city": "Paris", "unit": "celsius"} and m.content[2].id.startswith("toolu_01")
    assert m.stop_reason == "tool_use"
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == (12, 2048, 300)
    assert m.usage.output_tokens == turn.output_tokens == count_tokens("Let me check.") + count_tokens(ARGS) + 6


async def test_anthropic_stream_wire_sequence(fake_anthropic):
    fake_anthropic.replies.append(Reply(thinking="hmm", text="Hi!", tool_calls=[("f", '{"a": 1}')], chunks=2))
    status, headers, body = await raw(fake_anthropic, "/v1/messages", {
        "model": "claude-sonnet-4-6", "max_tokens": 2048, "stream": True,
        "messages": [{"role": "user", "content": "go"}]}, ANT_HEADERS)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(body)
    names = [e for e, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                     "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop", "message_delta",
                     "message_stop"]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for d, n in zip(data, names))
    assert data[0]["message"]["usage"]["output_tokens"] == 1 and data[0]["message"]["content"] == []
    assert data[5]["delta"]["type"] == "signature_delta"
    assert [d["delta"]["partial_json"] for d in data[12:15]] == ["", '{"a"', ': 1}']
    assert data[16]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert data[16]["usage"]["output_tokens"] == fake_anthropic.served[-1].output_tokens


async def test_anthropic_count_tokens(fake_anthropic, aclient):
    client = aclient
    r = await client.messages.count_tokens(model="claude-sonnet-4-6", system="Be brief.",
                                           messages=[{"role": "user", "content": "Hello there"}])
    assert r.input_tokens == prompt_tokens("Be brief.", "Hello there")
    fake_anthropic.token_count = 4242
    r = await client.messages.count_tokens(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}])
    assert r.input_tokens == 4242 and fake_anthropic.served == []


_TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}


@pytest.mark.parametrize("body,message", [
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "stream_options": {}},
     "stream_options: Extra inputs are not permitted"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "response_format": {}},
     "response_format: Extra inputs are not permitted"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "n": 1},
     "n: Extra inputs are not permitted"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "context_management": {}},
     "context_management: Extra inputs are not permitted"),
    ({"model": "c", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto",
      "tools": [{"name": "f", "input_schema": {}}]},
     "tool_choice: Input should be a valid dictionary or object to extract fields from"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}, _TOOL_USE,
                                                  {"role": "tool", "content": "1"}]},
     "messages.2.role: Input should be 'user' or 'assistant'"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row'),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}, _TOOL_USE,
                                                  {"role": "user", "content": "ok"}]},
     "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each "
     "`tool_use` block must have a corresponding `tool_result` block in the next message."),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "1"}]}]},
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9. Each `tool_result` "
     "block must have a corresponding `tool_use` block in the previous message."),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": '{"a": 1}'}]}]},
     "messages.1.content.0.tool_use.input: Input should be a valid dictionary"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:x"}}]}]},
     "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected tags: "
     "'text', 'image', 'document', 'search_result', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking', "
     "'server_tool_use', 'web_search_tool_result', 'web_fetch_tool_result', 'code_execution_tool_result', "
     "'container_upload'"),
    ({"model": "c", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 4000},
      "messages": [{"role": "user", "content": "hi"}]},
     "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
     "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"),
    ({"model": "c", "max_tokens": 9, "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]},
     "temperature: Input should be less than or equal to 1"),
    ({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
     "messages: text content blocks must be non-empty"),
])
async def test_anthropic_rejects_what_anthropic_rejects(fake_anthropic, body, message):
    status, headers, text = await raw(fake_anthropic, "/v1/messages", body, ANT_HEADERS)
    error = json.loads(text)
    assert status == 400 and error["error"] == {"type": "invalid_request_error", "message": message}
    assert error["type"] == "error" and error["request_id"] == headers["request-id"]
    assert fake_anthropic.served == []


async def test_anthropic_beta_fields_and_lenient_alternation():
    async with FakeAnthropic(strict_alternation=False) as fake:
        body = {"model": "c", "max_tokens": 9, "context_management": {"edits": []},
                "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
        status, _, text = await raw(fake, "/v1/messages", body, {**ANT_HEADERS, "anthropic-beta": "context-1"})
        assert status == 200 and json.loads(text)["content"][0]["text"] == "a\nb"


async def test_anthropic_auth_version_and_faults(fake_anthropic, aclient):
    with pytest.raises(anthropic.AuthenticationError) as e:
        async with AsyncAnthropic(base_url=fake_anthropic.base_url, api_key="sk-ant-wrong", max_retries=0) as bad:
            await bad.messages.create(model="c", max_tokens=9, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    status, _, text = await raw(fake_anthropic, "/v1/messages", {"model": "c"},
                                {"x-api-key": DEFAULT_ANTHROPIC_KEY})
    assert status == 400 and json.loads(text)["error"]["message"] == "anthropic-version: header is required"
    status, _, _ = await raw(fake_anthropic, "/v1/messages", {"model": "c", "max_tokens": 9, "messages": [
        {"role": "user", "content": "hi"}]}, {k: v for k, v in ANT_HEADERS.items() if k != "x-api-key"})
    assert status == 401

    client = aclient
    msg = [{"role": "user", "content": "hi"}]
    fake_anthropic.faults.append(Fault.status(429, "Number of request tokens has exceeded your rate limit",
                                              headers={"retry-after": "7"}))
    with pytest.raises(anthropic.RateLimitError) as e:
        await client.messages.create(model="c", max_tokens=9, messages=msg)
    assert e.value.response.headers["retry-after"] == "7" and e.value.body["error"]["type"] == "rate_limit_error"
    fake_anthropic.faults.append(Fault.status(529, "Overloaded"))
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model="c", max_tokens=9, messages=msg)

    fake_anthropic.replies.append(Reply(text="abcdef", chunks=3, error_after=2))
    seen = []
    with pytest.raises(anthropic.APIStatusError) as e:
        async with client.messages.stream(model="c", max_tokens=9, messages=msg) as s:
            async for event in s:
                seen.append(event.type)
    assert e.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert seen.count("text") == 2

    fake_anthropic.faults.append(Fault.reset_after_chunks(3))  # message_start, content_block_start, ping
    seen = []
    with pytest.raises(Exception) as e:
        async with client.messages.stream(model="c", max_tokens=9, messages=msg) as s:
            async for event in s:
                seen.append(event.type)
    assert "incomplete chunked read" in str(e.value) and seen == ["message_start", "content_block_start"]


def test_openai_embedding_vectors_are_float32_base64():
    fake = FakeOpenAI()
    floats, encoded = fake._vector("hello", 4)
    assert list(struct.unpack("<4f", base64.b64decode(encoded))) == floats
