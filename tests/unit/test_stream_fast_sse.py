"""The SSE parser's shortcut for data-only streams (one `split` for a whole read) gives exactly the events of
the WHATWG rules, in any chunking; `feed_data` gives the same data as `feed`."""

from __future__ import annotations

import random

import pytest

from app.dialects.sse import SSEEvent, SSEParser


def reference(stream: bytes) -> list[SSEEvent]:
    """text/event-stream by the WHATWG rules, line by line, for a whole stream (what the parser must match)."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    complete, last = lines[:-1], lines[-1]  # a last line without its newline is dropped, with its event
    out, event, data = [], None, []
    for line in complete + ([b""] if not last else []):  # the end dispatches an event whose lines are complete
        if not line:
            if data:
                out.append(SSEEvent(event, b"\n".join(data)))
            event, data = None, []
            continue
        if line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
    return out


def parse(chunks: list[bytes]) -> tuple[list[SSEEvent], list[bytes]]:
    p, q = SSEParser(), SSEParser()
    events, datas = [], []
    for c in chunks:
        events += p.feed(c)
        datas += q.feed_data(c)
        assert p.pending == q.pending
    events += p.close()
    datas += [e.data for e in q.close()]
    return events, datas


def cut(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), min(n, len(data) - 1))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


PIECES = [b"data: ", b"data:", b"data: {\"a\":1}\n\n", b"data: [DONE]\n\n", b"\n", b"\n\n", b"\r\n", b"\r", b"x",
          b" ", b"event: e\n", b": ping\n\n", b"id: 7\n", b"\xef\xbb\xbf", b"data: data: y\n\n"]


def test_any_stream_in_any_chunking_gives_the_reference_events():
    rng = random.Random(7)
    for _ in range(20_000):
        stream = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        chunks = cut(stream, rng, rng.randint(0, 4))
        events, datas = parse(chunks)
        assert events == reference(stream), chunks
        assert datas == [e.data for e in events], chunks


def test_a_data_only_read_comes_out_whole():
    stream = b"".join(b"data: {\"n\":%d}\n\n" % i for i in range(50)) + b"data: [DONE]\n\n"
    p = SSEParser()
    assert p.feed_data(stream) == [b'{"n":%d}' % i for i in range(50)] + [b"[DONE]"]
    assert p.pending == 0
    # the same read after a partial frame held back, and with the next frame begun
    p = SSEParser()
    assert p.feed_data(b"data: {\"n\":") == []
    assert p.feed_data(b"0}\n\ndata: {\"n\":1}\n\ndata: {\"n") == [b'{"n":0}', b'{"n":1}']
    assert p.pending == len(b'data: {"n')
    assert p.feed_data(b'":2}\n\n') == [b'{"n":2}']


@pytest.mark.parametrize("stream,expected", [
    (b"data: a\ndata: b\n\ndata: c\n\n", [b"a\nb", b"c"]),  # two data lines: joined, not two events
    (b"data: a\n\n\ndata: b\n\n", [b"a", b"b"]),  # an extra blank line
    (b"data: a\n\n: ping\n\ndata: b\n\n", [b"a", b"b"]),  # a keep-alive between events
    (b"data: a\n\nevent: e\ndata: b\n\n", [b"a", b"b"]),  # a named event
    (b"data: a\n\ndata:b\n\n", [b"a", b"b"]),  # no space after the colon
    (b"data: a\r\n\r\ndata: b\r\n\r\n", [b"a", b"b"]),  # CRLF
    (b"data: \n\ndata: b\n\n", [b"", b"b"]),  # empty data is still an event
])
def test_reads_that_are_not_all_single_data_lines_take_the_general_path(stream, expected):
    p = SSEParser()
    assert p.feed_data(stream) == expected
    assert [e.data for e in SSEParser().feed(stream)] == expected


def test_event_names_are_kept_by_feed():
    stream = b"data: a\n\nevent: done\ndata: b\n\n"
    assert SSEParser().feed(stream) == [SSEEvent(None, b"a"), SSEEvent("done", b"b")]
