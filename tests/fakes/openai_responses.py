"""Rendering of OpenAI Responses API answers (`Response` objects and the streaming event sequence).

Shapes follow openai-python's `types/responses` (Response, ResponseUsage, ResponseOutputMessage,
ResponseFunctionToolCall, ResponseReasoningItem and the ResponseStreamEvent union). A stream is:

    response.created, response.in_progress,
    [reasoning]  output_item.added, reasoning_summary_part.added, reasoning_summary_text.delta x n,
                 reasoning_summary_text.done, reasoning_summary_part.done, output_item.done
    [message]    output_item.added, content_part.added, output_text.delta x n, output_text.done,
                 content_part.done, output_item.done
    [each call]  output_item.added, function_call_arguments.delta x n, function_call_arguments.done,
                 output_item.done
    response.completed (or response.incomplete when the reply stopped at max tokens)

every event with a `sequence_number` from 0, as `event: <type>` / `data: <json>` frames; no `[DONE]`.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from tests.fakes.scripts import Turn, split


def usage(t: Turn) -> dict[str, Any]:
    return {
        "input_tokens": t.prompt_tokens,
        "input_tokens_details": {"cached_tokens": t.cache_read_tokens, "cache_write_tokens": t.cache_write_tokens},
        "output_tokens": t.output_tokens,
        "output_tokens_details": {"reasoning_tokens": t.reasoning_tokens},
        "total_tokens": t.prompt_tokens + t.output_tokens,
    }


class ResponseRender:
    """Renders one turn; `new_id(prefix)` makes item ids ("resp", "msg", "fc", "rs")."""

    def __init__(self, turn: Turn, body: dict[str, Any], created: int, new_id: Callable[[str], str]):
        self.t, self.body, self.created = turn, body, created
        self.id = new_id("resp")
        self.rs_id = new_id("rs") if turn.thinking is not None else None
        self.msg_id = new_id("msg") if turn.text else None
        self.fc_ids = [new_id("fc") for _ in turn.tool_calls]
        self.incomplete = turn.stop_reason == "max_tokens"

    # ---------------------------------------------------------------------------------------- items
    def _reasoning(self, done: bool) -> dict[str, Any]:
        summary = [{"type": "summary_text", "text": self.t.thinking}] if done and self.t.thinking else []
        return {"id": self.rs_id, "type": "reasoning", "summary": summary}

    def _message(self, done: bool) -> dict[str, Any]:
        content = [self._text_part(self.t.text)] if done else []
        return {"id": self.msg_id, "type": "message", "status": "completed" if done else "in_progress",
                "content": content, "role": "assistant"}

    @staticmethod
    def _text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _call(self, k: int, done: bool) -> dict[str, Any]:
        call = self.t.tool_calls[k]
        return {"id": self.fc_ids[k], "type": "function_call", "status": "completed" if done else "in_progress",
                "arguments": call.arguments if done else "", "call_id": call.id, "name": call.name}

    def output(self) -> list[dict[str, Any]]:
        items = []
        if self.rs_id:
            items.append(self._reasoning(True))
        if self.msg_id:
            items.append(self._message(True))
        items.extend(self._call(k, True) for k in range(len(self.t.tool_calls)))
        return items

    def response(self, *, final: bool) -> dict[str, Any]:
        b = self.body
        status = ("incomplete" if self.incomplete else "completed") if final else "in_progress"
        reasoning = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else {}
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "background": bool(b.get("background", False)), "completed_at": self.created if final else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if final and self.incomplete else None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": b.get("max_tool_calls"), "model": self.t.model,
            "output": self.output() if final else [],
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"), "prompt_cache_key": b.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": b.get("safety_identifier"), "service_tier": "default",
            "store": b.get("store", True), "temperature": b.get("temperature", 1.0),
            "text": b.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
            "top_logprobs": b.get("top_logprobs", 0), "top_p": b.get("top_p", 1.0), "truncation": "disabled",
            "usage": usage(self.t) if final else None, "user": b.get("user"), "metadata": b.get("metadata") or {},
        }

    # --------------------------------------------------------------------------------------- stream
    def events(self) -> list[bytes]:
        """The SSE frames of the whole stream (an `error` event replaces the rest after `error_after` deltas)."""
        t = self.t
        out: list[bytes] = []
        deltas = 0

        def emit(kind: str, payload: dict[str, Any]) -> None:
            payload = {"type": kind, "sequence_number": len(out), **payload}
            out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")

        def delta_allowed() -> bool:
            nonlocal deltas
            if t.error_after is not None and deltas >= t.error_after:
                emit("error", {"code": "server_error", "message": "The server had an error while processing your "
                               "request. Sorry about that!", "param": None})
                return False
            deltas += 1
            return True

        started = self.response(final=False)
        emit("response.created", {"response": started})
        emit("response.in_progress", {"response": started})
        index = 0
        if self.rs_id:
            ref = {"item_id": self.rs_id, "output_index": index}
            emit("response.output_item.added", {"output_index": index, "item": self._reasoning(False)})
            emit("response.reasoning_summary_part.added",
                 {**ref, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
            for piece in split(t.thinking or "", t.chunks):
                if not delta_allowed():
                    return out
                emit("response.reasoning_summary_text.delta", {**ref, "summary_index": 0, "delta": piece})
            emit("response.reasoning_summary_text.done", {**ref, "summary_index": 0, "text": t.thinking})
            emit("response.reasoning_summary_part.done",
                 {**ref, "summary_index": 0, "part": {"type": "summary_text", "text": t.thinking}})
            emit("response.output_item.done", {"output_index": index, "item": self._reasoning(True)})
            index += 1
        if self.msg_id:
            ref = {"item_id": self.msg_id, "output_index": index, "content_index": 0}
            emit("response.output_item.added", {"output_index": index, "item": self._message(False)})
            emit("response.content_part.added", {**ref, "part": self._text_part("")})
            for piece in split(t.text, t.chunks):
                if not delta_allowed():
                    return out
                emit("response.output_text.delta", {**ref, "delta": piece, "logprobs": []})
            emit("response.output_text.done", {**ref, "text": t.text, "logprobs": []})
            emit("response.content_part.done", {**ref, "part": self._text_part(t.text)})
            emit("response.output_item.done", {"output_index": index, "item": self._message(True)})
            index += 1
        for k, call in enumerate(t.tool_calls):
            ref = {"item_id": self.fc_ids[k], "output_index": index}
            emit("response.output_item.added", {"output_index": index, "item": self._call(k, False)})
            for piece in split(call.arguments, t.chunks):
                if not delta_allowed():
                    return out
                emit("response.function_call_arguments.delta", {**ref, "delta": piece})
            emit("response.function_call_arguments.done", {**ref, "arguments": call.arguments})
            emit("response.output_item.done", {"output_index": index, "item": self._call(k, True)})
            index += 1
        emit("response.incomplete" if self.incomplete else "response.completed",
             {"response": self.response(final=True)})
        return out
