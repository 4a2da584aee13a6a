"""The typed catalogue of core events and the bus that delivers them.

Everything a person would want to watch is an event here. Subscribers are plain callables, called in the
core's event loop thread, in subscription order; a subscriber that raises is logged and does not stop the
others. The tray re-emits these as Qt signals through one adapter; `GET /tiergate/events` streams them as
server-sent events (`Event.name` is the SSE event name, `to_dict()` its data).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from app.usage import UsageRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    name: ClassVar[str] = "event"
    ts: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        # Emitting checks the fields: a wrongly typed event is a bug caught where it is raised.
        checks = _CHECKS.get(type(self))
        if checks is None:
            checks = _CHECKS[type(self)] = [(f.name, f.type, _runtime_types(f.type)) for f in dataclasses.fields(self)]
        for name, annotation, expected in checks:
            value = getattr(self, name)
            if expected and not isinstance(value, expected):
                raise TypeError(f"{type(self).__name__}.{name} must be {annotation}, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **dataclasses.asdict(self)}


_CHECKS: dict[type, list[tuple[str, Any, tuple[type, ...]]]] = {}  # per event class, computed once


def _runtime_types(annotation: Any) -> tuple[type, ...]:
    """The classes a field's value may be instances of; () when the annotation is not checkable."""
    if isinstance(annotation, type):
        return (int, float) if annotation is float else (annotation,)
    if isinstance(annotation, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(annotation):
            out += _runtime_types(arg) if arg is not type(None) else (type(None),)
        return out
    return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStarted(Event):
    name: ClassVar[str] = "server_started"
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStopped(Event):
    name: ClassVar[str] = "server_stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecorded(Event):
    name: ClassVar[str] = "usage"
    record: UsageRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamHealthChanged(Event):
    """A deployment became healthy, failed, or entered/left cooldown."""

    name: ClassVar[str] = "upstream_health"
    deployment: str
    state: str  # "healthy" | "failing" | "cooling_down" | "unavailable"
    reason: str = ""
    cooldown_until: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyChanged(Event):
    name: ClassVar[str] = "privacy"
    mode: str  # "off" | "on" (on: everything stays local)
    source: str = ""  # "cli" | "api" | "tray" | "config"


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetWarning(Event):
    name: ClassVar[str] = "budget_warning"
    budget: str  # budget name, e.g. "overall/day" or "tier:orchestrator/month"
    spent: float
    limit: float
    fraction: float
    resets_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExceededEvent(Event):
    name: ClassVar[str] = "budget_exceeded"
    budget: str
    spent: float
    limit: float
    resets_at: float
    action: str  # "refuse" | "downgrade:<tier>"


@dataclass(frozen=True, slots=True, kw_only=True)
class PullProgress(Event):
    name: ClassVar[str] = "pull_progress"
    host: str
    model: str
    status: str  # Ollama's status line ("pulling manifest", "pulling <digest>", "success", …)
    completed: int = 0  # bytes, all layers
    total: int = 0
    digest: str = ""  # the layer this line is about ("" for manifest/verify/write steps)
    layer_completed: int = 0  # bytes of that layer
    layer_total: int = 0
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    done: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLoadChanged(Event):
    name: ClassVar[str] = "model_load"
    host: str
    model: str
    loaded: bool
    size_bytes: int = 0
    reason: str = ""  # "request" | "warm_up" | "user" | "memory_guard" | "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded(Event):
    name: ClassVar[str] = "config_reloaded"
    path: str
    ok: bool
    error: str = ""  # when not ok: what is wrong (the last good config keeps running)


Subscriber = Callable[[Event], Any]


class EventBus:
    """Synchronous fan-out. `emit` never raises because of a subscriber."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[type[Event], Subscriber]] = []

    def subscribe(self, callback: Subscriber, kind: type[Event] = Event) -> Callable[[], None]:
        """Call `callback` for every event of `kind` (a class of the catalogue). Returns an unsubscribe."""
        entry = (kind, callback)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for kind, callback in tuple(self._subscribers):
            if isinstance(event, kind):
                try:
                    callback(event)
                except Exception:  # a broken subscriber must not break the core
                    log.exception("event subscriber %r failed on %s", callback, event.name)
