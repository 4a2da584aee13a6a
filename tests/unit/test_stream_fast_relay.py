"""The pass-through relay: the usage-only chunk Tiergate asked for is taken out (only it, in any chunking),
registered keys are masked, and the assembler still sees the whole answer when the decoder merges text."""

from __future__ import annotations

import orjson
import pytest

from app.canonical import ChatRequest, Dialect, Message, TextPart
from app.dialects import openai_chat as oc
from app.secrets.redact import forget_registered_secrets, register_secret
from app.server.relay import StreamRelay

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def frame(obj: dict, *, spaced: bool = False) -> bytes:
    data = orjson.dumps(obj)
    if spaced:  # how Python's json module writes it
        data = data.replace(b'":', b'": ').replace(b',"', b', "')
    return b"data: " + data + b"\n\n"


def chunk(delta: dict, finish: str | None = None, *, spaced: bool = False) -> bytes:
    return frame({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None},
                 spaced=spaced)


def stream(*, spaced: bool = False, text: str = "w") -> tuple[bytes, bytes]:
    """(what the upstream sends with include_usage, what a client that did not ask for usage must get)."""
    body = (chunk({"role": "assistant", "content": ""}, spaced=spaced)
            + b"".join(chunk({"content": f"{text}{i} "}, spaced=spaced) for i in range(5))
            + chunk({}, "stop", spaced=spaced))
    usage = frame({**HEAD, "choices": [], "usage": USAGE}, spaced=spaced)
    if spaced:
        usage = usage.replace(b"[]", b"[ ]")
    return body + usage + b"data: [DONE]\n\n", body + b"data: [DONE]\n\n"


def req(include_usage: bool) -> ChatRequest:
    return ChatRequest(model="coder", messages=[Message("user", [TextPart("hi")])], stream=True,
                       include_usage=include_usage, dialect=Dialect.OPENAI_CHAT, raw={"model": "coder"})


def relay(chunks: list[bytes], include_usage: bool = False) -> tuple[bytes, StreamRelay]:
    r = StreamRelay(oc, req(include_usage), response_id="x", passthrough=True)
    d = oc.relay_stream_decoder()
    out = [r.process(c, d.feed(c)) for c in chunks] + [r.process(b"", d.close()), r.flush()]
    return b"".join(out), r


@pytest.mark.parametrize("spaced", [False, True])
def test_the_usage_chunk_is_stripped_in_any_chunking(spaced):
    upstream, expected = stream(spaced=spaced)
    assert relay([upstream])[0] == expected
    for cut in range(1, len(upstream)):
        out, r = relay([upstream[:cut], upstream[cut:]])
        assert out == expected, cut
        assert r.assembler.usage.output_tokens == 5 and r.assembler.done


def test_a_client_that_asked_for_usage_gets_every_byte():
    upstream, _ = stream()
    for cut in (1, 100, len(upstream) - 3):
        assert relay([upstream[:cut], upstream[cut:]], include_usage=True)[0] == upstream


def test_text_holding_brackets_and_the_word_usage_is_kept():
    upstream, expected = stream(text='"usage" [] "choices":[] ')
    assert relay([upstream])[0] == expected


def test_registered_keys_are_masked_in_relayed_bytes():
    key = "sk-relay-test-0123456789abcdef"
    register_secret(key)
    try:
        upstream, expected = stream(text=f"echo {key} ")
        out, _ = relay([upstream])
        assert key.encode() not in out
        assert out == expected.replace(key.encode(), b"[REDACTED]")
    finally:
        forget_registered_secrets()


def test_the_assembler_gets_the_whole_answer_from_merged_events():
    upstream, _ = stream()
    first = upstream.index(b"\n\n") + 2
    _, r = relay([upstream[:first], upstream[first:]])
    resp = r.assembler.response()
    assert [p.text for p in resp.parts] == ["w0 w1 w2 w3 w4 "]
    assert r.assembler.output_chars == len("w0 w1 w2 w3 w4 ")
    assert (resp.id, resp.model, resp.usage.input_tokens, resp.usage.output_tokens) == ("chatcmpl-1", "gpt-4o-mini", 12, 5)
