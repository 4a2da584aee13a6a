"""Whatever the file holds, loading gives a Config or a ConfigError with a line: never another exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Config, parse_config
from app.errors import ConfigError

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                    st.sampled_from(["", "soon", "30m", "ollama/a", "openai/x", "gemini/x", "a", "b",
                                     "http://localhost:1", "os.environ/X", "keychain/", "*", "32MB", "0.0.0.0"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(["a", "b", "model", "x"]),
                                                                      inner, max_size=3)), max_leaves=6)


def keyed(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


params = keyed(["model", "api_base", "api_key", "timeout", "stream_timeout", "max_retries", "num_ctx", "keep_alive",
                "max_tokens", "extra_headers", "input_cost_per_token", "custom_llm_provider", "organization", "rpm"])
info = keyed(["id", "mode", "max_input_tokens", "max_output_tokens", "location", "api"])
entry = st.fixed_dictionaries({"model_name": st.sampled_from(["a", "b", 3, None])},
                              optional={"litellm_params": st.one_of(params, values), "model_info": st.one_of(info, values)})
config = st.fixed_dictionaries({"model_list": st.one_of(st.lists(entry, max_size=4), values)}, optional={
    "router_settings": st.one_of(keyed(["fallbacks", "num_retries", "timeout", "model_group_alias",
                                        "default_fallbacks", "cooldown_time"]), values),
    "litellm_settings": st.one_of(keyed(["request_timeout", "fallbacks", "context_window_fallbacks"]), values),
    "tiergate_settings": st.one_of(keyed(["host", "port", "max_body_bytes", "require_auth", "model_aliases",
                                          "allowed_origins", "privacy", "colour"]), values),
    "environment_variables": values,
    "general_settings": values,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config)
def test_any_structure_loads_or_fails_with_a_located_config_error(data):
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        cfg = parse_config(text, "fuzz.yaml", environ={})
    except ConfigError as e:
        assert e.path == "fuzz.yaml"
        assert e.line is not None or "empty" in e.reason or "top level" in e.reason
        return
    assert isinstance(cfg, Config) and cfg.deployments


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" \t\n:-[]{}'\"#&*!|>%@`ab1", max_size=60))
def test_any_text_loads_or_fails_with_a_config_error(text):
    try:
        parse_config(text, "fuzz.yaml", environ={})
    except ConfigError as e:
        assert e.path == "fuzz.yaml"
