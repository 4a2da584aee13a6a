"""Anthropic Messages codec, and round trips through the OpenAI codec.

Payload shapes follow anthropic-sdk-python's types (MessageCreateParams, Message, Usage,
RawMessageStreamEvent, MessageDeltaUsage, ErrorResponse) and the streaming guide's examples
(docs.anthropic.com/en/api/messages-streaming: "Streaming request with tool use", "Streaming request with
extended thinking"). Encoder output is checked by the SDK itself: each event through a pydantic TypeAdapter
of `RawMessageStreamEvent`, the whole stream through the SDK's `accumulate_event`.
"""

from __future__ import annotations

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from multidict import CIMultiDict
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from app.canonical import (
    BlockStart, BlockStop, ChatRequest, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd,
    MessageStart, StopReason, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta, ToolCallPart,
    ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects import anthropic_messages as am
from app.dialects import openai_chat as oc
from app.dialects.sse import SSEParser
from app.errors import (
    BadRequest, PayloadTooLarge, UnknownModel, UpstreamBadResponse, UpstreamClientError, UpstreamRateLimited,
    UpstreamServerError, UpstreamTimeout,
)

EVENT = TypeAdapter(RawMessageStreamEvent)


def dep(model: str = "claude-sonnet-4-5", **kw) -> Deployment:
    return Deployment(id="a1", tier="orchestrator", provider="anthropic", model=model,
                      api_base="http://127.0.0.1:1", **kw)


def sse_events(data: bytes) -> list[tuple[str | None, dict]]:
    p = SSEParser()
    return [(e.event, orjson.loads(e.data)) for e in p.feed(data) + p.close()]


def accumulate(data: bytes):
    """Run encoder output through the SDK: validate every event, accumulate the final Message."""
    snapshot, bufs = None, {}
    for name, obj in sse_events(data):
        assert name == obj["type"]  # the SSE event name repeats the data's type
        event = EVENT.validate_python(obj)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


# ============================================================================================ inbound
FULL_REQUEST = {
    "model": "orchestrator", "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "Be careful."}],
    "messages": [
        {"role": "system", "content": "Extra system text."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look at this", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should read it", "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"},
            {"type": "text", "text": "Reading."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "tool_use", "id": "toolu_01A", "name": "read_file", "input": {"path": "a.py"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "print(1)"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": True,
             "content": [{"type": "text", "text": "denied"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}]},
            {"type": "text", "text": "continue"},
        ]},
    ],
    "tools": [
        {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
         "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}},
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["\n\nHuman:"], "temperature": 0.7, "top_p": 0.9, "top_k": 40,
    "metadata": {"user_id": "user-123"}, "thinking": {"type": "enabled", "budget_tokens": 2048}, "stream": True,
}


def test_parse_full_request():
    headers = CIMultiDict({"Anthropic-Version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31",
                           "x-api-key": "sk-ant-secret"})
    req = am.parse_request(FULL_REQUEST, headers)
    assert req.dialect is Dialect.ANTHROPIC and req.raw is FULL_REQUEST and req.model == "orchestrator"
    assert req.headers == {"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"}
    assert req.system == [TextPart("You are Claude Code.", {"type": "ephemeral"}), TextPart("Be careful."),
                          TextPart("Extra system text.")]
    assert req.messages == [
        Message("user", [TextPart("Look at this", {"type": "ephemeral"}), ImagePart(media_type="image/png", data="iVBOR"),
                         ImagePart(url="https://example.com/a.png"),
                         DocumentPart(FULL_REQUEST["messages"][1]["content"][3])]),
        Message("assistant", [ThinkingPart("I should read it", "EqQBCgIYAhIM"), ThinkingPart("", redacted="EmwKAhgBEgy3va"),
                              TextPart("Reading."), ToolCallPart("toolu_01A", "read_file", '{"path":"a.py"}')]),
        Message("user", [ToolResultPart("toolu_01A", [TextPart("print(1)")]),
                         ToolResultPart("toolu_01B", [TextPart("denied"), ImagePart(media_type="image/jpeg", data="/9j/")],
                                        is_error=True),
                         TextPart("continue")]),
    ]
    assert req.tools == [ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}}),
                         ToolSpec("noop", None, {"type": "object"})]
    assert req.tool_choice == ToolChoice("required", parallel=False)
    assert (req.max_tokens, req.stop, req.temperature, req.top_p, req.user) == (1024, ["\n\nHuman:"], 0.7, 0.9, "user-123")
    assert req.thinking == {"type": "enabled", "budget_tokens": 2048} and req.stream


def test_parse_plain_dict_headers_any_case_and_string_system():
    req = am.parse_request({"model": "m", "max_tokens": 5, "system": "sys", "messages": [{"role": "user", "content": "hi"}],
                            "tool_choice": {"type": "tool", "name": "f"}}, {"Anthropic-Beta": "x"})
    assert req.headers == {"anthropic-beta": "x"} and req.system == [TextPart("sys")]
    assert req.tool_choice == ToolChoice("tool", "f") and req.messages == [Message("user", [TextPart("hi")])]


def test_count_tokens_body_needs_no_max_tokens():
    req = am.parse_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {}, require_max_tokens=False)
    assert req.max_tokens is None


@pytest.mark.parametrize("body,message", [
    ({"model": "m", "messages": []}, "max_tokens is required"),
    ({"max_tokens": 1, "messages": []}, "model is required and must be a string"),
    ({"model": "m", "max_tokens": "many", "messages": []}, "max_tokens must be an integer"),
    ({"model": "m", "max_tokens": 1, "messages": {}}, "messages must be a list"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": 1}]},
     "messages[0].content must be a string or a list of content blocks"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role must be user or assistant"),
    ({"model": "m", "max_tokens": 1, "messages": [], "system": 5}, "system must be a string or a list of text blocks"),
    ({"model": "m", "max_tokens": 1, "messages": [], "tool_choice": {"type": "tool"}},
     'tool_choice must be {"type": "auto" | "any" | "none"} or {"type": "tool", "name": ...}'),
    ({"model": "m", "max_tokens": 1, "messages": [], "stop_sequences": "x"}, "stop_sequences must be a list of strings"),
    ({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "messages[0].content[0].tool_use_id must be a string"),
])
def test_parse_errors_name_the_field(body, message):
    with pytest.raises(BadRequest) as e:
        am.parse_request(body, {})
    assert e.value.message == message


def test_render_response_validates_with_sdk():
    resp = ChatResponse("msg_01", "gpt-4o", [ThinkingPart("why", signature=None), TextPart("Sure."),
                                             ToolCallPart("call_1", "get_weather", '{"city": "Paris"}'),
                                             ToolCallPart("call_2", "broken", '{"city": ')],
                        StopReason.TOOL_USE, Usage(input_tokens=11, output_tokens=22, cache_read_tokens=3, cache_write_tokens=4))
    body = am.render_response(resp, ChatRequest(model="orchestrator", messages=[]))
    msg = SDKMessage.model_validate(body)
    assert msg.model == "orchestrator" and msg.stop_reason == "tool_use" and msg.stop_sequence is None
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[2].input == {"city": "Paris"} and msg.content[2].id == "call_1"
    assert msg.content[3].input == {}  # unparseable arguments cannot be an input object
    assert body["usage"] == {"input_tokens": 11, "output_tokens": 22, "cache_creation_input_tokens": 4,
                             "cache_read_input_tokens": 3}


# ------------------------------------------------------------------------------------ stream encoder
def test_stream_encoder_event_sequence_accumulates_with_sdk():
    events = [
        MessageStart("ignored", "gpt-4o"),  # usage unknown up front (OpenAI upstream)
        BlockStart(0, "thinking"), ThinkingDelta(0, "hmm"), ThinkingDelta(0, "", signature="c2ln"), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "Hi"), TextDelta(1, " there"), BlockStop(1),
        BlockStart(2, "tool_call", "call_1", "get_weather"), ToolArgsDelta(2, '{"city"'), ToolArgsDelta(2, ': "Paris"}'),
        BlockStop(2),
        MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=100, output_tokens=42, cache_read_tokens=7)),
    ]
    enc = am.StreamEncoder(ChatRequest(model="orchestrator", messages=[]), "msg_tg_1")
    data = b"".join(enc.encode(e) for e in events) + enc.finish()
    names = [n for n, _ in sse_events(data)]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    start = sse_events(data)[0][1]
    assert start == {"type": "message_start", "message": {
        "id": "msg_tg_1", "type": "message", "role": "assistant", "content": [], "model": "orchestrator",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}
    msg = accumulate(data)
    assert msg.id == "msg_tg_1" and msg.stop_reason == "tool_use"
    assert msg.content[0].thinking == "hmm" and msg.content[0].signature == "c2ln"
    assert msg.content[1].text == "Hi there"
    assert (msg.content[2].id, msg.content[2].name, msg.content[2].input) == ("call_1", "get_weather", {"city": "Paris"})
    # input usage known only at the end reaches the SDK through message_delta
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (100, 42, 7)


def test_stream_encoder_error_event():
    enc = am.StreamEncoder(ChatRequest(model="m", messages=[]), "msg_1")
    out = enc.error(UpstreamServerError("Overloaded", upstream_status=529))
    assert out == (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    assert enc.encode(TextDelta(0, "x")) == b"" and enc.finish() == b""


# ================================================================================= outbound: request
def test_build_request_shapes():
    req = ChatRequest(
        model="orchestrator", system=[TextPart("sys", {"type": "ephemeral"}), TextPart("")],
        messages=[
            Message("user", [TextPart("a")]), Message("user", [TextPart("b"), ImagePart(url="data:image/gif;base64,R0lG")]),
            Message("assistant", [ThinkingPart("unsigned"), TextPart("calling"), ToolCallPart("functions.read:0", "read", "")]),
            Message("user", [TextPart("also this")]),
            Message("user", [ToolResultPart("functions.read:0", [TextPart("ok")], is_error=True)]),
        ],
        tools=[ToolSpec("read", "Read", {"type": "object"})], tool_choice=ToolChoice("auto", parallel=False),
        temperature=0.3, top_p=0.8, stop=["STOP"], seed=3, user="u1",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})
    body = am.build_request(req, dep(max_output_tokens=1000), stream=True)
    assert body == {
        "model": "claude-sonnet-4-5", "max_tokens": 1000,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Respond with a single JSON object that matches this JSON schema, "
                                            "and nothing else:\n{\"type\":\"object\"}"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                                              {"type": "tool_use", "id": "functions_read_0", "name": "read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "functions_read_0", "is_error": True,
                                          "content": [{"type": "text", "text": "ok"}]},
                                         {"type": "text", "text": "also this"}]},
        ],
        "tools": [{"name": "read", "description": "Read", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stop_sequences": ["STOP"], "temperature": 0.3, "metadata": {"user_id": "u1"}, "stream": True,
    }


def test_build_request_defaults_and_tool_choice_mapping():
    body = am.build_request(ChatRequest(model="m", messages=[Message("user", [TextPart("q")])]), dep(), stream=False)
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]}
    tools = [ToolSpec("f", None, {"type": "object"})]
    for choice, wire in [(ToolChoice("required"), {"type": "any"}), (ToolChoice("tool", "f"), {"type": "tool", "name": "f"}),
                         (ToolChoice("none"), {"type": "none"}),
                         (ToolChoice("required", parallel=False), {"type": "any", "disable_parallel_tool_use": True})]:
        body = am.build_request(ChatRequest(model="m", messages=[], tools=tools, tool_choice=choice), dep(), stream=False)
        assert body["tool_choice"] == wire
    body = am.build_request(ChatRequest(model="m", messages=[], top_p=0.5), dep(extra_params={"temperature": 0.1, "top_k": 5}),
                            stream=False)
    assert (body["top_p"], body["top_k"]) == (0.5, 5) and "temperature" not in body


def test_build_request_thinking():
    base = dict(model="m", messages=[Message("user", [TextPart("q")])], temperature=0.2)
    body = am.build_request(ChatRequest(**base, reasoning_effort="high", max_tokens=2000), dep(), stream=False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert body["max_tokens"] == 18384 and "temperature" not in body
    body = am.build_request(ChatRequest(**base, reasoning_effort="low", max_tokens=2000), dep(max_output_tokens=1500), stream=False)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1499} and body["max_tokens"] == 1500
    body = am.build_request(ChatRequest(**base, reasoning_effort="high"), dep("claude-3-5-haiku-latest"), stream=False)
    assert "thinking" not in body and body["temperature"] == 0.2  # no extended thinking on that model
    forced = am.build_request(ChatRequest(**base, reasoning_effort="high", tools=[ToolSpec("f", None, {})],
                                          tool_choice=ToolChoice("tool", "f")), dep(), stream=False)
    assert "thinking" not in forced
    history = [Message("user", [TextPart("q")]), Message("assistant", [ToolCallPart("c1", "f", "{}")]),
               Message("user", [ToolResultPart("c1", [TextPart("r")])])]
    unsigned = am.build_request(ChatRequest(model="m", messages=history, reasoning_effort="medium"), dep(), stream=False)
    assert "thinking" not in unsigned
    given = am.build_request(ChatRequest(model="m", messages=[], thinking={"type": "adaptive"}, temperature=1.0),
                             dep(), stream=False)
    assert given["thinking"] == {"type": "adaptive"} and given["temperature"] == 1.0


# ================================================================================ outbound: response
# The documentation's Message with extended thinking and a tool call (anthropic.types.Message).
RECORDED_MESSAGE = {
    "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCgIYAhIMzM"},
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "celsius"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 2051,
              "cache_read_input_tokens": 0, "service_tier": "standard"},
}


def test_parse_recorded_message():
    SDKMessage.model_validate(RECORDED_MESSAGE)
    r = am.parse_response(RECORDED_MESSAGE)
    assert r.id == "msg_01Aq9w938a90dw8q" and r.model == "claude-sonnet-4-5-20250929"
    assert r.parts == [ThinkingPart("The user wants the weather.", "EqQBCgIYAhIMzM"), TextPart("I'll check."),
                       ToolCallPart("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                    '{"location":"San Francisco, CA","unit":"celsius"}')]
    assert r.stop_reason is StopReason.TOOL_USE
    assert r.usage == Usage(input_tokens=2095, output_tokens=503, cache_write_tokens=2051)


@pytest.mark.parametrize("reason,stop", [("end_turn", StopReason.END_TURN), ("max_tokens", StopReason.MAX_TOKENS),
                                         ("stop_sequence", StopReason.STOP_SEQUENCE), ("pause_turn", StopReason.PAUSE),
                                         ("refusal", StopReason.REFUSAL), ("model_context_window_exceeded", StopReason.MAX_TOKENS),
                                         (None, StopReason.END_TURN)])
def test_parse_stop_reasons(reason, stop):
    assert am.parse_response({**RECORDED_MESSAGE, "stop_reason": reason}).stop_reason is stop


def test_parse_response_error_and_bad_shapes():
    with pytest.raises(UpstreamServerError):
        am.parse_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(UpstreamBadResponse):
        am.parse_response({"type": "message", "content": "text"})


# -------------------------------------------------------------------------------------- stream decoder
def ev(obj: dict) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# The streaming guide's "Streaming request with tool use" example, shortened.
TOOL_STREAM = b"".join([
    ev({"type": "message_start", "message": {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
                                             "model": "claude-opus-4-1", "stop_sequence": None, "content": [], "stop_reason": None,
                                             "usage": {"input_tokens": 472, "output_tokens": 2, "cache_creation_input_tokens": 0,
                                                       "cache_read_input_tokens": 128}}}),
    ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    b'event: ping\ndata: {"type": "ping"}\n\n',
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay, let me check"}}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " the weather."}}),
    ev({"type": "content_block_stop", "index": 0}),
    ev({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                                                                      "name": "get_weather", "input": {}}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"San Francisco, CA\"}"}}),
    ev({"type": "content_block_stop", "index": 1}),
    ev({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_time",
                                                                      "input": {}}}),
    ev({"type": "content_block_stop", "index": 2}),
    ev({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 89}}),
    ev({"type": "message_stop"}),
])
TOOL_STREAM_USAGE = Usage(input_tokens=472, output_tokens=89, cache_read_tokens=128)


def decode(data: bytes, step: int | None = None) -> list:
    d = am.StreamDecoder()
    out = []
    for i in range(0, len(data), step or len(data)):
        out.extend(d.feed(data[i:i + (step or len(data))]))
    return out + d.close()


def test_decode_recorded_tool_stream():
    events = decode(TOOL_STREAM)
    assert events == [
        MessageStart("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-opus-4-1", Usage(input_tokens=472, output_tokens=2, cache_read_tokens=128)),
        BlockStart(0, "text"), TextDelta(0, "Okay, let me check"), TextDelta(0, " the weather."), BlockStop(0),
        BlockStart(1, "tool_call", "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        ToolArgsDelta(1, '{"location":'), ToolArgsDelta(1, ' "San Francisco, CA"}'), BlockStop(1),
        BlockStart(2, "tool_call", "toolu_02", "get_time"), BlockStop(2),
        MessageEnd(StopReason.TOOL_USE, TOOL_STREAM_USAGE),
    ]
    for step in (1, 13, 200):
        assert decode(TOOL_STREAM, step) == events
    assert decode(TOOL_STREAM.replace(b"\n", b"\r\n"), 9) == events


def test_decode_thinking_redacted_and_server_blocks_renumbered():
    data = b"".join([
        ev({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "c", "content": [],
                                                 "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
        ev({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCg"}}),
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwK"}}),
        ev({"type": "content_block_stop", "index": 1}),
        ev({"type": "content_block_start", "index": 2, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
        ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"query\": \"x\"}"}}),
        ev({"type": "content_block_stop", "index": 2}),
        ev({"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": ""}}),
        ev({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "Answer"}}),
        ev({"type": "content_block_stop", "index": 3}),
        ev({"type": "some_future_event", "x": 1}),
        ev({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 30, "input_tokens": 5, "cache_read_input_tokens": 0}}),
        ev({"type": "message_stop"}),
    ])
    assert decode(data)[1:] == [
        BlockStart(0, "thinking"), ThinkingDelta(0, "Let me think"), ThinkingDelta(0, "", signature="EqQBCg"), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "Answer"), BlockStop(1),
        MessageEnd(StopReason.END_TURN, Usage(input_tokens=5, output_tokens=30)),
    ]


@pytest.mark.parametrize("etype,cls", [("overloaded_error", UpstreamServerError), ("api_error", UpstreamServerError),
                                       ("rate_limit_error", UpstreamRateLimited), ("timeout_error", UpstreamTimeout),
                                       ("invalid_request_error", UpstreamClientError)])
def test_decode_error_event(etype, cls):
    d = am.StreamDecoder()
    d.feed(TOOL_STREAM[:TOOL_STREAM.index(b"event: ping")])
    with pytest.raises(cls) as e:
        d.feed(b'event: error\ndata: {"type": "error", "error": {"type": "%s", "message": "Overloaded"}}\n\n' % etype.encode())
    assert e.value.message == "Overloaded"


def test_decode_truncated_and_garbage():
    d = am.StreamDecoder()
    d.feed(TOOL_STREAM[: TOOL_STREAM.index(b"event: message_stop")])
    with pytest.raises(UpstreamBadResponse):
        d.close()
    with pytest.raises(UpstreamBadResponse):
        am.StreamDecoder().feed(b"event: message_start\ndata: <html>\n\n")


# ------------------------------------------------------------------------------------------- errors
def test_parse_error():
    body = orjson.dumps({"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"},
                         "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    e = am.parse_error(404, body)
    assert isinstance(e, UpstreamClientError) and e.status == 404 and e.message == "model: claude-x"
    assert e.details["request_id"] == "req_011CSHoEeqs5C35K2UUqR7Fy"
    over = am.parse_error(529, orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert isinstance(over, UpstreamServerError) and over.upstream_status == 529
    assert isinstance(am.parse_error(429, b"{}"), UpstreamRateLimited)
    garbage = am.parse_error(500, b"\x00\xffnot json")
    assert isinstance(garbage, UpstreamServerError) and garbage.message == "upstream answered HTTP 500 with a body that is not JSON"


@pytest.mark.parametrize("err,status,etype", [
    (BadRequest("bad"), 400, "invalid_request_error"), (UnknownModel("nope"), 404, "not_found_error"),
    (PayloadTooLarge("big"), 413, "request_too_large"), (UpstreamRateLimited("slow"), 429, "rate_limit_error"),
    (UpstreamServerError("boom"), 502, "api_error"), (UpstreamServerError("busy", upstream_status=529), 502, "overloaded_error"),
])
def test_render_error(err, status, etype):
    assert am.render_error(err) == (status, {"type": "error", "error": {"type": etype, "message": err.message}})


def test_render_error_request_id():
    err = BadRequest("x")
    err.details["request_id"] = "req_1"
    assert am.render_error(err)[1]["request_id"] == "req_1"


def test_estimate_tokens():
    req = ChatRequest(model="m", system=[TextPart("a" * 40)],
                      messages=[Message("user", [TextPart("b" * 400), ImagePart(url="https://x")]),
                                Message("assistant", [ToolCallPart("c", "read", '{"p":1}')])],
                      tools=[ToolSpec("read", "Read it", {"type": "object"})])
    # chars: 40 + 400 + (4 + 7) + (4 + 7 + 17) = 479 -> 120; + 2*4 messages + 1600 image + 300 tools
    assert am.estimate_tokens(req) == 120 + 8 + 1600 + 300


# ======================================================================================== round trips
OPENAI_TOOL_CONVERSATION = {
    "model": "coder",
    "messages": [
        {"role": "user", "content": "weather in Paris and time?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_Abc123", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"units\": [\"C\"]}"}},
            {"id": "call_Def456", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_Abc123", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_Def456", "content": "12:00"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
              {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}],
}


def test_request_round_trip_openai_anthropic_openai_keeps_tool_calls():
    canon = oc.parse_request(OPENAI_TOOL_CONVERSATION, {})
    wire = am.build_request(canon, dep(), stream=False)
    back = am.parse_request(orjson.loads(orjson.dumps(wire)), {})
    out = oc.build_request(back, dep("gpt-4o"), stream=False)
    sent = OPENAI_TOOL_CONVERSATION["messages"]
    assert out["messages"][1]["content"] == "Checking."
    got_calls = out["messages"][1]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in got_calls] == [("call_Abc123", "get_weather"), ("call_Def456", "get_time")]
    # arguments pass through Anthropic's `input` object: the same JSON value, compact spacing
    assert [orjson.loads(c["function"]["arguments"]) for c in got_calls] == [
        orjson.loads(c["function"]["arguments"]) for c in sent[1]["tool_calls"]]
    assert out["messages"][2:] == [{"role": "tool", "tool_call_id": "call_Abc123", "content": "18C"},
                                   {"role": "tool", "tool_call_id": "call_Def456", "content": "12:00"}]


def test_stream_round_trip_anthropic_upstream_to_openai_client():
    """Recorded Anthropic stream -> canonical -> OpenAI chunks -> the openai SDK's accumulator."""
    req = ChatRequest(model="coder", messages=[], stream=True, include_usage=True)
    enc = oc.StreamEncoder(req, "chatcmpl-tg")
    dec = am.StreamDecoder()
    wire = b""
    for i in range(0, len(TOOL_STREAM), 37):
        wire += b"".join(enc.encode(e) for e in dec.feed(TOOL_STREAM[i:i + 37]))
    wire += b"".join(enc.encode(e) for e in dec.close()) + enc.finish()
    p = SSEParser()
    datas = [e.data for e in p.feed(wire)]
    assert datas[-1] == b"[DONE]"
    state = ChatCompletionStreamState()
    for d in datas[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate_json(d))
    final = state.get_final_completion()
    m = final.choices[0].message
    assert m.content == "Okay, let me check the weather." and final.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in m.tool_calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", '{"location": "San Francisco, CA"}'),
        ("toolu_02", "get_time", "{}")]
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (600, 89)
    assert final.usage.prompt_tokens_details.cached_tokens == 128


def test_stream_round_trip_openai_upstream_to_anthropic_client_and_back():
    """OpenAI chunks -> canonical -> Anthropic SSE (SDK-accumulated) -> canonical -> OpenAI chunks."""
    from tests.unit.test_dialect_openai_chat import TOOL_STREAM as OPENAI_TOOL_STREAM

    events = oc.StreamDecoder().feed(OPENAI_TOOL_STREAM)
    enc = am.StreamEncoder(ChatRequest(model="orchestrator", messages=[]), "msg_tg")
    anthropic_wire = b"".join(enc.encode(e) for e in events) + enc.finish()
    msg = accumulate(anthropic_wire)
    assert [(b.id, b.name, b.input) for b in msg.content] == [("call_A", "get_weather", {"location": "Paris"}),
                                                              ("call_B", "get_time", {})]
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (20, 9, 100)
    # and back to an OpenAI client: ids, names and argument text unchanged
    back = am.StreamDecoder()
    again = back.feed(anthropic_wire) + back.close()
    calls = {e.index: [e.tool_call_id, e.tool_name, ""] for e in again if isinstance(e, BlockStart)}
    for e in again:
        if isinstance(e, ToolArgsDelta):
            calls[e.index][2] += e.partial_json
    assert list(calls.values()) == [["call_A", "get_weather", '{"location": "Paris"}'], ["call_B", "get_time", "{}"]]
