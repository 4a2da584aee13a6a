"""Per-request state shared by the middlewares and handlers, and small request/response helpers."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from app.canonical import ChatResponse, Usage
from app.errors import BadRequest, TiergateError
from app.router.router import RouteResult
from app.server.security import read_body
from app.usage import UsageRecord

CORE: web.AppKey[Any] = web.AppKey("tiergate_core", object)


class RequestState:
    """Everything one request learns on its way through, ending as one `UsageRecord`."""

    __slots__ = ("record", "t0", "agent", "response_id", "tier", "privacy", "deployment", "usage",
                 "recorded", "cache_key", "cache_ttl", "redaction", "_ttft")

    def __init__(self, request_id: str, agent: Any, dialect_in: str):
        self.t0 = time.perf_counter()
        self.agent = agent
        self.response_id = request_id
        self.tier = ""
        self.privacy = "any"
        self.deployment: Any = None
        self.usage: Usage | None = None
        self.recorded = False
        self.cache_key: str | None = None  # set when the answer may be stored in the cache
        self.cache_ttl: float | None = None
        self.redaction: Any = None  # app.privacy.redact.Redaction when the request goes out masked
        self._ttft: float | None = None
        self.record = UsageRecord(
            request_id=request_id, ts=time.time(), agent=getattr(agent, "name", "anonymous"), tier="",
            requested_model="", deployment="", provider="", model="", dialect_in=dialect_in, status="ok")

    def routed(self, route: RouteResult) -> None:
        d = route.deployment
        self.deployment = d
        r = self.record
        r.deployment = d.id
        r.provider = d.provider
        r.model = d.model
        r.tier = d.tier
        self.tier = d.tier
        if len(route.attempts) > 1:  # more than the one that answered
            r.fallback_path = route.fallback_path

    def first_byte(self) -> None:
        self._ttft = (time.perf_counter() - self.t0) * 1000

    def overhead_ms(self, upstream_ms: float) -> float:
        """Time spent in Tiergate itself so far: elapsed minus the time waiting on upstreams."""
        overhead = (time.perf_counter() - self.t0) * 1000 - upstream_ms
        self.record.overhead_ms = round(max(overhead, 0.0), 3)
        return self.record.overhead_ms

    def finish(self, usage: Usage) -> None:
        self.usage = usage

    def fail(self, err: TiergateError, usage: Usage | None = None) -> None:
        r = self.record
        if r.status == "ok":
            r.status = "refused" if err.status in (401, 403, 404, 413, 429) and not r.deployment else "error"
        r.http_status = err.status
        r.error = err.code
        attempts = getattr(err, "attempts", None)  # AllDeploymentsFailed: what was tried
        if attempts and not r.fallback_path:
            r.fallback_path = list(dict.fromkeys(a[0] for a in attempts))
        if usage is not None:
            self.usage = usage

    def client_closed(self, usage: Usage) -> None:
        self.record.status = "client_closed"
        self.record.http_status = 499
        self.usage = usage

    def cache_hit(self, resp: ChatResponse) -> None:
        r = self.record
        r.cache_hit = True
        r.provider = "cache"
        r.model = resp.model
        r.deployment = "cache"
        self.usage = resp.usage

    def close(self) -> UsageRecord:
        """Final figures; call once, when the response is complete."""
        r = self.record
        r.latency_ms = round((time.perf_counter() - self.t0) * 1000, 3)
        r.ttft_ms = None if self._ttft is None else round(self._ttft, 3)
        u = self.usage
        if u is not None:
            r.input_tokens = u.input_tokens
            r.output_tokens = u.output_tokens
            r.cache_read_tokens = u.cache_read_tokens
            r.cache_write_tokens = u.cache_write_tokens
            r.reasoning_tokens = u.reasoning_tokens
            r.usage_estimated = u.estimated
        self.recorded = True
        return r


_ID_PREFIX = "tg-" + uuid.uuid4().hex[:12]  # unique per process
_ids = itertools.count(1)


def new_request_id() -> str:
    """Unique request ids without a syscall per request: a random per-process prefix and a counter."""
    return f"{_ID_PREFIX}{next(_ids):012x}"


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 when it is not one, 413 when it is over the limit."""
    raw = await read_body(request, request.app[CORE].config.server)
    if not raw:
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"The request body is not valid JSON ({_json_reason(e)}).") from e
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object, not {type(body).__name__}.")
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"The request body nests JSON more than {MAX_JSON_DEPTH} levels deep.")
    return body


MAX_JSON_DEPTH = 128  # orjson (and the upstreams) cannot re-encode much deeper bodies


def _depth(value: Any) -> int:
    """Deepest nesting of lists and objects (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _json_reason(e: orjson.JSONDecodeError) -> str:
    return f"{e.msg} at line {e.lineno} column {e.colno}"


def response_headers(state: RequestState, *, overhead_ms: float) -> dict[str, str]:
    return {
        "x-request-id": state.response_id,
        "x-tiergate-tier": state.tier,
        "x-tiergate-deployment": state.record.deployment,
        "x-tiergate-privacy": state.privacy,
        "x-tiergate-overhead-ms": f"{overhead_ms:.3f}",
    }


STATE: web.RequestKey[RequestState] = web.RequestKey("tiergate_request_state", RequestState)
