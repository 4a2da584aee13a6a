"""Time to first byte: a first read holding many events is decoded only up to its first events before the
router hands the stream over (so the response starts before the rest is decoded), except when that read may
hold an in-stream error: then it is decoded whole and the router can still fall back.

A relayed (lazy) stream goes further: a read is handed over whole and the rest of it is decoded after its
bytes were sent (`UpstreamStream.deferred` / `decode_deferred`); the events are the same, in the same order."""

from __future__ import annotations

import orjson
import pytest

from app.canonical import ChatRequest, Dialect, Message, MessageEnd, MessageStart, TextDelta, TextPart
from app.config.loader import parse_config
from app.dialects import ollama_chat, openai_chat
from app.errors import UpstreamServerError
from app.events import EventBus
from app.providers.base import UpstreamStream
from app.router.health import HealthTracker
from app.router.router import Router

CONFIG = """
model_list:
  - model_name: coder
    litellm_params: {model: openai/first, api_base: "http://127.0.0.1:9", api_key: x}
  - model_name: coder
    litellm_params: {model: openai/second, api_base: "http://127.0.0.1:9", api_key: x}
router_settings: {num_retries: 0}
"""
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def frame(delta: dict, finish: str | None = None) -> bytes:
    return b"data: " + orjson.dumps({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"


ROLE = frame({"role": "assistant", "content": ""})
REST = b"".join(frame({"content": f"w{i} "}) for i in range(20)) + frame({}, "stop") + b"data: [DONE]\n\n"
ERROR = b'data: {"error":{"message":"The server had an error","type":"server_error"}}\n\n'


class _Response:
    """Stands in for `http_client.Response`: the reads as `iter_any()` gives them."""

    def __init__(self, reads: list[bytes]):
        self.reads = reads
        self.closed = self.released = False

    async def iter_any(self):
        for r in self.reads:
            yield r

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


class _Provider:
    def __init__(self, deployment, reads: list[bytes], lazy: bool = False):
        self.deployment, self.reads, self.opened, self.lazy = deployment, reads, 0, lazy

    async def open_stream(self, req: ChatRequest) -> UpstreamStream:
        self.opened += 1
        return UpstreamStream(_Response(self.reads), openai_chat.relay_stream_decoder(), self.deployment, True,
                              lazy=self.lazy)


def _router(first: list[bytes], second: list[bytes], *, lazy: bool = False) -> tuple[Router, list]:
    config = parse_config(CONFIG, "c.yaml")
    deps = config.tiers["coder"]
    providers = {deps[0].id: _Provider(deps[0], first, lazy), deps[1].id: _Provider(deps[1], second, lazy)}

    async def no_sleep(_: float) -> None:
        return None

    router = Router(config, providers, HealthTracker(EventBus(), allowed_fails=3, cooldown_time=1), sleep=no_sleep)
    return router, deps


REQ = ChatRequest(model="coder", messages=[Message("user", [TextPart("hi")])], stream=True,
                  dialect=Dialect.OPENAI_CHAT, raw={"model": "coder"})


async def rest_of(stream: UpstreamStream) -> bytes:
    return b"".join([chunk async for chunk, _ in stream])


async def test_a_whole_answer_in_one_read_is_handed_over_after_its_first_event():
    router, deps = _router([ROLE + REST], [])
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert route.deployment is deps[0]
    assert raw == ROLE and events == [MessageStart("chatcmpl-1", "m")]
    assert await rest_of(stream) == REST  # every byte once, in order


async def test_an_error_in_the_first_read_still_falls_back():
    router, deps = _router([ROLE + ERROR], [ROLE + REST])
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert route.deployment is deps[1]
    assert [(a.deployment, a.error) for a in route.attempts] == [(deps[0].id, "upstream_server_error"),
                                                                  (deps[1].id, "ok")]
    assert raw == ROLE and await rest_of(stream) == REST


async def test_an_error_in_a_later_read_ends_the_stream():
    router, deps = _router([ROLE + frame({"content": "a"}) + frame({"content": "b"}), ERROR], [ROLE + REST])
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert route.deployment is deps[0] and raw == ROLE
    assert (await anext(stream))[0] == frame({"content": "a"}) + frame({"content": "b"})
    with pytest.raises(UpstreamServerError, match="The server had an error"):
        await anext(stream)


async def test_comments_before_the_first_event_come_with_it():
    router, deps = _router([b": keep-alive\n\n" + ROLE + REST], [])
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert raw == b": keep-alive\n\n" + ROLE and events == [MessageStart("chatcmpl-1", "m")]
    assert await rest_of(stream) == REST


async def test_ndjson_streams_are_split_by_line():
    line = b'{"model":"qwen3:4b","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"a"},"done":false}\n'
    last = (b'{"model":"qwen3:4b","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":""},'
            b'"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}\n')
    config = parse_config(CONFIG, "c.yaml")
    stream = UpstreamStream(_Response([line * 3 + last]), ollama_chat.StreamDecoder(), config.tiers["coder"][0], False)
    chunk, events = await anext(stream)
    assert chunk == line and events
    assert await rest_of(stream) == line * 2 + last


# ------------------------------------------------------------------------------------ lazy (relayed) streams
def _texts(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def _drain_lazily(stream: UpstreamStream) -> tuple[bytes, list]:
    """What answer_stream does: send each read, decode the reads before it, and the rest at the end."""
    raw, events = b"", []
    async for chunk, evs in stream:
        raw += chunk
        events += evs
        events += stream.decode_backlog()
    events += stream.decode_deferred()
    return raw, events + stream.end_events()


async def test_lazy_a_whole_answer_in_one_read_goes_out_whole_and_is_decoded_at_the_end():
    router, deps = _router([ROLE + REST], [], lazy=True)
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert raw == ROLE + REST and events == [MessageStart("chatcmpl-1", "m")]
    assert (stream.latest, stream.deferred) == (REST, b"")  # not decoded yet
    assert stream.decode_backlog() == [] and stream.latest == REST  # the latest read waits for the next one
    pairs = [pair async for pair in stream]
    assert pairs == [(b"", [])] and stream.pending  # the end: nothing decoded yet
    late = stream.decode_deferred() + stream.end_events()
    assert not stream.pending and _texts(late) == "".join(f"w{i} " for i in range(20))
    assert type(late[-1]) is MessageEnd


async def test_lazy_reads_are_decoded_one_behind():
    reads = [ROLE, frame({"content": "a"}), frame({"content": "b"}), frame({}, "stop") + b"data: [DONE]\n\n"]
    router, deps = _router(reads, [], lazy=True)
    stream, events, raw, _ = await router.open_stream(REQ, deps)
    assert raw == ROLE and not stream.pending
    assert await anext(stream) == (reads[1], []) and stream.decode_backlog() == []
    assert await anext(stream) == (reads[2], [])
    assert _texts(stream.decode_backlog()) == "a" and stream.latest == reads[2]
    assert await anext(stream) == (reads[3], [])
    assert _texts(stream.decode_backlog()) == "b"
    assert await anext(stream) == (b"", [])
    end = stream.decode_deferred() + stream.end_events()
    assert type(end[-1]) is MessageEnd and not stream.pending


async def test_lazy_a_read_that_may_hold_an_error_is_decoded_after_what_waits_before_it():
    reads = [ROLE, frame({"content": "a"}), frame({"content": "b"}) + ERROR]
    router, deps = _router(reads, [], lazy=True)
    stream, _, _, _ = await router.open_stream(REQ, deps)
    assert await anext(stream) == (reads[1], [])
    chunk, events = await anext(stream)  # what waited comes first, decoded, with no bytes
    assert chunk == b"" and _texts(events) == "a" and not stream.pending
    with pytest.raises(UpstreamServerError) as e:
        await anext(stream)
    assert e.value.deployment == deps[0].id


async def test_lazy_an_error_in_the_first_read_still_falls_back():
    router, deps = _router([ROLE + ERROR], [ROLE + REST], lazy=True)
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert route.deployment is deps[1] and raw == ROLE + REST


async def test_lazy_a_stream_that_ends_before_its_first_events_still_falls_back():
    router, deps = _router([b": ping\n\n"], [ROLE + REST], lazy=True)
    stream, events, raw, route = await router.open_stream(REQ, deps)
    assert route.deployment is deps[1]


async def test_lazy_and_eager_give_the_same_bytes_and_events():
    reads = [b": ping\n\n" + ROLE + frame({"content": "x"}), frame({"content": "y"}) + frame({"content": "z"}),
             frame({}, "stop"), b"data: [DONE]\n\n"]
    out = []
    for lazy in (False, True):
        router, deps = _router(reads, [], lazy=lazy)
        stream, events, raw, _ = await router.open_stream(REQ, deps)
        rest, later = await _drain_lazily(stream)
        out.append((raw + rest, [*events, *later]))
    assert out[0][0] == out[1][0] == b"".join(reads)
    assert _texts(out[0][1]) == _texts(out[1][1]) == "xyz"
    assert [type(e) for e in out[0][1] if not isinstance(e, TextDelta)] == \
        [type(e) for e in out[1][1] if not isinstance(e, TextDelta)]
