"""OpenAI Responses codec, both directions.

Payload shapes follow openai-python's `types/responses` (ResponseCreateParams / ResponseInputItemParam,
Response, ResponseUsage, the ResponseStreamEvent union) and Codex CLI's request shape (codex-rs: developer
messages, `include: ["reasoning.encrypted_content"]`, `store: false`, custom/web_search tools). Every event
and response the encoder produces is validated with the SDK's pydantic types, and whole exchanges are run
through the SDK's own stream accumulation against a 127.0.0.1 server.
"""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from app.canonical import (
    BlockStart, BlockStop, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd, MessageStart,
    StopReason, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta, ToolCallPart, ToolChoice,
    ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects import ollama_chat as oll
from app.dialects import openai_responses as R
from app.dialects.sse import SSEParser
from app.errors import (
    BadRequest, RateLimited, UpstreamBadResponse, UpstreamClientError, UpstreamRateLimited, UpstreamServerError,
)

EVENT = TypeAdapter(ResponseStreamEvent)
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def dep(model: str = "gpt-5-codex", **kw) -> Deployment:
    return Deployment(id="d1", tier="coder", provider="openai", model=model, api_base="http://127.0.0.1:1",
                      api="responses", **kw)


def events_of(data: bytes) -> list[dict]:
    """Parse SSE frames, check `event:` equals the data's `type`, validate each with the SDK union."""
    p = SSEParser()
    out = []
    for ev in p.feed(data) + p.close():
        d = orjson.loads(ev.data)
        assert ev.event == d["type"]
        EVENT.validate_python(d)
        out.append(d)
    return out


# ============================================================================================ inbound
# Codex CLI's first turn (codex-rs ResponsesApiRequest): developer + user messages, a function tool, a
# custom (freeform) tool and web_search, reasoning, include, store false.
CODEX_REQUEST = {
    "model": "coder",
    "instructions": "You are Codex, a coding agent.",
    "input": [
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "<permissions instructions>sandboxed</permissions instructions>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "# AGENTS.md\nbe nice"}]},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "<environment_context>cwd=/src</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
    ],
    "tools": [
        {"type": "function", "name": "shell_command", "description": "Runs a shell command", "strict": False,
         "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"],
                        "additionalProperties": False}},
        {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
        {"type": "web_search"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a2b3c-session",
    "text": {"verbosity": "low"},
}


def test_codex_request_to_canonical():
    req = R.parse_request(CODEX_REQUEST, {})
    assert req.model == "coder" and req.dialect is Dialect.OPENAI_RESPONSES and req.stream is True
    assert [p.text for p in req.system] == ["You are Codex, a coding agent.",
                                           "<permissions instructions>sandboxed</permissions instructions>"]
    assert len(req.messages) == 1 and req.messages[0].role == "user"
    assert [p.text for p in req.messages[0].parts] == [
        "# AGENTS.md\nbe nice", "<environment_context>cwd=/src</environment_context>", "list the files"]
    assert req.tools == [ToolSpec("shell_command", "Runs a shell command", CODEX_REQUEST["tools"][0]["parameters"])]
    assert req.tool_choice == ToolChoice("auto", parallel=False)
    assert req.reasoning_effort == "medium"
    assert req.response_format is None and req.max_tokens is None
    assert req.raw is CODEX_REQUEST  # nothing of ours to strip: the client's body as received


def test_history_items_merge_into_alternating_turns():
    body = {"model": "coder", "input": [
        {"role": "user", "content": "fix it"},  # EasyInputMessage without `type`
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "encrypted_content": "gAAAAB-openai-opaque"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "shell_command",
         "arguments": "{\"command\":\"ls\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "shell_command", "arguments": "{\"command\":\"pwd\"}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "a.py\nb.py"},
        {"type": "message", "role": "developer", "content": "Approval granted."},
        {"type": "function_call_output", "call_id": "call_b",
         "output": [{"type": "input_text", "text": "/src"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}]},
        {"type": "custom_tool_call", "call_id": "call_c", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "call_c", "output": "Done"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
        {"type": "item_reference", "id": "msg_0"},
        {"role": "user", "content": [{"type": "input_text", "text": "and now?"},
                                     {"type": "input_image", "image_url": "https://example.com/x.png"}]},
    ]}
    req = R.parse_request(body, {})
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert req.messages[1].parts == [
        TextPart("Looking."), ToolCallPart("call_a", "shell_command", "{\"command\":\"ls\"}"),
        ToolCallPart("call_b", "shell_command", "{\"command\":\"pwd\"}")]
    # tool results lead the user turn, the mid-conversation developer message follows them as user text
    assert req.messages[2].parts == [
        ToolResultPart("call_a", [TextPart("a.py\nb.py")]),
        ToolResultPart("call_b", [TextPart("/src"), ImagePart(media_type="image/png", data=PNG_B64, detail="low")]),
        TextPart("Approval granted.")]
    assert req.messages[3].parts == [ToolCallPart("call_c", "apply_patch", '{"input":"*** Begin Patch"}')]
    assert req.messages[4].parts == [ToolResultPart("call_c", [TextPart("Done")]), TextPart("and now?"),
                                     ImagePart(url="https://example.com/x.png")]
    assert req.raw is body  # OpenAI's own reasoning item stays for a pass-through


def test_text_format_and_limits():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    req = R.parse_request({"model": "m", "input": "x", "max_output_tokens": 300, "temperature": 0.2, "top_p": 0.9,
                           "user": "u1", "text": {"format": {"type": "json_schema", "name": "thing",
                                                             "schema": schema, "strict": True}}}, {})
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema,
                                                                          "strict": True}}
    assert (req.max_tokens, req.temperature, req.top_p, req.user) == (300, 0.2, 0.9, "u1")
    assert req.messages == [Message("user", [TextPart("x")])]
    req = R.parse_request({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}, {})
    assert req.response_format == {"type": "json_object"}


def test_hosted_tools_only_drops_tool_choice():
    req = R.parse_request({"model": "m", "input": "x", "tools": [{"type": "web_search"}, {"type": "file_search"}],
                           "tool_choice": {"type": "web_search_preview"}, "parallel_tool_calls": True}, {})
    assert req.tools == [] and req.tool_choice is None
    req = R.parse_request({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}],
                           "tool_choice": {"type": "function", "name": "f"}}, {})
    assert req.tools == [ToolSpec("f", None, {"type": "object", "properties": {}})]
    assert req.tool_choice == ToolChoice("tool", "f")


@pytest.mark.parametrize("patch, field", [
    ({"model": 3}, "model"),
    ({"input": 5}, "input"),
    ({"input": ["hi"]}, "input[0]"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": 7}]}, "input[0].content"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"instructions": ["x"]}, "instructions"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function", "description": "no name"}]}, "tools[0].name"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"max_output_tokens": "100"}, "max_output_tokens"),
    ({"max_output_tokens": True}, "max_output_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"store": 1}, "store"),
    ({"metadata": []}, "metadata"),
    ({"include": "reasoning.encrypted_content"}, "include"),
    ({"reasoning": {"effort": 3}}, "reasoning.effort"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
])
def test_wrong_types_name_the_field(patch, field):
    with pytest.raises(BadRequest) as e:
        R.parse_request({"model": "m", "input": "x", **patch}, {})
    assert e.value.message.startswith(field + ":")


def test_input_files_become_documents():
    req = R.parse_request({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        {"type": "input_file", "file_url": "https://example.com/b.pdf"},
        {"type": "input_file", "file_id": "file-123"},
    ]}]}, {})
    assert req.messages[0].parts == [
        DocumentPart({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                     "data": "JVBERi0x"}, "title": "a.pdf"}),
        DocumentPart({"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf"}}),
        TextPart("[A file given by file id was omitted: files are not available here.]")]


# ---------------------------------------------------------------------------------- render_response
def _resp(parts, stop=StopReason.END_TURN, usage=None) -> ChatResponse:
    return ChatResponse(id="chatcmpl-1", model="llama", parts=parts, stop_reason=stop, created=1700000000,
                        usage=usage or Usage(input_tokens=10, output_tokens=20, cache_read_tokens=5,
                                             cache_write_tokens=2, reasoning_tokens=4))


def test_render_response_validates_with_sdk():
    req = R.parse_request(CODEX_REQUEST, {})
    body = R.render_response(_resp([ThinkingPart("think", signature="sig"), TextPart("Hi"), TextPart("there"),
                                    ToolCallPart("call_1", "shell_command", '{"command":"ls"}')],
                                   StopReason.TOOL_USE), req)
    r = Response.model_validate(body)
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == "coder" and r.created_at == 1700000000 and r.parallel_tool_calls is False
    assert [o.type for o in r.output] == ["reasoning", "message", "function_call"]
    assert r.output[0].id.startswith("rs_") and r.output[0].summary[0].text == "think"
    assert r.output[1].id.startswith("msg_") and r.output_text == "Hithere"
    fc = r.output[2]
    assert fc.id.startswith("fc_") and (fc.call_id, fc.name, fc.arguments) == ("call_1", "shell_command",
                                                                               '{"command":"ls"}')
    u = r.usage
    assert (u.input_tokens, u.input_tokens_details.cached_tokens, u.input_tokens_details.cache_write_tokens,
            u.output_tokens, u.output_tokens_details.reasoning_tokens, u.total_tokens) == (17, 5, 2, 20, 4, 37)


def test_render_incomplete_at_max_tokens():
    req = R.parse_request({"model": "coder", "input": "x", "max_output_tokens": 20}, {})
    r = Response.model_validate(R.render_response(_resp([TextPart("cut")], StopReason.MAX_TOKENS), req))
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.max_output_tokens == 20


def test_render_error_shape():
    status, body = R.render_error(BadRequest("input: expected a list"))
    assert status == 400
    assert body == {"error": {"message": "input: expected a list", "type": "invalid_request_error", "param": None,
                              "code": "invalid_request_error"}}
    upstream = UpstreamClientError("x", upstream_status=400, body={"error": {
        "message": "Invalid 'input[2]'", "type": "invalid_request_error", "param": "input", "code": None}})
    assert R.render_error(upstream) == (400, {"error": {"message": "Invalid 'input[2]'", "type": "invalid_request_error",
                                                        "param": "input", "code": None}})


# ------------------------------------------------------------------------------------ StreamEncoder
TOOL_STREAM = [
    MessageStart("msg_up", "claude", Usage(input_tokens=100, cache_read_tokens=20)),
    BlockStart(0, "thinking"), ThinkingDelta(0, "Let me "), ThinkingDelta(0, "look."), ThinkingDelta(0, "", "SIG=="),
    BlockStop(0),
    BlockStart(1, "text"), TextDelta(1, "Listing"), TextDelta(1, ""), TextDelta(1, " files."), BlockStop(1),
    BlockStart(2, "tool_call", "toolu_01", "shell_command"),
    ToolArgsDelta(2, '{"comm'), ToolArgsDelta(2, 'and": "ls -la'), ToolArgsDelta(2, '"}'), BlockStop(2),
    MessageEnd(StopReason.TOOL_USE, Usage(output_tokens=42)),
]


def test_stream_event_sequence_and_sdk_types():
    req = R.parse_request(CODEX_REQUEST, {})
    enc = R.StreamEncoder(req, "req123")
    data = b"".join(enc.encode(e) for e in TOOL_STREAM) + enc.finish()
    assert data.startswith(b"event: response.created\ndata: {")
    evs = events_of(data)
    assert [e["type"] for e in evs] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[0]["response"]["id"] == "resp_req123" and evs[0]["response"]["status"] == "in_progress"
    added = evs[16]["item"]
    assert (added["type"], added["call_id"], added["name"], added["arguments"], added["status"]) == (
        "function_call", "toolu_01", "shell_command", "", "in_progress")
    deltas = "".join(e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta")
    assert deltas == '{"command": "ls -la"}' == evs[20]["arguments"]
    text_delta = evs[11]
    assert {k: text_delta[k] for k in ("item_id", "output_index", "content_index", "delta", "logprobs")} == {
        "item_id": evs[9]["item"]["id"], "output_index": 1, "content_index": 0, "delta": "Listing", "logprobs": []}
    final = Response.model_validate(evs[-1]["response"])
    assert final.status == "completed" and final.output_text == "Listing files."
    assert final.output[0].summary[0].text == "Let me look."
    assert final.output[2].arguments == '{"command": "ls -la"}'
    assert final.usage.input_tokens == 120 and final.usage.input_tokens_details.cached_tokens == 20
    assert final.usage.output_tokens == 42 and final.usage.total_tokens == 162


def test_stream_incomplete_and_errors():
    req = R.parse_request({"model": "coder", "input": "x", "stream": True}, {})
    enc = R.StreamEncoder(req, "r1")
    data = b"".join(enc.encode(e) for e in [MessageStart("m", "x"), BlockStart(0, "text"), TextDelta(0, "ab"),
                                            MessageEnd(StopReason.MAX_TOKENS, Usage(1, 2))])
    evs = events_of(data)
    assert evs[-1]["type"] == "response.completed" and evs[-2]["type"] == "response.output_item.done"
    assert evs[-1]["response"]["status"] == "incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert enc.error(UpstreamServerError("late")) == b""  # the stream is over

    enc = R.StreamEncoder(req, "r2")
    data = b"".join(enc.encode(e) for e in [MessageStart("m", "x"), BlockStart(0, "text"), TextDelta(0, "par")])
    data += enc.error(UpstreamServerError("Upstream server error: boom"))
    evs = events_of(data)
    failed = evs[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "Upstream server error: boom"}
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert failed["response"]["output"][0]["content"][0]["text"] == "par"
    assert enc.encode(TextDelta(0, "more")) == b"" and enc.error(UpstreamServerError("again")) == b""

    enc = R.StreamEncoder(req, "error")  # nothing sent yet (e.g. a pass-through relay broke)
    evs = events_of(enc.error(RateLimited("slow down")))
    assert evs == [{"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "param": None,
                    "sequence_number": 0}]


def test_reasoning_signature_round_trip_and_raw_strip():
    req = R.parse_request({"model": "coder", "input": "x", "stream": True}, {})
    enc = R.StreamEncoder(req, "r")
    evs = events_of(b"".join(enc.encode(e) for e in TOOL_STREAM))
    items = evs[-1]["response"]["output"]
    follow_up = {"model": "coder", "input": [{"role": "user", "content": "x"}, *items,
                                             {"type": "function_call_output", "call_id": "toolu_01", "output": "ok"}]}
    req2 = R.parse_request(follow_up, {})
    assert req2.messages[1].parts == [ThinkingPart("Let me look.", signature="SIG=="), TextPart("Listing files."),
                                      ToolCallPart("toolu_01", "shell_command", '{"command": "ls -la"}')]
    assert [it.get("type", "message") for it in req2.raw["input"]] == ["message", "message", "function_call",
                                                                      "function_call_output"]
    assert follow_up["input"][1]["type"] == "reasoning"  # the client's body itself is left alone


# ------------------------------------------------------------------ SDK end to end (127.0.0.1 server)
CANNED: list = []


async def _serve(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    req = R.parse_request(body, request.headers)
    if not req.stream:
        resp = ChatResponse("up", "x", [TextPart("Hello"), ToolCallPart("call_9", "shell_command", '{"command":"ls"}')],
                            StopReason.TOOL_USE, Usage(7, 3), created=1700000001)
        return web.json_response(R.render_response(resp, req))
    out = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await out.prepare(request)
    enc = R.StreamEncoder(req, "sdk1")
    data = b"".join(enc.encode(e) for e in CANNED) + enc.finish()
    for i in range(0, len(data), 97):  # odd chunk boundaries
        await out.write(data[i:i + 97])
    await out.write_eof()
    return out


@pytest.fixture
async def sdk_client():
    app = web.Application()
    app.router.add_post("/v1/responses", _serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test-key", max_retries=0)
    yield client
    await client.close()
    await runner.cleanup()


async def test_sdk_stream_accumulates_final_response(sdk_client):
    CANNED[:] = TOOL_STREAM
    tool = {"type": "function", "name": "shell_command", "parameters": {"type": "object", "properties": {}},
            "strict": False}
    async with sdk_client.responses.stream(model="coder", input="list files", tools=[tool]) as stream:
        kinds = [ev.type async for ev in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.id == "resp_sdk1" and final.output_text == "Listing files."
    call = [o for o in final.output if o.type == "function_call"][0]
    assert (call.call_id, call.name, call.arguments) == ("toolu_01", "shell_command", '{"command": "ls -la"}')
    assert final.usage.total_tokens == 162


async def test_sdk_create_stream_and_plain(sdk_client):
    CANNED[:] = [MessageStart("m", "x"), BlockStart(0, "text"), TextDelta(0, "Hé"), TextDelta(0, "llo\n\nworld"),
                 BlockStop(0), MessageEnd(StopReason.END_TURN, Usage(3, 4))]
    stream = await sdk_client.responses.create(model="coder", input="hi", stream=True)
    text = "".join([ev.delta async for ev in stream if ev.type == "response.output_text.delta"])
    assert text == "Héllo\n\nworld"
    plain = await sdk_client.responses.create(model="coder", input="hi")
    assert plain.output_text == "Hello" and plain.output[1].call_id == "call_9"
    assert plain.usage.input_tokens == 7 and plain.usage.output_tokens == 3


# =========================================================================================== outbound
def test_build_request_from_canonical():
    req = R.parse_request({"model": "coder", "input": "x"}, {})
    req.system = [TextPart("Be brief."), TextPart("Use tools.")]
    req.messages = [
        Message("user", [TextPart("What is this?"), ImagePart(media_type="image/png", data=PNG_B64, detail="low"),
                         ImagePart(url="https://example.com/a.jpg")]),
        Message("assistant", [ThinkingPart("hidden", signature="s"), TextPart("Checking."),
                              ToolCallPart("toolu_1", "get_weather", '{"city":"Paris"}')]),
        Message("user", [ToolResultPart("toolu_1", [TextPart("18C")]),
                         ToolResultPart("toolu_2", [TextPart("bad")], is_error=True), TextPart("Thanks")]),
    ]
    req.tools = [ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})]
    req.tool_choice = ToolChoice("tool", "get_weather", parallel=False)
    req.max_tokens, req.temperature, req.stop, req.seed = 5000, 0.3, ["END"], 7
    req.response_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                  "strict": True}}
    req.reasoning_effort = "high"
    body = R.build_request(req, dep(max_output_tokens=4096), stream=True)
    assert body == {
        "model": "gpt-5-codex",
        "instructions": "Be brief.\n\nUse tools.",
        "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                {"type": "input_image", "image_url": "https://example.com/a.jpg", "detail": "auto"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "18C"},
            {"type": "function_call_output", "call_id": "toolu_2", "output": "Error: bad"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "strict": False,
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "max_output_tokens": 4096,
        "temperature": 0.3,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "high"},
        "stream": True,
        "store": False,
    }
    body["input"] = [i for i in body["input"] if i.get("call_id") != "toolu_2"]  # (no call for it above)
    from tests.fakes.openai_validation import validate_responses
    validate_responses(body)


def test_build_request_small_limit_raised_to_api_minimum():
    req = R.parse_request({"model": "coder", "input": "x", "max_output_tokens": 5}, {})
    assert R.build_request(req, dep(), stream=False)["max_output_tokens"] == 16


# A non-streamed Response as the API returns it (Response model: status, output items, usage).
UPSTREAM_RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc054267", "object": "response", "created_at": 1741476542,
    "status": "completed", "error": None, "incomplete_details": None, "instructions": None,
    "max_output_tokens": None, "model": "gpt-5-codex", "parallel_tool_calls": True,
    "previous_response_id": None, "reasoning": {"effort": "medium", "summary": None}, "store": False,
    "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
    "truncation": "disabled", "user": None, "metadata": {},
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Think A"},
                                                         {"type": "summary_text", "text": "Think B"}]},
        {"type": "message", "id": "msg_67ccd2bf17f0", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "In a land far away.", "annotations": []}]},
        {"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz", "name": "get_weather",
         "arguments": "{\"location\":\"Paris, France\"}", "status": "completed"},
    ],
    "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 0},
              "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 380},
}


def test_parse_response():
    Response.model_validate(UPSTREAM_RESPONSE)  # the fixture is a valid SDK Response
    r = R.parse_response(UPSTREAM_RESPONSE)
    assert r.id == "resp_67ccd2bed1ec8190b14f964abc054267" and r.model == "gpt-5-codex" and r.created == 1741476542
    assert r.parts == [ThinkingPart("Think A\n\nThink B"), TextPart("In a land far away."),
                       ToolCallPart("call_12345xyz", "get_weather", "{\"location\":\"Paris, France\"}")]
    assert r.stop_reason is StopReason.TOOL_USE
    assert r.usage == Usage(input_tokens=200, output_tokens=52, cache_read_tokens=128, reasoning_tokens=30)
    inc = {**UPSTREAM_RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
           "output": UPSTREAM_RESPONSE["output"][:2]}
    assert R.parse_response(inc).stop_reason is StopReason.MAX_TOKENS
    with pytest.raises(UpstreamServerError):
        R.parse_response({**UPSTREAM_RESPONSE, "status": "failed",
                          "error": {"code": "server_error", "message": "The model failed."}})
    with pytest.raises(UpstreamBadResponse):
        R.parse_response({"id": "x", "object": "response"})


def _frame(d: dict) -> bytes:
    return b"event: " + d["type"].encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n"


def _upstream_stream(terminal: dict | None) -> tuple[bytes, list[dict]]:
    """A streamed function call with text and reasoning, in the event order the API sends."""
    base = {k: v for k, v in UPSTREAM_RESPONSE.items() if k not in ("output", "usage")}
    created = {**base, "status": "in_progress", "output": [], "usage": None}
    msg = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    fc = {"id": "fc_1", "type": "function_call", "status": "in_progress", "call_id": "call_1", "name": "get_weather",
          "arguments": ""}
    part = {"type": "output_text", "text": "", "annotations": []}
    evs = [
        {"type": "response.created", "response": created},
        {"type": "response.in_progress", "response": created},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning", "summary": []}},
        {"type": "response.reasoning_summary_part.added", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "part": {"type": "summary_text", "text": ""}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "delta": "Plan"},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 1,
         "delta": "Act"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan"},
                                                                 {"type": "summary_text", "text": "Act"}]}},
        {"type": "response.output_item.added", "output_index": 1, "item": msg},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 1, "content_index": 0, "part": part},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "delta": "Checking ", "logprobs": []},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "delta": "weather.", "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "text": "Checking weather.", "logprobs": []},
        {"type": "response.content_part.done", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "part": {**part, "text": "Checking weather."}},
        {"type": "response.output_item.done", "output_index": 1,
         "item": {**msg, "status": "completed", "content": [{**part, "text": "Checking weather."}]}},
        {"type": "response.output_item.added", "output_index": 2, "item": fc},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2, "delta": "{\"loc"},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2,
         "delta": "ation\":\"Paris\"}"},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 2,
         "arguments": "{\"location\":\"Paris\"}"},
        {"type": "response.output_item.done", "output_index": 2,
         "item": {**fc, "status": "completed", "arguments": "{\"location\":\"Paris\"}"}},
    ]
    if terminal is not None:
        evs.append(terminal)
    for n, e in enumerate(evs):
        e["sequence_number"] = n
        EVENT.validate_python(e)  # the fixture follows the SDK's types
    return b"".join(_frame(e) for e in evs), evs


COMPLETED = {"type": "response.completed", "response": {**UPSTREAM_RESPONSE, "usage": {
    "input_tokens": 50, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
    "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 80}}}

EXPECTED_EVENTS = [
    MessageStart("resp_67ccd2bed1ec8190b14f964abc054267", "gpt-5-codex"),
    BlockStart(0, "thinking"), ThinkingDelta(0, "Plan"), ThinkingDelta(0, "\n\n"), ThinkingDelta(0, "Act"),
    BlockStop(0),
    BlockStart(1, "text"), TextDelta(1, "Checking "), TextDelta(1, "weather."), BlockStop(1),
    BlockStart(2, "tool_call", "call_1", "get_weather"), ToolArgsDelta(2, "{\"loc"),
    ToolArgsDelta(2, "ation\":\"Paris\"}"), BlockStop(2),
    MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=35, output_tokens=30, cache_read_tokens=10,
                                          cache_write_tokens=5, reasoning_tokens=12)),
]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_stream_decoder_any_chunking(size):
    data, _ = _upstream_stream(COMPLETED)
    dec = R.StreamDecoder()
    got = []
    for i in range(0, len(data), size):
        got += dec.feed(data[i:i + size])
    got += dec.close()
    assert got == EXPECTED_EVENTS


def test_stream_decoder_reads_our_own_encoder():
    req = R.parse_request({"model": "coder", "input": "x", "stream": True}, {})
    enc = R.StreamEncoder(req, "r")
    dec = R.StreamDecoder()
    got = dec.feed(b"".join(enc.encode(e) for e in TOOL_STREAM)) + dec.close()
    assert [type(e) for e in got] == [type(e) for e in TOOL_STREAM if not (type(e) is TextDelta and not e.text)]
    args = "".join(e.partial_json for e in got if type(e) is ToolArgsDelta)
    assert args == '{"command": "ls -la"}'
    assert got[-1] == MessageEnd(StopReason.TOOL_USE, Usage(input_tokens=100, output_tokens=42, cache_read_tokens=20))


def test_stream_decoder_failures():
    data, _ = _upstream_stream(None)
    dec = R.StreamDecoder()
    dec.feed(data)
    with pytest.raises(UpstreamBadResponse):
        dec.close()  # cut off before response.completed
    failed = {"type": "response.failed", "sequence_number": 99, "response": {
        **UPSTREAM_RESPONSE, "status": "failed", "output": [],
        "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 2s."}}}
    EVENT.validate_python(failed)
    with pytest.raises(UpstreamRateLimited) as e:
        R.StreamDecoder().feed(data + _frame(failed))
    assert "try again in 2s" in e.value.message
    err = {"type": "error", "code": "context_length_exceeded", "message": "Your input exceeds the context window.",
           "param": "input", "sequence_number": 3}
    EVENT.validate_python(err)
    with pytest.raises(UpstreamClientError):
        R.StreamDecoder().feed(_frame(err))
    with pytest.raises(UpstreamServerError):
        R.StreamDecoder().feed(_frame({"type": "error", "code": "server_error", "message": "oops",
                                       "sequence_number": 0}))
    with pytest.raises(UpstreamBadResponse):
        R.StreamDecoder().feed(b"event: response.created\ndata: {not json\n\n")


def test_parse_error():
    body = orjson.dumps({"error": {"message": "Rate limit reached for gpt-5", "type": "requests",
                                   "param": None, "code": "rate_limit_exceeded"}})
    e = R.parse_error(429, body)
    assert type(e) is UpstreamRateLimited and e.upstream_status == 429 and "Rate limit reached" in e.message
    assert type(R.parse_error(503, b"<html>bad gateway</html>")) is UpstreamServerError
    e = R.parse_error(400, orjson.dumps({"error": {"message": "Invalid 'input[0].content'", "type":
                                                   "invalid_request_error", "param": "input", "code": None}}))
    assert type(e) is UpstreamClientError and e.status == 400 and e.body["error"]["param"] == "input"


# ================================================================================ cross-dialect trips
def test_tool_call_round_trip_responses_ollama_responses():
    """Responses client → canonical → Ollama request; Ollama's tool-call answer → canonical → Responses
    stream → SDK types; the next Responses turn → canonical → Ollama again with the same call id."""
    req = R.parse_request({**CODEX_REQUEST, "input": CODEX_REQUEST["input"][3:]}, {})
    ollama_body = oll.build_request(req, Deployment(id="o", tier="coder", provider="ollama", model="qwen3:8b",
                                                    api_base="http://127.0.0.1:11434", context_length=32768),
                                    stream=True)
    assert ollama_body["tools"][0]["function"]["name"] == "shell_command"
    lines = (b'{"model":"qwen3:8b","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"",'
             b'"tool_calls":[{"function":{"name":"shell_command","arguments":{"command":"ls -la"}}}]},"done":false}\n'
             b'{"model":"qwen3:8b","created_at":"2025-01-01T00:00:01Z","message":{"role":"assistant","content":""},'
             b'"done":true,"done_reason":"stop","prompt_eval_count":40,"eval_count":9}\n')
    dec = oll.StreamDecoder()
    events = dec.feed(lines) + dec.close()
    enc = R.StreamEncoder(req, "trip")
    evs = events_of(b"".join(enc.encode(e) for e in events))
    final = Response.model_validate(evs[-1]["response"])
    call = final.output[0]
    assert call.type == "function_call" and call.name == "shell_command"
    assert orjson.loads(call.arguments) == {"command": "ls -la"} and call.call_id.startswith("call_")
    nxt = R.parse_request({"model": "coder", "input": [
        {"role": "user", "content": "list the files"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "a.py"}]}, {})
    again = oll.build_request(nxt, Deployment(id="o", tier="coder", provider="ollama", model="qwen3:8b",
                                              api_base="http://127.0.0.1:11434"), stream=False)
    assert again["messages"][1]["tool_calls"] == [
        {"id": call.call_id, "function": {"index": 0, "name": "shell_command", "arguments": {"command": "ls -la"}}}]
    assert again["messages"][2] == {"role": "tool", "content": "a.py", "tool_name": "shell_command",
                                    "tool_call_id": call.call_id}


def test_tool_call_round_trip_responses_to_openai_chat():
    from app.dialects import openai_chat as oc
    req = R.parse_request({"model": "coder", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]}, {})
    body = oc.build_request(req, Deployment(id="c", tier="coder", provider="openai", model="gpt-4o-mini",
                                            api_base="http://127.0.0.1:1"), stream=False)
    msgs = body["messages"]
    assert msgs[1]["tool_calls"][0]["id"] == "call_1"
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
    assert msgs[2]["role"] == "tool" and msgs[2]["tool_call_id"] == "call_1"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6000), max_size=12))
def test_stream_decoder_random_splits(cuts):
    data, _ = _upstream_stream(COMPLETED)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    dec = R.StreamDecoder()
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += dec.feed(data[a:b])
    assert got + dec.close() == EXPECTED_EVENTS
