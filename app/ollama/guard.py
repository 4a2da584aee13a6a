"""Bookkeeping for the memory guard: requests in flight, least recent use, and one load at a time per host.

The guard's rules (applied by OllamaManager when a model must be loaded):
- a load that would take the host's loaded models over the memory budget, or a load while the system reports
  memory pressure, first unloads the least recently used loaded model, then the next, until it fits;
- a model serving a request in flight (inside `OllamaManager.acquire`) is never unloaded;
- loads on one host happen one at a time, so two requests for the same model load it once (the second waits
  and finds it loaded) and two different models never both count on the same free memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Callable

from app.ollama.names import normalize


def model_key(model: str) -> str:
    return normalize(model).lower()


class UsageBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._last_used: dict[tuple[str, str], float] = {}
        self._host_locks: dict[str, asyncio.Lock] = {}

    def begin(self, host: str, model: str) -> None:
        key = (host, model_key(model))
        self._in_flight[key] += 1
        self._last_used[key] = self._clock()

    def end(self, host: str, model: str) -> None:
        key = (host, model_key(model))
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]
        self._last_used[key] = self._clock()

    def touch(self, host: str, model: str) -> None:
        self._last_used[(host, model_key(model))] = self._clock()

    def in_flight(self, host: str, model: str) -> int:
        return self._in_flight.get((host, model_key(model)), 0)

    def lru(self, host: str) -> list[str]:
        """Models used on `host` through Tiergate, least recently used first."""
        used = [(t, m) for (h, m), t in self._last_used.items() if h == host]
        return [m for _, m in sorted(used)]

    def forget(self, host: str, model: str) -> None:
        self._last_used.pop((host, model_key(model)), None)

    def load_lock(self, host: str) -> asyncio.Lock:
        lock = self._host_locks.get(host)
        if lock is None:
            lock = self._host_locks[host] = asyncio.Lock()
        return lock
