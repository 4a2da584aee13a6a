"""Config: LiteLLM-compatible YAML, validated with file and line in every error."""

from app.config.schema import Config, Deployment, RouterSettings, Section, ServerSettings

__all__ = ["Config", "Deployment", "RouterSettings", "Section", "ServerSettings"]
