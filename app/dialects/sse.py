"""Server-sent events: an incremental parser for upstream streams and the encoder for client streams.

Follows the WHATWG `text/event-stream` rules that OpenAI and Anthropic streams rely on: events are separated
by a blank line; CRLF, LF and lone CR all end a line; `data:` lines of one event are joined with "\\n";
`event:` names the event; lines starting with ":" are comments (keep-alives such as `: ping`); `id:`,
`retry:` and unknown fields are ignored; an event with no `data` line is not dispatched.

Speed: when every complete event in the buffer is the common single `data: ...` line (OpenAI's streams), the
data of all of them comes from one `split` and one newline count, with no Python step per event; otherwise
the buffer is split on b"\\n\\n" and only events that are not a single `data:` line have their lines walked.
`feed_data` skips building `SSEEvent`s for decoders that never look at event names.
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event: the `event:` name (None when absent) and the joined `data` bytes."""

    event: str | None
    data: bytes


class SSEParser:
    """Feed raw bytes in any chunking; get complete events back.

        parser = SSEParser()
        for chunk in body: events = parser.feed(chunk)
        events = parser.close()   # at end of stream
    """

    __slots__ = ("_buf", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._take(chunk)
        if buf is None:
            return []
        datas = self._fast(buf)
        if datas is not None:
            return [SSEEvent(None, d) for d in datas]
        return self._blocks(buf)

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """Like `feed`, but only the `data` of each event (the `event:` names are dropped)."""
        buf = self._take(chunk)
        if buf is None:
            return []
        datas = self._fast(buf)
        if datas is not None:
            return datas
        return [ev.data for ev in self._blocks(buf)]

    def _take(self, chunk: bytes) -> bytes | None:
        """The buffer with `chunk` added, when it holds at least one complete event (else it is kept)."""
        if not chunk:
            return None
        if not self._started:  # drop a UTF-8 BOM at the very start (it may itself arrive split)
            head = self._buf + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._buf = head
                return None
            self._started = True
            self._buf = b""
            chunk = head[3:] if head.startswith(_BOM) else head
        held = self._buf
        if held.endswith(b"\r"):  # a CR left by the last chunk ends a line, alone or as half a CRLF
            held = held[:-1] + b"\n"
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            chunk = _normalise(chunk)
        buf = held + chunk if held else chunk
        # Only the new bytes (and the two before them) can complete a separator: no rescans.
        if buf.find(b"\n\n", max(len(held) - 2, 0)) < 0:
            self._buf = buf
            return None
        return buf

    def _fast(self, buf: bytes) -> list[bytes] | None:
        """The data of every complete event when each is exactly one `data: ` line, else None: split on
        "\\n\\ndata: ", that holds when no newline is left in the pieces (one memchr over their join)."""
        if not buf.startswith(b"data: "):
            return None
        cut = buf.rfind(b"\n\n")
        datas = buf[6:cut].split(b"\n\ndata: ")
        if b"\n" in b"".join(datas):
            return None
        self._buf = buf[cut + 2:]
        return datas

    def _blocks(self, buf: bytes) -> list[SSEEvent]:
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        out = []
        for block in blocks:
            ev = _parse_block(block)
            if ev is not None:
                out.append(ev)
        return out

    def close(self) -> list[SSEEvent]:
        """Events left at end of stream. A last event whose lines are complete (it ends with a newline)
        is dispatched even without the closing blank line; a half-received line is dropped."""
        buf, self._buf = self._buf, b""
        if buf.endswith(b"\r"):
            buf = buf[:-1] + b"\n"
        if not buf.endswith(b"\n"):
            return []
        ev = _parse_block(buf)
        return [ev] if ev is not None else []

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the end of an event."""
        return len(self._buf)


def _normalise(buf: bytes) -> bytes:
    """CRLF and lone CR to LF, keeping a trailing CR (it may be the first half of a CRLF)."""
    tail = buf.endswith(b"\r")
    if tail:
        buf = buf[:-1]
    buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return buf + b"\r" if tail else buf


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case: one data line
        return SSEEvent(None, block[6:])
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # blank, or ":" comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(event, data[0] if len(data) == 1 else b"\n".join(data))


_EVENT_LINES: dict[str, bytes] = {}


def sse(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame: optional `event: <name>` line, the data, and the blank line that ends the event.
    Data holding newlines (never the case for orjson output) is split into several `data:` lines."""
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    if event is None:
        return b"data: " + data + b"\n\n"
    head = _EVENT_LINES.get(event)
    if head is None:
        head = _EVENT_LINES.setdefault(event, b"event: " + event.encode() + b"\ndata: ")
    return head + data + b"\n\n"
