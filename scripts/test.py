#!/usr/bin/env python3
"""Set up (first time) and run the whole test suite: `python3 scripts/test.py [pytest arguments]`.

On Linux, when gnome-keyring and dbus-run-session are installed (.ci/run installs them), the suite runs
inside a private D-Bus session with an unlocked gnome-keyring, so the keychain tests also run against a
real Secret Service. Elsewhere those few tests are skipped and everything else runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import _venv

_venv.ensure("test")
os.chdir(_venv.ROOT)
pytest = [_venv.python(), "-m", "pytest", *sys.argv[1:]]
env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONDONTWRITEBYTECODE="1")

if sys.platform.startswith("linux") and shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon"):
    env["TIERGATE_TEST_SECRET_SERVICE"] = "1"
    # A private keyring directory: an existing login keyring with another password would not unlock.
    env["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="tiergate-keyring-")
    inner = ("echo -n tiergate-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null && "
             + " ".join(shlex.quote(a) for a in pytest))
    sys.exit(subprocess.call(["dbus-run-session", "--", "sh", "-c", inner], env=env))
sys.exit(subprocess.call(pytest, env=env))
