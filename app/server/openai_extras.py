"""The smaller endpoints: model list, embeddings, Anthropic token counting."""

from __future__ import annotations


from aiohttp import web

from app.canonical import Dialect, EmbeddingRequest
from app.dialects import anthropic_messages
from app.errors import BadRequest, TiergateError
from app.server.chat import prepare
from app.server.security import AGENT_KEY
from app.server.context import CORE, STATE, RequestState, new_request_id, read_json, response_headers


async def list_models(request: web.Request) -> web.Response:
    """The tiers (and aliases) a client can ask for, in OpenAI's list shape."""
    core = request.app[CORE]
    created = int(core.started_at)
    allowed = getattr(request.get(AGENT_KEY), "allowed_tiers", None)
    data = [{"id": tier, "object": "model", "created": created, "owned_by": "tiergate"}
            for tier in core.router.tiers if not allowed or tier in allowed]
    return web.json_response({"object": "list", "data": data}, dumps=core.dumps_str)


async def embeddings(request: web.Request) -> web.Response:
    core = request.app[CORE]
    state = request[STATE] = RequestState(new_request_id(), request.get(AGENT_KEY), "openai_embeddings")
    body = await read_json(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required: the tier or model to embed with.")
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        inputs: list = [raw_input]
    elif isinstance(raw_input, list) and raw_input:
        inputs = raw_input
    else:
        raise BadRequest("input must be a string or a non-empty list of strings.")
    dimensions = body.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise BadRequest("dimensions must be a positive integer.")
    encoding = body.get("encoding_format")
    if body.get("user") is not None and not isinstance(body.get("user"), str):
        raise BadRequest("user must be a string.")
    if encoding is not None and encoding not in ("float", "base64"):
        raise BadRequest('encoding_format must be "float" or "base64".')
    if not all(isinstance(t, str) for t in inputs) and not all(
            isinstance(t, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in t) for t in inputs):
        raise BadRequest("input must be a string, a list of strings, or a list of token arrays.")
    state.record.requested_model = model
    req = EmbeddingRequest(model=model, input=inputs, dimensions=body.get("dimensions"),
                           encoding_format=body.get("encoding_format"), raw=body)
    # Embeddings carry user text too: decide privacy on it like any chat request.
    from app.canonical import ChatRequest, Message, TextPart

    probe = ChatRequest(model=model, messages=[Message("user", [TextPart(t) for t in inputs if isinstance(t, str)])],
                        dialect=Dialect.OPENAI_CHAT)
    target, plan, _ = await prepare(core, state, probe, request, can_redact=False)
    resp, route = await core.router.embed(req, plan)
    state.routed(route)
    state.finish(resp.usage)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(resp.vectors)]
    out = {"object": "list", "data": data, "model": model,
           "usage": {"prompt_tokens": resp.usage.prompt_tokens, "total_tokens": resp.usage.prompt_tokens}}
    return web.Response(body=core.dumps(out), content_type="application/json",
                        headers=response_headers(state, overhead_ms=state.overhead_ms(route.upstream_ms)))


async def count_tokens(request: web.Request) -> web.Response:
    """Exact from Anthropic when the tier's first usable deployment is Anthropic, else an estimate
    (see anthropic_messages.estimate_tokens)."""
    core = request.app[CORE]
    body = await read_json(request)
    req = anthropic_messages.parse_request(body, request.headers, require_max_tokens=False)
    state = RequestState(new_request_id(), request.get(AGENT_KEY), Dialect.ANTHROPIC.value)
    target, plan, _ = await prepare(core, state, req, request, can_redact=False)
    for d in plan:
        provider = core.router.providers.get(d.id)
        if d.provider == "anthropic" and provider is not None and core.router.health.usable(d.id):
            wire = provider.passthrough_body(req) if req.raw else anthropic_messages.build_request(req, d, stream=False)
            wire.pop("max_tokens", None)
            wire.pop("stream", None)
            try:
                data = await provider.post_json("/v1/messages/count_tokens", wire, req)
                return web.json_response({"input_tokens": int(data["input_tokens"])},
                                         headers={"x-tiergate-estimate": "false", "x-tiergate-tier": target.tier})
            except (TiergateError, KeyError, TypeError, ValueError):
                break
    return web.json_response({"input_tokens": anthropic_messages.estimate_tokens(req)},
                             headers={"x-tiergate-estimate": "true", "x-tiergate-tier": target.tier})


