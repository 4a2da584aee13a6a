"""tiergate_settings.ollama: hosts, budget, keep_alive per tier, guard; errors carry file and line."""

import pytest

from app.config import parse_config
from app.errors import ConfigError
from app.ollama.hosts import OllamaHost, is_loopback, normalize_url, parse_settings
from app.ollama.units import GiB

BASE = """model_list:
  - model_name: helper
    litellm_params:
      model: ollama_chat/gemma3:4b
tiergate_settings:
  ollama:
"""


def settings(body: str):
    cfg = parse_config(BASE + body, "config.yaml", environ={})
    return parse_settings(cfg.section("ollama"))


def error(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        settings(body)
    return e.value


def test_defaults_when_the_section_is_empty():
    cfg = parse_config(BASE.replace("  ollama:\n", "  ollama: {}\n"), "config.yaml", environ={})
    s = parse_settings(cfg.section("ollama"))
    assert s.hosts == [OllamaHost("local", "http://localhost:11434")]
    assert s.memory_budget_fraction == 0.75 and s.memory_budget_bytes is None
    assert s.guard is True and s.agent_context == 32768 and s.keep_alive == {}
    assert s.keep_alive_for("helper") is None


def test_full_section():
    s = settings("""    hosts:
      - name: this-mac
        url: localhost:11434
      - name: studio
        url: http://192.168.1.20:11434
        trusted: true
        memory_gb: 128
    memory_budget_gb: 20
    keep_alive: {orchestrator: 30m, helper: 300, default: -1}
    guard: false
    agent_context: 65536
    model_sizes_gb: {gemma3:27b: 19.5}
""")
    assert s.hosts[0] == OllamaHost("this-mac", "http://localhost:11434", True, None)
    assert s.hosts[1] == OllamaHost("studio", "http://192.168.1.20:11434", True, 128 * GiB)
    assert s.hosts[0].local and s.hosts[0].location == "local"
    assert not s.hosts[1].local and s.hosts[1].location == "trusted"
    assert s.memory_budget_bytes == 20 * GiB
    assert s.keep_alive_for("orchestrator") == "30m" and s.keep_alive_for("helper") == 300
    assert s.keep_alive_for("coder") == -1
    assert s.guard is False and s.agent_context == 65536
    assert s.model_sizes == {"gemma3:27b": int(19.5 * GiB)}
    assert s.host("studio") is s.hosts[1] and s.host("http://192.168.1.20:11434") is s.hosts[1]


def test_a_keep_alive_for_every_tier_can_be_one_value():
    assert settings("    keep_alive: 10m\n").keep_alive == {"default": "10m"}


@pytest.mark.parametrize("body, where, line", [
    ("    memory_budget_fraction: 1.5\n", "ollama.memory_budget_fraction", 7),
    ("    memory_budget_gb: -2\n", "ollama.memory_budget_gb", 7),
    ("    keep_alive:\n      helper: soon\n", "ollama.keep_alive.helper", 8),
    ("    guard: maybe\n", "ollama.guard", 7),
    ("    agent_context: 100\n", "ollama.agent_context", 7),
    ("    hosts:\n      - name: studio\n        url: http://192.168.1.20:11434\n", "ollama.hosts.0", 8),
    ("    hosts:\n      - url: ftp://x\n", "ollama.hosts.0.url", 8),
    ("    hosts:\n      - url: http://user:pw@localhost:11434\n", "ollama.hosts.0.url", 8),
    ("    hosts:\n      - {name: a, url: 'localhost:1'}\n      - {name: a, url: 'localhost:2'}\n",
     "ollama.hosts.1.name", 9),
    ("    model_sizes_gb: {registry.example.com/x/y: 3}\n", "ollama.model_sizes_gb", 7),
    ("    colour: blue\n", "ollama.colour", 7),
])
def test_bad_values_name_file_key_and_line(body, where, line):
    e = error(body)
    assert e.path == "config.yaml" and e.line == line, e
    assert where in e.message


def test_other_machines_need_trusted_and_say_why():
    e = error("    hosts:\n      - url: http://192.168.1.20:11434\n")
    assert "prompts sent there leave this computer" in e.message and "trusted: true" in e.message


def test_urls():
    assert normalize_url("localhost") == "http://localhost:11434"
    assert normalize_url("10.0.0.2:8080/") == "http://10.0.0.2:8080"
    assert normalize_url("https://ollama.lan") == "https://ollama.lan"
    assert is_loopback("http://127.0.0.1:11434") and is_loopback("http://[::1]:11434")
    assert is_loopback("localhost:11434") and not is_loopback("http://192.168.1.2:11434")
