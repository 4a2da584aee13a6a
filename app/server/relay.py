"""Turning upstream stream chunks into what the client receives.

One `StreamRelay` per streamed request. It always feeds the decoded canonical events to an assembler
(usage, the cache, estimates for streams cut short), and produces the client's bytes: the upstream's own
bytes when the dialects match (pass-through), else the client dialect's encoding of the events.
"""

from __future__ import annotations

import re
from types import ModuleType

from app.assembly import ResponseAssembler
from app.canonical import ChatRequest, Dialect, MessageEnd, StreamEvent
from app.errors import TiergateError
from app.secrets.redact import mask_known_secrets

_EMPTY_CHOICES = re.compile(rb'"choices" *: *\[ *\]')  # `"choices":[]`, spaces allowed


class StreamRelay:
    __slots__ = ("assembler", "encoder", "passthrough", "_strip_usage", "_pending", "finished")

    def __init__(self, dialect: ModuleType, req: ChatRequest, *, response_id: str, passthrough: bool):
        self.assembler = ResponseAssembler()
        self.passthrough = passthrough
        self.encoder = None if passthrough else dialect.StreamEncoder(req, response_id)
        # An OpenAI client that did not ask for usage must not get the usage chunk we asked for.
        self._strip_usage = passthrough and req.dialect is Dialect.OPENAI_CHAT and not req.include_usage
        self._pending = b""
        self.finished = False

    def process(self, chunk: bytes, events: list[StreamEvent]) -> bytes:
        """Bytes to send to the client for one upstream chunk and its decoded events."""
        add = self.assembler.add
        for ev in events:
            add(ev)
        if self.passthrough:
            # Relayed as the upstream sent them; a misbehaving upstream or gateway echoing our key in an
            # event must not hand it to the client. (A value split across two reads is not caught.)
            chunk = mask_known_secrets(chunk)
            return self._filter(chunk) if self._strip_usage else chunk
        encode = self.encoder.encode  # type: ignore[union-attr]
        out = b"".join([encode(ev) for ev in events]) if events else b""
        if events and type(events[-1]) is MessageEnd and not self.finished:
            self.finished = True
            out += self.encoder.finish()  # type: ignore[union-attr]
        return out

    def take(self, events: list[StreamEvent]) -> None:
        """Events decoded after their bytes were relayed (pass-through only: nothing to encode)."""
        add = self.assembler.add
        for ev in events:
            add(ev)

    def error(self, dialect: ModuleType, req: ChatRequest, err: TiergateError) -> bytes:
        """The in-stream error that ends a broken stream, in the client's dialect."""
        encoder = self.encoder or dialect.StreamEncoder(req, "error")
        return encoder.error(err)

    def _filter(self, chunk: bytes) -> bytes:
        """Complete frames of `chunk` (with what an earlier chunk left) minus the usage-only chunk."""
        data = self._pending + chunk if self._pending else chunk
        # The usage-only chunk is the frame holding both "usage" and `"choices":[]` (spaces allowed). Every
        # chunk holds "usage" (null) once usage was asked for, so the test is for the empty choices list.
        if b'"usage"' in data:
            # It ends the stream, so it is looked for from the end: compact JSON (OpenAI's) with one backward
            # byte search; spaced JSON with a regex, only when the read has `"choices"` followed by a space.
            first = data.rfind(b'"choices":[]')
            if first < 0 and (b'"choices": ' in data or b'"choices" ' in data):
                spaced = _EMPTY_CHOICES.search(data)
                first = spaced.start() if spaced is not None else -1
            if first >= 0:
                return self._drop_usage_chunks(data, first)
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return b""
        self._pending = data[cut + 2:]
        return data[:cut + 2]

    def _drop_usage_chunks(self, data: bytes, first: int) -> bytes:
        # Frames before the one holding `first` are kept as they are; only the rest is split into frames. The
        # cut must be a frame boundary of a split from the start: the end of a separator not preceded by a
        # newline (in a run of newlines a split pairs them from the left).
        cut = data.rfind(b"\n\n", 0, first) + 2
        if cut < 2 or (cut > 2 and data[cut - 3] == 0x0A):
            cut = 0
        frames = data[cut:].split(b"\n\n")
        self._pending = frames.pop()
        kept = [f for f in frames if not (b'"choices":[]' in f.replace(b" ", b"") and b'"usage"' in f)]
        return data[:cut] + b"".join([f + b"\n\n" for f in kept])

    def flush(self) -> bytes:
        """Whatever the filter still holds at the end of the stream."""
        out, self._pending = self._pending, b""
        return out
