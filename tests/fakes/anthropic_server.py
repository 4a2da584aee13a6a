"""A faithful in-process fake of Anthropic's Messages API: /v1/messages (plain and streaming),
/v1/messages/count_tokens and /v1/models.

    fake = FakeAnthropic(api_key="sk-ant-test")   # None: no key check
    await fake.start()                             # the SDK takes base_url as is
    fake.replies.append(Reply(text="Hi", thinking="Let me think.", cache_read_tokens=2048))

Shapes follow anthropic-sdk-python's types (Message, Usage, RawMessageStreamEvent, MessageTokensCount) and the
streaming docs. A stream is `message_start` (usage with the input side and output_tokens 1), then per block
`content_block_start` / `content_block_delta`s / `content_block_stop` — thinking first (`thinking_delta`s, then
one `signature_delta`), then text (`text_delta`s), then each tool call (`input_json_delta`s, the first with an
empty `partial_json`) — with one `ping` after the first block start, then `message_delta` (stop_reason and
cumulative usage) and `message_stop`. Scripted in-stream failures send `event: error` (overloaded_error).

Requests need the key (`x-api-key`, or `Authorization: Bearer` as newer SDKs send it; 401 authentication_error) and `anthropic-version` (400) and are validated by
`anthropic_validation`; errors use `{"type": "error", "error": {"type", "message"}, "request_id"}` and every
answer carries a `request-id` header.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tests.fakes.anthropic_validation import AnthropicInvalid, validate_messages
from tests.fakes.base import FakeServer
from tests.fakes.scripts import ANTHROPIC_STOP, Ids, Reply, Turn, anthropic_texts, prompt_tokens, resolve, split

DEFAULT_ANTHROPIC_KEY = "sk-ant-test-fake-anthropic-0000"
DEFAULT_MODELS = ("claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


class FakeAnthropic(FakeServer):
    def __init__(self, api_key: str | None = DEFAULT_ANTHROPIC_KEY, *, strict_alternation: bool = True,
                 models: tuple[str, ...] = DEFAULT_MODELS, reject_unknown_models: bool = False,
                 seed: int = 0) -> None:
        self.api_key = api_key
        self.strict_alternation = strict_alternation
        self.models = list(models)
        self.reject_unknown_models = reject_unknown_models
        self.token_count: int | None = None  # fixed answer of count_tokens (None: computed from the prompt)
        self.replies: list[Reply] = []
        self.served: list[Turn] = []
        self.ids = Ids(seed)
        super().__init__()

    # --------------------------------------------------------------------------------- base hooks
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models", self._list_models)

    def _request_id(self) -> str:
        return "req_011C" + self.ids.b62(20)

    def response_headers(self) -> dict[str, str]:
        return {"request-id": self._request_id()}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": self._request_id()}

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return self._error(AnthropicInvalid(message, status=status,
                                            kind=ERROR_TYPES.get(status, "api_error" if status >= 500 else
                                                                 "invalid_request_error")), headers)

    def _error(self, e: AnthropicInvalid, headers: dict[str, str] | None = None) -> web.Response:
        request_id = self._request_id()
        body = {"type": "error", "error": {"type": e.kind, "message": e.message}, "request_id": request_id}
        return web.Response(body=orjson.dumps(body), status=e.status, content_type="application/json",
                            headers={"request-id": request_id, **(headers or {})})

    # ------------------------------------------------------------------------------------ helpers
    def _authorize(self, request: web.Request) -> None:
        """The key comes as `x-api-key` or, as newer SDKs send it, `Authorization: Bearer <key>`."""
        if self.api_key is None:
            return
        key = request.headers.get("x-api-key")
        if not key:
            auth = request.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not key:
            raise AnthropicInvalid("x-api-key header is required", status=401, kind="authentication_error")
        if key != self.api_key:
            raise AnthropicInvalid("invalid x-api-key", status=401, kind="authentication_error")

    async def _json(self, request: web.Request, *, count_tokens: bool = False) -> dict[str, Any]:
        self._authorize(request)
        if not request.headers.get("anthropic-version"):
            raise AnthropicInvalid("anthropic-version: header is required")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise AnthropicInvalid("There was an error parsing the body: invalid JSON") from None
        if not isinstance(body, dict):
            raise AnthropicInvalid("Input should be a valid dictionary or object to extract fields from")
        betas = request.headers.get("anthropic-beta", "")
        validate_messages(body, beta=bool(betas), strict_alternation=self.strict_alternation,
                          count_tokens=count_tokens, system_turns="mid-conversation-system" in betas)
        if self.reject_unknown_models and body["model"] not in self.models:
            raise AnthropicInvalid(f"model: {body['model']}", status=404, kind="not_found_error")
        return body

    @staticmethod
    def _usage(t: Turn, output_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": t.input_tokens, "cache_creation_input_tokens": t.cache_write_tokens,
            "cache_read_input_tokens": t.cache_read_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": t.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens, "service_tier": "standard",
        }
        if t.reasoning_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": t.reasoning_tokens}
        return usage

    # ------------------------------------------------------------------------------------ messages
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json(request)
        except AnthropicInvalid as e:
            return self._error(e)
        texts, last_user = anthropic_texts(body)
        turn = resolve(self.replies.pop(0) if self.replies else None, path=request.path,
                       stream=bool(body.get("stream")), model=body["model"], texts=texts, last_user=last_user,
                       tool_id=lambda: "toolu_01" + self.ids.b62(22))
        self.served.append(turn)
        mid = "msg_01" + self.ids.b62(22)
        if not body.get("stream"):
            return self.json_response(orjson.dumps(self._message(turn, mid)), turn.headers)
        return await self.send_stream(request, self._events(turn, mid), delay=turn.delay, headers=turn.headers)

    def _message(self, t: Turn, mid: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if t.thinking is not None:
            content.append({"type": "thinking", "thinking": t.thinking, "signature": t.signature})
        if t.text:
            content.append({"type": "text", "text": t.text})
        for call in t.tool_calls:
            content.append({"type": "tool_use", "id": call.id, "name": call.name,
                            "input": orjson.loads(call.arguments or "{}")})
        stop = ANTHROPIC_STOP.get(t.stop_reason, t.stop_reason)
        return {"id": mid, "type": "message", "role": "assistant", "model": t.model, "content": content,
                "stop_reason": stop, "stop_sequence": t.stop_sequence if stop == "stop_sequence" else None,
                "usage": self._usage(t, t.output_tokens)}

    def _events(self, t: Turn, mid: str) -> list[bytes]:
        out: list[bytes] = []
        deltas = 0

        def emit(kind: str, payload: dict[str, Any]) -> None:
            out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n")

        def delta(index: int, body: dict[str, Any]) -> bool:
            nonlocal deltas
            if t.error_after is not None and deltas >= t.error_after:
                emit("error", {"error": {"type": "overloaded_error", "message": "Overloaded"},
                               "request_id": self._request_id()})
                return False
            deltas += 1
            emit("content_block_delta", {"index": index, "delta": body})
            return True

        def start(index: int, block: dict[str, Any]) -> None:
            emit("content_block_start", {"index": index, "content_block": block})
            if index == 0:
                out.append(b'event: ping\ndata: {"type": "ping"}\n\n')

        emit("message_start", {"message": {"id": mid, "type": "message", "role": "assistant", "model": t.model,
                                           "content": [], "stop_reason": None, "stop_sequence": None,
                                           "usage": self._usage(t, 1)}})
        index = 0
        if t.thinking is not None:
            start(index, {"type": "thinking", "thinking": "", "signature": ""})
            for piece in split(t.thinking, t.chunks):
                if not delta(index, {"type": "thinking_delta", "thinking": piece}):
                    return out
            emit("content_block_delta", {"index": index, "delta": {"type": "signature_delta",
                                                                    "signature": t.signature}})
            emit("content_block_stop", {"index": index})
            index += 1
        if t.text:
            start(index, {"type": "text", "text": ""})
            for piece in split(t.text, t.chunks):
                if not delta(index, {"type": "text_delta", "text": piece}):
                    return out
            emit("content_block_stop", {"index": index})
            index += 1
        for call in t.tool_calls:
            start(index, {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
            for piece in [""] + split(call.arguments, t.chunks):
                if not delta(index, {"type": "input_json_delta", "partial_json": piece}):
                    return out
            emit("content_block_stop", {"index": index})
            index += 1
        stop = ANTHROPIC_STOP.get(t.stop_reason, t.stop_reason)
        final_usage = self._usage(t, t.output_tokens)
        del final_usage["cache_creation"], final_usage["service_tier"]
        emit("message_delta", {"delta": {"stop_reason": stop,
                                         "stop_sequence": t.stop_sequence if stop == "stop_sequence" else None},
                               "usage": final_usage})
        emit("message_stop", {})
        return out

    # -------------------------------------------------------------------------------- count tokens
    async def _count_tokens(self, request: web.Request) -> web.Response:
        try:
            body = await self._json(request, count_tokens=True)
        except AnthropicInvalid as e:
            return self._error(e)
        texts, _ = anthropic_texts(body)
        count = self.token_count if self.token_count is not None else prompt_tokens(*texts)
        return self.json_response(orjson.dumps({"input_tokens": count}))

    # -------------------------------------------------------------------------------------- models
    async def _list_models(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except AnthropicInvalid as e:
            return self._error(e)
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-05-14T00:00:00Z"}
                for m in self.models]
        return self.json_response(orjson.dumps({"data": data, "has_more": False,
                                                "first_id": data[0]["id"] if data else None,
                                                "last_id": data[-1]["id"] if data else None}))
