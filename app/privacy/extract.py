"""Every place a canonical request carries text, named so a person can find it.

`request_texts(req)` yields `(place, text)` pairs; the place is a short path into the canonical request
(`system[0]`, `messages[3].content[1].text`, `messages[4].content[0].arguments`, `raw.metadata.note`). The
detectors run over exactly these texts, so what is not yielded here is not scanned. What is and why:

scanned
    system prompt parts; text parts; tool call arguments (JSON text as the model produced it) and tool
    names; tool result contents (text parts) and tool names; thinking text (it is sent back upstream on
    the next turn); Anthropic document blocks: `title`, `context`, a text source's `data`, the text blocks
    of a content source, a URL source's `url`; image URLs that are not `data:` URLs (presigned URLs carry
    credentials in their query string); `stop` sequences; the parts of the raw body the canonical model
    does not carry but a same-dialect pass-through forwards (`metadata`, `prediction`, anything unknown).
not scanned
    image bytes (base64 `data` and `data:` URLs): no OCR, and scanning megabytes of base64 costs time and
    only yields false positives; base64 PDF documents (opaque without a PDF parser); `redacted_thinking`
    data (encrypted by the upstream); thinking signatures; tool *specs* (names, descriptions, JSON
    schemas): they are written by the agent's authors, not the user, are the same on every request and
    large (Claude Code sends ~30 KB of them) — `privacy.scan_tool_specs: true` scans them too.
"""

from __future__ import annotations

from typing import Any, Iterator

import orjson

from app.canonical import (
    ChatRequest,
    DocumentPart,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

# Top-level raw keys whose text the canonical model carries (scanned through it), or that carry no user
# text worth scanning. Everything else in the raw body is walked.
_RAW_COVERED = frozenset({
    "messages", "system", "input", "instructions", "tools", "functions", "model", "stream",
    "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens", "temperature", "top_p",
    "top_k", "stop", "stop_sequences", "seed", "response_format", "text", "reasoning", "reasoning_effort",
    "thinking", "tool_choice", "parallel_tool_calls", "n", "logprobs", "top_logprobs", "options",
    "keep_alive", "format", "think",
})


def request_texts(req: ChatRequest, *, include_tool_specs: bool = False) -> Iterator[tuple[str, str]]:
    """(place, text) for every text the request carries upstream. Empty texts are skipped."""
    return iter(collect_texts(req, include_tool_specs=include_tool_specs))


def collect_texts(req: ChatRequest, *, include_tool_specs: bool = False) -> list[tuple[str, str]]:
    """`request_texts` as a list. Plain functions appending to one list (no generator per part): this runs
    for every request, and a chat of a few messages costs ~1 µs instead of ~3."""
    out: list[tuple[str, str]] = []
    add = out.append
    for i, part in enumerate(req.system):
        if part.text:
            add((f"system[{i}]", part.text))
    for m, msg in enumerate(req.messages):
        for p, part in enumerate(msg.parts):
            if type(part) is TextPart:  # the common case, inline
                if part.text:
                    add((f"messages[{m}].content[{p}].text", part.text))
            else:
                _part_texts(f"messages[{m}].content[{p}]", part, out)
    for i, stop in enumerate(req.stop):
        if stop:
            add((f"stop[{i}]", stop))
    if req.user:  # forwarded as `user` / `metadata.user_id` / `safety_identifier`
        add(("user", req.user))
    if include_tool_specs:
        for i, tool in enumerate(req.tools):
            add((f"tools[{i}].name", tool.name))
            if tool.description:
                add((f"tools[{i}].description", tool.description))
            _walk(f"tools[{i}].parameters", tool.parameters, out)
    raw = req.raw
    if raw:
        if not _RAW_COVERED.issuperset(raw):
            for key, value in raw.items():
                if key not in _RAW_COVERED:
                    _walk(f"raw.{key}", value, out)
        for key in ("messages", "input", "system"):
            items = raw.get(key)
            if isinstance(items, list):
                _uncovered("raw." + key, items, out)
    return out


# Content block / input item types the dialect parsers turn into canonical parts. Blocks of any other type
# (Anthropic search results and server tool results, Responses custom tool calls…) have no canonical form
# but a same-dialect pass-through forwards them: their strings are scanned from the raw body.
_CANONICAL_BLOCKS = frozenset({
    "text", "image", "image_url", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
    "input_text", "input_image", "output_text", "input_file", "file", "input_audio", "refusal",
    "message", "function_call", "function_call_output", "reasoning", "item_reference",
})


# Keys of messages, items and blocks whose text the canonical model carries (or that hold no user text:
# ids, flags, image and document sources, upstream-encrypted data). Any other key of a message or block
# is forwarded by a same-dialect pass-through, so its strings are scanned from the raw body (citations,
# annotations, a message's `name`, `refusal`, legacy `function_call`, reasoning summaries, …).
_COVERED_KEYS = frozenset({
    "type", "role", "content", "text", "id", "status", "cache_control", "tool_calls", "tool_call_id",
    "tool_use_id", "call_id", "arguments", "output", "input", "is_error", "thinking", "signature", "data",
    "encrypted_content", "source", "image_url", "detail", "file_id", "title", "context", "citations_enabled",
})


def _uncovered(place: str, items: list[Any], out: list[tuple[str, str]]) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind is not None and kind not in _CANONICAL_BLOCKS:
            _walk(f"{place}[{i}]", item, out)
            continue
        if not _COVERED_KEYS.issuperset(item):  # the usual message or block has only covered keys
            for key, value in item.items():
                if key not in _COVERED_KEYS and value is not None and not isinstance(value, (bool, int, float)):
                    if key == "name" and kind in ("tool_use", "function_call"):
                        continue  # a tool name: scanned canonically
                    _walk(f"{place}[{i}].{key}", value, out)
        content = item.get("content")
        if isinstance(content, list):
            _uncovered(f"{place}[{i}].content", content, out)


def _part_texts(place: str, part: Any, out: list[tuple[str, str]]) -> None:
    kind = type(part)
    if kind is TextPart:
        if part.text:
            out.append((place + ".text", part.text))
    elif kind is ToolCallPart:
        out.append((place + ".name", part.name))
        if part.arguments:
            parsed = parse_arguments(part.arguments)
            if parsed is None:
                out.append((place + ".arguments", part.arguments))
            else:
                _walk(place + ".arguments", parsed, out)
    elif kind is ToolResultPart:
        if part.name:
            out.append((place + ".name", part.name))
        for c, sub in enumerate(part.content):
            _part_texts(f"{place}.content[{c}]", sub, out)
    elif kind is ThinkingPart:
        if part.text:
            out.append((place + ".thinking", part.text))
    elif kind is ImagePart:
        if part.url and not part.url[:5].lower() == "data:":
            out.append((place + ".url", part.url))
    elif kind is DocumentPart:
        _document_texts(place, part.raw, out)
    else:  # an unknown part type: fail closed by scanning whatever strings it holds
        _walk(place, getattr(part, "__dict__", None) or _slots(part), out)


def parse_arguments(arguments: str) -> dict[str, Any] | list[Any] | None:
    """Tool-call arguments as JSON (an object or array), or None when they are not. Scanning the decoded
    strings matters: in the JSON text a value after a newline reads `\\nAKIA…`, which hides the key's
    start, and masking inside escapes could break the JSON."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, (dict, list)) else None


def _document_texts(place: str, raw: dict[str, Any], out: list[tuple[str, str]]) -> None:
    for key in ("title", "context"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            out.append((f"{place}.{key}", value))
    source = raw.get("source")
    if not isinstance(source, dict):
        return
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        out.append((place + ".source.data", source["data"]))
    elif kind == "url" and isinstance(source.get("url"), str):
        out.append((place + ".source.url", source["url"]))
    elif kind == "content":
        _walk(place + ".source.content", source.get("content"), out, skip_binary=True)
    elif kind != "base64":  # unknown source type: scan every string in it
        _walk(place + ".source", source, out, skip_binary=True)


def _slots(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name, None) for name in getattr(type(obj), "__slots__", ())}


def _walk(place: str, value: Any, out: list[tuple[str, str]], *, skip_binary: bool = True) -> None:
    """Every string inside a JSON-like value, with its path. Base64 image/document payloads are skipped."""
    if isinstance(value, str):
        if value and not (skip_binary and value[:5].lower() == "data:"):
            out.append((place, value))
    elif isinstance(value, dict):
        binary = skip_binary and value.get("type") == "base64"
        for key, sub in value.items():
            if binary and key == "data":
                continue
            _walk(f"{place}.{key}", sub, out, skip_binary=skip_binary)
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            _walk(f"{place}[{i}]", sub, out, skip_binary=skip_binary)
