"""What this machine's memory looks like to a local model.

Every OS: total and available RAM from psutil.

macOS on Apple Silicon has unified memory: the GPU runs models out of system RAM, but may only wire part
of it. The figures that matter, and where they come from:

- total RAM: `sysctl -n hw.memsize` (bytes).
- unified memory: `sysctl -n hw.optional.arm64` is 1 on Apple Silicon.
- GPU working-set limit: `sysctl -n iogpu.wired_limit_mb` (macOS 14+; 0 means "system default"), or
  `sysctl -n debug.iogpu.wired_limit` (bytes, macOS 13). The system default is Metal's
  `recommendedMaxWorkingSetSize`, which Apple does not document; measured values are about 2/3 of RAM up
  to 36 GiB and 3/4 above, which is what `default_gpu_limit` returns. A model larger than this limit
  spills to the CPU and runs several times slower.
- memory pressure: `sysctl -n kern.memorystatus_vm_pressure_level` (1 normal, 2 warn, 4 critical: the
  green/yellow/red of Activity Monitor), and the free percentage `memory_pressure` prints
  ("System-wide memory free percentage: 71%"), which is `kern.memorystatus_level`.

Linux: pressure from the kernel's PSI file /proc/pressure/memory when present, else from how much RAM is
available. Commands run through an injectable runner so the macOS paths are tested with recorded output.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import psutil

from app.ollama.units import GiB, MiB

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], "str | None"]  # stdout, or None when the command failed
FileReader = Callable[[str], "str | None"]

PRESSURE_LEVELS = {1: "normal", 2: "warn", 4: "critical"}
_ORDER = {"unknown": -1, "normal": 0, "warn": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class SystemMemory:
    total_bytes: int
    available_bytes: int
    platform: str  # sys.platform of the machine read ("darwin", "linux", "win32")
    unified: bool = False  # Apple Silicon: CPU and GPU share RAM
    gpu_limit_bytes: int | None = None  # most RAM the GPU may wire (unified memory only)
    gpu_limit_source: str = ""  # "iogpu.wired_limit_mb" | "debug.iogpu.wired_limit" | "default"
    pressure: str = "unknown"  # "normal" | "warn" | "critical" | "unknown"
    free_percent: int | None = None  # macOS: what `memory_pressure` reports

    @property
    def under_pressure(self) -> bool:
        return self.pressure in ("warn", "critical")


def run_command(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def default_gpu_limit(total: int) -> int:
    """Metal's default working-set limit, as measured: about 2/3 of RAM up to 36 GiB, 3/4 above."""
    return total * 3 // 4 if total > 36 * GiB else total * 2 // 3


class SystemMemoryReader:
    """Call it for a fresh reading. Figures that cannot change while running (total RAM, chip, GPU limit)
    are read once; available memory and pressure are read every time."""

    def __init__(self, *, platform: str = sys.platform, run: Runner = run_command,
                 read_file: FileReader = read_text, virtual_memory: Callable[[], object] = psutil.virtual_memory):
        self.platform = platform
        self._run = run
        self._read_file = read_file
        self._vm = virtual_memory
        self._static: tuple[int, bool, int | None, str] | None = None

    def __call__(self) -> SystemMemory:
        vm = self._vm()
        total, available = int(getattr(vm, "total")), int(getattr(vm, "available"))
        if self.platform == "darwin":
            return self._darwin(total, available)
        pressure = _pressure_from_available(total, available)
        if self.platform.startswith("linux"):
            pressure = _worst(pressure, _linux_psi(self._read_file("/proc/pressure/memory")))
        return SystemMemory(total, available, self.platform, pressure=pressure)

    # ------------------------------------------------------------------------------------------ macOS
    def _sysctl_int(self, name: str) -> int | None:
        out = self._run(["sysctl", "-n", name])
        if out is None:
            return None
        m = re.match(r"\s*(-?\d+)\s*$", out)
        return int(m.group(1)) if m else None

    def _darwin(self, psutil_total: int, available: int) -> SystemMemory:
        if self._static is None:
            total = self._sysctl_int("hw.memsize") or psutil_total
            unified = self._sysctl_int("hw.optional.arm64") == 1
            limit, source = None, ""
            if unified:
                mb = self._sysctl_int("iogpu.wired_limit_mb")
                if mb:
                    limit, source = mb * MiB, "iogpu.wired_limit_mb"
                elif mb is None and (b := self._sysctl_int("debug.iogpu.wired_limit")):
                    limit, source = b, "debug.iogpu.wired_limit"
                else:
                    limit, source = default_gpu_limit(total), "default"
            self._static = (total, unified, limit, source)
        total, unified, limit, source = self._static
        level = self._sysctl_int("kern.memorystatus_vm_pressure_level")
        free = self._sysctl_int("kern.memorystatus_level")
        if free is None:
            free = parse_memory_pressure(self._run(["memory_pressure", "-Q"]))
        pressure = PRESSURE_LEVELS.get(level or 0, "unknown")
        if pressure == "unknown":
            pressure = _pressure_from_free_percent(free) if free is not None else \
                _pressure_from_available(total, available)
        return SystemMemory(total, min(available, total), "darwin", unified, limit, source, pressure, free)


def parse_memory_pressure(output: str | None) -> int | None:
    """The free percentage from `memory_pressure` output ("System-wide memory free percentage: 71%")."""
    if not output:
        return None
    m = re.search(r"System-wide memory free percentage:\s*(\d+)\s*%", output)
    return int(m.group(1)) if m else None


def _pressure_from_free_percent(free: int) -> str:
    return "critical" if free < 10 else "warn" if free < 20 else "normal"


def _pressure_from_available(total: int, available: int) -> str:
    if total <= 0:
        return "unknown"
    share = available / total
    return "critical" if share < 0.05 else "warn" if share < 0.10 else "normal"


def _linux_psi(text: str | None) -> str:
    """From /proc/pressure/memory: share of the last 10 s in which tasks stalled waiting for memory."""
    if not text:
        return "unknown"
    some = re.search(r"^some\s+avg10=([\d.]+)", text, re.M)
    full = re.search(r"^full\s+avg10=([\d.]+)", text, re.M)
    if full and float(full.group(1)) >= 10:
        return "critical"
    if some and float(some.group(1)) >= 20:
        return "warn"
    return "normal" if some else "unknown"


def _worst(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b
