"""SSE parser and encoder (WHATWG text/event-stream rules, as OpenAI's and Anthropic's streams use them)."""

from __future__ import annotations

import random

import pytest
from anthropic._streaming import SSEDecoder as AnthropicSSEDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dialects.sse import SSEEvent, SSEParser, sse

# Shaped like Anthropic's stream (docs.anthropic.com/en/api/messages-streaming): named events, a ping.
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
ANTHROPIC_EVENTS = [
    SSEEvent("message_start", b'{"type":"message_start"}'),
    SSEEvent("ping", b'{"type": "ping"}'),
    SSEEvent("content_block_delta", b'{"type":"content_block_delta","index":0}'),
    SSEEvent("message_stop", b'{"type":"message_stop"}'),
]


def feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    p = SSEParser()
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    out.extend(p.close())
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(set(c for c in cuts if 0 < c < len(data)))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def test_openai_data_only_frames_and_done():
    stream = b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'
    assert feed_all([stream]) == [SSEEvent(None, b'{"a":1}'), SSEEvent(None, b'{"b":2}'), SSEEvent(None, b"[DONE]")]


def test_named_events():
    assert feed_all([ANTHROPIC_STREAM]) == ANTHROPIC_EVENTS


def test_every_byte_split_gives_the_same_events():
    for cut in range(1, len(ANTHROPIC_STREAM)):
        assert feed_all([ANTHROPIC_STREAM[:cut], ANTHROPIC_STREAM[cut:]]) == ANTHROPIC_EVENTS, cut


def test_one_byte_at_a_time():
    assert feed_all([bytes([b]) for b in ANTHROPIC_STREAM]) == ANTHROPIC_EVENTS


def test_crlf_line_endings_split_anywhere():
    crlf = ANTHROPIC_STREAM.replace(b"\n", b"\r\n")
    assert feed_all([crlf]) == ANTHROPIC_EVENTS
    for cut in range(1, len(crlf)):
        assert feed_all([crlf[:cut], crlf[cut:]]) == ANTHROPIC_EVENTS, cut
    assert feed_all([bytes([b]) for b in crlf]) == ANTHROPIC_EVENTS


def test_lone_cr_line_endings():
    assert feed_all([ANTHROPIC_STREAM.replace(b"\n", b"\r")]) == ANTHROPIC_EVENTS


def test_multi_line_data_joined_with_newline():
    assert feed_all([b"data: line one\ndata: line two\ndata:\n\n"]) == [SSEEvent(None, b"line one\nline two\n")]


def test_comments_and_keepalives_are_not_events():
    stream = b": ping\n\n:\n\ndata: {\"x\":1}\n: inline comment\n\n: OPENROUTER PROCESSING\n\n"
    assert feed_all([stream]) == [SSEEvent(None, b'{"x":1}')]


def test_field_without_space_id_retry_and_unknown_fields_ignored():
    stream = b"id: 7\nretry: 1000\nevent:delta\nfoo: bar\ndata:{\"x\":1}\n\n"
    assert feed_all([stream]) == [SSEEvent("delta", b'{"x":1}')]


def test_event_without_data_is_not_dispatched():
    assert feed_all([b"event: ping\n\n"]) == []


def test_extra_blank_lines_between_events():
    assert feed_all([b"data: 1\n\n\n\ndata: 2\n\n"]) == [SSEEvent(None, b"1"), SSEEvent(None, b"2")]


def test_bom_is_dropped_even_when_split():
    stream = b"\xef\xbb\xbfdata: 1\n\n"
    assert feed_all([stream]) == [SSEEvent(None, b"1")]
    assert feed_all([b"\xef", b"\xbb", b"\xbfdata: 1\n\n"]) == [SSEEvent(None, b"1")]


def test_close_dispatches_complete_last_event_without_blank_line():
    p = SSEParser()
    assert p.feed(b"data: 1\n\ndata: [DONE]\n") == [SSEEvent(None, b"1")]
    assert p.pending == len(b"data: [DONE]\n")
    assert p.close() == [SSEEvent(None, b"[DONE]")]


def test_close_drops_half_received_line():
    p = SSEParser()
    p.feed(b'data: {"trunc')
    assert p.close() == []


def test_empty_chunks_are_harmless():
    p = SSEParser()
    assert p.feed(b"") == []
    assert p.feed(b"data: 1\n") == []
    assert p.feed(b"") == []
    assert p.feed(b"\n") == [SSEEvent(None, b"1")]


def test_encoder_frames():
    assert sse(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse(b'{"type":"ping"}', "ping") == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert sse(b"a\nb") == b"data: a\ndata: b\n\n"
    assert feed_all([sse(b"a\r\nb", "x")]) == [SSEEvent("x", b"a\nb")]


def test_encoder_output_parses_with_the_anthropic_sdk_decoder():
    frames = sse(b'{"type":"message_stop"}', "message_stop") + sse(b"[DONE]")
    events = list(AnthropicSSEDecoder().iter_bytes(iter([frames])))
    assert [(e.event, e.data) for e in events] == [("message_stop", '{"type":"message_stop"}'), (None, "[DONE]")]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["a", "message_delta", "error"])),
                              st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b)),
                    max_size=8),
    seed=st.integers(0, 2**32),
    crlf=st.booleans(),
)
def test_roundtrip_any_chunking(events, seed, crlf):
    stream = b"".join(sse(data, name) for name, data in events)
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    rnd = random.Random(seed)
    chunks = split_at(stream, [rnd.randrange(1, max(len(stream), 2)) for _ in range(rnd.randrange(0, 12))])
    got = feed_all(chunks)
    assert got == [SSEEvent(name, data) for name, data in events]


def test_large_event_in_many_chunks_is_linear_enough():
    big = b"data: " + b"x" * 200_000 + b"\n\n"
    chunks = [big[i:i + 100] for i in range(0, len(big), 100)]
    got = feed_all(chunks)
    assert len(got) == 1 and len(got[0].data) == 200_000


@pytest.mark.parametrize("stream", [b"data: 1\n\n", b"data: 1\r\n\r\n", b"data: 1\r\r"])
def test_separator_styles(stream):
    assert feed_all([stream]) == [SSEEvent(None, b"1")]
