"""From the model a client asked for to the deployment that answers.

`resolve` turns a name into a tier (tier names, aliases and glob patterns, or a concrete deployment);
`plan` lists the deployments to try in order (the tier's own, then its fallbacks' — filtered by whatever
the privacy decision allows); `complete` and `open_stream` walk the plan with retries, backoff and
cooldowns, deciding from the error's type alone. Streams can fall back only until the first event arrives:
the caller sends nothing to the client before `open_stream` returns.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from dataclasses import dataclass, field
from contextlib import AbstractAsyncContextManager
from typing import Callable, Iterable

from app.canonical import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent
from app.config.schema import Config, Deployment
from app.errors import (
    AllDeploymentsFailed,
    TiergateError,
    UnknownModel,
    UpstreamError,
    UpstreamUnavailable,
)
from app.providers import Provider, UpstreamStream
from app.router.health import HealthTracker

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Target:
    """What a client's `model` resolved to."""

    tier: str  # tier name; for a concrete deployment, its tier
    deployments: list[Deployment]  # the tier's deployments (or just the concrete one)
    concrete: bool = False


@dataclass(slots=True)
class Attempt:
    deployment: str
    error: str  # error code, or "ok"
    message: str = ""
    seconds: float = 0.0  # time spent waiting on the upstream


_FAILED = object()  # a deployment gave up (after its retries): try the next one


@dataclass(slots=True)
class RouteResult:
    """Which deployment answered, and what was tried before it."""

    deployment: Deployment
    provider: Provider
    attempts: list[Attempt] = field(default_factory=list)
    upstream_ms: float = 0.0  # time waiting on the upstream that answered (all tries included)

    @property
    def fallback_path(self) -> list[str]:
        """Deployments tried before the one that answered, each once, in order."""
        return list(dict.fromkeys(a.deployment for a in self.attempts if a.error != "ok"))


class Router:
    def __init__(self, config: Config, providers: dict[str, Provider], health: HealthTracker, *,
                 sleep: Callable[[float], "asyncio.Future[None]"] = asyncio.sleep,  # type: ignore[assignment]
                 prefer: Callable[[Deployment], bool] | None = None,
                 available: Callable[[Deployment], bool] | None = None,
                 guard: Callable[[Deployment], AbstractAsyncContextManager[None] | None] | None = None):
        self.config = config
        self.providers = providers
        self.health = health
        self.sleep = sleep
        self.prefer = prefer  # e.g. "Ollama has this model loaded": preferred within a tier
        self.available = available  # e.g. "its Ollama host answered the last health check"
        self.guard = guard  # held around each request to a deployment (Ollama: in flight, load, memory)
        self.tiers = config.tiers
        self._by_label = {}
        for d in config.deployments:
            self._by_label.setdefault(d.label, d)
            self._by_label.setdefault(d.id, d)
        self._alias_exact = {k: v for k, v in config.model_aliases.items() if not _is_pattern(k)}
        self._alias_patterns = [(k, v) for k, v in config.model_aliases.items() if _is_pattern(k)]

    # -------------------------------------------------------------------------------- resolution
    def resolve(self, model: str) -> Target:
        if model in self.tiers:
            return Target(model, self.tiers[model])
        tier = self._alias_exact.get(model)
        if tier is None:
            for pattern, target in self._alias_patterns:
                if fnmatch.fnmatchcase(model, pattern):
                    tier = target
                    break
        if tier is not None and tier in self.tiers:
            return Target(tier, self.tiers[tier])
        if self.config.allow_concrete_models:
            d = self._by_label.get(model)
            if d is not None:
                return Target(d.tier, [d], concrete=True)
        raise UnknownModel(
            f"The model {model!r} is not a tier here. Available tiers: {', '.join(sorted(self.tiers)) or 'none'}.",
            details={"tiers": sorted(self.tiers)},
        )

    def plan(self, target: Target, *, allowed: Callable[[Deployment], bool] | None = None,
             extra_tiers: Iterable[str] = ()) -> list[Deployment]:
        """Deployments in the order they will be tried: the target's (preferred ones first), then the
        fallback tiers'. `allowed` filters out what the privacy decision forbids — before anything else."""
        order: list[Deployment] = []
        seen: set[str] = set()
        tiers = [] if target.concrete else [*self.config.router.fallbacks.get(target.tier, [])]
        groups = [target.deployments] + [self.tiers.get(t, []) for t in (*extra_tiers, *tiers)]
        for group in groups:
            group = list(group)
            if self.prefer is not None and len(group) > 1:
                group = self._preferred_first(group)
            for d in group:
                if d.id in seen:
                    continue
                seen.add(d.id)
                if allowed is None or allowed(d):
                    order.append(d)
        return order

    def _preferred_first(self, group: list[Deployment]) -> list[Deployment]:
        """Among the group's local (Ollama) deployments, those `prefer` picks (model loaded) come first, in
        the slots the local ones hold: cloud deployments keep their place in the config's order."""
        slots = [i for i, d in enumerate(group) if d.provider == "ollama"]
        if len(slots) < 2:
            return group
        local = sorted((group[i] for i in slots), key=lambda d: not self.prefer(d))  # type: ignore[misc]
        out = list(group)
        for i, d in zip(slots, local):
            out[i] = d
        return out

    # ---------------------------------------------------------------------------------- execution
    async def complete(self, req: ChatRequest, plan: list[Deployment]) -> tuple[ChatResponse, bytes | None, RouteResult]:
        async def call(p: Provider) -> tuple[ChatResponse, bytes | None]:
            return await p.complete(req)

        (resp, raw), result = await self._run(plan, call)
        return resp, raw, result

    async def open_stream(self, req: ChatRequest, plan: list[Deployment]) -> tuple[UpstreamStream, list[StreamEvent], bytes, RouteResult]:
        """Open a stream and wait for its first events (so a failure before them can still fall back).
        Returns the stream, the first decoded events, the raw bytes they came in, and the route. A first read
        holding many events is decoded only up to the first ones here (UpstreamStream), so the response can
        start before the rest is decoded."""

        async def call(p: Provider) -> tuple[UpstreamStream, list[StreamEvent], bytes]:
            stream = await p.open_stream(req)
            raw = b""
            events: list[StreamEvent] = []
            try:
                while not events:
                    chunk, events = await anext(stream)
                    raw += chunk
            except StopAsyncIteration:
                pass
            except BaseException:
                await stream.aclose()
                raise
            return stream, events, raw

        (stream, events, raw), result = await self._run(plan, call, hold_guard=True)
        return stream, events, raw, result

    async def embed(self, req: EmbeddingRequest, plan: list[Deployment]) -> tuple[EmbeddingResponse, RouteResult]:
        async def call(p: Provider) -> EmbeddingResponse:
            return await p.embed(req)

        return await self._run(plan, call)

    async def _run(self, plan: list[Deployment], call, *, hold_guard: bool = False):  # type: ignore[no-untyped-def]
        attempts: list[Attempt] = []
        for d in plan:
            provider = self.providers.get(d.id)
            if provider is None or not self.health.usable(d.id) or (self.available and not self.available(d)):
                state = self.health.get(d.id).state
                attempts.append(Attempt(d.id, "cooling down" if state == "cooling_down" else "unavailable",
                                        self.health.get(d.id).last_error))
                continue
            guard = self.guard(d) if self.guard is not None else None
            if guard is not None:
                try:
                    await guard.__aenter__()
                except TiergateError as e:  # e.g. Ollama down, model not installed, not enough memory
                    attempts.append(Attempt(d.id, e.code, e.message))
                    log.info("deployment %s skipped: %s (%s)", d.id, e.code, e.message)
                    continue
            try:
                out = await self._try(d, provider, call, attempts)
            except BaseException:
                if guard is not None:
                    await guard.__aexit__(None, None, None)
                raise
            if out is _FAILED:
                if guard is not None:
                    await guard.__aexit__(None, None, None)
                continue
            if guard is not None:
                if hold_guard:  # released when the stream ends
                    out[0].on_close.append(lambda g=guard: g.__aexit__(None, None, None))
                else:
                    await guard.__aexit__(None, None, None)
            return out, RouteResult(d, provider, attempts, sum(a.seconds for a in attempts) * 1000)
        raise self._exhausted(plan, attempts)

    async def _try(self, d: Deployment, provider: Provider, call, attempts: list[Attempt]):  # type: ignore[no-untyped-def]
        """One deployment with its retries. Returns the call's result, or _FAILED to move on."""
        retries = max(0, self.config.router.num_retries)
        tries = 1 + (d.max_retries if d.max_retries is not None else retries)
        backoff = self.config.router.retry_after
        for n in range(tries):
            t0 = time.perf_counter()
            try:
                out = await call(provider)
            except UpstreamUnavailable as e:
                attempts.append(Attempt(d.id, e.code, e.message, time.perf_counter() - t0))
                return _FAILED
            except UpstreamError as e:
                attempts.append(Attempt(d.id, e.code, e.message, time.perf_counter() - t0))
                log.info("upstream %s failed: %s (%s)", d.id, e.code, e.message)
                if e.upstream_status in (401, 403):
                    # Our key for this upstream is wrong or lacks access: not the client's fault, and
                    # another deployment may still answer.
                    self.health.mark_unavailable(d.id, f"{d.label} rejected Tiergate's API key "
                                                       f"({e.upstream_status}); fix it with `tiergate keys set`")
                    return _FAILED
                if not e.retryable:
                    self.health.success(d.id)  # the upstream works; the request was wrong
                    raise
                if n + 1 < tries:
                    await self.sleep(min(backoff, self.config.router.max_backoff))
                    backoff *= 2
                    continue
                self.health.failure(d.id, e.code)
                return _FAILED
            self.health.success(d.id)
            attempts.append(Attempt(d.id, "ok", "", time.perf_counter() - t0))
            return out
        return _FAILED

    @staticmethod
    def _exhausted(plan: list[Deployment], attempts: list[Attempt]) -> TiergateError:
        if not plan:
            return AllDeploymentsFailed("No deployment is available for this request.", attempts=[])
        tried = "; ".join(f"{a.deployment}: {a.error}" for a in attempts)
        return AllDeploymentsFailed(f"Every deployment failed ({tried}).",
                                    attempts=[(a.deployment, a.error) for a in attempts])


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")
