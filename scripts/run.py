#!/usr/bin/env python3
"""Set up (first time) and run Tiergate: `python3 scripts/run.py [tiergate arguments]`.

With no arguments it runs `tiergate serve` (the headless proxy on 127.0.0.1:4000).
"""

from __future__ import annotations

import os
import sys

import _venv

_venv.ensure("")
args = sys.argv[1:] or ["serve"]
os.execv(_venv.python(), [_venv.python(), "-m", "app", *args])
