"""Sizes and durations as people read them.

Memory and model sizes are shown in binary units and labelled as such (GiB, MiB): RAM is sold in binary
sizes (a "32 GB" Mac has 32 GiB), and a GiB figure never pretends to be the decimal GB `ollama list` prints.
"""

from __future__ import annotations

import math
import re

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def human_bytes(n: float | int | None) -> str:
    """1536 -> '1.5 KiB'; 18.4 GiB -> '18.4 GiB'; None -> '-'."""
    if n is None:
        return "-"
    n = float(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            value = n / size
            text = f"{value:.0f}" if value >= 100 else f"{value:.1f}"
            return f"{sign}{text} {unit}"
    return f"{sign}{n:.0f} B"


def rounded(n: int) -> str:
    """A size for advice: whole GiB from 10 GiB up ('18 GiB'), else one decimal ('4.6 GiB')."""
    if n >= 10 * GiB:
        return f"{round(n / GiB)} GiB"
    return human_bytes(max(n, 0))


def about(n: int) -> str:
    return f"about {rounded(n)}"


def human_rate(bytes_per_second: float) -> str:
    return f"{human_bytes(bytes_per_second)}/s" if bytes_per_second > 0 else "-"


def human_duration(seconds: float | None) -> str:
    """65 -> '1m05s'; 3700 -> '1h01m'; None -> '-'."""
    if seconds is None or math.isinf(seconds) or math.isnan(seconds):
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# Ollama keep_alive: a Go duration ("5m", "1h30m", "300ms"), a number of seconds, or negative (forever).
_GO_DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def valid_keep_alive(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        v = value.strip()
        return bool(_GO_DURATION.match(v)) or bool(re.fullmatch(r"-?\d+(\.\d+)?", v))
    return False
