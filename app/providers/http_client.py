"""The HTTP/1.1 client every provider sends its upstream requests on.

Why not aiohttp's `ClientSession`: measured on the proxy's hot path it cost about 80 µs of CPU per request
(tracing signals, cookie and proxy handling, URL building, a task per request body) — half of what a bare
aiohttp pass-through spends per request in all. Providers need much less: POST a JSON body to a fixed
URL, read the answer whole or as it comes, keep connections alive. This module does that on asyncio
protocols and httptools' llhttp parser (the parser uvicorn uses), about a third of the cost.

What it does:
- one pool of idle keep-alive connections per origin (scheme, host, port), taken last-in first-out;
  connections idle longer than `keepalive` are closed; a pooled connection the server had already closed
  is retried once on a new one (nothing had reached the server);
- TLS with the system's trust store plus certifi's bundle (a python.org macOS build has no system store);
- timeouts: `total` (connect to last byte), `connect` (a new connection, TLS included) and `read` (longest
  wait for the next bytes of a stream);
- chunked and length-delimited bodies, close-delimited ones too; gzip and deflate decoded;
- back-pressure: a stream nobody reads stops reading the socket at `HIGH_WATER` buffered bytes.

It never follows redirects and keeps no cookies: a redirect is returned as it is, so a body holding keys
or private text never goes to a second host. Errors are `HTTPClientError` subclasses, which carry no URL
path, query or header (keys can live there).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

import httptools

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # buffered body bytes at which a stream stops reading the socket
MAX_HEADER_BYTES = 64 * 1024  # a response header block larger than this is refused
MAX_BODY_BYTES = 256 * 1024 * 1024  # `read()` refuses bodies larger than this (streams have no limit)
MAX_IDLE_PER_ORIGIN = 128

Resolver = Callable[[str, int], Awaitable[list[str]]]  # host, port -> addresses to try, in order


class HTTPClientError(Exception):
    """Base of this module's errors. Messages name at most scheme://host:port."""


class ConnectFailed(HTTPClientError):
    """No connection: name not resolved, refused, unreachable, or the TLS handshake failed."""


class ConnectionBroken(HTTPClientError):
    """The connection closed or reset before the response was complete."""


class BadHTTP(HTTPClientError):
    """What came back is not a valid HTTP/1.1 response (or is larger than this client accepts)."""


class Timeout(HTTPClientError, TimeoutError):
    """A timeout ran out (also an `asyncio.TimeoutError`)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    total: float | None = None  # whole exchange, from connecting to the last body byte
    connect: float | None = None  # opening a new connection, TLS handshake included
    read: float | None = None  # longest wait for the next bytes, once the request is sent


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed URL: where to connect and what to put on the request line."""

    origin: tuple[str, str, int]  # scheme, host, port: the pool key
    host: str
    port: int
    tls: bool
    literal: bool  # the host is an IP address (never resolved)
    host_header: str
    path: str  # path and query, as sent on the request line
    label: str  # scheme://host:port, for messages

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {scheme}://{parts.hostname or ''}")
        host = parts.hostname
        tls = scheme == "https"
        default = 443 if tls else 80
        port = parts.port or default
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        path = quote(path, safe=_PATH_SAFE)  # spaces and other unsafe characters %-encoded; existing %XX kept
        try:
            ipaddress.ip_address(host)
            literal = True
        except ValueError:
            literal = False
        return cls((scheme, host, port), host, port, tls, literal, host_header, path, f"{scheme}://{shown}:{port}")


_PATH_SAFE = "/?&=%:@!$'()*+,;-._~"  # RFC 3986 path and query characters that are sent as they are
# Framing and connection headers are this client's to write; a caller's (config extra_headers) are dropped.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                          "te", "trailer", "expect"})


def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store (and SSL_CERT_FILE), plus certifi's bundle when it is installed."""
    ctx = ssl.create_default_context()
    try:
        import certifi

        ctx.load_verify_locations(certifi.where())
    except (ImportError, OSError):  # pragma: no cover - certifi comes with httpx
        pass
    return ctx


def _unsafe(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


class _Decoder:
    """gzip / deflate body decoding (deflate: zlib-wrapped, or raw as some servers send it)."""

    __slots__ = ("_z", "_pending")

    def __init__(self, encoding: str):
        self._z = zlib.decompressobj(47 if encoding in ("gzip", "x-gzip") else 15)
        # deflate: the input so far, until the first output settles that it is zlib-wrapped; on an error before
        # then it is decoded again as raw deflate from its first byte (the zlib header can span two reads).
        self._pending: bytes | None = b"" if encoding == "deflate" else None

    def feed(self, data: bytes) -> bytes:
        pending = self._pending
        if pending is None:
            return self._z.decompress(data)
        pending += data
        try:
            out = self._z.decompress(data)
        except zlib.error:
            self._pending = None
            self._z = zlib.decompressobj(-15)
            return self._z.decompress(pending)
        self._pending = None if out else pending
        return out

    def flush(self) -> bytes:
        return self._z.flush()


class Response:
    """One upstream response: status and headers first, then the body with `read()` or `iter_any()`.

    Headers are a dict of lower-case names; a repeated header's values are joined with ", ". Call
    `release()` when done (the connection goes back to the pool if the body was read to its end) or
    `close()` to drop the connection."""

    __slots__ = ("status", "_headers", "_conn", "_chunks", "_buffered", "_complete", "_error", "_waiter",
                 "_timeouts", "_deadline", "_decoder", "_header_list", "_header_bytes", "_got_headers",
                 "_received", "_until_close", "_label", "_done")

    def __init__(self, timeouts: Timeouts, label: str):
        self.status = 0
        self._headers: dict[str, str] | None = None  # built from _header_list when first asked for
        self._conn: _Connection | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timeouts = timeouts
        self._deadline: asyncio.TimerHandle | None = None
        self._decoder: _Decoder | None = None
        self._header_list: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._got_headers = False
        self._received = False  # any byte of this response arrived
        self._until_close = False  # body delimited by the connection closing
        self._label = label
        self._done = False  # released or closed

    # ------------------------------------------------------------------- parser callbacks (_Connection)
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            raise BadHTTP(f"{self._label} sent more than {MAX_HEADER_BYTES} bytes of response headers")
        self._header_list.append((name, value))

    def on_headers_complete(self, parser: Any) -> None:
        # Only the headers that frame the body are looked at here; the dict is built if someone asks.
        encoding = te = None
        has_length = False
        for name, value in self._header_list:
            if len(name) in (14, 16, 17):
                low = name.lower()
                if low == b"content-length":
                    has_length = True
                elif low == b"content-encoding":
                    encoding = value if encoding is None else encoding + b", " + value
                elif low == b"transfer-encoding":
                    te = value if te is None else te + b", " + value
        self.status = status = parser.get_status_code()
        if encoding is not None:
            coding = encoding.decode("latin-1").strip().lower()
            if coding in ("gzip", "x-gzip", "deflate"):
                self._decoder = _Decoder(coding)
            elif coding not in ("identity", ""):
                raise BadHTTP(f"{self._label} sent a body in an encoding this client did not ask for ({coding[:20]})")
        # Transfer codings are case-insensitive, and only a final "chunked" frames the body (RFC 9112 6.3).
        chunked = te is not None and (te == b"chunked" or te.rsplit(b",", 1)[-1].strip().lower() == b"chunked")
        interim = 100 <= status < 200
        self._until_close = not has_length and not chunked and status not in (204, 304) and not interim
        if not interim:
            self._got_headers = True
            self._wake()

    @property
    def headers(self) -> dict[str, str]:
        """Response headers by lower-case name; a repeated header's values joined with ", "."""
        headers = self._headers
        if headers is None:
            headers = self._headers = {}
            for name, value in self._header_list:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return headers

    def on_body(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.feed(data)
            except zlib.error as e:
                raise BadHTTP(f"{self._label} sent a body that does not decompress") from e
            if not data:
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim response (103 Early Hints): the real one follows
            self.status, self._got_headers, self._header_bytes = 0, False, 0
            self._header_list, self._headers, self._decoder = [], None, None
            return
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._buffered += len(tail)
        self._complete = True
        self._clear_deadline()
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The connection broke or sent garbage, or a timeout ran out: wake the reader with `error`."""
        if self._complete or self._error is not None:
            return
        self._error = error
        self._clear_deadline()
        self._wake()

    # ------------------------------------------------------------------------------------- waiting
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        read = self._timeouts.read
        timer = loop.call_later(read, self._read_timed_out) if read is not None else None
        try:
            await waiter
        except asyncio.CancelledError:
            self.close()  # the caller gave up mid-response: the connection's state is unknown
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _read_timed_out(self) -> None:
        self.fail(Timeout(f"{self._label} sent nothing for {self._timeouts.read:g} s"))
        self._drop_connection()

    def _total_timed_out(self) -> None:
        self.fail(Timeout(f"{self._label} did not finish within {self._timeouts.total:g} s"))
        self._drop_connection()

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _raise_error(self) -> None:
        error = self._error
        assert error is not None
        raise error

    async def wait_headers(self) -> None:
        while not self._got_headers:
            if self._error is not None:
                self._raise_error()
            await self._wait()

    # ---------------------------------------------------------------------------------------- body
    async def read(self) -> bytes:
        """The whole body (decoded)."""
        while not self._complete:
            if self._error is not None:
                self._raise_error()
            if self._buffered > MAX_BODY_BYTES:
                break
            if self._conn is not None and self._conn.paused:
                self._conn.resume()  # read() wants it all: no back-pressure
            await self._wait()
        if self._buffered > MAX_BODY_BYTES:  # checked here too: the whole body can come in one read
            self.close()
            raise BadHTTP(f"{self._label} sent a body larger than {MAX_BODY_BYTES} bytes")
        conn = self._conn
        if conn is not None and conn.paused:
            conn.resume()  # the last bytes went over HIGH_WATER: a paused connection is not reused
        chunks = self._chunks
        self._chunks = []
        self._buffered = 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def iter_any(self) -> Response:
        """Iterate the body as it arrives: each step gives everything buffered since the last one."""
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunks = self._chunks
            if chunks:
                self._chunks = []
                self._buffered = 0
                conn = self._conn
                if conn is not None and conn.paused:
                    conn.resume()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._complete:
                raise StopAsyncIteration
            if self._error is not None:
                self._raise_error()
            await self._wait()

    # ------------------------------------------------------------------------------------- ending
    def release(self) -> None:
        """Done with the response: its connection goes back to the pool if the body was read to its end
        and the server keeps it alive; otherwise the connection is closed."""
        if self._done:
            return
        self._done = True
        self._clear_deadline()
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._complete and not self._chunks and conn.reusable():
                conn.finish()
            else:
                conn.close()

    def close(self) -> None:
        """Done with the response; drop its connection whatever its state."""
        if self._done:
            return
        self._done = True
        self._clear_deadline()
        self._drop_connection()
        if not self._complete and self._error is None:
            self._error = ConnectionBroken(f"the response from {self._label} was closed")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._done


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one response at a time."""

    __slots__ = ("pool", "transport", "parser", "response", "lost", "idle_since", "paused", "keep_alive")

    def __init__(self, pool: _OriginPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.lost = False
        self.idle_since = 0.0
        self.paused = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response._complete:
            # Bytes nobody asked for (a late 408, junk after a response): this connection is not reusable.
            self.close()
            return
        response._received = True
        try:
            self.parser.feed_data(data)
        except HTTPClientError as e:
            response.fail(e)
            self.close()
        except httptools.HttpParserUpgrade:
            response.fail(BadHTTP(f"{self.pool.label} switched protocols"))
            self.close()
        except httptools.HttpParserError as e:
            if response._complete:  # the response is whole; what followed it is not HTTP: drop the connection
                self.keep_alive = False
                self.close()
                return
            cause = e.__context__ if isinstance(e, httptools.HttpParserCallbackError) else None
            response.fail(cause if isinstance(cause, HTTPClientError)
                          else BadHTTP(f"{self.pool.label} sent a response that is not valid HTTP/1.1"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        ours = self.lost  # close() came first (a timeout, a cancel, close() or release() mid-body)
        self.lost = True
        self.transport = None
        response = self.response
        if response is not None and not response._complete:
            if response._got_headers and response._until_close and exc is None and not ours:
                response.on_message_complete()  # a close-delimited body ends with the connection
            else:
                what = "reset" if exc is not None else "closed"
                error = ConnectionBroken(f"{self.pool.label} {what} the connection before the response was complete")
                error.before_response = not response._received  # type: ignore[attr-defined]
                response.fail(error)

    # httptools callbacks (the response does the work)
    def on_message_begin(self) -> None:
        if self.response._complete:  # type: ignore[union-attr]
            raise BadHTTP(f"{self.pool.label} sent more than one response")  # stops the parser; not reused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.on_header(name, value)  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self.response.on_headers_complete(self.parser)  # type: ignore[union-attr]

    def on_body(self, data: bytes) -> None:
        self.response.on_body(data)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.response.on_message_complete()  # type: ignore[union-attr]

    # flow control
    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    # lifecycle
    def send(self, response: Response, data: bytes) -> None:
        self.response = response
        response._conn = self
        self.transport.write(data)  # type: ignore[union-attr]

    def reusable(self) -> bool:
        return self.keep_alive and not self.lost and not self.paused and self.transport is not None

    def finish(self) -> None:
        """The response was read to its end: back to the pool."""
        self.response = None
        self.pool.put(self)

    def close(self) -> None:
        self.keep_alive = False
        transport = self.transport
        if transport is not None:
            self.transport = None
            transport.close()
        self.lost = True


class _OriginPool:
    """Idle connections to one origin."""

    __slots__ = ("target", "label", "idle", "client")

    def __init__(self, client: UpstreamHTTP, target: Target):
        self.client = client
        self.target = target
        self.label = target.label
        self.idle: list[_Connection] = []

    def take(self) -> _Connection | None:
        idle = self.idle
        limit = time.monotonic() - self.client.keepalive
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.idle_since >= limit:
                return conn
            conn.close()
        return None

    def put(self, conn: _Connection) -> None:
        if self.client.closed or len(self.idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        self.client._schedule_sweep()

    def sweep(self, limit: float) -> None:
        keep = []
        for conn in self.idle:
            if conn.lost or conn.idle_since < limit:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle = []


class UpstreamHTTP:
    """The client: one per core, shared by every provider. `request()` returns a `Response` once its
    status and headers are in."""

    def __init__(self, *, keepalive: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 resolver: Resolver | None = None, user_agent: str = "Tiergate"):
        self.keepalive = keepalive
        self.ssl_context = ssl_context
        self.resolver = resolver  # None: the system resolver (asyncio's getaddrinfo); not asked for IP addresses
        self.user_agent = user_agent
        self.closed = False
        self._pools: dict[tuple[str, str, int], _OriginPool] = {}
        self._targets: dict[str, Target] = {}
        self._heads: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], bytes] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._ssl_loading: asyncio.Future[ssl.SSLContext] | None = None

    def prepare_tls(self) -> None:
        """Start loading the default TLS context (the trust store is read from disk) in a worker thread, so
        the first HTTPS connection does not read it on the event loop. Called by the core at start."""
        if self.ssl_context is None and self._ssl_loading is None:
            self._ssl_loading = asyncio.get_running_loop().run_in_executor(None, default_ssl_context)

    def target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            target = Target.parse(url)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def _ssl(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.prepare_tls()
            self.ssl_context = await self._ssl_loading  # type: ignore[misc]
        return self.ssl_context

    def _head(self, method: str, target: Target, headers: dict[str, str]) -> bytes:
        """The request line and headers up to Content-Length (cached: providers send the same few sets)."""
        items = tuple(headers.items())
        key = (method, target.host_header, target.path, items)
        head = self._heads.get(key)
        if head is not None:
            return head
        lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host_header}"]
        given = {k.lower() for k, _ in items}
        for name, value in items:
            if _unsafe(name) or _unsafe(value) or ":" in name or not name.strip() or name != name.strip():
                raise ValueError("a request header name or value holds a line break or is empty")
            if name.lower() in _OWN_HEADERS:
                continue
            lines.append(f"{name}: {value}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {self.user_agent}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: gzip, deflate")
        head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1", "strict")
        if len(self._heads) < 256:
            self._heads[key] = head
        return head

    async def request(self, method: str, url: str, body: bytes, headers: dict[str, str], *,
                      timeouts: Timeouts) -> Response:
        if self.closed:
            raise ConnectFailed("the upstream client is closed")
        target = self.target(url)
        data = self._head(method, target, headers) + str(len(body)).encode() + b"\r\n\r\n" + body
        pool = self._pools.get(target.origin)
        if pool is None:
            pool = self._pools[target.origin] = _OriginPool(self, target)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for attempt in range(2):
            response = Response(timeouts, target.label)
            conn = pool.take() if attempt == 0 else None  # the retry goes on a new connection
            reused = conn is not None
            if conn is None:
                conn = await self._connect(pool, timeouts, started)
            if timeouts.total is not None:
                response._deadline = loop.call_at(started + timeouts.total, response._total_timed_out)
            conn.send(response, data)
            try:
                await response.wait_headers()
            except ConnectionBroken as e:
                if reused and getattr(e, "before_response", False):
                    response.close()
                    continue  # the server had closed the idle connection: nothing reached it
                raise
            except BaseException:
                response.close()
                raise
            return response
        raise ConnectionBroken(f"{target.label} closed two connections in a row before answering")

    async def _connect(self, pool: _OriginPool, timeouts: Timeouts, started: float) -> _Connection:
        target = pool.target
        loop = asyncio.get_running_loop()
        limit = timeouts.connect
        if timeouts.total is not None:
            left = started + timeouts.total - loop.time()
            limit = left if limit is None else min(limit, left)
        tls = await self._ssl() if target.tls else None
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                if self.resolver is None or target.literal:
                    _, conn = await loop.create_connection(lambda: _Connection(pool), target.host, target.port,
                                                           ssl=tls)
                    return conn
                addresses = await self.resolver(target.host, target.port)
                error: Exception = OSError("no address")
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(pool), address, target.port, ssl=tls,
                            server_hostname=target.host if tls else None)
                        return conn
                    except OSError as e:
                        error = e
                raise error
        except TimeoutError as e:  # ours (`limit` ran out), or the system's (a connect or resolver timeout)
            within = f" within {limit:g} s" if scope.expired() else ""
            raise Timeout(f"could not connect to {target.label}{within}") from e
        except ssl.SSLError as e:
            raise ConnectFailed(f"TLS handshake with {target.label} failed: {e.reason or type(e).__name__}") from e
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {target.label}: {e.strerror or type(e).__name__}") from e

    def _schedule_sweep(self) -> None:
        if self._sweep is None and not self.closed:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive, self._do_sweep)

    def _do_sweep(self) -> None:
        self._sweep = None
        limit = time.monotonic() - self.keepalive
        for pool in self._pools.values():
            pool.sweep(limit)
        if any(pool.idle for pool in self._pools.values()):
            self._schedule_sweep()

    def idle_connections(self) -> int:
        return sum(len(pool.idle) for pool in self._pools.values())

    async def close(self) -> None:
        """Close every idle connection; responses in flight keep theirs until released."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        await asyncio.sleep(0)  # let the transports finish closing
