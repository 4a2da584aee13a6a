"""Logging for the whole process: records go through a queue to a listener thread, so the event loop
never blocks on a write; the secret-redaction filter sits on every handler."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from pathlib import Path

_listener: logging.handlers.QueueListener | None = None


def setup_logging(level: str = "INFO", *, log_file: Path | None = None) -> None:
    global _listener
    if _listener is not None:
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=3,
                                                             encoding="utf-8"))
    try:
        from app.secrets.redact import RedactingFilter

        redact: logging.Filter | None = RedactingFilter()
    except ImportError:  # pragma: no cover - the secrets package is part of the app
        redact = None
    for h in handlers:
        h.setFormatter(fmt)
        if redact is not None:
            h.addFilter(redact)
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(q)]
    root.setLevel(level.upper())
    _listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    _listener.start()


def stop_logging() -> None:
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None
