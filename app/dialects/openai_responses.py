"""OpenAI Responses API (POST /v1/responses), both directions.

Formats follow the openai-python SDK types (`openai.types.responses`: ResponseCreateParams, Response,
ResponseStreamEvent, ResponseUsage) and the Responses API reference.

Inbound choices (a Responses client, e.g. Codex CLI, talking to any upstream):
- `instructions` and leading `system`/`developer` messages become the canonical system prompt; a
  `system`/`developer` message after the conversation has started becomes user text at that point
  (no dialect but Responses has mid-conversation system turns, and moving it up would break prompt caches).
- Tools other than `function` (web_search, file_search, namespace, local_shell, custom, mcp…) are dropped,
  never an error. `custom_tool_call` history items become tool calls (arguments `{"input": …}`) so call and
  output stay paired; other hosted-tool items are dropped, both halves.
- Reasoning items from OpenAI are dropped (their encrypted content only means something to OpenAI). Reasoning
  items Tiergate itself produced carry `encrypted_content` "tiergate:<base64 json>" holding the thinking
  signature, so an Anthropic thinking block survives a round trip through a Responses client; those are
  also removed from `raw` so a pass-through to OpenAI never sees them.
- `previous_response_id` / `conversation` cannot be honoured (Tiergate stores no responses): kept in `raw`
  for a pass-through to OpenAI, ignored when translating.

Stream encoder: thinking is sent as reasoning items with summary-text deltas. A response that stopped at
max tokens ends with `response.completed` carrying status "incomplete" (OpenAI itself sends
`response.incomplete`; the SDK's `get_final_response()` and Codex CLI only accept `response.completed`).
An error ends the stream with `response.failed` (what Codex CLI acts on); before `response.created` was
sent (e.g. a pass-through relay) it is the `error` event instead.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from typing import Any, Mapping

import orjson

from app.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Dialect,
    DocumentPart,
    ImagePart,
    Message,
    MessageEnd,
    MessageStart,
    Part,
    StopReason,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from app.config.schema import Deployment
from app.dialects.openai_chat import effort_from_thinking, image_from_url
from app.dialects.sse import SSEParser, sse
from app.errors import (
    BadRequest,
    RateLimited,
    TiergateError,
    UpstreamBadResponse,
    UpstreamClientError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
)

log = logging.getLogger(__name__)

_ROLES = ("user", "assistant", "system", "developer")
_SEAL = "tiergate:"
_MIN_OUTPUT_TOKENS = 16  # the Responses API rejects max_output_tokens below 16


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


# ============================================================================================ inbound
def parse_request(body: dict, headers: Mapping[str, str]) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: expected a non-empty string")
    system: list[TextPart] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("instructions: expected a string")
        if instructions:
            system.append(TextPart(instructions))
    messages, own_reasoning = _parse_input(body.get("input"), system)
    tools = _parse_tools(body.get("tools"))
    choice = _parse_tool_choice(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise BadRequest("parallel_tool_calls: expected true or false")
        choice = choice or ToolChoice("auto")
        choice.parallel = parallel
    if not tools:
        choice = None  # every tool was a hosted one we dropped (or none was sent)
    for key in ("metadata", "client_metadata"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise BadRequest(f"{key}: expected an object")
    if body.get("include") is not None and not isinstance(body["include"], list):
        raise BadRequest("include: expected a list")
    for key in ("store", "stream"):
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise BadRequest(f"{key}: expected true or false")
    for key in ("prompt_cache_key", "previous_response_id"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise BadRequest(f"{key}: expected a string")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user: expected a string")
    if user is None and isinstance(body.get("safety_identifier"), str):
        user = body["safety_identifier"]
    raw = body
    if own_reasoning:  # never pass Tiergate's own reasoning items on to OpenAI
        raw = {**body, "input": [it for it in body["input"] if not _is_own_reasoning(it)]}
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=choice,
        max_tokens=_int(body, "max_output_tokens"),
        temperature=_num(body, "temperature"),
        top_p=_num(body, "top_p"),
        response_format=_parse_text_format(body.get("text")),
        reasoning_effort=_parse_reasoning(body.get("reasoning")),
        stream=bool(body.get("stream")),
        include_usage=True,  # Responses streams always carry usage in response.completed
        user=user,
        dialect=Dialect.OPENAI_RESPONSES,
        raw=raw,
    )


def _num(body: dict, key: str) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"{key}: expected a number")
    return v


def _int(body: dict, key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise BadRequest(f"{key}: expected a positive integer")
    return v


def _str_field(item: dict, key: str, where: str) -> str:
    v = item.get(key)
    if not isinstance(v, str):
        raise BadRequest(f"{where}.{key}: expected a string")
    return v


def _is_own_reasoning(item: Any) -> bool:
    return (isinstance(item, dict) and item.get("type") == "reasoning"
            and isinstance(item.get("encrypted_content"), str) and item["encrypted_content"].startswith(_SEAL))


def _parse_input(value: Any, system: list[TextPart]) -> tuple[list[Message], bool]:
    if isinstance(value, str):
        return [Message("user", [TextPart(value)])], False
    if not isinstance(value, list):
        raise BadRequest("input: expected a string or a list of input items")
    msgs: list[Message] = []
    own_reasoning = False

    def add(role: str, part: Part) -> None:
        if msgs and msgs[-1].role == role:
            parts = msgs[-1].parts
            if type(part) is ToolResultPart and parts and type(parts[-1]) is not ToolResultPart:
                # tool results lead their user turn (Anthropic requires it)
                at = 0
                while at < len(parts) and type(parts[at]) is ToolResultPart:
                    at += 1
                parts.insert(at, part)
            else:
                parts.append(part)
        else:
            msgs.append(Message(role, [part]))  # type: ignore[arg-type]

    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: expected an object")
        kind = item.get("type", "message")  # EasyInputMessage may omit `type`
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise BadRequest(f"{where}.role: expected one of {', '.join(_ROLES)}")
            parts = _parse_content(item.get("content"), f"{where}.content")
            if role in ("system", "developer"):
                texts = [p for p in parts if type(p) is TextPart]
                if not msgs:
                    system.extend(texts)  # type: ignore[arg-type]
                else:
                    for p in texts:
                        add("user", p)
            else:
                for p in parts:
                    add(role, p)
        elif kind == "function_call":
            args = item.get("arguments")
            if not isinstance(args, str):
                raise BadRequest(f"{where}.arguments: expected a string of JSON")
            add("assistant", ToolCallPart(_str_field(item, "call_id", where), _str_field(item, "name", where), args))
        elif kind == "function_call_output":
            call_id = _str_field(item, "call_id", where)
            add("user", ToolResultPart(call_id, _parse_output(item.get("output"), f"{where}.output")))
        elif kind == "custom_tool_call":
            call_id, name = _str_field(item, "call_id", where), _str_field(item, "name", where)
            add("assistant", ToolCallPart(call_id, name, orjson.dumps({"input": item.get("input", "")}).decode()))
        elif kind == "custom_tool_call_output":
            call_id = _str_field(item, "call_id", where)
            add("user", ToolResultPart(call_id, _parse_output(item.get("output"), f"{where}.output")))
        elif kind == "reasoning":
            if _is_own_reasoning(item):
                own_reasoning = True
                part = _unseal(item)
                if part is not None:
                    add("assistant", part)
        else:
            log.debug("dropped a Responses input item of type %r", kind)
    return msgs, own_reasoning


def _parse_content(value: Any, where: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)] if value else []
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected a string or a list of content parts")
    out: list[Part] = []
    for j, part in enumerate(value):
        if not isinstance(part, dict):
            raise BadRequest(f"{where}[{j}]: expected an object")
        p = _parse_part(part, f"{where}[{j}]")
        if p is not None:
            out.append(p)
    return out


def _parse_part(part: dict, where: str) -> Part | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = _str_field(part, "text", where)
        return TextPart(text) if text else None
    if kind == "refusal":
        return TextPart(_str_field(part, "refusal", where))
    if kind == "input_image":
        url = part.get("image_url")
        detail = part.get("detail") if isinstance(part.get("detail"), str) else None
        if isinstance(url, str) and url:
            return image_from_url(url, detail)
        return TextPart("[An image given by file id was omitted: files are not available here.]")
    if kind == "input_file":
        return _parse_file(part, where)
    if kind == "input_audio":
        return TextPart("[An audio clip was omitted: audio input is not supported here.]")
    return None


def _parse_file(part: dict, where: str) -> Part:
    filename = part.get("filename") if isinstance(part.get("filename"), str) else None
    data = part.get("file_data")
    if isinstance(data, str) and data:
        media_type = "application/pdf"
        if data.startswith("data:"):
            head, _, data = data.partition(",")
            media_type = head[5:].split(";", 1)[0] or media_type
        raw: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
        if filename:
            raw["title"] = filename
        return DocumentPart(raw)
    url = part.get("file_url")
    if isinstance(url, str) and url:
        return DocumentPart({"type": "document", "source": {"type": "url", "url": url}})
    return TextPart("[A file given by file id was omitted: files are not available here.]")


def _parse_output(value: Any, where: str) -> list[TextPart | ImagePart]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected a string or a list of content parts")
    out: list[TextPart | ImagePart] = []
    for p in _parse_content(value, where):
        if type(p) is TextPart or type(p) is ImagePart:
            out.append(p)  # type: ignore[arg-type]
        else:
            out.append(TextPart("[A file in the tool output was omitted.]"))
    return out


def _parse_tools(value: Any) -> list[ToolSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools: expected a list")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}]: expected an object")
        if tool.get("type") != "function":
            continue  # hosted tools (web_search, namespace, custom…) cannot be offered by other upstreams
        name = _str_field(tool, "name", f"tools[{i}]")
        desc = tool.get("description")
        if desc is not None and not isinstance(desc, str):
            raise BadRequest(f"tools[{i}].description: expected a string")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(f"tools[{i}].parameters: expected a JSON schema object")
        out.append(ToolSpec(name, desc, params or {"type": "object", "properties": {}}))
    return out


def _parse_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise BadRequest("tool_choice: expected auto, none, required or a tool object")
        return ToolChoice(value)  # type: ignore[arg-type]
    if not isinstance(value, dict):
        raise BadRequest("tool_choice: expected a string or an object")
    kind = value.get("type")
    if kind == "function":
        return ToolChoice("tool", _str_field(value, "name", "tool_choice"))
    if kind == "allowed_tools":
        return ToolChoice("required" if value.get("mode") == "required" else "auto")
    return None  # a hosted tool type: dropped with the tool


def _parse_text_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("text: expected an object")
    fmt = value.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise BadRequest("text.format: expected an object")
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise BadRequest("text.format.schema: expected a JSON schema object")
        spec: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": schema}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}
    if kind in ("text", None):
        return None
    raise BadRequest("text.format.type: expected text, json_object or json_schema")


def _parse_reasoning(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("reasoning: expected an object")
    effort = value.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise BadRequest("reasoning.effort: expected a string")
    return effort


# ---------------------------------------------------------------------------- reasoning round trip
def _seal(signature: str | None, redacted: str | None) -> str:
    return _SEAL + base64.urlsafe_b64encode(orjson.dumps({"s": signature, "r": redacted})).decode()


def _unseal(item: dict) -> ThinkingPart | None:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(item["encrypted_content"][len(_SEAL):]))
    except (ValueError, orjson.JSONDecodeError):
        return None
    text = "".join(s.get("text", "") for s in item.get("summary") or () if isinstance(s, dict))
    sig, red = data.get("s"), data.get("r")
    if not text and not red:
        return None
    return ThinkingPart(text, signature=sig if isinstance(sig, str) else None,
                        redacted=red if isinstance(red, str) else None)


# ------------------------------------------------------------------------------- rendering (inbound)
def _usage_dict(u: Usage) -> dict[str, Any]:
    """Usage as `ResponseUsage`: input_tokens counts cached and cache-written tokens too."""
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def _text_content(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _reasoning_item(item_id: str, text: str, signature: str | None, redacted: str | None) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}] if text else [],
            "encrypted_content": _seal(signature, redacted)}


def _status_of(stop: StopReason) -> tuple[str, dict[str, str] | None]:
    if stop is StopReason.MAX_TOKENS:
        return "incomplete", {"reason": "max_output_tokens"}
    if stop is StopReason.CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response_object(resp_id: str, req: ChatRequest, created: int, status: str, output: list,
                     usage: dict | None, *, incomplete: dict | None = None, error: dict | None = None) -> dict:
    raw = req.raw
    choice = req.tool_choice
    tc = raw.get("tool_choice")
    text = raw.get("text")
    reasoning = raw.get("reasoning")
    tools = raw.get("tools")
    meta = raw.get("metadata")
    obj = {
        "id": resp_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": raw.get("instructions") if isinstance(raw.get("instructions"), str) else None,
        "max_output_tokens": req.max_tokens,
        "model": req.model,
        "output": output,
        "parallel_tool_calls": choice.parallel if choice is not None and choice.parallel is not None else True,
        "previous_response_id": None,
        "reasoning": reasoning if isinstance(reasoning, dict) else {"effort": None, "summary": None},
        "store": raw.get("store") if isinstance(raw.get("store"), bool) else True,
        "temperature": req.temperature,
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "tool_choice": tc if isinstance(tc, (str, dict)) else "auto",
        "tools": tools if isinstance(tools, list) else [],
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": req.user,
        "metadata": meta if isinstance(meta, dict) else {},
    }
    if status == "completed":
        obj["completed_at"] = int(time.time())
    return obj


def render_response(resp: ChatResponse, req: ChatRequest) -> dict:
    output: list[dict[str, Any]] = []
    msg: dict[str, Any] | None = None
    for p in resp.parts:
        t = type(p)
        if t is TextPart:
            if msg is None:
                msg = {"id": _new_id("msg_"), "type": "message", "role": "assistant", "status": "completed",
                       "content": []}
                output.append(msg)
            msg["content"].append(_text_content(p.text))  # type: ignore[union-attr]
            continue
        msg = None
        if t is ToolCallPart:
            output.append({"id": _new_id("fc_"), "type": "function_call", "status": "completed",
                           "call_id": p.id, "name": p.name, "arguments": p.arguments})  # type: ignore[union-attr]
        elif t is ThinkingPart:
            output.append(_reasoning_item(_new_id("rs_"), p.text, p.signature, p.redacted))  # type: ignore[union-attr]
    status, incomplete = _status_of(resp.stop_reason)
    resp_id = resp.id if resp.id.startswith("resp_") else _new_id("resp_")
    return _response_object(resp_id, req, resp.created or int(time.time()), status, output,
                            _usage_dict(resp.usage), incomplete=incomplete)


def _error_body(err: TiergateError) -> dict[str, Any]:
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and isinstance(body["error"].get("message"), str):
        e = body["error"]  # an OpenAI-shaped (or Anthropic) upstream error, passed through
        return {"error": {"message": e["message"], "type": e.get("type") or err.code,
                          "param": e.get("param"), "code": e.get("code")}}
    return {"error": {"message": err.message, "type": err.code, "param": None, "code": err.code}}


def render_error(err: TiergateError) -> tuple[int, dict]:
    return err.status, _error_body(err)


def _stream_error_code(err: TiergateError) -> str:
    # ResponseError.code is an enumeration: of its values only these two fit a proxy's failures.
    return "rate_limit_exceeded" if isinstance(err, (RateLimited, UpstreamRateLimited)) else "server_error"


class _Block:
    __slots__ = ("kind", "output_index", "item_id", "chunks", "call_id", "name", "signature", "summary_open")

    def __init__(self, kind: str, output_index: int, item_id: str, call_id: str | None = None,
                 name: str | None = None):
        self.kind = kind
        self.output_index = output_index
        self.item_id = item_id
        self.chunks: list[str] = []
        self.call_id = call_id
        self.name = name
        self.signature: str | None = None
        self.summary_open = False


class StreamEncoder:
    """Canonical events → Responses SSE frames, `sequence_number` on every event."""

    __slots__ = ("req", "id", "seq", "created", "started", "done", "items", "blocks", "usage")

    def __init__(self, req: ChatRequest, response_id: str):
        self.req = req
        self.id = response_id if response_id.startswith("resp_") else "resp_" + response_id
        self.seq = 0
        self.created = int(time.time())
        self.started = False
        self.done = False
        self.items: list[dict[str, Any]] = []  # output items by output_index (replaced by their done form)
        self.blocks: dict[int, _Block] = {}  # open canonical blocks by canonical index
        self.usage = Usage()

    def _frame(self, payload: dict[str, Any]) -> bytes:
        payload["sequence_number"] = self.seq
        self.seq += 1
        return sse(orjson.dumps(payload), payload["type"])

    def _start(self) -> bytes:
        self.started = True
        resp = _response_object(self.id, self.req, self.created, "in_progress", [], None)
        return (self._frame({"type": "response.created", "response": resp})
                + self._frame({"type": "response.in_progress", "response": resp}))

    def encode(self, ev: StreamEvent) -> bytes:
        if self.done:
            return b""
        out = b"" if self.started else self._start()
        t = type(ev)
        if t is TextDelta:
            if ev.text:  # type: ignore[union-attr]
                out += self._text(ev.index, ev.text)  # type: ignore[union-attr]
        elif t is ToolArgsDelta:
            if ev.partial_json:  # type: ignore[union-attr]
                out += self._args(ev.index, ev.partial_json)  # type: ignore[union-attr]
        elif t is ThinkingDelta:
            out += self._thinking(ev)  # type: ignore[arg-type]
        elif t is BlockStart:
            if ev.index not in self.blocks:  # type: ignore[union-attr]
                out += self._open(ev.index, ev.kind, ev.tool_call_id, ev.tool_name)  # type: ignore[union-attr]
        elif t is BlockStop:
            b = self.blocks.pop(ev.index, None)  # type: ignore[union-attr]
            if b is not None:
                out += self._close(b)
        elif t is MessageStart:
            self.usage.merge(ev.usage)  # type: ignore[union-attr]
        elif t is MessageEnd:
            out += self._end(ev)  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------------------------ blocks
    def _open(self, index: int, kind: str, call_id: str | None = None, name: str | None = None) -> bytes:
        out_index = len(self.items)
        if kind == "text":
            b = _Block("text", out_index, _new_id("msg_"))
            item: dict[str, Any] = {"id": b.item_id, "type": "message", "status": "in_progress", "content": [],
                                    "role": "assistant"}
            self.items.append(item)
            self.blocks[index] = b
            return (self._frame({"type": "response.output_item.added", "output_index": out_index, "item": item})
                    + self._frame({"type": "response.content_part.added", "item_id": b.item_id,
                                   "output_index": out_index, "content_index": 0, "part": _text_content("")}))
        if kind == "tool_call":
            b = _Block("tool_call", out_index, _new_id("fc_"), call_id or _new_id("call_"), name or "")
            item = {"id": b.item_id, "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": b.call_id, "name": b.name}
        else:
            b = _Block("thinking", out_index, _new_id("rs_"))
            item = {"id": b.item_id, "type": "reasoning", "summary": []}
        self.items.append(item)
        self.blocks[index] = b
        return self._frame({"type": "response.output_item.added", "output_index": out_index, "item": item})

    def _text(self, index: int, text: str) -> bytes:
        b = self.blocks.get(index)
        out = b""
        if b is None:
            out = self._open(index, "text")
            b = self.blocks[index]
        b.chunks.append(text)
        return out + self._frame({"type": "response.output_text.delta", "item_id": b.item_id,
                                  "output_index": b.output_index, "content_index": 0, "delta": text,
                                  "logprobs": []})

    def _args(self, index: int, partial: str) -> bytes:
        b = self.blocks.get(index)
        out = b""
        if b is None:
            out = self._open(index, "tool_call")
            b = self.blocks[index]
        b.chunks.append(partial)
        return out + self._frame({"type": "response.function_call_arguments.delta", "item_id": b.item_id,
                                  "output_index": b.output_index, "delta": partial})

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        b = self.blocks.get(ev.index)
        out = b""
        if b is None:
            out = self._open(ev.index, "thinking")
            b = self.blocks[ev.index]
        if ev.signature:
            b.signature = (b.signature or "") + ev.signature
        if not ev.text:
            return out
        if not b.summary_open:
            b.summary_open = True
            out += self._frame({"type": "response.reasoning_summary_part.added", "item_id": b.item_id,
                                "output_index": b.output_index, "summary_index": 0,
                                "part": {"type": "summary_text", "text": ""}})
        b.chunks.append(ev.text)
        return out + self._frame({"type": "response.reasoning_summary_text.delta", "item_id": b.item_id,
                                  "output_index": b.output_index, "summary_index": 0, "delta": ev.text})

    def _close(self, b: _Block, status: str = "completed") -> bytes:
        text = "".join(b.chunks)
        oi, iid = b.output_index, b.item_id
        if b.kind == "text":
            part = _text_content(text)
            item = {"id": iid, "type": "message", "status": status, "content": [part], "role": "assistant"}
            self.items[oi] = item
            if status != "completed":
                return b""
            return (self._frame({"type": "response.output_text.done", "item_id": iid, "output_index": oi,
                                 "content_index": 0, "text": text, "logprobs": []})
                    + self._frame({"type": "response.content_part.done", "item_id": iid, "output_index": oi,
                                   "content_index": 0, "part": part})
                    + self._frame({"type": "response.output_item.done", "output_index": oi, "item": item}))
        if b.kind == "tool_call":
            item = {"id": iid, "type": "function_call", "status": status, "arguments": text,
                    "call_id": b.call_id, "name": b.name}
            self.items[oi] = item
            if status != "completed":
                return b""
            return (self._frame({"type": "response.function_call_arguments.done", "item_id": iid,
                                 "output_index": oi, "arguments": text})
                    + self._frame({"type": "response.output_item.done", "output_index": oi, "item": item}))
        item = _reasoning_item(iid, text, b.signature, None)
        self.items[oi] = item
        if status != "completed":
            return b""
        out = b""
        if b.summary_open:
            summary = {"type": "summary_text", "text": text}
            out = (self._frame({"type": "response.reasoning_summary_text.done", "item_id": iid, "output_index": oi,
                                "summary_index": 0, "text": text})
                   + self._frame({"type": "response.reasoning_summary_part.done", "item_id": iid,
                                  "output_index": oi, "summary_index": 0, "part": summary}))
        return out + self._frame({"type": "response.output_item.done", "output_index": oi, "item": item})

    def _close_all(self, status: str = "completed") -> bytes:
        out = b""
        for index in sorted(self.blocks):
            out += self._close(self.blocks[index], status)
        self.blocks.clear()
        return out

    def _end(self, ev: MessageEnd) -> bytes:
        out = self._close_all()
        self.usage.merge(ev.usage)
        self.done = True
        status, incomplete = _status_of(ev.stop_reason)
        resp = _response_object(self.id, self.req, self.created, status, self.items, _usage_dict(self.usage),
                                incomplete=incomplete)
        return out + self._frame({"type": "response.completed", "response": resp})

    # ------------------------------------------------------------------------------ end of stream
    def error(self, err: TiergateError) -> bytes:
        if self.done:
            return b""
        self.done = True
        code = _stream_error_code(err)
        if not self.started:
            return self._frame({"type": "error", "code": code, "message": err.message, "param": None})
        self._close_all("incomplete")
        resp = _response_object(self.id, self.req, self.created, "failed", self.items, _usage_dict(self.usage),
                                error={"code": code, "message": err.message})
        return self._frame({"type": "response.failed", "response": resp})

    def finish(self) -> bytes:
        return b""  # Responses streams end after response.completed; there is no [DONE] line


# =========================================================================================== outbound
def build_request(req: ChatRequest, deployment: Deployment, *, stream: bool) -> dict:
    body: dict[str, Any] = {"model": deployment.model}
    if req.system:
        body["instructions"] = "\n\n".join(p.text for p in req.system)
    body["input"] = _input_items(req.messages)
    if req.tools:
        body["tools"] = [{"type": "function", "name": t.name, "description": t.description or "",
                          "parameters": t.parameters, "strict": False} for t in req.tools]
        choice = req.tool_choice
        if choice is not None:
            body["tool_choice"] = {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
            if choice.parallel is not None:
                body["parallel_tool_calls"] = choice.parallel
    limit = deployment.max_output_tokens
    max_tokens = req.max_tokens
    if limit and (max_tokens is None or max_tokens > limit):
        max_tokens = limit
    if max_tokens is not None:
        body["max_output_tokens"] = max(max_tokens, _MIN_OUTPUT_TOKENS)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    fmt = req.response_format
    if fmt and fmt.get("type") == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    elif fmt and fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        spec = fmt["json_schema"]
        body["text"] = {"format": {"type": "json_schema", "name": spec.get("name") or "response",
                                   "schema": spec.get("schema") or {},
                                   **{k: spec[k] for k in ("description", "strict") if spec.get(k) is not None}}}
    effort = req.reasoning_effort or effort_from_thinking(req.thinking)
    if effort:
        body["reasoning"] = {"effort": effort}
    if req.user:
        body["user"] = req.user
    body["stream"] = stream
    body["store"] = False
    return body


def _input_items(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        content: list[dict[str, Any]] = []  # the current run of message content

        def flush() -> None:
            if content:
                items.append({"type": "message", "role": m.role, "content": content.copy()})
                content.clear()

        for p in m.parts:
            t = type(p)
            if t is TextPart:
                if p.text:  # type: ignore[union-attr]
                    content.append({"type": "output_text" if m.role == "assistant" else "input_text",
                                    "text": p.text})  # type: ignore[union-attr]
            elif t is ToolCallPart:
                flush()
                items.append({"type": "function_call", "call_id": p.id, "name": p.name,  # type: ignore[union-attr]
                              "arguments": p.arguments})  # type: ignore[union-attr]
            elif t is ToolResultPart:
                flush()
                items.append({"type": "function_call_output", "call_id": p.tool_call_id,  # type: ignore[union-attr]
                              "output": _tool_output(p)})  # type: ignore[arg-type]
            elif t is ImagePart:
                content.append(_image_item(p))  # type: ignore[arg-type]
            elif t is DocumentPart:
                content.append(_document_item(p))  # type: ignore[arg-type]
            # ThinkingPart: dropped (OpenAI only accepts its own reasoning items back)
        flush()
    return items


def _image_url(p: ImagePart) -> str:
    if p.data is not None:
        return f"data:{p.media_type or 'image/png'};base64,{p.data}"
    return p.url or ""


def _image_item(p: ImagePart) -> dict[str, Any]:
    return {"type": "input_image", "image_url": _image_url(p), "detail": p.detail or "auto"}


def _document_item(p: DocumentPart) -> dict[str, Any]:
    src = p.raw.get("source") if isinstance(p.raw.get("source"), dict) else {}
    kind = src.get("type")
    if kind == "base64" and isinstance(src.get("data"), str):
        return {"type": "input_file", "filename": p.raw.get("title") or "document.pdf",
                "file_data": f"data:{src.get('media_type') or 'application/pdf'};base64,{src['data']}"}
    if kind == "url" and isinstance(src.get("url"), str):
        return {"type": "input_file", "file_url": src["url"]}
    if kind == "text" and isinstance(src.get("data"), str):
        return {"type": "input_text", "text": src["data"]}
    return {"type": "input_text", "text": "[A document was omitted: its format cannot be sent to this model.]"}


def _tool_output(p: ToolResultPart) -> str | list[dict[str, Any]]:
    if all(type(c) is TextPart for c in p.content):
        text = "".join(c.text for c in p.content)  # type: ignore[union-attr]
        return f"Error: {text}" if p.is_error else text
    out: list[dict[str, Any]] = []
    for c in p.content:
        out.append({"type": "input_text", "text": c.text} if type(c) is TextPart else _image_item(c))  # type: ignore
    return out


def _usage_from(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("input_tokens_details") or {}
    out_details = usage.get("output_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    return Usage(input_tokens=max((usage.get("input_tokens") or 0) - cached - written, 0),
                 output_tokens=usage.get("output_tokens") or 0, cache_read_tokens=cached,
                 cache_write_tokens=written, reasoning_tokens=out_details.get("reasoning_tokens") or 0)


def _stop_of(resp: dict[str, Any], has_tool_call: bool) -> StopReason:
    if resp.get("status") == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        return StopReason.CONTENT_FILTER if reason == "content_filter" else StopReason.MAX_TOKENS
    return StopReason.TOOL_USE if has_tool_call else StopReason.END_TURN


def _failure(error: Any, fallback: str) -> UpstreamError:
    """A failed response or an `error` event as the typed upstream error."""
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    message = error.get("message") if isinstance(error.get("message"), str) else fallback
    text = f"OpenAI Responses upstream failed: {message}"
    if code in ("rate_limit_exceeded", "insufficient_quota"):
        return UpstreamRateLimited(text, upstream_status=429, body={"error": error})
    if code in ("server_error", None) or code == "vector_store_timeout":
        return UpstreamServerError(text, body={"error": error})
    return UpstreamClientError(text, upstream_status=400, body={"error": error})


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict) or not isinstance(body.get("output"), list):
        raise UpstreamBadResponse("OpenAI Responses upstream sent a body without an output list")
    if body.get("status") == "failed":
        raise _failure(body.get("error"), "the response failed")
    parts: list[Part] = []
    has_tool = False
    for item in body["output"]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for c in item.get("content") or ():
                if c.get("type") == "output_text":
                    parts.append(TextPart(c.get("text") or ""))
                elif c.get("type") == "refusal":
                    parts.append(TextPart(c.get("refusal") or ""))
        elif kind == "function_call":
            has_tool = True
            parts.append(ToolCallPart(item["call_id"], item["name"], item.get("arguments") or ""))
        elif kind == "reasoning":
            text = _reasoning_text(item)
            if text:
                parts.append(ThinkingPart(text))
    return ChatResponse(id=body.get("id") or _new_id("resp_"), model=body.get("model") or "", parts=parts,
                        stop_reason=_stop_of(body, has_tool), usage=_usage_from(body.get("usage")),
                        created=int(body.get("created_at") or 0))


def _reasoning_text(item: dict[str, Any]) -> str:
    summary = [s.get("text") or "" for s in item.get("summary") or () if isinstance(s, dict)]
    if summary:
        return "\n\n".join(summary)
    return "".join(c.get("text") or "" for c in item.get("content") or () if isinstance(c, dict))


def parse_error(status: int, body: bytes) -> UpstreamError:
    parsed: Any = None
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        pass
    err = parsed.get("error") if isinstance(parsed, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    text = f"OpenAI Responses upstream answered {status}" + (f": {message}" if isinstance(message, str) else "")
    if status == 429:
        return UpstreamRateLimited(text, upstream_status=status, body=parsed)
    if status >= 500:
        return UpstreamServerError(text, upstream_status=status, body=parsed)
    return UpstreamClientError(text, upstream_status=status, body=parsed)


class StreamDecoder:
    """Responses SSE → canonical events. Text parts, function calls and reasoning items each become one
    canonical block; usage and the stop reason come from `response.completed` (or `.incomplete`)."""

    __slots__ = ("parser", "started", "ended", "next_index", "open", "args_seen", "has_tool", "summary_index")

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open: dict[tuple[int, int], int] = {}  # (output_index, content_index) -> canonical index
        self.args_seen: dict[int, bool] = {}  # canonical index of a function call -> arguments streamed
        self.has_tool = False
        self.summary_index: dict[int, int] = {}  # canonical index of a thinking block -> last summary_index

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self.parser.feed(chunk):
            self._event(ev.data, out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self.parser.close():
            self._event(ev.data, out)
        if not self.ended:
            raise UpstreamBadResponse("OpenAI Responses upstream ended the stream before response.completed")
        return out

    def _block(self, key: tuple[int, int], kind: str, out: list[StreamEvent], call_id: str | None = None,
               name: str | None = None) -> int:
        index = self.open.get(key)
        if index is None:
            index = self.open[key] = self.next_index
            self.next_index += 1
            out.append(BlockStart(index, kind, call_id, name))  # type: ignore[arg-type]
        return index

    def _stop(self, key: tuple[int, int], out: list[StreamEvent]) -> None:
        index = self.open.pop(key, None)
        if index is not None:
            out.append(BlockStop(index))

    def _event(self, data: bytes, out: list[StreamEvent]) -> None:
        if self.ended or data == b"[DONE]":
            return
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise UpstreamBadResponse("OpenAI Responses upstream sent an event that is not JSON") from e
        if not isinstance(ev, dict):
            raise UpstreamBadResponse("OpenAI Responses upstream sent an event that is not an object")
        t = ev.get("type")
        if t == "error":
            raise _failure(ev, "error event in the stream")
        if t == "response.failed":
            raise _failure((ev.get("response") or {}).get("error"), "the response failed")
        if not self.started:
            self.started = True
            resp = ev.get("response") if isinstance(ev.get("response"), dict) else {}
            out.append(MessageStart(id=resp.get("id") or _new_id("resp_"), model=resp.get("model") or ""))
        oi = ev.get("output_index", 0)
        if t == "response.output_text.delta" or t == "response.refusal.delta":
            if ev.get("delta"):
                out.append(TextDelta(self._block((oi, ev.get("content_index", 0)), "text", out), ev["delta"]))
        elif t == "response.content_part.added":
            if (ev.get("part") or {}).get("type") in ("output_text", "refusal"):
                self._block((oi, ev.get("content_index", 0)), "text", out)
        elif t == "response.content_part.done":
            self._stop((oi, ev.get("content_index", 0)), out)
        elif t == "response.output_item.added":
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                self.has_tool = True
                index = self._block((oi, -1), "tool_call", out, item.get("call_id"), item.get("name"))
                self.args_seen[index] = False
        elif t == "response.function_call_arguments.delta":
            index = self.open.get((oi, -1))
            if index is not None and ev.get("delta"):
                self.args_seen[index] = True
                out.append(ToolArgsDelta(index, ev["delta"]))
        elif t == "response.reasoning_summary_text.delta" or t == "response.reasoning_text.delta":
            if ev.get("delta"):
                index = self._block((oi, -2), "thinking", out)
                part = ev.get("summary_index", ev.get("content_index", 0))
                last = self.summary_index.get(index)
                if last is not None and last != part:
                    out.append(ThinkingDelta(index, "\n\n"))
                self.summary_index[index] = part
                out.append(ThinkingDelta(index, ev["delta"]))
        elif t == "response.output_item.done":
            item = ev.get("item") or {}
            kind = item.get("type")
            if kind == "function_call":
                index = self.open.get((oi, -1))
                if index is not None and not self.args_seen.get(index) and item.get("arguments"):
                    out.append(ToolArgsDelta(index, item["arguments"]))
                self._stop((oi, -1), out)
            elif kind == "reasoning":
                if _is_own_reasoning(item):  # another Tiergate upstream: keep the thinking signature
                    part = _unseal(item)
                    if part is not None and part.signature:
                        out.append(ThinkingDelta(self._block((oi, -2), "thinking", out), "", part.signature))
                self._stop((oi, -2), out)
            elif kind == "message":
                for key in [k for k in self.open if k[0] == oi]:
                    self._stop(key, out)
        elif t == "response.completed" or t == "response.incomplete":
            for key in sorted(self.open, key=self.open.__getitem__):
                out.append(BlockStop(self.open[key]))
            self.open.clear()
            resp = ev.get("response") if isinstance(ev.get("response"), dict) else {}
            self.ended = True
            out.append(MessageEnd(_stop_of(resp, self.has_tool), _usage_from(resp.get("usage"))))
