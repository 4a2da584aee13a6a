"""Where Tiergate keeps its files: per-user directories from platformdirs, never next to the code.

| what | default (Linux / macOS / Windows) | override |
|---|---|---|
| config (`config.yaml`, owned by the user) | ~/.config/tiergate, ~/Library/Application Support/tiergate, %LOCALAPPDATA%\\tiergate | TIERGATE_CONFIG_DIR |
| data (ledger, cache, privacy state) | ~/.local/share/tiergate, ~/Library/Application Support/tiergate, %LOCALAPPDATA%\\tiergate | TIERGATE_DATA_DIR |
| logs | ~/.local/state/tiergate/log, ~/Library/Logs/tiergate, %LOCALAPPDATA%\\tiergate\\Logs | TIERGATE_DATA_DIR/logs |

The functions only compute paths; nothing is created here (callers create what they write, with `ensure_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "tiergate"
CONFIG_FILE = "config.yaml"


def _override(name: str, env: Mapping[str, str] | None) -> Path | None:
    value = (os.environ if env is None else env).get(name)
    return Path(value).expanduser() if value else None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's config directory (TIERGATE_CONFIG_DIR overrides)."""
    override = _override("TIERGATE_CONFIG_DIR", env)
    if override:
        return override
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False, roaming=True))


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the app writes its own data: ledger, cache, privacy switch state (TIERGATE_DATA_DIR overrides)."""
    override = _override("TIERGATE_DATA_DIR", env)
    if override:
        return override
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False, roaming=False))


def log_dir(env: Mapping[str, str] | None = None) -> Path:
    """Log files (under TIERGATE_DATA_DIR when that is set, so tests keep everything in one tmp dir)."""
    override = _override("TIERGATE_DATA_DIR", env)
    if override:
        return override / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`config.yaml` in the config directory."""
    return config_dir(env) / CONFIG_FILE


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the user only, if missing; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` all at once (a temporary file in the same folder, flushed to disk, then
    renamed over it): a crash leaves the old file or the new one, never half of one. `mode` sets the
    permission bits (e.g. 0o600 for files holding key hashes)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None and os.name == "posix":
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
