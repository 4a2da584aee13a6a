"""The aiohttp application: one factory, routes registered in one place, errors rendered in one place."""

from __future__ import annotations

import asyncio
import logging
import time
from types import ModuleType
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from app.canonical import Dialect
from app.dialects import anthropic_messages, openai_chat, openai_responses
from app.errors import BadRequest, TiergateError, UnknownModel
from app.secrets.redact import scrub_error
from app.server import management, openai_extras
from app.server.chat import handle_chat
from app.server.security import AGENT_KEY
from app.server.context import CORE, STATE, RequestState, new_request_id

log = logging.getLogger("tiergate.request")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dialect_for_path(path: str) -> ModuleType:
    """Errors are rendered in the dialect of the endpoint the client called."""
    if path.startswith("/v1/messages"):
        return anthropic_messages
    if path.startswith("/v1/responses"):
        return openai_responses
    return openai_chat


def request_middleware(core: Any, gate: Any = None) -> Any:
    """The one middleware every request goes through: the security gate (app.server.security.Gate:
    host, origin, size, auth, concurrency cap, deadline), then the handler; renders every error in the
    client's dialect, records usage once, and logs one line per request."""

    @web.middleware
    async def tiergate_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            if gate is None:
                response = await handler(request)
            else:
                response = await gate.admit(request) or await gate.run(request, handler)
            status = response.status
            return response
        except TiergateError as e:
            status = e.status
            return _error_response(request, e)
        except web.HTTPException as e:
            status = e.status
            if e.status == 413:
                from app.errors import PayloadTooLarge

                err: TiergateError = PayloadTooLarge("The request body is over the configured limit "
                                                     "(tiergate_settings.max_body_bytes).")
            elif e.status == 404:
                err = TiergateError(f"No such endpoint: {request.method} {request.path}", title="Not found")
                err.status, err.code = 404, "not_found_error"
            elif e.status == 405:
                err = TiergateError(f"{request.method} is not allowed on {request.path}", title="Method not allowed")
                err.status, err.code = 405, "invalid_request_error"
            else:
                raise
            return _error_response(request, err)
        except Exception:
            # A bug: full detail in our log, a generic message to the client (no traceback, no paths).
            log.exception("unhandled error on %s %s", request.method, request.path)
            err = TiergateError("Tiergate hit an internal error; the details are in its log.", title="Internal error")
            return _error_response(request, err)
        finally:
            state: RequestState | None = request.get(STATE)
            if state is not None and not state.recorded:
                if state.record.status == "ok" and status >= 400:
                    state.record.status = "error"
                    state.record.http_status = status
                # Priced, recorded and announced right after aiohttp has written the response (it does so
                # in this same step): the client does not wait for the bookkeeping.
                asyncio.get_running_loop().call_soon(_finish, core, request, state, status, started)
            elif core.access_log:
                core.log_request(request, status, (time.perf_counter() - started) * 1000, state)

    return tiergate_request


def _finish(core: Any, request: web.Request, state: RequestState, status: int, started: float) -> None:
    if not state.recorded:
        core.finish_request(state)
    if core.access_log:
        core.log_request(request, status, (time.perf_counter() - started) * 1000, state)


def _error_response(request: web.Request, err: TiergateError) -> web.Response:
    state: RequestState | None = request.get(STATE)
    if state is not None:
        state.fail(err)
    scrub_error(err)  # no keys, no filesystem paths reach a client (also in relayed upstream bodies)
    status, body = dialect_for_path(request.path).render_error(err)
    headers = {"x-request-id": state.response_id if state else new_request_id()}
    if state is not None:
        headers["x-tiergate-privacy"] = state.privacy
    if err.code == "model_not_found" and "tiers" in err.details and isinstance(body.get("error"), dict):
        body["error"]["tiers"] = err.details["tiers"]
    retry_after = err.details.get("retry_after")
    if retry_after:
        headers["retry-after"] = str(retry_after)
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def chat_route(dialect: ModuleType, name: Dialect) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        request[STATE] = RequestState(new_request_id(), request.get(AGENT_KEY), name.value)
        return await handle_chat(request, dialect)

    handler.__name__ = f"chat_{name.value}"
    return handler


def create_app(core: Any, *, gate: Any = None, extra_middlewares: list[Any] | None = None) -> web.Application:
    """The Tiergate web application for `core` (see app.core.Tiergate); `gate` (app.server.security.Gate)
    checks every request before its handler, None only in tests of the handlers alone."""
    settings = core.config.server
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_middleware(core, gate), *(extra_middlewares or [])],
    )
    app[CORE] = core
    if gate is not None:
        gate.install(app)
    r = app.router
    chat = chat_route(openai_chat, Dialect.OPENAI_CHAT)
    r.add_post("/v1/chat/completions", chat)
    r.add_post("/chat/completions", chat)
    r.add_post("/v1/messages", chat_route(anthropic_messages, Dialect.ANTHROPIC))
    r.add_post("/v1/responses", chat_route(openai_responses, Dialect.OPENAI_RESPONSES))
    r.add_post("/responses", chat_route(openai_responses, Dialect.OPENAI_RESPONSES))
    r.add_post("/v1/messages/count_tokens", openai_extras.count_tokens)
    r.add_get("/v1/models", openai_extras.list_models)
    r.add_get("/models", openai_extras.list_models)
    r.add_post("/v1/embeddings", openai_extras.embeddings)
    r.add_post("/embeddings", openai_extras.embeddings)
    management.register(app)
    return app


__all__ = ["create_app", "dialect_for_path", "BadRequest", "UnknownModel"]
