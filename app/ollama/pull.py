"""A pull in progress: Ollama's per-layer progress lines turned into totals, speed and ETA, and a handle to
wait for or cancel it.

Ollama reports each layer on its own ({"status": "pulling 8934d96d3f08", "digest": "sha256:…", "total": N,
"completed": M}); the tracker keeps every layer and sums them. A cancelled pull leaves Ollama's partial
files in place and the next pull of the same model continues from them, so bytes a pull finds already done
count toward `completed` but not toward the speed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

SPEED_WINDOW = 5.0  # seconds of samples the speed is measured over


@dataclass(slots=True)
class LayerProgress:
    digest: str
    total: int = 0
    completed: int = 0


@dataclass(frozen=True, slots=True)
class PullResult:
    host: str
    model: str
    status: str  # "success" | "cancelled" | "failed"
    completed: int
    total: int
    error: str = ""


class PullTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.layers: dict[str, LayerProgress] = {}
        self.status = ""
        self.current = ""  # digest of the layer the last progress line was about
        self._baseline: dict[str, int] = {}  # completed bytes of a layer when this pull first saw it
        self._samples: deque[tuple[float, int]] = deque()
        self.started = clock()

    def update(self, status: str, digest: str | None = None, total: int | None = None,
               completed: int | None = None) -> None:
        self.status = status
        self.current = digest or ""
        if digest:
            layer = self.layers.setdefault(digest, LayerProgress(digest))
            if total:
                layer.total = int(total)
            if completed is not None:
                layer.completed = max(layer.completed, int(completed))
            # what the layer had when this pull first reported it (no "completed" yet: nothing)
            self._baseline.setdefault(digest, layer.completed)
        now = self.clock()
        self._samples.append((now, self.session_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= SPEED_WINDOW:
            self._samples.popleft()

    @property
    def completed(self) -> int:
        return sum(layer.completed for layer in self.layers.values())

    @property
    def total(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def session_bytes(self) -> int:
        """Bytes downloaded by this pull (not the ones a cancelled pull had already fetched)."""
        return sum(max(0, layer.completed - self._baseline.get(d, layer.completed))
                   for d, layer in self.layers.items())

    @property
    def bytes_per_second(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        speed = self.bytes_per_second
        remaining = self.total - self.completed
        if speed <= 0 or self.total <= 0:
            return None
        return max(0.0, remaining / speed)


@dataclass(eq=False)
class PullHandle:
    """A running pull. `await handle.wait()` gives the PullResult (raising the typed error of a failed pull);
    `handle.cancel()` stops it, keeping what was downloaded for the next pull."""

    host: str
    model: str
    tracker: PullTracker
    task: asyncio.Task | None = None
    cancel_requested: bool = False
    result: PullResult | None = field(default=None)

    def cancel(self) -> None:
        self.cancel_requested = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    async def wait(self) -> PullResult:
        assert self.task is not None
        return await asyncio.shield(self.task)
