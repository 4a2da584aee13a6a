"""OpenAI Chat Completions codec. Payload shapes follow openai-python's types (chat.ChatCompletion,
chat.ChatCompletionChunk, CompletionUsage, completion_create_params) and the API reference's streaming
examples (chunks with `delta`, `finish_reason`; with stream_options.include_usage a last chunk with
`"choices": []` and the usage, every other chunk `"usage": null`)."""

from __future__ import annotations

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from app.canonical import (
    BlockStart, BlockStop, ChatRequest, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd,
    MessageStart, StopReason, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta, ToolCallPart,
    ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects import openai_chat as oc
from app.dialects.sse import SSEParser
from app.errors import (
    BadRequest, UpstreamBadResponse, UpstreamClientError, UpstreamRateLimited, UpstreamServerError,
    UpstreamTimeout,
)

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def dep(model: str = "gpt-4o-mini", **kw) -> Deployment:
    return Deployment(id="d1", tier="coder", provider="openai", model=model, api_base="http://127.0.0.1:1", **kw)


def frames(data: bytes) -> list[bytes]:
    p = SSEParser()
    out = [e.data for e in p.feed(data)]
    return out + [e.data for e in p.close()]


# ============================================================================================ inbound
FULL_REQUEST = {
    "model": "coder",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
              {"type": "function", "function": {"name": "get_time"}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 300, "max_tokens": 999, "stop": "END",
    "seed": 7, "user": "u-1", "stream": True, "stream_options": {"include_usage": True}, "reasoning_effort": "low",
    "api_base": "http://evil.example", "base_url": "http://evil.example", "api_key": "sk-x", "headers": {"a": "b"},
}


def test_parse_full_request():
    req = oc.parse_request(FULL_REQUEST, {})
    assert req.model == "coder" and req.dialect is Dialect.OPENAI_CHAT and req.raw is FULL_REQUEST
    assert req.system == [TextPart("You are terse."), TextPart("Use tools.")]
    assert req.messages == [
        Message("user", [TextPart("What is in these?"),
                         ImagePart(media_type="image/png", data=PNG_B64, detail="low"),
                         ImagePart(url="https://example.com/cat.jpg")]),
        Message("assistant", [ToolCallPart("call_a", "get_weather", '{"city":"Paris"}'),
                              ToolCallPart("call_b", "get_time", "{}")]),
        Message("user", [ToolResultPart("call_a", [TextPart("18C")]), ToolResultPart("call_b", [TextPart("12:00")])]),
        Message("user", [TextPart("Thanks")]),
    ]
    assert req.tools == [ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}),
                         ToolSpec("get_time", None, {"type": "object", "properties": {}})]
    assert req.tool_choice == ToolChoice("tool", "get_weather", parallel=False)
    assert req.response_format == {"type": "json_object"}
    assert (req.temperature, req.top_p, req.max_tokens, req.stop, req.seed, req.user) == (0.2, 0.9, 300, ["END"], 7, "u-1")
    assert req.stream and req.include_usage and req.reasoning_effort == "low"
    assert req.headers == {}


def test_parse_minimal_and_string_forms():
    req = oc.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b"],
                            "tool_choice": "required", "max_tokens": 5}, {})
    assert req.messages == [Message("user", [TextPart("hi")])]
    assert req.stop == ["a", "b"] and req.max_tokens == 5 and req.tool_choice == ToolChoice("required")
    assert not req.stream and not req.include_usage


@pytest.mark.parametrize("body,message", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model is required and must be a string"),
    ({"model": "m", "messages": []}, "messages must be a non-empty list"),
    ({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                 {"role": "user", "content": 5}]},
     "messages[2].content must be a string or a list of content parts"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "messages[0].content[0]: content part type 'input_audio' is not supported here"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
     "messages[0].role must be one of system, developer, user, assistant, tool"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id must be a string"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature must be a number"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "max_tokens must be an integer"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": 3}, "stop must be a string or a list of strings"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"},
     'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}'),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     'tools[0] must be {"type": "function", "function": {"name": ...}}'),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}, "n must be 1: Tiergate returns one choice"),
])
def test_parse_errors_name_the_field(body, message):
    with pytest.raises(BadRequest) as e:
        oc.parse_request(body, {})
    assert e.value.message == message


def test_render_response_validates_with_sdk():
    req = ChatRequest(model="coder", messages=[])
    resp = ChatResponse(id="chatcmpl-1", model="claude-x", created=1700000000,
                        parts=[ThinkingPart("hmm", signature="sig"), TextPart("Let me check."),
                               ToolCallPart("toolu_1", "get_weather", '{"city":"Paris"}'), ToolCallPart("toolu_2", "noargs", "")],
                        stop_reason=StopReason.TOOL_USE,
                        usage=Usage(input_tokens=10, output_tokens=20, cache_read_tokens=100, cache_write_tokens=5,
                                    reasoning_tokens=3))
    body = oc.render_response(resp, req)
    cc = ChatCompletion.model_validate(body)
    assert cc.model == "coder" and cc.id == "chatcmpl-1" and cc.created == 1700000000
    choice = cc.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    assert [(t.id, t.function.name, t.function.arguments) for t in choice.message.tool_calls] == [
        ("toolu_1", "get_weather", '{"city":"Paris"}'), ("toolu_2", "noargs", "{}")]
    assert body["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert cc.usage.prompt_tokens == 115 and cc.usage.completion_tokens == 20 and cc.usage.total_tokens == 135
    assert cc.usage.prompt_tokens_details.cached_tokens == 100
    assert cc.usage.completion_tokens_details.reasoning_tokens == 3


def test_render_response_text_only_and_stop_mapping():
    req = ChatRequest(model="m", messages=[])
    for stop, finish in [(StopReason.END_TURN, "stop"), (StopReason.STOP_SEQUENCE, "stop"),
                         (StopReason.MAX_TOKENS, "length"), (StopReason.REFUSAL, "content_filter"),
                         (StopReason.CONTENT_FILTER, "content_filter")]:
        body = oc.render_response(ChatResponse("i", "m", [TextPart("x")], stop, Usage()), req)
        assert body["choices"][0]["finish_reason"] == finish
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "x", "refusal": None}


# ------------------------------------------------------------------------------------ stream encoder
def tool_stream_events() -> list:
    return [
        MessageStart("msg_1", "claude-x", Usage(input_tokens=0)),
        BlockStart(0, "thinking"), ThinkingDelta(0, "pondering"), ThinkingDelta(0, "", signature="sig"), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "Checking"), TextDelta(1, " now."), BlockStop(1),
        BlockStart(2, "tool_call", "toolu_A", "get_weather"), ToolArgsDelta(2, '{"city":'), ToolArgsDelta(2, '"Paris"}'),
        BlockStop(2),
        BlockStart(3, "tool_call", "toolu_B", "get_time"), BlockStop(3),
        MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=50, output_tokens=30, cache_read_tokens=20, reasoning_tokens=4)),
    ]


def encode_all(req: ChatRequest, events: list) -> bytes:
    enc = oc.StreamEncoder(req, "chatcmpl-xyz")
    return b"".join(enc.encode(e) for e in events) + enc.finish()


def test_stream_encoder_chunks_validate_and_accumulate_with_sdk():
    req = ChatRequest(model="coder", messages=[], stream=True, include_usage=True)
    data = frames(encode_all(req, tool_stream_events()))
    assert data[-1] == b"[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    state = ChatCompletionStreamState()
    for ch in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(ch))
    final = state.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Checking now."
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("toolu_A", "get_weather", '{"city":"Paris"}'), ("toolu_B", "get_time", "{}")]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage.prompt_tokens == 70 and final.usage.completion_tokens == 30 and final.usage.total_tokens == 100
    assert final.usage.prompt_tokens_details.cached_tokens == 20
    assert final.usage.completion_tokens_details.reasoning_tokens == 4
    # exact shapes: first chunk, usage chunk, "usage": null elsewhere
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                     "logprobs": None, "finish_reason": None}]
    assert list(chunks[0]) == ["id", "object", "created", "model", "choices", "usage"]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["model"] == "coder"
    assert {c["id"] for c in chunks} == {"chatcmpl-xyz"} and len({c["created"] for c in chunks}) == 1
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 70
    assert {"reasoning_content": "pondering"} in [c["choices"][0]["delta"] for c in chunks[:-1]]
    first_tool = next(c for c in chunks if "tool_calls" in c["choices"][0]["delta"])
    assert first_tool["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function",
                                                                 "function": {"name": "get_weather", "arguments": ""}}]}


def test_stream_encoder_without_include_usage_never_shows_usage():
    req = ChatRequest(model="coder", messages=[], stream=True, include_usage=False)
    data = frames(encode_all(req, tool_stream_events()))
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    for c in chunks:
        ChatCompletionChunk.model_validate(c)


def test_stream_encoder_emits_role_chunk_without_message_start():
    enc = oc.StreamEncoder(ChatRequest(model="m", messages=[]), "id1")
    out = frames(enc.encode(TextDelta(0, "hi")))
    assert [orjson.loads(d)["choices"][0]["delta"] for d in out] == [
        {"role": "assistant", "content": "", "refusal": None}, {"content": "hi"}]


def test_stream_encoder_error_frame_ends_stream_without_done():
    enc = oc.StreamEncoder(ChatRequest(model="m", messages=[]), "id1")
    enc.encode(MessageStart("x", "y"))
    out = enc.error(UpstreamServerError("upstream fell over"))
    assert out == (b'data: {"error":{"message":"upstream fell over","type":"server_error","param":null,'
                   b'"code":"upstream_server_error"}}\n\n')
    assert enc.finish() == b"" and enc.encode(TextDelta(0, "late")) == b""


# ================================================================================= outbound: request
def canonical_with_everything(**kw) -> ChatRequest:
    return ChatRequest(
        model="coder",
        system=[TextPart("Be brief.", cache_control={"type": "ephemeral"}), TextPart("Second block.")],
        messages=[
            Message("user", [TextPart("Look"), ImagePart(media_type="image/jpeg", data="QUJD"),
                             DocumentPart({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}}),
                             DocumentPart({"type": "document", "title": "report.pdf",
                                           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}})]),
            Message("assistant", [ThinkingPart("secret", signature="s"), TextPart("Calling."),
                                  ToolCallPart("toolu_1", "read", '{"path":"a"}')]),
            Message("user", [ToolResultPart("toolu_1", [TextPart("contents")]),
                             ToolResultPart("toolu_2", [TextPart("boom")], is_error=True),
                             TextPart("go on")]),
        ],
        tools=[ToolSpec("read", "Read a file", {"type": "object"})],
        tool_choice=ToolChoice("auto", parallel=False), **kw)


def test_build_request_maps_everything():
    req = canonical_with_everything(max_tokens=10_000, temperature=0.5, stop=["X"], seed=1, user="me")
    body = oc.build_request(req, dep(max_output_tokens=2048, extra_params={"temperature": 0.9, "presence_penalty": 0.1}),
                            stream=True)
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief.\n\nSecond block."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
            {"type": "text", "text": "doc text"},
            {"type": "text", "text": "[document omitted: report.pdf]"}]},
        {"role": "assistant", "content": "Calling.",
         "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": '{"path":"a"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "contents"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "[tool error] boom"},
        {"role": "user", "content": "go on"},
    ]
    assert body["tools"] == [{"type": "function", "function": {"name": "read", "description": "Read a file",
                                                               "parameters": {"type": "object"}}}]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    assert body["max_tokens"] == 2048 and body["temperature"] == 0.5 and body["presence_penalty"] == 0.1
    assert body["stop"] == ["X"] and body["seed"] == 1 and body["user"] == "me"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_build_request_reasoning_models_and_defaults():
    req = ChatRequest(model="m", messages=[Message("user", [TextPart("q")])], temperature=0.3, top_p=0.5,
                      thinking={"type": "enabled", "budget_tokens": 20000})
    body = oc.build_request(req, dep("o3-mini"), stream=False)
    assert body == {"model": "o3-mini", "messages": [{"role": "user", "content": "q"}], "reasoning_effort": "high"}
    body = oc.build_request(ChatRequest(model="m", messages=[], max_tokens=100), dep("gpt-5"), stream=False)
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    body = oc.build_request(ChatRequest(model="m", messages=[]), dep(max_output_tokens=512), stream=False)
    assert body["max_tokens"] == 512  # the deployment's ceiling when the client gave none
    body = oc.build_request(ChatRequest(model="m", messages=[], thinking={"type": "enabled", "budget_tokens": 2000}),
                            dep("gpt-4o"), stream=False)
    assert "reasoning_effort" not in body  # not a reasoning model
    body = oc.build_request(ChatRequest(model="m", messages=[], tool_choice=ToolChoice("tool", "x")), dep(), stream=False)
    assert "tool_choice" not in body  # no tools, no tool_choice


def test_build_request_tool_choice_function_and_url_image():
    req = ChatRequest(model="m", messages=[Message("user", [ImagePart(url="https://x/y.png", detail="high")])],
                      tools=[ToolSpec("f", None, {"type": "object"})], tool_choice=ToolChoice("tool", "f"))
    body = oc.build_request(req, dep(), stream=False)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}]}]


# ================================================================================ outbound: response
# The API reference's chat completion object, with a tool call (openai.types.chat.ChatCompletion).
RECORDED_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None, "refusal": None, "annotations": [],
        "tool_calls": [{"id": "call_12345xyz", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}}]},
        "logprobs": None, "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035",
}


def test_parse_recorded_response():
    ChatCompletion.model_validate(RECORDED_COMPLETION)  # the fixture itself is the SDK's shape
    r = oc.parse_response(RECORDED_COMPLETION)
    assert r.id == "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG" and r.model == "gpt-4o-2024-08-06" and r.created == 1741570283
    assert r.parts == [ToolCallPart("call_12345xyz", "get_weather", '{"location":"Paris, France"}')]
    assert r.stop_reason is StopReason.TOOL_USE
    assert r.usage == Usage(input_tokens=93, output_tokens=46, cache_read_tokens=1024)


def test_parse_response_reasoning_refusal_and_stop_quirks():
    body = {"id": "x", "model": "deepseek-r1", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "42", "reasoning_content": "think",
        "tool_calls": [{"id": "", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}}]}
    r = oc.parse_response(body)
    assert r.parts[:2] == [ThinkingPart("think"), TextPart("42")]
    assert r.parts[2].name == "f" and r.parts[2].arguments == '{"a":1}' and r.parts[2].id.startswith("call_")
    assert r.stop_reason is StopReason.TOOL_USE  # "stop" with tool calls: still a tool turn
    refused = oc.parse_response({"choices": [{"message": {"role": "assistant", "content": None, "refusal": "No."},
                                              "finish_reason": "stop"}]})
    assert refused.parts == [TextPart("No.")] and refused.stop_reason is StopReason.REFUSAL
    length = oc.parse_response({"choices": [{"message": {"content": "abc"}, "finish_reason": "length"}]})
    assert length.stop_reason is StopReason.MAX_TOKENS


@pytest.mark.parametrize("body", [{"choices": []}, {"object": "list"}, [], {"choices": [{"message": None}]}])
def test_parse_response_bad_shapes(body):
    with pytest.raises(UpstreamBadResponse):
        oc.parse_response(body)


def test_parse_response_error_body_with_200():
    with pytest.raises(UpstreamRateLimited):
        oc.parse_response({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})


# -------------------------------------------------------------------------------------- stream decoder
def chunk(delta: dict | None, finish=None, usage=None, choices=True) -> bytes:
    body = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_1", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                       "finish_reason": finish}] if choices else []}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129,
         "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 2}}

# Text stream with include_usage, as the API reference shows it.
TEXT_STREAM = (chunk({"role": "assistant", "content": "", "refusal": None}, usage=None)
               + chunk({"content": "Hello"}) + chunk({"content": " there"}) + chunk({}, "stop")
               + chunk(None, usage=USAGE, choices=False) + b"data: [DONE]\n\n")

# Two parallel tool calls, arguments in fragments (tool_calls[].index tells them apart).
TOOL_STREAM = (
    chunk({"role": "assistant", "content": None})
    + chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\""}}]})
    + chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Paris\"}"}}]})
    + chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": ""}}]})
    + chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})
    + chunk({}, "tool_calls") + chunk(None, usage=USAGE, choices=False) + b"data: [DONE]\n\n"
)


def decode(data: bytes, step: int | None = None) -> list:
    d = oc.StreamDecoder()
    out = []
    if step:
        for i in range(0, len(data), step):
            out.extend(d.feed(data[i:i + step]))
    else:
        out.extend(d.feed(data))
    return out + d.close()


def test_decode_text_stream_with_usage_chunk():
    events = decode(TEXT_STREAM)
    assert events == [MessageStart("chatcmpl-9", "gpt-4o-mini"), BlockStart(0, "text"), TextDelta(0, "Hello"),
                      TextDelta(0, " there"), BlockStop(0),
                      MessageEnd(StopReason.END_TURN, Usage(input_tokens=20, output_tokens=9, cache_read_tokens=100,
                                                            reasoning_tokens=2))]
    for step in (1, 7, 64):
        assert decode(TEXT_STREAM, step) == events
    assert decode(TEXT_STREAM.replace(b"\n", b"\r\n"), 5) == events


def test_decode_parallel_tool_calls():
    events = decode(TOOL_STREAM)
    assert events[1:] == [
        BlockStart(0, "tool_call", "call_A", "get_weather"), ToolArgsDelta(0, '{"location"'), ToolArgsDelta(0, ': "Paris"}'),
        BlockStop(0), BlockStart(1, "tool_call", "call_B", "get_time"), ToolArgsDelta(1, "{}"), BlockStop(1),
        MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=20, output_tokens=9, cache_read_tokens=100, reasoning_tokens=2)),
    ]


def test_decode_reasoning_then_text_and_missing_finish_reason():
    data = (chunk({"role": "assistant", "reasoning_content": "Let me"}) + chunk({"reasoning_content": " think"})
            + chunk({"content": "Done"}) + b"data: [DONE]\n\n")
    assert decode(data)[1:] == [BlockStart(0, "thinking"), ThinkingDelta(0, "Let me"), ThinkingDelta(0, " think"),
                                BlockStop(0), BlockStart(1, "text"), TextDelta(1, "Done"), BlockStop(1),
                                MessageEnd(StopReason.END_TURN, Usage())]
    ollama_style = chunk({"role": "assistant", "content": "", "reasoning": "hm"}) + chunk({}, "length") + b"data: [DONE]\n\n"
    assert decode(ollama_style)[1:] == [BlockStart(0, "thinking"), ThinkingDelta(0, "hm"), BlockStop(0),
                                        MessageEnd(StopReason.MAX_TOKENS, Usage())]


def test_decode_finish_without_done_is_accepted_at_close():
    events = decode(chunk({"content": "x"}) + chunk({}, "stop", usage=USAGE))
    assert events[-1] == MessageEnd(StopReason.END_TURN, Usage(input_tokens=20, output_tokens=9, cache_read_tokens=100,
                                                              reasoning_tokens=2))


def test_decode_truncated_stream_raises():
    d = oc.StreamDecoder()
    d.feed(chunk({"content": "x"}))
    with pytest.raises(UpstreamBadResponse):
        d.close()


def test_decode_invalid_json_raises():
    with pytest.raises(UpstreamBadResponse):
        oc.StreamDecoder().feed(b"data: {not json}\n\n")


@pytest.mark.parametrize("err,cls", [
    ({"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}, UpstreamRateLimited),
    ({"message": "The server had an error", "type": "server_error", "code": None}, UpstreamServerError),
    ({"message": "Provider returned error", "code": 502}, UpstreamServerError),
    ({"message": "timed out", "type": "timeout"}, UpstreamTimeout),
])
def test_decode_error_frame_raises_typed(err, cls):
    d = oc.StreamDecoder()
    d.feed(chunk({"content": "x"}))
    with pytest.raises(cls) as e:
        d.feed(b"data: " + orjson.dumps({"error": err}) + b"\n\n")
    assert e.value.message == err["message"]


# ------------------------------------------------------------------------------------------- errors
def test_parse_error_shapes():
    body = orjson.dumps({"error": {"message": "Invalid model", "type": "invalid_request_error", "param": "model",
                                   "code": "model_not_found"}})
    e = oc.parse_error(404, body)
    assert isinstance(e, UpstreamClientError) and e.status == 404 and e.message == "Invalid model" and not e.retryable
    assert isinstance(oc.parse_error(429, orjson.dumps({"error": {"message": "slow"}})), UpstreamRateLimited)
    assert isinstance(oc.parse_error(503, b""), UpstreamServerError)
    garbage = oc.parse_error(502, b"<html>Bad Gateway</html>")
    assert isinstance(garbage, UpstreamServerError)
    assert garbage.message == "upstream answered HTTP 502 with a body that is not JSON"
    assert oc.parse_error(422, orjson.dumps({"detail": "bad field"})).message == "bad field"
    assert isinstance(oc.parse_error(504, b"{}"), UpstreamTimeout)


def test_render_error():
    assert oc.render_error(BadRequest("messages must be a non-empty list")) == (
        400, {"error": {"message": "messages must be a non-empty list", "type": "invalid_request_error",
                        "param": None, "code": "invalid_request_error"}})
    status, body = oc.render_error(UpstreamRateLimited("slow down"))
    assert status == 429 and body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_error"
    status, body = oc.render_error(UpstreamServerError("x"))
    assert status == 502 and body["error"]["type"] == "server_error"
