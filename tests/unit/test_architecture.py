"""The core stays free of Qt and of terminal-only code, so the tray can attach without changes."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = ["app.core", "app.server.app", "app.router.router", "app.providers", "app.privacy.policy",
                "app.ledger.store", "app.ollama", "app.config", "app.secrets.store", "app.events"]


def test_core_imports_no_qt_and_no_cli():
    code = (f"import sys; [__import__(m) for m in {CORE_MODULES!r}]; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'qasync') "
            "or m.startswith('app.cli') or m.startswith('app.ui')); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"core modules pulled in: {out}"

