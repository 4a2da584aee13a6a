"""Exact-match response cache, scoped per agent, in memory with SQLite persistence.

What makes two requests "the same" (the key): the agent, the tier the request resolved to (pass the
deployment id instead when a client named a concrete deployment), the system prompt, the messages, the
tools and tool choice, and every sampling parameter (max_tokens, temperature, top_p, stop, seed,
response_format, reasoning effort, thinking, plus answer-changing fields only present in the raw body such
as top_k, n, penalties, logit_bias), and the dialect headers that are forwarded upstream (anthropic-beta).
Not in the key: `stream` (a streamed request is served the buffered answer as a proper stream and vice
versa), usage reporting, the end-user id, Anthropic `cache_control` markers (they change billing, not the
answer), and the inbound dialect: the key is computed from the canonical request and the cached value is a
canonical response, so the same conversation sent as OpenAI Chat or as Anthropic Messages shares an entry
and each client gets it rendered in its own dialect.

What is cached: complete responses (stop reason end_turn, tool_use, stop_sequence or max_tokens) with at
least one part. Tool-calling requests are cached: the answer to the same prefix is a tool call the client
runs itself, and replaying it is what an identical retry expects. Like LiteLLM, requests are cached whatever
their temperature: an identical request within the TTL is nearly always a retry or a duplicate. Set
`only_deterministic: true` to cache only temperature-0 requests. Requests asking for several choices
(n > 1) are never cached.

Per-request controls (`CacheControl.from_request`): header `Cache-Control: no-cache` (or body
`cache: {"no-cache": true}`, LiteLLM's spelling) skips the lookup but stores the fresh answer;
`no-store` serves a hit if there is one but does not store; `x-tiergate-cache: off` does neither;
`max-age`/`s-maxage` (header or body) only accept entries younger than that; body `cache: {"ttl": N}`
stores the answer for N seconds.

Config (`tiergate_settings.cache`): enabled (true), ttl (seconds or "10m"/"2h"; 600), max_entries
(10000), max_bytes (bytes or "200MB"; 200 MB), memory_entries (512: decoded-ready bodies kept in RAM),
only_deterministic (false).

Streams: a hit on a streaming request is replayed with `app.assembly.events_from_response` (a proper
canonical stream the dialect encoder turns into SSE); a streamed answer is stored once
`app.assembly.ResponseAssembler` has seen its MessageEnd. Both copies of an exchange share one entry.

Speed: the key index lives in memory, so a miss costs no I/O; a hit on one of the `memory_entries` most
recently used answers costs a dictionary lookup and a decode (microseconds), and `lookup()` serves it
without awaiting; older hits (`await get()`) read one row in the cache's worker thread. Writes and deletions go to that thread and are never awaited on the request
path. Eviction is least-recently-used within a process; after a restart, the oldest-created first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import orjson

from app.canonical import ChatRequest, ChatResponse, StopReason, TextPart, ThinkingPart, ToolCallPart, Usage
from app.config.schema import Section

log = logging.getLogger(__name__)

KEY_VERSION = 1
CACHEABLE_STOPS = frozenset({StopReason.END_TURN, StopReason.TOOL_USE, StopReason.STOP_SEQUENCE,
                             StopReason.MAX_TOKENS})
# Body fields outside the canonical model that change the answer (kept in `ChatRequest.raw`).
EXTRA_KEY_FIELDS = ("top_k", "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                    "top_logprobs", "repetition_penalty", "min_p", "verbosity", "modalities", "prediction",
                    "web_search_options", "truncation")


# ------------------------------------------------------------------------------------------ settings
@dataclass(slots=True)
class CacheSettings:
    enabled: bool = True
    ttl: float = 600.0
    max_entries: int = 10_000
    max_bytes: int = 200 * 1024 * 1024
    memory_entries: int = 512
    only_deterministic: bool = False

    @classmethod
    def from_section(cls, section: Section) -> "CacheSettings":
        """Validate `tiergate_settings.cache`; raises app.errors.ConfigError at the offending line."""
        out = cls()
        for key, value in section.data.items():
            if key in ("enabled", "only_deterministic"):
                if not isinstance(value, bool):
                    raise section.error("expected true or false", key)
                setattr(out, key, value)
            elif key == "ttl":
                out.ttl = _duration(section, key, value)
            elif key == "max_bytes":
                out.max_bytes = _size(section, key, value)
            elif key in ("max_entries", "memory_entries"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise section.error("expected a whole number >= 0", key)
                setattr(out, key, value)
            else:
                raise section.error(f"unknown key {key!r} (expected enabled, ttl, max_entries, max_bytes, "
                                    "memory_entries, only_deterministic)", key)
        return out


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _duration(section: Section, key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value).lower())
    if m and float(m.group(1)) > 0:
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise section.error("expected a duration in seconds or like '10m', '2h'", key)


def _size(section: Section, key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", str(value).lower())
    if m:
        return int(float(m.group(1)) * _SIZES[m.group(2) or ""])
    raise section.error("expected a size in bytes or like '200MB', '1GiB'", key)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What one request allows: `read` a cached answer, `write` the fresh one, with optional ages."""

    read: bool = True
    write: bool = True
    ttl: float | None = None  # store the answer for this long instead of the configured TTL
    max_age: float | None = None  # only accept entries younger than this

    @classmethod
    def from_request(cls, headers: Mapping[str, str], body: Mapping[str, Any] | None = None) -> "CacheControl":
        read = write = True
        ttl = max_age = None
        # aiohttp's headers are case-insensitive already; a plain mapping (tests, callers) is lower-cased
        lower = headers if hasattr(headers, "getall") else {k.lower(): v for k, v in headers.items()}
        switch = lower.get("x-tiergate-cache", "").strip().lower()
        if switch in ("off", "false", "0", "no", "bypass"):
            read = write = False
        elif switch in ("refresh", "no-cache"):
            read = False
        for directive in lower.get("cache-control", "").lower().split(","):
            name, _, arg = directive.strip().partition("=")
            if name == "no-cache":
                read = False
            elif name == "no-store":
                write = False
            elif name in ("max-age", "s-maxage") and arg.strip().isdigit():
                max_age = float(arg.strip())
        opts = body.get("cache") if body else None
        if isinstance(opts, dict):
            if opts.get("no-cache") is True:
                read = False
            if opts.get("no-store") is True:
                write = False
            if _positive(opts.get("ttl")):
                ttl = float(opts["ttl"])
            if _positive(opts.get("s-maxage")) or opts.get("s-maxage") == 0:
                max_age = float(opts["s-maxage"])
        return cls(read, write, ttl, max_age)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


# -------------------------------------------------------------------------------------- key & codec
_ENCODERS: dict[type, Any] = {}


def _encoder(cls: type) -> Any:
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name != "cache_control")
    tag = cls.__name__

    def encode(obj: Any) -> dict[str, Any]:
        out = {"t": tag}
        for name in names:
            out[name] = getattr(obj, name)
        return out

    return encode


def _tagged(obj: Any) -> Any:
    """orjson `default`: dataclasses as {"t": class name, field: value...}, minus `cache_control`."""
    enc = _ENCODERS.get(type(obj))
    if enc is None:
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            raise TypeError(type(obj).__name__)
        enc = _ENCODERS[type(obj)] = _encoder(type(obj))
    return enc(obj)


_KEY_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def encode_response(resp: ChatResponse) -> bytes:
    return orjson.dumps({"id": resp.id, "model": resp.model, "parts": resp.parts, "stop": resp.stop_reason,
                         "usage": resp.usage, "created": resp.created},
                        default=_tagged, option=orjson.OPT_PASSTHROUGH_DATACLASS)


def _part(d: dict[str, Any]) -> Any:
    t = d["t"]
    if t == "TextPart":
        return TextPart(d["text"])
    if t == "ToolCallPart":
        return ToolCallPart(d["id"], d["name"], d["arguments"])
    if t == "ThinkingPart":
        return ThinkingPart(d["text"], d.get("signature"), d.get("redacted"))
    raise ValueError(f"unexpected part {t} in a cached response")


def decode_response(body: bytes) -> ChatResponse:
    d = orjson.loads(body)
    u = d["usage"]
    usage = Usage(u["input_tokens"], u["output_tokens"], u["cache_read_tokens"], u["cache_write_tokens"],
                  u["reasoning_tokens"], u["estimated"])
    return ChatResponse(d["id"], d["model"], [_part(p) for p in d["parts"]], StopReason(d["stop"]), usage,
                        d["created"])


# --------------------------------------------------------------------------------------------- cache
@dataclass(frozen=True, slots=True)
class CacheEntry:
    response: ChatResponse
    deployment: str  # id of the deployment that produced the answer (for the "saved" figure)
    created: float

    @property
    def age(self) -> float:
        return time.time() - self.created


@dataclass(slots=True)
class _Meta:
    created: float
    expires: float
    size: int
    deployment: str


class ResponseCache:
    """`key()` per request; `lookup()` (sync, memory) or `await get()` (memory, then disk) before routing;
    `store()` / `await put()` after a complete answer."""

    def __init__(self, db_path: str | Path | None, settings: CacheSettings | None = None) -> None:
        self.db_path = Path(db_path) if db_path is not None else None
        self.settings = settings or CacheSettings()
        self._index: OrderedDict[str, _Meta] = OrderedDict()  # every live entry, least recently used first
        self._bodies: OrderedDict[str, bytes] = OrderedDict()  # the most recently used bodies
        self._bytes = 0
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self.hits = self.misses = 0

    # ------------------------------------------------------------------------------------ keys
    def key(self, req: ChatRequest, tier: str, agent: str) -> str | None:
        """The cache key of `req`, or None when it must not be cached (disabled, n > 1, sampled and
        only_deterministic)."""
        s = self.settings
        if not s.enabled:
            return None
        raw = req.raw or {}
        if raw.get("n") not in (None, 1):
            return None
        if s.only_deterministic and req.temperature != 0:
            return None
        material = {
            "v": KEY_VERSION, "agent": agent, "tier": tier, "system": req.system, "messages": req.messages,
            "tools": req.tools, "tool_choice": req.tool_choice, "max_tokens": req.max_tokens,
            "temperature": req.temperature, "top_p": req.top_p, "stop": req.stop, "seed": req.seed,
            "response_format": req.response_format, "reasoning_effort": req.reasoning_effort,
            "thinking": req.thinking,
            # Only headers that change the answer: anthropic-beta does; anthropic-version (every SDK sends
            # one) does not, and keeping it would stop OpenAI and Anthropic clients sharing an entry.
            "headers": {k.lower(): v for k, v in req.headers.items() if k.lower() == "anthropic-beta"},
            "extra": {k: raw[k] for k in EXTRA_KEY_FIELDS if k in raw},
        }
        blob = orjson.dumps(material, default=_tagged, option=_KEY_OPTS)
        return hashlib.sha256(blob).hexdigest()[:40]  # sha256: hardware-accelerated, ~2x blake2b here

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the database and load the key index (expired entries are dropped)."""
        if self.db_path is None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-cache")
        self._conn = await self._run(_open_cache_db, self.db_path)
        rows = await self._run(_load_index, self._conn, time.time())
        for key, created, expires, size, deployment in rows:
            self._index[key] = _Meta(created, expires, size, deployment)
            self._bytes += size
        self._evict()

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._run(conn.close)  # after every queued write: one FIFO thread
        self._executor.shutdown(wait=False)
        self._executor = None

    # ------------------------------------------------------------------------------ get and put
    def lookup(self, key: str, *, max_age: float | None = None) -> CacheEntry | None:
        """A hit from memory, without awaiting (None also when the answer is only on disk: use `get`)."""
        meta = self._live_meta(key, max_age)
        if meta is None:
            return None
        body = self._bodies.get(key)
        if body is None:
            self.misses += 1
            return None
        return self._hit(key, meta, body)

    async def get(self, key: str, *, max_age: float | None = None) -> ChatResponse | None:
        entry = await self.get_entry(key, max_age=max_age)
        return entry.response if entry is not None else None

    async def get_entry(self, key: str, *, max_age: float | None = None) -> CacheEntry | None:
        """A hit from memory, or from disk through the cache's thread."""
        meta = self._live_meta(key, max_age)
        if meta is None:
            return None
        body = self._bodies.get(key)
        if body is None:
            body = await self._run(_read_body, self._conn, key) if self._conn is not None else None
            if body is None or self._index.get(key) is not meta:
                if body is None:
                    self._drop(key)
                self.misses += 1
                return None
        return self._hit(key, meta, body)

    def _live_meta(self, key: str, max_age: float | None) -> _Meta | None:
        meta = self._index.get(key)
        now = time.time()
        if meta is None or meta.expires <= now or (max_age is not None and now - meta.created > max_age):
            if meta is not None and meta.expires <= now:
                self._drop(key)
            self.misses += 1
            return None
        return meta

    def _hit(self, key: str, meta: _Meta, body: bytes) -> CacheEntry | None:
        try:
            resp = decode_response(body)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping an unreadable cache entry")
            self._drop(key)
            self.misses += 1
            return None
        self._remember(key, body)
        self._index.move_to_end(key)
        self.hits += 1
        return CacheEntry(resp, meta.deployment, meta.created)

    async def put(self, key: str, resp: ChatResponse, *, agent: str = "", tier: str = "", deployment: str = "",
                  ttl: float | None = None) -> bool:
        """`store`, for callers that prefer to await."""
        return self.store(key, resp, agent=agent, tier=tier, deployment=deployment, ttl=ttl)

    def store(self, key: str, resp: ChatResponse, *, agent: str = "", tier: str = "", deployment: str = "",
              ttl: float | None = None) -> bool:
        """Keep a complete answer (False when it is not cacheable). Returns at once: the disk write happens
        later in the cache's thread."""
        if resp.stop_reason not in CACHEABLE_STOPS or not resp.parts:
            return False
        body = encode_response(resp)
        if len(body) > self.settings.max_bytes or self.settings.max_entries == 0:
            return False
        now = time.time()
        meta = _Meta(now, now + (ttl or self.settings.ttl), len(body), deployment)
        old = self._index.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._index[key] = meta
        self._bytes += meta.size
        self._remember(key, body)
        self._evict()
        if key in self._index:
            self._submit(_write_entry, key, agent, tier, deployment, meta.created, meta.expires, body)
        return True

    def clear(self) -> None:
        """Forget every entry (memory and disk)."""
        self._index.clear()
        self._bodies.clear()
        self._bytes = 0
        self._submit(_clear)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    # ---------------------------------------------------------------------------------- helpers
    def _remember(self, key: str, body: bytes) -> None:
        self._bodies[key] = body
        self._bodies.move_to_end(key)
        while len(self._bodies) > self.settings.memory_entries:
            self._bodies.popitem(last=False)

    def _drop(self, key: str) -> None:
        meta = self._index.pop(key, None)
        if meta is not None:
            self._bytes -= meta.size
        self._bodies.pop(key, None)
        self._submit(_delete, [key])

    def _evict(self) -> None:
        s = self.settings
        gone = []
        while self._index and (len(self._index) > s.max_entries or self._bytes > s.max_bytes):
            key, meta = self._index.popitem(last=False)
            self._bytes -= meta.size
            self._bodies.pop(key, None)
            gone.append(key)
        if gone:
            self._submit(_delete, gone)

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._executor is None or self._conn is None:
            return
        conn = self._conn
        future = self._executor.submit(fn, conn, *args)
        future.add_done_callback(_log_failure)

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _log_failure(future: Any) -> None:
    e = future.exception()
    if e is not None:
        log.warning("response cache write failed: %s", type(e).__name__)


# ------------------------------------------------------------------------- blocking, cache thread
def _open_cache_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
        conn.execute("INSERT INTO schema_version VALUES (?)", (KEY_VERSION,))
    conn.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, agent TEXT NOT NULL, tier TEXT NOT NULL,"
                 " deployment TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, size INTEGER NOT NULL,"
                 " body BLOB NOT NULL)")
    conn.execute("CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires)")
    return conn


def _load_index(conn: sqlite3.Connection, now: float) -> list[tuple[str, float, float, int, str]]:
    conn.execute("DELETE FROM entries WHERE expires <= ?", (now,))
    return conn.execute("SELECT key, created, expires, size, deployment FROM entries ORDER BY created").fetchall()


def _read_body(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute("SELECT body FROM entries WHERE key = ?", (key,)).fetchone()
    return bytes(row[0]) if row else None


def _write_entry(conn: sqlite3.Connection, key: str, agent: str, tier: str, deployment: str, created: float,
                 expires: float, body: bytes) -> None:
    conn.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (key, agent, tier, deployment, created, expires, len(body), body))


def _delete(conn: sqlite3.Connection, keys: list[str]) -> None:
    conn.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in keys])


def _clear(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM entries")
