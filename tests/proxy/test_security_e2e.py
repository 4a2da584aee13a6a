"""Security end to end, through the real proxy on 127.0.0.1 (issue 6, "Shown by"): keys on every endpoint,
Host and Origin checks, size and time limits against raw slow clients, Ollama's management endpoints never
exposed, and request bodies that cannot choose the upstream.

Errors are checked in the dialect of the endpoint called: OpenAI `{"error": {...}}` (chat, responses,
embeddings, models, management) and Anthropic `{"type": "error", "error": {...}}` (messages, count_tokens).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.fakes import DEFAULT_ANTHROPIC_KEY, DEFAULT_OPENAI_KEY, Fault, FakeOpenAI, Reply

HEAD = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: codex
    litellm_params: {{model: openai/gpt-5-codex, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY, api: responses}}
  - model_name: embed
    litellm_params: {{model: openai/text-embedding-3-small, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 32768, keep_alive: 10m}}
router_settings:
  num_retries: 0
  retry_after: 0.01
tiergate_settings:
  port: 0
"""
ORIGIN = "http://localhost:3000"


def config(**settings: Any) -> str:
    """HEAD plus tiergate_settings. Many tests send wrong keys on purpose: the per-address failure limit is
    raised unless a test sets it."""
    settings.setdefault("auth_max_failures", 100000)
    settings.setdefault("allowed_origins", [ORIGIN])
    return HEAD + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())


USER = [{"role": "user", "content": "hello there"}]
CHAT = {"model": "coder", "messages": USER}
MESSAGES = {"model": "orchestrator", "max_tokens": 50, "messages": USER}
COUNT = {"model": "orchestrator", "messages": USER}
RESPONSES = {"model": "coder", "input": "hello there"}
EMBED = {"model": "embed", "input": "hello there"}

# (method, path, body, dialect) for every client endpoint that needs a key.
ENDPOINTS: list[tuple[str, str, dict | None, str]] = [
    ("POST", "/v1/chat/completions", CHAT, "openai"),
    ("POST", "/chat/completions", CHAT, "openai"),
    ("POST", "/v1/messages", MESSAGES, "anthropic"),
    ("POST", "/v1/messages/count_tokens", COUNT, "anthropic"),
    ("POST", "/v1/responses", RESPONSES, "openai"),
    ("POST", "/responses", RESPONSES, "openai"),
    ("POST", "/v1/embeddings", EMBED, "openai"),
    ("POST", "/embeddings", EMBED, "openai"),
    ("GET", "/v1/models", None, "openai"),
    ("GET", "/models", None, "openai"),
    ("GET", "/health/upstreams", None, "openai"),
]
MANAGEMENT: list[tuple[str, str, dict | None]] = [
    ("GET", "/tiergate/status", None),
    ("GET", "/tiergate/privacy", None),
    ("PUT", "/tiergate/privacy", {"mode": "on"}),
    ("GET", "/tiergate/usage", None),
    ("GET", "/tiergate/events", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]


def assert_error(dialect: str, body: Any, *, code: str, anthropic_type: str) -> str:
    """`body` is an error in `dialect`'s exact shape; returns its message."""
    if dialect == "anthropic":
        assert isinstance(body, dict) and set(body) <= {"type", "error", "request_id"}, body
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        assert body["error"]["type"] == anthropic_type, body
        message = body["error"]["message"]
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["code"] == code, body
        message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def wrong_key() -> str:
    """A key of the right shape that no agent has."""
    return "tg-tester-" + secrets.token_hex(32)


async def call(p: Any, method: str, path: str, body: dict | None, headers: dict[str, str]) -> tuple[int, dict, Any]:
    """A raw request with exactly `headers` (no default Authorization)."""
    async with aiohttp.ClientSession() as s:
        async with s.request(method, p.base_url + path, json=body, headers=headers) as r:
            text = await r.read()
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            return r.status, dict(r.headers), parsed


# ================================================================================== authentication
@pytest.mark.parametrize(("method", "path", "body", "dialect"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_every_endpoint_refuses_missing_wrong_and_revoked_keys(proxy, method, path, body, dialect):
    p = await proxy(config())
    revoked = p.core.agents.add("gone")
    status, _, _ = await call(p, method, path, body, {"authorization": f"Bearer {revoked}"})
    assert status == 200  # the key worked…
    p.core.agents.revoke("gone")  # …until revoked (the running server sees it on the next request)
    bad = wrong_key()
    cases = {
        "missing": {},
        "empty bearer": {"authorization": "Bearer "},
        "wrong bearer": {"authorization": f"Bearer {bad}"},
        "wrong x-api-key": {"x-api-key": bad},
        "garbage": {"authorization": "Basic dXNlcjpwYXNz"},
        "revoked": {"authorization": f"Bearer {revoked}"},
        "revoked x-api-key": {"x-api-key": revoked},
        "provider key": {"authorization": f"Bearer {DEFAULT_OPENAI_KEY}"},
    }
    for name, headers in cases.items():
        status, _, got = await call(p, method, path, body, headers)
        assert status == 401, (name, got)
        message = assert_error(dialect, got, code="authentication_error", anthropic_type="authentication_error")
        assert bad not in json.dumps(got) and revoked not in json.dumps(got), name
        assert ("Missing API key" in message) == (name in ("missing", "empty bearer", "garbage")), (name, message)
    status, _, _ = await call(p, method, path, body, {"authorization": f"Bearer {p.key}"})
    assert status == 200  # the valid key still works after all those failures


async def test_sdks_see_authentication_errors_in_their_own_dialect(proxy):
    p = await proxy(config())
    bad = wrong_key()
    async with p.openai(key=bad) as oa, p.anthropic(key=bad) as an:
        await _sdk_auth_errors(oa, an)
    # and with the agent key the same SDKs work
    async with p.openai() as oa, p.anthropic() as an:
        assert (await oa.chat.completions.create(model="coder", messages=USER)).choices[0].message.content
        assert (await an.messages.create(model="orchestrator", max_tokens=10, messages=USER)).content


async def _sdk_auth_errors(oa: openai.AsyncOpenAI, an: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(openai.AuthenticationError) as e1:
        await oa.chat.completions.create(model="coder", messages=USER)
    with pytest.raises(openai.AuthenticationError) as e2:
        await oa.responses.create(model="coder", input="hi")
    with pytest.raises(openai.AuthenticationError):
        await oa.embeddings.create(model="embed", input="hi")
    with pytest.raises(openai.AuthenticationError):
        await oa.models.list()
    with pytest.raises(anthropic.AuthenticationError) as e3:
        await an.messages.create(model="orchestrator", max_tokens=10, messages=USER)
    with pytest.raises(anthropic.AuthenticationError):
        await an.messages.count_tokens(model="orchestrator", messages=USER)
    assert e1.value.status_code == e2.value.status_code == e3.value.status_code == 401
    assert e3.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("method", "path", "body"), MANAGEMENT, ids=[f"{m} {p}" for m, p, _ in MANAGEMENT])
async def test_management_api_needs_the_master_key(proxy, method, path, body):
    p = await proxy(config())
    for headers in ({}, {"authorization": f"Bearer {wrong_key()}"}):
        status, _, got = await call(p, method, path, body, headers)
        assert status == 401
        assert_error("openai", got, code="authentication_error", anthropic_type="")
    for headers in ({"authorization": f"Bearer {p.key}"}, {"x-api-key": p.key}):
        status, _, got = await call(p, method, path, body, headers)
        assert status == 403, got
        assert_error("openai", got, code="permission_error", anthropic_type="")
    assert p.core.privacy_mode() == "off"  # the agent's PUT changed nothing


async def test_master_key_sets_the_privacy_mode(proxy):
    p = await proxy(config())
    # the event stream opens for the master key (read first: the privacy changes below then end its handler)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.base_url + "/tiergate/events", headers={"authorization": f"Bearer {p.master}"}) as r:
            assert r.status == 200
            assert await r.content.readline() == b": tiergate events\n"
    status, _, got = await call(p, "PUT", "/tiergate/privacy", {"mode": "on"}, {"authorization": f"Bearer {p.master}"})
    assert (status, got["mode"]) == (200, "on")
    assert p.core.privacy_mode() == "on"
    status, _, got = await call(p, "GET", "/tiergate/privacy", None, {"x-api-key": p.master})
    assert (status, got["mode"]) == (200, "on")
    status, _, got = await call(p, "PUT", "/tiergate/privacy", {"mode": "off"}, {"authorization": f"Bearer {p.master}"})
    assert (status, got["mode"]) == (200, "off")
    status, _, got = await call(p, "GET", "/tiergate/status", None, {"authorization": f"Bearer {p.master}"})
    assert status == 200 and got["privacy"] == "off"


async def test_health_is_open_and_says_nothing_secret(proxy):
    p = await proxy(config())
    status, _, got = await call(p, "GET", "/health", None, {})
    assert status == 200 and got == {"status": "ok", "version": p.core.version}
    status, _, got = await call(p, "GET", "/health", None, {"authorization": f"Bearer {wrong_key()}"})
    assert status == 200  # a wrong key on the open path is not an error


async def test_repeated_failures_block_the_address_in_the_endpoints_dialect(proxy):
    p = await proxy(config(auth_max_failures=3, auth_block_seconds=60))
    for _ in range(3):
        status, _, _ = await call(p, "GET", "/v1/models", None, {"authorization": f"Bearer {wrong_key()}"})
        assert status == 401
    status, headers, got = await call(p, "POST", "/v1/messages", MESSAGES, {"x-api-key": p.key})
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert_error("anthropic", got, code="", anthropic_type="rate_limit_error")
    status, headers, got = await call(p, "POST", "/v1/chat/completions", CHAT, {"authorization": f"Bearer {p.key}"})
    assert status == 429
    assert_error("openai", got, code="rate_limit_error", anthropic_type="")
    status, _, _ = await call(p, "GET", "/health", None, {})
    assert status == 200


# ================================================================================== raw HTTP helper
async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send `data` on a fresh connection and read the whole answer (the request should say
    `Connection: close`). Returns status, headers (lower-case names) and the decoded body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = b""
        async with asyncio.timeout(timeout):
            while not (b"\r\n\r\n" in raw and _complete(raw)):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                raw += chunk
    finally:
        writer.close()
    return parse_http(raw)


def parse_http(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, headers, body


def raw_request(method: str, path: str, *, host: str | None, headers: dict[str, str] | None = None,
                body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if (body or method in ("POST", "PUT")) and "content-length" not in {k.lower() for k in headers or {}}:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ================================================================================== Host / DNS rebinding
FORGED_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.com", "127.0.0.1.evil.com:{port}",
                "localhost.evil.com", "localhost.attacker.test:{port}", "0.0.0.0", "0.0.0.0:{port}",
                "127.0.0.1:{port}@evil.com", "evil.com/127.0.0.1", "2130706433", "localhost:{port} evil",
                "", "127.0.0.1:99999", "[::1", "*"]
GOOD_HOSTS = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "127.0.0.1", "[::1]:{port}", "127.0.0.2:{port}",
              "localhost.:{port}"]


@pytest.mark.parametrize("require_auth", [True, False])
async def test_forged_host_headers_are_refused(proxy, require_auth):
    p = await proxy(config(require_auth=require_auth))
    port = p.core.port
    body = json.dumps(MESSAGES).encode()
    auth = {"x-api-key": p.key, "content-type": "application/json"}
    for template in FORGED_HOSTS:
        host = template.format(port=port)
        status, headers, raw = await raw_exchange(port, raw_request("POST", "/v1/messages", host=host, headers=auth,
                                                                    body=body))
        assert status in (400, 403), (host, status, raw)
        assert "access-control-allow-origin" not in headers
        if status == 403:
            assert_error("anthropic", json.loads(raw), code="", anthropic_type="permission_error")
        # the same without a key: a DNS-rebinding page has none, and must not get in even with auth off
        status, _, raw = await raw_exchange(port, raw_request("GET", "/v1/models", host=host))
        assert status in (400, 403), (host, status, raw)
    # no Host at all (HTTP/1.0 and HTTP/1.1)
    for version in ("1.0", "1.1"):
        data = f"GET /v1/models HTTP/{version}\r\nAuthorization: Bearer {p.key}\r\nConnection: close\r\n\r\n".encode()
        status, _, raw = await raw_exchange(port, data)
        assert status in (400, 403), (version, raw)
    for template in GOOD_HOSTS:
        host = template.format(port=port)
        status, _, raw = await raw_exchange(port, raw_request("POST", "/v1/messages", host=host, headers=auth,
                                                              body=body))
        assert status == 200, (host, raw)


async def test_dns_rebinding_page_cannot_reach_tiergate(proxy):
    """A page on attacker.test whose DNS now points at 127.0.0.1: its requests carry its own Host and Origin."""
    p = await proxy(config(require_auth=False))
    port = p.core.port
    host, origin = f"attacker.test:{port}", f"http://attacker.test:{port}"
    for method, path, extra in (("GET", "/v1/models", {}), ("GET", "/tiergate/status", {}),
                                ("POST", "/v1/chat/completions", {"content-type": "text/plain"}),
                                ("OPTIONS", "/v1/chat/completions", {"Access-Control-Request-Method": "POST"})):
        body = json.dumps(CHAT).encode() if method == "POST" else b""
        status, headers, raw = await raw_exchange(port, raw_request(method, path, host=host, body=body,
                                                                    headers={"Origin": origin, **extra}))
        assert status == 403, (method, path, raw)
        assert "access-control-allow-origin" not in headers
    # the same page's requests with a loopback Host would still be stopped by the Origin check
    status, headers, _ = await raw_exchange(port, raw_request("GET", "/v1/models", host=f"127.0.0.1:{port}",
                                                              headers={"Origin": origin}))
    assert status == 403 and "access-control-allow-origin" not in headers
    # while a local tool without a key is served (auth is off on loopback in this config)
    status, _, raw = await raw_exchange(port, raw_request("GET", "/v1/models", host=f"127.0.0.1:{port}"))
    assert status == 200, raw


# ================================================================================== Origin / CORS
FOREIGN_ORIGINS = ["https://evil.example", "null", "http://localhost:3000.evil.com", "http://localhost:3001",
                   "https://localhost:3000", "http://127.0.0.1:3000", "file://", "chrome-extension://abcdef",
                   "http://localhost:3000/path", "*", ""]


@pytest.mark.parametrize(("method", "path", "body", "dialect"),
                         [e for e in ENDPOINTS if e[1] in ("/v1/chat/completions", "/v1/messages", "/v1/responses",
                                                            "/v1/models")], ids=str)
async def test_web_origins_are_refused_unless_allowlisted(proxy, method, path, body, dialect):
    p = await proxy(config())
    auth = {"authorization": f"Bearer {p.key}"}
    for origin in FOREIGN_ORIGINS:
        status, headers, got = await call(p, method, path, body, {**auth, "Origin": origin})
        assert status == 403, (origin, got)
        assert_error(dialect, got, code="permission_error", anthropic_type="permission_error")
        assert "Access-Control-Allow-Origin" not in headers
    for site in ("cross-site", "same-site"):  # a browser request that carries no Origin
        status, headers, got = await call(p, method, path, body, {**auth, "Sec-Fetch-Site": site})
        assert status == 403, site
    status, headers, got = await call(p, method, path, body, {**auth, "Origin": ORIGIN})
    assert status == 200, got
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in headers["Vary"]
    status, headers, got = await call(p, method, path, body, {**auth, "Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_preflights(proxy):
    p = await proxy(config())
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/tiergate/privacy"):
        for origin in FOREIGN_ORIGINS:
            status, headers, _ = await call(p, "OPTIONS", path, None, {"Origin": origin, **ask})
            assert status == 403, (path, origin)
            assert "Access-Control-Allow-Origin" not in headers
        status, headers, _ = await call(p, "OPTIONS", path, None, {"Origin": ORIGIN, **ask})
        assert status == 204, path
        assert headers["Access-Control-Allow-Origin"] == ORIGIN
        assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in headers
    status, headers, _ = await call(p, "OPTIONS", "/v1/messages", None,
                                    {"Origin": ORIGIN, "Access-Control-Request-Method": "PATCH"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # a bare OPTIONS without the preflight header is an ordinary request: it needs a key
    status, _, _ = await call(p, "OPTIONS", "/v1/models", None, {})
    assert status == 401


async def test_allowlisted_origin_gets_cors_on_errors_and_never_a_wildcard(proxy, fake_openai):
    p = await proxy(config())
    fake_openai.replies.append(Reply(text="hi", headers={"Access-Control-Allow-Origin": "*"}))
    auth = {"authorization": f"Bearer {p.key}"}
    status, headers, _ = await call(p, "POST", "/v1/chat/completions", CHAT, {**auth, "Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    fake_openai.replies.append(Reply(text="hi", headers={"Access-Control-Allow-Origin": "*"}))
    status, headers, _ = await call(p, "POST", "/v1/chat/completions", {**CHAT, "messages": [
        {"role": "user", "content": "no origin this time"}]}, auth)
    assert status == 200 and headers.get("Access-Control-Allow-Origin") is None
    status, headers, got = await call(p, "POST", "/v1/chat/completions", {**CHAT, "model": "no-such-tier"},
                                      {**auth, "Origin": ORIGIN})
    assert status == 404 and headers["Access-Control-Allow-Origin"] == ORIGIN
    status, headers, got = await call(p, "POST", "/v1/messages", MESSAGES, {"Origin": ORIGIN})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize("bad", ["*", "null", "not an origin"])
async def test_wildcard_or_null_origins_in_the_config_are_refused(tmp_path, memory_keyring, bad):
    from app.config.loader import parse_config
    from app.core import Tiergate
    from app.errors import ConfigError
    from app.secrets.store import SecretStore

    text = config(allowed_origins=[bad]).format(openai="http://127.0.0.1:9", anthropic="http://127.0.0.1:9",
                                                ollama="http://127.0.0.1:9")
    core = Tiergate(parse_config(text, str(tmp_path / "config.yaml")), data_dir=tmp_path / "data", env={},
                    secret_store=SecretStore())
    try:
        with pytest.raises(ConfigError, match="allowed_origins"):
            await core.start()
    finally:
        await core.stop()


# ================================================================================== sizes
LIMITS = {"max_body_bytes": 4096, "max_header_bytes": 4096}


@pytest.mark.parametrize(("path", "body", "dialect"), [("/v1/chat/completions", CHAT, "openai"),
                                                        ("/v1/messages", MESSAGES, "anthropic"),
                                                        ("/v1/responses", RESPONSES, "openai"),
                                                        ("/v1/embeddings", EMBED, "openai"),
                                                        ("/v1/messages/count_tokens", COUNT, "anthropic")])
async def test_oversized_bodies_get_413(proxy, path, body, dialect):
    p = await proxy(config(**LIMITS))
    auth = {"authorization": f"Bearer {p.key}", "content-type": "application/json"}
    fits = json.dumps({**body, "metadata": {"pad": "x" * 3000}}) if "messages" in body and path != "/v1/embeddings" \
        else json.dumps({**body, "user": "x" * 3000})
    assert len(fits) < 4096
    big = json.dumps({**body, "user": "x" * 5000})
    async with aiohttp.ClientSession() as s:
        async with s.post(p.base_url + path, data=big, headers=auth) as r:  # with Content-Length
            assert r.status == 413
            assert_error(dialect, await r.json(), code="request_too_large", anthropic_type="request_too_large")

        async def chunks():
            for i in range(0, len(big), 512):
                yield big[i:i + 512].encode()

        async with s.post(p.base_url + path, data=chunks(), headers=auth) as r:  # chunked: no Content-Length
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert r.status == 413
            assert_error(dialect, await r.json(), code="request_too_large", anthropic_type="request_too_large")
    status, _, raw = await raw_exchange(p.core.port, raw_request(
        "POST", path, host="127.0.0.1", headers={**auth, "Content-Length": str(10**12)}))
    assert status == 413, raw
    if path != "/v1/messages/count_tokens":  # a body under the limit is served
        async with aiohttp.ClientSession() as s:
            async with s.post(p.base_url + path, data=fits, headers=auth) as r:
                assert r.status in (200, 400), await r.text()  # 400: the padding field is unknown upstream


@pytest.mark.parametrize(("path", "body", "dialect"), [("/v1/chat/completions", CHAT, "openai"),
                                                        ("/v1/messages", MESSAGES, "anthropic")])
async def test_oversized_headers(proxy, path, body, dialect):
    p = await proxy(config(**LIMITS))
    auth = {"authorization": f"Bearer {p.key}"}
    many = {f"x-pad-{i}": "y" * 900 for i in range(6)}  # each line fits; together over 4096 bytes
    status, _, got = await call(p, "POST", path, body, {**auth, **many})
    assert status == 431, got
    assert_error(dialect, got, code="request_header_fields_too_large", anthropic_type="invalid_request_error")
    status, _, raw = await raw_exchange(p.core.port, raw_request("POST", path, host="127.0.0.1", headers={
        **auth, "x-one-huge": "z" * 20000}, body=json.dumps(body).encode()))
    assert status in (400, 431), raw  # one line over the parser's limit: refused by the HTTP parser
    assert b"Traceback" not in raw and b".py" not in raw
    data = raw_request("GET", "/v1/models", host="127.0.0.1", headers={**auth, **{f"x-h{i}": "1" for i in range(200)}})
    status, _, raw = await raw_exchange(p.core.port, data)
    assert status in (400, 431), raw
    status, _, _ = await call(p, "POST", path, body, auth)
    assert status == 200


# ================================================================================== slow clients
async def _served_meanwhile(p: Any, stop: asyncio.Event) -> int:
    """Normal requests, one after another, until `stop`; returns how many succeeded (all must)."""
    n = 0
    async with p.openai() as client:
        while not stop.is_set():
            r = await client.chat.completions.create(model="coder",
                                                     messages=[{"role": "user", "content": f"ping {n}"}])
            assert r.choices[0].message.content == f"ping {n}"
            n += 1
            await asyncio.sleep(0.05)
    return n


async def _trickle_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, piece: bytes,
                                *, every: float, give_up: float) -> tuple[float, bytes]:
    """Write `piece` every `every` s until the server answers or closes; returns (seconds, bytes read)."""
    t0 = time.monotonic()
    got = b""
    try:
        while time.monotonic() - t0 < give_up:
            writer.write(piece)
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), every)
            except asyncio.TimeoutError:
                continue
            got += chunk
            if chunk == b"" or b"\r\n\r\n" in got:
                break
        while b"\r\n\r\n" in got and not _complete(got):  # an answer came: read the rest of it
            chunk = await asyncio.wait_for(reader.read(65536), 2)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic() - t0, got


def _complete(raw: bytes) -> bool:
    """Whether `raw` holds a whole HTTP response (without a length: only once the server closes)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
        if line.startswith(b"transfer-encoding:") and b"chunked" in line:
            return body.endswith(b"0\r\n\r\n")
    return False


async def _slow_body(port: int, key: str, path: str) -> tuple[float, bytes]:
    """Complete headers, then a body trickled one byte every 0.2 s (it would take 1000 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{".encode())
    try:
        return await _trickle_until_closed(reader, writer, b" ", every=0.2, give_up=8)
    finally:
        writer.close()


async def test_slow_clients_are_cut_off_while_others_are_served(proxy):
    """Slowloris connections trickling headers, an idle connection and bodies trickled byte by byte, all at
    once: each is cut off within its timeout (plus slack) while normal requests keep being answered."""
    p = await proxy(config(header_timeout=1, body_timeout=1))
    stop = asyncio.Event()
    others = asyncio.create_task(_served_meanwhile(p, stop))
    conns = [await asyncio.open_connection("127.0.0.1", p.core.port) for _ in range(5)]
    for _, w in conns:
        w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", p.core.port)  # sends nothing at all
    t0 = time.monotonic()

    async def idle() -> tuple[float, bytes]:
        got = await asyncio.wait_for(idle_reader.read(), 8)
        return time.monotonic() - t0, got

    *headers, idled, chat_body, messages_body = await asyncio.gather(
        *(_trickle_until_closed(r, w, b"X-a: b\r\n", every=0.2, give_up=8) for r, w in conns), idle(),
        _slow_body(p.core.port, p.key, "/v1/chat/completions"), _slow_body(p.core.port, p.key, "/v1/messages"))
    stop.set()
    served = await others
    for elapsed, got in headers:
        assert got == b"" or got.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")), got
        assert elapsed < 1 + 3, elapsed  # header_timeout plus slack; the client would have gone on for 8 s
    assert idled[1] == b"" and idled[0] < 1 + 3
    for (elapsed, got), dialect in ((chat_body, "openai"), (messages_body, "anthropic")):
        assert elapsed < 1 + 3, elapsed
        status, _, body = parse_http(got)
        assert status == 408
        assert_error(dialect, json.loads(body), code="request_timeout", anthropic_type="invalid_request_error")
    assert served >= 3  # others were served the whole time
    for _, w in conns + [(idle_reader, idle_writer)]:
        w.close()


async def test_request_time_limit(proxy, fake_openai):
    """A hung upstream answer gets 408 after request_timeout, a stream still running then is cut off (no 408
    spliced into it), and the other tiers answer meanwhile."""
    p = await proxy(config(request_timeout=1))
    fake_openai.faults.append(Fault.hang(6, path="/v1/chat/completions"))
    fake_openai.replies.append(Reply(text="a b c d e f g h i j", chunks=10, delay=0.4))
    slow = asyncio.create_task(p.request("POST", "/v1/chat/completions", json=CHAT))

    async def stream() -> bytes:
        chunks: list[bytes] = []
        async with aiohttp.ClientSession() as s:
            body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "s"}]}
            async with s.post(p.base_url + "/v1/chat/completions", json=body,
                              headers={"authorization": f"Bearer {p.key}"}) as r:
                assert r.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    async for chunk in r.content.iter_any():
                        chunks.append(chunk)
        return b"".join(chunks)

    streamed = asyncio.create_task(stream())
    t0 = time.monotonic()
    async with p.anthropic() as client:
        while not slow.done():  # meanwhile the other tiers answer
            r = await client.messages.create(model="orchestrator", max_tokens=10, messages=USER)
            assert r.content[0].text == "hello there"
            await asyncio.sleep(0.1)
    status, _, got = await slow
    assert status == 408 and time.monotonic() - t0 < 4
    assert_error("openai", got, code="request_timeout", anthropic_type="")
    text = await streamed
    assert text.startswith(b"data: ") and b"[DONE]" not in text and b"408" not in text


async def test_concurrency_cap(proxy, fake_openai):
    p = await proxy(config(max_concurrent_streams=2))
    fake_openai.faults.extend([Fault.hang(0.8, path="/v1/chat/completions")] * 2)
    held = [asyncio.create_task(p.request("POST", "/v1/chat/completions", json=CHAT)) for _ in range(2)]
    while len(fake_openai.requests) < 2:
        await asyncio.sleep(0.02)
    status, headers, got = await p.request("POST", "/v1/messages", json=MESSAGES)
    assert status == 429 and headers["Retry-After"] == "1"
    assert_error("anthropic", got, code="", anthropic_type="rate_limit_error")
    status, _, _ = await p.request("GET", "/v1/models")
    assert status == 200  # listing models is not capped
    assert [(await t)[0] for t in held] == [200, 200]
    status, _, _ = await p.request("POST", "/v1/messages", json=MESSAGES)
    assert status == 200


# ================================================================================== no Ollama management
OLLAMA_ENDPOINTS = [("POST", "/api/create"), ("POST", "/api/push"), ("POST", "/api/pull"), ("DELETE", "/api/delete"),
                    ("POST", "/api/copy"), ("POST", "/api/blobs/sha256:" + "0" * 64), ("HEAD", "/api/blobs/sha256:00"),
                    ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed"), ("POST", "/api/show"),
                    ("GET", "/api/tags"), ("GET", "/api/ps"), ("GET", "/api/version"), ("POST", "/api/embeddings"),
                    ("POST", "/v1/api/pull"), ("POST", "/tiergate/api/pull"), ("POST", "/v1/models/pull"),
                    ("DELETE", "/v1/models/llama3.2:latest")]


async def test_ollama_management_endpoints_are_not_exposed(proxy, fake_ollama):
    p = await proxy(config())
    before = len(fake_ollama.requests)
    body = {"model": "evil/model", "name": "evil/model", "from": "llama3.2", "source": "llama3.2:latest",
            "destination": "x", "insecure": True, "stream": False}
    for key in (p.key, p.master):
        for method, path in OLLAMA_ENDPOINTS:
            status, _, got = await call(p, method, path, None if method in ("GET", "HEAD") else body,
                                        {"authorization": f"Bearer {key}"})
            if path.startswith("/tiergate/") and key == p.key:
                assert status == 403, (method, path, got)  # the management prefix needs the master key
                continue
            assert status in (404, 405), (method, path, got)
            if method != "HEAD":
                assert_error("openai", got, code="not_found_error" if status == 404 else "invalid_request_error",
                             anthropic_type="")
    reached = [r.path for r in fake_ollama.requests[before:] if r.path not in ("/api/version", "/api/ps", "/api/tags")]
    assert reached == []  # nothing reached Ollama (its manager's own read-only probes aside)
    assert not any(b"evil/model" in r.body for r in fake_ollama.requests)
    status, _, _ = await call(p, "POST", "/api/pull", body, {})
    assert status == 401  # and without a key nothing is even routed


# ================================================================================== bodies cannot steer
@pytest.fixture
async def evil_upstream():
    fake = FakeOpenAI(api_key=None)
    await fake.start()
    yield fake
    await fake.close()


STEER_FIELDS = ("api_base", "base_url", "api_key", "extra_headers", "headers", "custom_llm_provider",
                "organization", "api_version")


def steering(evil: str) -> dict[str, Any]:
    return {"api_base": evil, "base_url": evil, "api_key": "sk-evil-0000000000000000000000",
            "extra_headers": {"X-Evil": "steered", "Authorization": "Bearer sk-evil-hdr-000000000000000"},
            "headers": {"X-Evil": "steered"}, "custom_llm_provider": "openai", "organization": "org-evil",
            "api_version": "evil-version"}


# (path, body, upstream, upstream path)
STEER_CASES = [
    ("/v1/chat/completions", CHAT, "openai", "/v1/chat/completions"),  # pass-through
    ("/v1/chat/completions", {**CHAT, "model": "orchestrator"}, "anthropic", "/v1/messages"),
    ("/v1/chat/completions", {**CHAT, "model": "helper"}, "ollama", "/api/chat"),
    ("/v1/chat/completions", {**CHAT, "stream": True}, "openai", "/v1/chat/completions"),
    ("/v1/messages", MESSAGES, "anthropic", "/v1/messages"),  # pass-through
    ("/v1/messages", {**MESSAGES, "stream": True}, "anthropic", "/v1/messages"),
    ("/v1/messages", {**MESSAGES, "model": "coder"}, "openai", "/v1/chat/completions"),
    ("/v1/messages", {**MESSAGES, "model": "helper"}, "ollama", "/api/chat"),
    ("/v1/responses", RESPONSES, "openai", "/v1/chat/completions"),
    ("/v1/responses", {**RESPONSES, "model": "codex"}, "openai", "/v1/responses"),  # pass-through
    ("/v1/responses", {**RESPONSES, "model": "orchestrator"}, "anthropic", "/v1/messages"),
    ("/v1/embeddings", EMBED, "openai", "/v1/embeddings"),
    ("/v1/messages/count_tokens", COUNT, "anthropic", "/v1/messages/count_tokens"),
]


@pytest.mark.parametrize(("path", "body", "upstream", "upstream_path"), STEER_CASES,
                         ids=[f"{c[0]}->{c[1]['model']}{'-stream' if c[1].get('stream') else ''}" for c in STEER_CASES])
async def test_request_bodies_cannot_choose_the_upstream(proxy, evil_upstream, fake_openai, fake_anthropic,
                                                         fake_ollama, path, body, upstream, upstream_path):
    p = await proxy(config())
    fakes = {"openai": fake_openai, "anthropic": fake_anthropic, "ollama": fake_ollama}
    fake = fakes[upstream]
    before = {name: len(_inference(f)) for name, f in fakes.items()}
    evil = evil_upstream.base_url + "/v1"
    headers = {"authorization": f"Bearer {p.key}", "X-Evil": "client-header", "OpenAI-Organization": "org-evil"}
    async with aiohttp.ClientSession() as s:
        async with s.post(p.base_url + path, json={**body, **steering(evil)}, headers=headers) as r:
            text = await r.read()
            assert r.status == 200, text
    assert evil_upstream.requests == []
    got = _inference(fake)[before[upstream]:]
    assert [r.path for r in got] == [upstream_path]
    for name, f in fakes.items():
        if name != upstream:
            assert len(_inference(f)) == before[name], name
    rec = got[0]
    sent_headers = {k.lower(): v for k, v in rec.headers.items()}
    if upstream == "openai":
        assert sent_headers["authorization"] == f"Bearer {DEFAULT_OPENAI_KEY}"
    elif upstream == "anthropic":
        assert sent_headers["x-api-key"] == DEFAULT_ANTHROPIC_KEY
        assert "authorization" not in sent_headers
    else:
        assert "authorization" not in sent_headers and "x-api-key" not in sent_headers
    assert "x-evil" not in sent_headers and "openai-organization" not in sent_headers
    everything = json.dumps(sent_headers) + rec.body.decode() + json.dumps(rec.query)
    for value in ("sk-evil", "steered", "org-evil", "evil-version", evil_upstream.base_url, p.key,
                  "client-header"):
        assert value not in everything, value
    sent = rec.json
    for field in STEER_FIELDS:
        assert field not in sent, field
    for other in fake_ollama.requests:  # model-manager calls (version, ps, show…) carry nothing either
        assert "steered" not in other.body.decode() and "sk-evil" not in json.dumps(other.headers)


def _inference(fake: Any) -> list[Any]:
    """The requests that carry a client's prompt (not the Ollama manager's own probes)."""
    return [r for r in fake.requests if r.path not in ("/api/version", "/api/tags", "/api/ps", "/api/show",
                                                        "/api/generate")]
