"""The chat pipeline every inbound dialect shares: parse → privacy → budget → cache → route → answer → record.

Handlers for /v1/chat/completions, /v1/messages and /v1/responses are this one function with a different
dialect module. Privacy is decided before any deployment is chosen and the plan only ever holds deployments
the decision allows; nothing after that point can add one.
"""

from __future__ import annotations

import asyncio
import logging
from types import ModuleType
from typing import Any

from aiohttp import web

from app.assembly import events_from_response
from app.canonical import ChatRequest, ChatResponse, Usage
from app.errors import AllDeploymentsFailed, Forbidden, PrivacyRefused, TiergateError, UpstreamError
from app.router.router import RouteResult, Target
from app.server.context import CORE, STATE, RequestState, read_json, response_headers
from app.secrets.redact import scrub_error
from app.server.relay import StreamRelay

log = logging.getLogger("tiergate.request")
content_log = logging.getLogger("tiergate.content")

class AnswerStreamResponse(web.StreamResponse):
    """A streamed answer. Its headers go out with its first bytes, in one write (one packet, one read for the
    client), instead of on their own at prepare(): an answer is prepared only once its first bytes are ready.
    (aiohttp's web.Response does the same for whole bodies.)"""

    _send_headers_immediately = False


SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
               "x-accel-buffering": "no"}


async def handle_chat(request: web.Request, dialect: ModuleType) -> web.StreamResponse:
    core = request.app[CORE]
    state: RequestState = request[STATE]
    body = await read_json(request)
    if core.config.server.log_content:  # debug content logging: only when switched on in the config
        content_log.info("%s request %s", state.response_id, core.dumps(body).decode())
    req = dialect.parse_request(body, request.headers)
    state.record.requested_model = req.model
    state.record.stream = req.stream
    try:
        target, plan, decision = await prepare(core, state, req, request)
        cached = await core.cache_lookup(state, req, target.tier, request.headers, body)
        if cached is not None:
            return await answer_from_cache(request, state, dialect, req, target, cached)
        try:
            if req.stream:
                return await answer_stream(request, state, dialect, req, target, plan)
            return await answer(request, state, dialect, req, target, plan)
        except AllDeploymentsFailed as e:
            if decision.level != "local":
                raise
            # Every local deployment is down, slow, failing or cooling down: say so, and that nothing was
            # sent to the cloud instead.
            state.record.fallback_path = list(dict.fromkeys(a[0] for a in e.attempts))
            raise core.privacy.refusal(decision, target.tier, all_down=True) from e
    except TiergateError as e:
        state.fail(e)
        raise


async def prepare(core: Any, state: RequestState, req: ChatRequest, request: web.Request, *,
                  can_redact: bool = True) -> tuple[Target, list, Any]:
    """Resolve the tier, check the agent, decide privacy, apply budgets, and build the plan. Endpoints whose
    answers cannot be restored (`can_redact=False`: embeddings, token counts) keep redactable content local."""
    agent = state.agent
    target = core.router.resolve(req.model)
    allowed_tiers = getattr(agent, "allowed_tiers", None)
    if allowed_tiers and target.tier not in allowed_tiers:
        raise Forbidden(f"Agent {agent.name!r} may not use the tier {target.tier!r} "
                        f"(allowed: {', '.join(allowed_tiers)}).")
    # 1. privacy, before anything that could pick a deployment
    decision = await core.decide_privacy(req, agent, request.headers)
    if decision.redact:  # action `redact`: a masked copy may go to the cloud; anything unmaskable stays local
        from app.privacy.policy import PrivacyDecision
        from app.privacy.redact import RedactionFailed

        if not can_redact:
            decision = PrivacyDecision("local", decision.rule, ("detector",))
        else:
            try:
                state.redaction = core.redact(req)
            except RedactionFailed:
                decision = PrivacyDecision("local", "redaction_failed", ("detector",))
    state.record.privacy = decision.level
    state.record.privacy_rule = decision.rule
    state.privacy = decision.level
    # 2. budgets (may downgrade to a cheaper tier)
    if core.budgets:
        verdict = core.budgets.check(state.record.agent, target.tier)
        verdict.raise_if_refused()
        if verdict.action == "downgrade" and verdict.tier != target.tier:
            target = core.router.resolve(verdict.tier)
    state.record.tier = target.tier
    state.tier = target.tier
    # 3. the plan: only deployments the decision allows
    allowed = core.privacy_allows(decision)
    extra = ()
    if decision.level == "local":
        equivalent = core.local_equivalent(target.tier)
        extra = (equivalent,) if equivalent else ()
    plan = core.router.plan(target, allowed=allowed, extra_tiers=extra)
    if not plan:
        if decision.level == "local":
            raise PrivacyRefused(
                f"This request must stay on this machine ({decision.rule}), and the tier {target.tier!r} has no "
                f"local deployment. Add a local (Ollama) deployment to {target.tier!r}, or set "
                f"tiergate_settings.privacy.local_equivalents.{target.tier} to a local tier.")
    return target, plan, decision


async def answer(request: web.Request, state: RequestState, dialect: ModuleType, req: ChatRequest,
                 target: Target, plan: list) -> web.Response:
    core = request.app[CORE]
    redaction = state.redaction
    resp, raw, route = await core.router.complete(redaction.request if redaction else req, plan)
    state.routed(route)
    if redaction is not None:
        resp, raw = redaction.restore_response(resp), None
    if raw is None:
        raw = core.dumps(dialect.render_response(resp, req))
    core.cache_store(state, resp)
    state.finish(resp.usage)
    if core.config.server.log_content:
        content_log.info("%s response %s", state.response_id, raw.decode("utf-8", "replace"))
    headers = response_headers(state, overhead_ms=state.overhead_ms(route.upstream_ms))
    return web.Response(body=raw, status=200, content_type="application/json", headers=headers)


async def answer_stream(request: web.Request, state: RequestState, dialect: ModuleType, req: ChatRequest,
                        target: Target, plan: list) -> web.StreamResponse:
    core = request.app[CORE]
    redaction = state.redaction
    stream, first_events, first_raw, route = await core.router.open_stream(redaction.request if redaction else req,
                                                                           plan)
    state.routed(route)
    if redaction is not None:  # placeholders back to the original values, also when split across chunks
        restorer = redaction.stream_restorer()
        stream = _Restored(stream, restorer)
        first_events = [out for ev in first_events for out in restorer.feed(ev)]
    relay = StreamRelay(dialect, req, response_id=state.response_id, passthrough=stream.passthrough)
    if stream.passthrough and state.cache_key is None and hasattr(stream.decoder, "skim"):
        stream.decoder.skim()  # relayed and not cached: only usage and the end need decoding
    headers = {**SSE_HEADERS, **response_headers(state, overhead_ms=state.overhead_ms(route.upstream_ms))}
    response = AnswerStreamResponse(status=200, headers=headers)
    try:
        await response.prepare(request)
        out = relay.process(first_raw, first_events)
        state.first_byte()
        # A relayed stream whose last event came is ended without waiting for the upstream's end of body:
        # its last bytes go out with the end of the response, in one write.
        finished = getattr(dialect, "stream_finished", None) if stream.lazy else None
        ended = finished is not None and finished(first_raw)
        if not ended:
            if out:
                await response.write(out)
            out = b""
            async for chunk, events in stream:
                out = relay.process(chunk, events)
                if finished is not None and chunk and finished(chunk):
                    ended = True
                    break
                if out:
                    await response.write(out)
                out = b""
                if stream.deferred:  # a relayed stream decodes its reads one behind (UpstreamStream.lazy)
                    relay.take(stream.decode_backlog())
        tail = relay.flush()
        if ended:
            return await _end_relayed(response, stream, relay, state, req, core, drain=True, last=out + tail)
        if tail:
            await response.write(tail)
        if not stream.pending and not relay.assembler.done:
            raise UpstreamError("the upstream ended the stream without finishing the message")
    except UpstreamError as e:
        # After the first byte there is no fallback: end the stream with a proper error event.
        log.warning("stream from %s broke: %s", state.record.deployment, e.code)
        state.fail(e, usage=_usage_so_far(relay, req, stream))
        scrub_error(e)  # no keys or paths in what the client sees
        try:
            await response.write(relay.flush() + relay.error(dialect, req, e))
        except (ConnectionError, RuntimeError):
            pass
        await stream.aclose()
        return response
    except (ConnectionError, asyncio.CancelledError, RuntimeError) as e:
        # The client went away: stop the upstream (and its spending), keep what was used.
        state.client_closed(_usage_so_far(relay, req, stream))
        await stream.aclose()
        if isinstance(e, asyncio.CancelledError):
            raise
        return response
    if stream.pending:
        return await _end_relayed(response, stream, relay, state, req, core, drain=False)
    if relay.assembler.done and state.cache_key is not None:  # assemble the answer only for the cache
        core.cache_store(state, relay.assembler.response())
    state.finish(relay.assembler.usage)
    try:
        await response.write_eof()
    except ConnectionError:
        pass
    await stream.aclose()  # close hooks (an Ollama model's in-flight mark) run now, not when collected
    return response


async def _end_relayed(response: web.StreamResponse, stream: Any, relay: StreamRelay, state: RequestState,
                       req: ChatRequest, core: Any, *, drain: bool, last: bytes = b"") -> web.StreamResponse:
    """A relayed stream whose every byte was sent: end the response first, then decode what is still waiting
    (the last read or two, the decoder's end) for usage, the cache and the record. Nothing decoded now could
    change what the client got (the upstream's own bytes); a stream that turns out broken or unfinished is
    recorded as an error: the client saw exactly what the upstream sent, as it would have without Tiergate.

    `drain`: the response ended at the stream's last event, before the upstream's end of body; that end is
    read now (so the connection goes back to the pool), for at most DRAIN_SECONDS. Bytes after the last
    event are not relayed. `last`: bytes still to send, with the end of the response."""
    try:
        await response.write_eof(last)
    except ConnectionError:
        pass
    try:
        relay.take(stream.decode_deferred())
        relay.take(stream.end_events())
        if not relay.assembler.done:
            raise UpstreamError("the upstream ended the stream without finishing the message")
    except UpstreamError as e:
        log.warning("relayed stream from %s ended badly: %s", state.record.deployment, e.code)
        state.fail(e, usage=_usage_so_far(relay, req, stream))
        await stream.aclose()
        return response
    if state.cache_key is not None:
        core.cache_store(state, relay.assembler.response())
    state.finish(relay.assembler.usage)
    if drain:  # the record is complete; the upstream's end of body is read on the side
        core.spawn(_drain(stream, state.record.deployment), name="tiergate-drain-upstream")
    else:
        await stream.aclose()
    return response


DRAIN_SECONDS = 5.0


async def _drain(stream: Any, deployment: str) -> None:
    """Read a relayed stream to its end of body after its last event (the connection then goes back to the
    pool), for at most DRAIN_SECONDS; what comes after the last event is dropped. Then its close hooks run."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _pair in stream:
                pass
    except TimeoutError:
        log.info("upstream %s sent no end of body %.0f s after its last event; connection dropped",
                 deployment, DRAIN_SECONDS)
    except Exception as e:  # noqa: BLE001 - the client has its answer; only the connection is lost
        log.info("upstream %s: %s after its last event; connection dropped", deployment, type(e).__name__)
    finally:
        await stream.aclose()


async def answer_from_cache(request: web.Request, state: RequestState, dialect: ModuleType, req: ChatRequest,
                            target: Target, cached: ChatResponse) -> web.StreamResponse:
    state.cache_hit(cached)
    headers = response_headers(state, overhead_ms=state.overhead_ms(0.0))
    if not req.stream:
        body = request.app[CORE].dumps(dialect.render_response(cached, req))
        return web.Response(body=body, status=200, content_type="application/json", headers=headers)
    encoder = dialect.StreamEncoder(req, state.response_id)
    response = AnswerStreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    state.first_byte()
    out = b"".join(encoder.encode(ev) for ev in events_from_response(cached, text_chunk=64)) + encoder.finish()
    await response.write(out)
    await response.write_eof()
    return response


class _Restored:
    """An upstream stream whose events pass through a redaction restorer."""

    def __init__(self, stream: Any, restorer: Any):
        self._stream, self._restorer = stream, restorer
        self.passthrough = False

    def __aiter__(self) -> "_Restored":
        return self

    async def __anext__(self) -> tuple[bytes, list]:
        chunk, events = await anext(self._stream)
        return chunk, [out for ev in events for out in self._restorer.feed(ev)]

    deferred = b""  # a masked request is never relayed as it came: nothing waits to be decoded
    pending = False
    lazy = False

    async def aclose(self) -> None:
        await self._stream.aclose()


def _usage_so_far(relay: StreamRelay, req: ChatRequest, stream: Any) -> Usage:
    """What a stream cut short used: the upstream's own figures where it sent them, else an estimate
    (flagged `estimated`) from the characters seen and the request size (4 characters a token). Reads of
    a relayed `stream` still waiting to be decoded, or kept undecoded by a skimming decoder, count too."""
    if stream is not None:
        if stream.pending:
            try:
                relay.take(stream.decode_deferred())
            except UpstreamError:  # what could be decoded was taken
                pass
        unskim = getattr(getattr(stream, "decoder", None), "unskim", None)
        if unskim is not None:  # text a skimming decoder kept undecoded
            relay.take(unskim())
    usage = relay.assembler.usage
    seen = relay.assembler.output_chars // 4 + 1 if relay.assembler.output_chars else 0
    if seen > usage.output_tokens:  # e.g. Anthropic's message_start placeholder of 1 output token
        usage.output_tokens = seen
        usage.estimated = True
    if usage.prompt_tokens == 0:
        usage.input_tokens = max(1, len(request_size_hint(req)) // 4)
        usage.estimated = True
    return usage


def request_size_hint(req: ChatRequest) -> bytes:
    import orjson

    return orjson.dumps(req.raw) if req.raw else b""


__all__ = ["handle_chat", "RouteResult"]
