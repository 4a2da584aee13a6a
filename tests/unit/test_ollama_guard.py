"""The memory guard around local requests, with simulated memory figures, against the fake Ollama."""

import asyncio

import pytest

from app.events import EventBus, ModelLoadChanged
from app.ollama import (MemoryPlanner, ModelNotInstalled, NotEnoughMemory, OllamaHost, OllamaManager, OllamaSettings,
                        OllamaUnavailable, SystemMemory)
from app.ollama.units import GiB
from tests.fakes.ollama_fixtures import fake_ollama  # noqa: F401
from tests.fakes.ollama_server import FakeModel, FakeOllama, llama_info


class Machine:
    """Simulated memory: tests change `pressure` (a list is consumed one reading at a time)."""

    def __init__(self, available_gib: float = 48, pressure: str | list[str] = "normal"):
        self.available = int(available_gib * GiB)
        self.pressure = pressure
        self.readings = 0

    def __call__(self) -> SystemMemory:
        self.readings += 1
        p = self.pressure.pop(0) if isinstance(self.pressure, list) and len(self.pressure) > 1 else (
            self.pressure[0] if isinstance(self.pressure, list) else self.pressure)
        return SystemMemory(64 * GiB, self.available, "linux", pressure=p)


def small(name: str, resident_gib: float) -> FakeModel:
    """A 3 GiB model (estimate at 4096 tokens about 3.9 GiB) that Ollama reports as `resident_gib` loaded."""
    return FakeModel(name, size=3 * GiB, model_info=llama_info(), loaded_size=int(resident_gib * GiB))


def make(fake: FakeOllama, *, budget_gib: float = 12, machine: Machine | None = None, **kw):
    bus = EventBus()
    events: list[ModelLoadChanged] = []
    bus.subscribe(events.append, ModelLoadChanged)
    settings = OllamaSettings(memory_budget_bytes=int(budget_gib * GiB), **kw)
    planner = MemoryPlanner(settings, system=machine or Machine())
    m = OllamaManager([OllamaHost("local", fake.base_url)], bus, planner, settings=settings, registry=None)
    return m, events


@pytest.fixture
def fake(fake_ollama: FakeOllama) -> FakeOllama:
    for name in ("a:1b", "b:1b", "c:1b"):
        fake_ollama.add_model(small(name, 4))
    return fake_ollama


def changes(events):
    return [(e.model, e.loaded, e.reason) for e in events]


async def test_acquire_loads_once_marks_in_flight_and_records_use(fake: FakeOllama):
    m, events = make(fake)
    async with m.acquire("local", "a:1b", num_ctx=8192):
        assert m.book.in_flight("local", "a:1b") == 1 and m.loaded_on("local", "a:1b")
    assert m.book.in_flight("local", "a:1b") == 0 and m.book.lru("local") == ["a:1b"]
    async with m.acquire("local", "a:1b", num_ctx=8192):
        pass
    assert fake.loads == [("a:1b", 8192)] and changes(events) == [("a:1b", True, "request")]
    generate = [r.json for r in fake.requests if r.path == "/api/generate"]
    assert generate == [{"model": "a:1b", "stream": False, "options": {"num_ctx": 8192}}]


async def test_concurrent_requests_for_one_model_load_it_once(fake: FakeOllama):
    m, _ = make(fake)
    fake.load_delay = 0.05
    started = asyncio.Event()

    async def request():
        async with m.acquire("local", "b:1b", num_ctx=4096):
            started.set()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request() for _ in range(5)))
    assert fake.loads == [("b:1b", 4096)]
    assert len([r for r in fake.requests if r.path == "/api/generate"]) == 1


async def test_another_context_length_reloads(fake: FakeOllama):
    m, _ = make(fake)
    async with m.acquire("local", "a:1b", num_ctx=4096):
        pass
    async with m.acquire("local", "a:1b", num_ctx=32768):
        pass
    assert fake.loads == [("a:1b", 4096), ("a:1b", 32768)]


async def test_over_budget_the_least_recently_used_idle_model_goes_first(fake: FakeOllama):
    m, events = make(fake, budget_gib=11)
    for name in ("a:1b", "b:1b"):  # a used first, then b: 8 GiB loaded
        async with m.acquire("local", name):
            pass
    async with m.acquire("local", "c:1b"):  # about 3.9 GiB more: over 11 GiB, so a is unloaded first
        pass
    assert changes(events) == [("a:1b", True, "request"), ("b:1b", True, "request"),
                               ("a:1b", False, "memory_guard"), ("c:1b", True, "request")]
    assert sorted(fake.loaded) == ["b:1b", "c:1b"] and fake.unloads == ["a:1b"]


async def test_a_model_serving_a_request_is_never_unloaded(fake: FakeOllama):
    m, events = make(fake, budget_gib=11)
    async with m.acquire("local", "a:1b"):
        async with m.acquire("local", "b:1b"):
            pass
        async with m.acquire("local", "c:1b"):  # a is older but in flight: b goes
            assert "a:1b" in fake.loaded
    assert ("b:1b", False, "memory_guard") in changes(events) and ("a:1b", False, "memory_guard") not in changes(events)


async def test_when_everything_is_in_flight_nothing_is_unloaded(fake: FakeOllama):
    m, events = make(fake, budget_gib=8)
    async with m.acquire("local", "a:1b"), m.acquire("local", "b:1b"):
        async with m.acquire("local", "c:1b"):  # advisory: the load still goes ahead
            pass
    assert not [c for c in changes(events) if not c[1]] and sorted(fake.loaded) == ["a:1b", "b:1b", "c:1b"]


async def test_memory_pressure_unloads_until_it_clears(fake: FakeOllama):
    for name in ("a:1b", "b:1b"):
        fake.load(name)
    machine = Machine(pressure=["critical", "warn", "normal"])
    m, events = make(fake, budget_gib=40, machine=machine)
    async with m.acquire("local", "c:1b"):
        pass
    unloaded = [c[0] for c in changes(events) if not c[1]]
    assert len(unloaded) == 2 and machine.readings == 3  # re-read after each unload
    assert sorted(fake.loaded) == ["c:1b"]


async def test_guard_off_never_unloads(fake: FakeOllama):
    m, events = make(fake, budget_gib=4, guard=False)
    for name in ("a:1b", "b:1b", "c:1b"):
        async with m.acquire("local", name):
            pass
    assert fake.unloads == [] and len(fake.loaded) == 3


async def test_keep_alive_follows_the_tier(fake: FakeOllama):
    m, _ = make(fake, keep_alive={"helper": "30m", "default": "5m"})
    async with m.acquire("local", "a:1b", tier="helper"):
        pass
    async with m.acquire("local", "b:1b", tier="coder"):
        pass
    ka = [r.json.get("keep_alive") for r in fake.requests if r.path == "/api/generate"]
    assert ka == ["30m", "5m"] and m.keep_alive_for("helper") == "30m"


async def test_a_model_that_cannot_be_served_fails_before_the_request(fake: FakeOllama):
    m, _ = make(fake)
    with pytest.raises(ModelNotInstalled):
        async with m.acquire("local", "qwen9:1b"):
            raise AssertionError("not reached")
    assert m.book.in_flight("local", "qwen9:1b") == 0
    await fake.close()
    with pytest.raises(OllamaUnavailable) as e:
        async with m.acquire("local", "a:1b"):
            raise AssertionError("not reached")
    assert e.value.retryable


async def test_a_user_load_makes_room_or_refuses_without_unloading(fake: FakeOllama):
    m, events = make(fake, budget_gib=9)
    for name in ("a:1b", "b:1b"):
        async with m.acquire("local", name):
            pass
    await m.load("local", "c:1b")  # 8 + 3.9 GiB > 9: the guard unloads a, the least recently used
    assert changes(events)[-2:] == [("a:1b", False, "memory_guard"), ("c:1b", True, "warm_up")]
    fake.add_model(FakeModel("huge:70b", size=40 * GiB, model_info=llama_info()))
    with pytest.raises(NotEnoughMemory):
        await m.load("local", "huge:70b")
    assert sorted(fake.loaded) == ["b:1b", "c:1b"]  # nothing unloaded for a model that can never fit
