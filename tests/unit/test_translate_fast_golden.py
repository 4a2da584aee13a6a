"""Golden outputs of the Anthropic-inbound -> OpenAI-upstream translation path, pinned byte for byte.

The path (anthropic_messages.parse_request -> openai_chat.build_request -> openai_chat.parse_response ->
anthropic_messages.render_response, or anthropic_messages.StreamEncoder for streams) is written for speed:
inlined field checks, positional construction of canonical objects, error locations formatted only when an
error is raised, pre-built SSE frames. These expectations were produced by the straightforward code it
replaced, so any change of output (a key order, a default, an error message) fails here.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from app.canonical import (
    BlockStart, BlockStop, ChatRequest, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd,
    MessageStart, StopReason, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta, ToolCallPart,
    ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects import anthropic_messages as am
from app.dialects import openai_chat as oc
from app.errors import BadRequest, UpstreamBadResponse, UpstreamServerError


def dep(model: str = "gpt-4o-mini", **kw) -> Deployment:
    return Deployment(id="d1", tier="coder", provider="openai", model=model, api_base="http://127.0.0.1:1", **kw)


def aiohttp_headers(**extra: str) -> CIMultiDictProxy:
    """What aiohttp hands the handler for the benchmark's request (no anthropic-beta)."""
    return CIMultiDictProxy(CIMultiDict({
        "Host": "127.0.0.1:4000", "Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive",
        "x-api-key": "tg-agent-key", "anthropic-version": "2023-06-01", "x-tiergate-cache": "off",
        "Content-Length": "90", "Content-Type": "application/json", **extra}))


# ================================================================== the benchmark's request (run_bench.py)
BENCH_BODY = {"model": "coder", "max_tokens": 64,
              "messages": [{"role": "user", "content": "Write a haiku about routers."}]}
UPSTREAM_ANSWER = {
    "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "router router router ", "refusal": None,
                                         "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 100, "total_tokens": 112,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_x"}


def test_bench_request_parses_to_the_same_canonical_request():
    req = am.parse_request(BENCH_BODY, aiohttp_headers())
    assert req == ChatRequest(model="coder", messages=[Message("user", [TextPart("Write a haiku about routers.")])],
                              max_tokens=64, dialect=Dialect.ANTHROPIC, raw=BENCH_BODY,
                              headers={"anthropic-version": "2023-06-01"})
    assert req.raw is BENCH_BODY and req.dialect is Dialect.ANTHROPIC
    assert req.tool_choice is None and req.temperature is None and req.stream is False


def test_bench_request_non_stream_round_trip_bytes():
    req = am.parse_request(BENCH_BODY, aiohttp_headers())
    assert orjson.dumps(oc.build_request(req, dep(), stream=False)) == (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write a haiku about routers."}],'
        b'"max_tokens":64}')
    resp = oc.parse_response(UPSTREAM_ANSWER)
    assert resp == ChatResponse("chatcmpl-abc123", "gpt-4o-mini", [TextPart("router router router ")],
                                StopReason.END_TURN, Usage(12, 100), 1700000000)
    assert orjson.dumps(am.render_response(resp, req)) == (
        b'{"id":"chatcmpl-abc123","type":"message","role":"assistant","model":"coder","content":[{"type":"text",'
        b'"text":"router router router "}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,'
        b'"output_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}')


def test_bench_request_stream_bytes():
    req = am.parse_request({**BENCH_BODY, "stream": True}, aiohttp_headers())
    assert req.stream is True
    assert orjson.dumps(oc.build_request(req, dep(), stream=True)) == (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write a haiku about routers."}],'
        b'"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}')
    enc = am.StreamEncoder(req, "msg_01")
    out = b"".join(enc.encode(e) for e in [
        MessageStart("chatcmpl-1", "gpt-4o-mini"), BlockStart(0, "text"), TextDelta(0, "router "),
        TextDelta(0, "router "), BlockStop(0), MessageEnd(StopReason.END_TURN, Usage(12, 100))]) + enc.finish()
    assert out == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01","type":"message",'
        b'"role":"assistant","content":[],"model":"coder","stop_reason":null,"stop_sequence":null,"usage":'
        b'{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text",'
        b'"text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        b'"text":"router "}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        b'"text":"router "}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        b'"usage":{"input_tokens":12,"output_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}'
        b'\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')


# ============================================================================ stream encoder, every event
DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


@pytest.mark.parametrize("event,frame", [
    (BlockStart(1, "thinking"), (b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
                                 b'"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n')),
    (BlockStart(3, "tool_call", "call_1", "Read"),
     (b'event: content_block_start\ndata: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use",'
      b'"id":"call_1","name":"Read","input":{}}}\n\n')),
    (BlockStart(12, "text"), (b'event: content_block_start\ndata: {"type":"content_block_start","index":12,'
                              b'"content_block":{"type":"text","text":""}}\n\n')),
    (TextDelta(0, 'say "hi"\n'), DELTA + b'0,"delta":{"type":"text_delta","text":"say \\"hi\\"\\n"}}\n\n'),
    (TextDelta(2, "\u00e9\u2028"), DELTA + b'2,"delta":{"type":"text_delta","text":"\xc3\xa9\xe2\x80\xa8"}}\n\n'),
    (TextDelta(0, ""), DELTA + b'0,"delta":{"type":"text_delta","text":""}}\n\n'),
    (ThinkingDelta(1, "hmm"), DELTA + b'1,"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n'),
    (ThinkingDelta(1, "", "sig=="), DELTA + b'1,"delta":{"type":"signature_delta","signature":"sig=="}}\n\n'),
    (ThinkingDelta(1, "a", "s"), DELTA + b'1,"delta":{"type":"thinking_delta","thinking":"a"}}\n\n'
                                 + DELTA + b'1,"delta":{"type":"signature_delta","signature":"s"}}\n\n'),
    (ThinkingDelta(1, ""), b""),
    (ToolArgsDelta(3, '{"file_path":'),
     DELTA + b'3,"delta":{"type":"input_json_delta","partial_json":"{\\"file_path\\":"}}\n\n'),
    (BlockStop(7), b'event: content_block_stop\ndata: {"type":"content_block_stop","index":7}\n\n'),
    (MessageEnd(StopReason.TOOL_USE, Usage(10, 20, 30, 40, 5)),
     (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
      b'"usage":{"input_tokens":10,"output_tokens":20,"cache_creation_input_tokens":40,"cache_read_input_tokens":30}}'
      b'\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')),
    (MessageEnd(StopReason.CONTENT_FILTER, Usage()),
     (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null},'
      b'"usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}'
      b'\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')),
])
def test_encoder_frame_per_event(event, frame):
    enc = am.StreamEncoder(am.parse_request(BENCH_BODY, {}), "msg_01")
    enc.encode(MessageStart("x", "y"))
    assert enc.encode(event) == frame


def test_encoder_text_deltas_switching_blocks_keep_their_own_index():
    enc = am.StreamEncoder(am.parse_request(BENCH_BODY, {}), "msg_01")
    enc.encode(MessageStart("x", "y"))
    frames = [enc.encode(TextDelta(i, "t")) for i in (0, 0, 2, 0, 2, 1)]
    assert frames == [DELTA + b'%d,"delta":{"type":"text_delta","text":"t"}}\n\n' % i for i in (0, 0, 2, 0, 2, 1)]


def test_encoder_starts_the_message_itself_and_says_nothing_after_the_end():
    req = am.parse_request(BENCH_BODY, {})
    enc = am.StreamEncoder(req, "msg_02")
    assert enc.encode(TextDelta(0, "no start")) == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_02","type":"message",'
        b'"role":"assistant","content":[],"model":"coder","stop_reason":null,"stop_sequence":null,"usage":'
        b'{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}\n\n'
        + DELTA + b'0,"delta":{"type":"text_delta","text":"no start"}}\n\n')
    assert enc.encode(MessageEnd(StopReason.END_TURN, Usage(1, 2))).endswith(b'{"type":"message_stop"}\n\n')
    assert [enc.encode(e) for e in (TextDelta(0, "late"), BlockStop(0), MessageEnd(StopReason.END_TURN, Usage()))] \
        == [b"", b"", b""]
    assert enc.finish() == b""

    enc = am.StreamEncoder(req, "msg_03")
    enc.encode(MessageStart("x", "y", Usage(input_tokens=7)))
    assert enc.error(UpstreamServerError("boom")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n')
    assert enc.encode(TextDelta(0, "after the error")) == b""


def test_encoder_message_start_carries_the_upstream_input_usage():
    enc = am.StreamEncoder(am.parse_request(BENCH_BODY, {}), "msg_04")
    assert enc.encode(MessageStart("x", "y", Usage(5, 0, 3, 2))) == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_04","type":"message",'
        b'"role":"assistant","content":[],"model":"coder","stop_reason":null,"stop_sequence":null,"usage":'
        b'{"input_tokens":5,"output_tokens":0,"cache_creation_input_tokens":2,"cache_read_input_tokens":3}}}\n\n')


# ======================================================================== a Claude Code-shaped request
CC_BODY = {
    "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Use the tools to help the user.\nBe concise.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {"name": "Bash", "description": "Run a shell command",
         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
                          "required": ["command"], "additionalProperties": False,
                          "$schema": "http://json-schema.org/draft-07/schema#"}},
        {"name": "Read", "description": "Read a file",
         "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}, "limit": {"type": "number"}},
                          "required": ["file_path"]}},
        {"name": "TodoWrite", "description": "",
         "input_schema": {"type": "object", "properties": {"todos": {"type": "array", "items": {
             "type": "object", "properties": {"content": {"type": "string"},
                                              "status": {"type": "string", "enum": ["pending", "completed"]}}}}}}},
        {"name": "mcp__ide__getDiagnostics", "input_schema": {"type": "object", "properties": {}},
         "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "metadata": {"user_id": "user_abc_account_1_session_2"},
    "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nAs you answer, use the context.\n</system-reminder>"},
            {"type": "text", "text": "Why does test_router fail?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "pytest output"},
             "title": "log"}]},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Read the test first.", "signature": "EqQBCkgIAhAB"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
            {"type": "text", "text": "Let me read it."},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
            {"type": "tool_use", "id": "toolu_01AbC", "name": "Read",
             "input": {"file_path": "/w/tests/test_router.py", "limit": 200}},
            {"type": "tool_use", "id": "toolu_01DeF", "name": "Bash", "input": {"command": "pytest -x -q"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01AbC", "content": "     1\timport pytest\n"},
            {"type": "tool_result", "tool_use_id": "toolu_01DeF", "is_error": True, "content": [
                {"type": "text", "text": "1 failed"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/shot.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]},
            {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_01GhI", "name": "mcp__ide__getDiagnostics", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01GhI"}]},
        {"role": "assistant", "content": "The fixture is missing."},
        {"role": "user", "content": "Fix it."},
    ],
}
CC_HEADERS = CIMultiDictProxy(CIMultiDict({"Anthropic-Version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
                                           "x-claude-code-session-id": "abc"}))


def test_claude_code_request_parses_to_the_same_canonical_request():
    req = am.parse_request(CC_BODY, CC_HEADERS)
    tools = CC_BODY["tools"]
    assert req == ChatRequest(
        model="claude-sonnet-4-5",
        system=[TextPart("You are Claude Code, Anthropic's official CLI for Claude.", {"type": "ephemeral"}),
                TextPart("Use the tools to help the user.\nBe concise.", {"type": "ephemeral"}),
                TextPart("The user switched to plan mode.")],
        messages=[
            Message("user", [
                TextPart("<system-reminder>\nAs you answer, use the context.\n</system-reminder>"),
                TextPart("Why does test_router fail?"), ImagePart("image/png", "iVBORw0KGgo="),
                DocumentPart(CC_BODY["messages"][0]["content"][3])]),
            Message("assistant", [
                ThinkingPart("Read the test first.", "EqQBCkgIAhAB"), ThinkingPart("", redacted="EmwKAhgBEgy3"),
                TextPart("Let me read it."),
                ToolCallPart("toolu_01AbC", "Read", '{"file_path":"/w/tests/test_router.py","limit":200}'),
                ToolCallPart("toolu_01DeF", "Bash", '{"command":"pytest -x -q"}')]),
            Message("user", [
                ToolResultPart("toolu_01AbC", [TextPart("     1\timport pytest\n")]),
                ToolResultPart("toolu_01DeF", [TextPart("1 failed"), ImagePart(url="https://example.com/shot.png"),
                                               TextPart("[document omitted: application/pdf]")], is_error=True),
                TextPart("go on", {"type": "ephemeral"})]),
            Message("assistant", [ToolCallPart("toolu_01GhI", "mcp__ide__getDiagnostics", "{}")]),
            Message("user", [ToolResultPart("toolu_01GhI", [])]),
            Message("assistant", [TextPart("The fixture is missing.")]),
            Message("user", [TextPart("Fix it.")]),
        ],
        tools=[ToolSpec("Bash", "Run a shell command", tools[0]["input_schema"]),
               ToolSpec("Read", "Read a file", tools[1]["input_schema"]),
               ToolSpec("TodoWrite", "", tools[2]["input_schema"]),
               ToolSpec("mcp__ide__getDiagnostics", None, {"type": "object", "properties": {}})],
        tool_choice=ToolChoice("auto", None, parallel=False), max_tokens=32000, reasoning_effort="high",
        thinking={"type": "adaptive"}, stream=True, user="user_abc_account_1_session_2", dialect=Dialect.ANTHROPIC,
        raw=CC_BODY, headers={"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"})
    assert req.tools[0].parameters is tools[0]["input_schema"]  # schemas are passed on, not copied


CC_OPENAI_MESSAGES = [
    {"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\n"
                                  "Use the tools to help the user.\nBe concise.\n\nThe user switched to plan mode."},
    {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nAs you answer, use the context.\n</system-reminder>"},
        {"type": "text", "text": "Why does test_router fail?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "pytest output"}]},
    {"role": "assistant", "content": "Let me read it.", "tool_calls": [
        {"id": "toolu_01AbC", "type": "function",
         "function": {"name": "Read", "arguments": '{"file_path":"/w/tests/test_router.py","limit":200}'}},
        {"id": "toolu_01DeF", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"pytest -x -q"}'}}]},
    {"role": "tool", "tool_call_id": "toolu_01AbC", "content": "     1\timport pytest\n"},
    {"role": "tool", "tool_call_id": "toolu_01DeF", "content": "[tool error] 1 failed[document omitted: application/pdf]"},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/shot.png"}},
                                 {"type": "text", "text": "go on"}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01GhI", "type": "function", "function": {"name": "mcp__ide__getDiagnostics", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "toolu_01GhI", "content": ""},
    {"role": "assistant", "content": "The fixture is missing."},
    {"role": "user", "content": "Fix it."},
]
CC_OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "Bash", "description": "Run a shell command",
                                      "parameters": CC_BODY["tools"][0]["input_schema"]}},
    {"type": "function", "function": {"name": "Read", "description": "Read a file",
                                      "parameters": CC_BODY["tools"][1]["input_schema"]}},
    {"type": "function", "function": {"name": "TodoWrite", "parameters": CC_BODY["tools"][2]["input_schema"]}},
    {"type": "function", "function": {"name": "mcp__ide__getDiagnostics",
                                      "parameters": {"type": "object", "properties": {}}}},
]


def test_claude_code_request_to_a_chat_model_bytes():
    req = am.parse_request(CC_BODY, CC_HEADERS)
    out = oc.build_request(req, dep(), stream=True)
    assert orjson.dumps(out) == orjson.dumps({
        "model": "gpt-4o-mini", "messages": CC_OPENAI_MESSAGES, "tools": CC_OPENAI_TOOLS, "tool_choice": "auto",
        "parallel_tool_calls": False, "max_tokens": 32000, "user": "user_abc_account_1_session_2", "stream": True,
        "stream_options": {"include_usage": True}})


def test_claude_code_request_to_a_reasoning_model_with_deployment_limits_and_defaults():
    req = am.parse_request(CC_BODY, CC_HEADERS)
    d = dep("o3-mini", max_output_tokens=16000, extra_params={"temperature": 1, "seed": 7, "top_k": 5})
    out = oc.build_request(req, d, stream=False)
    assert orjson.dumps(out) == orjson.dumps({
        "model": "o3-mini", "messages": CC_OPENAI_MESSAGES, "tools": CC_OPENAI_TOOLS, "tool_choice": "auto",
        "parallel_tool_calls": False, "max_completion_tokens": 16000, "user": "user_abc_account_1_session_2",
        "reasoning_effort": "high", "temperature": 1, "seed": 7, "top_k": 5})
    # a chat model gets no effort translated from another dialect; the client's sampling values win
    req = am.parse_request({**CC_BODY, "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"]}, CC_HEADERS)
    out = oc.build_request(req, dep("gpt-4o", extra_params={"temperature": 1, "max_tokens": 99}), stream=False)
    assert [(k, v) for k, v in out.items() if k not in ("messages", "tools")] == [
        ("model", "gpt-4o"), ("tool_choice", "auto"), ("parallel_tool_calls", False), ("max_tokens", 32000),
        ("temperature", 0.2), ("top_p", 0.9), ("stop", ["END"]), ("user", "user_abc_account_1_session_2")]


def test_build_request_max_tokens_from_defaults_and_limits():
    def max_tokens(req_max, **kw):
        req = am.parse_request({**BENCH_BODY, "max_tokens": req_max}, {}, require_max_tokens=False)
        out = oc.build_request(req, dep(**kw), stream=False)
        return out.get("max_tokens", "absent")

    assert max_tokens(64) == 64
    assert max_tokens(64, max_output_tokens=32) == 32
    assert max_tokens(0) == "absent" and max_tokens(None) == "absent"
    assert max_tokens(None, max_output_tokens=32) == 32
    assert max_tokens(None, extra_params={"max_tokens": 500}) == 500
    assert max_tokens(None, extra_params={"max_completion_tokens": 700}, max_output_tokens=600) == 600
    assert max_tokens(0, extra_params={"max_tokens": "x"}, max_output_tokens=8) == 8


def test_build_request_for_an_openai_client_keeps_its_reasoning_effort_and_seed():
    req = oc.parse_request({"model": "coder", "messages": [{"role": "user", "content": "hi"}], "seed": 3,
                            "reasoning_effort": "low", "response_format": {"type": "json_object"}}, {})
    assert orjson.dumps(oc.build_request(req, dep(), stream=False)) == (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"seed":3,'
        b'"response_format":{"type":"json_object"},"reasoning_effort":"low"}')


# ============================================================================ errors name the same place
@pytest.mark.parametrize("messages,message", [
    (["x"], "messages[0] must be an object"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], "messages[1].role must be user or assistant"),
    ([{"role": "user", "content": 5}], "messages[0].content must be a string or a list of content blocks"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}],
     "messages[1].content[1].text must be a string"),
    ([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": 3}]}],
     "messages[0].content[0]: tool_use needs a string id and name"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result"}]}],
     "messages[0].content[1].tool_use_id must be a string"),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 3}]}],
     "messages[0].content[0].content must be a string or a list of content blocks"),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "text", "text": "ok"}, {"type": "image", "source": "nope"}]}]}],
     "messages[0].content[0].content[1].source must be an object"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                                      "content": [{"type": 7}]}]}],
     "messages[1].content[0].content[0] must be a content block with a type (a string)"),
    ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "tool_result", "tool_use_id": "u", "content": [{"type": "text", "text": None}]}]}]}],
     "messages[0].content[0].content[0].content[0].text must be a string"),
    ([{"role": "user", "content": ["plain string block"]}],
     "messages[0].content[0] must be a content block with a type (a string)"),
])
def test_error_locations(messages, message):
    with pytest.raises(BadRequest) as e:
        am.parse_request({"model": "m", "max_tokens": 5, "messages": messages}, {})
    assert e.value.message == message


@pytest.mark.parametrize("extra,message", [
    ({"max_tokens": True}, "max_tokens must be an integer"),
    ({"max_tokens": 1.5}, "max_tokens must be an integer"),
    ({"system": [{"type": "image"}]}, "system[0] must be a text block"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"top_p": False}, "top_p must be a number"),
    ({"metadata": "m"}, "metadata must be an object"),
    ({"output_config": ["x"]}, "output_config must be an object"),
    ({"thinking": "on"}, "thinking must be an object"),
    ({"stop_sequences": "END"}, "stop_sequences must be a list of strings"),
    ({"tools": [{"name": 3, "input_schema": {}}]}, "tools[0] needs a string name and an input_schema object"),
    ({"tool_choice": {"type": "tool"}},
     'tool_choice must be {"type": "auto" | "any" | "none"} or {"type": "tool", "name": ...}'),
    # several wrong fields: the first in the order the fields are read wins
    ({"metadata": 1, "tools": 2, "temperature": "x", "thinking": 3}, "metadata must be an object"),
    ({"tools": 2, "tool_choice": 1, "temperature": "x", "thinking": 3}, "tools must be a list"),
    ({"tool_choice": 1, "temperature": "x", "thinking": 3},
     'tool_choice must be {"type": "auto" | "any" | "none"} or {"type": "tool", "name": ...}'),
    ({"temperature": "x", "top_p": "y", "thinking": 3}, "temperature must be a number"),
    ({"top_p": "y", "thinking": 3}, "top_p must be a number"),
])
def test_field_errors_and_their_order(extra, message):
    with pytest.raises(BadRequest) as e:
        am.parse_request({**BENCH_BODY, **extra}, {})
    assert e.value.message == message


def test_numbers_of_both_kinds_and_output_config():
    req = am.parse_request({**BENCH_BODY, "temperature": 1, "top_p": 0.5, "output_config": {
        "effort": 3, "format": {"type": "json_schema", "schema": {"type": "object"}}}, "metadata": {"user_id": 9}}, {})
    assert (req.temperature, req.top_p, req.reasoning_effort, req.user) == (1, 0.5, None, None)
    assert type(req.temperature) is int
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}
    req = am.parse_request({**BENCH_BODY, "output_config": {}, "metadata": {}, "stop_sequences": []}, {})
    assert (req.response_format, req.reasoning_effort, req.user, req.stop) == (None, None, None, [])


@pytest.mark.parametrize("headers,expected", [
    (aiohttp_headers(), {"anthropic-version": "2023-06-01"}),
    (aiohttp_headers(**{"Anthropic-Beta": "a,b"}), {"anthropic-version": "2023-06-01", "anthropic-beta": "a,b"}),
    (CIMultiDict({"ANTHROPIC-VERSION": "v", "anthropic-beta": ""}), {"anthropic-version": "v"}),
    ({"Anthropic-Version": "v", "ANTHROPIC-BETA": "b"}, {"anthropic-version": "v", "anthropic-beta": "b"}),
    ({"anthropic-beta": "b", "x": "y"}, {"anthropic-beta": "b"}),
    ({}, {}),
])
def test_forwarded_headers(headers, expected):
    req = am.parse_request(BENCH_BODY, headers)
    assert req.headers == expected and list(req.headers) == list(expected)


# =========================================================================== upstream answers, rendered
def answer(message: dict, finish: str | None = "stop", **top) -> dict:
    return {"id": "chatcmpl-t", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}], **top}


def test_tool_call_answer_rendered():
    req = am.parse_request(BENCH_BODY, {})
    resp = oc.parse_response(answer(
        {"content": "Let me look.", "refusal": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "Read", "arguments": '{"file_path":"/work/a.py","limit":200}'}}]}, "tool_calls",
        usage={"prompt_tokens": 12000, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 8000}}))
    assert resp == ChatResponse("chatcmpl-t", "gpt-4o-mini", [
        TextPart("Let me look."), ToolCallPart("call_1", "Read", '{"file_path":"/work/a.py","limit":200}')],
        StopReason.TOOL_USE, Usage(4000, 40, 8000), 1700000000)
    assert orjson.dumps(am.render_response(resp, req)) == (
        b'{"id":"chatcmpl-t","type":"message","role":"assistant","model":"coder","content":[{"type":"text",'
        b'"text":"Let me look."},{"type":"tool_use","id":"call_1","name":"Read","input":{"file_path":"/work/a.py",'
        b'"limit":200}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":4000,'
        b'"output_tokens":40,"cache_creation_input_tokens":0,"cache_read_input_tokens":8000}}')


def test_answers_of_every_shape():
    parse = oc.parse_response
    # reasoning first, "stop" after tool calls is a tool use, arguments as an object, a missing id made up
    resp = parse(answer({"reasoning_content": "think", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"a": 1}}}, {"id": "c2", "function": {"name": "g"}}]}))
    assert resp.parts[0] == ThinkingPart("think") and resp.stop_reason is StopReason.TOOL_USE
    made_up = resp.parts[1]
    assert made_up.id.startswith("call_") and len(made_up.id) == 29
    assert resp.parts[1:] == [ToolCallPart(made_up.id, "f", '{"a":1}'), ToolCallPart("c2", "g", "{}")]
    assert (resp.usage, resp.created) == (Usage(), 1700000000)
    # a refusal, parts content, finish reasons, odd ids and timestamps
    assert parse(answer({"content": None, "refusal": "no"})).parts == [TextPart("no")]
    assert parse(answer({"content": None, "refusal": "no"})).stop_reason is StopReason.REFUSAL
    assert parse(answer({"content": "yes", "refusal": "no"})).parts == [TextPart("yes")]
    assert parse(answer({"content": [{"type": "text", "text": "a"}, {"x": 1}, {"text": "b"}]})).parts == [
        TextPart("a"), TextPart("b")]
    assert parse(answer({"reasoning": "r", "content": "x"}, "length")).parts == [ThinkingPart("r"), TextPart("x")]
    assert parse(answer({"content": "x"}, "length")).stop_reason is StopReason.MAX_TOKENS
    assert parse(answer({"content": "x"}, "content_filter")).stop_reason is StopReason.CONTENT_FILTER
    assert parse(answer({"content": "x"}, None)).stop_reason is StopReason.END_TURN
    assert parse(answer({"content": "x"}, "weird")).stop_reason is StopReason.END_TURN
    odd = parse({**answer({"content": "x"}), "id": None, "model": 5, "created": "yesterday"})
    assert (odd.id, odd.model, odd.created) == ("", "5", 0)
    with pytest.raises(UpstreamBadResponse, match="no function name"):
        parse(answer({"tool_calls": [{"function": {}}]}))
    with pytest.raises(UpstreamBadResponse, match=r"no choices\[0\].message"):
        parse({"choices": []})
    with pytest.raises(UpstreamBadResponse, match="not a JSON object"):
        parse([])


@pytest.mark.parametrize("usage,expected", [
    (None, Usage()),
    ({}, Usage()),
    ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Usage(10, 5)),
    ({"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40},
      "completion_tokens_details": {"reasoning_tokens": 3}}, Usage(60, 7, 40, 0, 3)),
    ({"input_tokens": 9, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1},
      "output_tokens_details": {"reasoning_tokens": 1}}, Usage(8, 2, 1, 0, 1)),
    ({"prompt_tokens": None, "input_tokens": 4, "completion_tokens": None, "output_tokens": 3}, Usage()),
    ({"prompt_tokens": 5, "prompt_tokens_details": None, "input_tokens_details": {"cached_tokens": 2}}, Usage(3, 0, 2)),
    ({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}, Usage(0, 0, 9)),
    ({"prompt_tokens": 2.5, "completion_tokens": 1.0}, Usage(2.5, 1.0)),  # type: ignore[arg-type]
])
def test_usage_from_openai(usage, expected):
    got = Usage.from_openai(usage)
    assert got == expected and [type(getattr(got, f.name)) for f in dataclasses.fields(Usage)] == [
        type(getattr(expected, f.name)) for f in dataclasses.fields(Usage)]


def test_chat_request_field_order_is_what_positional_construction_assumes():
    """anthropic_messages.parse_request builds ChatRequest positionally (keywords cost more than the rest of a
    small request's parse): a reordered or inserted field must be appended at the end, or the call updated."""
    assert [f.name for f in dataclasses.fields(ChatRequest)] == [
        "model", "messages", "system", "tools", "tool_choice", "max_tokens", "temperature", "top_p", "stop", "seed",
        "response_format", "reasoning_effort", "thinking", "stream", "include_usage", "user", "dialect", "raw",
        "headers"]
    assert [f.name for f in dataclasses.fields(Usage)][:5] == [
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
    assert [f.name for f in dataclasses.fields(ChatResponse)] == [
        "id", "model", "parts", "stop_reason", "usage", "created"]
