#!/usr/bin/env python3
"""Install the real agent clients the end-to-end tests in tests/clients/ drive:
`python3 scripts/install_clients.py [--dir DIR] [--only claude,codex,aider] [--strict]`.

- Claude Code and Codex CLI from npm, with `npm install --prefix DIR` (executables in DIR/node_modules/.bin);
- aider from PyPI into its own venv DIR/aider-venv (aider pins many packages: it must not share .venv).

DIR is --dir, else $TIERGATE_CLIENTS_DIR, else <repo>/.clients (the tests look in the same place). Versions are
pinned (the tests script what these versions send); a client already installed at its pinned version is left
alone, so a second run takes well under a second. A client that cannot be installed here (no npm, no Python
3.10-3.12 for aider, a registry that does not answer) is reported and skipped: its tests then skip too. With
--strict the script exits 1 in that case instead.

Claude Code 2.1.197 is the newest release that supports Node 20 (later ones need Node 22); its postinstall step
puts the native binary in place, and is run here explicitly when npm did not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_CLIENTS = {"claude": ("@anthropic-ai/claude-code", "2.1.197"), "codex": ("@openai/codex", "0.169.0")}
AIDER = ("aider-chat", "0.86.2")
AIDER_PYTHONS = ((3, 12), (3, 11), (3, 10))  # aider-chat 0.86 needs >=3.10,<3.13


def clients_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("TIERGATE_CLIENTS_DIR") or ROOT / ".clients").resolve()


def log(message: str) -> None:
    print(f"install_clients: {message}", flush=True)


# ----------------------------------------------------------------------------------------------- npm
def npm_version(base: Path, package: str) -> str | None:
    try:
        return json.loads((base / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def starts(exe: Path) -> bool:
    try:
        return subprocess.run([str(exe), "--version"], capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_npm(base: Path, names: list[str]) -> subprocess.Popen | None:
    """Start `npm install` for the npm clients not yet at their pinned version (None: nothing to do)."""
    wanted = [NPM_CLIENTS[n] for n in names if npm_version(base, NPM_CLIENTS[n][0]) != NPM_CLIENTS[n][1]]
    if not wanted:
        return None
    npm = shutil.which("npm")
    if npm is None:
        log(f"npm is not installed: skipping {', '.join(p for p, _ in wanted)}")
        return None
    specs = [f"{package}@{version}" for package, version in wanted]
    log(f"npm install {' '.join(specs)} …")
    return subprocess.Popen([npm, "install", "--prefix", str(base), "--no-audit", "--no-fund", "--loglevel=error",
                             *specs], stdin=subprocess.DEVNULL)


def finish_claude(base: Path) -> None:
    """Make sure `claude` is the native binary: run the package's postinstall if npm skipped it."""
    exe = base / "node_modules" / ".bin" / "claude"
    if not exe.exists() or starts(exe):
        return
    script = base / "node_modules" / "@anthropic-ai" / "claude-code" / "install.cjs"
    node = shutil.which("node")
    if script.exists() and node:
        log("running Claude Code's postinstall (npm did not)")
        subprocess.run([node, str(script)], cwd=script.parent, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------- aider
def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def aider_installed(venv: Path) -> bool:
    name, version = AIDER
    dist = name.replace("-", "_") + f"-{version}.dist-info"
    return any(venv.glob(f"lib/python3.*/site-packages/{dist}")) or (venv / "Lib" / "site-packages" / dist).exists()


def find_python() -> str | None:
    """A Python aider supports: this one if it fits, else python3.12 / 3.11 / 3.10 from PATH."""
    if sys.version_info[:2] in AIDER_PYTHONS:
        return sys.executable
    for major, minor in AIDER_PYTHONS:
        exe = shutil.which(f"python{major}.{minor}")
        if exe:
            return exe
    return None


def start_aider(base: Path) -> subprocess.Popen | None:
    venv = base / "aider-venv"
    if aider_installed(venv):
        return None
    python = find_python()
    if python is None:
        log("no Python 3.10-3.12 found for aider-chat: skipping aider")
        return None
    if not venv_python(venv).exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    name, version = AIDER
    log(f"pip install {name}=={version} into {venv} …")
    return subprocess.Popen([str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             f"{name}=={version}"], stdin=subprocess.DEVNULL)


def installed(base: Path, name: str) -> bool:
    """Whether client `name` is in `base` at its pinned version."""
    if name == "aider":
        venv = base / "aider-venv"
        exe = venv_python(venv).parent / ("aider.exe" if os.name == "nt" else "aider")
        return exe.exists() and aider_installed(venv)
    package, version = NPM_CLIENTS[name]
    return (base / "node_modules" / ".bin" / name).exists() and npm_version(base, package) == version


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where to install (default: $TIERGATE_CLIENTS_DIR or <repo>/.clients)")
    parser.add_argument("--only", default="claude,codex,aider", help="comma-separated subset of claude,codex,aider")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a client could not be installed")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - {"claude", "codex", "aider"}
    if unknown:
        parser.error(f"unknown client(s): {', '.join(sorted(unknown))}")
    base = clients_dir(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # npm and pip run side by side: the two downloads are what takes the time.
    jobs = {"npm": start_npm(base, [n for n in names if n in NPM_CLIENTS]),
            "aider": start_aider(base) if "aider" in names else None}
    failed = [name for name, job in jobs.items() if job is not None and job.wait() != 0]
    if "claude" in names:
        finish_claude(base)
    missing = [name for name in names if not installed(base, name)]
    took = time.perf_counter() - started
    if failed:
        log(f"{' and '.join(failed)} failed")
    if missing:
        log(f"not installed: {', '.join(missing)} (their tests will skip); {took:.1f} s")
        return 1 if args.strict else 0
    log(f"{', '.join(names)} ready in {base} ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
