"""Loading LiteLLM proxy configs: samples from LiteLLM's docs, provider prefixes, settings, warnings, lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.config import load_config, parse_config
from app.errors import ConfigError

ENV: dict[str, str] = {}


def parse(text: str, path: str | None = "cfg.yaml", environ: dict[str, str] | None = None):
    return parse_config(textwrap.dedent(text), path, environ=ENV if environ is None else environ)


def warnings_about(cfg, fragment: str) -> list[str]:
    return [w for w in cfg.warnings if fragment in w]


# LiteLLM docs, proxy/configs.md "Quick Start": the entries Tiergate can serve, verbatim (the azure/ and bedrock/
# entries are tested as errors below), with its litellm_settings and general_settings.
DOCS_QUICK_START = """\
model_list:
  - model_name: vllm-models
    litellm_params:
      model: openai/facebook/opt-125m # the `openai/` prefix tells litellm it's openai compatible
      api_base: http://0.0.0.0:4000/v1
      api_key: none
      rpm: 1440
    model_info: 
      version: 2
  
  # Use this if you want to make requests to `claude-3-haiku-20240307`,`claude-3-opus-20240229`,`claude-2.1` without defining them on the config.yaml
  # Default models
  # Works for ALL Providers and needs the default provider credentials in .env
  - model_name: "*" 
    litellm_params:
      model: "*"

litellm_settings: # module level litellm settings - https://github.com/BerriAI/litellm/blob/main/litellm/__init__.py
  drop_params: True
  success_callback: ["langfuse"] # OPTIONAL - if you want to start sending LLM Logs to Langfuse. Make sure to set `LANGFUSE_PUBLIC_KEY` and `LANGFUSE_SECRET_KEY` in your env

general_settings: 
  master_key: sk-1234 # [OPTIONAL] Only use this if you to require all calls to contain this key (Authorization: Bearer sk-1234)
  alerting: ["slack"] # [OPTIONAL] If you want Slack Alerts for Hanging LLM requests, Slow llm responses, Budget Alerts. Make sure to set `SLACK_WEBHOOK_URL` in your env
"""

# LiteLLM docs, proxy/configs.md "Load Balancing", verbatim except the three zephyr-beta entries, which the docs
# serve through huggingface/ (not supported, see test_docs_load_balancing_verbatim_names_the_provider).
DOCS_LOAD_BALANCING = """\
model_list:
  - model_name: zephyr-beta
    litellm_params:
        model: {zephyr}
        api_base: http://0.0.0.0:8001
        rpm: 60      # Optional[int]: When rpm/tpm set - litellm uses weighted pick for load balancing. rpm = Rate limit for this deployment: in requests per minute (rpm).
        tpm: 1000   # Optional[int]: tpm = Tokens Per Minute 
  - model_name: zephyr-beta
    litellm_params:
        model: {zephyr}
        api_base: http://0.0.0.0:8002
        rpm: 600      
  - model_name: zephyr-beta
    litellm_params:
        model: {zephyr}
        api_base: http://0.0.0.0:8003
        rpm: 60000      
  - model_name: gpt-4o
    litellm_params:
        model: gpt-4o
        api_key: <my-openai-key>
        rpm: 200      
  - model_name: gpt-3.5-turbo-16k
    litellm_params:
        model: gpt-3.5-turbo-16k
        api_key: <my-openai-key>
        rpm: 100      

litellm_settings:
  num_retries: 3 # retry call 3 times on each model_name (e.g. zephyr-beta)
  request_timeout: 10 # raise Timeout error if call takes longer than 10s. Sets litellm.request_timeout 
  fallbacks: [{{"zephyr-beta": ["gpt-4o"]}}] # fallback to gpt-4o if call fails num_retries 
  context_window_fallbacks: [{{"zephyr-beta": ["gpt-3.5-turbo-16k"]}}, {{"gpt-4o": ["gpt-3.5-turbo-16k"]}}] # fallback to gpt-3.5-turbo-16k if context window error
  allowed_fails: 3 # cooldown model if it fails > 1 call in a minute. 

router_settings: # router_settings are optional
  routing_strategy: simple-shuffle # Literal["simple-shuffle", "least-busy", "usage-based-routing","latency-based-routing"], default="simple-shuffle"
  model_group_alias: {{"gpt-4": "gpt-4o"}} # all requests with `gpt-4` will be routed to models with `gpt-4o`
  num_retries: 2
  timeout: 30                                  # 30 seconds
  redis_host: <your redis host>                # set this when using multiple litellm proxy deployments, load balancing state stored in redis
  redis_password: <your redis password>
  redis_port: 1992
"""


def test_docs_quick_start_loads_with_warnings_only():
    cfg = parse_config(DOCS_QUICK_START, "litellm.yaml", environ={})
    [d] = cfg.deployments  # the "*" wildcard entry is skipped
    assert (d.tier, d.provider, d.prefix, d.model) == ("vllm-models", "openai", "openai", "facebook/opt-125m")
    assert d.api_base == "http://0.0.0.0:4000/v1"
    assert d.api_key_ref == "none"
    assert d.id == "vllm-models/openai/facebook/opt-125m"
    assert d.line == 2
    w = cfg.warnings
    assert [x.split(": ", 2)[:2] for x in w] == [
        ["litellm.yaml:6", "model_list[0].litellm_params.api_key"],
        ["litellm.yaml:7", "model_list[0].litellm_params.rpm"],
        ["litellm.yaml:16", "model_list[1].litellm_params.model"],
        ["litellm.yaml:19", "litellm_settings.drop_params"],
        ["litellm.yaml:20", "litellm_settings.success_callback"],
        ["litellm.yaml:23", "general_settings.master_key"],
        ["litellm.yaml:24", "general_settings.alerting"],
    ]
    assert "a key is written in the file; store it in the keychain with `tiergate keys import-env`" in w[0]
    assert w[1].endswith("ignored (Tiergate does not enforce per-deployment rate limits)")
    assert "skipped: wildcard models are not supported" in w[2]
    assert w[3].endswith("drop_params: ignored (a LiteLLM setting Tiergate does not use)")
    assert w[5] == ("litellm.yaml:23: general_settings.master_key: ignored: Tiergate uses its own agent keys; "
                    "create the admin key with `tiergate keys master`.")
    assert not any("sk-1234" in x for x in w)


def test_docs_load_balancing_loads_as_openai_compatible():
    text = DOCS_LOAD_BALANCING.format(zephyr="openai/HuggingFaceH4/zephyr-7b-beta")
    cfg = parse_config(text, "lb.yaml", environ={})
    tiers = cfg.tiers
    assert list(tiers) == ["zephyr-beta", "gpt-4o", "gpt-3.5-turbo-16k"]
    assert [d.api_base for d in tiers["zephyr-beta"]] == ["http://0.0.0.0:8001/v1", "http://0.0.0.0:8002/v1",
                                                         "http://0.0.0.0:8003/v1"]
    assert [d.id for d in tiers["zephyr-beta"]] == ["zephyr-beta/openai/HuggingFaceH4/zephyr-7b-beta",
                                                   "zephyr-beta/openai/HuggingFaceH4/zephyr-7b-beta#2",
                                                   "zephyr-beta/openai/HuggingFaceH4/zephyr-7b-beta#3"]
    gpt = tiers["gpt-4o"][0]
    assert (gpt.provider, gpt.prefix, gpt.model, gpt.api_base) == ("openai", "openai", "gpt-4o",
                                                                    "https://api.openai.com/v1")
    r = cfg.router
    assert (r.num_retries, r.timeout, r.allowed_fails) == (2, 30.0, 3)  # router_settings wins over litellm_settings
    assert r.fallbacks == {"zephyr-beta": ["gpt-4o"]}
    assert r.context_window_fallbacks == {"zephyr-beta": ["gpt-3.5-turbo-16k"], "gpt-4o": ["gpt-3.5-turbo-16k"]}
    assert cfg.model_aliases == {"gpt-4": "gpt-4o"}
    assert len(warnings_about(cfg, ".rpm: ignored")) == 5
    assert len(warnings_about(cfg, ".tpm: ignored")) == 1
    assert len(warnings_about(cfg, "a key is written in the file")) == 2
    assert warnings_about(cfg, "routing_strategy") == [
        "lb.yaml:37: router_settings.routing_strategy: ignored: Tiergate tries a tier's deployments in file order "
        "and skips unhealthy ones."]
    assert [w.split(": ")[1] for w in warnings_about(cfg, "redis")] == [
        "router_settings.redis_host", "router_settings.redis_password", "router_settings.redis_port"]


def test_docs_load_balancing_verbatim_names_the_provider():
    text = DOCS_LOAD_BALANCING.format(zephyr="huggingface/HuggingFaceH4/zephyr-7b-beta")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "lb.yaml", environ={})
    assert e.value.line == 4
    assert str(e.value).startswith("lb.yaml:4: model_list[0].litellm_params.model: the provider 'huggingface' is "
                                   "not supported by Tiergate; supported prefixes: openai/, anthropic/, ollama/")


@pytest.mark.parametrize("model, provider, api_base, key_ref", [
    ("openai/gpt-4o-mini", "openai", "https://api.openai.com/v1", "os.environ/OPENAI_API_KEY"),
    ("anthropic/claude-haiku-4-5", "anthropic", "https://api.anthropic.com", "os.environ/ANTHROPIC_API_KEY"),
    ("ollama/gemma3:4b", "ollama", "http://localhost:11434", None),
    ("ollama_chat/qwen3:8b", "ollama", "http://localhost:11434", None),
    ("openrouter/anthropic/claude-sonnet-4", "openai", "https://openrouter.ai/api/v1", "os.environ/OPENROUTER_API_KEY"),
    ("groq/llama-3.3-70b-versatile", "openai", "https://api.groq.com/openai/v1", "os.environ/GROQ_API_KEY"),
    ("deepseek/deepseek-chat", "openai", "https://api.deepseek.com/v1", "os.environ/DEEPSEEK_API_KEY"),
    ("mistral/mistral-large-latest", "openai", "https://api.mistral.ai/v1", "os.environ/MISTRAL_API_KEY"),
    ("together_ai/meta-llama/Llama-3-70b", "openai", "https://api.together.xyz/v1", "os.environ/TOGETHER_API_KEY"),
    ("fireworks_ai/accounts/fireworks/models/x", "openai", "https://api.fireworks.ai/inference/v1",
     "os.environ/FIREWORKS_API_KEY"),
    ("xai/grok-4", "openai", "https://api.x.ai/v1", "os.environ/XAI_API_KEY"),
    ("lm_studio/qwen2.5-7b-instruct", "openai", "http://localhost:1234/v1", None),
    ("gpt-4o", "openai", "https://api.openai.com/v1", "os.environ/OPENAI_API_KEY"),
    ("claude-3-5-sonnet-20241022", "anthropic", "https://api.anthropic.com", "os.environ/ANTHROPIC_API_KEY"),
])
def test_provider_prefixes_and_default_bases(model, provider, api_base, key_ref):
    cfg = parse(f"""\
        model_list:
          - model_name: t
            litellm_params:
              model: {model}
        """)
    [d] = cfg.deployments
    assert (d.provider, d.api_base, d.api_key_ref) == (provider, api_base, key_ref)
    assert d.model == (model.split("/", 1)[1] if "/" in model else model)
    assert cfg.warnings == []


@pytest.mark.parametrize("prefix, given, stored", [
    ("openai", "http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),           # llama.cpp server: /v1 added
    ("openai", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
    ("openai", "https://openrouter.ai/api/v1/", "https://openrouter.ai/api/v1"),
    ("openai", "http://localhost:4000/v1/chat/completions", "http://localhost:4000/v1"),
    ("openai", "https://gateway.example/api/v3", "https://gateway.example/api/v3"),
    ("anthropic", "https://api.anthropic.com/v1/", "https://api.anthropic.com"),
    ("anthropic", "https://proxy.example/anthropic", "https://proxy.example/anthropic"),
    ("ollama", "http://gpu-box:11434/", "http://gpu-box:11434"),
    ("ollama_chat", "http://localhost:11434/v1", "http://localhost:11434"),
    ("ollama", "http://localhost:11434/api/chat", "http://localhost:11434"),
    ("hosted_vllm", "http://localhost:8000", "http://localhost:8000/v1"),
])
def test_api_base_is_normalised(prefix, given, stored):
    cfg = parse(f"""\
        model_list:
          - model_name: t
            litellm_params:
              model: {prefix}/m
              base_url: {given}
        """)
    assert cfg.deployments[0].api_base == stored


def test_custom_api_base_does_not_default_the_key():
    cfg = parse("""\
        model_list:
          - model_name: local
            litellm_params: {model: openai/qwen, api_base: "http://localhost:8080/v1"}
        """)
    assert cfg.deployments[0].api_key_ref is None


def test_api_base_from_environment_reference():
    cfg = parse("""\
        model_list:
          - model_name: t
            litellm_params: {model: hosted_vllm/qwen, api_base: os.environ/VLLM_BASE}
        environment_variables:
          VLLM_BASE: http://10.0.0.5:8000
        """)
    assert cfg.deployments[0].api_base == "http://10.0.0.5:8000/v1"
    assert cfg.environment_variables == {"VLLM_BASE": "http://10.0.0.5:8000"}
    cfg = parse("""\
        model_list:
          - model_name: t
            litellm_params: {model: lm_studio/qwen}
        """, environ={"LM_STUDIO_API_BASE": "http://studio:1234/v1"})
    assert cfg.deployments[0].api_base == "http://studio:1234/v1"


def test_every_litellm_param_lands_where_it_belongs():
    cfg = parse("""\
        model_list:
          - model_name: coder
            litellm_params:
              model: ollama_chat/qwen3:8b
              api_base: http://localhost:11434
              timeout: 120
              stream_timeout: "30"
              max_retries: 1
              num_ctx: 32768
              keep_alive: -1
              max_tokens: 4096
              temperature: 0.2
              top_p: 0.9
              extra_headers: {X-Trace: "1", X-Num: 5}
              input_cost_per_token: 0.0
              output_cost_per_token: "2e-6"
            model_info:
              id: local-coder
              location: local
              max_input_tokens: 65536
          - model_name: coder
            litellm_params:
              model: openai/gpt-5-codex
              organization: org-abc
              cache_read_input_token_cost: 1.25e-7
            model_info: {max_input_tokens: 400000, max_output_tokens: 128000, cache_creation_input_token_cost: 0.0000005}
        """)
    local, cloud = cfg.deployments
    assert local.id == "local-coder" and local.location == "local"
    assert (local.timeout, local.stream_timeout, local.max_retries) == (120.0, 30.0, 1)
    assert (local.context_length, local.keep_alive, local.max_output_tokens) == (32768, -1, 4096)
    assert local.extra_params == {"temperature": 0.2, "top_p": 0.9}
    assert local.extra_headers == {"X-Trace": "1", "X-Num": "5"}
    assert (local.input_cost_per_token, local.output_cost_per_token) == (0.0, 2e-6)
    assert cloud.api == "responses" and cloud.context_length is None and cloud.max_output_tokens == 128000
    assert cloud.extra_headers == {"OpenAI-Organization": "org-abc"}
    assert cloud.cache_read_input_token_cost == 1.25e-7 and cloud.cache_creation_input_token_cost == 5e-7
    assert cloud.id == "coder/openai/gpt-5-codex"
    assert cfg.warnings == []


def test_ollama_context_from_max_input_tokens_and_options_warned_elsewhere():
    cfg = parse("""\
        model_list:
          - model_name: a
            litellm_params: {model: ollama/llama3.2}
            model_info: {max_input_tokens: 8192}
          - model_name: b
            litellm_params: {model: anthropic/claude-haiku-4-5, num_ctx: 4096}
        """)
    assert cfg.deployments[0].context_length == 8192
    assert cfg.deployments[1].context_length is None
    assert warnings_about(cfg, "num_ctx") == [
        "cfg.yaml:6: model_list[1].litellm_params.num_ctx: ignored: num_ctx is an Ollama option and this is a "
        "anthropic/ model."]


@pytest.mark.parametrize("model, info, api", [
    ("openai/gpt-5-codex", "{}", "responses"),
    ("openai/codex-mini-latest", "{}", "responses"),
    ("openai/gpt-5", "{}", "chat"),
    ("openai/gpt-5", "{api: responses}", "responses"),
    ("openai/o3", "{mode: responses}", "responses"),
    ("openai/gpt-5-codex", "{api: chat}", "chat"),
])
def test_responses_api(model, info, api):
    cfg = parse(f"""\
        model_list:
          - model_name: t
            litellm_params: {{model: {model}}}
            model_info: {info}
        """)
    assert cfg.deployments[0].api == api


def test_embedding_entries_load_and_other_modes_are_skipped():
    cfg = parse("""\
        model_list:
          - model_name: chat
            litellm_params: {model: ollama/qwen3:4b}
          - model_name: embed
            litellm_params: {model: ollama/nomic-embed-text}
            model_info: {mode: embedding}
          - model_name: img
            litellm_params: {model: openai/gpt-image-1}
            model_info: {mode: image_generation}
        """)
    assert [(d.tier, d.mode) for d in cfg.deployments] == [("chat", "chat"), ("embed", "embedding")]
    assert cfg.warnings == ["cfg.yaml:9: model_list[2].model_info.mode: skipped: Tiergate serves chat and "
                            "embedding models, not mode 'image_generation'."]


def test_explicit_ids_take_priority_over_generated_ones():
    cfg = parse("""\
        model_list:
          - model_name: t
            litellm_params: {model: ollama/m}
          - model_name: t
            litellm_params: {model: ollama/m}
            model_info: {id: "t/ollama/m"}
          - model_name: t
            litellm_params: {model: ollama/m}
            model_info: {id: 7}
        """)
    assert [d.id for d in cfg.deployments] == ["t/ollama/m#2", "t/ollama/m", "7"]


def test_default_fallbacks_fill_tiers_without_their_own():
    cfg = parse("""\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a}}
          - {model_name: b, litellm_params: {model: ollama/b}}
          - {model_name: c, litellm_params: {model: ollama/c}}
        router_settings:
          fallbacks: [{a: c}]
          default_fallbacks: [b]
        """)
    assert cfg.router.fallbacks == {"a": ["c"], "b": [], "c": ["b"]}


def test_fallback_to_itself_is_dropped_with_a_warning():
    cfg = parse("""\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a}}
          - {model_name: b, litellm_params: {model: ollama/b}}
        router_settings:
          fallbacks: {a: [a, b]}
        """)
    assert cfg.router.fallbacks == {"a": ["b"]}
    assert cfg.warnings == ["cfg.yaml:5: router_settings.fallbacks.a: a tier cannot fall back to itself; that "
                            "entry is dropped."]


def test_router_settings_numbers_and_stream_timeout_default():
    cfg = parse("""\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a, stream_timeout: 5}}
          - {model_name: a, litellm_params: {model: ollama/b}}
        litellm_settings: {request_timeout: 90, num_retries: 4, cooldown_time: 10}
        router_settings: {allowed_fails: 0, retry_after: 0, stream_timeout: 45, disable_cooldowns: true}
        """)
    r = cfg.router
    assert (r.timeout, r.num_retries, r.allowed_fails, r.retry_after, r.cooldown_time) == (90.0, 4, 0, 0.0, 0.0)
    assert [d.stream_timeout for d in cfg.deployments] == [5.0, 45.0]


def test_aliases_from_both_places_tiergate_wins():
    cfg = parse("""\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
          - {model_name: helper, litellm_params: {model: ollama/b}}
        router_settings:
          model_group_alias:
            gpt-4: coder
            claude-3-haiku: {model: helper, hidden: true}
        tiergate_settings:
          model_aliases:
            "claude-*haiku*": helper
            gpt-4: helper
        """)
    assert cfg.model_aliases == {"gpt-4": "helper", "claude-3-haiku": "helper", "claude-*haiku*": "helper"}


def test_tiergate_settings_server_and_sections():
    cfg = parse("""\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a}}
        tiergate_settings:
          host: localhost
          port: 0
          max_body_bytes: 8MB
          max_header_bytes: 16384
          request_timeout: 300
          max_concurrent_streams: 8
          require_auth: false
          allowed_origins: ["http://localhost:3000/"]
          log_content: true
          allow_concrete_models: false
          privacy:
            mode: strict
            local_equivalents: {a: a}
          budgets:
          ledger: {retention_days: 90}
          colour: blue
        """)
    s = cfg.server
    assert (s.host, s.port, s.max_body_bytes, s.max_header_bytes) == ("localhost", 0, 8 * 1024 * 1024, 16384)
    assert (s.request_timeout, s.max_concurrent_streams, s.require_auth, s.log_content) == (300.0, 8, False, True)
    assert s.allowed_origins == ["http://localhost:3000"]
    assert cfg.allow_concrete_models is False
    assert set(cfg.sections) == {"privacy", "budgets", "ledger"}
    privacy = cfg.section("privacy")
    assert privacy.data == {"mode": "strict", "local_equivalents": {"a": "a"}}
    assert privacy.line_of("local_equivalents", "a") == 16
    err = privacy.error("unknown mode 'strict'", "mode")
    assert str(err) == "cfg.yaml:15: tiergate_settings.privacy.mode: unknown mode 'strict'"
    assert cfg.section("budgets").data == {}
    assert cfg.section("cache").data == {} and cfg.section("cache").path == ("tiergate_settings", "cache")
    assert cfg.warnings == ["cfg.yaml:19: tiergate_settings.colour: unknown key, ignored"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "myhost.lan"])
def test_non_loopback_host_forces_auth(host):
    cfg = parse(f"""\
        model_list:
          - {{model_name: a, litellm_params: {{model: ollama/a}}}}
        tiergate_settings:
          host: "{host}"
          require_auth: false
        """)
    assert cfg.server.require_auth is True
    assert cfg.warnings == [f"cfg.yaml:5: tiergate_settings.require_auth: require_auth: false is overridden because "
                            f"host {host} can be reached from other machines; every client needs an agent key."]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_host_may_switch_auth_off(host):
    cfg = parse(f"""\
        model_list:
          - {{model_name: a, litellm_params: {{model: ollama/a}}}}
        tiergate_settings: {{host: "{host}", require_auth: false}}
        """)
    assert cfg.server.require_auth is False and cfg.warnings == []


def test_lines_and_keys_as_written():
    cfg = parse("""\
        # comment
        model_list:
          - model_name: a
            litellm_params:
              model: ollama/a
        tiergate_settings:
          agents:
            on: {tier: a}
            1: {tier: a}
            list:
              - x
              - y
        """)
    agents = cfg.section("agents")
    assert set(agents.data) == {"on", "1", "list"}  # YAML 1.1 would have made these True and 1
    assert agents.line_of("on") == 8 and agents.line_of("1") == 9
    assert agents.line_of("list", 1) == 12
    assert agents.line_of("list", 1, "deeper") == 12
    assert cfg.deployments[0].line == 3


def test_merge_keys_and_anchors():
    cfg = parse("""\
        x-local: &local
          api_base: http://localhost:11434
          keep_alive: 10m
        model_list:
          - model_name: a
            litellm_params:
              <<: *local
              model: ollama/a
        """)
    assert (cfg.deployments[0].api_base, cfg.deployments[0].keep_alive) == ("http://localhost:11434", "10m")
    assert cfg.warnings == ["cfg.yaml:1: x-local: unknown key, ignored"]


def test_duplicate_keys_warn_and_last_wins():
    cfg = parse("""\
        model_list:
          - model_name: a
            litellm_params: {model: ollama/a, num_ctx: 1024, num_ctx: 2048}
        """)
    assert cfg.deployments[0].context_length == 2048
    assert cfg.warnings == ["cfg.yaml:3: model_list[0].litellm_params.num_ctx: duplicate key: the one on line 3 wins "
                            "over line 3"]


def test_typos_get_a_suggestion():
    cfg = parse("""\
        model_list:
          - model_name: a
            litellm_params: {model: openai/a, api_bse: "http://x:1/v1"}
            model_info: {locaton: local, supports_vision: true}
        router_settings: {num_retires: 3}
        """)
    assert cfg.warnings == [
        "cfg.yaml:3: model_list[0].litellm_params.api_bse: unknown key, sent to the upstream as a request "
        "parameter; did you mean 'api_base'?",
        "cfg.yaml:4: model_list[0].model_info.locaton: not a key Tiergate reads; did you mean 'location'?",
        "cfg.yaml:5: router_settings.num_retires: unknown key, ignored; did you mean 'num_retries'?",
    ]


def test_include_adds_model_list_entries(tmp_path: Path):
    (tmp_path / "models.yaml").write_text("model_list:\n  - model_name: b\n    litellm_params: {model: ollama/b}\n"
                                          "litellm_settings: {}\n")
    main = tmp_path / "config.yaml"
    main.write_text("include:\n  - models.yaml\nmodel_list:\n  - {model_name: a, litellm_params: {model: ollama/a}}\n")
    cfg = load_config(main, environ={})
    assert [d.tier for d in cfg.deployments] == ["a", "b"]
    assert cfg.deployments[1].line == 2
    assert cfg.warnings == [f"{tmp_path / 'models.yaml'}:4: litellm_settings: ignored: only model_list is read from "
                            f"an included file."]


def test_environment_variables_literal_secrets_warn_without_values():
    cfg = parse("""\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a}}
        environment_variables:
          REDIS_HOST: localhost
          REDIS_PORT: 6379
          GROQ_API_KEY: gsk_verysecretvalue123
          OTHER_TOKEN: os.environ/REAL_TOKEN
        """)
    assert cfg.environment_variables == {"REDIS_HOST": "localhost", "REDIS_PORT": "6379",
                                         "GROQ_API_KEY": "gsk_verysecretvalue123", "OTHER_TOKEN": "os.environ/REAL_TOKEN"}
    assert len(cfg.warnings) == 1 and cfg.warnings[0].startswith("cfg.yaml:6: environment_variables.GROQ_API_KEY: a "
                                                                 "key is written in the file")
    assert "gsk_" not in cfg.warnings[0]


def test_load_config_reads_files_and_reports_missing(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - {model_name: a, litellm_params: {model: ollama/a}}\n")
    assert load_config(path).path == str(path)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.yaml")
    assert str(e.value) == f"{tmp_path / 'nope.yaml'}: the config file does not exist."
    path.write_bytes(b"model_list: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
