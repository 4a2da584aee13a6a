"""Every way a config can be unusable gives a ConfigError with the file, the line and a sentence."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.config import load_config, parse_config
from app.errors import ConfigError

OK_ENTRY = "  - {model_name: a, litellm_params: {model: ollama/a}}\n"


def error_of(text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_config(textwrap.dedent(text), "conf.yaml", environ=environ or {})
    return e.value


CASES = [
    # (id, yaml, line, exact message after "conf.yaml:<line>: ")
    ("timeout not a number", """\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a}}
          - {model_name: a, litellm_params: {model: ollama/b}}
          - model_name: a
            litellm_params:
              model: ollama/c
              timeout: soon
        """, 7, "model_list[2].litellm_params.timeout: expected a number of seconds, got 'soon'"),
    ("negative stream timeout", """\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a, stream_timeout: -3}}
        """, 2, "model_list[0].litellm_params.stream_timeout: expected a number of seconds greater than 0, got -3"),
    ("model_list not a list", """\
        model_list:
          model_name: a
        """, 1, "model_list: expected a list of models (lines starting with `- model_name:`), got a mapping"),
    ("entry not a mapping", """\
        model_list:
          - ollama/a
        """, 2, "model_list[0]: expected a model entry (model_name: and litellm_params:), got 'ollama/a'"),
    ("missing model_name", """\
        model_list:
          - litellm_params: {model: ollama/a}
        """, 2, "model_list[0]: missing model_name: the tier (or model name) clients ask for."),
    ("numeric model_name", """\
        model_list:
          - {model_name: 4, litellm_params: {model: ollama/a}}
        """, 2, "model_list[0].model_name: expected a tier name (text; quote numbers), got 4"),
    ("missing model", """\
        model_list:
          - model_name: a
            litellm_params:
              api_base: http://localhost:11434
        """, 3, "model_list[0].litellm_params: missing litellm_params.model, the upstream model such as "
                "ollama_chat/qwen3:8b."),
    ("unsupported provider", """\
        model_list:
          - model_name: a
            litellm_params: {model: gemini/gemini-2.5-pro}
        """, 3, "model_list[0].litellm_params.model: the provider 'gemini' is not supported by Tiergate; supported "
                "prefixes: openai/, anthropic/, ollama/, ollama_chat/, openrouter/, groq/, deepseek/, mistral/, "
                "together_ai/, fireworks_ai/, xai/, lm_studio/, hosted_vllm/, litellm_proxy/ (any other "
                "OpenAI-compatible server works as openai/<model> with its api_base)."),
    ("azure via custom_llm_provider", """\
        model_list:
          - model_name: a
            litellm_params:
              model: gpt-4o
              custom_llm_provider: azure
        """, 5, "model_list[0].litellm_params.custom_llm_provider: the provider 'azure' is not supported by "
                "Tiergate; supported prefixes: openai/, anthropic/, ollama/, ollama_chat/, openrouter/, groq/, "
                "deepseek/, mistral/, together_ai/, fireworks_ai/, xai/, lm_studio/, hosted_vllm/, litellm_proxy/ "
                "(any other OpenAI-compatible server works as openai/<model> with its api_base)."),
    ("bare unknown model", """\
        model_list:
          - model_name: a
            litellm_params: {model: llama3}
        """, 3, "model_list[0].litellm_params.model: 'llama3' needs a provider prefix, such as openai/llama3 or "
                "ollama_chat/llama3; supported prefixes: openai/, anthropic/, ollama/, ollama_chat/, openrouter/, "
                "groq/, deepseek/, mistral/, together_ai/, fireworks_ai/, xai/, lm_studio/, hosted_vllm/, "
                "litellm_proxy/ (any other OpenAI-compatible server works as openai/<model> with its api_base)."),
    ("empty model after prefix", """\
        model_list:
          - {model_name: a, litellm_params: {model: "ollama/ "}}
        """, 2, "model_list[0].litellm_params.model: the model name after ollama/ is missing."),
    ("api_base not a URL", """\
        model_list:
          - model_name: a
            litellm_params:
              model: ollama/mistral
              api_base: your_ollama_api_base
        """, 5, "model_list[0].litellm_params.api_base: expected an http(s) URL such as http://localhost:8080/v1, "
                "got 'your_ollama_api_base'"),
    ("api_base bad port", """\
        model_list:
          - {model_name: a, litellm_params: {model: openai/x, api_base: "http://localhost:99999"}}
        """, 2, "model_list[0].litellm_params.api_base: expected an http(s) URL such as http://localhost:8080/v1, "
                "got 'http://localhost:99999'"),
    ("vllm without api_base", """\
        model_list:
          - model_name: a
            litellm_params:
              model: hosted_vllm/qwen
        """, 3, "model_list[0].litellm_params: hosted_vllm/ needs an api_base, the server's address such as "
                "http://localhost:8000/v1."),
    ("api_base env var missing", """\
        model_list:
          - model_name: a
            litellm_params:
              model: openai/x
              api_base: os.environ/MY_BASE
        """, 5, "model_list[0].litellm_params.api_base: refers to the environment variable MY_BASE, which is not set."),
    ("malformed env reference", """\
        model_list:
          - model_name: a
            litellm_params:
              model: openai/x
              api_key: os.environ/OPENAI API KEY
        """, 5, "model_list[0].litellm_params.api_key: expected os.environ/NAME with NAME an environment variable "
                "name such as OPENAI_API_KEY."),
    ("api_key is a number", """\
        model_list:
          - model_name: a
            litellm_params:
              model: openai/x
              api_key: 1234567890123
        """, 5, "model_list[0].litellm_params.api_key: expected a key reference such as os.environ/OPENAI_API_KEY, "
                "got a number"),
    ("num_ctx zero", """\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a, num_ctx: 0}}
        """, 2, "model_list[0].litellm_params.num_ctx: expected a context length in tokens, such as 32768, got 0"),
    ("keep_alive word", """\
        model_list:
          - {model_name: a, litellm_params: {model: ollama/a, keep_alive: forever}}
        """, 2, "model_list[0].litellm_params.keep_alive: expected a duration such as \"30m\", \"1h\" or a number of "
                "seconds (-1: keep loaded), got 'forever'"),
    ("cost not a number", """\
        model_list:
          - model_name: a
            litellm_params: {model: ollama/a}
            model_info:
              input_cost_per_token: cheap
        """, 5, "model_list[0].model_info.input_cost_per_token: expected a cost in US dollars per token (0 or more), "
                "such as 0.000003, got 'cheap'"),
    ("bad location", """\
        model_list:
          - model_name: a
            litellm_params: {model: ollama/a}
            model_info: {location: home}
        """, 4, "model_list[0].model_info.location: expected local, trusted or cloud, got 'home'"),
    ("responses api on anthropic", """\
        model_list:
          - model_name: a
            litellm_params: {model: anthropic/claude-haiku-4-5}
            model_info:
              api: responses
        """, 5, "model_list[0].model_info.api: the Responses API is only for OpenAI-compatible deployments "
                "(openai/… models)."),
    ("duplicate explicit id", """\
        model_list:
          - model_name: a
            litellm_params: {model: ollama/a}
            model_info: {id: one}
          - model_name: b
            litellm_params: {model: ollama/b}
            model_info: {id: one}
        """, 5, "model_info.id 'one' is already used by the model_list entry on line 2; deployment ids must be unique."),
    ("fallback to unknown tier", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
          - {model_name: helper, litellm_params: {model: ollama/b}}
        router_settings:
          fallbacks:
            - coder: [helpers]
        """, 6, "router_settings.fallbacks[0].coder[0]: 'helpers' is not a tier; the tiers are the model_name "
                "values in model_list: coder, helper; did you mean 'helper'?"),
    ("fallback from unknown tier", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        litellm_settings:
          fallbacks: [{gpt-4: [coder]}]
        """, 4, "litellm_settings.fallbacks[0].gpt-4: 'gpt-4' is not a tier; the tiers are the model_name values in "
                "model_list: coder"),
    ("fallbacks wrong shape", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        router_settings:
          fallbacks: coder
        """, 4, "router_settings.fallbacks: expected a list of `- tier: [fallback tiers]` lines, got 'coder'"),
    ("alias to unknown tier", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          model_aliases:
            "claude-*": orchestrator
        """, 5, "tiergate_settings.model_aliases.claude-*: 'orchestrator' is not a tier; the tiers are the "
                "model_name values in model_list: coder"),
    ("group alias dict to unknown tier", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        router_settings:
          model_group_alias:
            gpt-4: {model: gpt-4o, hidden: true}
        """, 5, "router_settings.model_group_alias.gpt-4.model: 'gpt-4o' is not a tier; the tiers are the "
                "model_name values in model_list: coder"),
    ("num_retries fraction", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        router_settings:
          num_retries: 2.5
        """, 4, "router_settings.num_retries: expected a whole number (0 or more), got 2.5"),
    ("port out of range", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          port: 70000
        """, 4, "tiergate_settings.port: expected a port number from 0 to 65535, got 70000"),
    ("body size words", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          max_body_bytes: large
        """, 4, "tiergate_settings.max_body_bytes: expected a size in bytes such as 33554432 or \"32MB\", got 'large'"),
    ("require_auth maybe", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          require_auth: maybe
        """, 4, "tiergate_settings.require_auth: expected true or false, got 'maybe'"),
    ("section not a mapping", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          privacy: strict
        """, 4, "tiergate_settings.privacy: expected a mapping of `key: value` lines, got 'strict'"),
    ("origins not a list", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        tiergate_settings:
          allowed_origins: "*"
        """, 4, "tiergate_settings.allowed_origins: expected a list of origins such as [\"http://localhost:3000\"], "
                "got '*'"),
    ("only skipped entries", """\
        model_list:
          - model_name: "*"
            litellm_params: {model: "*"}
        """, 1, "model_list: no chat models: add at least one model_list entry (a model_name and "
                "litellm_params.model)."),
    ("top level is a list", """\
        - model_name: a
        """, 1, "expected `key: value` lines at the top level (model_list:, router_settings:…), got a list."),
    ("env var name", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        environment_variables:
          MY-VAR: x
        """, 4, "environment_variables.MY-VAR: expected an environment variable name (letters, digits and _)."),
    ("complex key", """\
        model_list:
          - {model_name: coder, litellm_params: {model: ollama/a}}
        ? [a, b]
        : c
        """, 3, "the top level: a key must be plain text, not a list or mapping"),
]


@pytest.mark.parametrize("text, line, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_has_file_line_and_sentence(text, line, message):
    e = error_of(text)
    assert (e.path, e.line) == ("conf.yaml", line)
    assert e.reason == message
    assert str(e) == f"conf.yaml:{line}: {message}"
    assert e.title == "Config error"


# libyaml and the pure-Python parser word problems differently; both give the line and these phrases.
@pytest.mark.parametrize("text, line, phrase", [
    ("model_list:\n  - model_name: a\n   litellm_params: {}\n", 3, ""),
    ("model_list:\n  - model_name: a\n    litellm_params: {model: ollama/a\n", 4, "',' or '}'"),
    ("model_list:\n\t- model_name: a\n", 2, "; indent with spaces, YAML does not allow tabs at column 1."),
    ("a: b: c\n", 1, "mapping values are not allowed"),
    ("a: 'unclosed\n", 2, "unexpected end of stream"),
    ("a: *nowhere\n", 1, "undefined alias"),
])
def test_broken_yaml_is_one_sentence_with_line(text, line, phrase):
    e = error_of(text)
    assert e.line == line and e.path == "conf.yaml"
    assert e.reason.startswith("this is not valid YAML: ")
    assert phrase in e.reason
    assert e.reason.endswith(".") and " at column " in e.reason
    assert "\n" not in e.reason


def test_empty_file():
    e = error_of("# nothing here\n")
    assert str(e) == ("conf.yaml: the file is empty: add a model_list with at least one model (see "
                      "resources/config.example.yaml).")


def test_included_file_errors_name_that_file(tmp_path: Path):
    (tmp_path / "models.yaml").write_text("model_list:\n  - model_name: b\n    litellm_params: {model: bedrock/x}\n")
    main = tmp_path / "config.yaml"
    main.write_text("include: [models.yaml]\nmodel_list:\n" + OK_ENTRY)
    with pytest.raises(ConfigError) as e:
        load_config(main, environ={})
    assert e.value.path == str(tmp_path / "models.yaml") and e.value.line == 3
    assert e.value.reason.startswith("model_list[0].litellm_params.model: the provider 'bedrock' is not supported")
    main.write_text("include: [models.yaml, missing.yaml]\nmodel_list:\n" + OK_ENTRY)
    with pytest.raises(ConfigError) as e:
        load_config(main, environ={})
    assert str(e.value) == f"{main}:1: include[1]: the included file 'missing.yaml' does not exist."


def test_include_needs_a_file():
    with pytest.raises(ConfigError) as e:
        parse_config("include: [x.yaml]\nmodel_list:\n" + OK_ENTRY, None, environ={})
    assert str(e.value) == "<config>:1: include: include needs the config to be read from a file."


def test_unnamed_text_is_labelled():
    with pytest.raises(ConfigError) as e:
        parse_config("model_list: 3\n", None, environ={})
    assert str(e.value) == ("<config>:1: model_list: expected a list of models (lines starting with `- model_name:`), "
                            "got 3")
