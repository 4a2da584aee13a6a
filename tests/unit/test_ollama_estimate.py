"""The memory estimate against what Ollama itself reported for real loaded models (resources/ollama/)."""

import json
from pathlib import Path

import pytest

from app.ollama.catalogue import CATALOGUE
from app.ollama.hosts import OllamaSettings
from app.ollama.memory import MemoryPlanner, estimate_memory
from app.ollama.system_memory import SystemMemory
from app.ollama.types import ModelFacts
from app.ollama.units import GiB, MiB

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "ollama"
CASES = json.loads((RESOURCES / "reported_sizes.json").read_text())["cases"]


def human_bytes2(n: int) -> str:
    """Ollama's format.HumanBytes2, which prints the figures in its server log."""
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n} B"


def parse_human(text: str) -> int:
    value, unit = text.split()
    return int(float(value) * {"GiB": GiB, "MiB": MiB}[unit])


def facts(case: dict) -> ModelFacts:
    info = case.get("model_info")
    if info is None:
        info = json.loads((RESOURCES / case["model_info_file"]).read_text())["model_info"]
    return ModelFacts(case["model"], case["weights_bytes"], "installed", info, info.get("general.parameter_count"),
                      tuple(case["capabilities"]))


def estimate(case: dict):
    return estimate_memory(facts(case), num_ctx=case["num_ctx"], parallel=case["parallel"])


@pytest.mark.parametrize("case", [c for c in CASES if "reported_kv" in c], ids=lambda c: c["model"])
def test_kv_cache_matches_ollamas_figure(case):
    assert human_bytes2(estimate(case).kv_cache_bytes) == case["reported_kv"]


@pytest.mark.parametrize("case", [c for c in CASES if "reported_graph" in c], ids=lambda c: c["model"])
def test_compute_graph_matches_ollamas_figure(case):
    assert human_bytes2(estimate(case).graph_bytes) == case["reported_graph"]


@pytest.mark.parametrize("case", [c for c in CASES if "reported_total_bytes" in c or "reported_total" in c],
                         ids=lambda c: c["model"])
def test_total_is_within_8_percent_of_the_reported_size(case):
    reported = case.get("reported_total_bytes") or parse_human(case["reported_total"])
    got = estimate(case).total_bytes
    assert abs(got / reported - 1) < 0.08, (case["model"], got, reported)


def test_exact_figures_for_one_case():
    """llama3.1:8b, 4 x 2048 tokens: KV = 8192 x (128 + 128) x 8 x 2 bytes x 32 layers; graph = 4 x 512 x
    (1 + 4 x 4096 + 8192 x 33)."""
    e = estimate(next(c for c in CASES if c["model"] == "llama3.1:8b"))
    assert e.kv_cache_bytes == 8192 * 256 * 8 * 2 * 32 == 1_073_741_824
    assert e.graph_bytes == 4 * 512 * (1 + 4 * 4096 + 8192 * 33) == 587_204_608
    assert e.total_bytes == 4_920_753_328 + 1_073_741_824 + 587_204_608 + 256 * MiB
    assert e.architecture_known and e.vision_bytes == 0


def test_documented_show_response_gives_the_model_its_context_and_counts():
    doc = json.loads((RESOURCES / "docs_show_llama3_8b.json").read_text())
    f = ModelFacts("llama3:8b", 4_661_224_676, "installed", doc["model_info"], 8_030_261_248)
    e = estimate_memory(f, num_ctx=8192)
    assert e.kv_cache_bytes == 8192 * 256 * 8 * 2 * 32  # 1 GiB at the model's full 8k context


def test_gemma3_sliding_window_layers_hold_only_the_window():
    case = next(c for c in CASES if c["model"] == "gemma3:12b")
    full = estimate_memory(facts(case), num_ctx=32768)
    # 8 global layers hold all 32768 tokens; 40 local layers hold 1024 + 512
    assert full.kv_cache_bytes == 8 * 32768 * 512 * 8 * 2 + 40 * 1536 * 512 * 8 * 2
    assert full.vision_bytes == GiB


def test_kv_cache_quantisation_halves_and_quarters_it():
    f = facts(next(c for c in CASES if c["model"] == "llama3.1:8b"))
    f16 = estimate_memory(f, num_ctx=32768).kv_cache_bytes
    assert estimate_memory(f, num_ctx=32768, kv_cache_type="q8_0").kv_cache_bytes == f16 // 2
    assert estimate_memory(f, num_ctx=32768, kv_cache_type="q4_0").kv_cache_bytes == f16 // 4


def test_unknown_architecture_gets_a_rough_marked_estimate():
    f = ModelFacts("someone/mystery:7b", 4 * GiB, "registry")
    e = estimate_memory(f, num_ctx=32768)
    assert not e.architecture_known
    assert e.kv_cache_bytes == 128 * 1024 * 32768  # 128 KiB per token below 8 B parameters
    assert e.graph_bytes == 512 * MiB and e.total_bytes > 4 * GiB + 4 * GiB


def test_catalogue_entries_estimate_with_known_architecture():
    for m in CATALOGUE:
        e = estimate_memory(m.facts(), num_ctx=8192)
        assert e.architecture_known, m.name
        assert m.size_bytes < e.total_bytes < m.size_bytes * 1.5 + 3 * GiB, m.name


def machine(total_gib: float, *, unified: bool = True) -> SystemMemory:
    total = int(total_gib * GiB)
    limit = (total * 3 // 4 if total > 36 * GiB else total * 2 // 3) if unified else None
    return SystemMemory(total, total // 2, "darwin" if unified else "linux", unified, limit,
                        "default" if unified else "", "normal")


@pytest.mark.parametrize("total, roles", [
    (8, {"helper": "gemma3:4b", "coder": "", "large": ""}),
    (16, {"helper": "gemma3:4b", "coder": "", "large": ""}),
    (32, {"helper": "gemma3:4b", "coder": "qwen3:14b", "large": ""}),
    (64, {"helper": "gemma3:4b", "coder": "qwen3:14b", "large": "llama3.3:70b"}),
    (4, {"helper": "gemma3:1b", "coder": "", "large": ""}),
])
def test_recommendations_follow_machine_size(total, roles):
    recs = MemoryPlanner(system=lambda: machine(total)).recommend()
    assert {r.role: r.model for r in recs} == roles
    for r in recs:
        if r.model:
            assert r.fits and r.estimate_bytes > 0 and r.num_ctx >= 4096


def test_recommended_context_shrinks_to_what_fits():
    recs = {r.role: r for r in MemoryPlanner(system=lambda: machine(64)).recommend()}
    assert recs["coder"].num_ctx == 32768  # agents get their 32k on 64 GiB
    big = recs["large"]
    assert big.num_ctx < 32768 and "do not fit" in big.why  # 70B on 64 GiB: the budget (48 GiB) takes less
    planner = MemoryPlanner(system=lambda: machine(128))
    assert {r.role: r for r in planner.recommend()}["large"].num_ctx == 32768


def test_budget_fraction_gib_and_gpu_limit():
    p = MemoryPlanner(system=lambda: machine(32))
    assert p.budget_bytes() == int(32 * GiB * 2 / 3)  # capped by the Metal working set (21.3 GiB < 24 GiB)
    assert MemoryPlanner(system=lambda: machine(32, unified=False)).budget_bytes() == 24 * GiB
    s = OllamaSettings(memory_budget_bytes=10 * GiB)
    assert MemoryPlanner(s, system=lambda: machine(32)).budget_bytes() == 10 * GiB
