"""Between a canonical stream and a canonical response, both ways.

`ResponseAssembler` builds a `ChatResponse` from stream events (for the cache and for usage of abandoned
streams); `events_from_response` replays a stored response as a stream (cache hits on streaming requests).
"""

from __future__ import annotations

from app.canonical import (
    BlockStart,
    BlockStop,
    ChatResponse,
    MessageEnd,
    MessageStart,
    Part,
    StopReason,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    Usage,
)


class ResponseAssembler:
    """Feed every event of one stream; `response()` once `done`."""

    __slots__ = ("id", "model", "usage", "stop_reason", "done", "_blocks", "_order", "output_chars")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.usage = Usage()
        self.stop_reason: StopReason | None = None
        self.done = False
        self._blocks: dict[int, list] = {}  # index -> [kind, text parts list, tool id, tool name, signature]
        self._order: list[int] = []
        self.output_chars = 0  # characters of output seen, for estimates when a stream is cut short

    def add(self, ev: StreamEvent) -> None:
        t = type(ev)
        if t is TextDelta:
            b = self._blocks.get(ev.index)  # type: ignore[union-attr]
            if b is None:
                b = self._block(ev.index, "text")  # type: ignore[union-attr]
            b[1].append(ev.text)  # type: ignore[union-attr]
            self.output_chars += len(ev.text)  # type: ignore[union-attr]
        elif t is ToolArgsDelta:
            self._block(ev.index, "tool_call")[1].append(ev.partial_json)  # type: ignore[union-attr]
            self.output_chars += len(ev.partial_json)  # type: ignore[union-attr]
        elif t is ThinkingDelta:
            b = self._block(ev.index, "thinking")  # type: ignore[union-attr]
            b[1].append(ev.text)  # type: ignore[union-attr]
            self.output_chars += len(ev.text)  # type: ignore[union-attr]
            if ev.signature:  # type: ignore[union-attr]
                b[4] = (b[4] or "") + ev.signature  # type: ignore[union-attr]
        elif t is BlockStart:
            b = self._block(ev.index, ev.kind)  # type: ignore[union-attr]
            b[2] = ev.tool_call_id  # type: ignore[union-attr]
            b[3] = ev.tool_name  # type: ignore[union-attr]
        elif t is MessageStart:
            self.id = ev.id  # type: ignore[union-attr]
            self.model = ev.model  # type: ignore[union-attr]
            self.usage.merge(ev.usage)  # type: ignore[union-attr]
        elif t is MessageEnd:
            self.stop_reason = ev.stop_reason  # type: ignore[union-attr]
            self.usage.merge(ev.usage)  # type: ignore[union-attr]
            self.done = True
        elif t is BlockStop:
            pass

    def _block(self, index: int, kind: str) -> list:
        b = self._blocks.get(index)
        if b is None:
            b = self._blocks[index] = [kind, [], None, None, None]
            self._order.append(index)
        return b

    def response(self) -> ChatResponse:
        parts: list[Part] = []
        for i in self._order:
            kind, chunks, tool_id, tool_name, signature = self._blocks[i]
            text = "".join(chunks)
            if kind == "text":
                parts.append(TextPart(text))
            elif kind == "tool_call":
                parts.append(ToolCallPart(id=tool_id or f"call_{i}", name=tool_name or "", arguments=text or "{}"))
            else:
                parts.append(ThinkingPart(text, signature=signature))
        return ChatResponse(id=self.id, model=self.model, parts=parts,
                            stop_reason=self.stop_reason or StopReason.END_TURN, usage=self.usage)


def events_from_response(resp: ChatResponse, *, text_chunk: int = 0) -> list[StreamEvent]:
    """The stream that would have produced `resp`. `text_chunk` > 0 splits text into pieces of that size."""
    out: list[StreamEvent] = [MessageStart(id=resp.id, model=resp.model, usage=Usage(
        input_tokens=resp.usage.input_tokens, cache_read_tokens=resp.usage.cache_read_tokens,
        cache_write_tokens=resp.usage.cache_write_tokens))]
    for i, part in enumerate(p for p in resp.parts if isinstance(p, (TextPart, ToolCallPart, ThinkingPart))):
        if isinstance(part, TextPart):
            out.append(BlockStart(i, "text"))
            text = part.text
            step = text_chunk or max(len(text), 1)
            for k in range(0, len(text), step):
                out.append(TextDelta(i, text[k:k + step]))
        elif isinstance(part, ToolCallPart):
            out.append(BlockStart(i, "tool_call", tool_call_id=part.id, tool_name=part.name))
            out.append(ToolArgsDelta(i, part.arguments))
        else:
            out.append(BlockStart(i, "thinking"))
            out.append(ThinkingDelta(i, part.text, signature=part.signature))
        out.append(BlockStop(i))
    out.append(MessageEnd(stop_reason=resp.stop_reason, usage=resp.usage))
    return out
