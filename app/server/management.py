"""Health and the management API (`/tiergate/...`, master key only — enforced by the auth middleware)."""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web

from app.errors import BadRequest
from app.events import Event
from app.server.context import CORE, read_json

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return web.json_response({"status": "ok", "version": core.version}, dumps=core.dumps_str)


async def health_upstreams(request: web.Request) -> web.Response:
    core = request.app[CORE]
    health = core.router.health
    rows = []
    for d in core.config.deployments:
        h = health.get(d.id)
        health.usable(d.id)  # refresh cooldown expiry
        rows.append({**h.to_dict(), "tier": d.tier, "provider": d.provider, "model": d.model,
                     "location": core.location_of(d)})
    healthy = sum(1 for r in rows if r["state"] in ("healthy", "failing"))
    return web.json_response({"healthy": healthy, "total": len(rows), "deployments": rows}, dumps=core.dumps_str)


async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[CORE].status(), dumps=request.app[CORE].dumps_str)


async def get_privacy(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return web.json_response({"mode": core.privacy_mode(), "problem": core.privacy_state.problem},
                             dumps=core.dumps_str)


async def put_privacy(request: web.Request) -> web.Response:
    core = request.app[CORE]
    body = await read_json(request)
    mode = body.get("mode")
    if mode not in ("on", "off"):
        raise BadRequest('mode must be "on" (everything stays local) or "off".')
    core.set_privacy_mode(mode, source="api")
    return await get_privacy(request)


async def usage(request: web.Request) -> web.Response:
    core = request.app[CORE]
    period = request.query.get("period", "day")
    by = request.query.get("by", "tier")
    if period not in ("day", "week", "month"):
        raise BadRequest("period must be day, week or month.")
    if by not in ("tier", "model", "agent", "deployment"):
        raise BadRequest("by must be tier, model, agent or deployment.")
    rows = await core.usage_summary(period=period, by=by)
    return web.json_response({"period": period, "by": by, "rows": rows}, dumps=core.dumps_str)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every core event as `event: <name>` / `data: <json>`, plus a keep-alive comment."""
    core = request.app[CORE]
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)

    def on_event(ev: Event) -> None:
        try:
            queue.put_nowait(ev)
        except asyncio.QueueFull:  # a stalled reader loses events rather than stalling the core
            pass

    unsubscribe = core.bus.subscribe(on_event)
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(b": tiergate events\n\n")
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), timeout=15)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            data = orjson.dumps(ev.to_dict(), default=_default)
            await response.write(b"event: " + ev.name.encode() + b"\ndata: " + data + b"\n\n")
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


def _default(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)  # type: ignore[arg-type]
    raise TypeError


async def root(request: web.Request) -> web.Response:
    """`GET`/`HEAD /`: clients probe it at start (Claude Code does); no key needed, nothing revealed."""
    return web.json_response({"name": "tiergate", "status": "ok"})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/", root)
    r.add_get("/health", health)
    r.add_get("/health/upstreams", health_upstreams)
    r.add_get("/tiergate/status", status)
    r.add_get("/tiergate/privacy", get_privacy)
    r.add_put("/tiergate/privacy", put_privacy)
    r.add_get("/tiergate/usage", usage)
    r.add_get("/tiergate/events", events)
