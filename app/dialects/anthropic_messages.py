"""Anthropic Messages (POST /v1/messages), both directions.

Wire shapes follow anthropic-sdk-python's types: `MessageCreateParams` (request), `Message`, `Usage`,
`RawMessageStreamEvent` (the six stream events), `MessageDeltaUsage`, `ErrorResponse`; and the streaming
guide (docs.anthropic.com/en/api/messages-streaming): message_start, then per block content_block_start /
content_block_delta... / content_block_stop, then message_delta and message_stop; `ping` at any time;
`error` events mid-stream; unknown event types are to be ignored.

Choices made where the dialects differ:
- Usage: message_start carries what is known up front (an Anthropic upstream's input tokens; zero when
  the upstream is OpenAI-compatible, which only tells at the end). message_delta always carries the
  cumulative input_tokens, cache_creation_input_tokens, cache_read_input_tokens and output_tokens, which
  the SDK's accumulator (`anthropic.lib.streaming._messages.accumulate_event`) copies when not None.
- `reasoning_effort` (an OpenAI client's) becomes `thinking: {"type": "enabled", "budget_tokens": B}` on
  models that support extended thinking (Claude 3.7 and 4.x): minimal 1024, low 2048, medium 8192, high
  16384, xhigh/max 32768; max_tokens is raised to B + the answer's max_tokens (within the deployment's
  limit). It is skipped when a tool is forced (thinking allows only auto/none) or when the last assistant
  turn holds tool calls without a signed thinking block (the API would reject the history).
- `response_format` json_object/json_schema has no equivalent on every Claude model: an instruction (with
  the schema) is appended to the system prompt.
- Server tools (web_search…) and Anthropic-defined client tools (bash, text_editor…) in a request are
  kept in `raw` for pass-through and left out of the canonical tools.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from app.canonical import (
    BlockStart, BlockStop, ChatRequest, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd,
    MessageStart, Part, StopReason, StreamEvent, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta,
    ToolCallPart, ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects.openai_chat import (
    clamp_max_tokens, document_text, opt_dict, opt_int, opt_num, split_data_url, status_message,
    upstream_error,
)
from app.dialects.sse import SSEParser, sse
from app.errors import BadRequest, TiergateError, UpstreamBadResponse, UpstreamError

DEFAULT_MAX_TOKENS = 4096
STOP_IN = {"end_turn": StopReason.END_TURN, "max_tokens": StopReason.MAX_TOKENS,
           "stop_sequence": StopReason.STOP_SEQUENCE, "tool_use": StopReason.TOOL_USE,
           "pause_turn": StopReason.PAUSE, "refusal": StopReason.REFUSAL,
           "model_context_window_exceeded": StopReason.MAX_TOKENS}
STOP_OUT = {StopReason.END_TURN: "end_turn", StopReason.MAX_TOKENS: "max_tokens",
            StopReason.STOP_SEQUENCE: "stop_sequence", StopReason.TOOL_USE: "tool_use",
            StopReason.PAUSE: "pause_turn", StopReason.REFUSAL: "refusal", StopReason.CONTENT_FILTER: "refusal"}
THINKING_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 32768}
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
                "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529}
DEFAULT_PARAMS = ("temperature", "top_p", "top_k")  # deployment.extra_params used when the request has none
_SAMPLING = {"temperature", "top_p"}  # recent models refuse both at once: one is sent at most
_THINKING_MODEL = re.compile(r"claude-(?:3-7|(?:opus|sonnet|haiku)-[4-9]|[4-9])")
_TOOL_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_TOOL_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


# ============================================================================================ inbound
# parse_request runs on every /v1/messages request: field checks are inlined where the common value needs
# no helper call, canonical objects are built with positional arguments (keywords cost more than the
# rest of a small request's parse), and error locations are formatted only when an error is raised.
def parse_request(body: dict, headers: Mapping[str, str], *, require_max_tokens: bool = True) -> ChatRequest:
    """`require_max_tokens=False` for /v1/messages/count_tokens, whose body has no max_tokens."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    get = body.get
    model = get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a string")
    max_tokens = get("max_tokens")
    if max_tokens is not None and max_tokens.__class__ is not int:
        max_tokens = opt_int(body, "max_tokens")  # raises unless an int
    if max_tokens is None and require_max_tokens:
        raise BadRequest("max_tokens is required")
    msgs = get("messages")
    if not isinstance(msgs, list):
        raise BadRequest("messages must be a list")
    system = get("system")
    system = [] if system is None else _system_in(system)
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object")
        role = m.get("role")
        if role not in ("user", "assistant", "system"):
            raise BadRequest(f"messages[{i}].role must be user or assistant")
        content = m.get("content")
        parts = [TextPart(content)] if isinstance(content, str) else _blocks_in(content, (i,))
        if role == "system":  # sent by some clients under betas: it belongs to the system prompt
            system.extend(p for p in parts if isinstance(p, TextPart))
        else:
            messages.append(Message(role, parts))
    stops = get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise BadRequest("stop_sequences must be a list of strings")
    meta = get("metadata")
    if meta is not None and meta.__class__ is not dict:
        meta = opt_dict(body, "metadata")  # raises unless a dict
    out_cfg = get("output_config")
    if out_cfg is not None and out_cfg.__class__ is not dict:
        out_cfg = opt_dict(body, "output_config")
    tools = get("tools")
    tools = [] if tools is None else _tools_in(tools)
    tool_choice = get("tool_choice")
    if tool_choice is not None:
        tool_choice = _tool_choice_in(tool_choice)
    temperature = get("temperature")
    if temperature is not None and temperature.__class__ is not float:
        temperature = opt_num(body, "temperature")  # raises unless a number
    top_p = get("top_p")
    if top_p is not None and top_p.__class__ is not float:
        top_p = opt_num(body, "top_p")
    thinking = get("thinking")
    if thinking is not None and thinking.__class__ is not dict:
        thinking = opt_dict(body, "thinking")
    response_format = effort = user = None
    if out_cfg:
        fmt = out_cfg.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.get("schema")}}
        effort = out_cfg.get("effort")
        if not isinstance(effort, str):
            effort = None
    if meta:
        user = meta.get("user_id")
        if not isinstance(user, str):
            user = None
    # positional, in ChatRequest's field order
    return ChatRequest(model, messages, system, tools, tool_choice, max_tokens, temperature, top_p, stops or [],
                       None, response_format, effort, thinking, bool(get("stream")), False, user, _ANTHROPIC, body,
                       _headers_in(headers))


_ANTHROPIC = Dialect.ANTHROPIC
_CASE_INSENSITIVE = (CIMultiDictProxy, CIMultiDict)  # aiohttp's request.headers


def _headers_in(headers: Mapping[str, str]) -> dict[str, str]:
    out = {}
    if isinstance(headers, _CASE_INSENSITIVE):
        value = headers.get("anthropic-version")
        if value:
            out["anthropic-version"] = value
        value = headers.get("anthropic-beta")
        if value:
            out["anthropic-beta"] = value
        return out
    for name in ("anthropic-version", "anthropic-beta"):
        value = headers.get(name)
        if value is None:  # a plain dict with other casing
            value = next((v for k, v in headers.items() if k.lower() == name), None)
        if value:
            out[name] = value
    return out


def _system_in(system: Any) -> list[TextPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(system)] if system else []
    if not isinstance(system, list):
        raise BadRequest("system must be a string or a list of text blocks")
    out = []
    for i, b in enumerate(system):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise BadRequest(f"system[{i}] must be a text block")
        out.append(TextPart(b["text"], b.get("cache_control")))
    return out


def _where(path: tuple[int, ...]) -> str:
    """(2, 0) -> "messages[2].content[0]": where a block is, for error messages."""
    return f"messages[{path[0]}]" + "".join(f".content[{j}]" for j in path[1:])


def _blocks_in(content: Any, path: tuple[int, ...]) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(f"{_where(path)}.content must be a string or a list of content blocks")
    parts: list[Part] = []
    append = parts.append
    for j, b in enumerate(content):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            text = b.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{_where(path + (j,))}.text must be a string")
            append(TextPart(text, b.get("cache_control")))
        elif kind == "tool_result":
            call_id = b.get("tool_use_id")
            if not isinstance(call_id, str):
                raise BadRequest(f"{_where(path + (j,))}.tool_use_id must be a string")
            result = b.get("content")
            append(ToolResultPart(call_id, [TextPart(result)] if isinstance(result, str) else
                                  _result_in(result, path + (j,)), bool(b.get("is_error"))))
        elif kind == "tool_use":
            call_id, name = b.get("id"), b.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise BadRequest(f"{_where(path + (j,))}: tool_use needs a string id and name")
            args = b.get("input")
            append(ToolCallPart(call_id, name, orjson.dumps(args).decode() if args else "{}"))
        elif kind == "image":
            img = _image_in(b.get("source"), path + (j,))
            if img is not None:
                append(img)
        elif kind == "document":
            append(DocumentPart(b))
        elif kind == "thinking":
            append(ThinkingPart(str(b.get("thinking") or ""), b.get("signature")))
        elif kind == "redacted_thinking":
            append(ThinkingPart("", None, b.get("data")))
        elif not isinstance(kind, str) or not kind:
            raise BadRequest(f"{_where(path + (j,))} must be a content block with a type (a string)")
        # other block types (server tool use and results, search results…) have no canonical form
    return parts


def _image_in(src: Any, path: tuple[int, ...]) -> ImagePart | None:
    if not isinstance(src, dict):
        raise BadRequest(f"{_where(path)}.source must be an object")
    if src.get("type") == "base64":
        return ImagePart(src.get("media_type"), src.get("data"))
    if src.get("type") == "url" and isinstance(src.get("url"), str):
        return ImagePart(None, None, src["url"])
    return None  # file ids only mean something to Anthropic (kept in raw)


def _result_in(content: Any, path: tuple[int, ...]) -> list[TextPart | ImagePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(f"{_where(path)}.content must be a string or a list of content blocks")
    out: list[TextPart | ImagePart] = []
    for p in _blocks_in(content, path):
        if isinstance(p, (TextPart, ImagePart)):
            out.append(p)
        elif isinstance(p, DocumentPart):
            out.append(TextPart(document_text(p)))
    return out


def _tools_in(tools: Any) -> list[ToolSpec]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise BadRequest(f"tools[{i}] must be an object")
        if t.get("type") not in (None, "custom") or "input_schema" not in t:
            continue  # server tools and Anthropic-defined tools: pass-through only
        name, schema = t.get("name"), t["input_schema"]
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise BadRequest(f"tools[{i}] needs a string name and an input_schema object")
        out.append(ToolSpec(name, t.get("description"), schema))
    return out


_TOOL_CHOICE_MODE = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}


def _tool_choice_in(tc: Any) -> ToolChoice | None:
    if tc is None:
        return None
    kind = tc.get("type") if isinstance(tc, dict) else None
    mode = _TOOL_CHOICE_MODE.get(kind)  # type: ignore[arg-type]
    if mode is None or (mode == "tool" and not isinstance(tc.get("name"), str)):
        raise BadRequest('tool_choice must be {"type": "auto" | "any" | "none"} or {"type": "tool", "name": ...}')
    dis = tc.get("disable_parallel_tool_use")
    return ToolChoice(mode, tc.get("name") if mode == "tool" else None,  # type: ignore[arg-type]
                      None if dis is None else not dis)


def usage_dict(u: Usage) -> dict[str, int]:
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens, "cache_read_input_tokens": u.cache_read_tokens}


def _args_obj(arguments: str) -> dict:
    """Tool arguments (JSON text) as the object `tool_use.input` must be; {} when not a JSON object."""
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def render_response(resp: ChatResponse, req: ChatRequest) -> dict:
    content: list[dict[str, Any]] = []
    for p in resp.parts:
        if isinstance(p, TextPart):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ToolCallPart):
            content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": _args_obj(p.arguments)})
        elif isinstance(p, ThinkingPart):
            content.append({"type": "redacted_thinking", "data": p.redacted} if p.redacted else
                           {"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
    return {"id": resp.id, "type": "message", "role": "assistant", "model": req.model, "content": content,
            "stop_reason": STOP_OUT.get(resp.stop_reason, "end_turn"), "stop_sequence": None,
            "usage": usage_dict(resp.usage)}


def error_type(err: TiergateError) -> str:
    s = err.status
    if s == 529 or s == 503 or getattr(err, "upstream_status", None) == 529:
        return "overloaded_error"
    return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}.get(
        s, "api_error" if s >= 500 else "invalid_request_error")


def render_error(err: TiergateError) -> tuple[int, dict]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(err), "message": err.message}}
    if err.details.get("request_id"):
        body["request_id"] = err.details["request_id"]
    return err.status, body


class StreamEncoder:
    """Canonical events -> Anthropic SSE events (`event: <type>` + `data: <json>`). Text deltas, most of a
    stream, take a fast path: the frame up to the text is kept per block index, only the text is encoded."""

    __slots__ = ("_id", "_model", "_started", "_closed", "_open", "_text_index", "_text_head")

    def __init__(self, req: ChatRequest, response_id: str):
        self._id = response_id
        self._model = req.model
        self._started = False
        self._closed = False
        self._open = False  # started and not closed
        self._text_index: Any = None  # block index _text_head was made for
        self._text_head = b""

    def _start(self, usage: Usage) -> bytes:
        self._started = self._open = True
        # orjson writes no raw line breaks, so the frame is the JSON between the event line and a blank line
        return (b'event: message_start\ndata: {"type":"message_start","message":{"id":' + orjson.dumps(self._id)
                + b',"type":"message","role":"assistant","content":[],"model":' + orjson.dumps(self._model)
                + b',"stop_reason":null,"stop_sequence":null,"usage":' + orjson.dumps(usage_dict(usage)) + b"}}\n\n")

    def encode(self, event: StreamEvent) -> bytes:
        if self._open and event.__class__ is TextDelta:
            index = event.index
            if index != self._text_index:
                self._text_head = _DELTA_HEAD % index + b'{"type":"text_delta","text":'
                self._text_index = index
            return self._text_head + orjson.dumps(event.text) + b"}}\n\n"  # type: ignore[union-attr]
        if self._closed:
            return b""
        if not self._started:
            head = self._start(event.usage if isinstance(event, MessageStart) else Usage())
            if isinstance(event, MessageStart):
                return head
        else:
            head = b""
        if isinstance(event, TextDelta):
            return head + _delta(event.index, b'{"type":"text_delta","text":' + orjson.dumps(event.text) + b"}")
        if isinstance(event, ToolArgsDelta):
            return head + _delta(event.index, b'{"type":"input_json_delta","partial_json":'
                                 + orjson.dumps(event.partial_json) + b"}")
        if isinstance(event, ThinkingDelta):
            if event.text:
                head += _delta(event.index, b'{"type":"thinking_delta","thinking":' + orjson.dumps(event.text) + b"}")
            if event.signature:
                head += _delta(event.index, b'{"type":"signature_delta","signature":'
                               + orjson.dumps(event.signature) + b"}")
            return head
        if isinstance(event, BlockStart):
            if event.kind == "tool_call":
                block: dict[str, Any] = {"type": "tool_use", "id": event.tool_call_id, "name": event.tool_name,
                                         "input": {}}
            elif event.kind == "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
            elif event.index.__class__ is int:  # as orjson would write it
                return head + _TEXT_START % event.index
            else:
                block = {"type": "text", "text": ""}
            return head + sse(orjson.dumps({"type": "content_block_start", "index": event.index,
                                            "content_block": block}), "content_block_start")
        if isinstance(event, BlockStop):
            return head + _BLOCK_STOP % event.index
        if isinstance(event, MessageEnd):
            self._closed = True
            self._open = False
            return (head + b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
                    + orjson.dumps(STOP_OUT.get(event.stop_reason, "end_turn")) + b',"stop_sequence":null},"usage":'
                    + orjson.dumps(usage_dict(event.usage)) + b"}\n\n" + _MESSAGE_STOP)
        return head

    def error(self, err: TiergateError) -> bytes:
        self._closed = True
        self._open = False
        return sse(orjson.dumps({"type": "error", "error": {"type": error_type(err), "message": err.message}}),
                   "error")

    def finish(self) -> bytes:
        return b""  # message_stop is the last event


_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":'
_TEXT_START = (b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
               b'"content_block":{"type":"text","text":""}}\n\n')
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _delta(index: int, delta: bytes) -> bytes:
    return _DELTA_HEAD % index + delta + b"}\n\n"


# =========================================================================================== outbound
def supports_thinking(model: str) -> bool:
    """Claude models with extended thinking: 3.7 Sonnet and the 4.x family."""
    return _THINKING_MODEL.search(model.lower()) is not None


def build_request(req: ChatRequest, deployment: Deployment, *, stream: bool) -> dict:
    extra = deployment.extra_params
    max_tokens = clamp_max_tokens(req.max_tokens or extra.get("max_tokens") or DEFAULT_MAX_TOKENS, deployment)
    out: dict[str, Any] = {"model": deployment.model, "max_tokens": max_tokens}
    system = [_text_out(p) for p in req.system if p.text]
    instruction = _format_instruction(req.response_format)
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        out["system"] = system
    out["messages"] = messages_out(req.messages)
    tc = req.tool_choice
    if req.tools:
        out["tools"] = [_tool_out(t) for t in req.tools]
        if tc is not None:
            choice: dict[str, Any] = {"type": {"auto": "auto", "none": "none", "required": "any",
                                               "tool": "tool"}[tc.mode]}
            if tc.mode == "tool":
                choice["name"] = tc.name
            if tc.parallel is False and tc.mode != "none":
                choice["disable_parallel_tool_use"] = True
            out["tool_choice"] = choice
    if req.stop:
        out["stop_sequences"] = req.stop
    if req.temperature is not None:
        out["temperature"] = req.temperature
    elif req.top_p is not None:  # recent models refuse temperature and top_p together
        out["top_p"] = req.top_p
    for key in DEFAULT_PARAMS:
        if key not in out and key in extra and not (key in ("top_p", "temperature") and _SAMPLING & out.keys()):
            out[key] = extra[key]
    if req.user:
        out["metadata"] = {"user_id": req.user}
    thinking = req.thinking or _thinking_for(req, deployment, out)
    if thinking:
        out["thinking"] = thinking
        if thinking.get("type") == "enabled":  # thinking requires the default temperature, top_p >= 0.95
            out.pop("temperature", None)
            if out.get("top_p", 1) < 0.95:
                out.pop("top_p")
            out.pop("top_k", None)
    if stream:
        out["stream"] = True
    return out


def _thinking_for(req: ChatRequest, deployment: Deployment, out: dict[str, Any]) -> dict[str, Any] | None:
    budget = THINKING_BUDGET.get(req.reasoning_effort or "")
    if budget is None or not supports_thinking(deployment.model):
        return None
    if req.tool_choice is not None and req.tool_choice.mode in ("required", "tool"):
        return None
    last = next((m for m in reversed(req.messages) if m.role == "assistant"), None)
    if last is not None and any(isinstance(p, ToolCallPart) for p in last.parts) and not any(
            isinstance(p, ThinkingPart) and (p.signature or p.redacted) for p in last.parts):
        return None
    if out["max_tokens"] <= budget:
        out["max_tokens"] = clamp_max_tokens(budget + out["max_tokens"], deployment)
        if out["max_tokens"] <= budget:
            budget = out["max_tokens"] - 1
            if budget < 1024:
                return None
    return {"type": "enabled", "budget_tokens": budget}


def _format_instruction(fmt: dict[str, Any] | None) -> str | None:
    if not fmt or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
    if schema:
        return ("Respond with a single JSON object that matches this JSON schema, and nothing else:\n"
                + orjson.dumps(schema).decode())
    return "Respond with a single valid JSON object, and nothing else."


def _text_out(p: TextPart) -> dict[str, Any]:
    if p.cache_control:
        return {"type": "text", "text": p.text, "cache_control": p.cache_control}
    return {"type": "text", "text": p.text}


def _tool_out(t: ToolSpec) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": t.name}
    if t.description:
        tool["description"] = t.description
    tool["input_schema"] = t.parameters
    return tool


def tool_id(value: str) -> str:
    """Anthropic accepts tool ids matching ^[a-zA-Z0-9_-]+$; others are mapped (the same way for a call
    and its result, so the pair still matches)."""
    if _TOOL_ID_OK.fullmatch(value):
        return value
    return _TOOL_ID_BAD.sub("_", value) or "toolu_"


def messages_out(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages -> Anthropic's, consecutive same-role turns merged (the API wants alternation)
    and tool results first in each user turn."""
    out: list[dict[str, Any]] = []
    for m in messages:
        blocks = [b for b in (_block_out(p) for p in m.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == m.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": m.role, "content": blocks})
    for msg in out:
        content = msg["content"]
        if msg["role"] == "user" and any(b["type"] == "tool_result" for b in content):
            content.sort(key=lambda b: b["type"] != "tool_result")  # stable: results first, order kept
    return out


def _block_out(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return _text_out(p) if p.text else None
    if isinstance(p, ToolCallPart):
        return {"type": "tool_use", "id": tool_id(p.id), "name": p.name, "input": _args_obj(p.arguments)}
    if isinstance(p, ToolResultPart):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(p.tool_call_id)}
        inner = [b for b in (_block_out(x) for x in p.content) if b is not None]
        if inner:
            block["content"] = inner
        if p.is_error:
            block["is_error"] = True
        return block
    if isinstance(p, ImagePart):
        return {"type": "image", "source": _image_source(p)}
    if isinstance(p, DocumentPart):
        return p.raw
    if isinstance(p, ThinkingPart):
        if p.redacted:
            return {"type": "redacted_thinking", "data": p.redacted}
        if p.signature:  # unsigned thinking (from another vendor) would be rejected
            return {"type": "thinking", "thinking": p.text, "signature": p.signature}
    return None


def _image_source(p: ImagePart) -> dict[str, Any]:
    if p.data is not None:
        return {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}
    media, data = split_data_url(p.url or "")
    if data is not None:
        return {"type": "base64", "media_type": media or "image/png", "data": data}
    return {"type": "url", "url": p.url}


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict):
        raise UpstreamBadResponse("the message is not a JSON object")
    if body.get("type") == "error":
        raise _error_from_payload(body.get("error"), None, body)
    content = body.get("content")
    if not isinstance(content, list):
        raise UpstreamBadResponse("the message has no content list")
    parts: list[Part] = []
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            parts.append(TextPart(str(b.get("text") or "")))
        elif kind == "tool_use":
            parts.append(ToolCallPart(str(b.get("id") or ""), str(b.get("name") or ""),
                                      orjson.dumps(b.get("input") or {}).decode()))
        elif kind == "thinking":
            parts.append(ThinkingPart(str(b.get("thinking") or ""), b.get("signature")))
        elif kind == "redacted_thinking":
            parts.append(ThinkingPart("", redacted=b.get("data")))
    return ChatResponse(id=str(body.get("id") or ""), model=str(body.get("model") or ""), parts=parts,
                        stop_reason=STOP_IN.get(body.get("stop_reason") or "", StopReason.END_TURN),
                        usage=_usage_in(body.get("usage")))


def _usage_in(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return Usage(input_tokens=u.get("input_tokens") or 0, output_tokens=u.get("output_tokens") or 0,
                 cache_read_tokens=u.get("cache_read_input_tokens") or 0,
                 cache_write_tokens=u.get("cache_creation_input_tokens") or 0)


def stream_finished(data: bytes) -> bool:
    """Whether relayed bytes end with the stream's last event (`message_stop`): nothing the client needs
    comes after it, so the response can end before the upstream's own end of body arrives."""
    tail = data.rstrip(b"\r\n")
    start = max(tail.rfind(b"\n\n"), tail.rfind(b"\r\n\r\n"))
    last = tail[start + 1:].lstrip(b"\r\n") if start >= 0 else tail
    return last.startswith(b"event: message_stop")


class StreamDecoder:
    """Anthropic SSE -> canonical events. Upstream block indices are renumbered so that blocks without a
    canonical form (redacted thinking, server tool use and results) leave no gaps."""

    __slots__ = ("_sse", "_map", "_next", "_usage", "_stop", "_ended")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._map: dict[int, int] = {}  # upstream index -> canonical index (kept blocks only)
        self._next = 0
        self._usage = Usage()
        self._stop: StopReason = StopReason.END_TURN
        self._ended = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(chunk):
            self._event(ev.data, out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.close():
            self._event(ev.data, out)
        if not self._ended:
            raise UpstreamBadResponse("the stream ended before message_stop")
        return out

    def _event(self, data: bytes, out: list[StreamEvent]) -> None:
        if self._ended:
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponse("the stream sent an event that is not JSON") from None
        if not isinstance(obj, dict):
            raise UpstreamBadResponse("the stream sent an event that is not a JSON object")
        kind = obj.get("type")
        if kind == "content_block_delta":
            idx = self._map.get(obj.get("index"))  # type: ignore[arg-type]
            delta = obj.get("delta") or {}
            if idx is None or not isinstance(delta, dict):
                return
            dk = delta.get("type")
            if dk == "text_delta":
                out.append(TextDelta(idx, delta.get("text") or ""))
            elif dk == "input_json_delta":
                if delta.get("partial_json"):
                    out.append(ToolArgsDelta(idx, delta["partial_json"]))
            elif dk == "thinking_delta":
                out.append(ThinkingDelta(idx, delta.get("thinking") or ""))
            elif dk == "signature_delta":
                out.append(ThinkingDelta(idx, "", signature=delta.get("signature")))
        elif kind == "content_block_start":
            self._block_start(obj, out)
        elif kind == "content_block_stop":
            idx = self._map.get(obj.get("index"))  # type: ignore[arg-type]
            if idx is not None:
                out.append(BlockStop(idx))
        elif kind == "message_start":
            msg = obj.get("message")
            if not isinstance(msg, dict):
                raise UpstreamBadResponse("message_start has no message")
            self._usage = _usage_in(msg.get("usage"))
            out.append(MessageStart(str(msg.get("id") or ""), str(msg.get("model") or ""),
                                    _usage_in(msg.get("usage"))))
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if reason:
                self._stop = STOP_IN.get(reason, StopReason.END_TURN)
            self._usage.merge(_usage_in(obj.get("usage")))
        elif kind == "message_stop":
            self._ended = True
            out.append(MessageEnd(self._stop, self._usage))
        elif kind == "error":
            raise _error_from_payload(obj.get("error"), None, obj)
        # ping and unknown event types: ignored, as the API's versioning policy asks

    def _block_start(self, obj: dict, out: list[StreamEvent]) -> None:
        block = obj.get("content_block")
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in ("text", "tool_use", "thinking"):
            return
        idx = self._map[obj.get("index")] = self._next  # type: ignore[index]
        self._next += 1
        if kind == "tool_use":
            out.append(BlockStart(idx, "tool_call", str(block.get("id") or ""), str(block.get("name") or "")))
            if block.get("input"):  # some servers send the whole input up front
                out.append(ToolArgsDelta(idx, orjson.dumps(block["input"]).decode()))
        elif kind == "thinking":
            out.append(BlockStart(idx, "thinking"))
            if block.get("thinking"):
                out.append(ThinkingDelta(idx, block["thinking"]))
        else:
            out.append(BlockStart(idx, "text"))
            if block.get("text"):
                out.append(TextDelta(idx, block["text"]))


def _error_from_payload(err: Any, status: int | None, body: Any) -> UpstreamError:
    """`{"type": ..., "message": ...}` -> typed error; the error type decides when there is no HTTP status
    (in-stream errors): overloaded/api errors are server errors, rate_limit_error is a rate limit…"""
    kind = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) and isinstance(err.get("message"), str) else None
    if status is None:
        status = ERROR_STATUS.get(kind or "", 500)
    e = upstream_error(status, message or f"{kind or 'error'} from upstream", body)
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        e.details["request_id"] = body["request_id"]
    return e


def parse_error(status: int, body: bytes) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return _error_from_payload(data["error"], status, data)
    return upstream_error(status, status_message(status, body), data)


# ============================================================================================ counting
def estimate_tokens(req: ChatRequest) -> int:
    """An estimate of the prompt's input tokens for /v1/messages/count_tokens when the upstream cannot
    count (it is not Anthropic): one token per 4 characters of text (system, messages, tool arguments and
    results, tool names, descriptions and schemas as JSON), rounded up, plus 4 per message, 1600 per image
    (Anthropic's ceiling for one image), 1500 per non-text document, and 300 when tools are defined (the
    tool-use system prompt Claude adds). Good to within tens of percent for English and code."""
    chars = sum(len(p.text) for p in req.system)
    extra = 4 * len(req.messages)
    for m in req.messages:
        for p in m.parts:
            if isinstance(p, TextPart):
                chars += len(p.text)
            elif isinstance(p, ToolCallPart):
                chars += len(p.name) + len(p.arguments)
            elif isinstance(p, ToolResultPart):
                for x in p.content:
                    if isinstance(x, TextPart):
                        chars += len(x.text)
                    else:
                        extra += 1600
            elif isinstance(p, ThinkingPart):
                chars += len(p.text)
            elif isinstance(p, ImagePart):
                extra += 1600
            elif isinstance(p, DocumentPart):
                text = document_text(p)
                if text.startswith("[document omitted"):
                    extra += 1500
                else:
                    chars += len(text)
    if req.tools:
        extra += 300
        for t in req.tools:
            chars += len(t.name) + len(t.description or "") + len(orjson.dumps(t.parameters))
    return math.ceil(chars / 4) + extra
