"""The validated config: what `app.config.load_config` returns and the rest of the core reads.

The file on disk is LiteLLM's proxy `config.yaml` (model_list / litellm_settings / router_settings) plus one
top-level key of our own, `tiergate_settings`. Sections owned by other packages (privacy, budgets, cache,
agents, ollama) are kept as `Section`s: raw mappings that remember where each key sits in the file, so the
package that owns a section can validate it and report errors with the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import ConfigError

Provider = Literal["openai", "anthropic", "ollama"]
Location = Literal["local", "trusted", "cloud"]

SUPPORTED_PROVIDERS = ("openai", "anthropic", "ollama", "ollama_chat")
DEFAULT_OLLAMA_BASE = "http://localhost:11434"


@dataclass(slots=True)
class Section:
    """A raw mapping from the file plus the means to report errors at the right line.

    `path` is the key path from the document root, e.g. ("tiergate_settings", "privacy").
    """

    data: dict[str, Any]
    path: tuple[str | int, ...]
    file: str | None
    lines: dict[tuple[str | int, ...], int]  # key path -> 1-based line, for every mapping key and list item

    def line_of(self, *subpath: str | int) -> int | None:
        """Line of the deepest known key along `path + subpath`."""
        full = self.path + subpath
        while full:
            if full in self.lines:
                return self.lines[full]
            full = full[:-1]
        return None

    def error(self, message: str, *subpath: str | int) -> ConfigError:
        """A ConfigError located at `subpath` inside this section (raise it)."""
        dotted = ".".join(str(p) for p in self.path + subpath)
        return ConfigError(f"{dotted}: {message}", path=self.file, line=self.line_of(*subpath))

    def sub(self, key: str) -> "Section":
        value = self.data.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error("expected a mapping", key)
        return Section(value, self.path + (key,), self.file, self.lines)


@dataclass(slots=True)
class Deployment:
    """One upstream model a tier can use (one `model_list` entry)."""

    id: str  # unique and stable: model_info.id if given, else "<tier>/<provider>/<model>" (+ "#n" on clashes)
    tier: str  # `model_name`: what clients ask for
    provider: Provider  # "ollama_chat" and "ollama" both map to "ollama" (native /api/chat)
    model: str  # upstream model name, provider prefix removed ("claude-haiku-4-5", "gemma3:4b")
    api_base: str  # resolved: config value or the provider's default
    api_key_ref: str | None = None  # literal key, "os.environ/NAME" or "keychain/NAME"; resolve via app.config.references
    api: Literal["chat", "responses"] = "chat"  # OpenAI-compatible only: which endpoint the upstream serves
    timeout: float | None = None  # seconds; None: router default
    stream_timeout: float | None = None
    max_retries: int | None = None
    context_length: int | None = None  # Ollama `options.num_ctx`
    keep_alive: str | int | None = None  # Ollama keep_alive
    max_output_tokens: int | None = None  # clamp `max_tokens` to this when set (small local models)
    location: Location | None = None  # explicit; None: inferred by app.privacy
    extra_headers: dict[str, str] = field(default_factory=dict)
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    cache_read_input_token_cost: float | None = None
    cache_creation_input_token_cost: float | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)  # other litellm_params (temperature defaults…)
    line: int | None = None  # line of the model_list entry, for messages
    mode: Literal["chat", "embedding"] = "chat"  # model_info.mode ("completion"/"responses" count as chat)
    prefix: str = ""  # the LiteLLM provider prefix as written ("openrouter", "groq", "ollama_chat"…); "" if none

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class RouterSettings:
    num_retries: int = 2  # retries per deployment on retryable errors
    timeout: float = 600.0  # seconds per upstream request
    allowed_fails: int = 3  # failures (after retries) before a deployment cools down
    cooldown_time: float = 60.0  # seconds
    retry_after: float = 0.25  # first backoff; doubles per retry (capped by max_backoff)
    max_backoff: float = 4.0
    fallbacks: dict[str, list[str]] = field(default_factory=dict)  # tier -> tiers to try next
    context_window_fallbacks: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 4000
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    request_timeout: float = 900.0  # whole request, streaming included
    max_concurrent_streams: int = 256
    require_auth: bool = True  # off only for tests/bench when explicitly configured on loopback
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # extra Host names accepted besides loopback ones
    log_content: bool = False  # debug content logging: off unless switched on
    header_timeout: float = 30.0  # s: a new connection must send complete request headers within this
    body_timeout: float = 120.0  # s: the request body must arrive within this once the headers are in
    auth_max_failures: int = 10  # failed key attempts from one address within the window before a block
    auth_failure_window: float = 60.0  # s
    auth_block_seconds: float = 60.0  # s


@dataclass(slots=True)
class Config:
    deployments: list[Deployment]
    router: RouterSettings = field(default_factory=RouterSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    model_aliases: dict[str, str] = field(default_factory=dict)  # exact name or glob pattern -> tier
    allow_concrete_models: bool = True  # `model` may name a deployment ("anthropic/claude-haiku-4-5")
    sections: dict[str, Section] = field(default_factory=dict)  # tiergate_settings sections owned elsewhere
    path: str | None = None
    warnings: list[str] = field(default_factory=list)  # unknown keys, ignored rpm/tpm…, with file:line
    # LiteLLM's top-level `environment_variables` (not applied to os.environ); os.environ/NAME references see them
    # through app.config.references.config_environ(config)
    environment_variables: dict[str, str] = field(default_factory=dict)

    @property
    def tiers(self) -> dict[str, list[Deployment]]:
        """Tier name -> its deployments in file order."""
        out: dict[str, list[Deployment]] = {}
        for d in self.deployments:
            out.setdefault(d.tier, []).append(d)
        return out

    def section(self, name: str) -> Section:
        """The `tiergate_settings.<name>` section (empty when absent)."""
        return self.sections.get(name) or Section({}, ("tiergate_settings", name), self.path, {})
