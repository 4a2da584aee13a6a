"""What a fake upstream answers: scripted `Reply`s, or a deterministic default.

A test queues replies per fake; each chat request (chat completions, responses, messages) takes the next one:

    fake.replies.append(Reply(text="Sure.", tool_calls=[("get_weather", '{"city": "Paris"}')],
                              cache_read_tokens=1000, chunks=4))

Without a queued reply the fake answers the default: the text of the prompt's last user turn, echoed back
(`DEFAULT_TEXT` when that turn has no text). What was actually served is appended to `fake.served` as a `Turn`
(final text, tool-call ids, stop reason and every token figure), so a test can compare what the proxy recorded
with what the upstream reported.

Token figures are deterministic so tests can assert exact numbers:

    count_tokens(s)          = len(s) // 4 + 1
    input tokens (default)   = count_tokens("\\n".join(prompt texts))
    reasoning (default)      = count_tokens(thinking) if thinking else 0
    output tokens (default)  = (count_tokens(text) if text else 0) + Σ count_tokens(arguments) + reasoning

"Prompt texts" are every text string of the prompt in order: the system prompt / instructions first, then each
message's text parts and tool-result texts, in every role (images, tool-call arguments and tool definitions do
not count). A translation that keeps the texts therefore gets the same figure in every dialect: compute the
expectation with `prompt_tokens(*texts)`.

Reply figures follow the canonical (Anthropic) accounting: `input_tokens` excludes cache reads and writes. The
OpenAI fake reports `prompt_tokens = input + cache_read + cache_write` with `cached_tokens = cache_read`; the
Anthropic fake reports the three separately. `output_tokens` includes reasoning tokens in both.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TEXT = "Hello! How can I help you today?"

# Stop reasons: the canonical (Anthropic) spelling; OpenAI spellings are accepted in Reply.stop_reason too.
_FROM_OPENAI = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
OPENAI_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                 "tool_use": "tool_calls", "content_filter": "content_filter", "refusal": "content_filter",
                 "model_context_window_exceeded": "length"}
ANTHROPIC_STOP = {"content_filter": "refusal"}  # the rest are Anthropic's own names


def count_tokens(text: str) -> int:
    """The fakes' tokenizer: one token per four characters, plus one."""
    return len(text) // 4 + 1


def prompt_tokens(*texts: str) -> int:
    """Default input tokens of a prompt whose text strings are `texts` (system first)."""
    return count_tokens("\n".join(texts))


@dataclass(slots=True)
class Reply:
    """One scripted answer. Every field is optional; `None` means "derive it" (see the module docstring)."""

    text: str | None = None  # None: echo of the last user turn, or "" when tool_calls are given
    tool_calls: list[tuple[str, ...]] = field(default_factory=list)  # (name, arguments_json[, id])
    thinking: str | None = None  # reasoning text (Anthropic thinking block / Responses reasoning summary)
    stop_reason: str | None = None  # end_turn|max_tokens|tool_use|stop_sequence|refusal|... or stop|length|tool_calls
    stop_sequence: str | None = None  # Anthropic's stop_sequence when stop_reason is "stop_sequence"
    input_tokens: int | None = None  # prompt tokens at the base rate (cache reads/writes excluded)
    output_tokens: int | None = None  # all output tokens, reasoning included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int | None = None
    chunks: int = 3  # pieces each text / thinking / arguments string is streamed in
    delay: float = 0.0  # seconds between stream events (0: the whole stream in one write)
    model: str | None = None  # model named in the answer (None: the request's model)
    error_after: int | None = None  # streams: after this many content deltas, the dialect's in-stream error
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(slots=True)
class Turn:
    """A reply as served, every figure resolved. Appended to `fake.served`."""

    path: str
    stream: bool
    model: str
    text: str
    thinking: str | None
    signature: str | None  # Anthropic thinking signature
    tool_calls: list[ToolCall]
    stop_reason: str  # canonical spelling
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    chunks: int
    delay: float
    error_after: int | None
    headers: dict[str, str]

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens, as OpenAI counts them."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


class Ids:
    """Realistic, reproducible ids (seeded per fake, so a test sees the same ids on every run)."""

    _B62 = string.digits + string.ascii_letters
    _ALNUM = string.ascii_letters + string.digits

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def hex(self, nbytes: int) -> str:
        return f"{self._rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def b62(self, n: int) -> str:
        return "".join(self._rng.choices(self._B62, k=n))

    def alnum(self, n: int) -> str:
        return "".join(self._rng.choices(self._ALNUM, k=n))


def thinking_signature(thinking: str) -> str:
    """A stable, realistic-looking signature for a thinking block."""
    return "Eq" + base64.b64encode(hashlib.sha256(thinking.encode()).digest() * 3).decode()


def split(text: str, pieces: int) -> list[str]:
    """`text` in up to `pieces` consecutive non-empty parts ("" gives no part)."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def resolve(reply: Reply | None, *, path: str, stream: bool, model: str, texts: list[str], last_user: str,
            tool_id: Any) -> Turn:
    """Fill in every derived figure of `reply` for a request whose prompt texts are `texts`.
    `tool_id` is a zero-argument callable giving a fresh tool-call id in the dialect's format."""
    r = reply or Reply()
    if r.text is not None:
        text = r.text
    elif r.tool_calls:
        text = ""
    else:
        text = last_user or DEFAULT_TEXT
    calls = [ToolCall(id=c[2] if len(c) > 2 else tool_id(), name=c[0], arguments=c[1]) for c in r.tool_calls]
    stop = r.stop_reason or ("tool_use" if calls else "end_turn")
    stop = _FROM_OPENAI.get(stop, stop)
    reasoning = r.reasoning_tokens if r.reasoning_tokens is not None else (
        count_tokens(r.thinking) if r.thinking else 0)
    output = r.output_tokens if r.output_tokens is not None else (
        (count_tokens(text) if text else 0) + sum(count_tokens(c.arguments) for c in calls) + reasoning)
    return Turn(
        path=path, stream=stream, model=r.model or model, text=text, thinking=r.thinking,
        signature=thinking_signature(r.thinking) if r.thinking is not None else None, tool_calls=calls,
        stop_reason=stop, stop_sequence=r.stop_sequence,
        input_tokens=r.input_tokens if r.input_tokens is not None else prompt_tokens(*texts),
        output_tokens=output, cache_read_tokens=r.cache_read_tokens, cache_write_tokens=r.cache_write_tokens,
        reasoning_tokens=reasoning, chunks=max(1, r.chunks), delay=r.delay, error_after=r.error_after,
        headers=r.headers,
    )


# ------------------------------------------------------------------------------ prompt text extraction
def _part_texts(content: Any, out: list[str]) -> None:
    """Text of a content value: a string, or a list of parts with a text / nested content."""
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif kind == "tool_result":
                _part_texts(part.get("content"), out)


def openai_chat_texts(body: dict[str, Any]) -> tuple[list[str], str]:
    """(prompt texts, last user turn's text) of a Chat Completions body."""
    texts: list[str] = []
    turn: list[str] = []
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        mine: list[str] = []
        _part_texts(msg.get("content"), mine)
        texts.extend(mine)
        if msg.get("role") in ("user", "tool", "function"):
            turn.extend(mine)
        else:
            turn = []
    return texts, "\n".join(turn)


def anthropic_texts(body: dict[str, Any]) -> tuple[list[str], str]:
    """(prompt texts, last user turn's text) of a Messages body."""
    texts: list[str] = []
    _part_texts(body.get("system"), texts)
    turn: list[str] = []
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        mine: list[str] = []
        _part_texts(msg.get("content"), mine)
        texts.extend(mine)
        turn = turn + mine if msg.get("role") == "user" else []
    return texts, "\n".join(turn)


def responses_texts(body: dict[str, Any]) -> tuple[list[str], str]:
    """(prompt texts, last user turn's text) of a Responses body."""
    texts: list[str] = []
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    items = body.get("input")
    if isinstance(items, str):
        texts.append(items)
        return texts, items
    turn: list[str] = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        mine: list[str] = []
        kind = item.get("type", "message")
        if kind == "message":
            _part_texts(item.get("content"), mine)
            user_side = item.get("role") == "user"
        elif kind == "function_call_output":
            _part_texts(item.get("output"), mine)
            user_side = True
        else:
            user_side = False
        texts.extend(mine)
        turn = turn + mine if user_side else []
    return texts, "\n".join(turn)
