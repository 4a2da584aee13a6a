"""app.providers.http_client against real servers on 127.0.0.1: an aiohttp app for ordinary exchanges, raw
asyncio servers writing exact bytes for the wire-level ones. No timing assertions; short timeouts only where
a timeout is the subject."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import zlib

import pytest
import trustme
from aiohttp import web

from app.providers import http_client
from app.providers.http_client import (MAX_HEADER_BYTES, BadHTTP, ConnectFailed, ConnectionBroken, HTTPClientError,
                                       Target, Timeout, Timeouts, UpstreamHTTP)

T = Timeouts(total=5)  # keeps a hung test short; the timeouts themselves are tested with their own values
SECRET = "sk-fake-0123456789"  # a "key" in a query string: must never show in an error message


# ----------------------------------------------------------------------------------------- helpers
def http(body: bytes | None = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    """A response; with a Content-Length unless `body` is None (then the caller writes the body)."""
    lines = [f"HTTP/1.1 {status}", *headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = http(None, "Transfer-Encoding: chunked")


class Raw:
    """A raw server: `handler(srv, reader, writer, index)` per connection; counts connections, keeps requests."""

    def __init__(self, handler):
        self.handler, self.port, self.connections = handler, 0, 0
        self.requests: list[bytes] = []
        self.eofs = 0  # connections the client closed (self.closed is set at the first)
        self.closed = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index, self.connections = self.connections, self.connections + 1
        self.tasks.add(asyncio.current_task())
        try:
            await self.handler(self, reader, writer, index)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None at EOF (counted as the client closing)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return self.saw_eof()
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def until_eof(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass
        self.saw_eof()

    def saw_eof(self) -> None:
        self.eofs += 1
        self.closed.set()

    def url(self, path: str = "/v1/x", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def answering(*payloads: bytes):
    """A handler answering each request on a connection with the next payload (the last one repeats)."""
    async def handler(srv: Raw, reader, writer, index: int) -> None:
        n = 0
        while await srv.read_request(reader) is not None:
            writer.write(payloads[min(n, len(payloads) - 1)])
            await writer.drain()
            n += 1
    return handler


def sends(payload: bytes, end=None):
    """A handler that reads one request, writes `payload`, then waits for the client to close (`end` None)
    or, a moment later, calls `end(writer)` and closes."""
    async def handler(srv: Raw, reader, writer, index: int) -> None:
        await srv.read_request(reader)
        writer.write(payload)
        await writer.drain()
        if end is None:
            return await srv.until_eof(reader)
        await asyncio.sleep(0.01)
        end(writer)
    return handler


HALF = http(None, "Content-Length: 100") + b"0123456789"  # ten bytes of a hundred


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def until(condition, what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def fetch(client: UpstreamHTTP, url: str, body: bytes = b"", headers: dict | None = None,
                timeouts: Timeouts = T):
    resp = await client.request("POST", url, body, headers or {}, timeouts=timeouts)
    data = await resp.read()
    resp.release()
    return resp, data


@pytest.fixture
async def raw():
    servers: list[Raw] = []

    async def start(handler, host: str = "127.0.0.1") -> Raw:
        srv = Raw(handler)
        srv.server = await asyncio.start_server(srv.serve, host, 0)
        srv.port = srv.server.sockets[0].getsockname()[1]
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.server.close()
        for task in srv.tasks:
            task.cancel()
        await asyncio.gather(*srv.tasks, return_exceptions=True)


@pytest.fixture
async def make_client():
    clients: list[UpstreamHTTP] = []

    def make(**kw) -> UpstreamHTTP:
        clients.append(UpstreamHTTP(**kw))
        return clients[-1]

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
def client(make_client) -> UpstreamHTTP:
    return make_client()


PEERS = web.AppKey("peers", list)


async def _upstream(request: web.Request) -> web.StreamResponse:
    """The ordinary upstream: /length, /chunked (three writes), /empty (204), /close (Connection: close).
    Records the client's address (one per connection) in the app's PEERS."""
    request.app[PEERS].append(request.transport.get_extra_info("peername"))
    name = request.match_info["name"]
    if name == "chunked":
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"alpha,", b"beta,", b"gamma"):
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp
    if name == "empty":
        return web.Response(status=204)
    resp = web.Response(body=b"bye" if name == "close" else b"0123456789" * 100)
    if name == "close":
        resp.force_close()
    return resp


@pytest.fixture
async def upstream():
    """start(ssl_context=None) -> (port, peers) of an aiohttp app serving `_upstream`."""
    runners: list[web.AppRunner] = []

    async def start(ssl_context: ssl.SSLContext | None = None) -> tuple[int, list]:
        app = web.Application()
        app[PEERS] = []
        app.router.add_post("/{name}", _upstream)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        runners.append(runner)
        return runner.addresses[0][1], app[PEERS]

    yield start
    for runner in runners:
        await runner.cleanup()


# ------------------------------------------------------------------------------------------ Target
@pytest.mark.parametrize("url, origin, host_header, path, literal", [
    ("http://example.com/v1", ("http", "example.com", 80), "example.com", "/v1", False),
    ("https://Example.com/v1/chat?k=1&b=2", ("https", "example.com", 443), "example.com", "/v1/chat?k=1&b=2", False),
    ("http://example.com:8080", ("http", "example.com", 8080), "example.com:8080", "/", False),
    ("https://example.com:443/x", ("https", "example.com", 443), "example.com", "/x", False),
    ("HTTP://127.0.0.1:80/", ("http", "127.0.0.1", 80), "127.0.0.1", "/", True),
    ("http://[::1]:8080/x", ("http", "::1", 8080), "[::1]:8080", "/x", True),
    ("https://[::1]/x#frag", ("https", "::1", 443), "[::1]", "/x", True),
])
def test_target_parse(url, origin, host_header, path, literal):
    t = Target.parse(url)
    assert (t.origin, t.host_header, t.path, t.literal) == (origin, host_header, path, literal)
    assert (t.host, t.port, t.tls) == (origin[1], origin[2], origin[0] == "https")
    assert t.label == f"{origin[0]}://{'[::1]' if origin[1] == '::1' else origin[1]}:{origin[2]}"


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/v1", "http:///v1", "unix:///tmp/s"])
def test_target_parse_refuses_non_http_urls(url):
    with pytest.raises(ValueError, match="not an http"):
        Target.parse(url)


# ------------------------------------------------------------------------------------------ bodies
async def test_content_length_chunked_and_204_bodies(upstream, client):
    port, peers = await upstream()
    resp, body = await fetch(client, f"http://127.0.0.1:{port}/length")
    assert (resp.status, resp.headers["content-length"], body) == (200, "1000", b"0123456789" * 100)
    resp, body = await fetch(client, f"http://127.0.0.1:{port}/chunked")
    assert (resp.status, resp.headers["transfer-encoding"], body) == (200, "chunked", b"alpha,beta,gamma")
    resp, body = await fetch(client, f"http://127.0.0.1:{port}/empty")
    assert (resp.status, body) == (204, b"")
    assert client.idle_connections() == 1 and len(set(peers)) == 1


async def test_close_delimited_body(raw, client):
    srv = await raw(sends(http(None, "Content-Type: text/plain") + b"part one,", lambda w: w.write(b"part two")))
    resp, body = await fetch(client, srv.url())
    assert (resp.status, body) == (200, b"part one,part two")
    assert client.idle_connections() == 0


async def test_headers_lower_cased_and_repeats_joined(raw, client):
    srv = await raw(answering(http(b"", "X-Mixed-Case: Value", "Vary: a", "vary: b", "VARY: c")))
    resp, _ = await fetch(client, srv.url())
    assert resp.headers == {"x-mixed-case": "Value", "vary": "a, b, c", "content-length": "0"}


# ---------------------------------------------------------------------------------- request on the wire
async def test_request_bytes_with_defaults(raw, client):
    srv = await raw(answering(http()))
    await fetch(client, srv.url("/v1/chat?a=1"), b'{"a": 1}', {"content-type": "application/json"})
    assert srv.requests == [
        b"POST /v1/chat?a=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"User-Agent: Tiergate\r\nAccept-Encoding: gzip, deflate\r\nContent-Length: 8\r\n\r\n"
        b'{"a": 1}' % srv.port]


async def test_caller_headers_override_defaults(raw, make_client):
    srv = await raw(answering(http()))
    client = make_client(user_agent="Tiergate/9")
    await fetch(client, srv.url("/"), b"", {"user-agent": "agent/1", "Accept-Encoding": "identity"})
    await client.request("GET", srv.url("/m"), b"\x00\xff", {}, timeouts=T)
    assert srv.requests == [
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nuser-agent: agent/1\r\nAccept-Encoding: identity\r\n"
        b"Content-Length: 0\r\n\r\n" % srv.port,
        b"GET /m HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: Tiergate/9\r\nAccept-Encoding: gzip, deflate\r\n"
        b"Content-Length: 2\r\n\r\n\x00\xff" % srv.port]


async def test_host_header_of_an_ipv6_literal(raw, client):
    try:
        srv = await raw(answering(http()), host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    await fetch(client, srv.url(host="[::1]"))
    assert srv.requests[0].split(b"\r\n")[1] == b"Host: [::1]:%d" % srv.port


async def test_host_header_is_per_origin_for_the_same_path_and_headers(raw, client):
    one, two = await raw(answering(http())), await raw(answering(http()))
    await fetch(client, one.url(), b"{}", {"content-type": "application/json"})
    await fetch(client, two.url(), b"{}", {"content-type": "application/json"})
    assert one.requests[0].split(b"\r\n")[1] == b"Host: 127.0.0.1:%d" % one.port
    assert two.requests[0].split(b"\r\n")[1] == b"Host: 127.0.0.1:%d" % two.port


@pytest.mark.parametrize("headers", [{"x-a": "b\r\nInjected: 1"}, {"x-a": "b\nc"}, {"x-a\r\nInjected": "1"},
                                     {"x-a": "b\x00"}, {"": "v"}, {"a:b": "v"}])
async def test_header_with_line_break_raises_and_sends_nothing(raw, client, headers):
    srv = await raw(answering(http()))
    with pytest.raises(ValueError):
        await client.request("POST", srv.url(), b"body", headers, timeouts=T)
    assert srv.connections == 0 and srv.requests == []


async def test_framing_headers_from_the_caller_are_dropped(raw, client):
    srv = await raw(answering(http()))
    await fetch(client, srv.url("/x"), b"abc", {"Host": "evil.test", "Content-Length": "99",
                                                  "transfer-encoding": "chunked", "Connection": "close",
                                                  "x-keep": "1"})
    assert srv.requests == [b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-keep: 1\r\nUser-Agent: Tiergate\r\n"
                            b"Accept-Encoding: gzip, deflate\r\nContent-Length: 3\r\n\r\nabc" % srv.port]


@pytest.mark.parametrize("url_path, sent", [("/a b/c?q=x y", b"/a%20b/c?q=x%20y"), ("/ok%20already", b"/ok%20already"),
                                            ("/v1/models/m:generate?key=a/b", b"/v1/models/m:generate?key=a/b")])
async def test_unsafe_path_characters_are_percent_encoded(raw, client, url_path, sent):
    srv = await raw(answering(http()))
    await fetch(client, srv.url(url_path))
    assert srv.requests[0].split(b"\r\n")[0] == b"POST " + sent + b" HTTP/1.1"


# -------------------------------------------------------------------------------------- keep-alive
async def test_sequential_requests_share_a_connection_and_connection_close_ends_it(upstream, client):
    port, peers = await upstream()
    for _ in range(2):
        assert (await fetch(client, f"http://127.0.0.1:{port}/length"))[0].status == 200
    assert len(set(peers)) == 1 and client.idle_connections() == 1
    resp, body = await fetch(client, f"http://127.0.0.1:{port}/close")
    assert (resp.headers["connection"], body, client.idle_connections()) == ("close", b"bye", 0)
    await fetch(client, f"http://127.0.0.1:{port}/length")
    assert len(set(peers)) == 2


async def test_response_released_before_its_body_is_read_is_not_reused(raw, client):
    srv = await raw(answering(http(b"x" * 5000)))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    resp.release()
    assert client.idle_connections() == 0
    await asyncio.wait_for(srv.closed.wait(), 2)
    assert (await fetch(client, srv.url()))[1] == b"x" * 5000
    assert srv.connections == 2


async def test_connection_idle_longer_than_keepalive_is_not_taken(raw, make_client, monkeypatch):
    class Clock:
        now = 1000.0

        def monotonic(self) -> float:
            return self.now
    clock = Clock()
    monkeypatch.setattr(http_client, "time", clock)
    srv = await raw(answering(http()))
    client = make_client(keepalive=30)
    await fetch(client, srv.url())
    clock.now += 29
    await fetch(client, srv.url())
    assert srv.connections == 1
    clock.now += 31
    await fetch(client, srv.url())
    assert srv.connections == 2 and srv.eofs == 1  # the expired one was closed


@pytest.mark.parametrize("by", ["sweep", "client-close"])
async def test_idle_connections_closed_by_the_sweep_and_by_closing_the_client(raw, make_client, by):
    srv = await raw(answering(http()))
    client = make_client(keepalive=0.05 if by == "sweep" else 30)
    await fetch(client, srv.url())
    assert client.idle_connections() == 1
    if by == "client-close":
        await client.close()
        with pytest.raises(ConnectFailed):
            await client.request("POST", srv.url(), b"", {}, timeouts=T)
    await asyncio.wait_for(srv.closed.wait(), 2)
    assert (client.idle_connections(), srv.eofs, srv.connections) == (0, 1, 1)


# ---------------------------------------------------------------------------- stale connection retry
def stale_after_first(closing: int = 1):
    """Connections below `closing` answer one request and close on the next without answering (as a
    server that timed the idle connection out as the request arrived); the later ones answer."""
    async def handler(srv, reader, writer, index):
        if index < closing:
            await srv.read_request(reader)
            writer.write(http())
            await writer.drain()
            await srv.read_request(reader)
            return
        await answering(http(b"fresh"))(srv, reader, writer, index)
    return handler


async def test_stale_pooled_connection_is_retried_once_on_a_new_one(raw, client):
    srv = await raw(stale_after_first())
    await fetch(client, srv.url())
    resp, body = await fetch(client, srv.url())
    assert (resp.status, body, srv.connections, len(srv.requests)) == (200, b"fresh", 2, 3)


async def test_retry_after_a_stale_connection_does_not_take_another_pooled_one(raw, client):
    srv = await raw(stale_after_first(closing=2))
    first = await asyncio.gather(*(client.request("POST", srv.url(), b"", {}, timeouts=T) for _ in range(2)))
    for resp in first:
        await resp.read()
        resp.release()
    assert client.idle_connections() == 2
    resp, body = await fetch(client, srv.url())
    assert (resp.status, body, srv.connections) == (200, b"fresh", 3)


async def test_server_closing_every_new_connection_gives_connection_broken(raw, make_client):
    async def handler(srv, reader, writer, index):
        if index == 0:
            await stale_after_first()(srv, reader, writer, index)
    srv = await raw(handler)
    client = make_client()
    await fetch(client, srv.url())
    with pytest.raises(ConnectionBroken):
        await client.request("POST", srv.url(), b"", {}, timeouts=T)
    assert srv.connections == 2  # the reused one, then exactly one retry
    with pytest.raises(ConnectionBroken):  # a new connection is not retried
        await make_client().request("POST", srv.url(), b"", {}, timeouts=T)
    assert srv.connections == 3


# -------------------------------------------------------------------------------------- encodings
TEXT = b"".join(b"line %d of a body worth compressing\n" % i for i in range(400))


def raw_deflate(data: bytes) -> bytes:
    z = zlib.compressobj(wbits=-15)
    return z.compress(data) + z.flush()


@pytest.mark.parametrize("encoding, packed", [("gzip", gzip.compress(TEXT)), ("deflate", zlib.compress(TEXT)),
                                              ("deflate", raw_deflate(TEXT)), ("x-gzip", gzip.compress(TEXT))],
                         ids=["gzip", "deflate-zlib", "deflate-raw", "x-gzip"])
@pytest.mark.parametrize("cuts", [(), (1,), (2, 3), (100, 500, 900)], ids=["whole", "1", "2-3", "thirds"])
async def test_compressed_bodies_decoded_across_reads(raw, client, encoding, packed, cuts):
    pieces = [packed[a:b] for a, b in zip((0, *cuts), (*cuts, len(packed)), strict=True)]

    async def handler(srv, reader, writer, index):
        await srv.read_request(reader)
        writer.write(http(None, f"Content-Encoding: {encoding}", "Transfer-Encoding: chunked"))
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await srv.until_eof(reader)
    srv = await raw(handler)
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    assert b"".join([part async for part in resp.iter_any()]) == TEXT
    resp.release()
    assert client.idle_connections() == 1


# ------------------------------------------------------------------------------ responses, errors
async def test_interim_103_then_the_real_response(raw, client):
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    srv = await raw(answering(early + http(b"real", "X-Final: 1")))
    for _ in range(2):
        resp, body = await fetch(client, srv.url())
        assert (resp.status, resp.headers, body) == (200, {"x-final": "1", "content-length": "4"}, b"real")
    assert srv.connections == 1


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.6\r\n",
    http(b"", *(f"X-Filler-{i}: {'v' * 1000}" for i in range(MAX_HEADER_BYTES // 1000 + 1))),
    http(b"", f"X-Huge: {'v' * MAX_HEADER_BYTES}"),
    http(b"", "Upgrade: websocket", "Connection: upgrade", status="101 Switching Protocols"),
    http(b"\x1b\x00", "Content-Encoding: br"),
    http(b"\x1f\x8b\x08\x00garbage-not-gzip", "Content-Encoding: gzip"),
    http(b"not deflate at all, not even raw", "Content-Encoding: deflate"),
], ids=["garbage", "many-headers", "one-huge-header", "upgrade", "br", "corrupt-gzip", "corrupt-deflate"])
async def test_invalid_responses_are_bad_http(raw, client, reply):
    srv = await raw(answering(reply))
    with pytest.raises(BadHTTP):
        await fetch(client, srv.url())
    assert client.idle_connections() == 0


async def test_bytes_after_a_complete_response_drop_the_connection(raw, client):
    srv = await raw(answering(http(b"fine") + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad"))
    resp, body = await fetch(client, srv.url())
    assert (resp.status, body, client.idle_connections()) == (200, b"fine", 0)
    await fetch(client, srv.url())
    assert srv.connections == 2


async def test_reset_mid_body_is_connection_broken(raw, client):
    srv = await raw(sends(HALF, reset))
    with pytest.raises(ConnectionBroken):
        await fetch(client, srv.url())
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    with pytest.raises(ConnectionBroken):
        async for part in resp.iter_any():
            assert part == b"0123456789"
    assert client.idle_connections() == 0


async def test_chunked_body_cut_by_a_clean_close_is_connection_broken(raw, client):
    srv = await raw(sends(http(None, "Transfer-Encoding: Chunked") + chunk(b"first"), lambda w: None))
    with pytest.raises(ConnectionBroken):
        await fetch(client, srv.url())


async def test_refused_port_is_connect_failed(client):
    port = free_port()
    with pytest.raises(ConnectFailed, match=f"http://127.0.0.1:{port}"):
        await client.request("POST", f"http://127.0.0.1:{port}/v1", b"", {}, timeouts=T)


async def test_error_messages_never_hold_the_path_or_query(raw, client):
    servers = [await raw(h) for h in (answering(b"garbage\r\n\r\n"), sends(HALF, lambda w: None),
                                      answering(http(b"", "Content-Encoding: br")), sends(b""))]
    errors = []
    for port, total in zip([srv.port for srv in servers] + [free_port()], (5, 5, 5, 0.1, 5), strict=True):
        with pytest.raises(HTTPClientError) as info:
            await fetch(client, f"http://127.0.0.1:{port}/v1/private-path?key={SECRET}",
                        timeouts=Timeouts(total=total))
        errors.append(info.value)
    assert [type(e) for e in errors] == [BadHTTP, ConnectionBroken, BadHTTP, Timeout, ConnectFailed]
    for e in errors:
        assert SECRET not in f"{e} {e!r}" and "private-path" not in f"{e} {e!r}"


# --------------------------------------------------------------------------------------- timeouts
async def test_total_timeout_when_the_server_never_answers(raw, client):
    srv = await raw(sends(b""))
    with pytest.raises(asyncio.TimeoutError) as info:
        await client.request("POST", srv.url(), b"", {}, timeouts=Timeouts(total=0.1))
    assert isinstance(info.value, Timeout)
    await asyncio.wait_for(srv.closed.wait(), 2)  # the client closed the connection


async def test_read_timeout_mid_stream(raw, client):
    srv = await raw(sends(CHUNKED + chunk(b"first")))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=Timeouts(read=0.1))
    it = resp.iter_any()
    assert await it.__anext__() == b"first"
    with pytest.raises(Timeout):
        await it.__anext__()
    await asyncio.wait_for(srv.closed.wait(), 2)
    resp.release()
    assert client.idle_connections() == 0


async def test_connect_timeout_with_a_resolver_that_never_returns(make_client):
    async def resolver(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []
    client = make_client(resolver=resolver)
    with pytest.raises(Timeout, match="could not connect to http://upstream.test:8080"):
        await client.request("POST", "http://upstream.test:8080/v1", b"", {}, timeouts=Timeouts(connect=0.05))


async def test_os_level_connect_timeout_is_a_timeout(make_client):
    async def resolver(host: str, port: int) -> list[str]:
        raise TimeoutError(110, "resolving timed out")
    client = make_client(resolver=resolver)
    with pytest.raises(Timeout, match="http://upstream.test:8080"):
        await client.request("POST", "http://upstream.test:8080/v1", b"", {}, timeouts=Timeouts())


async def test_close_delimited_body_cut_by_the_total_timeout_is_not_complete(raw, client):
    srv = await raw(sends(http(None) + b"first"))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=Timeouts(total=0.1))
    await asyncio.wait_for(srv.closed.wait(), 2)  # timed out while nobody was reading
    with pytest.raises(Timeout):
        await resp.read()


# -------------------------------------------------------------------------------------- streaming
async def test_iter_any_gives_chunks_as_the_server_sends_them(raw, client):
    steps = [asyncio.Event(), asyncio.Event()]

    async def handler(srv, reader, writer, index):
        await srv.read_request(reader)
        writer.write(CHUNKED + chunk(b"one"))
        for step, data in zip(steps, (chunk(b"two"), b"0\r\n\r\n"), strict=True):
            await writer.drain()
            await step.wait()
            writer.write(data)
        await srv.until_eof(reader)
    srv = await raw(handler)
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    it = resp.iter_any()
    assert await it.__anext__() == b"one"
    steps[0].set()
    assert await it.__anext__() == b"two"
    steps[1].set()
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    resp.release()
    assert client.idle_connections() == 1


async def test_back_pressure_pauses_the_socket_and_resumes_it(raw, client, monkeypatch):
    monkeypatch.setattr(http_client, "HIGH_WATER", 1024)
    payload = bytes(range(256)) * 2048  # 512 KiB
    srv = await raw(answering(http(payload)))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    conn = resp._conn
    await until(lambda: conn.paused, "the stream paused")
    assert not conn.transport.is_reading()
    parts = [await resp.__anext__()]
    assert not conn.paused and conn.transport.is_reading()
    parts += [part async for part in resp.iter_any()]
    assert b"".join(parts) == payload
    resp.release()
    assert client.idle_connections() == 1


async def test_body_read_whole_past_high_water_keeps_its_connection(raw, client, monkeypatch):
    monkeypatch.setattr(http_client, "HIGH_WATER", 1024)
    srv = await raw(answering(http(b"y" * 5000)))
    for _ in range(2):
        assert (await fetch(client, srv.url()))[1] == b"y" * 5000
        assert client.idle_connections() == 1
    assert srv.connections == 1


@pytest.mark.parametrize("arrival", ["at once", "then stall"])
async def test_read_refuses_a_body_over_max_body_bytes(raw, client, monkeypatch, arrival):
    monkeypatch.setattr(http_client, "MAX_BODY_BYTES", 1000)
    srv = await raw(sends(http(b"z" * 2000) if arrival == "at once" else http(None, "Content-Length: 3000")
                          + b"z" * 2000))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    with pytest.raises(BadHTTP, match="larger than 1000 bytes"):
        await resp.read()
    assert resp.closed and client.idle_connections() == 0


async def test_cancelled_read_closes_the_connection(raw, client):
    srv = await raw(sends(HALF))
    resp = await client.request("POST", srv.url(), b"", {}, timeouts=T)
    conn = resp._conn
    task = asyncio.create_task(resp.read())
    await until(lambda: resp._waiter is not None, "read() waits")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert resp.closed and conn.lost
    resp.release()
    assert client.idle_connections() == 0
    await asyncio.wait_for(srv.closed.wait(), 2)


# -------------------------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "upstream.test").configure_cert(server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    return server, trusting


async def test_tls_with_a_trusted_ca_and_connection_reuse(upstream, make_client, tls):
    port, peers = await upstream(tls[0])
    client = make_client(ssl_context=tls[1])
    for path in ("/length", "/chunked"):
        resp, body = await fetch(client, f"https://127.0.0.1:{port}{path}")
        assert resp.status == 200 and body in (b"0123456789" * 100, b"alpha,beta,gamma")
    assert len(peers) == 2 and len(set(peers)) == 1


async def test_tls_untrusted_certificate_is_connect_failed(upstream, make_client, tls):
    port, _ = await upstream(tls[0])
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await make_client().request("POST", f"https://127.0.0.1:{port}/length", b"", {}, timeouts=T)


async def test_resolver_for_names_not_for_ip_literals(upstream, make_client, tls):
    asked: list = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]
    port, _ = await upstream(tls[0])
    client = make_client(ssl_context=tls[1], resolver=resolver)
    resp, body = await fetch(client, f"https://upstream.test:{port}/length")
    assert (resp.status, len(body)) == (200, 1000) and asked == [("upstream.test", port)]
    await fetch(client, f"https://127.0.0.1:{port}/length")
    assert asked == [("upstream.test", port)]
    with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):  # the name is what is verified
        await client.request("POST", f"https://other.test:{port}/length", b"", {}, timeouts=T)
    assert asked[-1] == ("other.test", port)


async def test_the_default_tls_context_is_loaded_off_the_event_loop_once(monkeypatch):
    import threading

    from app.providers import http_client

    threads: list[str] = []
    real = http_client.default_ssl_context

    def loading() -> ssl.SSLContext:
        threads.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(http_client, "default_ssl_context", loading)
    client = UpstreamHTTP()
    client.prepare_tls()
    client.prepare_tls()
    first, second = await asyncio.gather(client._ssl(), client._ssl())
    assert first is second and isinstance(first, ssl.SSLContext)
    assert len(threads) == 1 and threads[0] != threading.main_thread().name
    await client.close()
