"""The end of a relayed (same-dialect) stream: when the upstream's whole body is in and sent, Tiergate ends
the response before decoding the last read (`chat._end_relayed`), then records usage and fills the cache from
what it decodes. The client must get exactly the upstream's bytes, and the record must be as exact as when
the last read is decoded first.

The upstream here is a scripted fake (a tests.fakes FakeServer) on 127.0.0.1 that answers with fixed SSE bytes
in OpenAI's chat.completion.chunk format (one write, or one write per event), so the tests control how the
stream ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from app.server import chat
from tests.fakes.base import FakeServer

HEAD = {"id": "chatcmpl-relay", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini",
        "system_fingerprint": None}


def frame(choices: list, usage: Any = None) -> bytes:
    return b"data: " + orjson.dumps({**HEAD, "choices": choices, "usage": usage}) + b"\n\n"


def delta(content: str | None = None, finish: str | None = None, role: str | None = None) -> bytes:
    d: dict = {}
    if role:
        d["role"] = role
    if content is not None:
        d["content"] = content
    return frame([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}])


WORDS = [f"w{i} " for i in range(40)]
FINISHED = [delta("", role="assistant"), *(delta(w) for w in WORDS), delta(None, "stop"),
            frame([], {"prompt_tokens": 11, "completion_tokens": 40, "total_tokens": 51}), b"data: [DONE]\n\n"]
UNFINISHED = [delta("", role="assistant"), *(delta(w) for w in WORDS[:5])]  # no finish_reason, no usage, no [DONE]

CONFIG = """
model_list:
  - model_name: relay
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:%d/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
router_settings: {{num_retries: 0}}
tiergate_settings:
  cache: {{enabled: true}}
"""


class ScriptedStream(FakeServer):
    """An OpenAI-style upstream answering every chat request with `events`, in one write or one write per
    event; with `release` set, it holds its end of body back until the test sets it."""

    def __init__(self) -> None:
        self.events: list[bytes] = FINISHED
        self.per_event = False
        self.release: asyncio.Event | None = None
        super().__init__()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.completions)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        if self.per_event:
            for ev in self.events:
                await resp.write(ev)
                await asyncio.sleep(0.002)
        else:
            await resp.write(b"".join(self.events))
        if self.release is not None:
            await self.release.wait()
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream():
    async with ScriptedStream() as fake:
        yield fake


@pytest.fixture
def early_ends(monkeypatch):
    """Counts the streams that took the end-first path."""
    calls = []
    real = chat._end_relayed

    async def spy(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return await real(*a, **kw)

    monkeypatch.setattr(chat, "_end_relayed", spy)
    return calls


async def relay(p: Any, body: dict, headers: dict | None = None) -> bytes:
    async with aiohttp.ClientSession() as s:
        async with s.post(p.base_url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {p.key}", **(headers or {})}) as r:
            assert r.status == 200
            return await r.read()


async def records(p: Any) -> list:
    await p.core.ledger.flush()
    return await p.core.ledger.records()


BODY = {"model": "relay", "messages": [{"role": "user", "content": "count"}], "stream": True,
        "stream_options": {"include_usage": True}}


async def test_a_whole_answer_in_one_read_ends_first_and_is_recorded_exactly(proxy, upstream, early_ends):
    p = await proxy(CONFIG % upstream.port)
    got = await relay(p, BODY, {"x-tiergate-cache": "off"})
    assert got == b"".join(FINISHED)  # the upstream's bytes, exactly
    assert early_ends == [1]
    [rec] = await records(p)
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.usage_estimated) == ("ok", 11, 40, False)


async def test_the_usage_chunk_the_client_did_not_ask_for_is_still_stripped(proxy, upstream, early_ends):
    p = await proxy(CONFIG % upstream.port)
    body = {k: v for k, v in BODY.items() if k != "stream_options"}
    got = await relay(p, body, {"x-tiergate-cache": "off"})
    expected = [ev for ev in FINISHED if b'"choices":[]' not in ev]
    assert got == b"".join(expected) and early_ends == [1]
    [rec] = await records(p)
    assert (rec.input_tokens, rec.output_tokens) == (11, 40)


async def test_the_cache_is_filled_from_a_stream_that_ended_first(proxy, upstream, early_ends):
    p = await proxy(CONFIG % upstream.port)
    await relay(p, BODY)
    client = p.openai()
    again = await client.chat.completions.create(model="relay", messages=BODY["messages"], stream=False)
    assert again.choices[0].message.content == "".join(WORDS)
    assert len(upstream.requests) == 1  # the second answer came from the cache
    first, hit = await records(p)
    assert (first.cache_hit, hit.cache_hit, hit.output_tokens) == (False, True, 40)


async def test_an_unfinished_stream_in_one_read_reaches_the_client_as_sent_and_is_recorded_as_an_error(
        proxy, upstream, early_ends):
    upstream.events = UNFINISHED
    p = await proxy(CONFIG % upstream.port)
    got = await relay(p, BODY)
    assert got == b"".join(UNFINISHED)  # what the upstream sent; the client's SDK sees what it would have seen
    assert early_ends == [1]
    [rec] = await records(p)
    assert (rec.status, rec.error, rec.http_status) == ("error", "upstream_bad_response", 502)
    assert rec.usage_estimated and rec.output_tokens > 0  # estimated from the text that did come
    assert len(upstream.requests) == 1
    await relay(p, BODY)  # nothing was cached from the broken answer
    assert len(upstream.requests) == 2


async def test_an_unfinished_stream_in_several_reads_is_recorded_as_an_error(proxy, upstream):
    upstream.events, upstream.per_event = UNFINISHED, True
    p = await proxy(CONFIG % upstream.port)
    got = await relay(p, BODY, {"x-tiergate-cache": "off"})
    assert got.startswith(b"".join(UNFINISHED))  # and, when the end came in a read of its own, an error event
    [rec] = await records(p)
    assert (rec.status, rec.error) == ("error", "upstream_bad_response")


async def test_a_stream_in_several_reads_is_recorded_exactly(proxy, upstream):
    upstream.per_event = True
    p = await proxy(CONFIG % upstream.port)
    got = await relay(p, BODY, {"x-tiergate-cache": "off"})
    assert got == b"".join(FINISHED)
    [rec] = await records(p)
    assert (rec.status, rec.input_tokens, rec.output_tokens, rec.usage_estimated) == ("ok", 11, 40, False)


async def test_the_response_ends_at_the_last_event_without_waiting_for_the_upstreams_end_of_body(proxy, upstream):
    upstream.release = asyncio.Event()
    p = await proxy(CONFIG % upstream.port)
    got = await asyncio.wait_for(relay(p, BODY, {"x-tiergate-cache": "off"}), 10)
    assert got == b"".join(FINISHED)  # complete, while the upstream still holds its end of body back
    [rec] = await records(p)  # and recorded in full already
    assert (rec.status, rec.input_tokens, rec.output_tokens) == ("ok", 11, 40)
    assert p.core.http.idle_connections() == 0  # the upstream connection is still being drained
    upstream.release.set()
    for _ in range(200):
        if p.core.http.idle_connections() == 1:
            break
        await asyncio.sleep(0.01)
    assert p.core.http.idle_connections() == 1  # drained to its end and back in the pool


async def test_an_upstream_that_never_ends_its_body_after_the_last_event_is_dropped(proxy, upstream, monkeypatch):
    monkeypatch.setattr(chat, "DRAIN_SECONDS", 0.05)
    upstream.release = asyncio.Event()
    p = await proxy(CONFIG % upstream.port)
    assert await relay(p, BODY, {"x-tiergate-cache": "off"}) == b"".join(FINISHED)
    for _ in range(200):
        if not p.core.background:
            break
        await asyncio.sleep(0.01)
    assert not p.core.background and p.core.http.idle_connections() == 0  # given up on, connection closed
    upstream.release.set()


async def test_stopping_the_core_cancels_a_drain_still_running(proxy, upstream):
    upstream.release = asyncio.Event()
    p = await proxy(CONFIG % upstream.port)
    assert await relay(p, BODY, {"x-tiergate-cache": "off"}) == b"".join(FINISHED)
    [task] = p.core.background
    await p.core.stop()
    assert task.cancelled() or task.done()
    assert not p.core.background
    upstream.release.set()


async def test_headers_and_the_first_bytes_of_a_streamed_answer_come_in_one_write(proxy, upstream, monkeypatch):
    from asyncio import selector_events

    writes: list[bytes] = []
    transport = selector_events._SelectorSocketTransport
    real_write, real_writelines = transport.write, transport.writelines
    monkeypatch.setattr(transport, "write", lambda self, data: (writes.append(bytes(data)), real_write(self, data))[1])
    monkeypatch.setattr(transport, "writelines", lambda self, parts: (
        writes.append(b"".join(bytes(x) for x in parts)), real_writelines(self, parts))[1])
    p = await proxy(CONFIG % upstream.port)
    await relay(p, BODY, {"x-tiergate-cache": "off"})
    [head] = [w for w in writes if w.startswith(b"HTTP/1.1 200") and b"x-tiergate-tier" in w]
    assert b"data: {" in head  # the headers did not go out on their own
