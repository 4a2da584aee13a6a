"""Upstream adapters: one class per upstream dialect, one instance per deployment.

A provider turns a canonical `ChatRequest` into the upstream's wire request (through the dialect module),
sends it on the shared upstream client (`http_client.UpstreamHTTP`), and gives back a canonical
`ChatResponse` or a stream. Every failure is raised as a typed `app.errors.UpstreamError`; the router
decides retries and fallbacks from the type.

When the client speaks the upstream's own dialect the request is passed through: the client's body is
forwarded with only the model replaced (unknown fields kept) and the upstream's bytes are relayed as they
come. The stream is still decoded alongside, for usage, error detection and the cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, AsyncIterator, Awaitable, Callable

import orjson

from app.canonical import ChatRequest, ChatResponse, Dialect, EmbeddingRequest, EmbeddingResponse, StreamEvent
from app.config.schema import Deployment
from app.errors import (
    UpstreamBadResponse,
    UpstreamClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from app.providers.http_client import (
    BadHTTP,
    ConnectFailed,
    ConnectionBroken,
    HTTPClientError,
    Response,
    Target,
    Timeouts,
    UpstreamHTTP,
)

log = logging.getLogger(__name__)

# Fields a client could use to steer an upstream; never forwarded, whatever the dialect.
STEERING_FIELDS = ("api_base", "base_url", "api_key", "api_version", "headers", "extra_headers",
                   "custom_llm_provider", "organization", "mock_response",
                   "cache")  # Tiergate's own per-request cache switch (LiteLLM's spelling)


@dataclass(slots=True)
class UpstreamStream:
    """An open upstream stream. Iterate it (once) for (raw bytes, decoded canonical events) pairs; the
    last pair has empty bytes and the decoder's final events. Until the first events, one network read may
    come as several pairs (see `_chunks`).

    A relayed (pass-through) stream is `lazy`: its client gets the upstream's own bytes, so decoding them (for
    usage, the cache, estimates) need not come before sending them. After the first events, a read comes
    with no events and its bytes wait, undecoded, one read behind: `decode_backlog()` decodes the reads
    before the latest (call it after sending the latest), `decode_deferred()` everything still waiting
    (after the last pair, once the response is ended; and before reporting usage of a stream cut short),
    and `end_events()` the decoder's end (after the last pair and `decode_deferred()`). So when a read and
    the end of the body come back to back, the client gets the end without waiting for the read to be
    decoded. A read that may hold an in-stream error is always decoded before it is handed over."""

    response: Response
    decoder: Any  # the dialect's StreamDecoder
    deployment: Deployment
    passthrough: bool
    started: float = field(default_factory=time.perf_counter)
    lazy: bool = False
    deferred: bytes = b""  # undecoded bytes of reads before the latest
    latest: bytes = b""  # undecoded bytes of the latest read
    _close_pending: bool = False  # the decoder's end still to run (lazy streams, in end_events)
    _closed: bool = False
    _it: Any = None
    on_close: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)  # run once when the stream ends

    def __post_init__(self) -> None:
        self._it = self._chunks()

    def __aiter__(self) -> AsyncIterator[tuple[bytes, list[StreamEvent]]]:
        return self._it

    def __anext__(self) -> Any:
        return self._it.__anext__()

    @property
    def pending(self) -> bool:
        """Bytes or the decoder's end still wait to be decoded (lazy streams)."""
        return bool(self.deferred or self.latest or self._close_pending)

    def decode_backlog(self) -> list[StreamEvent]:
        """Decode the waiting reads except the latest."""
        data, self.deferred = self.deferred, b""
        return self._decode(data) if data else []

    def decode_deferred(self) -> list[StreamEvent]:
        """Decode every read still waiting."""
        data, self.deferred, self.latest = self.deferred + self.latest, b"", b""
        return self._decode(data) if data else []

    def end_events(self) -> list[StreamEvent]:
        """The decoder's end, once a lazy stream gave its last pair (after `decode_deferred()`)."""
        if not self._close_pending:
            return []
        self._close_pending = False
        return self._decode(None)

    def _decode(self, data: bytes | None) -> list[StreamEvent]:
        try:
            return self.decoder.feed(data) if data is not None else self.decoder.close()
        except UpstreamError as e:
            e.deployment = e.deployment or self.deployment.id
            raise

    def _first_events(self, chunk: bytes) -> tuple[int, list[StreamEvent]]:
        """Decode `chunk` an event at a time until events come: (bytes decoded, their events); all of it when
        none do."""
        feed = self.decoder.feed
        sep = b"\n\n" if b"\n\n" in chunk else b"\n"  # SSE, or NDJSON (Ollama)
        done, events = 0, []
        end = chunk.find(sep) + len(sep)
        while not events and len(sep) <= end < len(chunk):
            events = feed(chunk[done:end])
            done, end = end, chunk.find(sep, end) + len(sep)
        if not events:
            events, done = feed(chunk[done:]), len(chunk)
        return done, events

    async def _chunks(self) -> AsyncIterator[tuple[bytes, list[StreamEvent]]]:
        dep = self.deployment
        feed = self.decoder.feed
        lazy = self.lazy
        started = False
        try:
            async for chunk in self.response.iter_any():
                if not started:
                    # Until the first events, a read (often the whole answer) is decoded an event at a time, so the
                    # response can start before the rest is decoded. Not when the read may hold an in-stream error:
                    # decoded whole, that error still comes before the first events and the router can fall back.
                    if b'"error' in chunk:
                        events = feed(chunk)
                        started = bool(events)
                        yield chunk, events
                        continue
                    done, events = self._first_events(chunk)
                    started = bool(events)
                    if lazy:  # the whole read is handed over; the rest of it waits, undecoded
                        self.latest = chunk[done:]
                        yield chunk, events
                    else:
                        yield chunk[:done], events
                        if done < len(chunk):
                            yield chunk[done:], feed(chunk[done:])
                    continue
                if lazy and b'"error' not in chunk:
                    if self.latest:
                        self.deferred += self.latest
                    self.latest = chunk
                    yield chunk, []
                    continue
                if self.pending:  # decoded in order, and given before this read's decoding can raise
                    yield b"", self.decode_deferred()
                yield chunk, feed(chunk)
            # Read to the end: the connection goes back to the pool (close() would drop it, and every
            # stream would pay for a new connection to the upstream).
            self._closed = True
            self.response.release()
            if lazy and started:
                self._close_pending = True  # end_events() runs the decoder's end
                yield b"", []
            else:
                yield b"", self.decode_deferred() + self.decoder.close()
        except UpstreamError as e:
            e.deployment = e.deployment or dep.id
            raise
        except asyncio.TimeoutError as e:
            raise UpstreamTimeout(f"{dep.label} stopped sending mid-stream", deployment=dep.id) from e
        except BadHTTP as e:
            raise UpstreamBadResponse(f"{dep.label} sent a stream that is not valid HTTP", deployment=dep.id) from e
        except HTTPClientError as e:
            raise UpstreamConnectError(f"{dep.label} broke the stream off", deployment=dep.id) from e
        finally:
            self.close()

    def close(self) -> None:
        """Drop the upstream connection (a stream stopped before its end cannot be reused)."""
        if not self._closed:
            self._closed = True
            self.response.close()

    async def aclose(self) -> None:
        """Stop reading (client gone, error, or the end): closes the upstream connection and runs `on_close`."""
        await self._it.aclose()
        self.close()
        callbacks, self.on_close = self.on_close, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:  # a release hook must not break the response
                log.exception("stream close hook failed")


class Provider:
    """Base class. Subclasses set `dialect`, `codec` and the endpoint paths and auth headers."""

    dialect: Dialect
    codec: ModuleType
    chat_path: str
    embed_path: str | None = None

    def __init__(self, deployment: Deployment, http: UpstreamHTTP, *, api_key: str | None,
                 timeout: float, stream_timeout: float | None = None):
        self.deployment = deployment
        self.http = http
        self.api_key = api_key
        self.timeout = deployment.timeout or timeout
        self.stream_timeout = deployment.stream_timeout or stream_timeout or self.timeout
        self.url = deployment.api_base.rstrip("/") + self.chat_path
        self._timeout = Timeouts(total=self.timeout)
        self._stream_timeout = Timeouts(connect=min(self.timeout, 30.0), read=self.stream_timeout)

    # ------------------------------------------------------------------------------------ hooks
    def headers(self, req: ChatRequest | None) -> dict[str, str]:
        out = {"content-type": "application/json"}
        out.update(self.deployment.extra_headers)
        return out

    def passthrough_body(self, req: ChatRequest) -> dict[str, Any]:
        """The client's own body with the model replaced and steering fields removed."""
        body = {k: v for k, v in req.raw.items() if k not in STEERING_FIELDS}
        body["model"] = self.deployment.model
        meta = body.get("metadata")
        if isinstance(meta, dict) and "tiergate_privacy" in meta:  # ours (privacy opt-in), not the upstream's
            body["metadata"] = {k: v for k, v in meta.items() if k != "tiergate_privacy"}
        limit = self.deployment.max_output_tokens
        for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            if limit and isinstance(body.get(key), int) and body[key] > limit:
                body[key] = limit
        return body

    def can_pass_through(self, req: ChatRequest) -> bool:
        return req.dialect is self.dialect and bool(req.raw)

    def build_body(self, req: ChatRequest, *, stream: bool) -> tuple[dict[str, Any], bool]:
        if self.can_pass_through(req):
            body = self.passthrough_body(req)
            body["stream"] = stream
            return body, True
        return self.codec.build_request(req, self.deployment, stream=stream), False

    # ---------------------------------------------------------------------------------- requests
    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str],
                    timeout: Timeouts) -> Response:
        dep = self.deployment
        try:
            # Never follows redirects: a 307/308 would re-send the body (keys, private text) to another host.
            resp = await self.http.request("POST", url, orjson.dumps(body), headers, timeouts=timeout)
        except asyncio.TimeoutError as e:
            raise UpstreamTimeout(f"{dep.label} did not answer within {timeout.total or timeout.read or 0:.0f} s",
                                  deployment=dep.id) from e
        except ConnectFailed as e:
            raise UpstreamConnectError(f"cannot connect to {dep.label} at {_host_of(url)}",
                                       deployment=dep.id) from e
        except ConnectionBroken as e:
            raise UpstreamConnectError(f"{dep.label} closed the connection before answering",
                                       deployment=dep.id) from e
        except BadHTTP as e:
            raise UpstreamBadResponse(f"{dep.label} answered with something that is not valid HTTP",
                                      deployment=dep.id) from e
        except ValueError as e:  # a header value with a line break (config extra_headers, a key)
            raise UpstreamConnectError(f"cannot send to {dep.label}: {e}", deployment=dep.id) from e
        if 300 <= resp.status < 400:
            resp.close()
            raise UpstreamBadResponse(f"{dep.label} answered with a redirect ({resp.status}); Tiergate does not "
                                      "follow upstream redirects. Check the deployment's api_base.", deployment=dep.id)
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except HTTPClientError:
                raw = b""
            finally:
                resp.release()
            err = self.codec.parse_error(resp.status, raw)
            err.deployment = dep.id
            if resp.status == 429 and "retry-after" in resp.headers:
                err.details["retry_after"] = resp.headers["retry-after"]
            raise err
        return resp

    async def _read(self, resp: Response) -> bytes:
        """The whole body of an answer, its connection released."""
        dep = self.deployment
        try:
            return await resp.read()
        except asyncio.TimeoutError as e:
            raise UpstreamTimeout(f"{dep.label} did not finish within {self.timeout:.0f} s", deployment=dep.id) from e
        except BadHTTP as e:
            raise UpstreamBadResponse(f"{dep.label} sent a body that is not valid HTTP", deployment=dep.id) from e
        except HTTPClientError as e:
            raise UpstreamConnectError(f"{dep.label} broke the response off", deployment=dep.id) from e
        finally:
            resp.release()

    async def complete(self, req: ChatRequest) -> tuple[ChatResponse, bytes | None]:
        """Non-streaming. Returns the canonical response and, on pass-through, the upstream's raw body."""
        body, passthrough = self.build_body(req, stream=False)
        raw = await self._read(await self._post(self.url, body, self.headers(req), self._timeout))
        dep = self.deployment
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise UpstreamBadResponse(f"{dep.label} sent a body that is not JSON", deployment=dep.id) from e
        try:
            result = self.codec.parse_response(parsed)
        except UpstreamError as e:
            e.deployment = dep.id
            raise
        except Exception as e:  # a shape the codec did not expect is the upstream's fault, not a crash
            raise UpstreamBadResponse(f"{dep.label} sent an unexpected response shape", deployment=dep.id) from e
        return result, (raw if passthrough else None)

    async def open_stream(self, req: ChatRequest) -> UpstreamStream:
        """Streaming. Raises before returning when the upstream refuses; mid-stream errors raise while
        iterating `UpstreamStream.chunks()`."""
        body, passthrough = self.build_body(req, stream=True)
        if passthrough:
            self.prepare_passthrough_stream(body)
        resp = await self._post(self.url, body, self.headers(req), self._stream_timeout)
        # A relayed stream's events only feed usage, error checks and the cache: a dialect may offer a cheaper
        # decoder for that (`relay_stream_decoder`, e.g. text deltas of one read merged).
        make = getattr(self.codec, "relay_stream_decoder", None) if passthrough else None
        decoder = make() if make is not None else self.codec.StreamDecoder()
        return UpstreamStream(resp, decoder, self.deployment, passthrough, lazy=passthrough)

    def prepare_passthrough_stream(self, body: dict[str, Any]) -> None:
        """Adjust a passed-through streaming body (e.g. ask for usage)."""

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        raise UpstreamClientError(f"{self.deployment.label} does not serve embeddings",
                                  deployment=self.deployment.id, upstream_status=400)

    async def post_json(self, path: str, body: dict[str, Any], req: ChatRequest | None = None) -> Any:
        """POST an auxiliary endpoint (embeddings, count_tokens) and return parsed JSON."""
        raw = await self._read(await self._post(self.deployment.api_base.rstrip("/") + path, body,
                                                self.headers(req), self._timeout))
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise UpstreamBadResponse(f"{self.deployment.label} sent a body that is not JSON",
                                      deployment=self.deployment.id) from e


def _host_of(url: str) -> str:
    """scheme://host:port of a URL, for messages (never the path or query, which could hold a key)."""
    try:
        return Target.parse(url).label
    except ValueError:
        return "an invalid URL"
