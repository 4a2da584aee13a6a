"""Documented defaults: the provider prefixes Tiergate accepts, and the config written on first start.

With no config file, `tiergate serve` writes `write_default_config(default_config_path())`: three tiers on local
Ollama models, plus cloud deployments for the keys that exist (environment or keychain). Keys are written as
references (`os.environ/NAME`, `keychain/NAME`), never as values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.config.schema import DEFAULT_OLLAMA_BASE, Provider

if TYPE_CHECKING:
    from app.config.schema import Config


# ---------------------------------------------------------------------------------------- provider prefixes
@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    """What a LiteLLM model prefix (`groq/llama-3.3-70b`) means to Tiergate."""

    provider: Provider  # the upstream dialect
    api_base: str | None  # used when the entry has no api_base (None: api_base is required)
    key_env: str | None = None  # with the default api_base and no api_key: os.environ/<key_env>, as LiteLLM does
    base_env: str | None = None  # environment variable LiteLLM reads for the api_base when the entry has none


# Default bases are LiteLLM's (litellm/litellm_core_utils/get_llm_provider_logic.py and the provider docs), stored
# without a trailing slash and with the version path for OpenAI-compatible upstreams (requests go to
# {api_base}/chat/completions). DeepSeek: LiteLLM uses /beta; /v1 is DeepSeek's documented OpenAI-compatible path.
PROVIDERS: dict[str, ProviderDefaults] = {
    "openai": ProviderDefaults("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ProviderDefaults("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "ollama": ProviderDefaults("ollama", DEFAULT_OLLAMA_BASE),  # native /api/chat, either prefix
    "ollama_chat": ProviderDefaults("ollama", DEFAULT_OLLAMA_BASE),
    "openrouter": ProviderDefaults("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "groq": ProviderDefaults("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": ProviderDefaults("openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "mistral": ProviderDefaults("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "together_ai": ProviderDefaults("openai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "fireworks_ai": ProviderDefaults("openai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "xai": ProviderDefaults("openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "lm_studio": ProviderDefaults("openai", "http://localhost:1234/v1", base_env="LM_STUDIO_API_BASE"),
    "hosted_vllm": ProviderDefaults("openai", None, base_env="HOSTED_VLLM_API_BASE"),
    "litellm_proxy": ProviderDefaults("openai", None, base_env="LITELLM_PROXY_API_BASE"),
}

PROVIDER_HINT = ("supported prefixes: " + ", ".join(f"{p}/" for p in PROVIDERS)
                 + " (any other OpenAI-compatible server works as openai/<model> with its api_base)")

# Models LiteLLM recognises without a prefix (`model: gpt-4o`, `model: claude-3-5-sonnet-20241022`).
BARE_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"), ("chatgpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
    ("codex-", "openai"), ("text-embedding-", "openai"), ("claude-", "anthropic"),
)

# OpenAI models only served by the Responses API (/v1/responses).
RESPONSES_ONLY_PREFIXES = ("gpt-5-codex", "codex-")


# --------------------------------------------------------------------------------------- the default config
# Local models (Ollama library tags). One 8B model serves orchestrator and coder, so a 16 GB machine holds a single
# copy; qwen3 supports tool calls, which agents need. Bigger machines: qwen3:14b / qwen3:30b-a3b (orchestrator),
# qwen3-coder:30b (coder). gemma3:4b/12b are good writers but Ollama's gemma3 has no tool support.
LOCAL_MODELS = {"orchestrator": "qwen3:8b", "coder": "qwen3:8b", "helper": "qwen3:4b"}
LOCAL_CONTEXT = {"orchestrator": 32768, "coder": 32768, "helper": 16384}  # agents' tool prompts are long
CLOUD_MODELS = {"anthropic": {"orchestrator": "claude-opus-4-7", "helper": "claude-haiku-4-5"},
                "openai": {"coder": "gpt-5-codex"}}
KEY_NAMES = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}

_HEADER = """\
# Tiergate config: LiteLLM's proxy config.yaml format, plus `tiergate_settings`.
# Written by Tiergate on first start; edit freely (the running proxy reloads it, and keeps the last good
# config if an edit is broken). Every option is shown in resources/config.example.yaml.
#
# Agents ask for a tier by name (`model: coder`); a tier is every model_list entry with that model_name,
# tried in file order (unhealthy ones skipped), then the tiers listed under router_settings.fallbacks.
# Keys are never written here: `os.environ/NAME` reads an environment variable, `keychain/NAME` the OS
# keychain (`tiergate keys import-env` moves keys from the environment into the keychain).
"""


def _local(tier: str) -> str:
    return f"""\
  - model_name: {tier}
    litellm_params:                # local (Ollama): stays on this machine, costs nothing
      model: ollama_chat/{LOCAL_MODELS[tier]}
      api_base: {DEFAULT_OLLAMA_BASE}
      num_ctx: {LOCAL_CONTEXT[tier]:<20d}# context window in tokens; more needs more memory
      keep_alive: 30m              # how long Ollama keeps the model loaded after a request
"""


def _cloud(tier: str, provider: str, ref: str) -> str:
    model = CLOUD_MODELS[provider][tier]
    api = "\n    model_info:\n      api: responses               # served by OpenAI's Responses API" \
        if model.startswith(RESPONSES_ONLY_PREFIXES) else ""
    return f"""\
  - model_name: {tier}
    litellm_params:
      model: {provider}/{model}
      api_key: {ref}{api}
"""


def default_config_text(env: Mapping[str, str] | None = None,
                        has_keychain_key: Callable[[str], bool] | None = None) -> str:
    """The commented YAML `write_default_config` writes (cloud entries only for keys that exist)."""
    env = os.environ if env is None else env
    refs: dict[str, str] = {}
    for provider, name in KEY_NAMES.items():
        if has_keychain_key is not None and has_keychain_key(name):
            refs[provider] = f"keychain/{name}"
        elif env.get(name):
            refs[provider] = f"os.environ/{name}"

    def tier(name: str, cloud_first: bool) -> str:
        cloud = [_cloud(name, p, refs[p]) for p in CLOUD_MODELS if name in CLOUD_MODELS[p] and p in refs]
        parts = cloud + [_local(name)] if cloud_first else [_local(name)] + cloud
        return "".join(parts)

    missing = [f"#   {KEY_NAMES[p]} → " + ", ".join(f"{t}: {p}/{m}" for t, m in CLOUD_MODELS[p].items())
               for p in CLOUD_MODELS if p not in refs]
    missing_note = ("\n  # Cloud models are added when their key exists; not found at first start:\n"
                    + "\n".join(m.replace("#", "  #", 1) for m in missing) + "\n") if missing else ""
    return f"""{_HEADER}
model_list:
  # orchestrator: plans and reviews; the strongest model you have.
{tier("orchestrator", True)}
  # coder: writes code; long context, tool calls.
{tier("coder", True)}
  # helper: small quick tasks (titles, summaries); local first, it is cheap and private.
{tier("helper", False)}{missing_note}
router_settings:
  num_retries: 2            # retries on the same deployment for timeouts, 429s and 5xx
  timeout: 600              # seconds per upstream request
  allowed_fails: 3          # failures before a deployment cools down
  cooldown_time: 60         # seconds a failing deployment is skipped
  fallbacks:                # when every deployment of a tier fails, try these tiers
    - orchestrator: [coder]
    - coder: [orchestrator]
    - helper: [coder]

tiergate_settings:
  host: 127.0.0.1           # only this machine; another address makes agent keys mandatory
  port: 4000
  model_aliases:            # names agents send on their own, mapped to tiers
    "claude-*opus*": orchestrator
    "claude-*sonnet*": coder
    "claude-*haiku*": helper
    "gpt-5-codex*": coder
  privacy:
    # Sensitive requests never leave this machine. When a tier has no local deployment that may take
    # such a request, it goes to the local models of the tier named here.
    local_equivalents:
      orchestrator: coder
      coder: orchestrator
      helper: coder
"""


def write_default_config(path: str | Path, *, env: Mapping[str, str] = os.environ,
                         has_keychain_key: Callable[[str], bool] | None = None,
                         overwrite: bool = False) -> "Config":
    """Write the default config to `path` (parents created) and return it loaded. Refuses to replace an existing
    file unless `overwrite`. The file holds references only, never a key."""
    from app.config.loader import load_config
    from app.errors import ConfigError

    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise ConfigError("a config file already exists here; not replacing it.", path=str(target))
    text = default_config_text(env, has_keychain_key)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return load_config(target, environ=env)
