"""Request validation the way Anthropic's Messages API does it, with Anthropic's error wording.

Field paths use Anthropic's dotted style ("messages.1.content.0.tool_use.input: Input should be a valid
dictionary"). Checked: unknown top-level fields (OpenAI-only `stream_options`, `response_format`, `n`, …:
"stream_options: Extra inputs are not permitted"; beta-only fields need an `anthropic-beta` header), required
`model` / `max_tokens` / `messages`, roles, block types and their fields, empty text, tool_use ids and names,
tool_use / tool_result pairing between consecutive messages, `tool_choice` shape, `thinking` budget and the
temperature range. `strict_alternation` (on by default) also rejects two messages in a row with the same role
and a first message that is not the user's, as the API did before it started merging consecutive turns.
"""

from __future__ import annotations

import re
from typing import Any


class AnthropicInvalid(Exception):
    """An error in Anthropic's shape; `kind` is the error type."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


MESSAGES_FIELDS = frozenset({
    "max_tokens", "messages", "model", "cache_control", "container", "diagnostics", "inference_geo", "metadata",
    "output_config", "service_tier", "speed", "stop_sequences", "system", "thinking", "tool_choice", "tools",
    "user_profile_id", "workspace_id", "stream", "temperature", "top_k", "top_p",
})
COUNT_TOKENS_FIELDS = frozenset({
    "messages", "model", "cache_control", "output_config", "speed", "system", "thinking", "tool_choice", "tools",
    "user_profile_id", "workspace_id",
})
BETA_FIELDS = frozenset({"billing_policy", "compaction", "context_management", "fallback_credit_token", "fallbacks",
                         "mcp_servers", "thread"})

_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "search_result": {"type", "source", "title", "content", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
    "server_tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "web_search_tool_result": {"type", "tool_use_id", "content", "cache_control", "caller"},
    "web_fetch_tool_result": {"type", "tool_use_id", "content", "cache_control", "caller"},
    "code_execution_tool_result": {"type", "tool_use_id", "content", "cache_control"},
    "container_upload": {"type", "file_id", "cache_control"},
}
_TOOL_CHOICE_KEYS = {"auto": {"type", "disable_parallel_tool_use"}, "any": {"type", "disable_parallel_tool_use"},
                     "tool": {"type", "name", "disable_parallel_tool_use"}, "none": {"type"}}
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"


def _extra(obj: dict[str, Any], allowed: set[str] | frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise AnthropicInvalid(f"{path}{key}: Extra inputs are not permitted")


def _tags(tags: list[str]) -> str:
    return ", ".join(f"'{t}'" for t in tags)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise AnthropicInvalid(f"{name}: Input should be a valid number")
    if value > high:
        raise AnthropicInvalid(f"{name}: Input should be less than or equal to {high:g}")
    if value < low:
        raise AnthropicInvalid(f"{name}: Input should be greater than or equal to {low:g}")


def validate_messages(body: dict[str, Any], *, beta: bool, strict_alternation: bool,
                      count_tokens: bool = False, system_turns: bool = False) -> None:
    """`system_turns`: the mid-conversation-system beta is on, which lets `role: "system"` turns (text only)
    stand inside `messages` (Claude Code sends them under it)."""
    allowed = COUNT_TOKENS_FIELDS if count_tokens else MESSAGES_FIELDS
    _extra(body, allowed | BETA_FIELDS if beta else allowed, "")
    for name in ("model", "messages") if count_tokens else ("model", "max_tokens", "messages"):
        if name not in body:
            raise AnthropicInvalid(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise AnthropicInvalid("model: Input should be a valid string")
    if not count_tokens:
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise AnthropicInvalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise AnthropicInvalid("max_tokens: Input should be greater than or equal to 1")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise AnthropicInvalid("stop_sequences: Input should be a valid list of strings")
    if isinstance(body.get("metadata"), dict):
        _extra(body["metadata"], {"user_id"}, "metadata.")
    _system(body.get("system"))
    _thinking(body)
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _messages(body["messages"], strict_alternation, system_turns)


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise AnthropicInvalid("system: Input should be a valid list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise AnthropicInvalid(f"system.{i}.type: Input should be 'text'")
        _extra(block, _BLOCK_KEYS["text"], f"system.{i}.")
        if not block.get("text"):
            raise AnthropicInvalid("system: text content blocks must be non-empty")


def _thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise AnthropicInvalid("thinking: Input should be a valid dictionary or object to extract fields from")
    kind = thinking.get("type")
    if kind not in ("enabled", "disabled", "adaptive"):
        raise AnthropicInvalid(f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected "
                               "tags: 'enabled', 'disabled', 'adaptive'")
    if kind != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        raise AnthropicInvalid("thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        raise AnthropicInvalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] <= budget:
        raise AnthropicInvalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                               f"documentation at {_THINKING_DOCS}")
    if body.get("temperature") not in (None, 1, 1.0):
        raise AnthropicInvalid("`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. "
                               "Please consult our documentation at https://docs.claude.com/en/docs/build-with-"
                               "claude/extended-thinking#feature-compatibility")


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise AnthropicInvalid("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise AnthropicInvalid(f"tools.{i}: Input should be a valid dictionary or object to extract fields from")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (bash_…, web_search_…): not checked
        path = f"tools.{i}.custom."
        _extra(tool, {"type", "name", "description", "input_schema", "cache_control", "strict"}, path)
        for key in ("name", "input_schema"):
            if key not in tool:
                raise AnthropicInvalid(f"{path}{key}: Field required")
        if not isinstance(tool["name"], str) or not _TOOL_NAME.match(tool["name"]):
            raise AnthropicInvalid(f"{path}name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if not isinstance(tool["input_schema"], dict):
            raise AnthropicInvalid(f"{path}input_schema: Input should be a valid dictionary")


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise AnthropicInvalid("tool_choice: Input should be a valid dictionary or object to extract fields from")
    kind = choice.get("type")
    if kind not in _TOOL_CHOICE_KEYS:
        raise AnthropicInvalid(f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the "
                               f"expected tags: {_tags(list(_TOOL_CHOICE_KEYS))}")
    _extra(choice, _TOOL_CHOICE_KEYS[kind], f"tool_choice.{kind}.")
    if kind == "tool" and "name" not in choice:
        raise AnthropicInvalid("tool_choice.tool.name: Field required")


def _messages(messages: Any, strict: bool, system_turns: bool = False) -> None:
    if not isinstance(messages, list):
        raise AnthropicInvalid("messages: Input should be a valid list")
    if not messages:
        raise AnthropicInvalid("messages: List should have at least 1 item after validation, not 0")
    previous_uses: list[str] = []
    previous_role = None
    last = len(messages) - 1
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise AnthropicInvalid(f"messages.{i}: Input should be a valid dictionary or object to extract fields from")
        _extra(msg, {"role", "content"}, f"messages.{i}.")
        role = msg.get("role")
        if role == "system" and system_turns and i > 0:
            _system(msg.get("content"))
            if msg.get("content") in (None, "", []):
                raise AnthropicInvalid(f"messages.{i}.content: a system turn needs text")
            continue
        if role is None or "content" not in msg:
            raise AnthropicInvalid(f"messages.{i}.{'role' if role is None else 'content'}: Field required")
        if role not in ("user", "assistant"):
            raise AnthropicInvalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if strict:
            if i == 0 and role != "user":
                raise AnthropicInvalid('messages: first message must use the "user" role')
            if role == previous_role:
                raise AnthropicInvalid(f'messages: roles must alternate between "user" and "assistant", but found '
                                       f'multiple "{role}" roles in a row')
        blocks = _blocks(msg["content"], f"messages.{i}", allow_empty=role == "assistant" and i == last)
        results = [(j, b["tool_use_id"]) for j, b in enumerate(blocks) if b.get("type") == "tool_result"]
        if role == "user":
            for j, use_id in results:
                if use_id not in previous_uses:
                    raise AnthropicInvalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                                           f"`tool_result` blocks: {use_id}. Each `tool_result` block must have a "
                                           "corresponding `tool_use` block in the previous message.")
            if previous_uses:
                missing = [u for u in previous_uses if u not in {r for _, r in results}]
                if missing:
                    raise AnthropicInvalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                                           f"immediately after: {', '.join(missing)}. Each `tool_use` block must "
                                           "have a corresponding `tool_result` block in the next message.")
        elif previous_uses:
            raise AnthropicInvalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                                   f"immediately after: {', '.join(previous_uses)}. Each `tool_use` block must have "
                                   "a corresponding `tool_result` block in the next message.")
        previous_uses = [b["id"] for b in blocks if b.get("type") == "tool_use"] if role == "assistant" else []
        previous_role = role


def _blocks(content: Any, path: str, *, allow_empty: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content and not allow_empty:
            raise AnthropicInvalid(f"{path}: all messages must have non-empty content except for the optional final "
                                   "assistant message")
        return []
    if not isinstance(content, list):
        raise AnthropicInvalid(f"{path}.content: Input should be a valid list")
    if not content and not allow_empty:
        raise AnthropicInvalid(f"{path}: all messages must have non-empty content except for the optional final "
                               "assistant message")
    for j, block in enumerate(content):
        _block(block, f"{path}.content.{j}")
    return content


def _block(block: Any, path: str) -> None:
    if not isinstance(block, dict):
        raise AnthropicInvalid(f"{path}: Input should be a valid dictionary or object to extract fields from")
    kind = block.get("type")
    if kind not in _BLOCK_KEYS:
        raise AnthropicInvalid(f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected "
                               f"tags: {_tags(list(_BLOCK_KEYS))}")
    _extra(block, _BLOCK_KEYS[kind], f"{path}.{kind}.")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise AnthropicInvalid(f"{path}.text.text: Field required")
        if not block["text"]:
            raise AnthropicInvalid("messages: text content blocks must be non-empty")
    elif kind == "tool_use":
        for key in ("id", "name", "input"):
            if key not in block:
                raise AnthropicInvalid(f"{path}.tool_use.{key}: Field required")
        if not isinstance(block["id"], str) or not _ID.match(block["id"]):
            raise AnthropicInvalid(f"{path}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block["input"], dict):
            raise AnthropicInvalid(f"{path}.tool_use.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if "tool_use_id" not in block:
            raise AnthropicInvalid(f"{path}.tool_result.tool_use_id: Field required")
        inner = block.get("content")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image", "document",
                                                                          "search_result"):
                    tag = part.get("type") if isinstance(part, dict) else None
                    raise AnthropicInvalid(f"{path}.tool_result.content.{k}: Input tag '{tag}' found using 'type' "
                                           "does not match any of the expected tags: 'text', 'image', 'document', "
                                           "'search_result'")
                _block(part, f"{path}.tool_result.content.{k}")
        elif inner is not None and not isinstance(inner, str):
            raise AnthropicInvalid(f"{path}.tool_result.content: Input should be a valid string")
    elif kind == "thinking":
        for key in ("thinking", "signature"):
            if key not in block:
                raise AnthropicInvalid(f"{path}.thinking.{key}: Field required")
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
            raise AnthropicInvalid(f"{path}.image.source: Input tag '{source.get('type') if isinstance(source, dict) else None}' "
                                   "found using 'type' does not match any of the expected tags: 'base64', 'url', "
                                   "'file'")
