"""Size of a model before it is pulled, from its manifest in the Ollama registry.

The manifest lists every layer (weights, projector, template, parameters) with its size in bytes; their sum is
what a pull downloads and, for GGUF models, what the weights take in memory. This is the registry's
documented OCI distribution endpoint (GET /v2/<namespace>/<model>/manifests/<tag>), not Ollama's API.
Failures return None: the planner then falls back to its catalogue.
"""

from __future__ import annotations

import logging

import httpx

from app.ollama.names import validate_model_name

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = "https://registry.ollama.ai"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


async def manifest_size(name: str, *, registry: str = DEFAULT_REGISTRY, timeout: float = 10.0) -> int | None:
    full = validate_model_name(name)
    path, tag = full.rsplit(":", 1)
    if "/" not in path:
        path = f"library/{path}"
    url = f"{registry.rstrip('/')}/v2/{path}/manifests/{tag}"
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            resp = await client.get(url, headers={"accept": MANIFEST_ACCEPT})
        if resp.status_code != 200:
            return None
        data = resp.json()
        layers = data.get("layers") or []
        total = sum(int(layer.get("size", 0)) for layer in layers if isinstance(layer, dict))
        return total or None
    except (httpx.HTTPError, ValueError, TypeError, AttributeError) as e:
        log.info("registry manifest for %s unavailable: %s", full, type(e).__name__)
        return None
