"""This machine's memory, on every OS; the macOS paths run on recorded command output (we test on Linux)."""

from types import SimpleNamespace

import pytest

from app.ollama.system_memory import SystemMemoryReader, default_gpu_limit, parse_memory_pressure
from app.ollama.units import GiB, MiB

# Recorded on Apple Silicon Macs (macOS 14/15): `sysctl -n NAME` prints the bare value and a newline; an unknown
# name prints "sysctl: unknown oid 'NAME'" on stderr and exits 1 (the runner then returns None).
M3_PRO_36GB = {
    ("sysctl", "-n", "hw.memsize"): "38654705664\n",
    ("sysctl", "-n", "hw.optional.arm64"): "1\n",
    ("sysctl", "-n", "iogpu.wired_limit_mb"): "0\n",
    ("sysctl", "-n", "kern.memorystatus_vm_pressure_level"): "1\n",
    ("sysctl", "-n", "kern.memorystatus_level"): "71\n",
}
MEMORY_PRESSURE_Q = """The system has 17179869184 (1048576 pages with a page size of 16384).
System-wide memory free percentage: 23%
"""


class Recorded:
    def __init__(self, outputs: dict[tuple[str, ...], str]):
        self.outputs = outputs
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv):
        self.calls.append(tuple(argv))
        return self.outputs.get(tuple(argv))


def vm(total: int, available: int):
    return lambda: SimpleNamespace(total=total, available=available)


def test_apple_silicon_default_gpu_limit_and_normal_pressure():
    run = Recorded(M3_PRO_36GB)
    read = SystemMemoryReader(platform="darwin", run=run, virtual_memory=vm(36 * GiB, 20 * GiB))
    m = read()
    assert m.total_bytes == 38654705664 == 36 * GiB
    assert m.available_bytes == 20 * GiB
    assert m.unified and m.gpu_limit_source == "default"
    assert m.gpu_limit_bytes == 24 * GiB  # 2/3 of 36 GiB: Metal's working set on machines up to 36 GiB
    assert m.pressure == "normal" and m.free_percent == 71 and not m.under_pressure


def test_static_figures_are_read_once_dynamic_ones_every_time():
    run = Recorded(M3_PRO_36GB)
    read = SystemMemoryReader(platform="darwin", run=run, virtual_memory=vm(36 * GiB, 20 * GiB))
    read(), read()
    assert run.calls.count(("sysctl", "-n", "hw.memsize")) == 1
    assert run.calls.count(("sysctl", "-n", "iogpu.wired_limit_mb")) == 1
    assert run.calls.count(("sysctl", "-n", "kern.memorystatus_vm_pressure_level")) == 2


def test_raised_wired_limit_is_used():
    outputs = {**M3_PRO_36GB, ("sysctl", "-n", "iogpu.wired_limit_mb"): "30720\n",
               ("sysctl", "-n", "kern.memorystatus_vm_pressure_level"): "4\n"}
    m = SystemMemoryReader(platform="darwin", run=Recorded(outputs), virtual_memory=vm(36 * GiB, GiB))()
    assert m.gpu_limit_bytes == 30720 * MiB and m.gpu_limit_source == "iogpu.wired_limit_mb"
    assert m.pressure == "critical" and m.under_pressure


def test_macos_13_debug_wired_limit_in_bytes():
    outputs = {k: v for k, v in M3_PRO_36GB.items() if k[2] != "iogpu.wired_limit_mb"}
    outputs[("sysctl", "-n", "debug.iogpu.wired_limit")] = "25769803776\n"
    outputs[("sysctl", "-n", "kern.memorystatus_vm_pressure_level")] = "2\n"
    m = SystemMemoryReader(platform="darwin", run=Recorded(outputs), virtual_memory=vm(36 * GiB, GiB))()
    assert m.gpu_limit_bytes == 24 * GiB and m.gpu_limit_source == "debug.iogpu.wired_limit"
    assert m.pressure == "warn"


def test_large_mac_default_is_three_quarters():
    assert default_gpu_limit(128 * GiB) == 96 * GiB
    assert default_gpu_limit(64 * GiB) == 48 * GiB
    assert default_gpu_limit(16 * GiB) == int(16 * GiB * 2 / 3)


def test_memory_pressure_tool_when_sysctl_lacks_the_level():
    outputs = {("sysctl", "-n", "hw.memsize"): "17179869184\n", ("sysctl", "-n", "hw.optional.arm64"): "1\n",
               ("sysctl", "-n", "iogpu.wired_limit_mb"): "0\n", ("memory_pressure", "-Q"): MEMORY_PRESSURE_Q}
    m = SystemMemoryReader(platform="darwin", run=Recorded(outputs), virtual_memory=vm(16 * GiB, 3 * GiB))()
    assert m.free_percent == 23 and m.pressure == "normal"
    outputs[("memory_pressure", "-Q")] = MEMORY_PRESSURE_Q.replace("23%", "8%")
    m = SystemMemoryReader(platform="darwin", run=Recorded(outputs), virtual_memory=vm(16 * GiB, 3 * GiB))()
    assert m.free_percent == 8 and m.pressure == "critical"


def test_intel_mac_has_no_unified_memory():
    outputs = {("sysctl", "-n", "hw.memsize"): "17179869184\n"}  # hw.optional.arm64 and iogpu.* unknown
    m = SystemMemoryReader(platform="darwin", run=Recorded(outputs), virtual_memory=vm(16 * GiB, 8 * GiB))()
    assert not m.unified and m.gpu_limit_bytes is None and m.pressure == "normal"


def test_parse_memory_pressure():
    assert parse_memory_pressure(MEMORY_PRESSURE_Q) == 23
    assert parse_memory_pressure("garbage") is None and parse_memory_pressure(None) is None


PSI_CALM = "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=67\n"
PSI_STALLING = ("some avg10=35.12 avg60=20.00 avg300=5.00 total=9912345\n"
                "full avg10=3.10 avg60=1.00 avg300=0.20 total=99\n")
PSI_THRASHING = ("some avg10=80.00 avg60=60.00 avg300=30.00 total=9912345\n"
                 "full avg10=42.00 avg60=30.00 avg300=9.00 total=99\n")


@pytest.mark.parametrize("psi, available, pressure", [
    (PSI_CALM, 20 * GiB, "normal"),
    (PSI_STALLING, 20 * GiB, "warn"),
    (PSI_THRASHING, 20 * GiB, "critical"),
    (None, 20 * GiB, "normal"),
    (None, 3 * GiB, "warn"),  # under 10 % of 32 GiB available
    (None, GiB, "critical"),  # under 5 %
])
def test_linux_pressure_from_psi_and_available_memory(psi, available, pressure):
    read = SystemMemoryReader(platform="linux", read_file=lambda path: psi if path == "/proc/pressure/memory" else None,
                              virtual_memory=vm(32 * GiB, available))
    m = read()
    assert (m.total_bytes, m.available_bytes, m.unified, m.gpu_limit_bytes) == (32 * GiB, available, False, None)
    assert m.pressure == pressure


def test_the_real_machine_can_be_read():
    m = SystemMemoryReader()()
    assert m.total_bytes > 0 and 0 < m.available_bytes <= m.total_bytes
    assert m.pressure in ("normal", "warn", "critical", "unknown")
