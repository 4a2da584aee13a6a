"""Key references: literal, os.environ/NAME, keychain/NAME; and no secret ever reaches a message."""

from __future__ import annotations

import textwrap

import pytest

from app.config import Config, parse_config
from app.config.references import (config_environ, is_reference, reference_kind, reference_name, reference_problem,
                                   resolve_secret)
from app.errors import ConfigError, SecretError

SECRET = "sk-live-TOPSECRET-0123456789abcdef"


def test_is_reference():
    assert is_reference("os.environ/OPENAI_API_KEY")
    assert is_reference("keychain/ANTHROPIC_API_KEY")
    assert not is_reference("sk-123")
    assert not is_reference(None) and not is_reference(42)
    assert reference_kind("keychain/x") == "keychain" and reference_kind("sk") is None
    assert reference_name("os.environ/ABC") == "ABC" and reference_name("literal") == ""


@pytest.mark.parametrize("ref, problem", [
    ("os.environ/GOOD_NAME_1", None),
    ("os.environ/", "expected os.environ/NAME"),
    ("os.environ/9LIVES", "expected os.environ/NAME"),
    ("keychain/anthropic.api-key", None),
    ("keychain/", "expected keychain/NAME"),
    ("sk-literal", None),
])
def test_reference_problem(ref, problem):
    found = reference_problem(ref)
    assert (found is None) if problem is None else found.startswith(problem)


def test_resolve_literal_and_none():
    assert resolve_secret(None) is None
    assert resolve_secret("") is None
    assert resolve_secret("sk-abc") == "sk-abc"


def test_resolve_environment():
    assert resolve_secret("os.environ/MY_KEY", environ={"MY_KEY": SECRET}) == SECRET
    with pytest.raises(SecretError) as e:
        resolve_secret("os.environ/MY_KEY", environ={})
    assert "MY_KEY is not set" in e.value.message and e.value.code == "secret_unavailable"
    with pytest.raises(SecretError):
        resolve_secret("os.environ/MY_KEY", environ={"MY_KEY": ""})


def test_resolve_environment_defaults_to_process_env(monkeypatch):
    monkeypatch.setenv("TIERGATE_TEST_KEY", SECRET)
    assert resolve_secret("os.environ/TIERGATE_TEST_KEY") == SECRET
    monkeypatch.delenv("TIERGATE_TEST_KEY")
    with pytest.raises(SecretError, match="TIERGATE_TEST_KEY"):
        resolve_secret("os.environ/TIERGATE_TEST_KEY")


def test_resolve_keychain():
    store = {"ANTHROPIC_API_KEY": SECRET}
    asked: list[str] = []

    def lookup(name: str) -> str | None:
        asked.append(name)
        return store.get(name)

    assert resolve_secret("keychain/ANTHROPIC_API_KEY", keychain=lookup) == SECRET
    with pytest.raises(SecretError) as e:
        resolve_secret("keychain/OPENAI_API_KEY", keychain=lookup)
    assert "no entry named OPENAI_API_KEY" in e.value.message
    assert asked == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]


def test_keychain_without_lookup_is_not_available_yet():
    with pytest.raises(SecretError) as e:
        resolve_secret("keychain/ANTHROPIC_API_KEY")
    assert e.value.message.startswith("keychain references are not available yet")


def test_keychain_errors_propagate():
    def locked(name: str) -> str | None:
        raise SecretError("The keychain is locked.")

    with pytest.raises(SecretError, match="locked"):
        resolve_secret("keychain/X", keychain=locked)


def test_config_environment_variables_are_seen_through_config_environ(monkeypatch):
    monkeypatch.setenv("FROM_PROCESS", "p")
    cfg = parse_config("model_list:\n  - {model_name: a, litellm_params: {model: ollama/a}}\n"
                       "environment_variables: {FROM_CONFIG: c, FROM_PROCESS: overridden}\n", "c.yaml", environ={})
    env = config_environ(cfg)
    assert resolve_secret("os.environ/FROM_CONFIG", environ=env) == "c"
    assert resolve_secret("os.environ/FROM_PROCESS", environ=env) == "overridden"  # LiteLLM sets them over the env
    assert config_environ(Config(deployments=[])) is not None


# ---------------------------------------------------------------------------------- secrets never in messages
LEAKY_CONFIG = f"""\
model_list:
  - model_name: a
    litellm_params:
      model: openai/gpt-4o
      api_key: {SECRET}
      extra_headers: {{Authorization: "Bearer {SECRET}"}}
  - model_name: b
    litellm_params:
      model: anthropic/claude-haiku-4-5
      api_key: "{SECRET}"
      rpm: 10
general_settings:
  master_key: {SECRET}
  database_url: postgresql://user:{SECRET}@db/x
environment_variables:
  OPENAI_API_KEY: {SECRET}
  REDIS_PASSWORD: {SECRET}
router_settings:
  redis_password: {SECRET}
"""


def test_warnings_never_contain_secrets():
    cfg = parse_config(LEAKY_CONFIG, "leaky.yaml", environ={})
    assert cfg.deployments[0].api_key_ref == SECRET  # allowed, for LiteLLM compatibility
    assert len(cfg.warnings) == 8
    for w in cfg.warnings:
        assert SECRET not in w and "TOPSECRET" not in w
    assert sum("a key is written in the file" in w for w in cfg.warnings) == 4


@pytest.mark.parametrize("field, value", [
    ("api_key", "[" + SECRET + "]"),
    ("api_key", "{k: " + SECRET + "}"),
    ("extra_headers", "{X-Key: [" + SECRET + "]}"),
])
def test_errors_about_secret_fields_do_not_quote_them(field, value):
    text = textwrap.dedent(f"""\
        model_list:
          - model_name: a
            litellm_params:
              model: openai/gpt-4o
              {field}: {value}
        """)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml", environ={})
    assert SECRET not in str(e.value) and "TOPSECRET" not in str(e.value)
    assert e.value.line == 5


def test_environment_variable_values_are_not_quoted_in_errors():
    text = f"model_list:\n  - {{model_name: a, litellm_params: {{model: ollama/a}}}}\n" \
           f"environment_variables:\n  SOME_KEY: [{SECRET}]\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml", environ={})
    assert str(e.value) == "c.yaml:4: environment_variables.SOME_KEY: expected a value (text or a number), got a list"


def test_atomic_write_replaces_whole_and_sets_the_mode(tmp_path):
    import os

    from app.paths import atomic_write

    path = tmp_path / "sub" / "f.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two", mode=0o600)
    assert path.read_bytes() == b"two"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]  # no temporary file left behind
