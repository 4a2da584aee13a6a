"""Ollama's native /api/chat: the only Ollama endpoint that lets us set `options.num_ctx` and `keep_alive`."""

from __future__ import annotations

from typing import Any

from app.canonical import ChatRequest, ChatResponse, Dialect, EmbeddingRequest, EmbeddingResponse
from app.dialects import ollama_chat
from app.errors import UpstreamClientError
from app.providers.base import Provider, UpstreamStream


class OllamaProvider(Provider):
    dialect = Dialect.OLLAMA
    codec = ollama_chat
    chat_path = "/api/chat"

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        # Agents ask for thinking whatever the model (Claude Code always does); Ollama refuses `think` for
        # a model without that capability. Learnt on the first refusal, then not asked again.
        self.can_think = True

    def headers(self, req: ChatRequest | None) -> dict[str, str]:
        out = super().headers(req)
        if self.api_key:  # Ollama behind an authenticating proxy
            out["authorization"] = f"Bearer {self.api_key}"
        return out

    def can_pass_through(self, req: ChatRequest) -> bool:
        # Always build the body: num_ctx and keep_alive come from the deployment, never the client.
        return False

    def build_body(self, req: ChatRequest, *, stream: bool) -> tuple[dict[str, Any], bool]:
        body, passthrough = super().build_body(req, stream=stream)
        if not self.can_think:
            body.pop("think", None)
        return body, passthrough

    async def complete(self, req: ChatRequest) -> tuple[ChatResponse, bytes | None]:
        try:
            return await super().complete(req)
        except UpstreamClientError as e:
            if not self._thinking_refused(e):
                raise
            return await super().complete(req)

    async def open_stream(self, req: ChatRequest) -> UpstreamStream:
        try:
            return await super().open_stream(req)
        except UpstreamClientError as e:
            if not self._thinking_refused(e):
                raise
            return await super().open_stream(req)

    def _thinking_refused(self, e: UpstreamClientError) -> bool:
        """True (and thinking switched off for this deployment) when Ollama refused `think`."""
        if self.can_think and e.upstream_status == 400 and "does not support thinking" in e.message:
            self.can_think = False
            return True
        return False

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        data = await self.post_json("/api/embed", ollama_chat.build_embed_request(req, self.deployment))
        return ollama_chat.parse_embed_response(data)
