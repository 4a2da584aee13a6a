"""OpenAI Chat Completions (POST /v1/chat/completions), both directions.

Wire shapes follow the official openai-python types: `chat.completion_create_params` (request),
`chat.ChatCompletion` / `chat.ChatCompletionChunk` / `CompletionUsage` (responses), and the SDK's stream
reader `openai._streaming.Stream` (a `data: {"error": ...}` frame is an error; `data: [DONE]` ends).

Choices made where the API leaves room:
- In-stream errors (`StreamEncoder.error`) are one `data: {"error": {...}}` frame and NO `[DONE]`: that is
  what OpenAI and LiteLLM send, the SDK raises `APIError` on it, and a client that only waits for `[DONE]`
  sees a truncated stream instead of a clean end.
- Thinking reaches OpenAI clients as `reasoning_content` (the DeepSeek/vLLM field); the SDK keeps unknown
  fields, other clients ignore them. Thinking signatures are not sent.
- A tool call that streamed no argument text gets "{}" so clients can always `json.loads` the arguments.
- Upstream tool calls streamed out of order (a fragment for a tool whose block was already stopped) are
  passed on with that tool's block index rather than dropped.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

import orjson

try:  # optional: decodes stream chunks without building the fields Tiergate never reads (StreamDecoder)
    import msgspec
except ImportError:  # pragma: no cover - then every chunk goes through orjson
    msgspec = None  # type: ignore[assignment]

from app.canonical import (
    BlockStart, BlockStop, ChatRequest, ChatResponse, Dialect, DocumentPart, ImagePart, Message, MessageEnd,
    MessageStart, Part, StopReason, StreamEvent, TextDelta, TextPart, ThinkingDelta, ThinkingPart, ToolArgsDelta,
    ToolCallPart, ToolChoice, ToolResultPart, ToolSpec, Usage,
)
from app.config.schema import Deployment
from app.dialects.sse import SSEParser
from app.errors import (
    BadRequest, TiergateError, UpstreamBadResponse, UpstreamClientError, UpstreamError, UpstreamRateLimited,
    UpstreamServerError, UpstreamTimeout,
)

FINISH_IN = {"stop": StopReason.END_TURN, "length": StopReason.MAX_TOKENS, "tool_calls": StopReason.TOOL_USE,
             "function_call": StopReason.TOOL_USE, "content_filter": StopReason.CONTENT_FILTER}
FINISH_OUT = {StopReason.END_TURN: "stop", StopReason.STOP_SEQUENCE: "stop", StopReason.PAUSE: "stop",
              StopReason.MAX_TOKENS: "length", StopReason.TOOL_USE: "tool_calls",
              StopReason.CONTENT_FILTER: "content_filter", StopReason.REFUSAL: "content_filter"}
# deployment.extra_params keys used as defaults when the request does not set them
DEFAULT_PARAMS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "top_k",
                  "min_p", "repetition_penalty", "logit_bias", "reasoning_effort")


# ============================================================================================ inbound
def parse_request(body: dict, headers: Mapping[str, str]) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required and must be a string")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty list")
    system: list[TextPart] = []
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        _message_in(m, i, system, messages)
    n = body.get("n")
    if n is not None and n != 1:
        raise BadRequest("n must be 1: Tiergate returns one choice")
    so = body.get("stream_options")
    mt = opt_int(body, "max_completion_tokens")
    req = ChatRequest(
        model=model, messages=messages, system=system,
        tools=_tools_in(body.get("tools")), tool_choice=_tool_choice_in(body),
        max_tokens=mt if mt is not None else opt_int(body, "max_tokens"),
        temperature=opt_num(body, "temperature"), top_p=opt_num(body, "top_p"),
        stop=_stop_in(body.get("stop")), seed=opt_int(body, "seed"),
        response_format=opt_dict(body, "response_format"),
        reasoning_effort=opt_str(body, "reasoning_effort"),
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(so, dict) and so.get("include_usage")),
        user=opt_str(body, "user"), dialect=Dialect.OPENAI_CHAT, raw=body,
    )
    return req


def _message_in(m: Any, i: int, system: list[TextPart], out: list[Message]) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise BadRequest(f"{where} must be an object")
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        system.extend(p for p in _content_in(content, where, texts_only=True) if isinstance(p, TextPart))
    elif role == "user":
        out.append(Message("user", _content_in(content, where)))
    elif role == "assistant":
        parts: list[Part] = [] if content is None else _content_in(content, where, texts_only=True)
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise BadRequest(f"{where}.tool_calls must be a list")
            for j, tc in enumerate(calls):
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest(f"{where}.tool_calls[{j}] must have function.name")
                args = fn.get("arguments")
                parts.append(ToolCallPart(str(tc.get("id") or ""), fn["name"],
                                          args if isinstance(args, str) else orjson.dumps(args or {}).decode()))
        out.append(Message("assistant", parts))
    elif role == "tool":
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str):
            raise BadRequest(f"{where}.tool_call_id must be a string")
        texts = [p for p in _content_in(content if content is not None else "", where, texts_only=True)
                 if isinstance(p, TextPart)]
        result = ToolResultPart(call_id, texts)  # type: ignore[arg-type]
        last = out[-1] if out else None
        if last is not None and last.role == "user" and last.parts and all(
                isinstance(p, ToolResultPart) for p in last.parts):
            last.parts.append(result)  # consecutive tool messages: one user turn
        else:
            out.append(Message("user", [result]))
    else:
        raise BadRequest(f"{where}.role must be one of system, developer, user, assistant, tool")


def _content_in(content: Any, where: str, *, texts_only: bool = False) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts")
    parts: list[Part] = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("text", "refusal", "input_text", "output_text"):
            text = p.get("text", p.get("refusal"))
            if not isinstance(text, str):
                raise BadRequest(f"{where}.content[{j}].text must be a string")
            parts.append(TextPart(text))
        elif kind == "image_url" and not texts_only:
            img = p.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            if not isinstance(url, str):
                raise BadRequest(f"{where}.content[{j}].image_url.url must be a string")
            parts.append(image_from_url(url, img.get("detail") if isinstance(img, dict) else None))
        elif kind == "file" and not texts_only:
            parts.append(_file_in(p.get("file"), f"{where}.content[{j}]"))
        else:
            raise BadRequest(f"{where}.content[{j}]: content part type {kind!r} is not supported here")
    return parts


def _file_in(f: Any, where: str) -> Part:
    """A `file` part with inline `file_data` (a data: URL) becomes an Anthropic-style document."""
    data = f.get("file_data") if isinstance(f, dict) else None
    if not isinstance(data, str):
        raise BadRequest(f"{where}: only file parts with inline file_data are supported")
    media, b64 = split_data_url(data)
    if b64 is None:
        media, b64 = "application/pdf", data
    doc: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media, "data": b64}}
    if isinstance(f.get("filename"), str):
        doc["title"] = f["filename"]
    return DocumentPart(doc)


def _tools_in(tools: Any) -> list[ToolSpec]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}")
        params = fn.get("parameters")
        out.append(ToolSpec(fn["name"], fn.get("description"),
                            params if isinstance(params, dict) else {"type": "object", "properties": {}}))
    return out


def _tool_choice_in(body: dict) -> ToolChoice | None:
    tc = body.get("tool_choice")
    par = body.get("parallel_tool_calls")
    if par is not None and not isinstance(par, bool):
        raise BadRequest("parallel_tool_calls must be a boolean")
    if tc is None:
        return ToolChoice("auto", parallel=par) if par is not None else None
    if tc in ("auto", "none", "required"):
        return ToolChoice(tc, parallel=par)
    if isinstance(tc, dict):
        fn = tc.get("function")
        if tc.get("type") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice("tool", fn["name"], parallel=par)
        if tc.get("type") == "allowed_tools":
            mode = (tc.get("allowed_tools") or {}).get("mode")
            return ToolChoice("required" if mode == "required" else "auto", parallel=par)
    raise BadRequest('tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}')


def _stop_in(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise BadRequest("stop must be a string or a list of strings")


def usage_dict(u: Usage) -> dict[str, Any]:
    """`CompletionUsage`: prompt_tokens counts cached tokens too (cached_tokens is the part read from cache)."""
    prompt = u.prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": u.output_tokens, "total_tokens": prompt + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def render_response(resp: ChatResponse, req: ChatRequest) -> dict:
    texts = [p.text for p in resp.parts if isinstance(p, TextPart)]
    calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments or "{}"}}
             for p in resp.parts if isinstance(p, ToolCallPart)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    thinking = "".join(p.text for p in resp.parts if isinstance(p, ThinkingPart))
    if thinking:
        message["reasoning_content"] = thinking
    return {"id": resp.id, "object": "chat.completion", "created": resp.created or int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH_OUT.get(resp.stop_reason, "stop")}],
            "usage": usage_dict(resp.usage)}


def error_type(err: TiergateError) -> str:
    """OpenAI's `error.type` for an error: invalid_request_error for 4xx, server_error for 5xx…"""
    s = err.status
    if s == 401:
        return "authentication_error"
    if s == 403:
        return "permission_error"
    if s == 429:
        return "rate_limit_error" if err.code != "budget_exceeded" else "insufficient_quota"
    if s >= 500:
        return "server_error"
    return "invalid_request_error"


def render_error(err: TiergateError) -> tuple[int, dict]:
    return err.status, {"error": {"message": err.message, "type": error_type(err), "param": None, "code": err.code}}


class StreamEncoder:
    """Canonical events -> `chat.completion.chunk` SSE frames (constant parts pre-serialised)."""

    __slots__ = ("_prefix", "_end", "_usage_head", "_include_usage", "_started", "_tools", "_args", "_closed")

    def __init__(self, req: ChatRequest, response_id: str):
        head = orjson.dumps({"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()),
                             "model": req.model})[:-1]
        self._prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._include_usage = req.include_usage
        # With include_usage every chunk carries "usage": null and a last one the figures (OpenAI's docs).
        self._end = b'}],"usage":null}\n\n' if req.include_usage else b"}]}\n\n"
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self._started = False
        self._tools: dict[int, int] = {}  # canonical block index -> tool_calls[].index
        self._args: set[int] = set()  # tool blocks that received argument text
        self._closed = False

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return self._prefix + delta + b',"logprobs":null,"finish_reason":' + finish + self._end

    def _start(self) -> bytes:
        self._started = True
        return self._chunk(b'{"role":"assistant","content":"","refusal":null}')

    def encode(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        head = b"" if self._started else self._start()
        if isinstance(event, TextDelta):
            return head + self._chunk(b'{"content":' + orjson.dumps(event.text) + b"}") if event.text else head
        if isinstance(event, ToolArgsDelta):
            n = self._tools.get(event.index)
            if n is None or not event.partial_json:
                return head
            self._args.add(event.index)
            return head + self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":' % n
                                      + orjson.dumps(event.partial_json) + b"}}]}")
        if isinstance(event, ThinkingDelta):
            return head + self._chunk(b'{"reasoning_content":' + orjson.dumps(event.text) + b"}") if event.text else head
        if isinstance(event, BlockStart):
            if event.kind != "tool_call":
                return head
            n = self._tools[event.index] = len(self._tools)
            return head + self._chunk(orjson.dumps({"tool_calls": [{
                "index": n, "id": event.tool_call_id, "type": "function",
                "function": {"name": event.tool_name, "arguments": ""}}]}))
        if isinstance(event, BlockStop):
            n = self._tools.get(event.index)
            if n is None or event.index in self._args:
                return head
            return head + self._chunk(b'{"tool_calls":[{"index":%d,"function":{"arguments":"{}"}}]}' % n)
        if isinstance(event, MessageEnd):
            out = head + self._chunk(b"{}", b'"' + FINISH_OUT.get(event.stop_reason, "stop").encode() + b'"')
            if self._include_usage:
                out += self._usage_head + orjson.dumps(usage_dict(event.usage)) + b"}\n\n"
            return out
        return head  # MessageStart: the role chunk above

    def error(self, err: TiergateError) -> bytes:
        self._closed = True
        return b"data: " + orjson.dumps(render_error(err)[1]) + b"\n\n"

    def finish(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        return b"data: [DONE]\n\n"


# =========================================================================================== outbound
def is_reasoning_model(model: str) -> bool:
    """OpenAI reasoning models (o1/o3/o4/gpt-5, not gpt-5-chat): `max_completion_tokens`, no temperature."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(("o1", "o3", "o4", "gpt-5")) and "-chat" not in name


_OPENAI_CHAT = Dialect.OPENAI_CHAT
_REASONING: dict[str, bool] = {}  # deployment model -> is_reasoning_model (a handful of configured models)


def build_request(req: ChatRequest, deployment: Deployment, *, stream: bool) -> dict:
    """max_tokens: the request's, else extra_params', else deployment.max_output_tokens, never above the
    latter. Reasoning models get `max_completion_tokens` and no temperature/top_p from the client."""
    extra = deployment.extra_params
    model = deployment.model
    reasoning = _REASONING.get(model)
    if reasoning is None:
        reasoning = is_reasoning_model(model)
        if len(_REASONING) < 1024:
            _REASONING[model] = reasoning
    out: dict[str, Any] = {"model": model, "messages": messages_out(req)}
    if req.tools:
        out["tools"] = [{"type": "function", "function": _fn_out(t)} for t in req.tools]
        tc = req.tool_choice
        if tc is not None:
            out["tool_choice"] = ({"type": "function", "function": {"name": tc.name}} if tc.mode == "tool"
                                  else tc.mode)
            if tc.parallel is not None:
                out["parallel_tool_calls"] = tc.parallel
    mt = req.max_tokens or extra.get("max_tokens") or extra.get("max_completion_tokens")
    if mt.__class__ is not int or mt <= 0 or deployment.max_output_tokens:
        mt = clamp_max_tokens(mt, deployment)
    if mt:
        out["max_completion_tokens" if reasoning else "max_tokens"] = mt
    if not reasoning:
        if req.temperature is not None:
            out["temperature"] = req.temperature
        if req.top_p is not None:
            out["top_p"] = req.top_p
    if req.stop:
        out["stop"] = req.stop
    if req.seed is not None:
        out["seed"] = req.seed
    if req.user:
        out["user"] = req.user
    if req.response_format:
        out["response_format"] = req.response_format
    effort = req.reasoning_effort or (effort_from_thinking(req.thinking) if reasoning else None)
    # An effort translated from another dialect (Claude Code always sends one) goes only to models known to
    # take it: OpenAI refuses `reasoning_effort` for gpt-4o and the like.
    if effort and (reasoning or req.dialect is _OPENAI_CHAT):
        out["reasoning_effort"] = effort
    if extra:
        for key in DEFAULT_PARAMS:
            if key not in out and key in extra:
                out[key] = extra[key]
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # the ledger needs usage; clients get it only if asked
    return out


def _fn_out(t: ToolSpec) -> dict[str, Any]:
    if t.description:
        return {"name": t.name, "description": t.description, "parameters": t.parameters}
    return {"name": t.name, "parameters": t.parameters}


def messages_out(req: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    append = out.append
    if req.system:
        append({"role": "system", "content": "\n\n".join([p.text for p in req.system])})
    for m in req.messages:
        parts = m.parts
        if m.role == "assistant":
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            for p in parts:
                if isinstance(p, TextPart):
                    texts.append(p.text)
                elif isinstance(p, ToolCallPart):
                    calls.append({"id": p.id, "type": "function",
                                  "function": {"name": p.name, "arguments": p.arguments or "{}"}})
            text = "".join(texts)
            if calls:
                append({"role": "assistant", "content": text or None, "tool_calls": calls})
            else:
                append({"role": "assistant", "content": text})
            continue
        if len(parts) == 1 and parts[0].__class__ is TextPart:  # the common user turn: one text
            append({"role": "user", "content": parts[0].text})
            continue
        rest: list[Part] = []
        for p in parts:
            if isinstance(p, ToolResultPart):
                content = p.content
                if len(content) == 1 and content[0].__class__ is TextPart:  # the common result: one text
                    text = content[0].text
                else:
                    text = "".join([x.text for x in content if isinstance(x, TextPart)])
                    rest.extend(x for x in content if isinstance(x, ImagePart))  # images follow as user content
                append({"role": "tool", "tool_call_id": p.tool_call_id,
                        "content": ("[tool error] " + text) if p.is_error else text})
            elif not isinstance(p, ThinkingPart):
                rest.append(p)
        if rest:
            if len(rest) == 1 and isinstance(rest[0], TextPart):
                append({"role": "user", "content": rest[0].text})
            else:
                append({"role": "user", "content": [_part_out(p) for p in rest]})
    return out


def _part_out(p: Part) -> dict[str, Any]:
    if isinstance(p, ImagePart):
        url = p.url if p.url else f"data:{p.media_type or 'image/png'};base64,{p.data}"
        img: dict[str, Any] = {"url": url}
        if p.detail:
            img["detail"] = p.detail
        return {"type": "image_url", "image_url": img}
    if isinstance(p, DocumentPart):
        return {"type": "text", "text": document_text(p)}
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    return {"type": "text", "text": ""}  # a tool call in a user turn cannot happen; keep the shape valid


_END_TURN, _TOOL_USE, _REFUSAL = StopReason.END_TURN, StopReason.TOOL_USE, StopReason.REFUSAL


def parse_response(body: dict) -> ChatResponse:
    if not isinstance(body, dict):
        raise UpstreamBadResponse("the chat completion is not a JSON object")
    get = body.get
    if get("error"):
        raise _error_from_payload(body["error"], None)
    choices = get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    msg = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(msg, dict):
        raise UpstreamBadResponse("the chat completion has no choices[0].message")
    parts: list[Part] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        parts.append(ThinkingPart(reasoning))
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            parts.append(TextPart(content))
    elif isinstance(content, list):  # a few compatible servers answer with parts
        parts.extend(TextPart(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    refusal = msg.get("refusal")
    refused = refusal and isinstance(refusal, str) and not content
    if refused:
        parts.append(TextPart(refusal))
    has_calls = False
    calls = msg.get("tool_calls")
    if calls:
        for tc in calls:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise UpstreamBadResponse("a tool call in the chat completion has no function name")
            args = fn.get("arguments")
            parts.append(ToolCallPart(tc.get("id") or new_call_id(), fn["name"],
                                      args if isinstance(args, str) else orjson.dumps(args or {}).decode()))
            has_calls = True
    if refused:
        stop = _REFUSAL
    else:  # as _stop_reason
        finish = choice.get("finish_reason")  # type: ignore[union-attr]
        stop = FINISH_IN.get(finish, _END_TURN) if isinstance(finish, str) else _END_TURN
        if has_calls and stop is _END_TURN:
            stop = _TOOL_USE
    created = get("created")
    return ChatResponse(str(get("id") or ""), str(get("model") or ""), parts, stop, Usage.from_openai(get("usage")),
                        created if isinstance(created, int) else 0)


def _stop_reason(finish: Any, has_calls: bool) -> StopReason:
    stop = FINISH_IN.get(finish, StopReason.END_TURN) if isinstance(finish, str) else StopReason.END_TURN
    # Several compatible servers say "stop" after tool calls; clients must still run them.
    return StopReason.TOOL_USE if has_calls and stop is StopReason.END_TURN else stop


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


if msgspec is not None:
    # The fields of a `chat.completion.chunk` the decoder reads; the rest are skipped while parsing.
    class _Delta(msgspec.Struct):
        content: Any = None
        reasoning_content: Any = None
        reasoning: Any = None
        refusal: Any = None
        tool_calls: Any = None

    class _Choice(msgspec.Struct):
        delta: "_Delta | None" = None
        finish_reason: Any = None

    class _Chunk(msgspec.Struct):
        choices: "list[_Choice] | None" = None
        usage: Any = None
        error: Any = None

    _decode_chunk: Any = msgspec.json.Decoder(_Chunk).decode
    _delta_dict: Any = msgspec.structs.asdict
else:  # pragma: no cover
    _decode_chunk = None


class StreamDecoder:
    """`chat.completion.chunk` SSE -> canonical events. One content block is open at a time: reasoning,
    text and each tool call (by its `index`) get their own block. MessageEnd is emitted at `[DONE]` (the
    usage-only chunk comes after the finish_reason chunk), or at close() when the upstream sent a
    finish_reason but no `[DONE]`.

    `merge_text=True` (relayed streams, whose events only feed usage, error checks and the assembled answer):
    the text deltas of one `feed` that follow each other in one block come out as a single TextDelta.

    Speed: after the first chunk, the frames of one read are decoded by msgspec into the few fields read here
    (`_typed_frames`; about half orjson's cost, since the ids, fingerprints and the like are skipped), and the
    common chunk (text only) is handled inline. Without msgspec, or when it refuses a read, `_frames` parses
    with orjson; when a frame is not JSON, `_data` takes the read one frame at a time, so errors come in stream
    order. `_data` is the reference all three follow. One difference: a number beyond float range in a field
    nobody reads is skipped by msgspec where orjson refuses the chunk.

    `skim()` (relayed streams whose answer is not cached): only what usage and the end of the message need
    is decoded. A frame that is plainly a content delta (compact `"finish_reason":null`, no usage value, no
    error) is kept undecoded; `unskim()` gives their text as one TextDelta, for estimates when a stream is
    cut short. Everything else (finish, usage, errors, anything spaced or unusual) is decoded as always."""

    __slots__ = ("_sse", "_started", "_open", "_open_key", "_next", "_tools", "_finish", "_usage", "_ended",
                 "_merge", "_skim", "_skipped")

    def __init__(self, *, merge_text: bool = False) -> None:
        self._sse = SSEParser()
        self._started = False
        self._open: int | None = None  # canonical index of the open block
        self._open_key: object = None  # "text" | "thinking" | upstream tool index
        self._next = 0
        self._tools: dict[int, int] = {}  # upstream tool_calls[].index -> canonical block index
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._ended = False
        self._merge = merge_text
        self._skim = False
        self._skipped: list[bytes] = []

    def skim(self) -> None:
        """From now on, keep plain content frames undecoded (see the class docstring)."""
        self._skim = True

    def unskim(self) -> list[StreamEvent]:
        """The text of the frames kept undecoded so far, as one TextDelta (estimates only; ends skimming)."""
        skipped, self._skipped, self._skim = self._skipped, [], False
        texts: list[str] = []
        for data in skipped:
            try:
                obj = orjson.loads(data)
                for choice in obj.get("choices") or ():
                    delta = choice.get("delta") or {}
                    for key in ("content", "reasoning_content", "reasoning"):
                        if isinstance(delta.get(key), str):
                            texts.append(delta[key])
                    for call in delta.get("tool_calls") or ():
                        args = (call.get("function") or {}).get("arguments")
                        if isinstance(args, str):
                            texts.append(args)
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                continue
        text = "".join(texts)
        return [TextDelta(self._open if self._open is not None else self._next, text)] if text else []

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        datas = self._sse.feed_data(chunk)
        if not datas or self._ended:
            return out
        if not self._started:  # the first chunk (MessageStart, from its id and model) on its own
            self._data(datas[0], out)
            datas = datas[1:]
            if not datas or self._ended:
                return out
        if self._skim:
            skipped = self._skipped
            keep = []
            for d in datas:
                if (b'"finish_reason":null' in d and b'"error' not in d
                        and (b'"usage":null' in d or b'"usage"' not in d)):
                    skipped.append(d)
                else:
                    keep.append(d)
            datas = keep
            if not datas:
                return out
        if _decode_chunk is not None:
            self._typed_frames(datas, out)
        elif len(datas) == 1:  # tokens arriving one read each
            self._data(datas[0], out)
        else:
            self._frames(datas, out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.close():
            self._data(ev.data, out)
        if not self._ended:
            if self._finish is None:
                raise UpstreamBadResponse("the stream ended before a finish_reason or [DONE]")
            self._end(out)
        return out

    def _typed_frames(self, datas: list[bytes], out: list[StreamEvent]) -> None:
        """`_frames` through msgspec: only the fields read here are built. Anything msgspec refuses (not JSON,
        not an object, a choice or delta of an unexpected type) and any invalid UTF-8 (msgspec does not check
        fields it skips) sends the read to `_frames`, which then gives the reference events or error."""
        done = datas[-1].startswith(b"[DONE]")
        frames = datas[:-1] if done else datas
        try:
            blob = b"".join(frames)
            if not blob.isascii():
                blob.decode()
            chunks = [_decode_chunk(d) for d in frames]
        except ValueError:  # msgspec.DecodeError, UnicodeDecodeError
            self._frames(datas, out)
            return
        merge = self._merge
        run: list[str] = []  # merged text deltas of block `text_idx`, not yet in `out`
        text_idx = self._open if self._open_key == "text" else None  # the open text block
        for chunk in chunks:
            if chunk.error:
                raise _error_from_payload(chunk.error, None)
            usage = chunk.usage
            if usage is not None and usage.__class__ is dict:
                self._usage = Usage.from_openai(usage)
            choices = chunk.choices
            if not choices:
                continue
            choice = choices[0]
            delta = choice.delta
            if delta is not None:
                text = delta.content
                if text and text.__class__ is str and not (delta.reasoning_content or delta.reasoning
                                                           or delta.tool_calls):  # just more text
                    if text_idx is None:
                        text_idx = self._block("text", "text", out)
                    if merge:
                        run.append(text)
                    else:
                        out.append(TextDelta(text_idx, text))
                else:
                    if run:
                        out.append(TextDelta(text_idx, "".join(run)))  # type: ignore[arg-type]
                        run = []
                    self._delta(_delta_dict(delta), out)
                    text_idx = self._open if self._open_key == "text" else None
            finish = choice.finish_reason
            if finish is not None and finish.__class__ is str:
                self._finish = finish
        if run:
            out.append(TextDelta(text_idx, "".join(run)))  # type: ignore[arg-type]
        if done:
            self._data(datas[-1], out)

    def _frames(self, datas: list[bytes], out: list[StreamEvent]) -> None:
        """The frames of one read: the same events as `_data` on each frame in turn (text merged if asked)."""
        done = datas[-1].startswith(b"[DONE]")
        loads = orjson.loads
        try:
            objs = [loads(d) for d in (datas[:-1] if done else datas)]
        except orjson.JSONDecodeError:  # not JSON, or a [DONE] before the last frame
            for data in datas:
                self._data(data, out)
            return
        merge = self._merge
        run: list[str] = []  # merged text deltas of block `text_idx`, not yet in `out`
        text_idx = self._open if self._open_key == "text" else None  # the open text block
        for obj in objs:  # orjson gives exact types: `.__class__ is` is isinstance here
            if obj.__class__ is not dict:
                raise UpstreamBadResponse("the stream sent a chunk that is not a JSON object")
            if "error" in obj and obj["error"]:
                raise _error_from_payload(obj["error"], None)
            if not self._started:
                self._started = True
                out.append(MessageStart(str(obj.get("id") or ""), str(obj.get("model") or "")))
            usage = obj.get("usage")
            if usage is not None and usage.__class__ is dict:
                self._usage = Usage.from_openai(usage)
            choices = obj.get("choices")
            if not choices or choices.__class__ is not list:
                continue
            choice = choices[0]
            if choice.__class__ is not dict:
                raise UpstreamBadResponse("the stream sent a choice that is not an object")
            delta = choice.get("delta")
            if delta.__class__ is dict:
                text = delta.get("content")
                if len(delta) == 1 and text and text.__class__ is str:  # the common chunk: just more text
                    if text_idx is None:
                        text_idx = self._block("text", "text", out)
                    if merge:
                        run.append(text)
                    else:
                        out.append(TextDelta(text_idx, text))
                else:
                    if run:
                        out.append(TextDelta(text_idx, "".join(run)))  # type: ignore[arg-type]
                        run = []
                    self._delta(delta, out)
                    text_idx = self._open if self._open_key == "text" else None
            finish = choice.get("finish_reason")
            if finish is not None and finish.__class__ is str:
                self._finish = finish
        if run:
            out.append(TextDelta(text_idx, "".join(run)))  # type: ignore[arg-type]
        if done:
            self._data(datas[-1], out)

    def _data(self, data: bytes, out: list[StreamEvent]) -> None:
        """One frame (the reference behaviour `_frames` follows)."""
        if self._ended:
            return
        if data.startswith(b"[DONE]"):
            if not self._started:
                self._started = True
                out.append(MessageStart("", ""))
            self._end(out)
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponse("the stream sent a chunk that is not JSON") from None
        if obj.__class__ is not dict:  # orjson gives exact types: `.__class__ is` is isinstance here
            raise UpstreamBadResponse("the stream sent a chunk that is not a JSON object")
        if "error" in obj and obj["error"]:
            raise _error_from_payload(obj["error"], None)
        if not self._started:
            self._started = True
            out.append(MessageStart(str(obj.get("id") or ""), str(obj.get("model") or "")))
        usage = obj.get("usage")
        if usage is not None and usage.__class__ is dict:
            self._usage = Usage.from_openai(usage)
        choices = obj.get("choices")
        if not choices or choices.__class__ is not list:
            return
        choice = choices[0]
        if choice.__class__ is not dict:
            raise UpstreamBadResponse("the stream sent a choice that is not an object")
        delta = choice.get("delta")
        if delta.__class__ is dict:
            text = delta.get("content")
            if len(delta) == 1 and text and text.__class__ is str:  # the common chunk: just more text
                idx = self._open if self._open_key == "text" else self._block("text", "text", out)
                out.append(TextDelta(idx, text))  # type: ignore[arg-type]
            else:
                self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish is not None and finish.__class__ is str:
            self._finish = finish

    def _delta(self, delta: dict, out: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ThinkingDelta(self._block("thinking", "thinking", out), reasoning))
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            out.append(TextDelta(self._block("text", "text", out), text))
        calls = delta.get("tool_calls")
        if not calls or not isinstance(calls, list):
            return
        for pos, tc in enumerate(calls):
            if not isinstance(tc, dict):
                raise UpstreamBadResponse("the stream sent a tool call that is not an object")
            key = tc.get("index", pos)
            fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
            idx = self._tools.get(key)
            if idx is None:
                self._stop_open(out)
                idx = self._tools[key] = self._next
                self._next += 1
                self._open, self._open_key = idx, key
                out.append(BlockStart(idx, "tool_call", tc.get("id") or new_call_id(), fn.get("name") or ""))
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                out.append(ToolArgsDelta(idx, args))

    def _block(self, key: str, kind: Any, out: list[StreamEvent]) -> int:
        if self._open_key == key and self._open is not None:
            return self._open
        self._stop_open(out)
        idx = self._open = self._next
        self._next += 1
        self._open_key = key
        out.append(BlockStart(idx, kind))
        return idx

    def _stop_open(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open))
            self._open = self._open_key = None

    def _end(self, out: list[StreamEvent]) -> None:
        self._stop_open(out)
        self._ended = True
        out.append(MessageEnd(_stop_reason(self._finish, bool(self._tools)), self._usage or Usage()))


def stream_finished(data: bytes) -> bool:
    """Whether relayed bytes end with the stream's last event (`data: [DONE]`): nothing the client needs
    comes after it, so the response can end before the upstream's own end of body arrives."""
    return data.endswith(b"data: [DONE]\n\n") or data.rstrip(b"\r\n").endswith(b"data: [DONE]")


def relay_stream_decoder() -> StreamDecoder:
    """The decoder for a stream relayed to the client as it came (pass-through): see `merge_text`."""
    return StreamDecoder(merge_text=True)


def _error_from_payload(err: Any, status: int | None) -> UpstreamError:
    """An OpenAI-style `error` value (object or string) -> typed error. Without an HTTP status (in-stream
    errors) the code/type decide: rate limits, timeouts, else a server error."""
    if isinstance(err, dict):
        message = err.get("message") if isinstance(err.get("message"), str) else "no message"
        code = err.get("code")
        kind = " ".join(str(x) for x in (err.get("type"), code) if x)
    else:
        message, code, kind = str(err), None, ""
    if status is None:
        if isinstance(code, int) and 400 <= code < 600:
            status = code
        elif "rate_limit" in kind or "quota" in kind:
            status = 429
        elif "timeout" in kind:
            status = 504
        else:
            status = 500
    return upstream_error(status, message, err)


def parse_error(status: int, body: bytes) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        if data.get("error"):
            return _error_from_payload(data["error"], status)
        for key in ("message", "detail"):  # FastAPI / vLLM style bodies
            if isinstance(data.get(key), str):
                return upstream_error(status, data[key], data)
    return upstream_error(status, status_message(status, body), data)


# ================================================== helpers shared with the other dialect codecs (public)
def opt_int(body: dict, key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"{key} must be an integer")
    return v


def opt_num(body: dict, key: str) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequest(f"{key} must be a number")
    return v


def opt_str(body: dict, key: str) -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise BadRequest(f"{key} must be a string")
    return v


def opt_dict(body: dict, key: str) -> dict | None:
    v = body.get(key)
    if v is not None and not isinstance(v, dict):
        raise BadRequest(f"{key} must be an object")
    return v


def split_data_url(url: str) -> tuple[str | None, str | None]:
    """"data:image/png;base64,AAAA" -> ("image/png", "AAAA"); (None, None) when not a base64 data: URL."""
    if not url.startswith("data:"):
        return None, None
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return None, None
    return head[5:-7] or None, data


def image_from_url(url: str, detail: str | None = None) -> ImagePart:
    media, data = split_data_url(url)
    if data is not None:
        return ImagePart(media_type=media, data=data, detail=detail)
    return ImagePart(url=url, detail=detail)


def document_text(p: DocumentPart) -> str:
    """The text of an Anthropic document block, or a placeholder line when it has none (PDF, file id)."""
    src = p.raw.get("source") or {}
    if src.get("type") == "text" and isinstance(src.get("data"), str):
        return src["data"]
    if src.get("type") == "content" and isinstance(src.get("content"), list):
        return "\n".join(b.get("text", "") for b in src["content"] if isinstance(b, dict))
    title = p.raw.get("title") or src.get("media_type") or "document"
    return f"[document omitted: {title}]"


def clamp_max_tokens(value: Any, deployment: Deployment) -> int | None:
    limit = deployment.max_output_tokens
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return limit
    return min(value, limit) if limit else value


def effort_from_thinking(thinking: dict | None) -> str | None:
    """Anthropic `thinking` -> reasoning_effort: budget < 4096 low, < 16384 medium, else high."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def upstream_error(status: int, message: str, body: Any = None) -> UpstreamError:
    """HTTP status -> typed error: 429 rate limited, 408/504 timeout, other 5xx server error, other 4xx
    client error (not retried), anything else a bad response."""
    message = message[:500]
    if status == 429:
        return UpstreamRateLimited(message, upstream_status=status, body=body)
    if status in (408, 504):
        return UpstreamTimeout(message, upstream_status=status, body=body)
    if status >= 500:
        return UpstreamServerError(message, upstream_status=status, body=body)
    if status >= 400:
        return UpstreamClientError(message, upstream_status=status, body=body)
    return UpstreamBadResponse(message, upstream_status=status, body=body)


def status_message(status: int, body: bytes) -> str:
    """Message for an error body we could not read (never echoes the body: it may be an HTML page)."""
    return f"upstream answered HTTP {status} " + ("with a body that is not JSON" if body else "with an empty body")
