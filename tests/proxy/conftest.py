"""The end-to-end harness: a real Tiergate core on 127.0.0.1:0 in front of the fake upstreams, with a
real keyring API (in-memory backend), an agent key, and the official SDKs as clients.

    async def test_x(proxy):
        p = await proxy(TIERS)           # config text; {openai} {anthropic} {ollama} are the fakes' bases
        r = await p.openai().chat.completions.create(model="coder", messages=[...])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import anthropic
import openai
import pytest_asyncio

from app.config.loader import parse_config
from app.core import Tiergate
from app.secrets.store import SecretStore
from tests.fakes import DEFAULT_ANTHROPIC_KEY, DEFAULT_OPENAI_KEY, FakeAnthropic, FakeOpenAI

# The three-tier stack most tests use. The fakes listen on 127.0.0.1, which would make them "local":
# the cloud ones say where they stand in for.
TIERS = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 32768, keep_alive: 10m}}
router_settings:
  num_retries: 1
  retry_after: 0.01
  allowed_fails: 2
  cooldown_time: 30
tiergate_settings:
  port: 0
"""

ENV = {"OPENAI_API_KEY": DEFAULT_OPENAI_KEY, "ANTHROPIC_API_KEY": DEFAULT_ANTHROPIC_KEY}


@dataclass
class Proxy:
    core: Tiergate
    key: str  # an agent key ("tester")
    master: str

    @property
    def base_url(self) -> str:
        return self.core.base_url

    def openai(self, key: str | None = None, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key=key or self.key, max_retries=0, **kw)

    def anthropic(self, key: str | None = None, **kw: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.base_url, api_key=key or self.key, max_retries=0, **kw)

    async def request(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> tuple[int, dict, Any]:
        """A raw HTTP request; returns status, headers and the parsed JSON (or text) body."""
        headers = {"authorization": f"Bearer {key or self.key}", **kw.pop("headers", {})}
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.base_url + path, headers=headers, **kw) as r:
                text = await r.text()
                try:
                    body: Any = await r.json(content_type=None)
                except ValueError:
                    body = text
                return r.status, dict(r.headers), body


@pytest_asyncio.fixture
async def proxy(tmp_path, memory_keyring, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                fake_ollama) -> AsyncIterator[Callable[..., Awaitable[Proxy]]]:
    started: list[Tiergate] = []

    async def make(config_text: str = TIERS, *, env: dict[str, str] | None = None, **core_kw: Any) -> Proxy:
        text = config_text.format(openai=fake_openai.base_url, anthropic=fake_anthropic.base_url,
                                  ollama=fake_ollama.base_url)
        config = parse_config(text, str(tmp_path / "config.yaml"))
        store = SecretStore()
        core = Tiergate(config, data_dir=tmp_path / "data", env={**ENV, **(env or {})}, secret_store=store,
                        **core_kw)
        key = core.agents.add("tester")
        await core.start()
        started.append(core)
        return Proxy(core, key, store.master_key())

    yield make
    for core in started:
        await core.stop()
