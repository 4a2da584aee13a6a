"""The benchmark's reference proxies: what any router must at least do, and nothing more.

- `/v1/chat/completions`: a bare pass-through that parses the JSON body, re-serialises it, forwards it to
  the upstream and relays the answer (streams chunk by chunk).
- `/v1/messages`: a bare translator: Anthropic Messages in, OpenAI Chat Completions upstream, translated
  back (text only, streaming included, usage mapped) — the least a translating router does.

Run: python tests/bench/bare_proxy.py --port 0 --upstream http://127.0.0.1:PORT  (prints the bound port)
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import aiohttp
import orjson
from aiohttp import web

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    session = request.app[SESSION]
    async with session.post(request.app[UPSTREAM] + "/v1/chat/completions", data=orjson.dumps(body),
                            headers={"content-type": "application/json",
                                     "authorization": request.headers.get("authorization", "")}) as up:
        if not body.get("stream"):
            data = orjson.loads(await up.read())
            return web.Response(body=orjson.dumps(data), status=up.status, content_type="application/json")
        resp = web.StreamResponse(status=up.status, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def _to_openai(body: dict) -> dict:
    messages = []
    if body.get("system"):
        system = body["system"]
        messages.append({"role": "system", "content": system if isinstance(system, str)
                         else "".join(b.get("text", "") for b in system)})
    for m in body["messages"]:
        content = m["content"]
        if not isinstance(content, str):
            content = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        messages.append({"role": m["role"], "content": content})
    out = {"model": body["model"], "messages": messages, "max_tokens": body.get("max_tokens")}
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _sse(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    session = request.app[SESSION]
    wire = _to_openai(body)
    async with session.post(request.app[UPSTREAM] + "/v1/chat/completions", data=orjson.dumps(wire),
                            headers={"content-type": "application/json",
                                     "authorization": "Bearer " + request.headers.get("x-api-key", "")}) as up:
        if not body.get("stream"):
            data = orjson.loads(await up.read())
            usage = data.get("usage") or {}
            out = {"id": "msg_" + uuid.uuid4().hex, "type": "message", "role": "assistant", "model": body["model"],
                   "content": [{"type": "text", "text": data["choices"][0]["message"].get("content") or ""}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                             "output_tokens": usage.get("completion_tokens", 0)}}
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_sse("message_start", {"type": "message_start", "message": {
            "id": "msg_" + uuid.uuid4().hex, "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        await resp.write(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}}))
        buf = b""
        usage: dict = {}
        async for chunk in up.content.iter_any():
            buf += chunk
            *frames, buf = buf.split(b"\n\n")
            out = []
            for frame in frames:
                if not frame.startswith(b"data: ") or frame == b"data: [DONE]":
                    continue
                data = orjson.loads(frame[6:])
                if data.get("usage"):
                    usage = data["usage"]
                for choice in data.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                "delta": {"type": "text_delta", "text": text}}))
            if out:
                await resp.write(b"".join(out))
        await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                         + _sse("message_delta", {"type": "message_delta",
                                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                                  "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                                                            "output_tokens": usage.get("completion_tokens", 0)}})
                         + _sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp


async def serve(port: int, upstream: str) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    a = ap.parse_args()
    try:
        asyncio.run(serve(a.port, a.upstream))
    except KeyboardInterrupt:
        pass
