"""A fake Ollama server with the real endpoints and wire formats (docs/api.md and server/routes.go).

    fake = FakeOllama()                       # gemma3:4b and llama3.2 installed; more in the library
    fake.add_model(FakeModel("qwen3:14b", size=9_276_198_565, ...), installed=False)   # pullable
    fake.replies.append(Reply(text="Hi", tool_calls=[("add", '{"a": 1}')]))            # next chat answer
    fake.pull_delay = 0.001; fake.pull_chunk = 1 << 20                               # pull pacing

Endpoints: HEAD/GET /, GET /api/version, GET/HEAD /api/tags, POST /api/show, GET /api/ps, POST /api/pull,
DELETE /api/delete, POST /api/copy, POST /api/generate, POST /api/chat, POST /api/embed, and the registry's
GET /v2/<ns>/<model>/manifests/<tag> (so a test can point Tiergate's registry lookups here). /api/create and
/api/push are not served: Tiergate must never call them (the fake answers 404 and records the attempt).

Chat and generate load the model they are asked for (it then shows in /api/ps with `context_length` =
options.num_ctx, default 4096, and `expires_at` from keep_alive, default 5m); keep_alive 0 unloads it after the
request. Every chat is recorded in `chat_calls` (model, num_ctx, keep_alive, stream, messages, tools) and what
was served in `served` (scripts.Turn). Loads and unloads are counted in `loads` / `unloads`.

Pulls stream Ollama's progress lines ("pulling manifest", "pulling <digest[7:19]>" with digest/total/completed,
"verifying sha256 digest", "writing manifest", "success"). Downloaded bytes are kept per layer in `partial`, so
a pull cancelled by the client continues from there the next time, as Ollama's does. `fail_pull[model] = N`
makes the next pull of that model fail after N more bytes with an in-stream {"error": ...}.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.base import FakeServer
from tests.fakes.scripts import Ids, Reply, Turn, resolve, split

GiB = 1 << 30
MiB = 1 << 20
DEFAULT_CONTEXT = 4096
DEFAULT_KEEP_ALIVE = 300.0  # Ollama's default: 5m
_DONE = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "pause_turn": "stop",
         "max_tokens": "length", "refusal": "stop", "content_filter": "stop"}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _key(name: str) -> str:
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class FakeModel:
    """A model the fake knows. `layers` (digest, size) default to a weights layer plus template and params
    layers summing to `size`."""

    name: str
    size: int = 2_019_393_189
    family: str = "llama"
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"
    model_info: dict[str, Any] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    template: str = "{{ .Prompt }}"
    parameters: str = 'stop                           "<|eot_id|>"'
    license: str = "LICENSE"
    modified_at: str = "2025-06-01T10:00:00.123456789Z"
    layers: list[tuple[str, int]] | None = None
    loaded_size: int | None = None  # what /api/ps reports when loaded (default: size x 1.15 + 256 MiB)
    vram_fraction: float = 1.0  # share of loaded_size in GPU memory
    embedding_dim: int = 8
    digest: str = ""  # manifest digest /api/tags and /api/ps show (default: derived from the name)

    def __post_init__(self) -> None:
        self.name = _key(self.name)
        self.digest = self.digest or _sha(self.name + ":manifest")
        if self.layers is None:
            small = [(f"sha256:{_sha(self.name + ':template')}", 1_429), (f"sha256:{_sha(self.name + ':params')}", 96)]
            self.layers = [(f"sha256:{_sha(self.name + ':model')}", self.size - 1_525), *small]
        self.size = sum(s for _, s in self.layers)

    @property
    def resident(self) -> int:
        return self.loaded_size if self.loaded_size is not None else int(self.size * 1.15) + 256 * MiB

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
                "parameter_size": self.parameter_size, "quantization_level": self.quantization_level}


def llama_info(*, blocks: int = 28, heads: int = 24, kv_heads: int = 8, embedding: int = 3072,
               context: int = 131072, params: int = 3_212_749_888, arch: str = "llama") -> dict[str, Any]:
    """model_info the way /api/show reports it (array values elided as Ollama does without verbose)."""
    return {
        "general.architecture": arch, "general.basename": "Llama-3.2", "general.file_type": 15,
        "general.parameter_count": params, "general.quantization_version": 2,
        f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.attention.key_length": embedding // heads, f"{arch}.attention.value_length": embedding // heads,
        f"{arch}.attention.layer_norm_rms_epsilon": 0.00001, f"{arch}.block_count": blocks,
        f"{arch}.context_length": context, f"{arch}.embedding_length": embedding,
        f"{arch}.feed_forward_length": 8192, f"{arch}.rope.dimension_count": embedding // heads,
        f"{arch}.rope.freq_base": 500000, f"{arch}.vocab_size": 128256,
        "tokenizer.ggml.bos_token_id": 128000, "tokenizer.ggml.eos_token_id": 128009,
        "tokenizer.ggml.merges": None, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
        "tokenizer.ggml.token_type": None, "tokenizer.ggml.tokens": None,
    }


def gemma3_info(*, blocks: int, heads: int, kv_heads: int, embedding: int, key_length: int,
                params: int) -> dict[str, Any]:
    return {
        "general.architecture": "gemma3", "general.file_type": 15, "general.parameter_count": params,
        "general.quantization_version": 2, "gemma3.attention.head_count": heads,
        "gemma3.attention.head_count_kv": kv_heads, "gemma3.attention.key_length": key_length,
        "gemma3.attention.value_length": key_length, "gemma3.attention.sliding_window": 1024,
        "gemma3.block_count": blocks, "gemma3.context_length": 131072, "gemma3.embedding_length": embedding,
        "gemma3.feed_forward_length": embedding * 4, "tokenizer.ggml.tokens": None,
    }


def default_models() -> list[tuple[FakeModel, bool]]:
    """(model, installed) pairs a fresh fake starts with."""
    return [
        (FakeModel("llama3.2:latest", size=2_019_393_189, model_info=llama_info()), True),
        (FakeModel("gemma3:4b", size=3_338_801_804, family="gemma3", parameter_size="4.3B",
                   capabilities=["completion", "vision"], loaded_size=5_964_735_424,
                   model_info=gemma3_info(blocks=34, heads=8, kv_heads=4, embedding=2560, key_length=256,
                                          params=4_299_915_632)), True),
        (FakeModel("qwen3:14b", size=9_276_198_565, family="qwen3", parameter_size="14.8B",
                   capabilities=["completion", "tools", "thinking"],
                   model_info=llama_info(arch="qwen3", blocks=40, heads=40, kv_heads=8, embedding=5120,
                                         context=40960, params=14_768_307_200)), False),
        (FakeModel("gemma3:27b", size=17_396_936_887, family="gemma3", parameter_size="27.4B",
                   capabilities=["completion", "vision"],
                   model_info=gemma3_info(blocks=62, heads=32, kv_heads=16, embedding=5376, key_length=128,
                                          params=27_432_406_640)), False),
    ]


@dataclass
class Loaded:
    model: FakeModel
    context_length: int
    expires_at: datetime


@dataclass
class ChatCall:
    model: str
    stream: bool
    num_ctx: int | None
    keep_alive: Any
    options: dict[str, Any]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    think: Any = None
    format: Any = None


def _seconds(keep_alive: Any) -> float | None:
    """keep_alive as seconds (None: the default); negative means forever."""
    if keep_alive is None:
        return None
    if isinstance(keep_alive, (int, float)):
        return float(keep_alive)
    text = str(keep_alive).strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    total, num = 0.0, ""
    i, sign = 0, -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("-")
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            num += text[i]
            i += 1
            continue
        for unit in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if text.startswith(unit, i):
                total += float(num) * units[unit]
                num, i = "", i + len(unit)
                break
        else:
            raise ValueError(keep_alive)
    return sign * total


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds")


class FakeOllama(FakeServer):
    def __init__(self, *, models: list[tuple[FakeModel, bool]] | None = None, version: str = "0.12.6",
                 seed: int = 0) -> None:
        self.version = version
        self.library: dict[str, FakeModel] = {}  # pullable
        self.installed: dict[str, FakeModel] = {}
        self.loaded: dict[str, Loaded] = {}
        self.partial: dict[str, int] = {}  # layer digest -> bytes downloaded so far
        self.pull_chunk = 64 * MiB  # bytes per progress line
        self.pull_delay = 0.0  # seconds between progress lines
        self.fail_pull: dict[str, int] = {}  # model -> fail after this many more bytes
        self.load_delay = 0.0  # seconds a load takes
        self.replies: list[Reply] = []
        self.served: list[Turn] = []
        self.chat_calls: list[ChatCall] = []
        self.loads: list[tuple[str, int]] = []  # (model, num_ctx) each time a model is (re)loaded
        self.unloads: list[str] = []
        self.pull_starts: list[dict[str, int]] = []  # per pull: layer digest -> bytes it resumed from
        self.active_pulls = 0  # pull handlers still running (a cancelled client's ends a moment later)
        self.ids = Ids(seed)
        for model, installed in (models if models is not None else default_models()):
            self.add_model(model, installed=installed)
        super().__init__()

    def add_model(self, model: FakeModel, *, installed: bool = True) -> FakeModel:
        self.library[model.name] = model
        if installed:
            self.installed[model.name] = model
            for digest, size in model.layers or []:
                self.partial[digest] = size
        return model

    def load(self, name: str, *, num_ctx: int = DEFAULT_CONTEXT, keep_alive: Any = None) -> None:
        """Mark an installed model loaded (test setup)."""
        model = self.installed[_key(name)]
        self._touch(model, num_ctx, keep_alive, count=False)

    # --------------------------------------------------------------------------------- base hooks
    def setup_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self._root)  # HEAD / too
        r.add_get("/api/version", self._version)
        r.add_get("/api/tags", self._tags)  # aiohttp answers HEAD for GET routes
        r.add_post("/api/show", self._show)
        r.add_get("/api/ps", self._ps)
        r.add_post("/api/pull", self._pull)
        r.add_delete("/api/delete", self._delete)
        r.add_post("/api/copy", self._copy)
        r.add_post("/api/generate", self._generate)
        r.add_post("/api/chat", self._chat)
        r.add_post("/api/embed", self._embed)
        r.add_get("/v2/{ns}/{model}/manifests/{tag}", self._manifest)

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        raw = await request.read()
        if not raw:
            return self._error(400, "missing request body")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            return self._error(400, str(e))
        return body if isinstance(body, dict) else self._error(400, "json: cannot unmarshal into Go value")

    # ------------------------------------------------------------------------------------ models
    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.version})

    def _tag_entry(self, m: FakeModel) -> dict[str, Any]:
        return {"name": m.name, "model": m.name, "modified_at": m.modified_at, "size": m.size,
                "digest": m.digest, "details": m.details()}

    async def _tags(self, request: web.Request) -> web.Response:
        models = sorted(self.installed.values(), key=lambda m: m.modified_at, reverse=True)
        return web.json_response({"models": [self._tag_entry(m) for m in models]})

    async def _show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("model") or body.get("name")
        if not name:
            return self._error(400, "model is required")
        m = self.installed.get(_key(name))
        if m is None:
            return self._error(404, f"model '{name}' not found")
        params = m.parameters
        return web.json_response({
            "license": m.license, "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {m.name}\n",
            "parameters": params, "template": m.template, "details": m.details(), "model_info": m.model_info,
            "tensors": [], "capabilities": m.capabilities, "modified_at": m.modified_at})

    async def _ps(self, request: web.Request) -> web.Response:
        now = datetime.now(timezone.utc).astimezone()
        for key in [k for k, v in self.loaded.items() if v.expires_at <= now]:
            del self.loaded[key]
        out = []
        for entry in sorted(self.loaded.values(), key=lambda e: e.expires_at, reverse=True):
            m = entry.model
            out.append({"name": m.name, "model": m.name, "size": m.resident, "digest": m.digest,
                        "details": m.details(), "expires_at": _iso(entry.expires_at),
                        "size_vram": int(m.resident * m.vram_fraction), "context_length": entry.context_length})
        return web.json_response({"models": out})

    async def _delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("model") or body.get("name") or ""
        m = self.installed.pop(_key(name), None) if name else None
        if m is None:
            return self._error(404, f"model '{name}' not found")
        self.loaded.pop(m.name, None)
        in_use = {d for other in self.installed.values() for d, _ in other.layers or []}
        for digest, _ in m.layers or []:
            if digest not in in_use:
                self.partial.pop(digest, None)
        return web.Response(status=200)

    async def _copy(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        src, dst = str(body.get("source", "")), str(body.get("destination", ""))
        m = self.installed.get(_key(src)) if src else None
        if m is None:
            return self._error(404, f'model "{src}" not found')
        if not dst:
            return self._error(400, f'destination "{dst}" is invalid')
        # a copy is the same manifest under another name: same digest, as with `ollama cp`
        self.installed[_key(dst)] = replace(m, name=dst, layers=list(m.layers or []), modified_at=_now())
        return web.Response(status=200)

    async def _manifest(self, request: web.Request) -> web.Response:
        ns, model, tag = request.match_info["ns"], request.match_info["model"], request.match_info["tag"]
        name = f"{model}:{tag}" if ns == "library" else f"{ns}/{model}:{tag}"
        m = self.library.get(_key(name))
        if m is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
                                     status=404)
        kinds = ["model", "template", "params", "projector", "license"]
        return web.json_response({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": f"sha256:{_sha(m.name + ':config')}", "size": 487},
            "layers": [{"mediaType": f"application/vnd.ollama.image.{kinds[min(i, 4)]}", "digest": d, "size": s}
                       for i, (d, s) in enumerate(m.layers or [])]},
            content_type="application/vnd.docker.distribution.manifest.v2+json")

    # -------------------------------------------------------------------------------------- pull
    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = str(body.get("model") or body.get("name") or "")
        if not name or any(c in name for c in " \t\n") or name.count("/") > 2:
            return self._error(400, "invalid model name")
        model = self.library.get(_key(name))
        stream = body.get("stream") is not False
        lines = self._pull_lines(model)
        if not stream:
            last: dict[str, Any] = {}
            async for line in lines:
                if "error" in line:
                    return self._error(500, line["error"])
                last = line
            return web.json_response(last)
        self.active_pulls += 1
        try:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            fault = self.stream_fault(request)
            n = 0
            async for line in lines:
                if fault is not None and n >= fault.chunks:
                    assert request.transport is not None
                    request.transport.abort()
                    raise asyncio.CancelledError()
                await resp.write(orjson.dumps(line) + b"\n")
                n += 1
                if "error" in line:
                    break
            await resp.write_eof()
            return resp
        finally:
            self.active_pulls -= 1

    async def _pull_lines(self, model: FakeModel | None):  # noqa: ANN202 - async generator of dicts
        yield {"status": "pulling manifest"}
        if model is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        self.pull_starts.append({d: self.partial.get(d, 0) for d, _ in model.layers or []})
        budget = self.fail_pull.pop(model.name, None)
        for digest, total in model.layers or []:
            status = f"pulling {digest[7:19]}"
            done = self.partial.get(digest, 0)
            if done >= total:
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                continue
            first = {"status": status, "digest": digest, "total": total}
            if done:
                first["completed"] = done
            yield first
            while done < total:
                step = min(self.pull_chunk, total - done)
                if budget is not None:
                    if budget <= 0:
                        yield {"error": f"max retries exceeded: Get \"https://registry.ollama.ai/v2/library/"
                                        f"{model.name.split(':')[0]}/blobs/{digest}\": unexpected EOF"}
                        return
                    step = min(step, budget)
                    budget -= step
                if self.pull_delay:
                    await asyncio.sleep(self.pull_delay)
                else:
                    await asyncio.sleep(0)
                done += step
                self.partial[digest] = done  # kept if the client goes away: the next pull resumes here
                yield {"status": status, "digest": digest, "total": total, "completed": done}
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.installed[model.name] = replace(model, modified_at=_now())
        yield {"status": "success"}

    # ---------------------------------------------------------------------------- loading models
    def _touch(self, m: FakeModel, num_ctx: int | None, keep_alive: Any, *, count: bool = True) -> None:
        ctx = int(num_ctx or DEFAULT_CONTEXT)
        current = self.loaded.get(m.name)
        if (current is None or current.context_length != ctx) and count:
            self.loads.append((m.name, ctx))
        seconds = _seconds(keep_alive)
        seconds = DEFAULT_KEEP_ALIVE if seconds is None else seconds
        now = datetime.now(timezone.utc).astimezone()
        expires = now + timedelta(days=365 * 100) if seconds < 0 else now + timedelta(seconds=seconds)
        self.loaded[m.name] = Loaded(m, ctx, expires)

    def _unload(self, m: FakeModel) -> None:
        if self.loaded.pop(m.name, None) is not None:
            self.unloads.append(m.name)

    def _find(self, name: str) -> FakeModel | None:
        return self.installed.get(_key(name)) if name else None

    async def _schedule(self, m: FakeModel, body: dict[str, Any]) -> None:
        opts = body.get("options") or {}
        current = self.loaded.get(m.name)
        ctx = int(opts.get("num_ctx") or DEFAULT_CONTEXT)
        if (current is None or current.context_length != ctx) and self.load_delay:
            await asyncio.sleep(self.load_delay)
        self._touch(m, ctx, body.get("keep_alive"))

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = str(body.get("model") or "")
        m = self._find(name)
        if m is None:
            return self._error(404, f"model '{name}' not found")
        prompt = body.get("prompt") or ""
        if not prompt and _seconds(body.get("keep_alive")) == 0:
            self._unload(m)
            return web.json_response({"model": name, "created_at": _now(), "response": "", "done": True,
                                      "done_reason": "unload"})
        await self._schedule(m, body)
        if not prompt:
            return web.json_response({"model": name, "created_at": _now(), "response": "", "done": True,
                                      "done_reason": "load"})
        turn = self._turn(request.path, body, [prompt], prompt, name)
        final = {"model": name, "created_at": _now(), "response": turn.text, "done": True,
                 "done_reason": _DONE.get(turn.stop_reason, "stop"), **self._metrics(turn)}
        self._after(m, body)
        if body.get("stream") is False:
            return web.json_response(final)
        lines = [{"model": name, "created_at": _now(), "response": p, "done": False} for p in
                 split(turn.text, turn.chunks)]
        final["response"] = ""
        return await self._send_ndjson(request, [*lines, final], turn)

    def _after(self, m: FakeModel, body: dict[str, Any]) -> None:
        if _seconds(body.get("keep_alive")) == 0:
            self._unload(m)

    # -------------------------------------------------------------------------------------- chat
    def _turn(self, path: str, body: dict[str, Any], texts: list[str], last_user: str, model: str) -> Turn:
        turn = resolve(self.replies.pop(0) if self.replies else None, path=path,
                       stream=body.get("stream") is not False, model=model, texts=texts, last_user=last_user,
                       tool_id=lambda: "call_" + self.ids.alnum(8).lower())
        self.served.append(turn)
        return turn

    @staticmethod
    def _metrics(t: Turn) -> dict[str, int]:
        prompt, output = t.prompt_tokens, t.output_tokens
        prompt_ns, eval_ns, load_ns = 2_000_000 * prompt + 1, 20_000_000 * output + 1, 12_345_678
        return {"total_duration": load_ns + prompt_ns + eval_ns + 1_000_000, "load_duration": load_ns,
                "prompt_eval_count": prompt, "prompt_eval_duration": prompt_ns, "eval_count": output,
                "eval_duration": eval_ns}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = str(body.get("model") or "")
        if not name:
            return self._error(400, "model is required")
        m = self._find(name)
        if m is None:
            return self._error(404, f'model "{name}" not found, try pulling it first')
        messages = body.get("messages") or []
        opts = body.get("options") or {}
        stream = body.get("stream") is not False
        if not messages:
            if _seconds(body.get("keep_alive")) == 0:
                self._unload(m)
                reason = "unload"
            else:
                await self._schedule(m, body)
                reason = "load"
            return web.json_response({"model": name, "created_at": _now(),
                                      "message": {"role": "assistant", "content": ""}, "done_reason": reason,
                                      "done": True})
        if body.get("tools") and "tools" not in m.capabilities:
            return self._error(400, f"registry.ollama.ai/library/{name} does not support tools")
        if body.get("think") and "thinking" not in m.capabilities:
            return self._error(400, f'"{name}" does not support thinking')
        self.chat_calls.append(ChatCall(name, stream, opts.get("num_ctx"), body.get("keep_alive"), dict(opts),
                                        list(messages), list(body.get("tools") or []), body.get("think"),
                                        body.get("format")))
        await self._schedule(m, body)
        texts, last_user = _ollama_texts(messages)
        turn = self._turn(request.path, body, texts, last_user, name)
        calls = [{"id": c.id, "function": {"index": i, "name": c.name, "arguments": _args(c.arguments)}}
                 for i, c in enumerate(turn.tool_calls)]
        final: dict[str, Any] = {"model": turn.model, "created_at": _now(),
                                 "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": _DONE.get(turn.stop_reason, "stop"), **self._metrics(turn)}
        self._after(m, body)
        if not stream:
            msg: dict[str, Any] = {"role": "assistant", "content": turn.text}
            if turn.thinking:
                msg["thinking"] = turn.thinking
            if calls:
                msg["tool_calls"] = calls
            return web.json_response({**final, "message": msg})
        head = {"model": turn.model}
        lines: list[dict[str, Any]] = []
        for p in split(turn.thinking or "", turn.chunks):
            lines.append({**head, "created_at": _now(), "message": {"role": "assistant", "content": "", "thinking": p},
                          "done": False})
        for p in split(turn.text, turn.chunks):
            lines.append({**head, "created_at": _now(), "message": {"role": "assistant", "content": p},
                          "done": False})
        if calls:
            lines.append({**head, "created_at": _now(),
                          "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": False})
        return await self._send_ndjson(request, [*lines, final], turn)

    async def _send_ndjson(self, request: web.Request, lines: list[dict[str, Any]], turn: Turn) -> web.StreamResponse:
        if turn.error_after is not None:
            lines = lines[:turn.error_after] + [{"error": "an error was encountered while running the model: "
                                                          "unexpected EOF"}]
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson", **turn.headers})
        await resp.prepare(request)
        await self.write_chunks(request, resp, [orjson.dumps(x) + b"\n" for x in lines], delay=turn.delay)
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------------------------- embed
    async def _embed(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        name = str(body.get("model") or "")
        m = self._find(name)
        if m is None:
            return self._error(404, f'model "{name}" not found, try pulling it first')
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = int(body.get("dimensions") or m.embedding_dim)
        await self._schedule(m, body)
        vectors = [_vector(str(x), dim) for x in items]
        self._after(m, body)
        return web.json_response({"model": name, "embeddings": vectors, "total_duration": 14_143_917,
                                  "load_duration": 1_019_500,
                                  "prompt_eval_count": sum(len(str(x)) // 4 + 1 for x in items)})


def _args(arguments: str) -> Any:
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments


def _vector(text: str, dim: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % 32] - 127.5) / 127.5 for i in range(dim)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 9) for v in raw]


def _ollama_texts(messages: list[Any]) -> tuple[list[str], str]:
    """(prompt texts, last user turn) of /api/chat messages: every content string in order; the last turn is
    the trailing user/tool messages."""
    texts: list[str] = []
    turn: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        mine = [content] if isinstance(content, str) and content else []
        texts.extend(mine)
        turn = turn + mine if msg.get("role") in ("user", "tool") else []
    return texts, "\n".join(turn)

