"""`Tiergate`: the one object the CLI, the tray and the tests hold.

It owns the config, the HTTP server, the router and its providers, the ledger, privacy, budgets, the cache
and the Ollama manager; starts and stops them in one asyncio loop; and publishes everything worth watching on
`bus` (see app.events). Front ends never reach inside: they call methods here and subscribe to events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import orjson
from aiohttp import web

from app import __version__
from app.canonical import ChatRequest, ChatResponse, Usage
from app.config.schema import Config, Deployment
from app.errors import ConfigError, SecretError, TiergateError
from app.secrets.redact import register_secrets
from app.events import ConfigReloaded, EventBus, ServerStarted, ServerStopped
from app.providers import Provider, create_provider
from app.providers.http_client import UpstreamHTTP
from app.router.health import HealthTracker
from app.router.router import Router

log = logging.getLogger("tiergate")
access_log = logging.getLogger("tiergate.request")


class Tiergate:
    version = __version__

    def __init__(self, config: Config, *, data_dir: str | Path, bus: EventBus | None = None,
                 secret_store: Any = None, keychain_lookup: Callable[[str], str | None] | None = None,
                 env: Mapping[str, str] | None = None, access_log_enabled: bool = True,
                 extra_middlewares: list[Any] | None = None):
        import os

        self.config = config
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bus = bus or EventBus()
        self.env = os.environ if env is None else env
        if secret_store is None:
            from app.secrets.store import SecretStore

            secret_store = SecretStore()
        self.secret_store = secret_store
        self.keychain_lookup = keychain_lookup or (secret_store.get if secret_store is not None else None)
        self.access_log = access_log_enabled
        self.extra_middlewares = extra_middlewares
        self.started_at = time.time()
        self.http: UpstreamHTTP | None = None  # the upstream client, open while the server runs
        self.runner: web.AppRunner | None = None
        self.host = config.server.host
        self.port = config.server.port
        self.health = HealthTracker(self.bus, allowed_fails=config.router.allowed_fails,
                                    cooldown_time=config.router.cooldown_time)
        self.router: Router = Router(config, {}, self.health)  # replaced with real providers by start()
        from app.ledger.store import Ledger
        from app.privacy.state import PrivacyState
        from app.router.cache import ResponseCache

        # Parts that keep state across config reloads…
        self.privacy_state = PrivacyState(self.data_dir / "privacy.json", self.bus)
        self.ledger = Ledger(self.data_dir / "usage.sqlite3", self.bus)
        self.cache: Any = None
        self.agents: Any = None
        self.ollama: Any = None
        self._budget_unsubscribe: Callable[[], None] | None = None
        # …and parts rebuilt from each config.
        self._attach_parts()
        self.cache = ResponseCache(self.data_dir / "cache.sqlite3", self.cache_settings)
        self.ollama = self._build_ollama()
        self._tasks: list[asyncio.Task[None]] = []
        self.background: set[asyncio.Task[Any]] = set()  # short jobs after a response (see `spawn`)

    # ------------------------------------------------------------------------------- construction
    @classmethod
    def from_path(cls, path: str | Path | None = None, **kw: Any) -> "Tiergate":
        from app import paths
        from app.config import load_config
        from app.config.defaults import write_default_config

        path = Path(path) if path else paths.default_config_path()
        config = load_config(path) if path.exists() else write_default_config(path)
        for warning in config.warnings:
            log.warning("config: %s", warning)
        kw.setdefault("data_dir", paths.data_dir())
        return cls(config, **kw)

    def _attach_parts(self) -> None:
        """Build every part from the config (also on reload). Section errors raise ConfigError."""
        from app.agents import AgentRegistry, default_agents_path, parse_agent_policies
        from app.ledger.budgets import Budgets, BudgetSettings
        from app.ledger.pricing import Pricing
        from app.privacy.policy import PrivacyPolicy
        from app.ollama import parse_settings
        from app.router.cache import CacheSettings

        cfg = self.config
        self.privacy = PrivacyPolicy.from_config(cfg, state=self.privacy_state)
        policies = parse_agent_policies(cfg.section("agents"))
        if self.agents is None:
            self.agents = AgentRegistry(default_agents_path(self.data_dir), policies=policies)
        else:
            self.agents.set_policies(policies)
        self.pricing = Pricing(cfg)
        if self._budget_unsubscribe is not None:
            self._budget_unsubscribe()
        self.budgets = Budgets(BudgetSettings.from_section(_budgets_with_agent_settings(cfg), tiers=cfg.tiers),
                               self.bus)
        self._budget_unsubscribe = self.budgets.attach(self.bus)
        self.ollama_settings = parse_settings(cfg.section("ollama"))
        for d in cfg.deployments:  # per-tier keep_alive policy for deployments that set none
            if d.provider == "ollama" and d.keep_alive is None:
                d.keep_alive = self.ollama_settings.keep_alive_for(d.tier)
        self.cache_settings = CacheSettings.from_section(cfg.section("cache"))
        if self.cache is not None:
            self.cache.settings = self.cache_settings
        self._deployments = {d.id: d for d in cfg.deployments}

    def _build_ollama(self) -> Any:
        from app.ollama import MemoryPlanner, OllamaHost, OllamaManager
        from app.privacy.location import is_loopback_host, url_host

        settings = self.ollama_settings
        manager = OllamaManager(settings.hosts, self.bus, MemoryPlanner(settings), settings=settings)
        # A deployment on a loopback Ollama the settings do not list (another port) is this machine too.
        extra = {d.api_base: OllamaHost(f"local:{d.api_base.rsplit(':', 1)[-1]}", d.api_base)
                 for d in self.config.deployments
                 if d.provider == "ollama" and manager.host_for(d.api_base) is None
                 and is_loopback_host(url_host(d.api_base) or "")}
        if extra:
            settings.hosts = [*settings.hosts, *extra.values()]
            manager = OllamaManager(settings.hosts, self.bus, MemoryPlanner(settings), settings=settings)
        return manager

    def _new_router(self, providers: dict[str, Provider]) -> Router:
        ollama = self.ollama

        def loaded(d: Deployment) -> bool:
            if d.provider != "ollama":
                return False
            h = ollama.host_for(d.api_base)
            return h is not None and ollama.loaded_on(h, d.model)

        def guard(d: Deployment) -> Any:
            if d.provider != "ollama":
                return None
            h = ollama.host_for(d.api_base)
            if h is None:
                return None
            return ollama.acquire(h, d.model, num_ctx=d.context_length, keep_alive=d.keep_alive, tier=d.tier)

        return Router(self.config, providers, self.health, prefer=loaded,
                      available=lambda d: d.provider != "ollama" or ollama.deployment_available(d), guard=guard)

    async def _watch_ollama(self, interval: float = 15.0) -> None:
        """Check every Ollama host now and then; a host that stops answering takes its deployments out of
        rotation (the tier falls back) and tells the tray why, with the fix."""
        from app.events import UpstreamHealthChanged

        last: dict[str, str] = {}
        while True:
            try:
                for h in await self.ollama.health():
                    if last.get(h.host) != h.state:
                        last[h.host] = h.state
                        for d in self.config.deployments:
                            if d.provider == "ollama" and self.ollama.host_for(d.api_base) == \
                                    self.ollama.host(h.host):
                                reason = h.message + (f" — {h.fix}" if not h.ok and h.fix else "")
                                self.bus.emit(UpstreamHealthChanged(
                                    deployment=d.id, state="healthy" if h.ok else "unavailable", reason=reason))
            except Exception:  # the watcher must keep running
                log.exception("Ollama health check failed")
            await asyncio.sleep(interval)

    config_poll_seconds = 2.0  # how often the config file is checked for changes

    async def restart_config_watch(self) -> None:
        """(Re)start the config watcher, e.g. after `config.path` or the poll interval changed."""
        for task in [t for t in self._tasks if t.get_name() == "tiergate-config-watch"]:
            task.cancel()
            self._tasks.remove(task)
        self._tasks.append(asyncio.create_task(self._watch_config(), name="tiergate-config-watch"))

    async def _watch_config(self) -> None:
        """Reload the config file when it changes (the UI and people edit the YAML; the core follows).
        Listening address and port changes need a restart."""
        path = Path(self.config.path or "")

        def stamp() -> tuple[int, int] | None:
            try:
                st = path.stat()
            except OSError:
                return None
            return (st.st_mtime_ns, st.st_size)

        last = await asyncio.to_thread(stamp)
        while True:
            await asyncio.sleep(self.config_poll_seconds)
            now = await asyncio.to_thread(stamp)
            if now is not None and now != last:
                last = now
                await self.reload_config(path=path)

    def _build_providers(self, http: UpstreamHTTP) -> dict[str, Provider]:
        from app.config.references import resolve_secret

        providers: dict[str, Provider] = {}
        self._provider_keys: list[str] = []
        for d in self.config.deployments:
            try:
                key = resolve_secret(d.api_key_ref, keychain=self.keychain_lookup, environ=self.env)
            except SecretError as e:
                log.warning("deployment %s is unavailable: %s", d.id, e.message)
                self.health.mark_unavailable(d.id, e.message)
                continue
            if key:
                self._provider_keys.append(key)
                register_secrets([key])  # masked in logs and client errors from now on
            providers[d.id] = create_provider(d, http, api_key=key, timeout=self.config.router.timeout)
        return providers

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> tuple[str, int]:
        """Open the upstream client, start the parts and the HTTP server. Returns the bound host and port."""
        from app.server.app import create_app

        # Its own keep-alive pool and no cookie jar: a cookie one upstream sets for one agent's request must
        # not ride along on the next agent's.
        self.http = UpstreamHTTP(keepalive=30.0, user_agent=f"Tiergate/{self.version}")
        if any(d.api_base.startswith("https:") for d in self.config.deployments):
            self.http.prepare_tls()
        self.router = self._new_router(self._build_providers(self.http))
        from app.server.security import Gate, server_limits

        await self.ledger.start()
        await self.budgets.seed(self.ledger)
        await self.cache.start()
        gate = Gate(self.config.server, self.agents, self.secret_store, public_paths=("/", "/health"))
        app = create_app(self, gate=gate, extra_middlewares=self.extra_middlewares)

        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                    **server_limits(self.config.server))
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.server.host, self.config.server.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.host, self.port = sock.getsockname()[:2]
        if any(d.provider == "ollama" for d in self.config.deployments):
            self._tasks.append(asyncio.create_task(self._watch_ollama(), name="tiergate-ollama-health"))
        if self.config.path:
            self._tasks.append(asyncio.create_task(self._watch_config(), name="tiergate-config-watch"))
        self.bus.emit(ServerStarted(host=str(self.host), port=int(self.port)))
        log.info("tiergate %s listening on http://%s:%d (%d tiers, %d deployments)", self.version, self.host,
                 self.port, len(self.config.tiers), len(self.config.deployments))
        return str(self.host), int(self.port)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run `coro` on the side (e.g. reading an upstream's end of body after the client has its answer);
        `stop()` cancels what is still running."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        pending = list(self.background)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.http is not None:
            await self.http.close()
            self.http = None
        await self.cache.close()
        await self.ledger.close()
        await self.ollama.close()
        self.bus.emit(ServerStopped())

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def reload_config(self, config: Config | None = None, *, path: str | Path | None = None) -> bool:
        """Swap in a new config. A config that does not load keeps the last good one running."""
        from app.config import load_config

        source = str(path or self.config.path or "")
        try:
            new = config or await asyncio.to_thread(load_config, source)
        except ConfigError as e:
            log.error("config reload failed, keeping the running config: %s", e.message)
            self.bus.emit(ConfigReloaded(path=source, ok=False, error=e.message))
            return False
        old = self.config
        self.config = new
        try:
            self._attach_parts()
        except ConfigError as e:
            self.config = old
            self._attach_parts()
            log.error("config reload failed, keeping the running config: %s", e.message)
            self.bus.emit(ConfigReloaded(path=source, ok=False, error=e.message))
            return False
        self.health = HealthTracker(self.bus, allowed_fails=new.router.allowed_fails,
                                    cooldown_time=new.router.cooldown_time)
        if self.http is not None:
            self.router = self._new_router(self._build_providers(self.http))
        self.bus.emit(ConfigReloaded(path=source, ok=True))
        return True

    # ----------------------------------------------------------------------------- server hooks
    dumps = staticmethod(orjson.dumps)

    @staticmethod
    def dumps_str(obj: Any) -> str:
        return orjson.dumps(obj).decode()

    async def decide_privacy(self, req: ChatRequest, agent: Any, headers: Mapping[str, str]) -> Any:
        """THE privacy decision for a request (app.privacy.policy), with the optional local classifier."""
        policy = self.privacy
        agent_policy = getattr(agent, "privacy", None)
        if not policy.settings.classifier.enabled:
            return policy.decide(req, agent_policy=agent_policy, headers=headers)
        return await policy.decide_async(req, agent_policy=agent_policy, headers=headers,
                                         classifier=self._classifier())

    def _classifier(self) -> Any:
        """The local-model classifier: a short prompt to the configured tier's local deployments only."""
        from app.canonical import Message, TextPart
        from app.privacy.classifier import Classifier

        settings = self.privacy.settings.classifier

        async def run(prompt: str) -> str:
            target = self.router.resolve(settings.tier)
            plan = [d for d in self.router.plan(target) if self.location_of(d) in ("local", "trusted")]
            req = ChatRequest(model=settings.tier, messages=[Message("user", [TextPart(prompt)])], max_tokens=16,
                              temperature=0.0)
            resp, _, _ = await self.router.complete(req, plan)
            return "".join(p.text for p in resp.parts if isinstance(p, TextPart))

        return Classifier(run, timeout=settings.timeout, max_chars=settings.max_chars)

    def redact(self, req: ChatRequest) -> Any:
        """Mask what the detectors found (privacy action `redact`). Raises RedactionFailed."""
        from app.privacy.redact import Redactor

        return Redactor(self.privacy.scanner, include_tool_specs=self.privacy.settings.scan_tool_specs).redact(req)

    def privacy_allows(self, decision: Any) -> Callable[[Deployment], bool]:
        policy = self.privacy
        return lambda d: policy.allowed(decision, d)

    def local_equivalent(self, tier: str) -> str | None:
        return self.privacy.local_equivalent(tier)

    def location_of(self, d: Deployment) -> str:
        return self.privacy.location_of(d)

    def privacy_mode(self) -> str:
        return "on" if self.privacy_state.enabled else "off"

    def set_privacy_mode(self, mode: str, *, source: str) -> None:
        self.privacy_state.set(mode == "on", source=source)

    async def cache_lookup(self, state: Any, req: ChatRequest, tier: str, headers: Mapping[str, str],
                           body: Mapping[str, Any]) -> ChatResponse | None:
        """A cached answer for this agent's identical request, or None (and remember how to store it)."""
        from app.router.cache import CacheControl

        if not self.cache.settings.enabled:
            return None
        control = CacheControl.from_request(headers, body)
        if not (control.read or control.write):
            return None
        key = self.cache.key(req, tier, state.record.agent)
        if key is None:
            return None
        if control.write:
            state.cache_key = key
            state.cache_ttl = control.ttl
        if not control.read:
            return None
        entry = self.cache.lookup(key, max_age=control.max_age) or \
            await self.cache.get_entry(key, max_age=control.max_age)
        if entry is None:
            return None
        state.deployment = self._deployments.get(entry.deployment)
        state.cache_key = None
        return entry.response

    def cache_store(self, state: Any, resp: ChatResponse) -> None:
        if state.cache_key is not None and state.record.status == "ok":
            self.cache.store(state.cache_key, resp, agent=state.record.agent, tier=state.tier,
                             deployment=state.record.deployment, ttl=state.cache_ttl)

    def finish_request(self, state: Any) -> None:
        """Price a finished request and hand its record to the ledger (never blocks)."""
        rec = state.close()
        d = state.deployment
        if d is not None and not rec.cache_hit:
            rec.location = self.location_of(d)
        try:
            self.pricing.fill(rec, d, state.usage or Usage())
        except Exception:  # pricing must never lose a record
            log.exception("pricing failed for %s; recorded with unknown cost", rec.request_id)
            rec.cost, rec.price_known = None, False
        self.ledger.record(rec)

    async def usage_summary(self, *, period: str, by: str) -> list[dict[str, Any]]:
        rows = await self.ledger.summary(period, by)
        return [r.to_dict() for r in rows]

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "listening": self.base_url,
            "config": self.config.path,
            "tiers": {t: [d.id for d in ds] for t, ds in self.config.tiers.items()},
            "privacy": self.privacy_mode(),
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def log_request(self, request: web.Request, status: int, elapsed_ms: float, state: Any) -> None:
        """One structured line per request: who, which tier and deployment, how long, how many tokens.
        Never message content or keys."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {"method": request.method, "path": request.path, "status": status,
                                "ms": round(elapsed_ms, 2)}
        if state is not None:
            r = state.record
            line.update(id=r.request_id, agent=r.agent, model=r.requested_model, tier=r.tier,
                        deployment=r.deployment, stream=r.stream, in_tokens=r.input_tokens,
                        out_tokens=r.output_tokens, overhead_ms=r.overhead_ms, privacy=r.privacy,
                        cache=r.cache_hit, error=r.error or None, fallbacks=r.fallback_path or None)
        access_log.info(orjson.dumps(line).decode())


def _budgets_with_agent_settings(cfg: Config) -> Any:
    """`tiergate_settings.budgets`, plus each `tiergate_settings.agents.NAME.budget` as `budgets.agents.NAME`
    (a bare number is a monthly limit in US dollars). Errors still point at the line the user wrote."""
    from app.config.schema import Section

    budgets, agents = cfg.section("budgets"), cfg.section("agents")
    extra = {name: ({"period": "month", "limit": v["budget"]} if isinstance(v["budget"], (int, float))
                    and not isinstance(v["budget"], bool) else v["budget"])
             for name, v in agents.data.items() if isinstance(v, dict) and v.get("budget") is not None}
    if not extra:
        return budgets
    data = dict(budgets.data)
    data["agents"] = {**extra, **(data.get("agents") or {})}
    lines = dict(budgets.lines)
    for key, line in agents.lines.items():  # ("tiergate_settings","agents",NAME,"budget",…) -> budgets.agents.NAME…
        if key[:2] == agents.path[:2] and len(key) >= 4 and key[3] == "budget":
            lines.setdefault(budgets.path + ("agents", key[2]) + key[4:], line)
    return Section(data, budgets.path, budgets.file, lines)


__all__ = ["Tiergate", "TiergateError"]
