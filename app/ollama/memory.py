"""Memory planner: how much memory a local model takes, whether it fits, and what to run on this machine.

The estimate of a loaded model's resident size (what `/api/ps` reports as `size`) is the sum of:

1. weights: the installed size (every layer, vision projector included); before a pull, the registry
   manifest's layer sizes, or the library size from the built-in catalogue.
2. KV cache: for each of `<arch>.block_count` layers,
   num_ctx x parallel x (key_length + value_length) x head_count_kv x bytes per element
   (f16: 2, q8_0: 1, q4_0: 0.5). key_length / value_length are `<arch>.attention.key_length` /
   `value_length`, else embedding_length / head_count. Sliding-window layers keep only their window:
   Gemma 3's local layers (five of every six) hold parallel x sliding_window + batch tokens, gpt-oss's
   even layers parallel x 4096 + batch.
3. compute graph: Ollama's own full-offload estimate (fs/ggml GraphSize), batch b = 512, c = num_ctx x
   parallel, E = embedding_length, H = head_count, K = key_length, V = vocabulary size:
   llama and every other architecture: max(4b(1 + 4E + c(1 + H)), 4b(E + V));
   gemma*: max(4b(E + V), 4b(2 + c + cH + 2E + 2KH)); qwen2: max(4b(E + V), 4b(1 + 2E + c + cH)).
4. vision: 1 GiB for models with the vision capability (Ollama's projector graph for Gemma 3 / Mistral 3).
5. overhead: 256 MiB for the runner process and backend buffers.

tests/unit/test_ollama_estimate.py checks the totals against sizes Ollama reported for loaded models
(within 8 %) and the KV cache and graph parts against the figures Ollama logged for them (equal as Ollama
prints them, to 0.1 MiB / GiB). Without the
architecture fields (a model neither installed nor in the catalogue) the KV cache is taken as 128 KiB per
token scaled by sqrt(parameters / 8 billion) and the graph as 512 MiB: rough, and marked so.

The estimate is advice. `model_sizes_gb` in the config, `--size` on the CLI and `force=True` override it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

from app.ollama.catalogue import CATALOGUE, CatalogueModel, lookup
from app.ollama.hosts import OllamaHost, OllamaSettings
from app.ollama.names import family_of, same_model
from app.ollama.system_memory import SystemMemory, SystemMemoryReader
from app.ollama.types import (ContextAdvice, FitReport, LoadedModel, MemoryEstimate, ModelFacts,
                              Recommendation)
from app.ollama.units import GiB, MiB, about, rounded

BATCH = 512
OVERHEAD_BYTES = 256 * MiB
VISION_BYTES = 1 * GiB
OLLAMA_DEFAULT_CONTEXT = 4096  # what Ollama uses when neither the request nor OLLAMA_CONTEXT_LENGTH sets one
CONTEXT_STEPS = (131072, 65536, 32768, 16384, 8192, 4096, 2048)
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5, "f32": 4.0}
_VOCAB_BY_ARCH = {"gemma": 256000, "gemma2": 256000, "gemma3": 262144, "qwen2": 151936, "qwen3": 151936,
                  "qwen3moe": 151936, "llama": 128256, "mistral3": 131072, "gptoss": 201088}
DEFAULT_VOCAB = 128000


def _num(info: dict[str, Any], key: str) -> int | None:
    v = info.get(key)
    if isinstance(v, list):  # per-layer arrays (some architectures): the largest entry is the worst case
        v = max((x for x in v if isinstance(x, (int, float))), default=None)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(v)


def parameters_from_text(text: str) -> int | None:
    """'8.0B' -> 8_000_000_000, '137M' -> 137_000_000."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMBT])\s*", text or "", re.I)
    if not m:
        return None
    return int(float(m.group(1)) * {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2).upper()])


def estimate_memory(facts: ModelFacts, *, num_ctx: int, parallel: int = 1,
                    kv_cache_type: str = "f16") -> MemoryEstimate:
    """The resident size of `facts` loaded with `num_ctx` tokens per sequence (see the module docstring)."""
    info = facts.model_info
    arch = str(info.get("general.architecture") or "")
    bpe = KV_BYTES_PER_ELEMENT.get(kv_cache_type, 2.0)
    ctx = num_ctx * parallel
    blocks = _num(info, f"{arch}.block_count")
    heads = _num(info, f"{arch}.attention.head_count")
    kv_heads = _num(info, f"{arch}.attention.head_count_kv") or heads
    embedding = _num(info, f"{arch}.embedding_length")
    vision = VISION_BYTES if "vision" in facts.capabilities else 0
    if not (arch and blocks and heads and kv_heads and embedding):
        params = facts.parameter_count or int(facts.weights_bytes / 0.6)  # Q4_K_M is ~0.6 bytes per weight
        per_token = 128 * 1024 * max(1.0, math.sqrt(params / 8e9))
        return MemoryEstimate(facts.name, facts.weights_bytes, int(per_token * ctx * bpe / 2), 512 * MiB, vision,
                              OVERHEAD_BYTES, num_ctx, parallel, kv_cache_type, facts.source, False)
    key_len = _num(info, f"{arch}.attention.key_length") or embedding // heads
    value_len = _num(info, f"{arch}.attention.value_length") or key_len
    vocab = _num(info, f"{arch}.vocab_size") or _VOCAB_BY_ARCH.get(arch, DEFAULT_VOCAB)

    per_layer_full = ctx * (key_len + value_len) * kv_heads * bpe
    window = _num(info, f"{arch}.attention.sliding_window")
    kv = 0.0
    for i in range(blocks):
        tokens_held = ctx
        if arch == "gemma3" and window and (i + 1) % 6 != 0:
            tokens_held = min(ctx, parallel * window + BATCH)
        elif arch in ("gptoss", "gpt-oss") and i % 2 == 0:
            tokens_held = min(ctx, parallel * 4096 + BATCH)
        kv += per_layer_full * tokens_held / ctx
    b, c, E, H, K, V = BATCH, ctx, embedding, heads, key_len, vocab
    if arch.startswith("gemma"):
        graph = max(4 * b * (E + V), 4 * b * (2 + c + c * H + 2 * E + 2 * K * H))
    elif arch == "qwen2":
        graph = max(4 * b * (E + V), 4 * b * (1 + 2 * E + c + c * H))
    else:
        graph = max(4 * b * (1 + 4 * E + c * (1 + H)), 4 * b * (E + V))
    return MemoryEstimate(facts.name, facts.weights_bytes, int(kv), int(graph), vision, OVERHEAD_BYTES,
                          num_ctx, parallel, kv_cache_type, facts.source, True)


class MemoryPlanner:
    """Budgets, fit checks, context proposals and recommendations for local models."""

    def __init__(self, settings: OllamaSettings | None = None, *,
                 system: Callable[[], SystemMemory] | None = None,
                 size_overrides: dict[str, int] | None = None,
                 catalogue: Sequence[CatalogueModel] = CATALOGUE):
        self.settings = settings or OllamaSettings()
        self._system = system or SystemMemoryReader()
        # model -> bytes the user says it takes (config model_sizes_gb, CLI --size)
        self.size_overrides = dict(self.settings.model_sizes if size_overrides is None else size_overrides)
        self.catalogue = tuple(catalogue)

    # ------------------------------------------------------------------------------------- figures
    def system(self) -> SystemMemory:
        return self._system()

    def budget_bytes(self, host: OllamaHost | None = None, system: SystemMemory | None = None) -> int | None:
        """Memory loaded models on `host` may take together; None when that host's memory is unknown."""
        if host is not None and not host.local:
            if host.memory_bytes is None:
                return None
            return int(host.memory_bytes * self.settings.memory_budget_fraction)
        mem = system or self.system()
        budget = self.settings.memory_budget_bytes or int(mem.total_bytes * self.settings.memory_budget_fraction)
        if self.settings.memory_budget_bytes is None and mem.unified and mem.gpu_limit_bytes:
            budget = min(budget, mem.gpu_limit_bytes)  # beyond it the model spills to the CPU
        return budget

    def estimate(self, facts: ModelFacts, *, num_ctx: int, parallel: int = 1,
                 kv_cache_type: str = "f16") -> MemoryEstimate:
        for name, size in self.size_overrides.items():
            if same_model(name, facts.name):
                return MemoryEstimate(facts.name, size, 0, 0, 0, 0, num_ctx, parallel, kv_cache_type,
                                      "override", True, True)
        return estimate_memory(facts, num_ctx=num_ctx, parallel=parallel, kv_cache_type=kv_cache_type)

    # ----------------------------------------------------------------------------------- fit check
    def fit(self, facts: ModelFacts, *, host: OllamaHost, loaded: Sequence[LoadedModel], num_ctx: int,
            lru: Sequence[str] = (), system: SystemMemory | None = None, parallel: int = 1) -> FitReport:
        """Does `facts` fit next to what is loaded? `lru` lists loaded model names, least recently used first."""
        est = self.estimate(facts, num_ctx=num_ctx, parallel=parallel)
        mem = (system or self.system()) if host.local else None
        budget = self.budget_bytes(host, mem)
        others = [m for m in loaded if not same_model(m.name, facts.name)]
        loaded_bytes = sum(m.size_bytes for m in others)
        pressure = mem.pressure if mem else "unknown"
        already = any(same_model(m.name, facts.name) for m in loaded)
        if budget is None:
            return FitReport(facts.name, host.name, est, 0, loaded_bytes, 0, 0, True, pressure=pressure,
                             message=f"{facts.name} needs {about(est.total_bytes)}; the memory of {host.name} is "
                                     "unknown (set memory_gb for it in tiergate_settings.ollama.hosts)")
        available = mem.available_bytes if mem else max(budget - loaded_bytes, 0)
        free = max(0, min(budget - loaded_bytes, available))
        need = est.total_bytes
        fits = already or need <= free
        unload: list[str] = []
        if not fits:
            freed = 0
            for m in _lru_order(others, lru):
                unload.append(m.name)
                freed += m.size_bytes
                if need <= min(budget - loaded_bytes + freed, available + freed):
                    break
            else:
                unload = []  # unloading everything would not be enough
        alternatives = () if fits else self._alternatives(facts, free, num_ctx)
        if already:
            message = f"{facts.name} is loaded ({about(need)} with {num_ctx} tokens of context)"
        elif fits:
            message = f"{facts.name} needs {about(need)}; {rounded(free)} are free"
        else:
            message = f"{facts.name} needs {about(need)}; {rounded(free)} are free"
            options = []
            if unload:
                options.append(f"unload {' and '.join(unload)}")
            if alternatives:
                options.append(f"choose {alternatives[0]}")
            if options:
                message += "; " + " or ".join(options)
            elif need > budget:
                message += f"; it is larger than the memory budget for local models ({rounded(budget)})"
        if pressure in ("warn", "critical") and not already:
            message += f". The system reports {'high' if pressure == 'critical' else 'rising'} memory pressure"
        return FitReport(facts.name, host.name, est, budget, loaded_bytes, available, free, fits, tuple(unload),
                         alternatives, pressure, message)

    def _alternatives(self, facts: ModelFacts, free: int, num_ctx: int) -> tuple[str, ...]:
        """Catalogue models smaller than `facts` that fit in `free`: same family first, largest first."""
        family = family_of(facts.name)
        smaller = [m for m in self.catalogue
                   if m.size_bytes < facts.weights_bytes and not same_model(m.name, facts.name)
                   and self.estimate(m.facts(), num_ctx=num_ctx).total_bytes <= free]
        smaller.sort(key=lambda m: (family_of(m.name) != family, -m.size_bytes))
        return tuple(m.name for m in smaller[:2])

    # --------------------------------------------------------------------------------- context size
    def propose_context(self, facts: ModelFacts, *, free_bytes: int, want: int | None = None,
                        parallel: int = 1) -> tuple[int, bool]:
        """The largest num_ctx up to `want` (default: the agent context) that fits `free_bytes`, and
        whether it does (False: even 2048 does not fit and 2048 is returned)."""
        want = want or self.settings.agent_context
        trained = _num(facts.model_info, f"{facts.model_info.get('general.architecture', '')}.context_length")
        top = min(want, trained) if trained else want
        steps = sorted({top, *(s for s in CONTEXT_STEPS if s < top)}, reverse=True)
        for n in steps:
            if self.estimate(facts, num_ctx=n, parallel=parallel).total_bytes <= free_bytes:
                return n, True
        return steps[-1], False

    def advise_context(self, deployment: str, facts: ModelFacts, *, host: str, configured: int | None,
                       free_bytes: int, agent: bool = True) -> ContextAdvice:
        """Advice for one local deployment: propose a num_ctx, warn when the configured one is too small
        for agents or does not fit."""
        want = self.settings.agent_context if agent else (configured or OLLAMA_DEFAULT_CONTEXT)
        proposed, _ = self.propose_context(facts, free_bytes=free_bytes, want=max(want, configured or 0))
        effective = configured or OLLAMA_DEFAULT_CONTEXT
        need = self.estimate(facts, num_ctx=effective).total_bytes
        fits = need <= free_bytes
        name = facts.name
        if not fits:
            msg = (f"{name} with {effective} tokens of context needs {about(need)} but {rounded(free_bytes)} "
                   f"are free: set context_length: {proposed}")
        elif configured is None:
            msg = (f"{name} has no context_length: Ollama will use its default of {OLLAMA_DEFAULT_CONTEXT} tokens"
                   + (f", too small for agents (they need {self.settings.agent_context}+)" if agent else "")
                   + f"; set context_length: {proposed}")
        elif agent and configured < self.settings.agent_context:
            msg = (f"{name} has context_length {configured}; agents need {self.settings.agent_context}+"
                   + (f": set context_length: {proposed}" if proposed > configured else
                      f", but only {proposed} fits in {rounded(free_bytes)}"))
        else:
            msg = f"{name}: context_length {configured} fits ({about(need)})"
        return ContextAdvice(deployment, name, host, configured, proposed, fits, msg)

    # ------------------------------------------------------------------------------ recommendations
    def recommend(self, system: SystemMemory | None = None, *, host: OllamaHost | None = None) -> list[Recommendation]:
        """Models for this machine's size: a 4B helper from 8 GiB, a 14B execution (coder) tier from 32 GiB,
        a 70B model only from 64 GiB. Each at the largest context up to the agent context that fits."""
        mem = system or self.system()
        total = mem.total_bytes
        budget = self.budget_bytes(host, mem) or 0
        gib = total / GiB
        out: list[Recommendation] = []

        def add(role: str, name: str, why: str) -> None:
            entry = lookup(name)
            assert entry is not None
            facts = entry.facts()
            n, fits = self.propose_context(facts, free_bytes=budget)
            est = self.estimate(facts, num_ctx=n).total_bytes
            if n < self.settings.agent_context and fits:
                why += f" ({self.settings.agent_context} tokens of context do not fit the {rounded(budget)} budget)"
            out.append(Recommendation(role, name, n, est, fits, why))

        # Machines report a little less than their nominal size (firmware, GPU carve-outs): 0.9 x nominal.
        if gib >= 0.9 * 8:
            add("helper", "gemma3:4b", "4B helper: summaries, titles, quick edits; fast on 8-16 GiB machines")
        else:
            add("helper", "gemma3:1b", "1B helper: the largest model that leaves room for the system under 8 GiB")
        if gib >= 0.9 * 32:
            add("coder", "qwen3:14b", "14B execution tier: tool calls and code edits at agent context on 32 GiB+")
        else:
            out.append(Recommendation("coder", "", 0, 0, False,
                                      "keep the execution tier on a cloud model: a 14B model with an agent-size "
                                      "context needs 32 GiB of RAM"))
        if gib >= 0.9 * 64:
            add("large", "llama3.3:70b", "70B: near cloud quality for planning; only on 64 GiB+ machines")
        else:
            out.append(Recommendation("large", "", 0, 0, False, "70B models need a 64 GiB machine"))
        return out

    def catalogue_facts(self, name: str) -> ModelFacts | None:
        entry = lookup(name)
        return entry.facts() if entry else None


def _lru_order(loaded: Sequence[LoadedModel], lru: Sequence[str]) -> list[LoadedModel]:
    """Loaded models, least recently used first: by position in `lru` (names, oldest first), models never
    used through Tiergate before all others, ties broken by Ollama's expiry time."""
    rank = {name.lower(): i for i, name in enumerate(lru)}

    def key(m: LoadedModel) -> tuple[int, float]:
        pos = rank.get(m.name.lower(), -1)
        return (pos, m.expires_at.timestamp() if m.expires_at else 0.0)

    return sorted(loaded, key=key)
