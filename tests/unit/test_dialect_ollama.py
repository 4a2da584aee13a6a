"""Ollama native codec: POST /api/chat (NDJSON streams) and POST /api/embed.

Payloads follow Ollama's docs/api.md (the streaming, no-streaming, tools, structured-output and embed
examples) and the official `ollama` Python client's types (`ollama._types`: ChatRequest, Message with
thinking/images/tool_calls/tool_name, ChatResponse, EmbedResponse). The inbound side is checked with the
official client itself talking to a 127.0.0.1 server.
"""

from __future__ import annotations

import logging

import ollama
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from ollama._types import ChatRequest as OllamaChatRequest
from ollama._types import ChatResponse as OllamaChatResponse

from app.canonical import (
    BlockStart, BlockStop, ChatResponse, DocumentPart, EmbeddingRequest, ImagePart, Message, MessageEnd,
    MessageStart, StopReason, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta, ToolCallPart,
    ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects import ollama_chat as O
from app.dialects import openai_responses as R
from app.errors import (
    BadRequest, UpstreamBadResponse, UpstreamClientError, UpstreamRateLimited, UpstreamServerError,
)

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
JPG_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD"


def dep(model: str = "qwen3:8b", **kw) -> Deployment:
    return Deployment(id="o1", tier="helper", provider="ollama", model=model, api_base="http://127.0.0.1:11434", **kw)


def canonical_request(**kw):
    req = R.parse_request({"model": "helper", "input": "x"}, {})
    for k, v in kw.items():
        setattr(req, k, v)
    return req


# =========================================================================================== outbound
def test_build_request_full():
    req = canonical_request(
        system=[TextPart("Be brief.")],
        messages=[
            Message("user", [TextPart("What is this?"), ImagePart(media_type="image/png", data=PNG_B64),
                             ImagePart(url=f"data:image/jpeg;base64,{JPG_B64}"),
                             ImagePart(url="https://example.com/cat.jpg")]),
            Message("assistant", [ThinkingPart("hmm"), TextPart("Let me check."),
                                  ToolCallPart("toolu_1", "get_weather", '{"city": "Paris", "days": 2}'),
                                  ToolCallPart("toolu_2", "get_time", "")]),
            Message("user", [ToolResultPart("toolu_1", [TextPart("18C"), TextPart("sunny")]),
                             ToolResultPart("toolu_2", [TextPart("no clock")], is_error=True),
                             TextPart("Thanks"),
                             DocumentPart({"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                          "data": "notes"}})]),
        ],
        tools=[ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}},
                                                   "required": ["city"]}),
               ToolSpec("get_time", None, {"type": "object", "properties": {}})],
        tool_choice=ToolChoice("auto"), max_tokens=5000, temperature=0.2, top_p=0.9, seed=42, stop=["</end>"],
        response_format={"type": "json_object"}, reasoning_effort="high", stream=True)
    body = O.build_request(req, dep(context_length=32768, keep_alive="30m", max_output_tokens=2048), stream=True)
    assert body == {
        "model": "qwen3:8b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?\n\n" + O._IMAGE_NOTE, "images": [PNG_B64, JPG_B64]},
            {"role": "assistant", "content": "Let me check.", "thinking": "hmm", "tool_calls": [
                {"id": "toolu_1", "function": {"index": 0, "name": "get_weather",
                                               "arguments": {"city": "Paris", "days": 2}}},
                {"id": "toolu_2", "function": {"index": 1, "name": "get_time", "arguments": {}}}]},
            {"role": "tool", "content": "18C\nsunny", "tool_name": "get_weather", "tool_call_id": "toolu_1"},
            {"role": "tool", "content": "Error: no clock", "tool_name": "get_time", "tool_call_id": "toolu_2"},
            {"role": "user", "content": "Thanks\n\nnotes"},
        ],
        "stream": True,
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "description": "",
                                              "parameters": {"type": "object", "properties": {}}}},
        ],
        "format": "json",
        "options": {"num_ctx": 32768, "temperature": 0.2, "top_p": 0.9, "seed": 42, "stop": ["</end>"],
                    "num_predict": 2048},
        "keep_alive": "30m",
        "think": True,
    }
    OllamaChatRequest.model_validate(body)  # the official client's request type accepts it


def test_build_request_minimal_and_schema_format():
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    req = canonical_request(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
                            tools=[ToolSpec("f", None, {})], tool_choice=ToolChoice("none"))
    body = O.build_request(req, dep(), stream=False)
    assert body == {"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}], "stream": False,
                    "format": schema}  # tool_choice none: no tools; no context length known: no options


@pytest.mark.parametrize("model, effort, thinking, expected", [
    ("qwen3:8b", None, None, None),
    ("qwen3:8b", "low", None, True),
    ("qwen3:8b", "minimal", None, False),
    ("qwen3:8b", "none", None, False),
    ("qwen3:8b", None, {"type": "enabled", "budget_tokens": 2048}, True),
    ("qwen3:8b", None, {"type": "disabled"}, False),
    ("gpt-oss:20b", "medium", None, "medium"),
    ("gpt-oss:20b", "xhigh", None, "high"),
    ("gpt-oss:120b", None, {"type": "enabled", "budget_tokens": 9000}, "medium"),
])
def test_think_mapping(model, effort, thinking, expected):
    body = O.build_request(canonical_request(reasoning_effort=effort, thinking=thinking), dep(model), stream=True)
    assert body.get("think", None) == expected


def test_invalid_tool_arguments_become_empty_object(caplog):
    req = canonical_request(messages=[Message("user", [TextPart("go")]),
                                      Message("assistant", [ToolCallPart("c1", "f", '{"broken": ')]),
                                      Message("user", [ToolResultPart("c1", [TextPart("r")])])])
    with caplog.at_level(logging.WARNING, logger="app.dialects.ollama_chat"):
        body = O.build_request(req, dep(), stream=False)
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == {}
    assert "not a JSON object (11 chars)" in caplog.text and "broken" not in caplog.text


# Docs: "Chat request (with tools)" response.
DOCS_TOOL_RESPONSE = {
    "model": "llama3.2", "created_at": "2024-07-22T20:33:28.123648Z",
    "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}}]},
    "done_reason": "stop", "done": True, "total_duration": 885095291, "load_duration": 3753500,
    "prompt_eval_count": 122, "prompt_eval_duration": 328493000, "eval_count": 33, "eval_duration": 552222000,
}


def test_parse_response_tool_call():
    OllamaChatResponse.model_validate(DOCS_TOOL_RESPONSE)
    r = O.parse_response(DOCS_TOOL_RESPONSE)
    assert r.model == "llama3.2" and r.stop_reason is StopReason.TOOL_USE
    assert r.usage == Usage(input_tokens=122, output_tokens=33)
    (call,) = r.parts
    assert call.id.startswith("call_") and len(call.id) == 29 and call.name == "get_current_weather"
    assert orjson.loads(call.arguments) == {"format": "celsius", "location": "Paris, FR"}


def test_parse_response_text_thinking_length_and_ids():
    body = {"model": "qwen3", "created_at": "2025-05-29T09:35:56.836222Z",
            "message": {"role": "assistant", "content": "Answer", "thinking": "Reason"},
            "done": True, "done_reason": "length", "eval_count": 5}
    r = O.parse_response(body)
    assert r.parts == [ThinkingPart("Reason"), TextPart("Answer")]
    assert r.stop_reason is StopReason.MAX_TOKENS and r.usage == Usage(input_tokens=0, output_tokens=5)
    with_id = {**DOCS_TOOL_RESPONSE, "message": {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_kx3", "function": {"index": 0, "name": "f", "arguments": {}}}]}}
    assert O.parse_response(with_id).parts == [ToolCallPart("call_kx3", "f", "{}")]
    with pytest.raises(UpstreamClientError):
        O.parse_response({"error": "model 'nope' not found"})
    with pytest.raises(UpstreamBadResponse):
        O.parse_response({"model": "x", "done": True})


# Docs: "Chat Request (Streaming)" lines, thinking lines (think: true) and a tool-call chunk.
STREAM_LINES = [
    {"model": "qwen3", "created_at": "2025-05-29T09:35:56.1Z", "message": {"role": "assistant", "content": "",
                                                                         "thinking": "The user"}, "done": False},
    {"model": "qwen3", "created_at": "2025-05-29T09:35:56.2Z", "message": {"role": "assistant", "content": "",
                                                                         "thinking": " asks."}, "done": False},
    {"model": "qwen3", "created_at": "2023-08-04T08:52:19.385406455-07:00",
     "message": {"role": "assistant", "content": "The", "images": None}, "done": False},
    {"model": "qwen3", "created_at": "2023-08-04T08:52:19.4Z", "message": {"role": "assistant", "content": " sky"},
     "done": False},
    {"model": "qwen3", "created_at": "2024-07-22T20:33:28.1Z", "message": {"role": "assistant", "content": "",
     "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Paris, FR"}}},
                    {"function": {"name": "get_time", "arguments": {}}}]}, "done": False},
    {"model": "qwen3", "created_at": "2023-08-04T19:22:45.499127Z", "message": {"role": "assistant", "content": ""},
     "done": True, "done_reason": "stop", "total_duration": 4883583458, "load_duration": 1334875,
     "prompt_eval_count": 26, "prompt_eval_duration": 342546000, "eval_count": 282, "eval_duration": 4535599000},
]
STREAM = b"".join(orjson.dumps(x) + b"\n" for x in STREAM_LINES)


def _decode(data: bytes, size: int) -> list:
    dec = O.StreamDecoder()
    out = []
    for i in range(0, len(data), size):
        out += dec.feed(data[i:i + size])
    return out + dec.close()


@pytest.mark.parametrize("size", [1, 3, 50, len(STREAM)])
def test_stream_decoder_any_chunking(size):
    for line in STREAM_LINES:
        OllamaChatResponse.model_validate(line)
    got = _decode(STREAM, size)
    start, rest = got[0], got[1:]
    assert type(start) is MessageStart and start.model == "qwen3" and start.id.startswith("chatcmpl-")
    ids = [e.tool_call_id for e in rest if type(e) is BlockStart and e.kind == "tool_call"]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2
    assert rest == [
        BlockStart(0, "thinking"), ThinkingDelta(0, "The user"), ThinkingDelta(0, " asks."), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "The"), TextDelta(1, " sky"), BlockStop(1),
        BlockStart(2, "tool_call", ids[0], "get_current_weather"), ToolArgsDelta(2, '{"location":"Paris, FR"}'),
        BlockStop(2),
        BlockStart(3, "tool_call", ids[1], "get_time"), ToolArgsDelta(3, "{}"), BlockStop(3),
        MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=26, output_tokens=282)),
    ]


def test_stream_decoder_length_missing_counts_and_crlf():
    data = (b'{"model":"m","created_at":"t","message":{"role":"assistant","content":"a"},"done":false}\r\n'
            b'{"model":"m","created_at":"t","message":{"role":"assistant","content":""},"done":true,'
            b'"done_reason":"length"}')  # last line without its newline
    got = _decode(data, 5)
    assert got[1:] == [BlockStart(0, "text"), TextDelta(0, "a"), BlockStop(0),
                       MessageEnd(StopReason.MAX_TOKENS, Usage())]


def test_stream_decoder_errors():
    dec = O.StreamDecoder()
    dec.feed(STREAM.split(b"\n", 3)[0] + b"\n")
    with pytest.raises(UpstreamBadResponse):
        dec.close()  # no done:true line
    with pytest.raises(UpstreamClientError) as e:
        O.StreamDecoder().feed(b'{"error":"model \\"llama9\\" not found, try pulling it first"}\n')
    assert e.value.upstream_status == 404 and e.value.retryable is False
    with pytest.raises(UpstreamServerError):
        O.StreamDecoder().feed(STREAM.split(b"\n")[0] + b'\n{"error":"an error was encountered while running the model"}\n')
    with pytest.raises(UpstreamBadResponse):
        O.StreamDecoder().feed(b"<html>502</html>\n")


def test_parse_error():
    e = O.parse_error(404, b'{"error":"model \'llama9\' not found"}')
    assert type(e) is UpstreamClientError and e.status == 404 and "not found" in e.message
    assert type(O.parse_error(500, b'{"error":"llama runner process has terminated"}')) is UpstreamServerError
    assert type(O.parse_error(503, b"")) is UpstreamServerError
    assert type(O.parse_error(429, b'{"error":"too many requests"}')) is UpstreamRateLimited
    e = O.parse_error(400, b'{"error":"json: cannot unmarshal string into Go struct field"}')
    assert type(e) is UpstreamClientError and e.status == 400


# ========================================================================================= embeddings
def test_embed_request_and_response():
    req = EmbeddingRequest(model="embed", input=["Why is the sky blue?", "Why is the grass green?"], dimensions=256)
    assert O.build_embed_request(req, dep("all-minilm", context_length=512, keep_alive=-1)) == {
        "model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"], "dimensions": 256,
        "options": {"num_ctx": 512}, "keep_alive": -1}
    with pytest.raises(BadRequest):
        O.build_embed_request(EmbeddingRequest(model="e", input=[[1, 2, 3]]), dep())
    # Docs: "Generate Embeddings" (multiple input) response.
    body = {"model": "all-minilm", "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
            "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8}
    r = O.parse_embed_response(body)
    assert r.model == "all-minilm" and r.vectors == body["embeddings"] and r.usage == Usage(input_tokens=8)
    with pytest.raises(UpstreamBadResponse):
        O.parse_embed_response({"model": "x"})
    with pytest.raises(UpstreamClientError):
        O.parse_embed_response({"error": "model \"nomic\" not found"})


# ============================================================================================ inbound
def test_parse_request_docs_shapes():
    body = {"model": "llama3.2", "messages": [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "what is in this image?", "images": [PNG_B64, JPG_B64]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}}]},
        {"role": "tool", "content": "22C", "tool_name": "get_current_weather"},
        {"role": "user", "content": "thanks"},
    ], "tools": [{"type": "function", "function": {"name": "get_current_weather", "description": "Weather",
                                                   "parameters": {"type": "object", "properties": {}}}}],
        "format": {"type": "object"}, "options": {"temperature": 0, "num_predict": 100, "seed": 101, "stop": ["x"]},
        "think": True, "keep_alive": "5m"}
    req = O.parse_request(body, {})
    assert req.stream is True and req.system == [TextPart("Be nice.")]
    assert req.messages[0].parts == [TextPart("what is in this image?"), ImagePart(media_type="image/png", data=PNG_B64),
                                     ImagePart(media_type="image/jpeg", data=JPG_B64)]
    call = req.messages[1].parts[0]
    assert call.name == "get_current_weather" and call.arguments == '{"location":"Paris"}'
    assert req.messages[2].parts == [ToolResultPart(call.id, [TextPart("22C")], name="get_current_weather"),
                                     TextPart("thanks")]
    assert (req.temperature, req.max_tokens, req.seed, req.stop) == (0, 100, 101, ["x"])
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "response",
                                                                          "schema": {"type": "object"}}}
    assert req.reasoning_effort == "medium" and req.tools[0].name == "get_current_weather"
    with pytest.raises(BadRequest) as e:
        O.parse_request({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, {})
    assert e.value.message.startswith("messages[0].role:")
    with pytest.raises(BadRequest) as e:
        O.parse_request({"model": "m", "messages": [], "options": {"temperature": "hot"}}, {})
    assert e.value.message.startswith("options.temperature:")


CANNED = [MessageStart("m", "x", Usage(input_tokens=12)), BlockStart(0, "thinking"), ThinkingDelta(0, "hm"),
          BlockStop(0), BlockStart(1, "text"), TextDelta(1, "Hel"), TextDelta(1, "lo"), BlockStop(1),
          BlockStart(2, "tool_call", "toolu_1", "get_weather"), ToolArgsDelta(2, '{"city":'), ToolArgsDelta(2, '"Oslo"}'),
          BlockStop(2), MessageEnd(StopReason.TOOL_USE, Usage(output_tokens=9))]


async def _serve(request: web.Request) -> web.StreamResponse:
    req = O.parse_request(await request.json(), request.headers)
    if not req.stream:
        resp = ChatResponse("x", "m", [TextPart("Hi"), ToolCallPart("c1", "f", '{"a": 1}')], StopReason.TOOL_USE,
                            Usage(4, 2))
        return web.json_response(O.render_response(resp, req))
    out = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
    await out.prepare(request)
    enc = O.StreamEncoder(req, "r")
    data = b"".join(enc.encode(e) for e in CANNED) + enc.finish()
    for i in range(0, len(data), 41):
        await out.write(data[i:i + 41])
    await out.write_eof()
    return out


async def test_official_client_against_encoder():
    app = web.Application()
    app.router.add_post("/api/chat", _serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = ollama.AsyncClient(host=f"http://127.0.0.1:{port}")
        parts = [p async for p in await client.chat(model="helper", messages=[{"role": "user", "content": "hi"}],
                                                     stream=True)]
        assert "".join(p.message.thinking or "" for p in parts) == "hm"
        assert "".join(p.message.content or "" for p in parts) == "Hello"
        calls = [c for p in parts for c in p.message.tool_calls or ()]
        assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]
        last = parts[-1]
        assert last.done and last.done_reason == "stop" and (last.prompt_eval_count, last.eval_count) == (12, 9)
        plain = await client.chat(model="helper", messages=[{"role": "user", "content": "hi"}], stream=False)
        assert plain.message.content == "Hi" and plain.message.tool_calls[0].function.arguments == {"a": 1}
        assert (plain.prompt_eval_count, plain.eval_count, plain.done_reason) == (4, 2, "stop")
    finally:
        await runner.cleanup()


def test_encoder_error_and_render_error():
    req = O.parse_request({"model": "m", "messages": [{"role": "user", "content": "x"}]}, {})
    enc = O.StreamEncoder(req, "r")
    assert enc.error(UpstreamServerError("Upstream failed")) == b'{"error":"Upstream failed"}\n'
    assert enc.encode(TextDelta(0, "late")) == b""
    assert O.render_error(BadRequest("messages: expected a list")) == (400, {"error": "messages: expected a list"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_stream_decoder_random_splits(cuts):
    bounds = sorted({c % (len(STREAM) + 1) for c in cuts} | {0, len(STREAM)})
    dec = O.StreamDecoder()
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += dec.feed(STREAM[a:b])
    got += dec.close()
    texts = [(type(e).__name__, getattr(e, "text", None) or getattr(e, "partial_json", None)) for e in got]
    assert texts == [("MessageStart", None), ("BlockStart", None), ("ThinkingDelta", "The user"),
                     ("ThinkingDelta", " asks."), ("BlockStop", None), ("BlockStart", None), ("TextDelta", "The"),
                     ("TextDelta", " sky"), ("BlockStop", None), ("BlockStart", None),
                     ("ToolArgsDelta", '{"location":"Paris, FR"}'), ("BlockStop", None), ("BlockStart", None),
                     ("ToolArgsDelta", "{}"), ("BlockStop", None), ("MessageEnd", None)]
