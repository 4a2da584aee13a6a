"""Ollama's native chat API (POST /api/chat, NDJSON streams) and /api/embed, both directions.

Formats follow Ollama's docs/api.md and the official `ollama` Python client's types (`ollama._types`:
ChatRequest, Message with `thinking` / `images` / `tool_calls` / `tool_name`, ChatResponse, EmbedRequest,
EmbedResponse). Newer Ollama versions also carry an `id` on tool calls and accept `tool_call_id` on tool
messages; older ones ignore both (Go's JSON decoder skips unknown fields), so they are always sent.

Outbound choices:
- `options.num_ctx` is always set from `deployment.context_length` when known (Ollama's default context is
  small and silently truncates tool definitions), `keep_alive` from the deployment; a client cannot set either.
- Tool-call arguments are JSON text canonically and objects in Ollama; text that is not a JSON object is
  sent as `{}` (logged without its content).
- Images must be inline base64: an http(s) image URL cannot be given to Ollama and is replaced by a text note.
- Ollama has no `tool_choice`: "none" leaves the tools out, the other modes send them as they are.
- `think`: reasoning effort "none"/"minimal" or Anthropic `thinking: disabled` → false, any other effort or
  `thinking: enabled` → true; gpt-oss models take a level ("low" | "medium" | "high") instead.
- Tool calls arrive whole in one chunk without an id (older Ollama): ids "call_<random>" are made up.
"""

from __future__ import annotations

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
    EmbeddingRequest,
    EmbeddingResponse,
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
from app.dialects.openai_chat import document_text
from app.errors import (
    BadRequest,
    TiergateError,
    UpstreamBadResponse,
    UpstreamClientError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
)

log = logging.getLogger(__name__)

_IMAGE_NOTE = "[An image was attached here but could not be passed to this local model.]"
_LEVELS = ("low", "medium", "high")


def _call_id() -> str:
    return "call_" + os.urandom(12).hex()


# =========================================================================================== outbound
def build_request(req: ChatRequest, deployment: Deployment, *, stream: bool) -> dict:
    body: dict[str, Any] = {"model": deployment.model, "messages": _messages(req), "stream": stream}
    if req.tools and not (req.tool_choice is not None and req.tool_choice.mode == "none"):
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                           "parameters": t.parameters}} for t in req.tools]
    fmt = req.response_format
    if fmt:
        if fmt.get("type") == "json_object":
            body["format"] = "json"
        elif fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            body["format"] = schema if isinstance(schema, dict) else "json"
    options: dict[str, Any] = {}
    if deployment.context_length:
        options["num_ctx"] = deployment.context_length
    if req.temperature is not None:
        options["temperature"] = req.temperature
    if req.top_p is not None:
        options["top_p"] = req.top_p
    if req.seed is not None:
        options["seed"] = req.seed
    if req.stop:
        options["stop"] = req.stop
    limit = deployment.max_output_tokens
    max_tokens = req.max_tokens
    if limit and (max_tokens is None or max_tokens > limit):
        max_tokens = limit
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if options:
        body["options"] = options
    if deployment.keep_alive is not None:
        body["keep_alive"] = deployment.keep_alive
    think = _think(req, deployment.model)
    if think is not None:
        body["think"] = think
    return body


def _think(req: ChatRequest, model: str) -> bool | str | None:
    effort = req.reasoning_effort
    if effort is None and req.thinking:
        kind = req.thinking.get("type")
        if kind == "disabled":
            return False
        if kind in ("enabled", "adaptive"):
            effort = "medium"
    if effort is None:
        return None
    if "gpt-oss" in model.lower():  # takes a level; true/false are ignored by gpt-oss
        return effort if effort in _LEVELS else "low" if effort in ("none", "minimal") else "high"
    return effort not in ("none", "minimal")


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": "\n\n".join(p.text for p in req.system)})
    names: dict[str, str] = {}  # tool call id -> tool name, for `tool_name` on results
    for m in req.messages:
        if m.role == "assistant":
            out.append(_assistant(m, names))
            continue
        texts: list[str] = []
        images: list[str] = []

        def flush() -> None:
            if texts or images:
                msg: dict[str, Any] = {"role": "user", "content": "\n\n".join(texts)}
                if images:
                    msg["images"] = images.copy()
                out.append(msg)
                texts.clear()
                images.clear()

        for p in m.parts:
            t = type(p)
            if t is TextPart:
                texts.append(p.text)  # type: ignore[union-attr]
            elif t is ImagePart:
                data = _image_data(p)  # type: ignore[arg-type]
                if data is None:
                    texts.append(_IMAGE_NOTE)
                else:
                    images.append(data)
            elif t is ToolResultPart:
                flush()
                out.append(_tool_result(p, names))  # type: ignore[arg-type]
            elif t is DocumentPart:
                texts.append(document_text(p))  # type: ignore[arg-type]
        flush()
    return out


def _assistant(m: Message, names: dict[str, str]) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for p in m.parts:
        t = type(p)
        if t is TextPart:
            texts.append(p.text)  # type: ignore[union-attr]
        elif t is ToolCallPart:
            names[p.id] = p.name  # type: ignore[union-attr]
            calls.append({"id": p.id, "function": {"index": len(calls), "name": p.name,  # type: ignore[union-attr]
                                                    "arguments": _arguments_object(p.arguments)}})  # type: ignore
        elif t is ThinkingPart and p.text:  # type: ignore[union-attr]
            thinking.append(p.text)  # type: ignore[union-attr]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if thinking:
        msg["thinking"] = "".join(thinking)
    if calls:
        msg["tool_calls"] = calls
    return msg


def _arguments_object(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    log.warning("tool-call arguments are not a JSON object (%d chars); sending {} to Ollama", len(arguments))
    return {}


def _tool_result(p: ToolResultPart, names: dict[str, str]) -> dict[str, Any]:
    texts = []
    images = []
    for c in p.content:
        if type(c) is TextPart:
            texts.append(c.text)
        else:
            data = _image_data(c)  # type: ignore[arg-type]
            if data is None:
                texts.append(_IMAGE_NOTE)
            else:
                images.append(data)
    content = "\n".join(texts)
    msg: dict[str, Any] = {"role": "tool", "content": f"Error: {content}" if p.is_error else content}
    name = p.name or names.get(p.tool_call_id)
    if name:
        msg["tool_name"] = name
    msg["tool_call_id"] = p.tool_call_id
    if images:
        msg["images"] = images
    return msg


def _image_data(p: ImagePart) -> str | None:
    """The base64 payload Ollama takes, or None when the image is only a remote URL."""
    if p.data is not None:
        return p.data
    url = p.url or ""
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if sep and head.endswith(";base64"):
            return data
    return None


# --------------------------------------------------------------------------------------- responses
def _usage(line: dict[str, Any]) -> Usage:
    return Usage(input_tokens=line.get("prompt_eval_count") or 0, output_tokens=line.get("eval_count") or 0)


def _stop(done_reason: Any, has_tool: bool) -> StopReason:
    if done_reason == "length":
        return StopReason.MAX_TOKENS
    return StopReason.TOOL_USE if has_tool else StopReason.END_TURN


def _tool_calls(message: dict[str, Any]) -> list[ToolCallPart]:
    out = []
    for tc in message.get("tool_calls") or ():
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise UpstreamBadResponse("Ollama sent a tool call without a function name")
        args = fn.get("arguments")
        text = args if isinstance(args, str) else orjson.dumps(args if args is not None else {}).decode()
        out.append(ToolCallPart(tc.get("id") or _call_id(), fn["name"], text))
    return out


def _in_stream_error(message: Any, status: int | None = None) -> UpstreamError:
    text = message if isinstance(message, str) else "unknown error"
    full = f"Ollama: {text}"
    if status == 429:
        return UpstreamRateLimited(full, upstream_status=429, body={"error": text})
    if status == 404 or (status is None and "not found" in text):
        return UpstreamClientError(full, upstream_status=404, body={"error": text})
    if status is not None and 400 <= status < 500:
        return UpstreamClientError(full, upstream_status=status, body={"error": text})
    return UpstreamServerError(full, upstream_status=status, body={"error": text})


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict):
        raise UpstreamBadResponse("Ollama sent a body that is not an object")
    if "error" in body:
        raise _in_stream_error(body["error"])
    message = body.get("message")
    if not isinstance(message, dict):
        raise UpstreamBadResponse("Ollama sent a chat response without a message")
    parts: list[Part] = []
    if message.get("thinking"):
        parts.append(ThinkingPart(message["thinking"]))
    if message.get("content"):
        parts.append(TextPart(message["content"]))
    calls = _tool_calls(message)
    parts.extend(calls)
    return ChatResponse(id="chatcmpl-" + os.urandom(12).hex(), model=body.get("model") or "", parts=parts,
                        stop_reason=_stop(body.get("done_reason"), bool(calls)), usage=_usage(body),
                        created=int(time.time()))


def parse_error(status: int, body: bytes) -> UpstreamError:
    message: Any = None
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        message = parsed.get("error")
        if isinstance(message, dict):  # the OpenAI-compatible endpoints' shape, in case of a proxy
            message = message.get("message")
    if not isinstance(message, str):
        message = f"HTTP {status}"
    return _in_stream_error(message, status)


class StreamDecoder:
    """Ollama NDJSON lines (any chunking) → canonical events. Thinking and content each open a block when
    they start; tool calls arrive whole and become one block each."""

    __slots__ = ("buf", "started", "ended", "next_index", "open_index", "open_kind", "has_tool")

    def __init__(self) -> None:
        self.buf = b""
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open_index = -1
        self.open_kind = ""
        self.has_tool = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if b"\n" not in chunk:
            self.buf += chunk
            return []
        lines = (self.buf + chunk).split(b"\n")
        self.buf = lines.pop()
        out: list[StreamEvent] = []
        for line in lines:
            if line.strip():
                self._line(line, out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        rest, self.buf = self.buf, b""
        if rest.strip():
            self._line(rest, out)
        if not self.ended:
            raise UpstreamBadResponse("Ollama ended the stream before its final (done) line")
        return out

    def _switch(self, kind: str, out: list[StreamEvent]) -> int:
        """Make `kind` the open block (closing another); "" just closes the open one."""
        if self.open_kind != kind:
            if self.open_kind:
                out.append(BlockStop(self.open_index))
            self.open_kind = kind
            if kind:
                self.open_index = self.next_index
                self.next_index += 1
                out.append(BlockStart(self.open_index, kind))  # type: ignore[arg-type]
        return self.open_index

    def _line(self, line: bytes, out: list[StreamEvent]) -> None:
        if self.ended:
            return
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise UpstreamBadResponse("Ollama sent a stream line that is not JSON") from e
        if not isinstance(data, dict):
            raise UpstreamBadResponse("Ollama sent a stream line that is not an object")
        if "error" in data:
            raise _in_stream_error(data["error"])
        if not self.started:
            self.started = True
            out.append(MessageStart(id="chatcmpl-" + os.urandom(12).hex(), model=data.get("model") or ""))
        message = data.get("message")
        if isinstance(message, dict):
            if message.get("thinking"):
                out.append(ThinkingDelta(self._switch("thinking", out), message["thinking"]))
            if message.get("content"):
                out.append(TextDelta(self._switch("text", out), message["content"]))
            if message.get("tool_calls"):
                self._switch("", out)
                for call in _tool_calls(message):
                    self.has_tool = True
                    index = self.next_index
                    self.next_index += 1
                    out.append(BlockStart(index, "tool_call", call.id, call.name))
                    out.append(ToolArgsDelta(index, call.arguments))
                    out.append(BlockStop(index))
        if data.get("done"):
            self._switch("", out)
            self.ended = True
            out.append(MessageEnd(_stop(data.get("done_reason"), self.has_tool), _usage(data)))


# ========================================================================================= embeddings
def build_embed_request(req: EmbeddingRequest, deployment: Deployment) -> dict:
    """POST /api/embed body. Ollama embeds text only: token-id inputs are refused."""
    if any(not isinstance(item, str) for item in req.input):
        raise BadRequest("input: Ollama embeds text; token arrays are not supported for this model")
    body: dict[str, Any] = {"model": deployment.model, "input": list(req.input)}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    if deployment.context_length:
        body["options"] = {"num_ctx": deployment.context_length}
    if deployment.keep_alive is not None:
        body["keep_alive"] = deployment.keep_alive
    return body


def parse_embed_response(body: Any) -> EmbeddingResponse:
    if isinstance(body, dict) and "error" in body:
        raise _in_stream_error(body["error"])
    vectors = body.get("embeddings") if isinstance(body, dict) else None
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise UpstreamBadResponse("Ollama sent an embed response without an embeddings list")
    return EmbeddingResponse(model=body.get("model") or "", vectors=vectors,
                             usage=Usage(input_tokens=body.get("prompt_eval_count") or 0))


# ============================================================================================ inbound
_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _media_type(data: str) -> str:
    for prefix, media in _MAGIC:
        if data.startswith(prefix):
            return media
    return "image/png"


def parse_request(body: dict, headers: Mapping[str, str]) -> ChatRequest:
    """A client speaking Ollama's /api/chat to Tiergate. `keep_alive` is ignored (the deployment decides)."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: expected a non-empty string")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise BadRequest("messages: expected a list")
    system: list[TextPart] = []
    messages: list[Message] = []
    pending: dict[str, list[str]] = {}  # tool name -> ids of calls not answered yet
    for i, m in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BadRequest(f"{where}: expected an object")
        role = m.get("role")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise BadRequest(f"{where}.content: expected a string")
        images = m.get("images") or []
        if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
            raise BadRequest(f"{where}.images: expected a list of base64 strings")
        if role == "system":
            if content:
                system.append(TextPart(content))
            continue
        parts: list[Part] = []
        if role == "assistant":
            if isinstance(m.get("thinking"), str) and m["thinking"]:
                parts.append(ThinkingPart(m["thinking"]))
            if content:
                parts.append(TextPart(content))
            for call in _tool_calls(m) if m.get("tool_calls") else ():
                pending.setdefault(call.name, []).append(call.id)
                parts.append(call)
        elif role == "user":
            if content:
                parts.append(TextPart(content))
            parts.extend(ImagePart(media_type=_media_type(x), data=x) for x in images)
        elif role == "tool":
            name = m.get("tool_name") if isinstance(m.get("tool_name"), str) else None
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                waiting = pending.get(name or "") or next((v for v in pending.values() if v), [])
                call_id = waiting.pop(0) if waiting else _call_id()
            result: list[TextPart | ImagePart] = [TextPart(content)]
            result.extend(ImagePart(media_type=_media_type(x), data=x) for x in images)
            parts.append(ToolResultPart(call_id, result, name=name))
            role = "user"
        else:
            raise BadRequest(f"{where}.role: expected system, user, assistant or tool")
        if messages and messages[-1].role == role:
            messages[-1].parts.extend(parts)
        elif parts:
            messages.append(Message(role, parts))  # type: ignore[arg-type]
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options: expected an object")
    stop = options.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    fmt = body.get("format")
    response_format = None
    if fmt == "json":
        response_format = {"type": "json_object"}
    elif isinstance(fmt, dict):
        response_format = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    think = body.get("think")
    effort = think if isinstance(think, str) else "medium" if think is True else "none" if think is False else None
    stream = body.get("stream", True)  # Ollama streams unless told not to
    return ChatRequest(
        model=model, messages=messages, system=system, tools=_inbound_tools(body.get("tools")),
        tool_choice=ToolChoice("auto") if body.get("tools") else None,
        max_tokens=_opt_number(options, "num_predict", int), temperature=_opt_number(options, "temperature"),
        top_p=_opt_number(options, "top_p"), seed=_opt_number(options, "seed", int), stop=list(stop),
        response_format=response_format, reasoning_effort=effort, stream=stream is not False,
        include_usage=True, dialect=Dialect.OLLAMA, raw=body,
    )


def _opt_number(options: dict, key: str, kind: type = float) -> Any:
    v = options.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise BadRequest(f"options.{key}: expected a number")
    if kind is int and v < 0:  # num_predict -1 / -2: unlimited / fill the context
        return None
    return v


def _inbound_tools(value: Any) -> list[ToolSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools: expected a list")
    out = []
    for i, t in enumerate(value):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"tools[{i}].function.name: expected a string")
        params = fn.get("parameters")
        out.append(ToolSpec(fn["name"], fn.get("description") if isinstance(fn.get("description"), str) else None,
                            params if isinstance(params, dict) else {"type": "object", "properties": {}}))
    return out


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _done_reason(stop: StopReason) -> str:
    return "length" if stop is StopReason.MAX_TOKENS else "stop"


def _final_fields(stop: StopReason, usage: Usage) -> dict[str, Any]:
    return {"done": True, "done_reason": _done_reason(stop), "total_duration": 0, "load_duration": 0,
            "prompt_eval_count": usage.prompt_tokens, "prompt_eval_duration": 0,
            "eval_count": usage.output_tokens, "eval_duration": 0}


def _out_call(call_id: str, index: int, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "function": {"index": index, "name": name, "arguments": _arguments_object(arguments)}}


def render_response(resp: ChatResponse, req: ChatRequest) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    texts, thinking, calls = [], [], []
    for p in resp.parts:
        t = type(p)
        if t is TextPart:
            texts.append(p.text)  # type: ignore[union-attr]
        elif t is ThinkingPart:
            thinking.append(p.text)  # type: ignore[union-attr]
        elif t is ToolCallPart:
            calls.append(_out_call(p.id, len(calls), p.name, p.arguments))  # type: ignore[union-attr]
    message["content"] = "".join(texts)
    if thinking:
        message["thinking"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return {"model": req.model, "created_at": _now_iso(), "message": message,
            **_final_fields(resp.stop_reason, resp.usage)}


def render_error(err: TiergateError) -> tuple[int, dict]:
    return err.status, {"error": err.message}


class StreamEncoder:
    """Canonical events → Ollama NDJSON lines. Tool calls are sent whole when their block stops."""

    __slots__ = ("req", "usage", "calls", "ncalls", "done")

    def __init__(self, req: ChatRequest, response_id: str):
        self.req = req
        self.usage = Usage()
        self.calls: dict[int, list] = {}  # canonical index -> [id, name, argument chunks]
        self.ncalls = 0
        self.done = False

    def _line(self, message: dict[str, Any], **extra: Any) -> bytes:
        return orjson.dumps({"model": self.req.model, "created_at": _now_iso(), "message": message,
                             "done": False, **extra}) + b"\n"

    def encode(self, ev: StreamEvent) -> bytes:
        if self.done:
            return b""
        t = type(ev)
        if t is TextDelta:
            return self._line({"role": "assistant", "content": ev.text}) if ev.text else b""  # type: ignore
        if t is ThinkingDelta:
            if not ev.text:  # type: ignore[union-attr]
                return b""
            return self._line({"role": "assistant", "content": "", "thinking": ev.text})  # type: ignore
        if t is BlockStart:
            if ev.kind == "tool_call":  # type: ignore[union-attr]
                self.calls[ev.index] = [ev.tool_call_id or _call_id(), ev.tool_name or "", []]  # type: ignore
            return b""
        if t is ToolArgsDelta:
            call = self.calls.get(ev.index)  # type: ignore[union-attr]
            if call is not None:
                call[2].append(ev.partial_json)  # type: ignore[union-attr]
            return b""
        if t is BlockStop:
            call = self.calls.pop(ev.index, None)  # type: ignore[union-attr]
            if call is None:
                return b""
            self.ncalls += 1
            out = _out_call(call[0], self.ncalls - 1, call[1], "".join(call[2]))
            return self._line({"role": "assistant", "content": "", "tool_calls": [out]})
        if t is MessageStart:
            self.usage.merge(ev.usage)  # type: ignore[union-attr]
            return b""
        if t is MessageEnd:
            self.done = True
            self.usage.merge(ev.usage)  # type: ignore[union-attr]
            return orjson.dumps({"model": self.req.model, "created_at": _now_iso(),
                                 "message": {"role": "assistant", "content": ""},
                                 **_final_fields(ev.stop_reason, self.usage)}) + b"\n"  # type: ignore[union-attr]
        return b""

    def error(self, err: TiergateError) -> bytes:
        if self.done:
            return b""
        self.done = True
        return orjson.dumps({"error": err.message}) + b"\n"

    def finish(self) -> bytes:
        return b""
