"""A faithful in-process fake of the OpenAI API: chat completions, responses, embeddings, models.

    fake = FakeOpenAI(api_key="sk-test")      # None: no key check
    await fake.start()                         # base_url = http://127.0.0.1:<port>; the SDK wants base_url + "/v1"
    fake.replies.append(Reply(text="Hi", tool_calls=[("add", '{"a": 1}')]))
    ...; fake.served[-1].prompt_tokens; fake.requests[-1].json

Wire shapes follow openai-python's types (ChatCompletion, ChatCompletionChunk, CompletionUsage,
CreateEmbeddingResponse, Model; Responses in `openai_responses`). Chat streams: a role chunk, content deltas,
tool-call deltas (id, type and name first, then argument fragments), a finish chunk, then — only when
`stream_options.include_usage` is true — a usage chunk with `choices: []` (every earlier chunk then carries
`"usage": null`), then `data: [DONE]`. Chat Completions carry no reasoning text: a reply's `thinking` only shows
as `completion_tokens_details.reasoning_tokens` there (Responses streams it as a reasoning summary). Requests are validated like OpenAI does (`openai_validation`), errors use
OpenAI's body `{"error": {"message", "type", "param", "code"}}`, every answer carries an `x-request-id`.
"""

from __future__ import annotations

import array
import base64
import hashlib
import random
import sys
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.openai_responses import ResponseRender
from tests.fakes.openai_validation import (
    OpenAIInvalid,
    validate_chat,
    validate_embeddings,
    validate_responses,
)
from tests.fakes.scripts import (
    OPENAI_FINISH,
    Ids,
    Reply,
    Turn,
    count_tokens,
    openai_chat_texts,
    resolve,
    responses_texts,
    split,
)

DEFAULT_OPENAI_KEY = "sk-test-fake-openai-0000"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5", "gpt-5-codex", "text-embedding-3-small")
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                404: "invalid_request_error", 409: "invalid_request_error", 422: "invalid_request_error",
                429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_NO_KEY = ("You didn't provide an API key. You need to provide your API key in an Authorization header using "
           "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
           "you're accessing the API from your browser and are prompted for a username and password. You can "
           "obtain an API key from https://platform.openai.com/account/api-keys.")


def _mask(key: str) -> str:
    """How OpenAI echoes a wrong key: a short prefix, stars, the last four characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str | None = DEFAULT_OPENAI_KEY, *, models: tuple[str, ...] = DEFAULT_MODELS,
                 reject_unknown_models: bool = False, embedding_dim: int = 1536, seed: int = 0) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.reject_unknown_models = reject_unknown_models
        self.embedding_dim = embedding_dim
        self.replies: list[Reply] = []
        self.served: list[Turn] = []
        self.ids = Ids(seed)
        self.system_fingerprint = "fp_" + self.ids.hex(5)
        self._obfuscation = [self.ids.alnum(n) for n in (4, 9, 2, 12, 6, 1, 10, 3)]
        self._vectors: OrderedDict[tuple[str, int], tuple[list[float], str]] = OrderedDict()
        super().__init__()

    # --------------------------------------------------------------------------------- base hooks
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model}", self._get_model)

    def response_headers(self) -> dict[str, str]:
        return {"x-request-id": "req_" + self.ids.hex(16), "openai-processing-ms": "1",
                "openai-version": "2020-10-01"}

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return self._error(status, message, None, _ERROR_CODES.get(status))

    @staticmethod
    def _error(status: int, message: str, param: str | None, code: str | None) -> dict[str, Any]:
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def _invalid(self, e: OpenAIInvalid) -> web.Response:
        return web.Response(body=orjson.dumps(self._error(e.status, e.message, e.param, e.code)), status=e.status,
                            content_type="application/json", headers=self.response_headers())

    # ------------------------------------------------------------------------------------ helpers
    def _authorize(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise OpenAIInvalid(_NO_KEY, status=401)
        if auth[7:].strip() != self.api_key:
            raise OpenAIInvalid(f"Incorrect API key provided: {_mask(auth[7:].strip())}. You can find your API key "
                                "at https://platform.openai.com/account/api-keys.", status=401, code="invalid_api_key")

    async def _json(self, request: web.Request) -> dict[str, Any]:
        self._authorize(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise OpenAIInvalid("We could not parse the JSON body of your request. (HINT: This likely means you "
                                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
                                "what was sent was not valid JSON. If you have trouble figuring out how to fix this, "
                                "please contact us through our help center at help.openai.com.)")
        return body

    def _check_model(self, model: str) -> None:
        if self.reject_unknown_models and model not in self.models:
            raise OpenAIInvalid(f"The model `{model}` does not exist or you do not have access to it.", status=404,
                                code="model_not_found")

    def _turn(self, path: str, body: dict[str, Any], texts: list[str], last_user: str) -> Turn:
        turn = resolve(self.replies.pop(0) if self.replies else None, path=path, stream=bool(body.get("stream")),
                       model=body["model"], texts=texts, last_user=last_user,
                       tool_id=lambda: "call_" + self.ids.alnum(24))
        self.served.append(turn)
        return turn

    # ---------------------------------------------------------------------------- chat completions
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json(request)
            validate_chat(body)
            self._check_model(body["model"])
        except OpenAIInvalid as e:
            return self._invalid(e)
        turn = self._turn(request.path, body, *openai_chat_texts(body))
        cid, created = "chatcmpl-" + self.ids.alnum(29), int(time.time())
        if not body.get("stream"):
            return self.json_response(orjson.dumps(self._completion(turn, cid, created)), turn.headers)
        opts = body.get("stream_options") or {}
        chunks = self._chunks(turn, cid, created, include_usage=bool(opts.get("include_usage")),
                              obfuscate=opts.get("include_obfuscation", True) is not False)
        return await self.send_stream(request, chunks, delay=turn.delay, headers=turn.headers)

    @staticmethod
    def _usage(t: Turn) -> dict[str, Any]:
        prompt_details: dict[str, int] = {"cached_tokens": t.cache_read_tokens, "audio_tokens": 0}
        if t.cache_write_tokens:
            prompt_details["cache_write_tokens"] = t.cache_write_tokens
        return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.output_tokens,
                "total_tokens": t.prompt_tokens + t.output_tokens, "prompt_tokens_details": prompt_details,
                "completion_tokens_details": {"reasoning_tokens": t.reasoning_tokens, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def _completion(self, t: Turn, cid: str, created: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": t.text if t.text or not t.tool_calls else None,
                                   "refusal": None, "annotations": []}
        if t.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in t.tool_calls]
        return {"id": cid, "object": "chat.completion", "created": created, "model": t.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": OPENAI_FINISH.get(t.stop_reason, "stop")}],
                "usage": self._usage(t), "service_tier": "default", "system_fingerprint": self.system_fingerprint}

    def _chunks(self, t: Turn, cid: str, created: int, *, include_usage: bool, obfuscate: bool) -> list[bytes]:
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": t.model,
                "service_tier": "default", "system_fingerprint": self.system_fingerprint}
        out: list[bytes] = []

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            payload: dict[str, Any] = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                            "finish_reason": finish}]}
            if include_usage:
                payload["usage"] = None
            if obfuscate:
                payload["obfuscation"] = self._obfuscation[len(out) % len(self._obfuscation)]
            out.append(b"data: " + orjson.dumps(payload) + b"\n\n")

        pieces: list[dict[str, Any]] = [{"content": p} for p in split(t.text, t.chunks)]
        for k, call in enumerate(t.tool_calls):
            pieces.append({"tool_calls": [{"index": k, "id": call.id, "type": "function",
                                           "function": {"name": call.name, "arguments": ""}}]})
            pieces.extend({"tool_calls": [{"index": k, "function": {"arguments": p}}]}
                          for p in split(call.arguments, t.chunks))
        chunk({"role": "assistant", "content": "" if t.text or not t.tool_calls else None, "refusal": None})
        for n, delta in enumerate(pieces):
            if t.error_after is not None and n >= t.error_after:
                error = self.error_body(500, "The server had an error while processing your request. Sorry about "
                                             "that!")
                out.append(b"data: " + orjson.dumps(error) + b"\n\n")
                return out
            chunk(delta)
        chunk({}, OPENAI_FINISH.get(t.stop_reason, "stop"))
        if include_usage:
            payload = {**head, "choices": [], "usage": self._usage(t)}
            if obfuscate:
                payload["obfuscation"] = self._obfuscation[0]
            out.append(b"data: " + orjson.dumps(payload) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    # ----------------------------------------------------------------------------------- responses
    async def _responses(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json(request)
            validate_responses(body)
            self._check_model(body["model"])
        except OpenAIInvalid as e:
            return self._invalid(e)
        turn = self._turn(request.path, body, *responses_texts(body))
        render = ResponseRender(turn, body, int(time.time()), lambda prefix: f"{prefix}_{self.ids.hex(25)}")
        if not body.get("stream"):
            return self.json_response(orjson.dumps(render.response(final=True)), turn.headers)
        return await self.send_stream(request, render.events(), delay=turn.delay, headers=turn.headers)

    # ---------------------------------------------------------------------------------- embeddings
    def _vector(self, key: str, dim: int) -> tuple[list[float], str]:
        """A deterministic unit vector for `key` (float32 values) and its base64 encoding, cached."""
        hit = self._vectors.get((key, dim))
        if hit is not None:
            return hit
        rng = random.Random(hashlib.sha256(key.encode()).digest())
        raw = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        packed = array.array("f", (x / norm for x in raw))
        values = packed.tolist()
        if sys.byteorder == "big":
            packed.byteswap()
        entry = (values, base64.b64encode(packed.tobytes()).decode())
        self._vectors[(key, dim)] = entry
        if len(self._vectors) > 4096:
            self._vectors.popitem(last=False)
        return entry

    async def _embeddings(self, request: web.Request) -> web.Response:
        try:
            body = await self._json(request)
            validate_embeddings(body)
            self._check_model(body["model"])
        except OpenAIInvalid as e:
            return self._invalid(e)
        value = body["input"]
        if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
            value = [value]
        dim = body.get("dimensions") or self.embedding_dim
        b64 = body.get("encoding_format") == "base64"
        data, tokens = [], 0
        for i, item in enumerate(value):
            key = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += count_tokens(item) if isinstance(item, str) else len(item)
            floats, encoded = self._vector(key, dim)
            data.append({"object": "embedding", "index": i, "embedding": encoded if b64 else floats})
        out = {"object": "list", "data": data, "model": body["model"],
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return self.json_response(orjson.dumps(out))

    # -------------------------------------------------------------------------------------- models
    def _model_obj(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1686935002, "owned_by": "system"}

    async def _list_models(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except OpenAIInvalid as e:
            return self._invalid(e)
        return self.json_response(orjson.dumps({"object": "list", "data": [self._model_obj(m) for m in self.models]}))

    async def _get_model(self, request: web.Request) -> web.Response:
        try:
            self._authorize(request)
        except OpenAIInvalid as e:
            return self._invalid(e)
        model = request.match_info["model"]
        if model not in self.models:
            return self._invalid(OpenAIInvalid(f"The model '{model}' does not exist", status=404,
                                               code="model_not_found", param="model"))
        return self.json_response(orjson.dumps(self._model_obj(model)))
