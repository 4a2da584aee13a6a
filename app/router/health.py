"""Per-deployment health: consecutive failures, cooldowns, and deployments that cannot be used at all."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.events import EventBus, UpstreamHealthChanged


@dataclass(slots=True)
class DeploymentHealth:
    deployment: str
    state: str = "healthy"  # "healthy" | "failing" | "cooling_down" | "unavailable"
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    last_error: str = ""  # error code and a short reason; never content
    last_ok: float = 0.0
    requests: int = 0
    failures: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "deployment": self.deployment,
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_until": self.cooldown_until or None,
            "last_error": self.last_error,
            "last_ok": self.last_ok or None,
            "requests": self.requests,
            "failures": self.failures,
        }


class HealthTracker:
    """Counts failures per deployment; after `allowed_fails` in a row it cools the deployment down for
    `cooldown_time` seconds. Emits `UpstreamHealthChanged` on every state change."""

    def __init__(self, bus: EventBus, *, allowed_fails: int, cooldown_time: float,
                 clock: "callable[[], float]" = time.monotonic):  # type: ignore[valid-type]
        self.bus = bus
        self.allowed_fails = max(1, allowed_fails)
        self.cooldown_time = cooldown_time
        self.clock = clock
        self._by_id: dict[str, DeploymentHealth] = {}

    def get(self, deployment: str) -> DeploymentHealth:
        h = self._by_id.get(deployment)
        if h is None:
            h = self._by_id[deployment] = DeploymentHealth(deployment)
        return h

    def all(self) -> list[DeploymentHealth]:
        for h in self._by_id.values():
            self.usable(h.deployment)  # refresh expired cooldowns
        return list(self._by_id.values())

    def usable(self, deployment: str) -> bool:
        h = self.get(deployment)
        if h.state == "unavailable":
            return False
        if h.state == "cooling_down":
            if self.clock() < h.cooldown_until:
                return False
            self._set(h, "failing", "cooldown over; trying again")
        return True

    def mark_unavailable(self, deployment: str, reason: str) -> None:
        h = self.get(deployment)
        h.last_error = reason
        self._set(h, "unavailable", reason)

    def success(self, deployment: str) -> None:
        h = self.get(deployment)
        h.requests += 1
        h.consecutive_failures = 0
        h.last_ok = time.time()
        if h.state != "healthy":
            self._set(h, "healthy", "")

    def failure(self, deployment: str, reason: str) -> None:
        h = self.get(deployment)
        h.requests += 1
        h.failures += 1
        h.consecutive_failures += 1
        h.last_error = reason
        if h.consecutive_failures >= self.allowed_fails:
            h.cooldown_until = self.clock() + self.cooldown_time
            h.consecutive_failures = 0
            self._set(h, "cooling_down", reason)
        elif h.state == "healthy":
            self._set(h, "failing", reason)

    def _set(self, h: DeploymentHealth, state: str, reason: str) -> None:
        changed = h.state != state
        h.state = state
        if changed:
            until = None
            if state == "cooling_down":
                until = time.time() + max(0.0, h.cooldown_until - self.clock())
            self.bus.emit(UpstreamHealthChanged(deployment=h.deployment, state=state, reason=reason,
                                                cooldown_until=until))
