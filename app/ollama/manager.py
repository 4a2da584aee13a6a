"""The Ollama model manager: models on every configured host, pulls with progress, loads and unloads, health,
and the memory guard the router wraps local requests in.

    manager = OllamaManager(settings.hosts, bus, MemoryPlanner(settings), settings=settings)
    handle = await manager.pull("local", "gemma3:4b")        # PullProgress events on the bus
    async with manager.acquire("local", "gemma3:4b", num_ctx=32768, tier="helper"):
        ...                                                   # send the request to Ollama

Progress and load changes are emitted on the EventBus (PullProgress, ModelLoadChanged); everything else is
returned as typed values from app.ollama.types. Every Ollama call goes through the official client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from typing import AsyncIterator, Callable, Iterable, Sequence

from app.config.schema import Deployment
from app.errors import BadRequest, TiergateError, UpstreamTimeout
from app.events import EventBus, ModelLoadChanged, PullProgress
from app.ollama.client import OllamaClient
from app.ollama.errors import (FIX_INSTALL, FIX_START, ModelNotInstalled, NotEnoughMemory, OllamaUnavailable,
                               PullFailed, fix_remote)
from app.ollama.guard import UsageBook, model_key
from app.ollama.hosts import OllamaHost, OllamaSettings, is_loopback, normalize_url
from app.ollama.memory import OLLAMA_DEFAULT_CONTEXT, MemoryPlanner, _lru_order, parameters_from_text
from app.ollama.names import normalize, same_model, validate_model_name
from app.ollama.pull import PullHandle, PullResult, PullTracker
from app.ollama.registry import DEFAULT_REGISTRY, manifest_size
from app.ollama.types import (ContextAdvice, FitReport, HostHealth, LoadedModel, ModelDetails, ModelFacts,
                              ModelInfo)

log = logging.getLogger(__name__)

PS_MAX_AGE = 2.0  # seconds a /api/ps reading is trusted when deciding whether a model is loaded
TAGS_MAX_AGE = 30.0


def ollama_installed() -> bool:
    """Whether Ollama is installed on this machine (its CLI on PATH, or the macOS app)."""
    if shutil.which("ollama"):
        return True
    return sys.platform == "darwin" and os.path.isdir("/Applications/Ollama.app")


class OllamaManager:
    def __init__(self, hosts: Sequence[OllamaHost], bus: EventBus, memory: MemoryPlanner, *,
                 settings: OllamaSettings | None = None, registry: str | None = DEFAULT_REGISTRY,
                 installed: Callable[[], bool] | None = None, clock: Callable[[], float] = time.monotonic,
                 client_factory: Callable[[OllamaHost], OllamaClient] = OllamaClient,
                 health_timeout: float = 3.0):
        if not hosts:
            raise ValueError("at least one Ollama host is needed")
        self.hosts = list(hosts)
        self.bus = bus
        self.memory = memory
        self.settings = settings or memory.settings
        self.registry = registry
        self._installed = installed
        self._clock = clock
        self._clients = {h.name: client_factory(h) for h in self.hosts}
        self._health: dict[str, HostHealth] = {}
        self._loaded: dict[str, dict[str, LoadedModel]] = {}
        self._loaded_at: dict[str, float] = {}
        self._tags: dict[str, tuple[float, list[ModelInfo]]] = {}
        self._show: dict[tuple[str, str], ModelDetails] = {}
        self._pulls: dict[tuple[str, str], PullHandle] = {}
        self.book = UsageBook(clock)
        self.health_timeout = health_timeout

    async def close(self) -> None:
        for handle in list(self._pulls.values()):
            handle.cancel()
        for client in self._clients.values():
            await client.close()

    # --------------------------------------------------------------------------------------- hosts
    def host(self, host: OllamaHost | str | None = None) -> OllamaHost:
        if host is None:
            return self.hosts[0]
        if isinstance(host, OllamaHost):
            return host
        for h in self.hosts:
            if h.name == host or h.url == host.rstrip("/"):
                return h
        raise BadRequest(f"no Ollama host named {host!r} (configured: {', '.join(h.name for h in self.hosts)})")

    def host_for(self, api_base: str) -> OllamaHost | None:
        """The configured host a deployment's api_base points at (localhost and 127.0.0.1 are the same)."""
        try:
            want = normalize_url(api_base)
        except ValueError:
            return None
        for h in self.hosts:
            if h.url == want or (is_loopback(h.url) and is_loopback(want) and _port(h.url) == _port(want)):
                return h
        return None

    def _client(self, h: OllamaHost) -> OllamaClient:
        return self._clients[h.name]

    # -------------------------------------------------------------------------------------- health
    async def health(self) -> list[HostHealth]:
        return list(await asyncio.gather(*(self.check_host(h) for h in self.hosts)))

    async def check_host(self, host: OllamaHost | str) -> HostHealth:
        h = self.host(host)
        now = time.time()
        try:
            version = await asyncio.wait_for(self._client(h).version(), timeout=self.health_timeout)
            result = HostHealth(h.name, h.url, "ok", f"Ollama {version} is running".replace("  ", " "),
                                version=version, checked_at=now)
        except OllamaUnavailable:
            if h.local and not (self._installed or ollama_installed)():
                result = HostHealth(h.name, h.url, "not_installed", "Ollama is not installed on this machine",
                                    FIX_INSTALL, checked_at=now)
            elif h.local:
                result = HostHealth(h.name, h.url, "not_running", f"Ollama is not running ({h.url} refuses "
                                    "connections)", FIX_START, checked_at=now)
            else:
                result = HostHealth(h.name, h.url, "unreachable", f"cannot reach Ollama on {h.name} ({h.url})",
                                    fix_remote(h.url), checked_at=now)
        except (asyncio.TimeoutError, UpstreamTimeout):
            fix = "Restart Ollama (quit the app, or stop and rerun `ollama serve`)." if h.local else fix_remote(h.url)
            result = HostHealth(h.name, h.url, "unreachable", f"Ollama on {h.name} does not answer", fix,
                                checked_at=now)
        except TiergateError as e:
            result = HostHealth(h.name, h.url, "error", e.message,
                                f"Check that {h.url} is an Ollama server and that it is up to date.", checked_at=now)
        self._health[h.name] = result
        return result

    def host_available(self, host: OllamaHost | str) -> bool:
        """Cached: False only when the last health check failed (the router skips such hosts)."""
        last = self._health.get(self.host(host).name)
        return last is None or last.ok

    def deployment_available(self, deployment: Deployment) -> bool:
        h = self.host_for(deployment.api_base)
        return h is None or self.host_available(h)

    # -------------------------------------------------------------------------------------- models
    async def list_models(self, host: OllamaHost | str | None = None) -> list[ModelInfo]:
        h = self.host(host)
        models = await self._client(h).list()
        self._tags[h.name] = (self._clock(), models)
        return models

    async def list_all(self) -> list[ModelInfo]:
        """Models on every host that answers (unreachable hosts are skipped; see `health`)."""
        results = await asyncio.gather(*(self.list_models(h) for h in self.hosts), return_exceptions=True)
        out: list[ModelInfo] = []
        for h, r in zip(self.hosts, results):
            if isinstance(r, BaseException):
                if not isinstance(r, TiergateError):
                    raise r
                log.info("listing models on %s failed: %s", h.name, r.code)
                continue
            out.extend(r)
        return out

    async def show(self, host: OllamaHost | str | None, model: str) -> ModelDetails:
        h = self.host(host)
        key = (h.name, model_key(model))
        if key not in self._show:
            self._show[key] = await self._client(h).show(normalize(model))
        return self._show[key]

    async def delete(self, host: OllamaHost | str | None, model: str) -> None:
        h = self.host(host)
        if self.book.in_flight(h.name, model):
            raise BadRequest(f"{model} is serving a request on {h.name}; delete it when the request is done")
        if self.loaded_on(h, model):
            await self.unload(h, model, reason="user")
        await self._client(h).delete(normalize(model))
        self._forget_model(h, model)

    async def copy(self, host: OllamaHost | str | None, source: str, destination: str) -> None:
        """Copy/tag `source` as `destination` (a plain model name)."""
        h = self.host(host)
        dest = validate_model_name(destination)
        await self._client(h).copy(normalize(source), dest)
        self._tags.pop(h.name, None)

    def _forget_model(self, h: OllamaHost, model: str) -> None:
        self._show.pop((h.name, model_key(model)), None)
        self._tags.pop(h.name, None)
        self._loaded.get(h.name, {}).pop(model_key(model), None)
        self.book.forget(h.name, model)

    async def _installed_size(self, h: OllamaHost, model: str) -> int | None:
        cached = self._tags.get(h.name)
        fresh = not (cached and self._clock() - cached[0] < TAGS_MAX_AGE)
        models = await self.list_models(h) if fresh else cached[1]  # type: ignore[index]
        for _ in range(2):
            for m in models:
                if same_model(m.name, model):
                    return m.size_bytes
            if fresh:
                return None
            models, fresh = await self.list_models(h), True  # installed since the last listing?
        return None

    async def facts(self, host: OllamaHost | str | None, model: str) -> ModelFacts:
        """What the planner needs about `model`: installed size and /api/show metadata when it is installed,
        else the registry manifest's size (with catalogue architecture when known), else the catalogue."""
        h = self.host(host)
        size = await self._installed_size(h, model)
        if size is not None:
            d = await self.show(h, model)
            params = d.parameter_count or parameters_from_text(d.parameter_size)
            return ModelFacts(normalize(model), size, "installed", d.model_info, params, d.capabilities)
        entry = self.memory.catalogue_facts(model)
        remote = await manifest_size(model, registry=self.registry) if self.registry else None
        if remote is not None:
            if entry is not None:
                return ModelFacts(entry.name, remote, "registry", entry.model_info, entry.parameter_count,
                                  entry.capabilities)
            return ModelFacts(validate_model_name(model), remote, "registry")
        if entry is not None:
            return entry
        raise ModelNotInstalled(f"{model} is not installed on {h.name} and its size is unknown "
                                "(the Ollama registry did not answer)")

    # -------------------------------------------------------------------------------------- loaded
    async def ps(self, host: OllamaHost | str | None = None) -> list[LoadedModel]:
        h = self.host(host)
        models = await self._client(h).ps()
        self._record_loaded(h, models)
        return models

    def loaded_on(self, host: OllamaHost | str, model: str) -> bool:
        """Cached (no I/O): whether `model` was loaded on `host` at the last reading (router preference)."""
        return model_key(model) in self._loaded.get(self.host(host).name, {})

    def prefer_loaded(self, deployments: Iterable[Deployment]) -> list[Deployment]:
        """`deployments` with those whose model is loaded on their host first (stable otherwise)."""
        deps = list(deployments)

        def loaded(d: Deployment) -> bool:
            h = self.host_for(d.api_base) if d.provider == "ollama" else None
            return h is not None and self.loaded_on(h, d.model)

        return sorted(deps, key=lambda d: not loaded(d))

    async def _loaded_models(self, h: OllamaHost, max_age: float) -> list[LoadedModel]:
        if h.name in self._loaded and self._clock() - self._loaded_at.get(h.name, 0.0) <= max_age:
            return list(self._loaded[h.name].values())
        return await self.ps(h)

    def _record_loaded(self, h: OllamaHost, models: Sequence[LoadedModel]) -> None:
        """Update the cache from a /api/ps reading; models that vanished expired."""
        before = self._loaded.get(h.name)
        now = {model_key(m.name): m for m in models}
        if before is not None:
            for key, m in before.items():
                if key not in now:
                    self.bus.emit(ModelLoadChanged(host=h.name, model=m.name, loaded=False,
                                                   size_bytes=m.size_bytes, reason="expired"))
        self._loaded[h.name] = now
        self._loaded_at[h.name] = self._clock()

    async def load(self, host: OllamaHost | str | None, model: str, *, num_ctx: int | None = None,
                   keep_alive: str | int | float | None = None, force: bool = False,
                   reason: str = "warm_up") -> LoadedModel | None:
        """Load (warm up) `model`. The guard makes room first; if it still does not fit, NotEnoughMemory is
        raised unless `force`."""
        h = self.host(host)
        ctx = num_ctx or OLLAMA_DEFAULT_CONTEXT
        async with self.book.load_lock(h.name):
            loaded = await self.ps(h)
            if not force:  # nothing is unloaded for a model that could not fit anyway
                report = await self.fit(h, model, num_ctx=ctx)
                if not report.fits and not (self.settings.guard and report.unload):
                    raise NotEnoughMemory(report.message + " (load with --force to try anyway)")
            await self._make_room(h, model, num_ctx, loaded)
            if not force:
                report = await self.fit(h, model, num_ctx=ctx)
                if not report.fits:
                    raise NotEnoughMemory(report.message + " (load with --force to try anyway)")
            return await self._do_load(h, model, num_ctx, keep_alive, reason)

    async def unload(self, host: OllamaHost | str | None, model: str, *, reason: str = "user") -> None:
        h = self.host(host)
        if reason == "memory_guard" and self.book.in_flight(h.name, model):
            raise BadRequest(f"{model} is serving a request")  # the guard never does this
        size = self._loaded.get(h.name, {}).get(model_key(model))
        await self._client(h).unload(normalize(model))
        self._loaded.get(h.name, {}).pop(model_key(model), None)
        self.bus.emit(ModelLoadChanged(host=h.name, model=normalize(model), loaded=False,
                                       size_bytes=size.size_bytes if size else 0, reason=reason))

    async def _do_load(self, h: OllamaHost, model: str, num_ctx: int | None,
                       keep_alive: str | int | float | None, reason: str) -> LoadedModel | None:
        name = normalize(model)
        await self._client(h).load(name, num_ctx=num_ctx, keep_alive=keep_alive)
        self.book.touch(h.name, name)
        loaded = await self.ps(h)
        found = next((m for m in loaded if same_model(m.name, name)), None)
        self.bus.emit(ModelLoadChanged(host=h.name, model=name, loaded=True,
                                       size_bytes=found.size_bytes if found else 0, reason=reason))
        return found

    async def _make_room(self, h: OllamaHost, model: str, num_ctx: int | None,
                         loaded: list[LoadedModel]) -> None:
        """The guard: unload least recently used idle models while the load would exceed the budget or the
        system reports memory pressure."""
        if not self.settings.guard:
            return
        mem = self.memory.system() if h.local else None
        budget = self.memory.budget_bytes(h, mem)
        if budget is None:
            return
        facts = await self.facts(h, model)
        need = self.memory.estimate(facts, num_ctx=num_ctx or OLLAMA_DEFAULT_CONTEXT).total_bytes
        current = [m for m in loaded if not same_model(m.name, model)]
        while True:
            used = sum(m.size_bytes for m in current)
            pressure = mem is not None and mem.under_pressure
            if used + need <= budget and not pressure:
                return
            idle = [m for m in _lru_order(current, self.book.lru(h.name)) if not self.book.in_flight(h.name, m.name)]
            if not idle:
                log.warning("memory guard: no idle model to unload on %s for %s", h.name, model)
                return
            victim = idle[0]
            log.info("memory guard: unloading %s on %s to make room for %s", victim.name, h.name, model)
            await self.unload(h, victim.name, reason="memory_guard")
            current.remove(victim)
            if pressure:
                mem = self.memory.system()

    # ------------------------------------------------------------------------------- request guard
    @contextlib.asynccontextmanager
    async def acquire(self, host: OllamaHost | str, model: str, *, num_ctx: int | None = None,
                      keep_alive: str | int | float | None = None, tier: str | None = None) -> AsyncIterator[None]:
        """Wrap one request to a local model: marks it in flight (the guard never unloads it meanwhile),
        loads it if needed (one load at a time per host, the guard making room first), and records its use.
        Raises OllamaUnavailable / ModelNotInstalled before the request when the model cannot be served."""
        h = self.host(host)
        if keep_alive is None:
            keep_alive = self.settings.keep_alive_for(tier)
        self.book.begin(h.name, model)
        try:
            if not self._is_loaded(await self._loaded_models(h, PS_MAX_AGE), model, num_ctx):
                async with self.book.load_lock(h.name):
                    loaded = await self._loaded_models(h, 0.0)
                    if not self._is_loaded(loaded, model, num_ctx):
                        await self._make_room(h, model, num_ctx, loaded)
                        await self._do_load(h, model, num_ctx, keep_alive, "request")
            yield
        finally:
            self.book.end(h.name, model)

    @staticmethod
    def _is_loaded(loaded: Sequence[LoadedModel], model: str, num_ctx: int | None) -> bool:
        for m in loaded:
            if same_model(m.name, model):
                return num_ctx is None or m.context_length in (None, num_ctx)
        return False

    def keep_alive_for(self, tier: str | None) -> str | int | float | None:
        return self.settings.keep_alive_for(tier)

    # ---------------------------------------------------------------------------------------- pull
    async def pull(self, host: OllamaHost | str | None, model: str, *, force: bool = False,
                   num_ctx: int | None = None) -> PullHandle:
        """Start pulling `model` (a plain library name). Returns at once; progress goes to the bus. A second
        call for a model already being pulled returns the running handle. Refuses (NotEnoughMemory) a model
        that cannot fit this host's memory budget even with everything else unloaded, unless `force`."""
        h = self.host(host)
        name = validate_model_name(model)
        key = (h.name, name)
        running = self._pulls.get(key)
        if running is not None and not running.done:
            return running
        if not force:
            try:
                report = await self.fit(h, name, num_ctx=num_ctx)
            except ModelNotInstalled:
                report = None  # size unknown: nothing to check
            if report is not None and not report.fits and not report.unload:
                raise NotEnoughMemory(report.message + ". Pull with --force to download it anyway")
        handle = PullHandle(h.name, name, PullTracker(self._clock))
        self._pulls[key] = handle
        handle.task = asyncio.create_task(self._run_pull(h, handle), name=f"pull {name}@{h.name}")
        return handle

    def cancel_pull(self, host: OllamaHost | str | None, model: str) -> bool:
        h = self.host(host)
        handle = self._pulls.get((h.name, normalize(model).lower()))
        if handle is None or handle.done:
            return False
        handle.cancel()
        return True

    def pulls(self) -> list[PullHandle]:
        return [p for p in self._pulls.values() if not p.done]

    async def _run_pull(self, h: OllamaHost, handle: PullHandle) -> PullResult:
        t = handle.tracker
        try:
            async for part in self._client(h).pull(handle.model):
                t.update(part.status or "", part.digest, part.total, part.completed)
                self._emit_pull(handle, done=part.status == "success")
            if t.status != "success":
                raise PullFailed(f"the pull of {handle.model} ended before Ollama reported success; "
                                 "run it again to resume")
            self._forget_model(h, handle.model)
            return PullResult(h.name, handle.model, "success", t.completed, t.total)
        except asyncio.CancelledError:
            if not handle.cancel_requested:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            t.status = "cancelled"
            self._emit_pull(handle, done=True, error="cancelled")
            return PullResult(h.name, handle.model, "cancelled", t.completed, t.total, "cancelled")
        except TiergateError as e:
            t.status = "failed"
            self._emit_pull(handle, done=True, error=e.message)
            raise
        finally:
            if self._pulls.get((h.name, handle.model)) is handle:
                del self._pulls[(h.name, handle.model)]

    def _emit_pull(self, handle: PullHandle, *, done: bool, error: str = "") -> None:
        t = handle.tracker
        layer = t.layers.get(t.current)
        self.bus.emit(PullProgress(host=handle.host, model=handle.model, status=t.status, completed=t.completed,
                                   total=t.total, bytes_per_second=t.bytes_per_second, eta_seconds=t.eta_seconds,
                                   done=done, error=error, digest=t.current,
                                   layer_completed=layer.completed if layer else 0,
                                   layer_total=layer.total if layer else 0))

    # ------------------------------------------------------------------------------------ planning
    async def fit(self, host: OllamaHost | str | None, model: str, *, num_ctx: int | None = None) -> FitReport:
        """Whether `model` fits on `host` next to what is loaded there (num_ctx: default the agent context,
        capped at what the model was trained for)."""
        h = self.host(host)
        facts = await self.facts(h, model)
        loaded = await self._loaded_models(h, PS_MAX_AGE)
        if num_ctx is None:
            trained = facts.model_info.get(f"{facts.model_info.get('general.architecture', '')}.context_length")
            num_ctx = min(self.settings.agent_context, int(trained)) if isinstance(trained, int) else \
                self.settings.agent_context
        return self.memory.fit(facts, host=h, loaded=loaded, num_ctx=num_ctx, lru=self.book.lru(h.name))

    async def context_advice(self, deployments: Iterable[Deployment]) -> list[ContextAdvice]:
        """The num_ctx proposal for every local (Ollama) deployment, with a warning where the configured value
        is missing, too small for agents, or does not fit."""
        out: list[ContextAdvice] = []
        for d in deployments:
            if d.provider != "ollama":
                continue
            h = self.host_for(d.api_base)
            if h is None:
                continue
            try:
                facts = await self.facts(h, d.model)
                loaded = await self._loaded_models(h, PS_MAX_AGE)
            except TiergateError as e:
                out.append(ContextAdvice(d.id, d.model, h.name, d.context_length, d.context_length or 0, False,
                                         f"{d.model} on {h.name}: cannot check ({e.message})"))
                continue
            report = self.memory.fit(facts, host=h, loaded=loaded, num_ctx=d.context_length or OLLAMA_DEFAULT_CONTEXT,
                                     lru=self.book.lru(h.name))
            free = report.free_bytes if report.budget_bytes else 1 << 62
            out.append(self.memory.advise_context(d.id, facts, host=h.name, configured=d.context_length,
                                                  free_bytes=free))
        return out


def _port(url: str) -> int | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)
