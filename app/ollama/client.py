"""One Ollama host, spoken to through the official `ollama` AsyncClient; its errors become app.errors types.

Only the endpoints the manager needs are wrapped: tags, show, ps, pull, delete, copy, generate (to load and
unload) and version. Create and push are deliberately absent: Tiergate never builds or uploads models.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator

import httpx
import ollama

from app.errors import BadRequest, TiergateError, UpstreamTimeout
from app.ollama.errors import (FIX_START, ModelNotInstalled, OllamaServerError, OllamaUnavailable, PullFailed,
                               fix_remote)
from app.ollama.hosts import OllamaHost
from app.ollama.types import LoadedModel, ModelDetails, ModelInfo

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=30.0)  # loads can take minutes


class OllamaClient:
    def __init__(self, host: OllamaHost, *, timeout: httpx.Timeout | float | None = None):
        self.host = host
        self._client = ollama.AsyncClient(host=host.url, timeout=timeout or DEFAULT_TIMEOUT)
        # The client sends OLLAMA_API_KEY (an ollama.com key) to whatever host it talks to; a machine on the
        # user's network has no business receiving it.
        http = getattr(self._client, "_client", None)
        if http is not None and os.environ.get("OLLAMA_API_KEY"):
            http.headers.pop("authorization", None)

    async def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            await close()
        else:  # older clients: close the underlying httpx client
            await self._client._client.aclose()

    # ------------------------------------------------------------------------------------ requests
    async def version(self) -> str:
        """Ollama's version (GET /api/version). The client has no public method for it; this uses its
        request helper and falls back to /api/ps (which proves the server answers) if that ever changes."""
        try:
            raw = getattr(self._client, "_request_raw", None)
            if raw is None:
                await self._client.ps()
                return ""
            resp = await raw("GET", "/api/version")
            return str(resp.json().get("version", ""))
        except Exception as e:  # noqa: BLE001 - mapped to a typed error below
            raise self.map_error(e) from e

    async def list(self) -> list[ModelInfo]:
        try:
            resp = await self._client.list()
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e) from e
        out = []
        for m in resp.models:
            d = m.details
            out.append(ModelInfo(
                name=m.model or "", host=self.host.name, size_bytes=int(m.size or 0), digest=m.digest or "",
                family=(d.family or "") if d else "", parameter_size=(d.parameter_size or "") if d else "",
                quantization=(d.quantization_level or "") if d else "", modified_at=m.modified_at,
                format=(d.format or "") if d else ""))
        return out

    async def show(self, model: str) -> ModelDetails:
        try:
            r = await self._client.show(model)
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, model) from e
        d = r.details
        return ModelDetails(
            name=model, host=self.host.name, family=(d.family or "") if d else "",
            parameter_size=(d.parameter_size or "") if d else "",
            quantization=(d.quantization_level or "") if d else "", format=(d.format or "") if d else "",
            capabilities=tuple(r.capabilities or ()), model_info=dict(r.modelinfo or {}),
            parameters=r.parameters or "")

    async def ps(self) -> list[LoadedModel]:
        try:
            resp = await self._client.ps()
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e) from e
        out = []
        for m in resp.models:
            d = m.details
            out.append(LoadedModel(
                name=m.model or m.name or "", host=self.host.name, size_bytes=int(m.size or 0),
                vram_bytes=int(m.size_vram or 0), context_length=m.context_length, expires_at=m.expires_at,
                digest=m.digest or "", family=(d.family or "") if d else "",
                parameter_size=(d.parameter_size or "") if d else "",
                quantization=(d.quantization_level or "") if d else ""))
        return out

    async def pull(self, model: str) -> AsyncIterator[Any]:
        """Progress lines of a pull (ollama.ProgressResponse). `model` must already be validated."""
        try:
            stream = await self._client.pull(model, insecure=False, stream=True)
            async for part in stream:
                yield part
        except asyncio.CancelledError:
            raise
        except ollama.ResponseError as e:
            if e.status_code in (-1, 500) or e.status_code >= 500:
                raise PullFailed(_pull_message(model, e.error), upstream_status=e.status_code) from e
            raise self.map_error(e, model) from e
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, model) from e

    async def delete(self, model: str) -> None:
        try:
            await self._client.delete(model)
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, model) from e

    async def copy(self, source: str, destination: str) -> None:
        try:
            await self._client.copy(source, destination)
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, source) from e

    async def load(self, model: str, *, num_ctx: int | None = None,
                   keep_alive: str | int | float | None = None) -> None:
        """Load (warm up) `model`: /api/generate with no prompt. Options must match the requests that will
        follow, or Ollama loads the model again for them."""
        options = {"num_ctx": num_ctx} if num_ctx else None
        try:
            await self._client.generate(model=model, options=options, keep_alive=keep_alive)
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, model) from e

    async def unload(self, model: str) -> None:
        """Unload `model`: /api/generate with no prompt and keep_alive 0."""
        try:
            await self._client.generate(model=model, keep_alive=0)
        except Exception as e:  # noqa: BLE001
            raise self.map_error(e, model) from e

    # ------------------------------------------------------------------------------------- errors
    def map_error(self, e: BaseException, model: str | None = None) -> TiergateError:
        host = self.host
        if isinstance(e, TiergateError):
            return e
        if isinstance(e, ollama.ResponseError):
            text = _clean(e.error)
            if e.status_code == 404:
                name = model or "that model"
                return ModelNotInstalled(f"{name} is not installed on {host.name}; pull it with "
                                         f"`tiergate models pull {name}`" if model else text)
            if 400 <= e.status_code < 500:
                return BadRequest(f"Ollama on {host.name} refused the request: {text}")
            return OllamaServerError(f"Ollama on {host.name} failed: {text}", upstream_status=e.status_code)
        if isinstance(e, (httpx.ConnectError, ConnectionError)):
            fix = FIX_START if host.local else fix_remote(host.url)
            return OllamaUnavailable(f"cannot connect to Ollama on {host.name} ({host.url}). {fix}")
        if isinstance(e, httpx.TimeoutException | asyncio.TimeoutError):
            return UpstreamTimeout(f"Ollama on {host.name} did not answer in time")
        if isinstance(e, httpx.HTTPError):
            return OllamaUnavailable(f"the connection to Ollama on {host.name} broke off ({type(e).__name__})")
        if isinstance(e, (ValueError, KeyError, TypeError)):  # a body that is not Ollama's format
            return OllamaServerError(f"{host.url} answered with something that is not Ollama's API")
        return OllamaServerError(f"Ollama on {host.name} failed: {type(e).__name__}")


def _clean(text: object) -> str:
    s = str(text).strip().replace("\n", " ")
    return s[:300]


def _pull_message(model: str, error: object) -> str:
    text = _clean(error)
    if "file does not exist" in text or "manifest unknown" in text:
        return f"{model} is not in the Ollama library (Ollama: {text})"
    return f"pulling {model} failed: {text}. Run the pull again to resume it."
