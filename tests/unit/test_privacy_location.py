"""Where a deployment runs: local / trusted / cloud, inferred or explicit, failing closed."""

from __future__ import annotations

import pytest

from app.config.schema import Deployment
from app.privacy.location import TrustedHosts, is_loopback_host, location_of, url_host


def dep(api_base: str, *, provider: str = "openai", model: str = "m", location: str | None = None) -> Deployment:
    return Deployment(id="d", tier="t", provider=provider, model=model, api_base=api_base,  # type: ignore[arg-type]
                      location=location)  # type: ignore[arg-type]


TRUSTED = TrustedHosts.parse(["mac-studio.local", "192.168.1.0/24", "fd00::/8", "10.0.0.7"])


@pytest.mark.parametrize("api_base,expected", [
    ("http://localhost:11434", "local"),
    ("http://LOCALHOST:11434/", "local"),
    ("http://localhost.:8080/v1", "local"),
    ("http://127.0.0.1:1234/v1", "local"),
    ("http://127.3.4.5:8000", "local"),
    ("http://[::1]:11434", "local"),
    ("http://[::ffff:127.0.0.1]:11434", "local"),
    ("https://127.0.0.1", "local"),
    ("http://mac-studio.local:11434", "trusted"),
    ("http://MAC-STUDIO.LOCAL:11434", "trusted"),
    ("http://192.168.1.20:11434", "trusted"),
    ("http://[fd12::5]:11434", "trusted"),
    ("http://10.0.0.7:11434", "trusted"),
    ("http://10.0.0.8:11434", "cloud"),
    ("http://192.168.2.20:11434", "cloud"),
    ("https://api.openai.com/v1", "cloud"),
    ("http://localhost.evil.com:11434", "cloud"),
    ("http://evil-localhost:11434", "cloud"),
    ("http://foo.localhost:11434", "cloud"),
    ("http://127.0.0.1.nip.io:11434", "cloud"),
    ("http://mac-studio.local.evil.com", "cloud"),
    ("http://localhost@evil.com/", "cloud"),
    ("http://evil.com\\@localhost/", "cloud"),
    ("http://user:pw@127.0.0.1/", "cloud"),  # user info: ambiguous between parsers, fail closed
    ("http://0.0.0.0:11434", "cloud"),
    ("http://127.1:11434", "cloud"),  # shorthand: not parsed the same everywhere
    ("http://2130706433/", "cloud"),
    ("ftp://127.0.0.1/", "cloud"),
    ("127.0.0.1:11434", "cloud"),  # no scheme
    ("", "cloud"),
    ("http://local host/", "cloud"),
    ("http://127.0.0.1:99999/", "cloud"),
    ("http://[::1", "cloud"),
])
def test_inferred_location(api_base: str, expected: str) -> None:
    assert location_of(dep(api_base), TRUSTED) == expected


@pytest.mark.parametrize("model,expected", [
    ("gemma3:4b", "local"),
    ("gpt-oss:120b-cloud", "cloud"),
    ("glm-4.6:cloud", "cloud"),
    ("qwen3-coder:480b-CLOUD", "cloud"),
    ("deepseek-v3.1-cloud", "cloud"),
    ("cloudy-model:7b", "local"),
])
def test_ollama_cloud_models_are_cloud_even_on_loopback(model: str, expected: str) -> None:
    assert location_of(dep("http://localhost:11434", provider="ollama", model=model)) == expected


def test_ollama_cloud_model_on_trusted_host_is_cloud() -> None:
    assert location_of(dep("http://mac-studio.local:11434", provider="ollama", model="kimi-k2:1t-cloud"),
                       TRUSTED) == "cloud"


def test_remote_ollama_that_is_not_trusted_is_cloud() -> None:
    assert location_of(dep("https://ollama.com", provider="ollama", model="gemma3:4b")) == "cloud"


@pytest.mark.parametrize("explicit", ["local", "trusted", "cloud"])
def test_explicit_location_wins(explicit: str) -> None:
    assert location_of(dep("https://api.openai.com/v1", location=explicit)) == explicit
    assert location_of(dep("http://127.0.0.1:8000", location=explicit)) == explicit


def test_invalid_explicit_location_fails_closed() -> None:
    assert location_of(dep("http://127.0.0.1:8000", location="home")) == "cloud"


def test_trusted_hosts_accept_plain_lists() -> None:
    assert location_of(dep("http://studio.lan:11434"), ["studio.lan"]) == "trusted"


@pytest.mark.parametrize("bad", ["http://studio.lan", "studio.lan:11434", "", "bad host", "-x.lan"])
def test_trusted_hosts_reject_what_is_not_a_host(bad: str) -> None:
    with pytest.raises(ValueError):
        TrustedHosts.parse([bad])


def test_loopback_host() -> None:
    assert is_loopback_host("localhost") and is_loopback_host("127.255.0.1") and is_loopback_host("::1")
    assert not is_loopback_host("localhost.evil.com") and not is_loopback_host("128.0.0.1")


def test_url_host_refuses_ambiguous_urls() -> None:
    assert url_host("http://h:80/x?next=a@b") == "h"  # '@' in the query is harmless
    assert url_host("http://a@h/") is None
    assert url_host("http://h\t/") is None
