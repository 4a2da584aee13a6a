"""Shared by scripts/run.py and scripts/test.py: make sure .venv exists and holds the project."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def python() -> str:
    return str(BIN / ("python.exe" if os.name == "nt" else "python"))


def ensure(extras: str) -> None:
    """Create .venv and install the project with `extras` unless pyproject.toml is unchanged since."""
    if sys.version_info < (3, 11):
        sys.exit("Tiergate needs Python 3.11 or newer.")
    if not (BIN / "python").exists() and not (BIN / "python.exe").exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing tiergate[{extras}] into .venv …", flush=True)
    target = f".[{extras}]" if extras else "."
    subprocess.check_call([python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "-e", target], cwd=ROOT)
    stamp.write_text(digest)
