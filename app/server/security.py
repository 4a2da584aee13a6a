"""The endpoint's security layer: aiohttp middlewares and helpers.

Order (outermost first), as `security_middlewares()` returns them; the server's own error middleware goes
before all of them so that the errors raised here are rendered in the client's dialect:

  host_guard         Host must name this machine (loopback): defeats DNS rebinding
  origin_guard       browsers: Origin must be allowlisted; CORS preflights answered here
  size_guard         Content-Length and total header size within limits (before any body is read)
  auth_middleware    agent key or master key -> request[AGENT_KEY]; /tiergate/... needs the master key
  concurrency_guard  cap on requests relaying upstream at once
  timeout_guard      whole-request time limit

Errors are raised as app.errors exceptions (Unauthorized, Forbidden, RateLimited, PayloadTooLarge…) and
never carry the presented key, a path or a trace. Settings come from `ServerSettings`; a few limits not in
it yet are read with `getattr(settings, NAME, DEFAULT)` (see `_DEFAULTS`), so adding them to the schema
later makes them configurable with no change here.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from app.netloc import is_loopback_host  # noqa: F401 - re-exported
from app.agents import ANONYMOUS, MASTER, AgentIdentity, AgentRegistry, hash_key
from app.config.schema import ServerSettings
from app.errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    SecretError,
    TiergateError,
    Unauthorized,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MANAGEMENT_PREFIX = "/tiergate"
# request[AGENT_KEY] -> AgentIdentity, set by the auth middleware.
AGENT_KEY: web.RequestKey[AgentIdentity] = web.RequestKey("tiergate_agent", AgentIdentity)
CORS_ORIGIN_KEY: web.RequestKey[str] = web.RequestKey("tiergate_cors_origin", str)  # allowlisted origin
RESPONSE_STARTED_KEY: web.RequestKey[bool] = web.RequestKey("tiergate_response_started", bool)

# Limits not (yet) in ServerSettings: name -> default. Read with _setting().
_DEFAULTS: dict[str, Any] = {
    "header_timeout": 30.0,  # s: a new connection must send complete request headers within this
    "body_timeout": 120.0,  # s: the request body must arrive within this once headers are in
    "auth_max_failures": 10,  # failed auth attempts per client address…
    "auth_failure_window": 60.0,  # s: …within this window…
    "auth_block_seconds": 60.0,  # s: …block the address for this long
    "allowed_hosts": [],  # extra Host names accepted when bound to a non-loopback address
}
CORS_MAX_AGE = 600
CORS_METHODS = ("GET", "POST", "DELETE", "OPTIONS")


def _setting(settings: ServerSettings, name: str) -> Any:
    return getattr(settings, name, _DEFAULTS[name])


class HeadersTooLarge(PayloadTooLarge):
    status = 431
    code = "request_header_fields_too_large"
    title = "Request headers too large"


class RequestTimedOut(TiergateError):
    status = 408
    code = "request_timeout"
    title = "Request timed out"


# ------------------------------------------------------------------------------------ host / bind
def auth_required(settings: ServerSettings) -> bool:
    """Key auth is on unless explicitly switched off *and* bound to loopback: binding elsewhere forces it."""
    return settings.require_auth or not is_loopback_host(settings.host)


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """("host", port) from a Host header value, or None when malformed."""
    value = value.strip()
    if not value or any(c.isspace() for c in value) or "@" in value or "/" in value:
        return None
    port: str | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host = value  # no port, or a bare IPv6 address (not valid in Host, but unambiguous)
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            return None
        return host.lower(), int(port)
    return host.lower(), None


def host_allowed(value: str | None, settings: ServerSettings) -> bool:
    """Whether a Host header names this machine. Loopback names and addresses always; when bound to a
    non-loopback address, also IP literals (a DNS-rebinding page cannot make a browser send those as
    its own Host) and `allowed_hosts`."""
    if not value:
        return False
    parsed = split_host_header(value)
    if parsed is None:
        return False
    host, _port = parsed
    if is_loopback_host(host):
        return True
    if is_loopback_host(settings.host):
        return False
    extra = {h.lower() for h in _setting(settings, "allowed_hosts")}
    if host in extra:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def host_guard(settings: ServerSettings) -> Any:
    verdicts: dict[str | None, bool] = {}  # Host value -> allowed; agents send the same few values

    @web.middleware
    async def host_guard_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        value = request.headers.get("Host")
        allowed = verdicts.get(value)
        if allowed is None:
            allowed = host_allowed(value, settings)
            if len(verdicts) < 256:
                verdicts[value] = allowed
        if not allowed:
            log.warning("Refused a request from %s: Host header does not name this machine", request.remote)
            raise Forbidden("The Host header must name this machine (localhost or 127.0.0.1).",
                            title="Host not allowed")
        return await handler(request)

    return host_guard_mw


# ------------------------------------------------------------------------------------ origin / CORS
def normalize_origin(origin: str) -> str | None:
    """'scheme://host[:port]' lower-cased with the default port dropped, or None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed_origin_set(settings: ServerSettings) -> frozenset[str]:
    out = set()
    for entry in settings.allowed_origins:
        if entry.strip() in ("*", "null"):
            raise ConfigError(f"tiergate_settings.allowed_origins may not contain '{entry.strip()}': list each web "
                              f"origin that may call Tiergate, e.g. http://localhost:3000")
        norm = normalize_origin(entry)
        if norm is None:
            raise ConfigError(f"tiergate_settings.allowed_origins: '{entry}' is not an origin like http://localhost:3000")
        out.add(norm)
    return frozenset(out)


def origin_guard(settings: ServerSettings) -> Any:
    """Refuse browser requests unless their Origin is allowlisted; answer CORS preflights.

    Requests without an Origin header (SDKs, curl, agents) pass. A browser page can also reach us without
    an Origin header (a plain GET, an <img>): those carry `Sec-Fetch-Site`, which is refused unless it says
    the request did not come from another site."""
    allowed = allowed_origin_set(settings)

    @web.middleware
    async def origin_guard_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            fetch_site = request.headers.get("Sec-Fetch-Site", "none").lower()
            if fetch_site not in ("none", "same-origin"):
                log.warning("Refused a cross-site browser request from %s", request.remote)
                raise Forbidden("Cross-site browser requests are not accepted.", title="Origin not allowed")
            return await handler(request)
        norm = normalize_origin(origin)
        if norm is None or norm not in allowed:
            log.warning("Refused a browser request from %s: origin not in tiergate_settings.allowed_origins", request.remote)
            raise Forbidden("This web origin may not call Tiergate. Add it to tiergate_settings.allowed_origins in the "
                            "config if it should.", title="Origin not allowed")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return preflight_response(request, norm)
        request[CORS_ORIGIN_KEY] = norm
        return await handler(request)

    return origin_guard_mw


def preflight_response(request: web.Request, origin: str) -> web.Response:
    """The answer to a CORS preflight from an allowlisted origin."""
    method = request.headers.get("Access-Control-Request-Method", "").strip().upper()
    if method not in CORS_METHODS:
        raise Forbidden(f"Method {method[:16]!r} is not allowed from web pages.", title="Method not allowed")
    requested = request.headers.get("Access-Control-Request-Headers", "")
    names = [h.strip().lower() for h in requested.split(",") if h.strip()]
    if any(not _is_token(h) for h in names):
        raise BadRequest("Malformed Access-Control-Request-Headers.")
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
        "Access-Control-Max-Age": str(CORS_MAX_AGE),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    if names:
        headers["Access-Control-Allow-Headers"] = ", ".join(names)
    return web.Response(status=204, headers=headers)


def _is_token(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


async def cors_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`app.on_response_prepare` hook: CORS headers for allowlisted origins on every response (errors
    included), and never `Access-Control-Allow-Origin: *` (e.g. copied from an upstream). Also marks
    the request as having started its response (see timeout_guard)."""
    request[RESPONSE_STARTED_KEY] = True
    if response.headers.get("Access-Control-Allow-Origin", "").strip() == "*":
        del response.headers["Access-Control-Allow-Origin"]
    origin = request.get(CORS_ORIGIN_KEY)
    if origin and "Access-Control-Allow-Origin" not in response.headers:
        response.headers["Access-Control-Allow-Origin"] = origin
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary and "origin" not in vary.lower() else (vary or "Origin")


# ------------------------------------------------------------------------------------ sizes / time
def size_guard(settings: ServerSettings) -> Any:
    @web.middleware
    async def size_guard_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if header_bytes > settings.max_header_bytes:
            raise HeadersTooLarge(f"Request headers exceed {settings.max_header_bytes} bytes.")
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            raise PayloadTooLarge(f"Request body exceeds {settings.max_body_bytes} bytes "
                                  f"(tiergate_settings.max_body_bytes).")
        return await handler(request)

    return size_guard_mw


async def read_body(request: web.Request, settings: ServerSettings) -> bytes:
    """The request body, within `max_body_bytes` and `body_timeout`. Use instead of `request.read()`:
    a client trickling its body cannot hold a handler for longer than the timeout."""
    try:
        if request.content.is_eof():  # the whole body came with the headers (most requests): no timer
            return await request.read()
        async with asyncio.timeout(_setting(settings, "body_timeout")):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"Request body exceeds {settings.max_body_bytes} bytes "
                              f"(tiergate_settings.max_body_bytes).") from None
    except TimeoutError:
        raise RequestTimedOut("The request body arrived too slowly.") from None


def timeout_guard(settings: ServerSettings) -> Any:
    """Whole-request time limit (streaming included): `request_timeout` seconds."""

    @web.middleware
    async def timeout_guard_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(settings.request_timeout) as cm:
                return await handler(request)
        except TimeoutError:
            if not cm.expired():
                raise
            if request.get(RESPONSE_STARTED_KEY) and request.transport is not None:
                # Mid-stream: no error response can follow the bytes already sent; cut the connection
                # so the client sees a truncated stream, not a 408 spliced into it.
                request.transport.close()
            raise RequestTimedOut(f"The request took longer than {settings.request_timeout:g} s "
                                  f"(tiergate_settings.request_timeout).") from None

    return timeout_guard_mw


def concurrency_guard(settings: ServerSettings,
                      applies: Callable[[web.Request], bool] | None = None) -> Any:
    """At most `max_concurrent_streams` requests relaying upstream at once; more get 429 at once (agents
    retry 429s). By default every POST outside the management API counts."""
    cap = settings.max_concurrent_streams
    active = 0
    applies = applies or (lambda r: r.method == "POST" and not _is_management(r.path))

    @web.middleware
    async def concurrency_guard_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal active
        if not applies(request):
            return await handler(request)
        if active >= cap:
            raise RateLimited(f"Tiergate is already relaying {cap} requests (tiergate_settings.max_concurrent_streams); "
                              f"retry shortly.", details={"retry_after": 1})
        active += 1
        try:
            return await handler(request)
        finally:
            active -= 1

    return concurrency_guard_mw


def server_limits(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner(app, **server_limits(settings))`.

    aiohttp's keep-alive timer starts when a connection opens and is not pushed back by incoming bytes,
    so it also bounds how long a client may take to send its first request's headers (slowloris); after
    each response it bounds the idle time before the next request."""
    return {
        "keepalive_timeout": float(_setting(settings, "header_timeout")),
        "max_line_size": 8190,  # request line
        "max_field_size": max(1024, min(settings.max_header_bytes, 16 * 1024)),  # one header line
        "max_headers": 128,  # total header bytes are checked by size_guard
    }


def app_limits(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `web.Application(**app_limits(settings))`: the body size aiohttp enforces
    when the body is read (chunked bodies have no Content-Length for size_guard to check)."""
    return {"client_max_size": settings.max_body_bytes}


# ------------------------------------------------------------------------------------ authentication
class FailedAuthLimiter:
    """Per client address: after `max_failures` failed attempts within `window` seconds, refuse that
    address for `block_seconds` without checking keys. Tracks at most `max_addresses` addresses."""

    def __init__(self, *, max_failures: int = 10, window: float = 60.0, block_seconds: float = 60.0,
                 max_addresses: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.max_failures, self.window, self.block_seconds = max_failures, window, block_seconds
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may try again (0: not blocked)."""
        until = self._blocked_until.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked_until[address]
            return 0.0
        return left

    def record_failure(self, address: str) -> int:
        """Count a failure; returns the number of failures in the current window (blocks at the limit)."""
        now = self.clock()
        attempts = self._failures.get(address)
        if attempts is None:
            if len(self._failures) >= self.max_addresses:
                self._prune(now)
            attempts = self._failures[address] = deque(maxlen=self.max_failures)
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        attempts.append(now)
        if len(attempts) >= self.max_failures:
            self._blocked_until[address] = now + self.block_seconds
            attempts.clear()
            return self.max_failures
        return len(attempts)

    def _prune(self, now: float) -> None:
        for addr in [a for a, q in self._failures.items() if not q or q[-1] <= now - self.window]:
            del self._failures[addr]
        while len(self._failures) >= self.max_addresses:  # all recent: drop the oldest entries
            del self._failures[next(iter(self._failures))]


class MasterKeyCache:
    """The master key's hash, read from the keychain off the event loop and re-read every `ttl` seconds
    (so `tiergate keys master --rotate` reaches a running server). Created on first use."""

    def __init__(self, store: Any, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.store, self.ttl, self.clock = store, ttl, clock
        self._digest: bytes | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self._last_error: str | None = None

    async def digest(self) -> bytes | None:
        """None when the keychain cannot give the master key (agent keys keep working)."""
        if self._read_at is not None and self.clock() - self._read_at < self.ttl:
            return self._digest
        async with self._lock:
            if self._read_at is not None and self.clock() - self._read_at < self.ttl:
                return self._digest
            if self.store is None:  # no keychain configured (tests): agent keys only
                self._read_at = self.clock()
                return None
            try:
                key = await asyncio.to_thread(self.store.master_key)
                self._digest, self._last_error = hash_key(key), None
            except SecretError as exc:
                if exc.title != self._last_error:
                    log.error("Master key unavailable, only agent keys are accepted: %s: %s", exc.title, exc.message)
                    self._last_error = exc.title
            self._read_at = self.clock()
            return self._digest


def presented_keys(request: web.Request) -> list[str]:
    """Keys from `Authorization: Bearer …` and `x-api-key`, in that order, without duplicates."""
    out: list[str] = []
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        out.append(value.strip())
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key and api_key not in out:
        out.append(api_key)
    return out


def _is_management(path: str) -> bool:
    return path == MANAGEMENT_PREFIX or path.startswith(MANAGEMENT_PREFIX + "/")


def auth_middleware(settings: ServerSettings, registry: AgentRegistry, store: Any, *,
                    limiter: FailedAuthLimiter | None = None, master: MasterKeyCache | None = None,
                    public_paths: Iterable[str] = ()) -> Any:
    """Sets `request[AGENT_KEY]` to an AgentIdentity, or raises Unauthorized / Forbidden / RateLimited.

    `public_paths` (exact paths, e.g. "/health") need no key. With `require_auth: false` on a loopback
    bind, requests without a key run as "anonymous"; the management API always needs the master key."""
    required = auth_required(settings)
    public = frozenset(public_paths)
    limiter = limiter or FailedAuthLimiter(max_failures=int(_setting(settings, "auth_max_failures")),
                                           window=float(_setting(settings, "auth_failure_window")),
                                           block_seconds=float(_setting(settings, "auth_block_seconds")))
    master = master or MasterKeyCache(store)

    async def identify(keys: list[str]) -> AgentIdentity | None:
        master_digest = await master.digest()
        for key in keys:
            digest = hash_key(key)
            # Both comparisons always run: timing does not tell a master key from an agent key.
            is_master = master_digest is not None and hmac.compare_digest(digest, master_digest)
            agent = registry.match_digest(digest)
            if is_master:
                return MASTER
            if agent is not None:
                return agent
        return None

    @web.middleware
    async def auth_mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            request[AGENT_KEY] = ANONYMOUS
            return await handler(request)
        management = _is_management(request.path)
        address = request.remote or "unknown"
        wait = limiter.blocked_for(address)
        if wait > 0:
            raise RateLimited("Too many failed authentication attempts from this address; try again later.",
                              details={"retry_after": math.ceil(wait)})
        keys = presented_keys(request)
        identity = await identify(keys) if keys else None
        if identity is None and (keys or required or management):
            if not keys:
                # No key at all: a probe or a misconfigured client, not a guess. Refused, but not counted
                # toward the lock-out (Claude Code sends a keyless `HEAD /` at every start).
                log.info("Authentication failed from %s: no key (%s %s)", address, request.method, request.path)
                raise Unauthorized("Missing API key. Send your Tiergate agent key as `Authorization: Bearer <key>` "
                                   "or `x-api-key: <key>` (create one with `tiergate agents add NAME`).")
            count = limiter.record_failure(address)
            reason = "invalid or revoked key"
            if count >= limiter.max_failures:
                log.warning("Authentication: %d failed attempts from %s within %.0f s (last: %s); refusing "
                            "that address for %.0f s", count, address, limiter.window, reason,
                            limiter.block_seconds)
            else:
                level = logging.WARNING if count == 1 else logging.INFO
                log.log(level, "Authentication failed from %s: %s (%d failed in the last %.0f s)",
                        address, reason, count, limiter.window)
            if keys:
                raise Unauthorized("Invalid or revoked API key. Use a key from `tiergate agents add NAME` "
                                   "or the master key (`tiergate keys master`).")
            raise Unauthorized("Missing API key. Send your Tiergate agent key as `Authorization: Bearer <key>` "
                               "or `x-api-key: <key>` (create one with `tiergate agents add NAME`).")
        identity = identity or ANONYMOUS
        if management and not identity.is_master:
            raise Forbidden("The management API (/tiergate/...) needs the master key.", title="Master key required")
        request[AGENT_KEY] = identity
        return await handler(request)

    auth_mw.limiter = limiter  # type: ignore[attr-defined]  # for tests and diagnostics
    auth_mw.master = master  # type: ignore[attr-defined]
    return auth_mw


# ------------------------------------------------------------------------------------ assembly
def security_middlewares(settings: ServerSettings, registry: AgentRegistry, store: Any, *,
                         public_paths: Iterable[str] = ()) -> list[Any]:
    """All of the above in order. Put the server's error middleware before these."""
    return [
        host_guard(settings),
        origin_guard(settings),
        size_guard(settings),
        auth_middleware(settings, registry, store, public_paths=public_paths),
        concurrency_guard(settings),
        timeout_guard(settings),
    ]


def install_security(app: web.Application, settings: ServerSettings, registry: AgentRegistry, store: Any, *,
                     public_paths: Iterable[str] = ()) -> None:
    """Append the security middlewares to `app` and hook the CORS response headers."""
    app.middlewares.extend(security_middlewares(settings, registry, store, public_paths=public_paths))
    app.on_response_prepare.append(cors_response_headers)
