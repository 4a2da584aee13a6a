"""Pulls accept only plain model names: no registry host, so where models come from cannot be redirected."""

import pytest

from app.ollama.names import InvalidModelName, family_of, normalize, same_model, validate_model_name


@pytest.mark.parametrize("name, normal", [
    ("gemma3", "gemma3:latest"),
    ("gemma3:4b", "gemma3:4b"),
    ("Qwen3:14B", "qwen3:14b"),
    ("llama3.1:8b-instruct-q4_K_M", "llama3.1:8b-instruct-q4_k_m"),
    ("someone/my-model:v1.0", "someone/my-model:v1.0"),
    ("  qwen2.5-coder:7b ", "qwen2.5-coder:7b"),
])
def test_plain_names_are_accepted_and_normalised(name, normal):
    assert validate_model_name(name) == normal


@pytest.mark.parametrize("name", [
    "registry.example.com/library/llama3:8b",  # a registry host
    "localhost:5000/model",                     # host with port
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF",  # Hugging Face, through a host
    "https://ollama.com/library/gemma3",
    "a/b/c",
    "../etc/passwd",
    "gemma3:4b --insecure",
    "", ":latest", "gemma3:", "-model",
    "x" * 200,
])
def test_hosts_urls_and_junk_are_refused(name):
    with pytest.raises(InvalidModelName) as e:
        validate_model_name(name)
    assert e.value.status == 400 and e.value.code == "invalid_model_name"


def test_refusal_explains_what_is_accepted():
    with pytest.raises(InvalidModelName, match="plain name such as gemma3:4b"):
        validate_model_name("registry.example.com/x/y:1")


def test_compare_and_family():
    assert normalize("gemma3") == "gemma3:latest"
    assert same_model("GEMMA3", "gemma3:latest")
    assert not same_model("gemma3:4b", "gemma3:12b")
    assert family_of("someone/gemma3:27b") == "gemma3"
