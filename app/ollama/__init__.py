"""Local models through Ollama: the model manager, the memory planner and this machine's memory.

The core builds one `OllamaManager(hosts, bus, MemoryPlanner(settings), settings=settings)` from
`parse_settings(config.section("ollama"))`; the router wraps local requests in `manager.acquire(...)` and
orders deployments with `manager.prefer_loaded(...)`. Qt-free, like the rest of the core.
"""

from app.ollama.errors import ModelNotInstalled, NotEnoughMemory, OllamaUnavailable, PullFailed
from app.ollama.hosts import OllamaHost, OllamaSettings, parse_settings
from app.ollama.manager import OllamaManager
from app.ollama.memory import MemoryPlanner, estimate_memory
from app.ollama.names import validate_model_name
from app.ollama.pull import PullHandle, PullResult
from app.ollama.system_memory import SystemMemory, SystemMemoryReader
from app.ollama.types import (ContextAdvice, FitReport, HostHealth, LoadedModel, MemoryEstimate, ModelDetails,
                              ModelFacts, ModelInfo, Recommendation)

__all__ = [
    "ContextAdvice", "FitReport", "HostHealth", "LoadedModel", "MemoryEstimate", "MemoryPlanner", "ModelDetails",
    "ModelFacts", "ModelInfo", "ModelNotInstalled", "NotEnoughMemory", "OllamaHost", "OllamaManager",
    "OllamaSettings", "OllamaUnavailable", "PullFailed", "PullHandle", "PullResult", "Recommendation",
    "SystemMemory", "SystemMemoryReader", "estimate_memory", "parse_settings", "validate_model_name",
]
