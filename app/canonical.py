"""The canonical request, response and stream-event model every dialect translates to and from.

Dialects (OpenAI Chat Completions, Anthropic Messages, OpenAI Responses, Ollama /api/chat) live at the
edges in `app.dialects`; everything between the server and the providers speaks these types.

The shape follows Anthropic's content blocks, the richest of the four: a message is a role plus a list of
parts, tool calls are parts of an assistant message and tool results are parts of a user message. OpenAI's
separate `tool` role messages become `ToolResultPart`s of a user turn when parsed and are split out again
when rendered.

Usage follows Anthropic's accounting: `input_tokens` are prompt tokens billed at the base rate, i.e. NOT
read from or written to a prompt cache. OpenAI's `prompt_tokens` includes `cached_tokens`; convert with
`Usage.from_openai` / `Usage.prompt_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Union


class Dialect(str, Enum):
    """A wire format Tiergate speaks, inbound (server) or outbound (provider)."""

    OPENAI_CHAT = "openai_chat"  # POST /v1/chat/completions
    ANTHROPIC = "anthropic"  # POST /v1/messages
    OPENAI_RESPONSES = "openai_responses"  # POST /v1/responses
    OLLAMA = "ollama"  # POST /api/chat (native)


Role = Literal["user", "assistant"]
_MISSING: Any = object()


# --------------------------------------------------------------------------------------------- parts
@dataclass(slots=True)
class TextPart:
    text: str
    cache_control: dict[str, Any] | None = None  # Anthropic prompt-caching marker, kept for Anthropic


@dataclass(slots=True)
class ImagePart:
    """An image: either inline base64 `data` with `media_type`, or a `url` (http(s) or data: URL)."""

    media_type: str | None = None
    data: str | None = None  # base64, no data: prefix
    url: str | None = None
    detail: str | None = None  # OpenAI's "low" | "high" | "auto"


@dataclass(slots=True)
class DocumentPart:
    """An Anthropic `document` block (PDF/text source). Passed to Anthropic as is; other upstreams get
    its text when it has any, else a placeholder line saying a document was omitted."""

    raw: dict[str, Any]


@dataclass(slots=True)
class ToolCallPart:
    """A tool invocation by the assistant. `arguments` is JSON text, exactly as the model produced it."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolResultPart:
    """The result of a tool call, sent back by the client in a user turn."""

    tool_call_id: str
    content: list["TextPart | ImagePart"]
    is_error: bool = False
    name: str | None = None  # tool name when the dialect carries it (Ollama's `tool_name`)


@dataclass(slots=True)
class ThinkingPart:
    """Model reasoning. `signature` / `redacted` are Anthropic's and only meaningful to Anthropic."""

    text: str
    signature: str | None = None
    redacted: str | None = None  # data of a `redacted_thinking` block


Part = Union[TextPart, ImagePart, DocumentPart, ToolCallPart, ToolResultPart, ThinkingPart]


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


# ------------------------------------------------------------------------------------------- request
@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None
    parameters: dict[str, Any]  # JSON schema of the arguments object


@dataclass(slots=True)
class ToolChoice:
    """`mode`: "auto" | "none" | "required" (any tool) | "tool" (the named one)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None
    parallel: bool | None = None  # parallel tool calls allowed (None: upstream default)


@dataclass(slots=True)
class ChatRequest:
    """One chat request, whatever dialect it arrived in."""

    model: str  # what the client asked for (tier, alias or concrete model)
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    response_format: dict[str, Any] | None = None  # OpenAI shape: {"type": "json_object"|"json_schema", ...}
    reasoning_effort: str | None = None  # "low" | "medium" | "high" when the client asked for reasoning
    thinking: dict[str, Any] | None = None  # Anthropic `thinking` object, kept for Anthropic upstreams
    stream: bool = False
    include_usage: bool = False  # the client asked for usage in the stream (OpenAI stream_options)
    user: str | None = None  # end-user id (OpenAI `user`, Anthropic metadata.user_id)
    dialect: Dialect = Dialect.OPENAI_CHAT  # inbound dialect
    raw: dict[str, Any] = field(default_factory=dict)  # parsed body as received, for same-dialect pass-through
    headers: dict[str, str] = field(default_factory=dict)  # dialect headers worth forwarding (anthropic-beta…)


# ------------------------------------------------------------------------------------------ response
class StopReason(str, Enum):
    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    TOOL_USE = "tool_use"
    STOP_SEQUENCE = "stop_sequence"
    CONTENT_FILTER = "content_filter"
    PAUSE = "pause_turn"
    REFUSAL = "refusal"


@dataclass(slots=True)
class Usage:
    """Token usage as the upstream reported it (never estimated unless `estimated` is set)."""

    input_tokens: int = 0  # prompt tokens at the base rate (not cache read/write)
    output_tokens: int = 0  # completion tokens, reasoning included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens
    estimated: bool = False

    @property
    def prompt_tokens(self) -> int:
        """All prompt tokens, as OpenAI's `prompt_tokens` counts them."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> "Usage":
        """From Chat Completions (`prompt_tokens`…) or Responses (`input_tokens`…) usage objects."""
        if not usage:
            return cls()
        get = usage.get
        prompt = get("prompt_tokens", _MISSING)
        if prompt is _MISSING:
            prompt = get("input_tokens")
        completion = get("completion_tokens", _MISSING)
        if completion is _MISSING:
            completion = get("output_tokens")
        prompt = prompt or 0
        completion = completion or 0
        pdet = get("prompt_tokens_details") or get("input_tokens_details") or {}
        cdet = get("completion_tokens_details") or get("output_tokens_details") or {}
        cached = pdet.get("cached_tokens") or 0
        # positional (input, output, cache read, cache write, reasoning): cheaper than keywords
        return cls(max(prompt - cached, 0), completion, cached, 0, cdet.get("reasoning_tokens") or 0)

    def merge(self, other: "Usage") -> None:
        """Take every non-zero figure of `other` (Anthropic streams report usage in two events)."""
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            value = getattr(other, name)
            if value:
                setattr(self, name, value)
        self.estimated = self.estimated or other.estimated


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str  # the upstream model that answered
    parts: list[Part]  # TextPart | ToolCallPart | ThinkingPart
    stop_reason: StopReason
    usage: Usage
    created: int = 0  # unix seconds


# ------------------------------------------------------------------------------------- stream events
# A stream is: MessageStart, then content blocks (each opened, fed deltas, stopped, by `index`), then
# MessageEnd. Indices are 0-based, increase by one per block and are never reused.
@dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage = field(default_factory=Usage)  # input side, when the upstream reports it up front


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: Literal["text", "tool_call", "thinking"]
    tool_call_id: str | None = None  # for kind == "tool_call"
    tool_name: str | None = None


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    partial_json: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class MessageEnd:
    stop_reason: StopReason
    usage: Usage


StreamEvent = Union[MessageStart, BlockStart, TextDelta, ToolArgsDelta, ThinkingDelta, BlockStop, MessageEnd]


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    input: list[str] | list[list[int]]
    dimensions: int | None = None
    encoding_format: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage
