"""Errors of the Ollama manager. All are app.errors types, so every front end renders them as they are."""

from __future__ import annotations

from app.errors import TiergateError, UnknownModel, UpstreamConnectError, UpstreamError, UpstreamServerError

INSTALL_URL = "https://ollama.com/download"
FIX_INSTALL = f"Install Ollama from {INSTALL_URL}, then start it (open the Ollama app or run `ollama serve`)."
FIX_START = "Start Ollama: open the Ollama app, or run `ollama serve` in a terminal."


def fix_remote(url: str) -> str:
    return (f"Check that {url} is reachable from this machine and that Ollama there listens on the network "
            "(start it with OLLAMA_HOST=0.0.0.0 ollama serve).")


class OllamaUnavailable(UpstreamConnectError):
    """The host cannot be reached. Retryable: the router falls back to the tier's next deployment."""

    code = "ollama_unavailable"
    title = "Ollama unavailable"


class ModelNotInstalled(UnknownModel):
    code = "model_not_found"
    title = "Model not installed"


class OllamaServerError(UpstreamServerError):
    code = "ollama_error"
    title = "Ollama error"


class PullFailed(UpstreamError):
    code = "pull_failed"
    title = "Pull failed"
    retryable = False


class NotEnoughMemory(TiergateError):
    """A model does not fit the memory budget (advice; `force` overrides it)."""

    status = 507
    code = "insufficient_memory"
    title = "Not enough memory"
