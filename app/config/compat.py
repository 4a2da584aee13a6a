"""LiteLLM's proxy config read the way LiteLLM reads it: model_list entries, litellm_settings, router_settings,
general_settings, environment_variables and include. Key names follow LiteLLM's docs (proxy/configs,
proxy/config_settings); keys LiteLLM knows that Tiergate does not use are listed here so they warn as "ignored"
rather than "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.config.defaults import BARE_MODEL_PREFIXES, PROVIDER_HINT, PROVIDERS, RESPONSES_ONLY_PREFIXES
from app.config.loader import (Doc, KeyPath, check_keys, count, expected, flag, mapping, money, seconds,
                               show, suggest, text_value, tier_ref)
from app.config.references import ENV_NAME, is_reference, reference_kind, reference_name, reference_problem
from app.config.schema import Deployment, RouterSettings
from app.errors import ConfigError

TOP_USED = frozenset(("model_list", "litellm_settings", "router_settings", "general_settings",
                      "environment_variables", "tiergate_settings", "include"))
TOP_IGNORED = frozenset("callback_settings guardrails mcp_servers credential_list assistant_settings files_settings "
                        "finetune_settings vector_store_registry search_tools pass_through_endpoints".split())

ENTRY_USED = frozenset(("model_name", "litellm_params", "model_info"))
PARAMS_USED = frozenset(
    "model api_base base_url api_key timeout stream_timeout max_retries num_retries rpm tpm num_ctx keep_alive "
    "max_tokens extra_headers input_cost_per_token output_cost_per_token cache_read_input_token_cost "
    "cache_creation_input_token_cost custom_llm_provider organization".split())
PARAMS_IGNORED = frozenset(
    "api_version tags order weight use_in_pass_through use_litellm_proxy drop_params additional_drop_params "
    "region_name mock_response input_cost_per_second output_cost_per_second litellm_credential_name "
    "configurable_clientside_auth_params merge_reasoning_content_in_choices max_budget budget_duration "
    "max_parallel_requests tpm_limit rpm_limit metadata model_info litellm_trace_id".split())
INFO_USED = frozenset("id mode max_input_tokens max_output_tokens location api input_cost_per_token "
                      "output_cost_per_token cache_read_input_token_cost cache_creation_input_token_cost".split())
COST_KEYS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
             "cache_creation_input_token_cost")
CHAT_MODES = {None: "chat", "chat": "chat", "completion": "chat", "responses": "chat", "embedding": "embedding"}

ROUTER_USED = frozenset("num_retries timeout stream_timeout allowed_fails cooldown_time disable_cooldowns retry_after "
                        "fallbacks context_window_fallbacks default_fallbacks model_group_alias".split())
ROUTER_IGNORED = frozenset(
    "routing_strategy routing_strategy_args redis_host redis_password redis_port redis_db redis_url "
    "enable_pre_call_check enable_pre_call_checks enable_tag_filtering tag_filtering_match_any retry_policy "
    "allowed_fails_policy content_policy_fallbacks default_max_parallel_requests default_priority polling_interval "
    "max_fallbacks default_litellm_params debug_level client_ttl cache_kwargs cache_responses caching_groups "
    "alerting_config assistants_config set_verbose provider_budget_config model_group_retry_policy "
    "router_general_settings optional_pre_call_checks deployment_affinity_ttl_seconds ignore_invalid_deployments "
    "search_tools guardrail_list routing_groups".split())
LITELLM_USED = ROUTER_USED | {"request_timeout"}
LITELLM_IGNORED = ROUTER_IGNORED | frozenset(
    "drop_params set_verbose json_logs success_callback failure_callback callbacks service_callbacks "
    "service_callback turn_off_message_logging redact_user_api_key_info langfuse_default_tags modify_params "
    "enable_preview_features force_ipv4 cache cache_params mcp_aliases disable_end_user_cost_tracking "
    "disable_end_user_cost_tracking_prometheus_only key_generation_settings disable_add_transform_inline_image_block "
    "use_chat_completions_url_for_anthropic_messages disable_hf_tokenizer_download enable_json_schema_validation "
    "enable_key_alias_format_validation disable_copilot_system_to_assistant max_budget budget_duration "
    "max_internal_user_budget internal_user_budget_duration default_internal_user_params default_team_settings "
    "default_key_generate_params upperbound_key_generate_params public_teams ssl_verify telemetry "
    "max_parallel_requests return_response_headers add_function_to_prompt".split())
GENERAL_IGNORED = frozenset(
    "completion_model disable_spend_logs disable_spend_updates disable_master_key_return "
    "disable_retry_on_max_parallel_request_limit_error disable_reset_budget disable_adding_master_key_hash_to_db "
    "disable_responses_id_security enable_jwt_auth enforce_user_param reject_clientside_metadata_tags allowed_routes "
    "key_management_system database_url database_connection_pool_limit database_connection_timeout "
    "allow_requests_on_db_unavailable custom_auth max_parallel_requests global_max_parallel_requests "
    "infer_model_from_keys background_health_checks health_check_interval alerting alerting_threshold "
    "use_client_credentials_pass_through_routes health_check_details public_routes alert_types enforced_params "
    "enable_oauth2_auth use_x_forwarded_for service_account_settings image_generation_model store_model_in_db "
    "supported_db_objects user_mcp_management_mode store_prompts_in_spend_logs max_request_size_mb "
    "max_response_size_mb proxy_budget_rescheduler_min_time proxy_budget_rescheduler_max_time proxy_batch_write_at "
    "proxy_batch_polling_interval alerting_args custom_key_generate allowed_ips embedding_model "
    "default_team_disabled alert_to_webhook_url key_management_settings allow_user_auth user_api_key_cache_ttl "
    "disable_prisma_schema_update litellm_key_header_name moderation_model custom_sso allow_client_side_credentials "
    "admin_only_routes use_azure_key_vault use_google_kms spend_report_frequency ui_access_mode litellm_jwtauth "
    "litellm_license oauth2_config_mappings pass_through_endpoints enable_oauth2_proxy_auth forward_openai_org_id "
    "forward_client_headers_to_llm_api maximum_spend_logs_retention_period maximum_spend_logs_retention_interval "
    "master_key".split())
SECRETISH = ("KEY", "SECRET", "TOKEN", "PASSWORD")
KEY_ADVICE = ("a key is written in the file; store it in the keychain with `tiergate keys import-env` "
              "(or `tiergate keys set`) and write keychain/NAME or os.environ/NAME here instead")


# --------------------------------------------------------------------------------------- model_list entries
def deployment(doc: Doc, path: KeyPath, entry: Any, env: Mapping[str, str]) -> Deployment | None:
    """One model_list entry, or None for an entry Tiergate cannot serve (skipped with a warning)."""
    if not isinstance(entry, dict):
        raise expected(doc, path, "a model entry (model_name: and litellm_params:)", entry)
    check_keys(doc, path, {k: v for k, v in entry.items() if k not in ("rpm", "tpm")}, ENTRY_USED)
    if "model_name" not in entry:
        raise doc.error(path, "missing model_name: the tier (or model name) clients ask for.")
    tier = text_value(doc, path + ("model_name",), entry["model_name"], "a tier name (text; quote numbers)")
    pp = path + ("litellm_params",)
    params = mapping(doc, pp, entry.get("litellm_params"))
    info = mapping(doc, path + ("model_info",), entry.get("model_info"))
    ip = path + ("model_info",)
    for where, source in ((path, entry), (pp, params)):
        for key in ("rpm", "tpm"):
            if key in source:
                doc.warn(where + (key,), "ignored (Tiergate does not enforce per-deployment rate limits)")
    if "model" not in params:
        raise doc.error(pp if "litellm_params" in entry else path,
                        "missing litellm_params.model, the upstream model such as ollama_chat/qwen3:8b.")
    mode = info.get("mode")
    if not isinstance(mode, (str, type(None))) or mode not in CHAT_MODES:
        doc.warn(ip + ("mode",), f"skipped: Tiergate serves chat and embedding models, not mode {show(mode)}.")
        return None

    if isinstance(params["model"], str) and "*" in params["model"]:
        doc.warn(pp + ("model",), "skipped: wildcard models are not supported; list each model you want to use "
                                  "(tiergate_settings.model_aliases can map name patterns to tiers).")
        return None
    prefix, provider, model = _provider(doc, pp, params)
    spec = PROVIDERS[prefix]
    base_path = pp + ("api_base" if "api_base" in params else "base_url",)
    raw_base = params.get("api_base", params.get("base_url"))
    if raw_base is None and spec.base_env and env.get(spec.base_env):
        raw_base = env[spec.base_env]
    if raw_base is None and spec.api_base is None:
        raise doc.error(pp, f"{prefix}/ needs an api_base, the server's address such as http://localhost:8000/v1.")
    api_base = spec.api_base if raw_base is None else _api_base(doc, base_path, raw_base, provider, env)

    d = Deployment(id="", tier=tier, provider=provider, model=model, api_base=api_base, line=doc.line(path),
                   prefix=prefix, mode=CHAT_MODES[mode])  # type: ignore[arg-type]
    d.api_key_ref = _api_key(doc, pp, params, api_base == spec.api_base, spec.key_env)
    for key in ("timeout", "stream_timeout"):
        if key in params:
            setattr(d, key, seconds(doc, pp + (key,), params[key]))
    for key in ("max_retries", "num_retries"):
        if key in params:
            d.max_retries = count(doc, pp + (key,), params[key])
    if "extra_headers" in params:
        d.extra_headers = _headers(doc, pp + ("extra_headers",), params["extra_headers"])
    if "organization" in params and params["organization"] is not None:
        d.extra_headers.setdefault("OpenAI-Organization",
                                   text_value(doc, pp + ("organization",), params["organization"]))
    _ollama_options(doc, pp, params, ip, info, d)
    if "max_output_tokens" in info:
        d.max_output_tokens = count(doc, ip + ("max_output_tokens",), info["max_output_tokens"], minimum=1)
    elif "max_tokens" in params:
        d.max_output_tokens = count(doc, pp + ("max_tokens",), params["max_tokens"], minimum=1)
    for key in COST_KEYS:
        for where, source in ((pp, params), (ip, info)):
            if key in source and getattr(d, key) is None:
                setattr(d, key, money(doc, where + (key,), source[key]))
    if "location" in info:
        if info["location"] not in ("local", "trusted", "cloud"):
            raise expected(doc, ip + ("location",), "local, trusted or cloud", info["location"])
        d.location = info["location"]
    d.api = _api(doc, ip, info, provider, model, mode)
    if "id" in info:
        if info["id"] is None or isinstance(info["id"], (dict, list, bool)) or not str(info["id"]).strip():
            raise expected(doc, ip + ("id",), "a unique deployment id (text)", info["id"])
        d.id = str(info["id"]).strip()
    d.extra_params = {k: v for k, v in params.items() if k not in PARAMS_USED and k not in PARAMS_IGNORED}
    for key in params:
        if key in PARAMS_IGNORED:
            doc.warn(pp + (key,), "ignored (a LiteLLM setting Tiergate does not use)")
        elif key in d.extra_params and suggest(key, PARAMS_USED):
            doc.warn(pp + (key,), "unknown key, sent to the upstream as a request parameter" + suggest(key, PARAMS_USED))
    for key in info:
        if key not in INFO_USED and suggest(key, INFO_USED):
            doc.warn(ip + (key,), "not a key Tiergate reads" + suggest(key, INFO_USED))
    return d


def _provider(doc: Doc, pp: KeyPath, params: dict[str, Any]) -> tuple[str, str, str]:
    """(prefix as written, provider, upstream model) from litellm_params.model (+ custom_llm_provider)."""
    model = text_value(doc, pp + ("model",), params["model"], "a model such as ollama_chat/qwen3:8b")
    custom = params.get("custom_llm_provider")
    if custom is not None:
        prefix = text_value(doc, pp + ("custom_llm_provider",), custom, "a provider name such as openai")
        where: KeyPath = pp + ("custom_llm_provider",)
        model = model[len(prefix) + 1:] if model.startswith(prefix + "/") else model
    elif "/" in model:
        prefix, model = model.split("/", 1)
        where = pp + ("model",)
    else:
        prefix = next((p for start, p in BARE_MODEL_PREFIXES if model.startswith(start)), "")
        where = pp + ("model",)
        if not prefix:
            raise doc.error(where, f"{model!r} needs a provider prefix, such as openai/{model} or "
                                   f"ollama_chat/{model}; {PROVIDER_HINT}.")
    if prefix not in PROVIDERS:
        raise doc.error(where, f"the provider {prefix!r} is not supported by Tiergate; {PROVIDER_HINT}.")
    if not model.strip():
        raise doc.error(pp + ("model",), f"the model name after {prefix}/ is missing.")
    return prefix, PROVIDERS[prefix].provider, model.strip()


def _api_base(doc: Doc, path: KeyPath, raw: Any, provider: str, env: Mapping[str, str]) -> str:
    if isinstance(raw, str) and reference_kind(raw) == "env":
        name = reference_name(raw)
        if not env.get(name):
            raise doc.error(path, f"refers to the environment variable {name}, which is not set.")
        raw = env[name]
    elif isinstance(raw, str) and reference_kind(raw) == "keychain":
        raise doc.error(path, "an address cannot come from the keychain; write it here or use os.environ/NAME.")
    url = text_value(doc, path, raw, "an http(s) URL such as http://localhost:8080/v1").rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise expected(doc, path, "an http(s) URL such as http://localhost:8080/v1", raw, secret="@" in str(raw))
    strip = {"openai": ("/chat/completions", "/responses"), "anthropic": ("/v1/messages", "/messages", "/v1"),
             "ollama": ("/api/chat", "/api", "/v1")}[provider]
    for tail in strip:
        if url.endswith(tail):
            url = url[: -len(tail)].rstrip("/")
    if provider == "openai" and not urlsplit(url).path:
        url += "/v1"
    return url


def _api_key(doc: Doc, pp: KeyPath, params: dict[str, Any], default_base: bool, key_env: str | None) -> str | None:
    raw = params.get("api_key")
    path = pp + ("api_key",)
    if raw is None or raw == "":
        return f"os.environ/{key_env}" if default_base and key_env else None
    if not isinstance(raw, str):
        raise expected(doc, path, "a key reference such as os.environ/OPENAI_API_KEY", raw, secret=True)
    if is_reference(raw):
        problem = reference_problem(raw)
        if problem:
            raise doc.error(path, problem + ".")
        return raw
    doc.warn(path, KEY_ADVICE + ".")
    return raw


def _headers(doc: Doc, path: KeyPath, raw: Any) -> dict[str, str]:
    headers = mapping(doc, path, raw)
    out: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise expected(doc, path + (name,), "a header value (text)", value, secret=True)
        out[name] = str(value)
    return out


def _ollama_options(doc: Doc, pp: KeyPath, params: dict[str, Any], ip: KeyPath, info: dict[str, Any],
                    d: Deployment) -> None:
    for key in ("num_ctx", "keep_alive"):
        if key in params and d.provider != "ollama":
            doc.warn(pp + (key,), f"ignored: {key} is an Ollama option and this is a {d.prefix}/ model.")
    if d.provider != "ollama":
        return
    if "num_ctx" in params:
        d.context_length = count(doc, pp + ("num_ctx",), params["num_ctx"], minimum=1,
                                 what="a context length in tokens, such as 32768")
    elif "max_input_tokens" in info:
        d.context_length = count(doc, ip + ("max_input_tokens",), info["max_input_tokens"], minimum=1,
                                 what="a number of tokens, such as 32768")
    if "keep_alive" in params:
        d.keep_alive = _keep_alive(doc, pp + ("keep_alive",), params["keep_alive"])


def _keep_alive(doc: Doc, path: KeyPath, value: Any) -> str | int:
    import re

    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|-?\d+", value.strip()):
        return value.strip()
    raise expected(doc, path, 'a duration such as "30m", "1h" or a number of seconds (-1: keep loaded)', value)


def _api(doc: Doc, ip: KeyPath, info: dict[str, Any], provider: str, model: str, mode: Any) -> Any:
    api = info.get("api")
    if api is not None and api not in ("chat", "responses"):
        raise expected(doc, ip + ("api",), "chat or responses", api)
    if api is None:
        api = "responses" if mode == "responses" or (provider == "openai" and model.startswith(
            RESPONSES_ONLY_PREFIXES)) else "chat"
    if api == "responses" and provider != "openai":
        raise doc.error(ip + ("api" if "api" in info else "mode",),
                        "the Responses API is only for OpenAI-compatible deployments (openai/… models).")
    return api


# ------------------------------------------------------------------------------------------ settings sections
def router_settings(doc: Doc, root: dict[str, Any], deployments: list[Deployment]) -> RouterSettings:
    """RouterSettings from litellm_settings, then router_settings (which wins, as in LiteLLM). A section-level
    stream_timeout becomes the default of deployments without their own."""
    tiers = {d.tier for d in deployments}
    litellm = mapping(doc, ("litellm_settings",), root.get("litellm_settings"))
    router = mapping(doc, ("router_settings",), root.get("router_settings"))
    general = mapping(doc, ("general_settings",), root.get("general_settings"))
    for name, data, used, ignored in (("litellm_settings", litellm, LITELLM_USED, LITELLM_IGNORED),
                                      ("router_settings", router, ROUTER_USED, ROUTER_IGNORED)):
        for key in data:
            if key == "routing_strategy":
                doc.warn((name, key), "ignored: Tiergate tries a tier's deployments in file order and skips "
                                      "unhealthy ones.")
        check_keys(doc, (name,), {k: v for k, v in data.items() if k != "routing_strategy"}, used, ignored)
    if "master_key" in general:
        doc.warn(("general_settings", "master_key"), "ignored: Tiergate uses its own agent keys; create the admin "
                                                     "key with `tiergate keys master`.")
    check_keys(doc, ("general_settings",), {k: v for k, v in general.items() if k != "master_key"}, frozenset(),
               GENERAL_IGNORED, "a LiteLLM proxy setting Tiergate does not use")

    r = RouterSettings()
    stream_timeout: float | None = None
    for name, data in (("litellm_settings", litellm), ("router_settings", router)):
        p = lambda key: (name, key)  # noqa: E731
        if "num_retries" in data:
            r.num_retries = count(doc, p("num_retries"), data["num_retries"])
        for key in ("request_timeout", "timeout"):
            if key in data and (key == "timeout" or name == "litellm_settings"):
                r.timeout = seconds(doc, p(key), data[key])
        if "stream_timeout" in data:
            stream_timeout = seconds(doc, p("stream_timeout"), data["stream_timeout"])
        if "allowed_fails" in data:
            r.allowed_fails = count(doc, p("allowed_fails"), data["allowed_fails"])
        if "cooldown_time" in data:
            r.cooldown_time = seconds(doc, p("cooldown_time"), data["cooldown_time"], zero_ok=True)
        if "disable_cooldowns" in data and flag(doc, p("disable_cooldowns"), data["disable_cooldowns"]):
            r.cooldown_time = 0.0
        if "retry_after" in data:
            r.retry_after = seconds(doc, p("retry_after"), data["retry_after"], zero_ok=True)
        if "fallbacks" in data:
            r.fallbacks |= fallbacks(doc, p("fallbacks"), data["fallbacks"], tiers)
        if "context_window_fallbacks" in data:
            r.context_window_fallbacks |= fallbacks(doc, p("context_window_fallbacks"),
                                                    data["context_window_fallbacks"], tiers)
        if "default_fallbacks" in data:
            default = _tier_list(doc, p("default_fallbacks"), data["default_fallbacks"], tiers)
            for tier in sorted(tiers):
                r.fallbacks.setdefault(tier, [t for t in default if t != tier])
    for d in deployments:
        if d.stream_timeout is None:
            d.stream_timeout = stream_timeout
    return r


def fallbacks(doc: Doc, path: KeyPath, raw: Any, tiers: set[str]) -> dict[str, list[str]]:
    """`[{tier: [other tiers]}, …]` (LiteLLM's form) or `{tier: [other tiers]}`."""
    items: list[tuple[KeyPath, dict[str, Any]]]
    if isinstance(raw, dict):
        items = [(path, raw)]
    elif isinstance(raw, list) and all(isinstance(i, dict) for i in raw):
        items = [(path + (i,), item) for i, item in enumerate(raw)]
    elif raw is None:
        items = []
    else:
        raise expected(doc, path, "a list of `- tier: [fallback tiers]` lines", raw)
    out: dict[str, list[str]] = {}
    for ipath, item in items:
        for source, targets in item.items():
            spath = ipath + (source,)
            tier_ref(doc, spath, source, tiers)
            out[source] = [t for t in _tier_list(doc, spath, targets, tiers) if t != source]
            if len(out[source]) != len(_as_list(targets)):
                doc.warn(spath, "a tier cannot fall back to itself; that entry is dropped.")
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _tier_list(doc: Doc, path: KeyPath, raw: Any, tiers: set[str]) -> list[str]:
    if raw is None or isinstance(raw, dict):
        raise expected(doc, path, "a list of tier names", raw)
    values = _as_list(raw)
    return [tier_ref(doc, path + (i,) if isinstance(raw, list) else path, v, tiers) for i, v in enumerate(values)]


def model_group_alias(doc: Doc, root: dict[str, Any], tiers: set[str]) -> dict[str, str]:
    """router_settings.model_group_alias (also accepted under litellm_settings): name -> tier, where a value
    may be `{model: tier, hidden: true}`."""
    out: dict[str, str] = {}
    for section in ("litellm_settings", "router_settings"):
        data = root.get(section)
        raw = data.get("model_group_alias") if isinstance(data, dict) else None
        path: KeyPath = (section, "model_group_alias")
        for name, target in mapping(doc, path, raw).items():
            if isinstance(target, dict):
                out[name] = tier_ref(doc, path + (name, "model"), target.get("model"), tiers)
            else:
                out[name] = tier_ref(doc, path + (name,), target, tiers)
    return out


def environment_variables(doc: Doc, raw: Any) -> dict[str, str]:
    path: KeyPath = ("environment_variables",)
    out: dict[str, str] = {}
    for name, value in mapping(doc, path, raw).items():
        if not ENV_NAME.fullmatch(name):
            raise doc.error(path + (name,), "expected an environment variable name (letters, digits and _).")
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise expected(doc, path + (name,), "a value (text or a number)", value, secret=True)
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
        if any(s in name.upper() for s in SECRETISH) and not is_reference(out[name]):
            doc.warn(path + (name,), KEY_ADVICE + ".")
    return out


def includes(doc: Doc, raw: Any) -> list[Doc]:
    """LiteLLM's `include: [other.yaml]`: files beside this one whose model_list entries are added."""
    if raw is None:
        return []
    path: KeyPath = ("include",)
    names = _as_list(raw)
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise expected(doc, path, "a list of file names", raw)
    if doc.path is None:
        raise doc.error(path, "include needs the config to be read from a file.")
    out = []
    for i, name in enumerate(names):
        ipath = path + (i,) if isinstance(raw, list) else path
        target = Path(doc.path).parent / Path(name).expanduser()
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = "does not exist" if isinstance(e, FileNotFoundError) else "cannot be read"
            raise doc.error(ipath, f"the included file {name!r} {reason}.") from None
        inc = Doc(text, str(target), doc.warnings, doc.order, rank=i + 1)
        if inc.data is not None and not isinstance(inc.data, dict):
            raise ConfigError("expected `key: value` lines at the top level of an included file.", path=str(target))
        for key in inc.data or {}:
            if key != "model_list":
                inc.warn((key,), "ignored: only model_list is read from an included file.")
        out.append(inc)
    return out

