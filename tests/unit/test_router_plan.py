"""The order in which a tier's deployments are tried."""

from __future__ import annotations

from app.config.loader import parse_config
from app.events import EventBus
from app.router.health import HealthTracker
from app.router.router import Router

CONFIG = """
model_list:
  - model_name: coder
    litellm_params: {model: openai/gpt-4o-mini, api_key: x}
  - model_name: coder
    litellm_params: {model: ollama_chat/qwen3:14b, api_base: "http://127.0.0.1:11434"}
  - model_name: coder
    litellm_params: {model: ollama_chat/qwen3:14b, api_base: "http://studio.lan:11434"}
  - model_name: helper
    litellm_params: {model: ollama_chat/qwen3:4b}
router_settings:
  fallbacks: [{coder: [helper]}]
"""


def _router(loaded: set[str]) -> Router:
    config = parse_config(CONFIG, "c.yaml")
    return Router(config, {}, HealthTracker(EventBus(), allowed_fails=1, cooldown_time=1),
                  prefer=lambda d: d.api_base in loaded)


def test_config_order_without_a_loaded_model():
    r = _router(set())
    assert [d.api_base for d in r.plan(r.resolve("coder"))] == [
        "https://api.openai.com/v1", "http://127.0.0.1:11434", "http://studio.lan:11434", "http://localhost:11434"]


def test_a_host_with_the_model_loaded_goes_first_among_local_ones_only():
    r = _router({"http://studio.lan:11434"})
    assert [d.api_base for d in r.plan(r.resolve("coder"))] == [
        "https://api.openai.com/v1",  # the cloud deployment listed first keeps its place
        "http://studio.lan:11434", "http://127.0.0.1:11434", "http://localhost:11434"]


def test_privacy_filter_applies_before_anything_else():
    r = _router(set())
    plan = r.plan(r.resolve("coder"), allowed=lambda d: d.provider == "ollama")
    assert all(d.provider == "ollama" for d in plan) and len(plan) == 3
