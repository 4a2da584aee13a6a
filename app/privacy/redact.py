"""`action: redact`: mask what the detectors found before a cloud call, restore it in the answer.

    redaction = Redactor(policy.scanner).redact(req)      # raises RedactionFailed: keep the request local
    upstream_req = redaction.request                      # masked copy; raw cleared (no pass-through)
    resp = redaction.restore_response(resp)               # non-streaming
    restorer = redaction.stream_restorer()                # streaming
    for event in upstream_events: for out in restorer.feed(event): send(out)

Every span a detector marks in every text-bearing place (system, text parts, decoded tool-call arguments,
tool results, documents, stop sequences) becomes a placeholder `«TG_SECRET_1»`, `«TG_EMAIL_2»`… The same
value gets the same placeholder everywhere in the request, numbered in order of first appearance, so a
conversation that grows turn by turn keeps its placeholders (and its upstream prompt-cache prefix).

The masked request is scanned again; anything still found raises `RedactionFailed`. The raw body is
cleared so a same-dialect pass-through can never forward the unmasked original, and the answer is
rendered from canonical events, which `restore_*` fix up: text and tool-call arguments (JSON-escaped, also
when the model wrote the placeholder as `\\u00ab…\\u00bb`), including placeholders split across stream
chunks. Thinking is not restored: it is sent back with its signature on the next turn and must stay
byte-identical to what the model produced.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson

from app.canonical import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    DocumentPart,
    Message,
    MessageEnd,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolResultPart,
)
from app.errors import TiergateError
from app.privacy.detectors import Scanner
from app.privacy.extract import parse_arguments, request_texts

_PLACEHOLDER = re.compile(r"«TG_[A-Z]+_[0-9]+»")
_PLACEHOLDER_JSON = re.compile(r"(?:«|\\u00[aA][bB])(TG_[A-Z]+_[0-9]+)(?:»|\\u00[bB][bB])")
_MAX_PLACEHOLDER = 40  # longest placeholder as text, escaped form included
_ESCAPED_OPEN = "\\u00ab"


class RedactionFailed(TiergateError):
    """The request cannot be masked safely; the caller must keep it local."""

    status = 403
    code = "privacy_refused"
    title = "Kept on this machine"


def _kind(rule: str) -> str:
    if rule.startswith("secret."):
        return "SECRET"
    if rule.startswith("pii.national_id"):
        return "ID"
    if rule.startswith("pii."):
        return {"pii.email": "EMAIL", "pii.phone": "PHONE", "pii.payment_card": "CARD", "pii.iban": "IBAN"}.get(
            rule, "PII")
    return "TERM"


class _Masker:
    def __init__(self, scanner: Scanner):
        self.scanner = scanner
        self.by_value: dict[str, str] = {}
        self.by_placeholder: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def mask(self, text: str) -> str:
        if not text:
            return text
        hits = sorted(self.scanner.text_hits(text), key=lambda h: (h.start, -h.end))
        if not hits:
            return text
        for h in hits:
            if not h.redactable:
                raise RedactionFailed(f"The request matched {h.rule}, which cannot be masked; it stays local.")
        merged: list[list[Any]] = []  # [start, end, rule] with overlaps merged
        for h in hits:
            if merged and h.start < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], h.end)
            else:
                merged.append([h.start, h.end, h.rule])
        out = []
        pos = 0
        for start, end, rule in merged:
            out.append(text[pos:start])
            out.append(self._placeholder(text[start:end], rule))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _placeholder(self, value: str, rule: str) -> str:
        existing = self.by_value.get(value)
        if existing is not None:
            return existing
        kind = _kind(rule)
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        ph = f"«TG_{kind}_{n}»"
        self.by_value[value] = ph
        self.by_placeholder[ph] = value
        return ph

    def mask_json(self, value: Any) -> Any:
        """Every string in a JSON-like value masked (keys kept; base64 payloads untouched)."""
        if isinstance(value, str):
            return value if value[:5].lower() == "data:" else self.mask(value)
        if isinstance(value, dict):
            binary = value.get("type") == "base64"
            return {k: (v if binary and k == "data" else self.mask_json(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask_json(v) for v in value]
        return value


@dataclasses.dataclass(slots=True)
class Redaction:
    request: ChatRequest  # the masked copy to send upstream
    mapping: dict[str, str]  # placeholder -> original (never log it)

    @property
    def count(self) -> int:
        return len(self.mapping)

    def restore_text(self, text: str) -> str:
        if "«" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.mapping.get(m.group(0), m.group(0)), text)

    def restore_json(self, text: str) -> str:
        """Tool-call arguments (JSON text): originals inserted JSON-escaped."""
        if "«" not in text and "\\u00" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            original = self.mapping.get(f"«{m.group(1)}»")
            return m.group(0) if original is None else orjson.dumps(original).decode()[1:-1]

        return _PLACEHOLDER_JSON.sub(sub, text)

    def restore_response(self, resp: ChatResponse) -> ChatResponse:
        parts: list[Any] = []
        for part in resp.parts:
            if isinstance(part, TextPart):
                parts.append(dataclasses.replace(part, text=self.restore_text(part.text)))
            elif isinstance(part, ToolCallPart):
                parts.append(dataclasses.replace(part, arguments=self.restore_json(part.arguments)))
            else:
                parts.append(part)
        return dataclasses.replace(resp, parts=parts)

    def stream_restorer(self) -> "StreamRestorer":
        return StreamRestorer(self)


class StreamRestorer:
    """Restores placeholders in TextDelta / ToolArgsDelta events. Text that may be the start of a
    placeholder is held back until the next delta of its block, its BlockStop or MessageEnd."""

    def __init__(self, redaction: Redaction):
        self.redaction = redaction
        self._pending: dict[int, tuple[type, str]] = {}  # block index -> (delta class, held text)

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, (TextDelta, ToolArgsDelta)):
            kind = type(event)
            text = event.text if kind is TextDelta else event.partial_json
            held = self._pending.pop(event.index, (kind, ""))[1]
            ready, keep = _split_safe(held + text, json=kind is ToolArgsDelta)
            if keep:
                self._pending[event.index] = (kind, keep)
            return [self._delta(kind, event.index, ready)] if ready else []
        if isinstance(event, BlockStop):
            return [*self._flush(event.index), event]
        if isinstance(event, MessageEnd):
            out: list[StreamEvent] = []
            for index in list(self._pending):
                out.extend(self._flush(index))
            return [*out, event]
        return [event]

    def _flush(self, index: int) -> list[StreamEvent]:
        item = self._pending.pop(index, None)
        if item is None or not item[1]:
            return []
        return [self._delta(item[0], index, item[1])]

    def _delta(self, kind: type, index: int, text: str) -> StreamEvent:
        if kind is TextDelta:
            return TextDelta(index, self.redaction.restore_text(text))
        return ToolArgsDelta(index, self.redaction.restore_json(text))


def _split_safe(text: str, *, json: bool) -> tuple[str, str]:
    """(text that can be restored and sent now, tail that may be an unfinished placeholder)."""
    cut = len(text)
    window_start = max(0, len(text) - _MAX_PLACEHOLDER)
    opener = text.rfind("«", window_start)
    if opener != -1 and text.find("»", opener) == -1:
        cut = opener
    if json:
        esc = text.rfind(_ESCAPED_OPEN, window_start)
        if esc != -1 and text.find("\\u00bb", esc) == -1 and text.find("\\u00BB", esc) == -1 \
                and text.find("»", esc) == -1:
            cut = min(cut, esc)
        for k in range(min(len(_ESCAPED_OPEN) - 1, len(text)), 0, -1):  # "\\u0" at the very end
            if _ESCAPED_OPEN.startswith(text[-k:]) or _ESCAPED_OPEN.upper().startswith(text[-k:].upper()):
                cut = min(cut, len(text) - k)
                break
    return text[:cut], text[cut:]


class Redactor:
    def __init__(self, scanner: Scanner, *, include_tool_specs: bool = False):
        self.scanner = scanner
        self.include_tool_specs = include_tool_specs

    def redact(self, req: ChatRequest) -> Redaction:
        """A masked copy of `req`. Raises RedactionFailed when something cannot be masked or is still
        found afterwards (a signed thinking block holding a secret, a user path rule, an image URL)."""
        m = _Masker(self.scanner)
        system = [dataclasses.replace(p, text=m.mask(p.text)) for p in req.system]
        messages = [Message(msg.role, [self._part(p, m) for p in msg.parts]) for msg in req.messages]
        stop = [m.mask(s) for s in req.stop]
        tools = req.tools
        if self.include_tool_specs:
            tools = [dataclasses.replace(t, description=m.mask(t.description) if t.description else t.description,
                                         parameters=m.mask_json(t.parameters)) for t in req.tools]
        user = m.mask(req.user) if req.user else req.user  # the end-user id is forwarded upstream too
        masked = dataclasses.replace(req, system=system, messages=messages, stop=stop, tools=tools, user=user,
                                     raw={})
        leftover = self.scanner.first(request_texts(masked, include_tool_specs=self.include_tool_specs))
        if leftover is not None:
            raise RedactionFailed(f"After masking, {leftover.rule} still matched at {leftover.place}; "
                                  "the request stays local.")
        return Redaction(masked, dict(m.by_placeholder))

    def _part(self, part: Any, m: _Masker) -> Any:
        if isinstance(part, TextPart):
            return dataclasses.replace(part, text=m.mask(part.text))
        if isinstance(part, ToolCallPart):
            parsed = parse_arguments(part.arguments)
            if parsed is None:
                args = m.mask(part.arguments)
            else:
                masked = m.mask_json(parsed)
                args = part.arguments if masked == parsed else orjson.dumps(masked).decode()
            return dataclasses.replace(part, arguments=args)
        if isinstance(part, ToolResultPart):
            return dataclasses.replace(part, content=[self._part(c, m) for c in part.content])
        if isinstance(part, ThinkingPart):
            if part.text and any(True for _ in self.scanner.text_hits(part.text)):
                raise RedactionFailed("Sensitive content in model reasoning cannot be masked (it is signed); "
                                      "the request stays local.")
            return part
        if isinstance(part, DocumentPart):
            return DocumentPart(m.mask_json(part.raw))
        return part  # images: bytes are not scanned; a flagged image URL fails the re-scan
