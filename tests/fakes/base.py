"""Common machinery of the in-process fake upstreams (OpenAI, Anthropic, Ollama).

A fake is an aiohttp application on 127.0.0.1 with a free port. It records every request it receives and
applies scripted faults, one per request, in order:

    fake = FakeOpenAI(); await fake.start()
    fake.faults.append(Fault.status(429))            # next request answers 429 in the dialect's error shape
    fake.faults.append(Fault.hang(5))                 # next one sleeps 5 s first
    fake.faults.append(Fault.reset_after_chunks(3))  # next stream sends 3 chunks, then drops the connection
    ...; fake.requests[-1].json; await fake.close()

Subclasses add routes in `setup_routes` and render errors with `error_body`; `response_headers` adds the
dialect's per-response headers (request ids) to every answer, faults included. Set `record = False` to stop
recording (benchmarks: the request list would otherwise grow without bound).
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web


class _StatusField:
    """`Fault.status(429, ...)` builds a status fault; `fault.status` is a fault's HTTP status.

    (A dataclass field and a classmethod cannot share the name `status`: the field used to shadow the
    constructor, so this descriptor serves both.)"""

    def __get__(self, obj: "Fault | None", owner: type["Fault"]) -> Any:
        if obj is None:
            return owner._status_fault
        return obj._status

    def __set__(self, obj: "Fault", value: int) -> None:
        obj._status = value


class Fault:
    """One scripted failure, consumed by the next request (to `path`, when set)."""

    __slots__ = ("kind", "_status", "message", "seconds", "chunks", "body", "headers", "path")
    status = _StatusField()

    def __init__(self, kind: str, status: int = 500, message: str = "injected fault", seconds: float = 0.0,
                 chunks: int = 0, body: bytes | None = None, headers: dict[str, str] | None = None,
                 path: str | None = None) -> None:
        self.kind = kind  # "status" | "hang" | "drop" | "garbage" | "reset_after_chunks"
        self.status = status
        self.message = message
        self.seconds = seconds
        self.chunks = chunks
        self.body = body
        self.headers = dict(headers or {})
        self.path = path  # only requests to this path consume the fault (None: any)

    def __repr__(self) -> str:
        return (f"Fault({self.kind!r}, status={self.status}, seconds={self.seconds}, chunks={self.chunks}, "
                f"path={self.path!r})")

    @classmethod
    def _status_fault(cls, status: int, message: str = "injected fault", **kw: Any) -> "Fault":
        """Answer `status` with `message` in the dialect's error shape (extra `headers`, e.g. retry-after)."""
        return cls("status", status=status, message=message, **kw)

    @classmethod
    def hang(cls, seconds: float, **kw: Any) -> "Fault":
        """Sleep `seconds` before handling the request normally."""
        return cls("hang", seconds=seconds, **kw)

    @classmethod
    def drop(cls, **kw: Any) -> "Fault":
        """Close the connection without answering."""
        return cls("drop", **kw)

    @classmethod
    def garbage(cls, body: bytes = b"<html>502 Bad Gateway</html>{not json", **kw: Any) -> "Fault":
        """Answer 200 with a body that is not the dialect's format."""
        return cls("garbage", body=body, **kw)

    @classmethod
    def reset_after_chunks(cls, chunks: int, **kw: Any) -> "Fault":
        """Stream `chunks` chunks normally, then drop the connection (streaming endpoints only)."""
        return cls("reset_after_chunks", chunks=chunks, **kw)


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class FakeServer:
    """Base of the fakes. `base_url` is valid after `start()`."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.record = True
        self.app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._middleware])
        self.setup_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port: int = 0

    # ----------------------------------------------------------------------------------- lifecycle
    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------------ for subclasses
    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """The dialect's error JSON for `status`."""
        raise NotImplementedError

    def response_headers(self) -> dict[str, str]:
        """Headers the real upstream sends on every response (e.g. a fresh request id)."""
        return {}

    def error_response(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        """The dialect's error response: `error_body` as JSON, `response_headers`, then `headers`."""
        all_headers = self.response_headers()
        if headers:
            all_headers.update(headers)
        return web.Response(body=orjson.dumps(self.error_body(status, message)), status=status,
                            content_type="application/json", headers=all_headers)

    def take_fault(self, request: web.Request) -> Fault | None:
        if not self.faults:
            return None
        for i, fault in enumerate(self.faults):
            if fault.path is None or fault.path == request.path:
                return self.faults.pop(i)
        return None

    def stream_fault(self, request: web.Request) -> Fault | None:
        """The reset-after-chunks fault the middleware left for a streaming handler, if any."""
        return request.get("fault")

    @staticmethod
    async def write_chunks(request: web.Request, response: web.StreamResponse, chunks: list[bytes],
                           *, delay: float = 0.0) -> None:
        """Write `chunks`, honouring a reset_after_chunks fault: after N chunks the connection drops.

        With no fault and no `delay` everything goes out in one write (fast path for benchmarks; clients must
        cope with any chunking anyway). Otherwise one write per chunk, `delay` seconds apart."""
        fault: Fault | None = request.get("fault")
        if fault is None and delay <= 0:
            await response.write(b"".join(chunks))
            return
        for n, chunk in enumerate(chunks):
            if fault is not None and fault.kind == "reset_after_chunks" and n >= fault.chunks:
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError()
            if delay > 0 and n:
                await asyncio.sleep(delay)
            await response.write(chunk)

    async def send_stream(self, request: web.Request, chunks: list[bytes], *, delay: float = 0.0,
                          headers: dict[str, str] | None = None) -> web.StreamResponse:
        """Answer 200 with a server-sent-events body made of `chunks` (see `write_chunks`)."""
        all_headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        all_headers.update(self.response_headers())
        if headers:
            all_headers.update(headers)
        response = web.StreamResponse(status=200, headers=all_headers)
        await response.prepare(request)
        await self.write_chunks(request, response, chunks, delay=delay)
        await response.write_eof()
        return response

    def json_response(self, body: bytes, headers: dict[str, str] | None = None) -> web.Response:
        """Answer 200 with pre-serialised JSON `body` and `response_headers`."""
        all_headers = self.response_headers()
        if headers:
            all_headers.update(headers)
        return web.Response(body=body, status=200, content_type="application/json", headers=all_headers)

    # ---------------------------------------------------------------------------------- middleware
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        if self.record:
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers), body)
            )
        fault = self.take_fault(request)
        if fault is not None:
            if fault.kind == "hang":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "status":
                return self.error_response(fault.status, fault.message, fault.headers)
            elif fault.kind == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError()
            elif fault.kind == "garbage":
                return web.Response(body=fault.body, status=200, content_type="application/json")
            elif fault.kind == "reset_after_chunks":
                with warnings.catch_warnings():  # a plain str key, which handlers read with request.get("fault")
                    warnings.simplefilter("ignore", web.NotAppKeyWarning)
                    request["fault"] = fault
        return await handler(request)
