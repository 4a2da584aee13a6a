"""Fit checks before pull and load, with simulated memory figures."""

from datetime import datetime, timedelta, timezone

from app.ollama.catalogue import lookup
from app.ollama.hosts import OllamaHost, OllamaSettings
from app.ollama.memory import MemoryPlanner
from app.ollama.system_memory import SystemMemory
from app.ollama.types import LoadedModel
from app.ollama.units import GiB

LOCAL = OllamaHost("local", "http://localhost:11434")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def linux(available_gib: float, pressure: str = "normal", total_gib: float = 64) -> SystemMemory:
    return SystemMemory(int(total_gib * GiB), int(available_gib * GiB), "linux", pressure=pressure)


def loaded(name: str, gib: float, expires_in: int = 300) -> LoadedModel:
    return LoadedModel(name, "local", int(gib * GiB), int(gib * GiB), 4096, NOW + timedelta(seconds=expires_in))


def planner(available: float = 20, budget_gib: float = 30, pressure: str = "normal", **kw) -> MemoryPlanner:
    return MemoryPlanner(OllamaSettings(memory_budget_bytes=int(budget_gib * GiB), **kw),
                         system=lambda: linux(available, pressure))


def test_the_message_says_what_it_needs_what_is_free_and_what_to_do():
    r = planner().fit(lookup("gemma3:27b").facts(), host=LOCAL, loaded=[loaded("qwen3:14b", 19)], num_ctx=4096)
    assert not r.fits
    assert r.free_bytes == 11 * GiB and r.loaded_bytes == 19 * GiB and r.budget_bytes == 30 * GiB
    assert r.unload == ("qwen3:14b",)
    assert r.alternatives[0] == "gemma3:12b"  # same family first, the largest that fits
    assert r.message == "gemma3:27b needs about 19 GiB; 11 GiB are free; unload qwen3:14b or choose gemma3:12b"


def test_a_model_that_fits():
    r = planner().fit(lookup("gemma3:4b").facts(), host=LOCAL, loaded=[loaded("qwen3:14b", 19)], num_ctx=8192)
    assert r.fits and r.unload == () and r.alternatives == ()
    assert r.message == "gemma3:4b needs about 5.2 GiB; 11 GiB are free"


def test_available_ram_limits_free_memory_below_the_budget():
    r = planner(available=6).fit(lookup("qwen3:14b").facts(), host=LOCAL, loaded=[], num_ctx=8192)
    assert r.free_bytes == 6 * GiB and not r.fits


def test_least_recently_used_models_are_proposed_first():
    models = [loaded("a:latest", 8, expires_in=100), loaded("b:latest", 8, expires_in=50),
              loaded("c:latest", 8, expires_in=10)]
    p = planner(available=30, budget_gib=30)
    facts = lookup("qwen3:14b").facts()  # about 11.7 GiB at 8k: one 8 GiB model must go (6 GiB free)
    r = p.fit(facts, host=LOCAL, loaded=models, num_ctx=8192, lru=["c:latest", "a:latest", "b:latest"])
    assert r.unload == ("c:latest",)
    # never used through Tiergate counts as oldest; ties by Ollama's expiry
    r = p.fit(facts, host=LOCAL, loaded=models, num_ctx=8192, lru=["a:latest"])
    assert r.unload == ("c:latest",)
    r = p.fit(facts, host=LOCAL, loaded=models, num_ctx=8192, lru=["c:latest", "b:latest"])
    assert r.unload == ("a:latest",)


def test_no_unload_advice_when_even_an_empty_machine_is_too_small():
    r = planner(available=20, budget_gib=12).fit(lookup("llama3.3:70b").facts(), host=LOCAL,
                                                 loaded=[loaded("gemma3:4b", 5)], num_ctx=8192)
    assert not r.fits and r.unload == ()
    assert "choose" in r.message


def test_already_loaded_model_fits():
    r = planner(available=1).fit(lookup("qwen3:14b").facts(), host=LOCAL, loaded=[loaded("qwen3:14b", 12)],
                                 num_ctx=8192)
    assert r.fits and r.message.startswith("qwen3:14b is loaded")


def test_memory_pressure_is_reported():
    r = planner(pressure="critical").fit(lookup("gemma3:4b").facts(), host=LOCAL, loaded=[], num_ctx=4096)
    assert r.pressure == "critical" and r.message.endswith("The system reports high memory pressure")


def test_remote_hosts_use_their_configured_memory_or_say_it_is_unknown():
    p = planner()
    unknown = OllamaHost("studio", "http://192.168.1.20:11434", True)
    r = p.fit(lookup("gemma3:27b").facts(), host=unknown, loaded=[], num_ctx=4096)
    assert r.fits and "memory of studio is unknown" in r.message
    studio = OllamaHost("studio", "http://192.168.1.20:11434", True, 32 * GiB)
    r = MemoryPlanner(OllamaSettings(memory_budget_fraction=0.5), system=lambda: linux(1)).fit(
        lookup("gemma3:27b").facts(), host=studio, loaded=[loaded("qwen3:14b", 4)], num_ctx=4096)
    assert r.budget_bytes == 16 * GiB and r.free_bytes == 12 * GiB and not r.fits and r.unload == ()


def test_user_override_replaces_the_estimate():
    p = planner(model_sizes={"gemma3:27b": 9 * GiB})
    r = p.fit(lookup("gemma3:27b").facts(), host=LOCAL, loaded=[loaded("qwen3:14b", 19)], num_ctx=4096)
    assert r.fits and r.estimate.override and r.estimate.total_bytes == 9 * GiB
    assert r.estimate.describe() == "9.0 GiB (set in config)"


def test_context_proposal_and_advice():
    p = planner()
    facts = lookup("qwen3:14b").facts()
    assert p.propose_context(facts, free_bytes=40 * GiB) == (32768, True)
    assert p.propose_context(facts, free_bytes=40 * GiB, want=131072) == (40960, True)  # trained for 40960
    n, fits = p.propose_context(facts, free_bytes=12 * GiB)
    assert fits and n == 8192
    assert p.propose_context(facts, free_bytes=GiB) == (2048, False)

    a = p.advise_context("coder/ollama/qwen3:14b", facts, host="local", configured=None, free_bytes=40 * GiB)
    assert a.proposed == 32768 and a.fits
    assert a.message == ("qwen3:14b has no context_length: Ollama will use its default of 4096 tokens, too small "
                         "for agents (they need 32768+); set context_length: 32768")
    a = p.advise_context("d", facts, host="local", configured=8192, free_bytes=40 * GiB)
    assert "agents need 32768+: set context_length: 32768" in a.message
    a = p.advise_context("d", facts, host="local", configured=32768, free_bytes=12 * GiB)
    assert not a.fits and a.proposed == 8192
    assert a.message.startswith("qwen3:14b with 32768 tokens of context needs about 16 GiB but 12 GiB are free")
    a = p.advise_context("d", facts, host="local", configured=32768, free_bytes=40 * GiB)
    assert a.fits and a.message == "qwen3:14b: context_length 32768 fits (about 16 GiB)"
