"""Ollama's native /api/chat: the only Ollama endpoint that lets us set `options.num_ctx` and `keep_alive`."""

from __future__ import annotations

from app.canonical import ChatRequest, Dialect, EmbeddingRequest, EmbeddingResponse
from app.dialects import ollama_chat
from app.providers.base import Provider


class OllamaProvider(Provider):
    dialect = Dialect.OLLAMA
    codec = ollama_chat
    chat_path = "/api/chat"

    def headers(self, req: ChatRequest | None) -> dict[str, str]:
        out = super().headers(req)
        if self.api_key:  # Ollama behind an authenticating proxy
            out["authorization"] = f"Bearer {self.api_key}"
        return out

    def can_pass_through(self, req: ChatRequest) -> bool:
        # Always build the body: num_ctx and keep_alive come from the deployment, never the client.
        return False

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        data = await self.post_json("/api/embed", ollama_chat.build_embed_request(req, self.deployment))
        return ollama_chat.parse_embed_response(data)
