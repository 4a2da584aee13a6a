"""Request validation the way OpenAI does it, so translation bugs fail in tests instead of in production.

Each check mirrors an error the real API returns (message, `param` and `code` as OpenAI words them):
unknown top-level arguments on Chat Completions ("Unrecognized request argument supplied: thinking"), unknown
nested keys ("Unknown parameter: 'messages[0].content[0].cache_control'."), Anthropic-shaped parts and tools,
tool-call arguments that are not strings, `max_tokens` or a non-default temperature sent to a reasoning model
(o1/o3/o4/gpt-5), tool messages without a preceding tool call and tool calls without
answers, `stream_options` without `stream`, Responses input parts of the wrong type. It is not exhaustive:
fields not checked here are accepted as long as they are known arguments.
"""

from __future__ import annotations

from typing import Any


class OpenAIInvalid(Exception):
    """A 400 in OpenAI's error shape."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


CHAT_ARGS = frozenset({
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options",
})
RESPONSES_ARGS = frozenset({
    "access_programs", "background", "background_options", "context_management", "conversation", "image",
    "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model", "moderation",
    "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options",
    "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user",
})
EMBEDDING_ARGS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})

_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "function_call", "refusal", "audio"},
    "tool": {"role", "content", "tool_call_id"},
    "function": {"role", "content", "name"},
}
_CHAT_PART_KEYS = {
    "text": {"type", "text"}, "image_url": {"type", "image_url"}, "input_audio": {"type", "input_audio"},
    "file": {"type", "file"}, "refusal": {"type", "refusal"},
}
_RESP_PART_KEYS = {
    "input_text": {"type", "text"}, "input_image": {"type", "image_url", "file_id", "detail"},
    "input_file": {"type", "file_id", "file_data", "filename", "file_url"},
    "output_text": {"type", "text", "annotations", "logprobs"}, "refusal": {"type", "refusal"},
}
_RESP_ITEM_KEYS = {
    "message": {"type", "role", "content", "id", "status", "phase"},
    "function_call": {"type", "call_id", "name", "arguments", "id", "status", "namespace"},
    "function_call_output": {"type", "call_id", "output", "id", "status"},
    "reasoning": {"type", "id", "summary", "content", "encrypted_content", "status"},
    "item_reference": {"type", "id"},
}


# ------------------------------------------------------------------------------------------ helpers
def _oxford(values: list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _unknown(obj: dict[str, Any], allowed: set[str] | frozenset[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise OpenAIInvalid(f"Unknown parameter: '{where}'.", param=where, code="unknown_parameter")


def _missing(path: str) -> OpenAIInvalid:
    return OpenAIInvalid(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")


def _invalid_value(value: Any, supported: list[str], path: str) -> OpenAIInvalid:
    return OpenAIInvalid(f"Invalid value: '{value}'. Supported values are: {_oxford(supported)}.", param=path,
                         code="invalid_value")


def _invalid_type(path: str, expected: str, got: Any) -> OpenAIInvalid:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
             float: "a decimal", type(None): "null"}
    return OpenAIInvalid(f"Invalid type for '{path}': expected {expected}, but got {names.get(type(got), 'a value')}"
                         " instead.", param=path, code="invalid_type")


def _model(body: dict[str, Any]) -> None:
    if not body.get("model"):
        raise OpenAIInvalid("you must provide a model parameter")


def _range(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value > high:
            raise OpenAIInvalid(f"Invalid '{name}': decimal above maximum value. Expected a value <= {high:g}, but "
                                f"got {value} instead.", param=name, code="decimal_above_max_value")
        if value < low:
            raise OpenAIInvalid(f"Invalid '{name}': decimal below minimum value. Expected a value >= {low:g}, but "
                                f"got {value} instead.", param=name, code="decimal_below_min_value")


def _reasoning_model_limits(body: dict[str, Any]) -> None:
    """Reasoning models (o1/o3/o4, gpt-5…) take `max_completion_tokens` only and the default temperature."""
    model = str(body.get("model", ""))
    if not model.startswith(("o1", "o3", "o4", "gpt-5")):
        return
    if body.get("max_tokens") is not None:
        raise OpenAIInvalid("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                            "'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise OpenAIInvalid(f"Unsupported value: 'temperature' does not support {temperature} with this model. Only "
                            "the default (1) value is supported.", param="temperature", code="unsupported_value")


def _stream_options(body: dict[str, Any]) -> None:
    if body.get("stream_options") is not None and not body.get("stream"):
        raise OpenAIInvalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                            param="stream_options")


# ------------------------------------------------------------------------------------ chat completions
def validate_chat(body: dict[str, Any]) -> None:
    unknown = [k for k in body if k not in CHAT_ARGS]
    if unknown:
        noun = "argument" if len(unknown) == 1 else "arguments"
        raise OpenAIInvalid(f"Unrecognized request {noun} supplied: {', '.join(sorted(unknown))}")
    _model(body)
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise OpenAIInvalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                            "empty array instead.", param="messages", code="empty_array")
    _range(body, "temperature", 0, 2)
    _range(body, "top_p", 0, 1)
    _stream_options(body)
    _reasoning_model_limits(body)
    _chat_tools(body)
    pending: dict[str, int] = {}  # unanswered tool_call ids -> index of the assistant message
    for i, msg in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _invalid_type(path, "an object", msg)
        role = msg.get("role")
        if role is None:
            raise _missing(f"{path}.role")
        if role not in _MESSAGE_KEYS:
            raise _invalid_value(role, ["system", "assistant", "user", "function", "tool", "developer"],
                                 f"{path}.role")
        _unknown(msg, _MESSAGE_KEYS[role], path)
        if role == "tool":
            if "tool_call_id" not in msg:
                raise _missing(f"{path}.tool_call_id")
            if msg["tool_call_id"] not in pending:
                raise OpenAIInvalid("Invalid parameter: messages with role 'tool' must be a response to a "
                                    "preceeding message with 'tool_calls'.", param=f"messages.[{i}].role")
            del pending[msg["tool_call_id"]]
        elif pending:
            raise _unanswered(pending)
        _chat_content(msg, role, path)
        if role == "assistant" and msg.get("tool_calls"):
            pending = {call_id: i for call_id in _chat_tool_calls(msg["tool_calls"], f"{path}.tool_calls")}
    if pending:
        raise _unanswered(pending)


def _unanswered(pending: dict[str, int]) -> OpenAIInvalid:
    index = next(iter(pending.values()))
    return OpenAIInvalid("An assistant message with 'tool_calls' must be followed by tool messages responding to "
                         "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                         + ", ".join(pending), param=f"messages.[{index}].role")


def _chat_content(msg: dict[str, Any], role: str, path: str) -> None:
    content = msg.get("content")
    if content is None:
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call") or msg.get("refusal")):
            return
        raise OpenAIInvalid(f"Invalid value for 'content': expected a string, got null.", param=f"{path}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(f"{path}.content", "one of a string or array of objects", content)
    allowed = {"user": ["text", "image_url", "input_audio", "file"], "assistant": ["text", "refusal"]}.get(
        role, ["text"])
    for j, part in enumerate(content):
        ppath = f"{path}.content[{j}]"
        if not isinstance(part, dict):
            raise _invalid_type(ppath, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{ppath}.type")
        if kind not in allowed:
            raise _invalid_value(kind, allowed, f"{ppath}.type")
        _unknown(part, _CHAT_PART_KEYS[kind], ppath)
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _invalid_type(f"{ppath}.text", "a string", part.get("text"))


def _chat_tool_calls(calls: Any, path: str) -> list[str]:
    if not isinstance(calls, list):
        raise _invalid_type(path, "an array", calls)
    ids = []
    for k, call in enumerate(calls):
        cpath = f"{path}[{k}]"
        if not isinstance(call, dict):
            raise _invalid_type(cpath, "an object", call)
        _unknown(call, {"id", "type", "function", "custom"}, cpath)
        for key in ("id", "type", "function"):
            if key not in call:
                raise _missing(f"{cpath}.{key}")
        fn = call["function"]
        if not isinstance(fn, dict):
            raise _invalid_type(f"{cpath}.function", "an object", fn)
        _unknown(fn, {"name", "arguments"}, f"{cpath}.function")
        for key in ("name", "arguments"):
            if key not in fn:
                raise _missing(f"{cpath}.function.{key}")
        if not isinstance(fn["arguments"], str):
            raise _invalid_type(f"{cpath}.function.arguments", "a string", fn["arguments"])
        ids.append(call["id"])
    return ids


def _chat_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        for i, tool in enumerate(tools):
            path = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _invalid_type(path, "an object", tool)
            if "type" not in tool:
                raise _missing(f"{path}.type")
            if tool["type"] == "function":
                _unknown(tool, {"type", "function"}, path)
                fn = tool.get("function")
                if not isinstance(fn, dict):
                    raise _missing(f"{path}.function")
                _unknown(fn, {"name", "description", "parameters", "strict"}, f"{path}.function")
                if not fn.get("name"):
                    raise _missing(f"{path}.function.name")
            elif tool["type"] != "custom":
                raise _invalid_value(tool["type"], ["function", "custom"], f"{path}.type")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise OpenAIInvalid("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                            "specified.", param="tool_choice")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _invalid_value(choice, ["none", "auto", "required"], "tool_choice")
    elif isinstance(choice, dict):
        if choice.get("type") not in ("function", "allowed_tools", "custom"):
            raise _invalid_value(choice.get("type"), ["function", "allowed_tools", "custom"], "tool_choice.type")
        if choice["type"] == "function":
            _unknown(choice, {"type", "function"}, "tool_choice")
            if not isinstance(choice.get("function"), dict) or "name" not in choice["function"]:
                raise _missing("tool_choice.function.name")
    else:
        raise _invalid_type("tool_choice", "one of a string or object", choice)


# ------------------------------------------------------------------------------------------ responses
def validate_responses(body: dict[str, Any]) -> None:
    for key in body:
        if key not in RESPONSES_ARGS:
            raise OpenAIInvalid(f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    if not body.get("model"):
        raise _missing("model")
    _range(body, "temperature", 0, 2)
    _range(body, "top_p", 0, 1)
    _stream_options(body)
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and limit < 16:
        raise OpenAIInvalid(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
                            f"but got {limit} instead.", param="max_output_tokens", code="integer_below_min_value")
    _responses_tools(body)
    items = body.get("input")
    if items is None or isinstance(items, str):
        return
    if not isinstance(items, list):
        raise _invalid_type("input", "one of a string or array of input items", items)
    calls: set[str] = set()
    for i, item in enumerate(items):
        path = f"input[{i}]"
        if not isinstance(item, dict):
            raise _invalid_type(path, "an object", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind is None:
            raise _missing(f"{path}.type")
        if kind in _RESP_ITEM_KEYS:
            _unknown(item, _RESP_ITEM_KEYS[kind], path)
        if kind == "message":
            _responses_message(item, path)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if key not in item:
                    raise _missing(f"{path}.{key}")
            if not isinstance(item["arguments"], str):
                raise _invalid_type(f"{path}.arguments", "a string", item["arguments"])
            calls.add(item["call_id"])
        elif kind == "function_call_output":
            for key in ("call_id", "output"):
                if key not in item:
                    raise _missing(f"{path}.{key}")
            if item["call_id"] not in calls and not body.get("previous_response_id"):
                raise OpenAIInvalid(f"No tool call found for function call output with call_id {item['call_id']}.",
                                    param="input")


def _responses_message(item: dict[str, Any], path: str) -> None:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise _invalid_value(role, ["assistant", "system", "developer", "user"], f"{path}.role")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(f"{path}.content", "one of a string or array of input content", content)
    allowed = ["output_text", "refusal"] if role == "assistant" else ["input_text", "input_image", "input_file"]
    for j, part in enumerate(content):
        ppath = f"{path}.content[{j}]"
        if not isinstance(part, dict):
            raise _invalid_type(ppath, "an object", part)
        kind = part.get("type")
        if kind not in allowed:
            if kind in _RESP_PART_KEYS:
                raise _invalid_value(kind, allowed, ppath)
            raise _invalid_value(kind, ["input_text", "input_image", "output_text", "refusal", "input_file",
                                        "computer_screenshot", "summary_text"], ppath)
        _unknown(part, _RESP_PART_KEYS[kind], ppath)


def _responses_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array", tools)
        for i, tool in enumerate(tools):
            path = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _invalid_type(path, "an object", tool)
            if "type" not in tool:
                raise _missing(f"{path}.type")
            if tool["type"] == "function":
                if "name" not in tool:
                    raise _missing(f"{path}.name")
                _unknown(tool, {"type", "name", "description", "parameters", "strict", "defer_loading"}, path)
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise _invalid_value(choice, ["none", "auto", "required"], "tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        _unknown(choice, {"type", "name"}, "tool_choice")
        if "name" not in choice:
            raise _missing("tool_choice.name")


# ----------------------------------------------------------------------------------------- embeddings
def validate_embeddings(body: dict[str, Any]) -> None:
    for key in body:
        if key not in EMBEDDING_ARGS:
            raise OpenAIInvalid(f"Unrecognized request argument supplied: {key}")
    _model(body)
    if "input" not in body:
        raise _missing("input")
    value = body["input"]
    if value == "" or value == []:
        raise OpenAIInvalid("'$.input' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _invalid_value(fmt, ["float", "base64"], "encoding_format")
