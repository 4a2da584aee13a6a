"""The endpoint's security layer: one `Gate` that checks every request, and its helpers.

The checks, in order (the server's error middleware calls `Gate.admit` and `Gate.run` first thing, so the
errors raised here are rendered in the client's dialect):

  host        Host must name this machine (loopback): defeats DNS rebinding
  origin      browsers: Origin must be allowlisted; CORS preflights answered here
  size        Content-Length and total header size within limits (before any body is read)
  auth        agent key or master key -> request[AGENT_KEY]; /tiergate/... needs the master key
  concurrency cap on requests relaying upstream at once
  deadline    whole-request time limit (one watchdog for all requests, not a timer each)

They run as plain method calls in one middleware, not as a chain of six: every request pays for each
check, so each is a few dictionary lookups on the common path (known Host, no Origin, a key seen before).

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
    the request as having started its response (see `Gate.run`)."""
    request[RESPONSE_STARTED_KEY] = True
    headers = response.headers
    if "Access-Control-Allow-Origin" in headers and headers["Access-Control-Allow-Origin"].strip() == "*":
        del headers["Access-Control-Allow-Origin"]
    origin = request.get(CORS_ORIGIN_KEY)
    if origin and "Access-Control-Allow-Origin" not in headers:
        headers["Access-Control-Allow-Origin"] = origin
        vary = headers.get("Vary")
        headers["Vary"] = f"{vary}, Origin" if vary and "origin" not in vary.lower() else (vary or "Origin")


# ------------------------------------------------------------------------------------ sizes / time
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


def server_limits(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner(app, **server_limits(settings))`.

    aiohttp's keep-alive timer starts when a connection opens and is not pushed back by incoming bytes,
    so it also bounds how long a client may take to send its first request's headers (slowloris); after
    each response it bounds the idle time before the next request."""
    return {
        "keepalive_timeout": float(_setting(settings, "header_timeout")),
        "max_line_size": 8190,  # request line
        "max_field_size": max(1024, min(settings.max_header_bytes, 16 * 1024)),  # one header line
        "max_headers": 128,  # total header bytes are checked by Gate.admit
    }


def app_limits(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `web.Application(**app_limits(settings))`: the body size aiohttp enforces
    when the body is read (chunked bodies have no Content-Length for Gate.admit to check)."""
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

    @property
    def blocking(self) -> bool:
        """Whether any address is blocked now or was recently (checked before looking up the caller)."""
        return bool(self._blocked_until)

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

    def fresh(self) -> bool:
        """Whether `digest()` would answer from the cache (no keychain read, no await needed)."""
        return self._read_at is not None and self.clock() - self._read_at < self.ttl

    async def digest(self) -> bytes | None:
        """None when the keychain cannot give the master key (agent keys keep working)."""
        if self.fresh():
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




# ------------------------------------------------------------------------------------ deadlines
class Deadlines:
    """The whole-request time limit for every request in flight, kept by one watchdog task.

    A timer per request (`asyncio.timeout`) costs a heap push and a cancellation on every request; the
    watchdog costs a dictionary insert and delete, and wakes only while requests are in flight, every
    `resolution` seconds, cancelling the tasks that are over their deadline."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.resolution = min(1.0, max(0.02, seconds / 10))
        self.clock = clock
        self._due: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()  # cancelled by us, not yet handled by `Gate.run`
        self._watchdog: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        self._due[task] = self.clock() + self.seconds
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="tiergate-deadlines")

    def forget(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching `task`; True when its deadline had passed (and it was cancelled for it)."""
        self._due.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    async def _watch(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(self.resolution)
                now = self.clock()
                for task in [t for t, due in self._due.items() if due <= now]:
                    del self._due[task]
                    if not task.done():
                        self.expired.add(task)
                        task.cancel()
        finally:
            self._watchdog = None

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()


# ------------------------------------------------------------------------------------ the gate
class Gate:
    """Every check the endpoint makes, for one server. `admit` runs the checks that need no handler
    (host, origin, size, auth); `run` calls the handler under the concurrency cap and the deadline.
    `middleware` is both, for an application that has no other middleware doing it."""

    def __init__(self, settings: ServerSettings, registry: AgentRegistry, store: Any, *,
                 limiter: FailedAuthLimiter | None = None, master: MasterKeyCache | None = None,
                 public_paths: Iterable[str] = ()):
        self.settings = settings
        self.registry = registry
        self.required = auth_required(settings)
        self.public = frozenset(public_paths)
        self.origins = allowed_origin_set(settings)  # ConfigError for a bad entry, at start
        self.limiter = limiter or FailedAuthLimiter(max_failures=int(_setting(settings, "auth_max_failures")),
                                                    window=float(_setting(settings, "auth_failure_window")),
                                                    block_seconds=float(_setting(settings, "auth_block_seconds")))
        self.master = master or MasterKeyCache(store)
        self.deadlines = Deadlines(settings.request_timeout)
        self.cap = settings.max_concurrent_streams
        self.active = 0
        self._hosts: dict[str | None, bool] = {}  # Host value -> allowed; agents send the same few values

    # ------------------------------------------------------------------------------------ checks
    async def admit(self, request: web.Request) -> web.StreamResponse | None:
        """Run host, origin, size and auth checks; raise on a refusal. Returns a response when the gate
        answers the request itself (a CORS preflight), else None with `request[AGENT_KEY]` set."""
        headers = request.headers
        host = headers.get("Host")
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed = host_allowed(host, self.settings)
            if len(self._hosts) < 256:
                self._hosts[host] = allowed
        if not allowed:
            log.warning("Refused a request from %s: Host header does not name this machine", request.remote)
            raise Forbidden("The Host header must name this machine (localhost or 127.0.0.1).",
                            title="Host not allowed")
        origin = headers.get("Origin")
        if origin is not None or "Sec-Fetch-Site" in headers:
            preflight = self.check_origin(request, origin)
            if preflight is not None:
                return preflight
        settings = self.settings
        raw = request.raw_headers
        if sum(len(k) + len(v) for k, v in raw) + 4 * len(raw) > settings.max_header_bytes:
            raise HeadersTooLarge(f"Request headers exceed {settings.max_header_bytes} bytes.")
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            raise PayloadTooLarge(f"Request body exceeds {settings.max_body_bytes} bytes "
                                  f"(tiergate_settings.max_body_bytes).")
        request[AGENT_KEY] = await self.authenticate(request)
        return None

    def check_origin(self, request: web.Request, origin: str | None) -> web.StreamResponse | None:
        """Refuse browser requests unless their Origin is allowlisted; answer CORS preflights.

        Requests without an Origin header (SDKs, curl, agents) pass. A browser page can also reach us
        without an Origin header (a plain GET, an <img>): those carry `Sec-Fetch-Site`, which is refused
        unless it says the request did not come from another site."""
        if origin is None:
            fetch_site = request.headers.get("Sec-Fetch-Site", "none").lower()
            if fetch_site not in ("none", "same-origin"):
                log.warning("Refused a cross-site browser request from %s", request.remote)
                raise Forbidden("Cross-site browser requests are not accepted.", title="Origin not allowed")
            return None
        norm = normalize_origin(origin)
        if norm is None or norm not in self.origins:
            log.warning("Refused a browser request from %s: origin not in tiergate_settings.allowed_origins",
                        request.remote)
            raise Forbidden("This web origin may not call Tiergate. Add it to tiergate_settings.allowed_origins in "
                            "the config if it should.", title="Origin not allowed")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return preflight_response(request, norm)
        request[CORS_ORIGIN_KEY] = norm
        return None

    async def identify(self, keys: list[str]) -> AgentIdentity | None:
        master = self.master
        master_digest = master._digest if master.fresh() else await master.digest()
        for key in keys:
            digest = hash_key(key)
            # Both comparisons always run: timing does not tell a master key from an agent key.
            is_master = master_digest is not None and hmac.compare_digest(digest, master_digest)
            agent = self.registry.match_digest(digest)
            if is_master:
                return MASTER
            if agent is not None:
                return agent
        return None

    async def authenticate(self, request: web.Request) -> AgentIdentity:
        """The caller's identity, or Unauthorized / Forbidden / RateLimited."""
        path = request.path
        if path in self.public:
            return ANONYMOUS
        management = _is_management(path)
        limiter = self.limiter
        if limiter.blocking:
            wait = limiter.blocked_for(request.remote or "unknown")
            if wait > 0:
                raise RateLimited("Too many failed authentication attempts from this address; try again later.",
                                  details={"retry_after": math.ceil(wait)})
        keys = presented_keys(request)
        identity = await self.identify(keys) if keys else None
        if identity is None and (keys or self.required or management):
            self._refuse(request, keys)
        identity = identity or ANONYMOUS
        if management and not identity.is_master:
            raise Forbidden("The management API (/tiergate/...) needs the master key.", title="Master key required")
        return identity

    def _refuse(self, request: web.Request, keys: list[str]) -> None:
        address = request.remote or "unknown"
        if not keys:
            # No key at all: a probe or a misconfigured client, not a guess. Refused, but not counted
            # toward the lock-out (Claude Code sends a keyless `HEAD /` at every start).
            log.info("Authentication failed from %s: no key (%s %s)", address, request.method, request.path)
            raise Unauthorized("Missing API key. Send your Tiergate agent key as `Authorization: Bearer <key>` "
                               "or `x-api-key: <key>` (create one with `tiergate agents add NAME`).")
        limiter = self.limiter
        count = limiter.record_failure(address)
        reason = "invalid or revoked key"
        if count >= limiter.max_failures:
            log.warning("Authentication: %d failed attempts from %s within %.0f s (last: %s); refusing "
                        "that address for %.0f s", count, address, limiter.window, reason, limiter.block_seconds)
        else:
            level = logging.WARNING if count == 1 else logging.INFO
            log.log(level, "Authentication failed from %s: %s (%d failed in the last %.0f s)",
                    address, reason, count, limiter.window)
        raise Unauthorized("Invalid or revoked API key. Use a key from `tiergate agents add NAME` "
                           "or the master key (`tiergate keys master`).")

    # ------------------------------------------------------------------------------------ the call
    async def run(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Call `handler` under the concurrency cap (POSTs outside the management API: the requests that
        relay upstream; more get 429 at once, which agents retry) and the whole-request deadline."""
        counted = request.method == "POST" and not _is_management(request.path)
        if counted:
            if self.active >= self.cap:
                raise RateLimited(f"Tiergate is already relaying {self.cap} requests "
                                  f"(tiergate_settings.max_concurrent_streams); retry shortly.",
                                  details={"retry_after": 1})
            self.active += 1
        task = asyncio.current_task()
        deadlines = self.deadlines
        deadlines.watch(task)  # type: ignore[arg-type]
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if not deadlines.forget(task):  # type: ignore[arg-type]
                raise
            task.uncancel()  # type: ignore[union-attr]
            if request.get(RESPONSE_STARTED_KEY) and request.transport is not None:
                # Mid-stream: no error response can follow the bytes already sent; cut the connection
                # so the client sees a truncated stream, not a 408 spliced into it.
                request.transport.close()
            raise RequestTimedOut(f"The request took longer than {self.settings.request_timeout:g} s "
                                  f"(tiergate_settings.request_timeout).") from None
        finally:
            deadlines.forget(task)  # type: ignore[arg-type]
            if counted:
                self.active -= 1

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        early = await self.admit(request)
        if early is not None:
            return early
        return await self.run(request, handler)

    def install(self, app: web.Application) -> None:
        """Hook the CORS response headers and stop the watchdog with the app (`middleware` or an error
        middleware calling `admit`/`run` does the rest)."""
        app.on_response_prepare.append(cors_response_headers)

        async def close(_app: web.Application) -> None:
            self.deadlines.close()

        app.on_shutdown.append(close)
