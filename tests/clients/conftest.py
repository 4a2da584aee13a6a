"""Fixtures for the real-client tests: the installed clients (skipped when missing) and `stack`, a Tiergate core
from the proxy harness with every dialect's fake upstream, an egress trap and a loopback guard.

Install the clients with `python3 scripts/install_clients.py` (into `<repo>/.clients`, or set
TIERGATE_CLIENTS_DIR to another directory).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from tests.clients.harness import (
    CLIENT_TIERS,
    TIER_UPSTREAM,
    ClientEnv,
    EgressTrap,
    InboundRecorder,
    LoopbackGuard,
    UsageLog,
    clients_dir,
    find_client,
)
from tests.fakes.ollama_server import FakeModel, llama_info
from tests.proxy.conftest import Proxy, proxy  # noqa: F401  (the harness fixture, reused as is)

_versions: dict[str, str | None] = {}


def _client(name: str) -> str:
    """The client's executable, after checking once that it starts; skips the test otherwise."""
    exe = find_client(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (looked in {clients_dir()} and on PATH); "
                    f"install it with `python3 scripts/install_clients.py`")
    if name not in _versions:
        try:
            done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
            _versions[name] = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            _versions[name] = None
    if _versions[name] is None:
        pytest.skip(f"{name} at {exe} does not start (`{name} --version` failed)")
    return exe


@pytest.fixture
def claude_exe() -> str:
    return _client("claude")


@pytest.fixture
def codex_exe() -> str:
    return _client("codex")


@pytest.fixture
def aider_exe() -> str:
    return _client("aider")


@dataclass
class Stack:
    """One Tiergate core in front of the fakes, as one client test sees it."""

    proxy: Proxy
    fakes: dict[str, Any]  # "openai" | "anthropic" | "ollama" -> fake server
    usage: UsageLog
    trap: EgressTrap
    guard: LoopbackGuard
    dirs: ClientEnv
    inbound: InboundRecorder

    @property
    def base_url(self) -> str:
        return self.proxy.base_url

    @property
    def key(self) -> str:
        return self.proxy.key

    def upstream(self, tier: str) -> Any:
        return self.fakes[TIER_UPSTREAM[tier][0]]


def thinking_model() -> FakeModel:
    """A small local model with Ollama's "thinking" capability (what `thinker` routes to)."""
    return FakeModel("qwen3:1.7b", size=1_359_293_920, family="qwen3", parameter_size="2.0B",
                     capabilities=["completion", "tools", "thinking"],
                     model_info=llama_info(arch="qwen3", blocks=28, heads=16, kv_heads=8, embedding=2048,
                                           context=40960, params=2_031_739_904))


@pytest.fixture
def tiergate_config() -> str:
    """The config text the stack's core starts with (a test may parametrize this name to change it)."""
    return CLIENT_TIERS


@pytest_asyncio.fixture
async def stack(proxy, fake_openai, fake_anthropic, fake_ollama, tmp_path: Path,  # noqa: F811
                tiergate_config: str) -> AsyncIterator[Stack]:
    guard = LoopbackGuard()
    guard.install()
    trap = EgressTrap()
    await trap.start()
    fake_ollama.add_model(thinking_model())
    inbound = InboundRecorder()
    p = await proxy(tiergate_config, extra_middlewares=[inbound.middleware])
    usage = UsageLog(p.core.bus)
    try:
        yield Stack(p, {"openai": fake_openai, "anthropic": fake_anthropic, "ollama": fake_ollama}, usage, trap,
                    guard, ClientEnv(tmp_path / "client"), inbound)
    finally:
        usage.close()
        await trap.close()
        guard.uninstall()
