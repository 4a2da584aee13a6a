"""The endpoint's security middlewares on a tiny aiohttp app (real server on 127.0.0.1, aiohttp test client).

Covers forged Host and Origin headers, CORS preflights, missing/wrong/revoked keys, the master key and the
management API, failed-attempt rate limiting, constant-time comparison, body/header limits, slow clients
(slowloris headers and bodies), request time limits, the stream cap, and a property-based fuzz of the
headers every request passes through.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import app.agents as agents_mod
import app.server.security as sec
from app.agents import AgentPolicy, AgentRegistry
from app.config.schema import ServerSettings
from app.errors import ConfigError, TiergateError
from app.secrets.redact import scrub_for_client
from app.secrets.store import SecretStore
from tests.keyring_fixtures import MemoryKeyring, memory_keyring  # noqa: F401


@dataclass
class Settings(ServerSettings):
    """ServerSettings plus the limits security.py reads with getattr (not in the schema yet)."""

    header_timeout: float = 30.0
    body_timeout: float = 120.0
    allowed_hosts: list[str] = field(default_factory=list)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@web.middleware
async def render_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stands in for the server's error middleware."""
    try:
        return await handler(request)
    except TiergateError as e:
        headers = {"Retry-After": str(e.details["retry_after"])} if "retry_after" in e.details else {}
        return web.json_response({"error": {"type": e.code, "title": e.title, "message": scrub_for_client(e.message)}},
                                 status=e.status, headers=headers)


class World:
    """Keys, registry and a client on a running test server."""

    def __init__(self, tmp_path, keyring_backend: MemoryKeyring) -> None:
        self.store = SecretStore()
        self.master = self.store.master_key()
        self.registry = AgentRegistry(tmp_path / "agents.json",
                                      policies={"aider": AgentPolicy(allowed_tiers=("coder",))})
        self.aider = self.registry.add("aider")
        self.codex = self.registry.add("codex")
        self.revoked = self.registry.add("old-agent")
        self.registry.revoke("old-agent")
        self.keyring = keyring_backend
        self.clock = FakeClock()
        self.limiter = sec.FailedAuthLimiter(max_failures=3, window=60, block_seconds=30, clock=self.clock)
        self.release = asyncio.Event()
        self.handler_calls = 0
        self.client: TestClient | None = None

    def build_app(self, settings: Settings, *, public_paths=("/health",)) -> web.Application:
        gate = sec.Gate(settings, self.registry, self.store, limiter=self.limiter, public_paths=public_paths)
        app = web.Application(middlewares=[render_errors, gate.middleware], **sec.app_limits(settings))
        gate.install(app)

        async def chat(request: web.Request) -> web.Response:
            self.handler_calls += 1
            body = await sec.read_body(request, settings)
            return web.json_response({"agent": request[sec.AGENT_KEY].name, "bytes": len(body)})

        async def whoami(request: web.Request) -> web.Response:
            self.handler_calls += 1
            agent = request[sec.AGENT_KEY]
            return web.json_response({"agent": agent.name, "master": agent.is_master})

        async def star(request: web.Request) -> web.Response:
            return web.json_response({}, headers={"Access-Control-Allow-Origin": "*"})

        async def wait(request: web.Request) -> web.Response:
            await self.release.wait()
            return web.json_response({"agent": request[sec.AGENT_KEY].name})

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(30)
            return web.json_response({})

        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", whoami)
        app.router.add_get("/v1/star", star)
        app.router.add_post("/v1/wait", wait)
        async def slow_stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b"data: first\n\n")
            await asyncio.sleep(30)
            return response

        app.router.add_get("/v1/slow", slow)
        app.router.add_get("/v1/slow-stream", slow_stream)
        app.router.add_get("/tiergate/status", whoami)
        app.router.add_post("/tiergate/privacy", whoami)
        app.router.add_get("/health", whoami)
        return app

    async def start(self, settings: Settings, **kw: Any) -> TestClient:
        server = TestServer(self.build_app(settings, **kw))
        # TestServer() ignores runner kwargs; start_server() passes them to AppRunner as the app does.
        await server.start_server(**sec.server_limits(settings))
        self.client = TestClient(server)
        await self.client.start_server()
        return self.client


@pytest.fixture
async def world(tmp_path, memory_keyring):
    w = World(tmp_path, memory_keyring)
    yield w
    if w.client is not None:
        await w.client.close()


@pytest.fixture
async def client(world: World) -> TestClient:
    return await world.start(Settings(allowed_origins=["http://localhost:3000"]))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ------------------------------------------------------------------------------------------- Host
@pytest.mark.parametrize("host,ok", [
    ("localhost:4000", True), ("127.0.0.1:4000", True), ("[::1]:4000", True), ("LOCALHOST", True),
    ("localhost.", True), ("127.0.0.2", True), ("localhost", True),
    ("evil.example", False), ("127.0.0.1.evil.com", False), ("localhost.evil.com", False),
    ("evil.localhost.example:4000", False), ("0.0.0.0:4000", False), ("192.168.1.5:4000", False),
    ("localhost:99999", False), ("localhost:abc", False), ("user@localhost", False),
    ("[::1", False), ("[::1]x", False), ("0x7f000001", False), ("localhost/..", False),
])
async def test_host_header(client: TestClient, world: World, host: str, ok: bool) -> None:
    r = await client.get("/v1/models", headers={"Host": host, **bearer(world.aider)})
    assert r.status == (200 if ok else 403)
    if not ok:
        body = await r.json()
        assert body["error"]["title"] == "Host not allowed"


async def test_missing_host_is_refused(client: TestClient, world: World) -> None:
    # HTTP/1.0 allows leaving Host out (aiohttp's client always sends one, so a raw socket here).
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET /v1/models HTTP/1.0\r\nAuthorization: Bearer {world.aider}\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.0 403") or status_line.startswith(b"HTTP/1.1 403"), status_line
    assert world.handler_calls == 0


async def test_forged_host_is_refused_before_auth(client: TestClient, world: World) -> None:
    r = await client.get("/tiergate/status", headers={"Host": "attacker.example", **bearer(world.master)})
    assert r.status == 403 and world.handler_calls == 0


def test_host_rules_for_non_loopback_bind() -> None:
    lan = Settings(host="0.0.0.0", allowed_hosts=["tiergate.lan"])
    assert sec.host_allowed("192.168.1.5:4000", lan)
    assert sec.host_allowed("[fe80::1]:4000", lan)
    assert sec.host_allowed("tiergate.lan:4000", lan)
    assert sec.host_allowed("localhost:4000", lan)
    assert not sec.host_allowed("evil.example", lan)
    assert not sec.host_allowed("192.168.1.5:4000", Settings())  # loopback bind: loopback only


def test_binding_elsewhere_forces_auth() -> None:
    assert sec.auth_required(Settings(host="127.0.0.1", require_auth=False)) is False
    assert sec.auth_required(Settings(host="0.0.0.0", require_auth=False)) is True
    assert sec.auth_required(Settings(host="192.168.1.5", require_auth=False)) is True


# ------------------------------------------------------------------------------------------- Origin
async def test_requests_without_origin_pass(client: TestClient, world: World) -> None:
    r = await client.get("/v1/models", headers=bearer(world.aider))
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:3001", "http://localhost",
                                    "https://localhost:3000", "file://", "http://localhost:3000.evil.com"])
async def test_foreign_origins_are_refused(client: TestClient, world: World, origin: str) -> None:
    r = await client.post("/v1/chat/completions", data=b"{}", headers={"Origin": origin, **bearer(world.aider)})
    assert r.status == 403
    assert "Access-Control-Allow-Origin" not in r.headers
    assert world.handler_calls == 0


async def test_allowlisted_origin_gets_cors_headers_on_success_and_error(client: TestClient, world: World) -> None:
    r = await client.get("/v1/models", headers={"Origin": "http://LOCALHOST:3000", **bearer(world.aider)})
    assert r.status == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Origin" in r.headers["Vary"]
    r = await client.get("/v1/models", headers={"Origin": "http://localhost:3000"})  # no key
    assert r.status == 401
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


async def test_cross_site_browser_request_without_origin_is_refused(client: TestClient, world: World) -> None:
    r = await client.get("/v1/models", headers={"Sec-Fetch-Site": "cross-site", **bearer(world.aider)})
    assert r.status == 403
    r = await client.get("/v1/models", headers={"Sec-Fetch-Site": "none", **bearer(world.aider)})
    assert r.status == 200


async def test_wildcard_acao_from_a_handler_is_never_sent(client: TestClient, world: World) -> None:
    r = await client.get("/v1/star", headers=bearer(world.aider))
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = await client.get("/v1/star", headers={"Origin": "http://localhost:3000", **bearer(world.aider)})
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


async def test_preflight_from_allowlisted_origin(client: TestClient, world: World) -> None:
    r = await client.options("/v1/chat/completions", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type, anthropic-version"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type, anthropic-version"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert world.handler_calls == 0


@pytest.mark.parametrize("headers,status", [
    ({"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, 403),
    ({"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT"}, 403),
    ({"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "x-ok, bad header"}, 400),
])
async def test_bad_preflights(client: TestClient, headers: dict[str, str], status: int) -> None:
    r = await client.options("/v1/chat/completions", headers=headers)
    assert r.status == status
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("entry", ["*", "null", "localhost:3000", "http://x.example/path"])
def test_bad_allowed_origins_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError):
        sec.Gate(Settings(allowed_origins=[entry]), AgentRegistry(Path("/nonexistent/agents.json")), None)


# ------------------------------------------------------------------------------------------- keys
async def test_agent_key_via_bearer_and_x_api_key(client: TestClient, world: World) -> None:
    r = await client.get("/v1/models", headers=bearer(world.aider))
    assert (await r.json()) == {"agent": "aider", "master": False}
    r = await client.get("/v1/models", headers={"x-api-key": world.codex})
    assert (await r.json()) == {"agent": "codex", "master": False}
    r = await client.get("/v1/models", headers={"Authorization": "Bearer wrong", "x-api-key": world.codex})
    assert (await r.json())["agent"] == "codex"


@pytest.mark.parametrize("headers_fn,fragment", [
    (lambda w: {}, "Missing API key"),
    (lambda w: bearer("tg-aider-" + "0" * 64), "Invalid or revoked"),
    (lambda w: bearer(w.revoked), "Invalid or revoked"),
    (lambda w: {"x-api-key": w.aider[:-1]}, "Invalid or revoked"),
    (lambda w: {"Authorization": f"Basic {w.aider}"}, "Missing API key"),
    (lambda w: {"Authorization": w.aider}, "Missing API key"),  # no scheme
    (lambda w: bearer(w.master + " "), None),  # surrounding spaces are trimmed: valid
])
async def test_missing_wrong_and_revoked_keys(client: TestClient, world: World, headers_fn, fragment) -> None:
    headers = headers_fn(world)
    r = await client.get("/v1/models", headers=headers)
    text = await r.text()
    if fragment is None:
        assert r.status == 200
        return
    assert r.status == 401
    assert fragment in text
    for value in headers.values():
        assert value.split()[-1] not in text  # the presented key is never echoed
    assert world.handler_calls == 0


async def test_management_api_needs_master_key(client: TestClient, world: World) -> None:
    r = await client.post("/tiergate/privacy", headers=bearer(world.aider))
    assert r.status == 403 and (await r.json())["error"]["title"] == "Master key required"
    r = await client.get("/tiergate/status")
    assert r.status == 401
    r = await client.post("/tiergate/privacy", headers={"x-api-key": world.master})
    assert (await r.json()) == {"agent": "master", "master": True}
    r = await client.get("/v1/models", headers=bearer(world.master))
    assert (await r.json()) == {"agent": "master", "master": True}


@pytest.mark.parametrize("target", ["/v1/../tiergate/status", "/%74iergate/status", "/tiergate%2Fstatus",
                                    "//tiergate/status", "/tiergate/status?x=/v1/models", "/tiergate/./status"])
async def test_management_api_cannot_be_reached_through_path_tricks(client: TestClient, world: World,
                                                                    target: str) -> None:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {world.aider}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 403, 404), response[:200]
    assert b'"master"' not in response  # the management handler never ran for an agent key


async def test_agent_identity_carries_policy(world: World) -> None:
    identity = world.registry.authenticate(world.aider)
    assert identity.allowed_tiers == ("coder",)


async def test_public_paths_need_no_key(client: TestClient) -> None:
    r = await client.get("/health")
    assert (await r.json()) == {"agent": "anonymous", "master": False}


async def test_auth_off_on_loopback_is_anonymous_but_management_still_needs_master(world: World) -> None:
    client = await world.start(Settings(require_auth=False))
    r = await client.get("/v1/models")
    assert (await r.json())["agent"] == "anonymous"
    r = await client.get("/v1/models", headers=bearer(world.aider))
    assert (await r.json())["agent"] == "aider"  # a presented key still names the agent
    r = await client.get("/v1/models", headers=bearer("tg-x-" + "1" * 64))
    assert r.status == 401
    r = await client.get("/tiergate/status")
    assert r.status == 401


async def test_revocation_reaches_a_running_server(client: TestClient, world: World) -> None:
    assert (await client.get("/v1/models", headers=bearer(world.codex))).status == 200
    AgentRegistry(world.registry.path).revoke("codex")  # as `tiergate agents revoke` in another process
    world.registry._checked_at -= world.registry.recheck_seconds  # the server re-reads within a second
    assert (await client.get("/v1/models", headers=bearer(world.codex))).status == 401


async def test_master_rotation_reaches_a_running_server(client: TestClient, world: World, monkeypatch) -> None:
    assert (await client.get("/tiergate/status", headers=bearer(world.master))).status == 200
    new = SecretStore().rotate_master_key()
    world.clock.now += 31  # the limiter's clock; the cache uses its own: expire it directly
    gate = [m.__self__ for m in client.app.middlewares if isinstance(getattr(m, "__self__", None), sec.Gate)][0]
    gate.master._read_at = None
    assert (await client.get("/tiergate/status", headers=bearer(world.master))).status == 401
    assert (await client.get("/tiergate/status", headers=bearer(new))).status == 200


async def test_locked_keychain_leaves_agent_keys_working(world: World, caplog) -> None:
    world.keyring.locked = True
    client = await world.start(Settings())
    assert (await client.get("/v1/models", headers=bearer(world.aider))).status == 200
    assert (await client.get("/tiergate/status", headers=bearer(world.master))).status == 401
    assert "Master key unavailable" in caplog.text and "Keychain locked" in caplog.text


# ------------------------------------------------------------------------------------------- rate limit
async def test_failed_attempts_are_rate_limited_and_logged_without_values(
        client: TestClient, world: World, caplog) -> None:
    caplog.set_level(logging.INFO, logger="app.server.security")
    attempts = [f"tg-guess-{i:064x}" for i in range(3)]
    for key in attempts:
        assert (await client.get("/v1/models", headers=bearer(key))).status == 401
    r = await client.get("/v1/models", headers=bearer(world.aider))  # blocked: even a good key waits
    assert r.status == 429 and r.headers["Retry-After"] == "30"
    assert world.handler_calls == 0
    world.clock.now += 31
    assert (await client.get("/v1/models", headers=bearer(world.aider))).status == 200
    log_text = caplog.text
    assert "1 failed in the last 60 s" in log_text and "2 failed in the last 60 s" in log_text
    assert "3 failed attempts from 127.0.0.1 within 60 s" in log_text and "refusing that address for 30 s" in log_text
    for key in attempts:
        assert key not in log_text and key[-20:] not in log_text


def test_limiter_window_and_address_cap() -> None:
    clock = FakeClock()
    lim = sec.FailedAuthLimiter(max_failures=3, window=10, block_seconds=5, max_addresses=2, clock=clock)
    assert lim.record_failure("a") == 1
    clock.now += 11
    assert lim.record_failure("a") == 1  # the old failure left the window
    assert lim.record_failure("a") == 2
    assert lim.record_failure("a") == 3 and lim.blocked_for("a") == 5
    assert lim.blocked_for("b") == 0
    clock.now += 5
    assert lim.blocked_for("a") == 0
    for addr in ("b", "c", "d"):
        lim.record_failure(addr)
    assert len(lim._failures) <= 2


# ------------------------------------------------------------------------------------------- constant time
async def test_keys_are_compared_with_compare_digest(client: TestClient, world: World, monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    real = sec.hmac.compare_digest

    def spy(a, b):
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(sec.hmac, "compare_digest", spy)  # same module object as agents_mod.hmac
    assert agents_mod.hmac is sec.hmac
    await client.get("/v1/models", headers=bearer(world.aider))
    # master comparison + one per active agent (aider, codex), all on 32-byte digests: lengths never leak
    assert seen == [(32, 32)] * 3
    seen.clear()
    await client.get("/v1/models", headers=bearer("x"))
    assert seen == [(32, 32)] * 3


# ------------------------------------------------------------------------------------------- sizes
async def test_oversized_body_by_content_length_is_refused_before_reading(world: World) -> None:
    client = await world.start(Settings(max_body_bytes=1000))
    r = await client.post("/v1/chat/completions", data=b"x" * 1001, headers=bearer(world.aider))
    assert r.status == 413 and world.handler_calls == 0
    r = await client.post("/v1/chat/completions", data=b"x" * 1000, headers=bearer(world.aider))
    assert (await r.json())["bytes"] == 1000


async def test_oversized_chunked_body_is_refused(world: World) -> None:
    client = await world.start(Settings(max_body_bytes=1000))

    async def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = await client.post("/v1/chat/completions", data=chunks(), headers=bearer(world.aider))
    assert r.status == 413
    assert (await r.json())["error"]["type"] == "request_too_large"


async def test_oversized_headers_are_refused(world: World) -> None:
    client = await world.start(Settings(max_header_bytes=4096))
    many = {f"x-pad-{i}": "p" * 200 for i in range(25)}  # ~5.5 KB in total, each line small
    r = await client.get("/v1/models", headers={**many, **bearer(world.aider)})
    assert r.status == 431
    one_huge = {"x-huge": "h" * 5000}  # one line over max_field_size: aiohttp's parser refuses it
    r = await client.get("/v1/models", headers={**one_huge, **bearer(world.aider)})
    assert r.status == 400
    assert world.handler_calls == 0


def test_server_limits_defaults() -> None:
    s = ServerSettings()
    assert sec.server_limits(s) == {"keepalive_timeout": 30.0, "max_line_size": 8190,
                                    "max_field_size": 16384, "max_headers": 128}
    assert sec.app_limits(s) == {"client_max_size": 32 * 1024 * 1024}


# ------------------------------------------------------------------------------------------- slow clients
async def test_slowloris_headers_are_cut_off(world: World) -> None:
    client = await world.start(Settings(header_timeout=0.3))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n")
    closed = False
    try:
        for i in range(100):  # would take 10 s to finish; the server must hang up long before
            await asyncio.sleep(0.1)
            writer.write(f"X-Slow-{i}: a\r\n".encode())
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(1024), 0.01)
            except asyncio.TimeoutError:
                continue
            if data == b"":
                closed = True
                break
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    finally:
        writer.close()
    assert closed, "the server kept a connection with never-finished headers open"
    assert world.handler_calls == 0


async def test_slow_body_times_out(world: World) -> None:
    client = await world.start(Settings(body_timeout=0.3))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write((f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {world.aider}\r\n"
                  "Content-Length: 100\r\nContent-Type: application/json\r\n\r\n{").encode())
    await writer.drain()
    status_line = b""
    for _ in range(100):
        try:
            status_line = await asyncio.wait_for(reader.readline(), 0.1)
            break
        except asyncio.TimeoutError:
            writer.write(b" ")
            await writer.drain()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line


async def test_request_time_limit(world: World) -> None:
    client = await world.start(Settings(request_timeout=0.2))
    r = await client.get("/v1/slow", headers=bearer(world.aider))
    assert r.status == 408 and (await r.json())["error"]["type"] == "request_timeout"


async def test_request_time_limit_mid_stream_cuts_the_connection(world: World) -> None:
    import aiohttp

    client = await world.start(Settings(request_timeout=0.2))
    r = await client.get("/v1/slow-stream", headers=bearer(world.aider), timeout=aiohttp.ClientTimeout(total=20))
    assert r.status == 200
    assert await r.content.readuntil(b"\n\n") == b"data: first\n\n"
    with pytest.raises(aiohttp.ClientPayloadError):  # truncated, not a 408 spliced into the stream
        await r.read()


async def test_concurrent_stream_cap(world: World) -> None:
    client = await world.start(Settings(max_concurrent_streams=2))
    first = [asyncio.create_task(client.post("/v1/wait", headers=bearer(world.aider))) for _ in range(2)]
    for _ in range(200):
        await asyncio.sleep(0.01)
        r = await client.post("/v1/wait", headers=bearer(world.aider))
        if r.status == 429:
            break
        r.release()
    assert r.status == 429 and "max_concurrent_streams" in await r.text()
    assert (await client.get("/v1/models", headers=bearer(world.aider))).status == 200  # GETs not capped
    world.release.set()
    assert [(await t).status for t in first] == [200, 200]
    assert (await client.post("/v1/wait", headers=bearer(world.aider))).status == 200


# ------------------------------------------------------------------------------------------- fuzz
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                       max_size=80)


class FuzzWorld:
    """Keys and a middleware chain built once; each example runs one mocked request through it."""

    def __init__(self, tmp) -> None:
        self.store = SecretStore(backend=MemoryKeyring())
        self.master = self.store.master_key()
        self.registry = AgentRegistry(tmp / "agents.json")
        self.aider = self.registry.add("aider")
        self.settings = Settings(allowed_origins=["http://localhost:3000"])
        # A limiter that never blocks, so valid keys keep being checked after many failures.
        limiter = sec.FailedAuthLimiter(max_failures=10**9)
        gate = sec.Gate(self.settings, self.registry, self.store, limiter=limiter, public_paths=("/health",))

        async def handler(request: web.Request) -> web.StreamResponse:
            early = await gate.admit(request)  # the checks that run before any handler
            return early or web.json_response({"agent": request[sec.AGENT_KEY].name})

        self.handler = handler
        self.loop = asyncio.new_event_loop()


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory):
    w = FuzzWorld(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.loop.close()


@hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=st.one_of(st.sampled_from(["localhost:4000", "127.0.0.1", "[::1]:1", "evil.example"]), _header_text),
       origin=st.one_of(st.none(), st.sampled_from(["http://localhost:3000", "null"]), _header_text),
       auth=st.one_of(st.none(), _header_text, st.sampled_from(["Bearer ", "Bearer  ", "bearer x"])),
       api_key=st.one_of(st.none(), _header_text),
       method=st.sampled_from(["GET", "POST", "OPTIONS", "DELETE"]),
       path=st.sampled_from(["/v1/models", "/tiergate/status", "/health"]),
       use_valid=st.sampled_from([None, "aider", "master"]))
def test_fuzzed_headers_never_crash_and_only_valid_keys_pass(fuzz_world: FuzzWorld, host, origin, auth, api_key,
                                                              method, path, use_valid) -> None:
    w = fuzz_world
    if use_valid == "aider":
        api_key = w.aider
    elif use_valid == "master":
        auth = f"Bearer {w.master}"
    headers = {"Host": host}
    for name, value in (("Origin", origin), ("Authorization", auth), ("x-api-key", api_key)):
        if value is not None:
            headers[name] = value
    if method == "OPTIONS" and origin is not None:
        headers["Access-Control-Request-Method"] = "POST"
    request = make_mocked_request(method, path, headers=headers, loop=w.loop)
    try:
        response = w.loop.run_until_complete(w.handler(request))
    except TiergateError as e:
        assert e.status in (400, 401, 403)
        for secret in (w.aider, w.master):
            assert secret not in e.message
        return
    # Passed every guard: the Host names this machine and the Origin (if any) is allowlisted…
    assert sec.host_allowed(host, w.settings)
    assert origin is None or sec.normalize_origin(origin) == "http://localhost:3000"
    if response.status == 204:  # …a preflight, answered without a key
        assert method == "OPTIONS"
        return
    # …and a real request went through only with a valid key, or to the public path.
    agent = request[sec.AGENT_KEY].name
    if path == "/health":
        assert agent == "anonymous"
    else:
        keys = sec.presented_keys(request)
        assert (agent == "aider" and w.aider in keys) or (agent == "master" and w.master in keys)


async def test_without_a_secret_store_only_agent_keys_work(world: World) -> None:
    world.store = None
    client = await world.start(Settings())
    assert (await client.get("/v1/models", headers=bearer(world.aider))).status == 200
    assert (await client.get("/tiergate/status", headers=bearer(world.master))).status == 401
