"""The global privacy switch: on means every request stays on this machine.

Persisted as JSON in the data directory (`privacy.json`: {"mode": "on"|"off", "changed_at": …,
"source": …}), written atomically (temporary file in the same directory, fsync, rename). State, not config:
the user flips it from the tray, the CLI or the management API; it survives restarts.

Fail closed: a file that exists but cannot be read or parsed makes the switch ON, and the problem is kept in
`problem` (and logged) until the switch is set again. A missing file is a first run: off.
Turning the switch on takes effect in memory even if the file cannot be written (the error is raised
after); turning it off only happens once the file says so.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson

from app.errors import TiergateError
from app.events import EventBus, PrivacyChanged
from app.paths import atomic_write

log = logging.getLogger(__name__)


class PrivacyStateError(TiergateError):
    code = "privacy_state_error"
    title = "Privacy switch not saved"


class PrivacyState:
    def __init__(self, path: str | Path, bus: EventBus | None = None):
        self.path = Path(path)
        self.bus = bus
        self.problem: str | None = None  # why the switch is on although nobody turned it on
        self.enabled = False
        self.source = ""
        self.changed_at: float | None = None
        self.load()

    @property
    def mode(self) -> str:
        return "on" if self.enabled else "off"

    def load(self) -> bool:
        """(Re)read the file. Returns the switch. Emits PrivacyChanged when the value changes."""
        before = self.enabled
        enabled, source, changed_at, problem = _read(self.path)
        self.enabled, self.source, self.changed_at, self.problem = enabled, source, changed_at, problem
        if problem:
            log.error("privacy switch file %s is unusable (%s): privacy mode is ON until it is set again",
                      self.path, problem)
        if self.bus is not None and (enabled != before or problem):
            self.bus.emit(PrivacyChanged(mode=self.mode, source="state_file" if not problem else "state_error"))
        return enabled

    def set(self, on: bool, *, source: str = "") -> None:
        """Flip the switch and persist it. Raises PrivacyStateError when the file cannot be written (an ON
        switch stays on in memory regardless; an OFF request leaves the switch as it was)."""
        changed = on != self.enabled
        if on:
            self.enabled = True
        try:
            self._write(on, source)
        except OSError as e:
            if on:
                self._emit_if(changed, source)
            raise PrivacyStateError(f"Could not save the privacy switch ({e.strerror or type(e).__name__}); "
                                    f"it is {'on' if self.enabled else 'still ' + self.mode} for now. "
                                    f"Check that the data directory is writable.") from None
        self.enabled = on
        self.source = source
        self.changed_at = time.time()
        self.problem = None
        self._emit_if(changed, source)

    def _emit_if(self, changed: bool, source: str) -> None:
        if changed and self.bus is not None:
            self.bus.emit(PrivacyChanged(mode=self.mode, source=source))

    def _write(self, on: bool, source: str) -> None:
        data = orjson.dumps({"mode": "on" if on else "off", "changed_at": time.time(), "source": source})
        atomic_write(self.path, data)

def _read(path: Path) -> tuple[bool, str, float | None, str | None]:
    """(enabled, source, changed_at, problem). Missing file: off. Anything unreadable: on, with the problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False, "", None, None
    except OSError as e:
        return True, "", None, f"cannot read it: {e.strerror or type(e).__name__}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return True, "", None, "it is not valid JSON"
    if not isinstance(data, dict) or data.get("mode") not in ("on", "off"):
        return True, "", None, 'it has no "mode": "on" or "off"'
    changed = data.get("changed_at")
    source = data.get("source")
    return (data["mode"] == "on", source if isinstance(source, str) else "",
            float(changed) if isinstance(changed, (int, float)) else None, None)


def read_mode(path: str | Path) -> tuple[str, str | None]:
    """("on"|"off", problem) from the file alone, without a bus (the CLI's offline status)."""
    enabled, _, _, problem = _read(Path(path))
    return ("on" if enabled else "off"), problem
