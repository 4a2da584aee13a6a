"""Upstream adapters, one module per dialect. `create_provider` picks the class for a deployment."""

from __future__ import annotations

from app.config.schema import Deployment
from app.providers.base import Provider, UpstreamStream
from app.providers.http_client import UpstreamHTTP


def create_provider(deployment: Deployment, http: UpstreamHTTP, *, api_key: str | None,
                    timeout: float, stream_timeout: float | None = None) -> Provider:
    from app.providers.anthropic import AnthropicProvider
    from app.providers.ollama import OllamaProvider
    from app.providers.openai import OpenAIChatProvider, OpenAIResponsesProvider

    if deployment.provider == "anthropic":
        cls: type[Provider] = AnthropicProvider
    elif deployment.provider == "ollama":
        cls = OllamaProvider
    elif deployment.api == "responses":
        cls = OpenAIResponsesProvider
    else:
        cls = OpenAIChatProvider
    return cls(deployment, http, api_key=api_key, timeout=timeout, stream_timeout=stream_timeout)


__all__ = ["Provider", "UpstreamStream", "create_provider"]
