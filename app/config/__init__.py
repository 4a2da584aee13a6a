"""Config: LiteLLM-compatible YAML, validated with file and line in every error."""

from app.config.defaults import default_config_text, write_default_config
from app.config.loader import load_config, parse_config
from app.config.references import config_environ, is_reference, resolve_secret
from app.config.schema import Config, Deployment, RouterSettings, Section, ServerSettings

__all__ = ["Config", "Deployment", "RouterSettings", "Section", "ServerSettings", "config_environ",
           "default_config_text", "is_reference", "load_config", "parse_config", "resolve_secret",
           "write_default_config"]
