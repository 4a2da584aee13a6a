"""OllamaManager against the fake: models, loaded models, health with the fix, hosts, planning."""

import socket
from dataclasses import replace

import pytest

from app.config.schema import Deployment
from app.errors import BadRequest, TiergateError
from app.events import Event, EventBus, ModelLoadChanged
from app.ollama import (MemoryPlanner, ModelNotInstalled, NotEnoughMemory, OllamaHost, OllamaManager,
                        OllamaSettings, OllamaUnavailable, SystemMemory)
from app.ollama.client import OllamaClient
from app.ollama.errors import INSTALL_URL
from app.ollama.units import GiB
from tests.fakes.base import Fault
from tests.fakes.ollama_fixtures import fake_ollama  # noqa: F401
from tests.fakes.ollama_server import FakeModel, FakeOllama


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make(hosts, *, budget_gib: float = 40, available_gib: float = 40, pressure: str = "normal",
         registry: str | None = None, **kw):
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    settings = OllamaSettings(memory_budget_bytes=int(budget_gib * GiB))
    planner = MemoryPlanner(settings, system=lambda: SystemMemory(64 * GiB, int(available_gib * GiB), "linux",
                                                                   pressure=pressure))
    return OllamaManager(hosts, bus, planner, settings=settings, registry=registry, **kw), events


@pytest.fixture
async def manager(fake_ollama: FakeOllama):
    m, events = make([OllamaHost("local", fake_ollama.base_url)], registry=fake_ollama.base_url)
    m.events = events
    yield m
    await m.close()


async def test_list_show_ps(manager: OllamaManager, fake_ollama: FakeOllama):
    models = await manager.list_models()
    assert [(x.name, x.size_bytes, x.family, x.parameter_size, x.quantization) for x in models] == [
        ("llama3.2:latest", 2_019_393_189, "llama", "3.2B", "Q4_K_M"),
        ("gemma3:4b", 3_338_801_804, "gemma3", "4.3B", "Q4_K_M")]
    assert models[0].modified_at is not None and models[0].modified_at.year == 2025
    d = await manager.show("local", "gemma3:4b")
    assert d.architecture == "gemma3" and d.context_length == 131072 and d.parameter_count == 4_299_915_632
    assert d.capabilities == ("completion", "vision")
    assert await manager.ps() == []
    fake_ollama.load("gemma3:4b", num_ctx=8192)
    (lm,) = await manager.ps()
    assert (lm.name, lm.size_bytes, lm.vram_bytes, lm.context_length) == ("gemma3:4b", 5_964_735_424,
                                                                          5_964_735_424, 8192)
    assert lm.processor == "100% GPU" and lm.expires_at is not None
    assert manager.loaded_on("local", "gemma3:4b") and not manager.loaded_on("local", "llama3.2")


async def test_missing_model_says_how_to_get_it(manager: OllamaManager):
    with pytest.raises(ModelNotInstalled) as e:
        await manager.show("local", "qwen9:1b")
    assert e.value.status == 404 and "`tiergate models pull qwen9:1b`" in e.value.message


async def test_load_and_unload_emit_events(manager: OllamaManager, fake_ollama: FakeOllama):
    lm = await manager.load("local", "gemma3:4b", num_ctx=8192, keep_alive="1h")
    assert lm is not None and lm.context_length == 8192
    req = next(r for r in fake_ollama.requests if r.path == "/api/generate").json
    assert req == {"model": "gemma3:4b", "stream": False, "options": {"num_ctx": 8192}, "keep_alive": "1h"}
    await manager.unload("local", "gemma3:4b")
    assert fake_ollama.requests[-1].json == {"model": "gemma3:4b", "stream": False, "keep_alive": 0}
    assert fake_ollama.loaded == {}
    changes = [(e.model, e.loaded, e.size_bytes, e.reason) for e in manager.events if isinstance(e, ModelLoadChanged)]
    assert changes == [("gemma3:4b", True, 5_964_735_424, "warm_up"), ("gemma3:4b", False, 5_964_735_424, "user")]


async def test_load_refuses_what_cannot_fit_unless_forced(fake_ollama: FakeOllama):
    m, _ = make([OllamaHost("local", fake_ollama.base_url)], budget_gib=4)
    try:
        with pytest.raises(NotEnoughMemory) as e:
            await m.load("local", "gemma3:4b", num_ctx=4096)
        assert e.value.status == 507
        assert e.value.message.startswith("gemma3:4b needs about 5.1 GiB; 4.0 GiB are free")
        assert e.value.message.endswith("(load with --force to try anyway)")
        assert fake_ollama.loaded == {}
        assert await m.load("local", "gemma3:4b", force=True) is not None
    finally:
        await m.close()


async def test_models_that_expire_are_announced(manager: OllamaManager, fake_ollama: FakeOllama):
    fake_ollama.load("llama3.2")
    await manager.ps()
    fake_ollama.loaded.clear()  # Ollama's keep_alive ran out
    await manager.ps()
    (e,) = [e for e in manager.events if isinstance(e, ModelLoadChanged)]
    assert (e.model, e.loaded, e.reason) == ("llama3.2:latest", False, "expired")


async def test_delete_and_copy(manager: OllamaManager, fake_ollama: FakeOllama):
    await manager.copy("local", "gemma3:4b", "gemma3:helper")
    assert "gemma3:helper" in {x.name for x in await manager.list_models()}
    fake_ollama.load("gemma3:helper")
    await manager.ps()
    await manager.delete("local", "gemma3:helper")
    assert "gemma3:helper" not in fake_ollama.installed and "gemma3:helper" not in fake_ollama.loaded
    with pytest.raises(ModelNotInstalled):
        await manager.delete("local", "gemma3:helper")
    with pytest.raises(BadRequest):
        await manager.copy("local", "gemma3:4b", "registry.example.com/x/y:1")


async def test_health_ok_and_errors(manager: OllamaManager, fake_ollama: FakeOllama):
    (h,) = await manager.health()
    assert h.ok and h.version == "0.12.6" and h.message == "Ollama 0.12.6 is running" and h.fix == ""
    fake_ollama.faults.append(Fault.garbage())
    h = await manager.check_host("local")
    assert h.state == "error" and "is not Ollama's API" in h.message and not manager.host_available("local")
    fake_ollama.faults.append(Fault.status(500, "boom"))
    assert (await manager.check_host("local")).state == "error"
    assert (await manager.check_host("local")).ok and manager.host_available("local")


async def test_health_timeout_is_unreachable(fake_ollama: FakeOllama):
    m, _ = make([OllamaHost("local", fake_ollama.base_url)], health_timeout=0.2)
    fake_ollama.faults.append(Fault.hang(5))
    try:
        h = await m.check_host("local")
        assert h.state == "unreachable" and h.message == "Ollama on local does not answer"
        assert "Restart Ollama" in h.fix
    finally:
        await m.close()


async def test_not_running_not_installed_and_unreachable_each_have_their_fix():
    url = closed_port_url()
    m, _ = make([OllamaHost("local", url)], installed=lambda: True)
    h = await m.check_host("local")
    assert h.state == "not_running" and "`ollama serve`" in h.fix and url in h.message
    await m.close()
    m, _ = make([OllamaHost("local", url)], installed=lambda: False)
    h = await m.check_host("local")
    assert h.state == "not_installed" and INSTALL_URL in h.fix
    with pytest.raises(OllamaUnavailable) as e:  # requests fail typed, retryable: the router falls back
        await m.list_models()
    assert e.value.retryable and e.value.status == 502 and "`ollama serve`" in e.value.message
    await m.close()
    studio = OllamaHost("studio", "http://studio.lan:11434", True)
    m, _ = make([studio], client_factory=lambda h: OllamaClient(replace(h, url=url)))
    h = await m.check_host("studio")
    assert h.state == "unreachable" and "OLLAMA_HOST=0.0.0.0" in h.fix and "studio.lan" in h.fix
    assert not m.host_available("studio")
    await m.close()


async def test_several_hosts_and_the_router_preference(fake_ollama: FakeOllama):
    other = FakeOllama()
    await other.start()
    down = closed_port_url()
    hosts = [OllamaHost("local", fake_ollama.base_url), OllamaHost("studio", other.base_url),
             OllamaHost("gone", down)]
    m, _ = make(hosts, installed=lambda: True)
    try:
        other.load("llama3.2")
        await m.ps("studio")
        await m.ps("local")
        local_port = fake_ollama.base_url.rsplit(":", 1)[1]
        deps = [Deployment(id="a", tier="helper", provider="ollama", model="llama3.2",
                           api_base=f"http://localhost:{local_port}"),
                Deployment(id="b", tier="helper", provider="ollama", model="llama3.2", api_base=other.base_url),
                Deployment(id="c", tier="helper", provider="openai", model="gpt-5-mini", api_base="https://x")]
        assert m.host_for(deps[0].api_base).name == "local"  # localhost and 127.0.0.1 are the same machine
        assert [d.id for d in m.prefer_loaded(deps)] == ["b", "a", "c"]
        assert len(await m.list_all()) == 4  # two models on each answering host; the dead one skipped
        await m.health()
        assert m.deployment_available(deps[0]) and m.deployment_available(deps[2])
        assert not m.host_available("gone")
        with pytest.raises(BadRequest):
            m.host("nowhere")
    finally:
        await m.close()
        await other.close()


async def test_facts_come_from_install_registry_or_catalogue(manager: OllamaManager, fake_ollama: FakeOllama):
    f = await manager.facts("local", "gemma3:4b")
    assert (f.source, f.weights_bytes, f.parameter_count) == ("installed", 3_338_801_804, 4_299_915_632)
    f = await manager.facts("local", "qwen3:14b")  # not installed: registry size, catalogue architecture
    assert (f.source, f.weights_bytes) == ("registry", 9_276_198_565) and f.model_info["qwen3.block_count"] == 40
    fake_ollama.add_model(FakeModel("someone/tiny:1b", size=700_000_000), installed=False)
    f = await manager.facts("local", "someone/tiny:1b")
    assert (f.source, f.weights_bytes, f.model_info) == ("registry", 700_000_000, {})
    with pytest.raises(ModelNotInstalled, match="size is unknown"):
        await manager.facts("local", "nosuch:7b")
    offline, _ = make([OllamaHost("local", fake_ollama.base_url)], registry=None)
    assert (await offline.facts("local", "qwen3:14b")).source == "catalogue"
    await offline.close()


async def test_fit_through_the_manager(manager: OllamaManager, fake_ollama: FakeOllama):
    fake_ollama.load("llama3.2", num_ctx=4096)
    r = await manager.fit("local", "gemma3:27b")
    assert r.estimate.num_ctx == 32768 and r.loaded_bytes == fake_ollama.installed["llama3.2:latest"].resident
    assert r.fits and r.estimate.source == "registry"


async def test_context_advice_for_local_deployments(manager: OllamaManager, fake_ollama: FakeOllama):
    deps = [Deployment(id="helper/ollama/gemma3:4b", tier="helper", provider="ollama", model="gemma3:4b",
                       api_base=fake_ollama.base_url),
            Deployment(id="coder/ollama/llama3.2", tier="coder", provider="ollama", model="llama3.2",
                       api_base=fake_ollama.base_url, context_length=32768),
            Deployment(id="x", tier="coder", provider="anthropic", model="claude", api_base="https://x")]
    a, b = await manager.context_advice(deps)
    assert (a.deployment, a.configured, a.proposed, a.fits) == ("helper/ollama/gemma3:4b", None, 32768, True)
    assert "Ollama will use its default of 4096 tokens" in a.message
    assert (b.configured, b.proposed, b.fits) == (32768, 32768, True)


async def test_errors_are_typed(manager: OllamaManager, fake_ollama: FakeOllama):
    fake_ollama.faults.append(Fault.status(500, "unexpected server status"))
    with pytest.raises(TiergateError) as e:
        await manager.list_models()
    assert e.value.code == "ollama_error" and "unexpected server status" in e.value.message
    fake_ollama.faults.append(Fault.drop())
    with pytest.raises(OllamaUnavailable):
        await manager.ps()


async def test_an_ollama_com_key_is_not_sent_to_hosts(fake_ollama: FakeOllama, monkeypatch):
    monkeypatch.setenv("OLLAMA_API_KEY", "sk-ollama-cloud-key")
    m, _ = make([OllamaHost("local", fake_ollama.base_url)])
    await m.list_models()
    assert "authorization" not in {k.lower() for k in fake_ollama.requests[-1].headers}
    await m.close()
