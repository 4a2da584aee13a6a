"""Anthropic Messages API."""

from __future__ import annotations

from app.canonical import ChatRequest, Dialect
from app.dialects import anthropic_messages
from app.providers.base import Provider

DEFAULT_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    dialect = Dialect.ANTHROPIC
    codec = anthropic_messages
    chat_path = "/v1/messages"

    def headers(self, req: ChatRequest | None) -> dict[str, str]:
        out = super().headers(req)
        if self.api_key:
            out["x-api-key"] = self.api_key
        # anthropic-version / anthropic-beta are forwarded only from Anthropic clients.
        client = req.headers if req is not None and req.dialect is Dialect.ANTHROPIC else {}
        out["anthropic-version"] = client.get("anthropic-version") or DEFAULT_VERSION
        if client.get("anthropic-beta"):
            out["anthropic-beta"] = client["anthropic-beta"]
        return out
