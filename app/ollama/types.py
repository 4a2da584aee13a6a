"""Typed values the Ollama manager and memory planner hand to the core, the router, the CLI and the tray."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.ollama.units import human_bytes


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One installed model (`/api/tags`)."""

    name: str  # "gemma3:4b"
    host: str  # host name
    size_bytes: int  # on disk, all layers
    digest: str
    family: str = ""
    parameter_size: str = ""  # "4.3B"
    quantization: str = ""  # "Q4_K_M"
    modified_at: datetime | None = None
    format: str = ""  # "gguf"


@dataclass(frozen=True, slots=True)
class ModelDetails:
    """`/api/show` for one model: what the planner needs from it."""

    name: str
    host: str
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    format: str = ""
    capabilities: tuple[str, ...] = ()  # "completion", "tools", "vision", "thinking", "embedding", ...
    model_info: dict[str, Any] = field(default_factory=dict)  # raw GGUF metadata (<arch>.block_count ...)
    parameters: str = ""  # the Modelfile PARAMETER lines as Ollama prints them

    @property
    def architecture(self) -> str:
        return str(self.model_info.get("general.architecture") or self.family or "")

    @property
    def context_length(self) -> int | None:
        """The longest context the model was trained for (`<arch>.context_length`)."""
        v = self.model_info.get(f"{self.architecture}.context_length")
        return int(v) if isinstance(v, (int, float)) else None

    @property
    def parameter_count(self) -> int | None:
        v = self.model_info.get("general.parameter_count")
        return int(v) if isinstance(v, (int, float)) else None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One model in memory (`/api/ps`)."""

    name: str
    host: str
    size_bytes: int  # resident size Ollama reports
    vram_bytes: int  # part of it in GPU memory (all of it on Apple Silicon when it fits)
    context_length: int | None = None  # num_ctx it was loaded with (Ollama 0.6+)
    expires_at: datetime | None = None
    digest: str = ""
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""

    @property
    def processor(self) -> str:
        """As `ollama ps` shows it: "100% GPU", "100% CPU" or "25%/75% CPU/GPU"."""
        if self.size_bytes <= 0:
            return "-"
        gpu = round(100 * self.vram_bytes / self.size_bytes)
        if gpu >= 100:
            return "100% GPU"
        if gpu <= 0:
            return "100% CPU"
        return f"{100 - gpu}%/{gpu}% CPU/GPU"


@dataclass(frozen=True, slots=True)
class HostHealth:
    """Whether one Ollama host can serve, and what to do when it cannot."""

    host: str
    url: str
    state: str  # "ok" | "not_installed" | "not_running" | "unreachable" | "error"
    message: str = ""  # what is wrong, for people
    fix: str = ""  # what to do about it
    version: str = ""
    checked_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What is known about a model before estimating its memory."""

    name: str
    weights_bytes: int  # installed size, registry manifest size or library size
    source: str  # "installed" | "registry" | "catalogue" | "override"
    model_info: dict[str, Any] = field(default_factory=dict)  # empty when the architecture is unknown
    parameter_count: int | None = None
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Resident size of a loaded model; see app.ollama.memory for how each part is computed."""

    model: str
    weights_bytes: int
    kv_cache_bytes: int
    graph_bytes: int  # compute buffers (Ollama's "graph" size for a full GPU offload)
    vision_bytes: int  # vision encoder buffers for models with the vision capability
    overhead_bytes: int  # runner process and backend buffers
    num_ctx: int  # per sequence
    parallel: int = 1
    kv_cache_type: str = "f16"
    source: str = "installed"  # where the weights size came from
    architecture_known: bool = True  # False: KV cache and graph are rough, from the parameter count
    override: bool = False  # the user set this model's size; the parts are not meaningful

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.kv_cache_bytes + self.graph_bytes + self.vision_bytes
                + self.overhead_bytes)

    def describe(self) -> str:
        if self.override:
            return f"{human_bytes(self.total_bytes)} (set in config)"
        return (f"{human_bytes(self.total_bytes)} = weights {human_bytes(self.weights_bytes)} + KV cache "
                f"{human_bytes(self.kv_cache_bytes)} ({self.num_ctx} tokens) + compute "
                f"{human_bytes(self.graph_bytes + self.vision_bytes + self.overhead_bytes)}")


@dataclass(frozen=True, slots=True)
class FitReport:
    """Whether a model fits before a pull or a load, and what to do when it does not."""

    model: str
    host: str
    estimate: MemoryEstimate
    budget_bytes: int  # memory budget for loaded local models
    loaded_bytes: int  # already used by loaded models (other than this one)
    available_bytes: int  # RAM the OS reports available (this machine), or the budget for remote hosts
    free_bytes: int  # what this model may use now
    fits: bool
    unload: tuple[str, ...] = ()  # loaded models whose unloading would make room (least recently used first)
    alternatives: tuple[str, ...] = ()  # smaller models that fit now
    pressure: str = "unknown"
    message: str = ""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A local model suggested for one role on this machine."""

    role: str  # "helper" | "coder" | "large"
    model: str  # "" when the role should stay on a cloud model here
    num_ctx: int
    estimate_bytes: int
    fits: bool
    why: str


@dataclass(frozen=True, slots=True)
class ContextAdvice:
    """The num_ctx the planner proposes for one local deployment."""

    deployment: str
    model: str
    host: str
    configured: int | None  # the deployment's context_length (None: Ollama's default)
    proposed: int
    fits: bool  # the configured (or Ollama's default) context fits the budget
    message: str
