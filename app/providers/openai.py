"""OpenAI and every OpenAI-compatible server (OpenRouter, Groq, LM Studio, llama.cpp, vLLM, another LiteLLM).

Deployments with `api: responses` (models served only through the Responses API, e.g. gpt-5-codex) talk
`/responses`; the rest talk `/chat/completions`.
"""

from __future__ import annotations

from typing import Any

from app.canonical import ChatRequest, Dialect, EmbeddingRequest, EmbeddingResponse, Usage
from app.dialects import openai_chat, openai_responses
from app.errors import UpstreamBadResponse
from app.providers.base import Provider


class OpenAIChatProvider(Provider):
    dialect = Dialect.OPENAI_CHAT
    codec = openai_chat
    chat_path = "/chat/completions"

    def headers(self, req: ChatRequest | None) -> dict[str, str]:
        out = super().headers(req)
        if self.api_key:
            out["authorization"] = f"Bearer {self.api_key}"
        return out

    def prepare_passthrough_stream(self, body: dict[str, Any]) -> None:
        # Usage is needed for the ledger even when the client did not ask; the relay strips it again.
        opts = body.get("stream_options")
        body["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        body = {k: v for k, v in req.raw.items() if k in ("input", "dimensions", "encoding_format", "user")}
        body["input"] = req.input
        body["model"] = self.deployment.model
        data = await self.post_json("/embeddings", body)
        try:
            vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d.get("index", 0))]
        except (KeyError, TypeError) as e:
            raise UpstreamBadResponse(f"{self.deployment.label} sent an unexpected embeddings response",
                                      deployment=self.deployment.id) from e
        return EmbeddingResponse(model=data.get("model", self.deployment.model), vectors=vectors,
                                 usage=Usage.from_openai(data.get("usage")))


class OpenAIResponsesProvider(OpenAIChatProvider):
    dialect = Dialect.OPENAI_RESPONSES
    codec = openai_responses
    chat_path = "/responses"

    def passthrough_body(self, req: ChatRequest) -> dict[str, Any]:
        body = super().passthrough_body(req)
        # Codex's client telemetry (installation and session ids) is for the gateway, not the model.
        body.pop("client_metadata", None)
        return body

    def prepare_passthrough_stream(self, body: dict[str, Any]) -> None:
        """Responses streams always end with usage in `response.completed`."""
