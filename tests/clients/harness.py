"""Running real agent clients (Claude Code, Codex CLI, aider) against a Tiergate core with fake upstreams.

Where the clients come from: `scripts/install_clients.py` installs them into `<repo>/.clients` (or
`$TIERGATE_CLIENTS_DIR`): npm packages under `node_modules/.bin`, aider in its own venv `aider-venv`. A client
found on PATH is used too. A missing client skips its tests (see conftest.py).

How "only loopback" is checked, three ways:
1. Every client runs with HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (both spellings) pointing at an `EgressTrap` on
   127.0.0.1 and NO_PROXY=127.0.0.1,localhost. Loopback traffic (the client → Tiergate) goes direct; anything
   else the client tries through its HTTP stack reaches the trap, which records the target (`CONNECT host:443`)
   and refuses it. The tests assert the trap saw nothing. (The three clients' HTTP stacks — Bun's fetch, Rust's
   reqwest, Python's httpx/requests — all honour these variables; a client that opened raw sockets to a public
   address would not be seen here, which is what running CI in a network namespace would add. One side effect:
   Claude Code skips its keyless `HEAD /` start-up probe when a proxy is set, so the test of that probe runs
   without the proxies.)
2. In the test process, `LoopbackGuard` wraps `socket.socket.connect` / `connect_ex`: Tiergate (and anything else
   in the process) connecting to a non-loopback address is refused and recorded.
3. The upstream fakes saw every request: each chat request Tiergate recorded names a fake deployment and the
   fakes served exactly as many turns as the client needed.

The client's environment is built from scratch (PATH, a temporary HOME, locale, the proxies, and what the test
adds), so a developer's real API keys or client config never reach a client under test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.events import UsageRecorded
from app.usage import UsageRecord

REPO = Path(__file__).resolve().parents[2]

# Where each client's executable lives inside the clients directory (npm --prefix / a venv).
CLIENT_PATHS = {
    "claude": ("node_modules/.bin/claude",),
    "codex": ("node_modules/.bin/codex",),
    "aider": ("aider-venv/bin/aider", "aider-venv/Scripts/aider.exe"),
}

# The tiers every client test uses: one per upstream dialect. `thinker` is a local model with Ollama's
# "thinking" capability (added to the fake by the tests that use it).
CLIENT_TIERS = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: codex
    litellm_params: {{model: openai/gpt-5-codex, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 32768}}
  - model_name: thinker
    litellm_params: {{model: ollama_chat/qwen3:1.7b, api_base: "{ollama}", num_ctx: 32768}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
  model_aliases:
    "claude-sonnet-4-5*": orchestrator
"""

# tier -> (which fake answers it, the dialect Tiergate speaks to it)
TIER_UPSTREAM = {
    "orchestrator": ("anthropic", "anthropic"),
    "coder": ("openai", "chat"),
    "codex": ("openai", "responses"),
    "helper": ("ollama", "ollama"),
    "thinker": ("ollama", "ollama"),
}
CHAT_PATHS = {"anthropic": "/v1/messages", "chat": "/v1/chat/completions", "responses": "/v1/responses",
              "ollama": "/api/chat"}


# ------------------------------------------------------------------------------------- locating clients
def clients_dir() -> Path:
    return Path(os.environ.get("TIERGATE_CLIENTS_DIR") or REPO / ".clients")


def find_client(name: str) -> str | None:
    """The executable of client `name` ("claude", "codex", "aider"): the clients directory first, then PATH."""
    base = clients_dir()
    for rel in CLIENT_PATHS[name]:
        path = base / rel
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


# ------------------------------------------------------------------------------------------ egress trap
class EgressTrap:
    """A refusing HTTP proxy on 127.0.0.1: records the first line of every request a client sends it."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode("latin-1").strip() or "<empty request>")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError) as e:
            self.attempts.append(f"<{type(e).__name__}>")
        finally:
            writer.close()


# ------------------------------------------------------------------------------------- loopback guard
def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class LoopbackGuard:
    """While installed, a connection from this process to a non-loopback address is refused and recorded."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._saved: tuple[Any, Any] | None = None

    def install(self) -> None:
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        self._saved = (connect, connect_ex)
        guard = self

        def checked(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                guard.refused.append(repr(address))
                raise OSError(101, f"tests: non-loopback connection refused: {address!r}")

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            checked(sock, address)
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            checked(sock, address)
            return connect_ex(sock, address)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._saved is not None:
            socket.socket.connect, socket.socket.connect_ex = self._saved  # type: ignore[method-assign]
            self._saved = None


# ------------------------------------------------------------------------------------------ usage log
class UsageLog:
    """Every UsageRecord the core emits while subscribed (in order)."""

    def __init__(self, bus: Any) -> None:
        self.records: list[UsageRecord] = []
        self._unsubscribe = bus.subscribe(lambda ev: self.records.append(ev.record), UsageRecorded)

    def close(self) -> None:
        self._unsubscribe()


# ------------------------------------------------------------------------------------ inbound recorder
@dataclass
class Inbound:
    method: str
    path_qs: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON (None when empty)


class InboundRecorder:
    """An aiohttp middleware (after Tiergate's auth) that keeps what clients sent to Tiergate."""

    def __init__(self) -> None:
        self.requests: list[Inbound] = []

    @property
    def middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            raw = await request.read()
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.requests.append(Inbound(request.method, request.path_qs, headers,
                                         orjson.loads(raw) if raw else None))
            return await handler(request)

        return record

    def chat(self, path: str) -> list[Inbound]:
        return [r for r in self.requests if r.method == "POST" and r.path_qs.split("?")[0] == path]


# ------------------------------------------------------------------------------------------- running
@dataclass
class ClientRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def describe(self) -> str:
        """For assertion messages: the exit status and the tails of both streams."""
        return (f"{Path(self.argv[0]).name} exited {self.returncode} after {self.seconds:.1f} s"
                f"{' (timed out)' if self.timed_out else ''}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}")


@dataclass
class ClientEnv:
    """The scratch directories of one client run: `work` (the empty project directory the client runs in)
    and `home` (its HOME, config and caches)."""

    root: Path
    work: Path = field(init=False)
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = self.root / "work"
        self.home = self.root / "home"
        self.work.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)


def base_env(home: Path, trap: EgressTrap, extra: dict[str, str]) -> dict[str, str]:
    """A client environment from scratch: no variable of the developer's shell except PATH and locale."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "USERPROFILE": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
    }
    for key in ("SYSTEMROOT", "COMSPEC", "PATHEXT", "TEMP", "TMP"):  # Windows needs these to start anything
        if key in os.environ:
            env[key] = os.environ[key]
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[key] = env[key.lower()] = trap.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


async def run_client(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> ClientRun:
    """Run a client to completion (stdin closed); on `timeout` its whole process group is killed."""
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"start_new_session": True} if sys.platform != "win32" else {}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, **kwargs)
    timed_out = False
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        timed_out = True
        if sys.platform != "win32":
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this run started, and nothing else
            except ProcessLookupError:
                pass
        else:
            proc.kill()
        out, err = await proc.communicate()
    return ClientRun(argv, proc.returncode if proc.returncode is not None else -1,
                     out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                     time.perf_counter() - started, timed_out)


# ------------------------------------------------------------------------------ reading upstream requests
def chat_requests(fake: Any, dialect: str) -> list[dict[str, Any]]:
    """JSON bodies of the chat requests a fake received for `dialect`, in order."""
    path = CHAT_PATHS[dialect]
    return [r.json for r in fake.requests if r.method == "POST" and r.path == path]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text(p.get("text") if p.get("type") in ("text", "input_text", "output_text")
                             else p.get("content")) for p in content if isinstance(p, dict))
    return ""


def tool_results(body: dict[str, Any], dialect: str) -> dict[str, str]:
    """Tool results in an upstream request body, keyed by call id (Ollama: by tool name), as text."""
    out: dict[str, str] = {}
    if dialect == "anthropic":
        for msg in body.get("messages") or []:
            if msg.get("role") == "user" and isinstance(msg.get("content"), list):
                for block in msg["content"]:
                    if block.get("type") == "tool_result":
                        out[block["tool_use_id"]] = _text(block.get("content"))
    elif dialect == "chat":
        for msg in body.get("messages") or []:
            if msg.get("role") == "tool":
                out[msg["tool_call_id"]] = _text(msg.get("content"))
    elif dialect == "responses":
        for item in body.get("input") or []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                output = item.get("output")
                out[item["call_id"]] = output if isinstance(output, str) else _text(output)
    elif dialect == "ollama":
        for msg in body.get("messages") or []:
            if msg.get("role") == "tool":
                out[msg.get("tool_name") or ""] = _text(msg.get("content"))
    return out


def last_user_text(body: dict[str, Any], dialect: str) -> str:
    """Text of the last user-side message of an upstream request body."""
    if dialect == "responses":
        users = [i for i in body.get("input") or [] if isinstance(i, dict) and i.get("role") == "user"]
    else:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


# ------------------------------------------------------------------------------------ common checks
def check_traffic(stack: Any, tier: str, *, turns: int, refused: int = 0) -> list[UsageRecord]:
    """What every run must show: nothing left the machine, the tier's fake served `turns` chat turns (after
    `refused` requests it answered with an error), and Tiergate recorded each turn with the upstream's exact
    token figures. Returns the records."""
    assert stack.trap.attempts == [], f"a client tried to reach the network: {stack.trap.attempts}"
    assert stack.guard.refused == [], f"Tiergate tried to reach a non-loopback address: {stack.guard.refused}"
    fake = stack.upstream(tier)
    dialect = TIER_UPSTREAM[tier][1]
    assert len(chat_requests(fake, dialect)) == turns + refused
    assert len(fake.served) == turns
    for name, other in stack.fakes.items():
        if other is not fake:
            assert [r.path for r in other.requests if r.method == "POST" and r.path in CHAT_PATHS.values()] == [], \
                f"the {name} fake was asked for a chat turn"
    records = stack.usage.records
    assert [(r.tier, r.status) for r in records] == [(tier, "ok")] * turns
    for rec, turn in zip(records, fake.served):
        assert rec.deployment.startswith(f"{tier}/")
        assert (rec.input_tokens, rec.output_tokens) == (turn.input_tokens, turn.output_tokens)
    return records
