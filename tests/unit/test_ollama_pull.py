"""Pulls: progress events, cancel and resume, failures, names, memory check. Against the fake Ollama."""

import asyncio
from pathlib import Path

import pytest

from app.events import EventBus, PullProgress
from app.ollama import (MemoryPlanner, NotEnoughMemory, OllamaHost, OllamaManager, OllamaSettings,
                        OllamaUnavailable, PullFailed, SystemMemory)
from app.ollama.names import InvalidModelName
from app.ollama.pull import PullTracker
from app.ollama.units import GiB, MiB
from tests.fakes.ollama_fixtures import fake_ollama  # noqa: F401
from tests.fakes.ollama_server import FakeModel, FakeOllama

WEIGHTS = "sha256:" + "7a" * 32
TEMPLATE = "sha256:" + "1b" * 32
TINY = FakeModel("tiny:1b", layers=[(WEIGHTS, 12 * MiB), (TEMPLATE, 1_429)])


def make(fake: FakeOllama, *, budget_gib: float = 40):
    bus = EventBus()
    events: list[PullProgress] = []
    bus.subscribe(events.append, PullProgress)
    settings = OllamaSettings(memory_budget_bytes=int(budget_gib * GiB))
    planner = MemoryPlanner(settings, system=lambda: SystemMemory(64 * GiB, 48 * GiB, "linux", pressure="normal"))
    return OllamaManager([OllamaHost("local", fake.base_url)], bus, planner, settings=settings,
                         registry=fake.base_url), events


@pytest.fixture
def fake(fake_ollama: FakeOllama) -> FakeOllama:
    fake_ollama.add_model(TINY, installed=False)
    fake_ollama.pull_chunk = 1 * MiB
    return fake_ollama


async def settle(fake: FakeOllama) -> None:
    """Wait for the fake's handler of a cancelled pull to notice the client went away."""
    for _ in range(200):
        if not fake.active_pulls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake's pull handler did not stop")


async def test_pull_reports_progress_and_installs(fake: FakeOllama):
    m, events = make(fake)
    handle = await m.pull("local", "tiny:1b")
    result = await handle.wait()
    assert (result.status, result.completed, result.total) == ("success", 12 * MiB + 1_429, 12 * MiB + 1_429)
    assert events[0].status == "pulling manifest" and events[0].total == 0
    layer = [e for e in events if e.status == "pulling 7a7a7a7a7a7a"]
    assert [e.completed for e in layer] == [0] + [n * MiB for n in range(1, 13)]
    assert all(e.total == 12 * MiB for e in layer)
    assert [e.status for e in events[-4:]] == ["pulling 1b1b1b1b1b1b", "verifying sha256 digest",
                                                "writing manifest", "success"]
    assert events[-1].done and not any(e.done for e in events[:-1]) and events[-1].error == ""
    assert events[-1].completed == events[-1].total == 12 * MiB + 1_429
    assert handle.tracker.layers[WEIGHTS].completed == 12 * MiB  # per layer, as well as the total
    assert {(e.digest, e.layer_completed, e.layer_total) for e in layer[-1:]} == {(WEIGHTS, 12 * MiB, 12 * MiB)}
    assert events[0].digest == "" and events[0].layer_total == 0  # the manifest step is about no layer
    assert "tiny:1b" in {x.name for x in await m.list_models()}
    body = next(r for r in fake.requests if r.path == "/api/pull").json
    assert body == {"model": "tiny:1b", "insecure": False, "stream": True}  # never insecure
    await m.close()


async def test_cancelled_pull_resumes_where_it_stopped(fake: FakeOllama):
    m, events = make(fake)
    fake.pull_delay = 0.001

    def stop_after_3mib(e: PullProgress) -> None:
        if e.completed >= 3 * MiB and not e.done:
            m.cancel_pull("local", "tiny:1b")

    unsubscribe = m.bus.subscribe(stop_after_3mib, PullProgress)
    handle = await m.pull("local", "tiny:1b")
    result = await handle.wait()
    unsubscribe()
    assert result.status == "cancelled" and result.completed == 3 * MiB
    assert events[-1].status == "cancelled" and events[-1].done and events[-1].error == "cancelled"
    await settle(fake)
    kept = fake.partial[WEIGHTS]
    assert 3 * MiB <= kept < 12 * MiB and "tiny:1b" not in fake.installed
    assert m.pulls() == []

    events.clear()
    second = await m.pull("local", "tiny:1b")
    result = await second.wait()
    assert result.status == "success" and "tiny:1b" in fake.installed
    assert fake.pull_starts[-1][WEIGHTS] == kept  # Ollama continued from the partial download
    first_layer_event = next(e for e in events if e.status == "pulling 7a7a7a7a7a7a")
    assert first_layer_event.completed == kept
    assert second.tracker.session_bytes == 12 * MiB - kept + 1_429  # speed counts only new bytes
    await m.close()


async def test_a_failed_pull_raises_typed_and_the_next_one_resumes(fake: FakeOllama):
    m, events = make(fake)
    fake.fail_pull["tiny:1b"] = 5 * MiB
    handle = await m.pull("local", "tiny:1b")
    with pytest.raises(PullFailed) as e:
        await handle.wait()
    assert "max retries exceeded" in e.value.message and "Run the pull again to resume it" in e.value.message
    assert events[-1].status == "failed" and events[-1].done and "max retries exceeded" in events[-1].error
    assert fake.partial[WEIGHTS] == 5 * MiB
    result = await (await m.pull("local", "tiny:1b")).wait()
    assert result.status == "success" and fake.pull_starts[-1][WEIGHTS] == 5 * MiB
    await m.close()


async def test_a_model_not_in_the_library(fake: FakeOllama):
    m, events = make(fake)
    handle = await m.pull("local", "nosuchmodel:7b")
    with pytest.raises(PullFailed) as e:
        await handle.wait()
    assert e.value.message == ("nosuchmodel:7b is not in the Ollama library (Ollama: pull model manifest: file does "
                               "not exist)")
    assert [x.status for x in events] == ["pulling manifest", "failed"]
    await m.close()


@pytest.mark.parametrize("name", ["registry.example.com/library/llama3:8b", "hf.co/org/repo", "x/y/z", "a b"])
async def test_only_plain_names_reach_ollama(fake: FakeOllama, name: str):
    m, _ = make(fake)
    with pytest.raises(InvalidModelName):
        await m.pull("local", name)
    assert not [r for r in fake.requests if r.path == "/api/pull"]
    await m.close()


async def test_pull_checks_memory_first(fake: FakeOllama):
    m, _ = make(fake, budget_gib=8)
    with pytest.raises(NotEnoughMemory) as e:
        await m.pull("local", "gemma3:27b")
    assert e.value.message.startswith("gemma3:27b needs about")
    assert e.value.message.endswith("Pull with --force to download it anyway")
    assert not [r for r in fake.requests if r.path == "/api/pull"]
    fake.pull_chunk = 4 * GiB
    assert (await (await m.pull("local", "gemma3:27b", force=True)).wait()).status == "success"
    await m.close()


async def test_pulling_twice_shares_one_pull(fake: FakeOllama):
    m, _ = make(fake)
    fake.pull_delay = 0.001
    a = await m.pull("local", "tiny:1b")
    b = await m.pull("local", "TINY:1b")
    assert a is b
    await a.wait()
    assert len([r for r in fake.requests if r.path == "/api/pull"]) == 1
    await m.close()


async def test_unreachable_host_during_pull(fake: FakeOllama):
    m, events = make(fake)
    await fake.close()
    with pytest.raises(OllamaUnavailable):
        await m.pull("local", "tiny:1b")  # the memory check already needs the host
    handle = await m.pull("local", "tiny:1b", force=True)
    with pytest.raises(OllamaUnavailable):
        await handle.wait()
    assert events[-1].status == "failed" and events[-1].done
    await m.close()


def test_tracker_totals_speed_and_eta_with_a_clock():
    now = [100.0]
    t = PullTracker(clock=lambda: now[0])
    t.update("pulling manifest")
    t.update("pulling aaaa", "sha256:a", 1000, 400)  # resumed: 400 bytes were already there
    assert (t.completed, t.total, t.session_bytes, t.bytes_per_second, t.eta_seconds) == (400, 1000, 0, 0.0, None)
    now[0] = 102.0
    t.update("pulling aaaa", "sha256:a", 1000, 600)
    assert t.bytes_per_second == 100.0 and t.eta_seconds == 4.0
    now[0] = 103.0
    t.update("pulling bbbb", "sha256:b", 500, 0)
    assert t.total == 1500 and t.completed == 600
    for step in range(1, 11):  # a later window: speed follows the last 5 seconds, not the whole pull
        now[0] = 103.0 + step
        t.update("pulling bbbb", "sha256:b", 500, 40 * step)
    assert t.bytes_per_second == pytest.approx(40.0) and t.eta_seconds == pytest.approx((1500 - 1000) / 40)


def test_tiergate_never_calls_create_or_push():
    from app.ollama.client import OllamaClient

    for cls in (OllamaManager, OllamaClient):
        assert not any(hasattr(cls, name) for name in ("create", "push", "create_blob"))
    source = "\n".join(p.read_text() for p in Path("app/ollama").glob("*.py"))
    for needle in ("/api/create", "/api/push", ".create(", ".push(", "insecure=True"):
        assert needle not in source
