"""A small built-in list of library models the planner can recommend and estimate before anything is pulled.

Sizes are the download sizes the Ollama library lists (approximate where the library rounds); the
architecture fields are the models' published configurations, written the way `/api/show` reports them in
`model_info`. Once a model is installed, the planner uses `/api/show` and the installed size instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.ollama.names import normalize
from app.ollama.types import ModelFacts


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    name: str
    size_bytes: int
    role: str  # "helper" (small, fast), "coder" (execution tier), "large" (needs a big machine)
    parameter_count: int
    capabilities: tuple[str, ...]
    model_info: dict[str, Any] = field(default_factory=dict)

    def facts(self) -> ModelFacts:
        return ModelFacts(self.name, self.size_bytes, "catalogue", dict(self.model_info), self.parameter_count,
                          self.capabilities)


def _arch(arch: str, *, blocks: int, heads: int, kv_heads: int, embedding: int, context: int,
          key_length: int | None = None, sliding_window: int | None = None, vocab: int | None = None) -> dict:
    info: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.block_count": blocks,
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.embedding_length": embedding,
        f"{arch}.context_length": context,
    }
    if key_length is not None:
        info[f"{arch}.attention.key_length"] = key_length
        info[f"{arch}.attention.value_length"] = key_length
    if sliding_window is not None:
        info[f"{arch}.attention.sliding_window"] = sliding_window
    if vocab is not None:
        info[f"{arch}.vocab_size"] = vocab
    return info


_TOOLS = ("completion", "tools")
_THINK = ("completion", "tools", "thinking")
_VISION = ("completion", "vision")

CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel("gemma3:1b", 815_319_791, "helper", 999_885_952, ("completion",),
                   _arch("gemma3", blocks=26, heads=4, kv_heads=1, embedding=1152, context=32768,
                         key_length=256, sliding_window=512)),
    CatalogueModel("gemma3:4b", 3_338_801_804, "helper", 4_299_915_632, _VISION,
                   _arch("gemma3", blocks=34, heads=8, kv_heads=4, embedding=2560, context=131072,
                         key_length=256, sliding_window=1024)),
    CatalogueModel("qwen3:4b", 2_497_293_918, "helper", 4_022_468_096, _THINK,
                   _arch("qwen3", blocks=36, heads=32, kv_heads=8, embedding=2560, context=40960,
                         key_length=128)),
    CatalogueModel("qwen3:8b", 5_225_387_923, "coder", 8_190_735_360, _THINK,
                   _arch("qwen3", blocks=36, heads=32, kv_heads=8, embedding=4096, context=40960,
                         key_length=128)),
    CatalogueModel("llama3.1:8b", 4_920_753_328, "coder", 8_030_261_248, _TOOLS,
                   _arch("llama", blocks=32, heads=32, kv_heads=8, embedding=4096, context=131072,
                         vocab=128256)),
    CatalogueModel("gemma3:12b", 8_149_190_253, "coder", 12_187_325_040, _VISION,
                   _arch("gemma3", blocks=48, heads=16, kv_heads=8, embedding=3840, context=131072,
                         key_length=256, sliding_window=1024)),
    CatalogueModel("qwen3:14b", 9_276_198_565, "coder", 14_768_307_200, _THINK,
                   _arch("qwen3", blocks=40, heads=40, kv_heads=8, embedding=5120, context=40960,
                         key_length=128)),
    CatalogueModel("gemma3:27b", 17_396_936_887, "large", 27_432_406_640, _VISION,
                   _arch("gemma3", blocks=62, heads=32, kv_heads=16, embedding=5376, context=131072,
                         key_length=128, sliding_window=1024)),
    CatalogueModel("qwen3:32b", 20_201_253_588, "large", 32_762_123_264, _THINK,
                   _arch("qwen3", blocks=64, heads=64, kv_heads=8, embedding=5120, context=40960,
                         key_length=128)),
    CatalogueModel("llama3.3:70b", 42_520_413_916, "large", 70_553_706_496, _TOOLS,
                   _arch("llama", blocks=80, heads=64, kv_heads=8, embedding=8192, context=131072,
                         vocab=128256)),
)


def lookup(name: str) -> CatalogueModel | None:
    key = normalize(name).lower()
    for m in CATALOGUE:
        if m.name == key:
            return m
    return None
