"""A skimming OpenAI stream decoder (relayed streams whose answer is not cached) decodes only what usage and
the end of the message need, and gives the same usage, stop reason and end as a full decode, in any chunking;
the text it kept undecoded comes back from `unskim()` for estimates."""

from __future__ import annotations

import orjson
import pytest

from app.assembly import ResponseAssembler
from app.canonical import StopReason, TextDelta
from app.dialects import openai_chat
from app.errors import UpstreamServerError

HEAD = {"id": "chatcmpl-skim", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1"}


def frame(delta: dict | None, finish: str | None = None, usage: dict | None = None, *, spaced: bool = False,
          choices: bool = True) -> bytes:
    obj = {**HEAD, "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
           if choices else [], "usage": usage}
    data = orjson.dumps(obj)
    if spaced:
        data = data.replace(b'":', b'": ').replace(b',"', b', "')
    return b"data: " + data + b"\n\n"


TEXT = [f"tok{i} " for i in range(30)]
STREAM = (frame({"role": "assistant", "content": ""}) + b"".join(frame({"content": t}) for t in TEXT)
          + frame({}, "stop") + frame(None, usage={"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39},
                                      choices=False) + b"data: [DONE]\n\n")


def run(data: bytes, size: int, *, skim: bool) -> tuple[ResponseAssembler, openai_chat.StreamDecoder]:
    """As a relayed stream goes: the first frame decoded (the router's first events), then skimming from
    there on, the rest in reads of `size` bytes."""
    dec = openai_chat.relay_stream_decoder()
    asm = ResponseAssembler()
    head = data.index(b"\n\n") + 2
    for ev in dec.feed(data[:head]):
        asm.add(ev)
    if skim:
        dec.skim()
    for i in range(head, len(data), size):
        for ev in dec.feed(data[i:i + size]):
            asm.add(ev)
    for ev in dec.close():
        asm.add(ev)
    return asm, dec


@pytest.mark.parametrize("size", [7, 64, 333, 100_000])
def test_skimming_gives_the_same_usage_and_end_in_any_chunking(size):
    full, _ = run(STREAM, size, skim=False)
    skim, dec = run(STREAM, size, skim=True)
    assert (skim.done, skim.stop_reason, skim.usage) == (full.done, full.stop_reason, full.usage)
    assert full.done and full.stop_reason is StopReason.END_TURN and full.usage.output_tokens == 30
    assert skim.output_chars < full.output_chars  # text frames were kept, not decoded
    events = dec.unskim()
    assert [type(e) for e in events] == [TextDelta]
    assert skim.output_chars + len(events[0].text) == full.output_chars == len("".join(TEXT))


def test_spaced_json_frames_are_decoded_in_full():
    spaced = (frame({"role": "assistant", "content": ""}) + b"".join(frame({"content": t}, spaced=True) for t in TEXT)
              + frame({}, "length", spaced=True) + b"data: [DONE]\n\n")
    skim, dec = run(spaced, 100_000, skim=True)
    assert skim.done and skim.stop_reason is StopReason.MAX_TOKENS
    assert skim.output_chars == len("".join(TEXT)) and dec.unskim() == []


def test_an_error_frame_still_raises_while_skimming():
    dec = openai_chat.relay_stream_decoder()
    dec.feed(frame({"role": "assistant", "content": ""}))
    dec.skim()
    dec.feed(frame({"content": "a"}))
    with pytest.raises(UpstreamServerError):
        dec.feed(frame({"content": "b"}) + b'data: {"error":{"message":"boom","type":"server_error"}}\n\n')
    dec = openai_chat.relay_stream_decoder()
    dec.feed(frame({"role": "assistant", "content": ""}))
    dec.skim()
    with pytest.raises(UpstreamServerError):
        dec.feed(b'data: {"error":{"message":"boom","type":"server_error"}}\n\n')


def test_unskim_counts_reasoning_and_tool_arguments_too():
    dec = openai_chat.relay_stream_decoder()
    dec.feed(frame({"role": "assistant", "content": ""}))
    dec.skim()
    dec.feed(frame({"reasoning_content": "think"}) + frame({"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}))
    [ev] = dec.unskim()
    assert ev.text == 'think{"a":1}'
    assert dec.unskim() == []  # given once
