"""The OpenAI stream decoder's fast paths (msgspec-typed chunks, orjson per read, merged text for relayed
streams) give the events and errors of the one-frame-at-a-time reference (`StreamDecoder._data`)."""

from __future__ import annotations

import random

import orjson
import pytest

from app.canonical import BlockStart, BlockStop, MessageEnd, MessageStart, StopReason, TextDelta, Usage
from app.dialects import openai_chat as oc
from app.errors import UpstreamBadResponse, UpstreamServerError

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1"}
USAGE = {"prompt_tokens": 12, "completion_tokens": 50, "total_tokens": 62,
         "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 0}}


def frame(delta: dict | None = None, finish: str | None = None, **top) -> bytes:
    obj = {**HEAD, "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}],
           "usage": None, **top}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def text_stream(n: int = 50) -> bytes:
    """Like OpenAI's with include_usage: a role chunk, n text chunks, the finish chunk, the usage chunk."""
    usage = b"data: " + orjson.dumps({**HEAD, "choices": [], "usage": USAGE}) + b"\n\n"
    return (frame({"role": "assistant", "content": "", "refusal": None})
            + b"".join(frame({"content": f"w{i} "}) for i in range(n)) + frame({}, "stop") + usage + b"data: [DONE]\n\n")


@pytest.fixture(params=["msgspec", "orjson"])
def parser(request, monkeypatch):
    """Run each test with the msgspec path and with orjson only (msgspec not installed)."""
    monkeypatch.setattr(oc, "new_call_id", lambda: "call_generated")  # comparable events
    if request.param == "orjson":
        monkeypatch.setattr(oc, "_decode_chunk", None)
    elif oc._decode_chunk is None:  # pragma: no cover
        pytest.skip("msgspec is not installed")
    return request.param


def reference(frames: list[bytes]) -> tuple[list | None, object]:
    """Events from `_data`, one frame at a time, then close(); or the error it raises (and no events)."""
    d = oc.StreamDecoder()
    out: list = []
    try:
        for f in frames:
            d._data(f, out)
        out += d.close()
    except Exception as e:
        return None, (type(e), str(e))
    return out, None


def decode(chunks: list[bytes], **kw) -> tuple[list | None, object]:
    d = oc.StreamDecoder(**kw)
    out: list = []
    try:
        for c in chunks:
            out += d.feed(c)
        out += d.close()
    except Exception as e:
        return None, (type(e), str(e))
    return out, None


def merged(events: list) -> list:
    out: list = []
    for ev in events:
        if type(ev) is TextDelta and out and type(out[-1]) is TextDelta and out[-1].index == ev.index:
            out[-1] = TextDelta(ev.index, out[-1].text + ev.text)
        else:
            out.append(ev)
    return out


def test_relayed_stream_in_one_read_gives_one_text_event(parser):
    d = oc.relay_stream_decoder()
    data = text_stream()
    first = data.index(b"\n\n") + 2
    assert d.feed(data[:first]) == [MessageStart("chatcmpl-1", "gpt-4o-mini")]
    assert d.feed(data[first:]) == [BlockStart(0, "text"), TextDelta(0, "".join(f"w{i} " for i in range(50))),
                                    BlockStop(0),
                                    MessageEnd(StopReason.END_TURN, Usage(input_tokens=10, output_tokens=50,
                                                                          cache_read_tokens=2))]
    assert d.close() == []


def test_not_relayed_the_same_read_gives_every_delta(parser):
    data = text_stream(5)
    first = data.index(b"\n\n") + 2
    events, err = decode([data[:first], data[first:]])
    assert err is None
    assert events[1:7] == [BlockStart(0, "text")] + [TextDelta(0, f"w{i} ") for i in range(5)]


FRAMES = [
    frame({"content": "a"}), frame({"content": "héllo 日本"}), frame({"content": ""}), frame({"content": None}),
    frame({"reasoning_content": "think"}), frame({"reasoning": "hm", "content": "c"}),
    frame({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
    frame({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
    frame({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]}),
    frame({"content": "x", "refusal": None}), frame({"refusal": "no"}), frame({"content": "q", "role": "assistant"}),
    frame({"content": 5}), frame({"content": "q", "reasoning_content": 7}), frame({"content": "q", "tool_calls": {}}),
    frame({}, "stop"), frame({}, "tool_calls"), frame({"content": "z"}, "length"), frame({}, 7),
    b"data: " + orjson.dumps({**HEAD, "choices": [], "usage": USAGE}) + b"\n\n",
    b'data: {"choices":[{"delta":"text"}]}\n\n', b'data: {"choices":[{"delta":null,"finish_reason":"stop"}]}\n\n',
    b'data: {"choices":[{"delta":[1]}]}\n\n', b'data: {"choices":{"a":1}}\n\n', b'data: {"choices":"s"}\n\n',
    b'data: {"choices":[{"delta":{"content":"a"}},5]}\n\n', b'data: {"usage":[],"choices":[]}\n\n',
    b'data: {"usage":{}}\n\n', b'data: {"error":""}\n\n', b'data: {"error":0,"choices":[{"delta":{"content":"e"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}\n\n',
    b'data:  {"choices":[{"delta":{"content":"sp"}}]} \n\n',
]
BAD = [
    b'data: {"error":{"message":"The server had an error","type":"server_error"}}\n\n',
    b"data: {not json}\n\n", b"data: [1]\n\n", b'data: {"choices":[1]}\n\n', b'data: {"choices":[{"delta":{"tool_calls":[5]}}]}\n\n',
    b'data: {"x":"\xff","choices":[{"delta":{"content":"a"}}]}\n\n',  # invalid UTF-8 where nobody reads
    b"data: [DONE]\n\n",
]


def test_random_streams_give_the_reference_events_and_errors(parser):
    rng = random.Random(11)
    for _ in range(4000):
        body = [rng.choice(FRAMES) for _ in range(rng.randint(0, 10))]
        if rng.random() < 0.2:
            body.insert(rng.randint(0, len(body)), rng.choice(BAD))
        if rng.random() < 0.8:
            body.append(b"data: [DONE]\n\n")
        stream = b"".join(body)
        ref = reference([f[6:-2] for f in body])
        points = sorted(rng.sample(range(1, len(stream)), min(3, len(stream) - 1))) if len(stream) > 1 else []
        for chunks in ([stream], [f for f in body], [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]):
            assert decode(chunks) == ref, chunks
            events, err = decode(chunks, merge_text=True)
            assert (events and merged(events), err) == (ref[0] and merged(ref[0]), ref[1]), chunks


def test_an_error_frame_in_a_read_raises_the_upstreams_error(parser):
    d = oc.StreamDecoder()
    d.feed(frame({"content": "x"}))
    with pytest.raises(UpstreamServerError) as e:
        d.feed(frame({"content": "y"}) + BAD[0] + b"data: {not json}\n\n")  # the error comes first, as sent
    assert e.value.message == "The server had an error"


def test_a_frame_that_is_not_json_raises_bad_response(parser):
    d = oc.StreamDecoder()
    d.feed(frame({"content": "x"}))
    with pytest.raises(UpstreamBadResponse, match="not JSON"):
        d.feed(frame({"content": "y"}) + b'data: {"x":"\xff"}\n\n')


def test_frames_after_done_are_ignored(parser):
    d = oc.StreamDecoder()
    d.feed(frame({"content": "x"}))
    events = d.feed(frame({}, "stop") + b"data: [DONE]\n\ndata: {not json}\n\n")
    assert type(events[-1]) is MessageEnd and d.close() == []


def test_a_stream_that_stops_without_finish_is_an_error(parser):
    d = oc.relay_stream_decoder()
    d.feed(text_stream().split(b"data: {", 3)[0])
    d.feed(frame({"content": "x"}) + frame({"content": "y"}))
    with pytest.raises(UpstreamBadResponse, match="ended before a finish_reason"):
        d.close()
