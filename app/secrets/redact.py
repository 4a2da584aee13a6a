"""Masking of secret values wherever text leaves the process: logs, crash output, client error bodies.

Two layers:
- **Known values.** Every key Tiergate reads or writes (keychain entries through `SecretStore`, keys the
  config loader resolves from `os.environ/NAME` or finds written literally in the config, the master key)
  is registered here with `register_secret(value)` and replaced by `MASK` in any text passed through
  `redact()`.
- **Shapes.** Text that looks like a key Tiergate never saw (an agent key pasted into a log line, an
  `sk-…` key in an upstream's error body, an `Authorization: Bearer …` header dump) is masked by pattern.

`install_log_redaction()` (called once by the bootstrap) makes every log record pass through `redact`,
whichever logger it was sent to and whichever handler writes it, and makes uncaught-exception output
(sys.excepthook, threading.excepthook) go through it too.

Why a log-record factory and not only a Filter on the root logger: filters attached to a *logger* only see
records logged on that very logger, not records propagated from child loggers (`app.router`, `aiohttp.…`).
The factory runs for every record created anywhere in the process. `RedactingFilter` is still provided for
handlers set up outside this process's factory (tests, embedding applications).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from typing import Any, Iterable

MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values are not keys; masking them would shred ordinary log text

# Key shapes masked even when the value was never registered. Each pattern either masks the whole match
# or, when it has a group named "keep", keeps that group and masks the rest.
_SHAPES: tuple[re.Pattern[str], ...] = (
    # Tiergate agent and master keys: tg-<name>-<64 hex>
    re.compile(r"\btg-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{64}\b"),
    # OpenAI / Anthropic / OpenRouter style secret keys
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    # Authorization header values in dumps: "Authorization: Bearer xyz", "'authorization': 'Bearer xyz'"
    re.compile(r"(?i)(?P<keep>\bauthorization\b['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|token)\s+)[^\s'\",}]+"),
    re.compile(r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}"),
    # x-api-key / api_key / api-key assignments in dumps
    re.compile(r"(?i)(?P<keep>\b(?:x-api-key|api[_-]?key)\b['\"]?\s*[:=]\s*['\"]?)(?!os\.environ/|keychain/)[^\s'\",}]{6,}"),
)

# Absolute filesystem paths, for text sent to clients (never tell a remote party where files live).
# Only well-known roots, so API paths like "/v1/messages" in a message stay readable.
_PATHS = re.compile(
    r"(?<![\w/.:])(?:~|/(?:home|Users|root|tmp|var|etc|opt|usr|srv|mnt|run|private|Library|Volumes|nix|snap|proc))"
    r"(?:/[^\s'\",:;)\]}]*)?"
    r"|\b[A-Za-z]:\\[^\s'\",;)\]}]*"
)


class Redactor:
    """A set of known secret values and the compiled pattern that finds them. Thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._encoded: tuple[bytes, ...] = ()  # the values as bytes, for relayed upstream bytes
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        """Mask `value` from now on. Values shorter than MIN_SECRET_LENGTH are ignored."""
        if not value or not isinstance(value, str):
            return
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            # Longest first, so a key that contains another registered key is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            self._encoded = tuple(v.encode() for v in ordered)

    def forget_all(self) -> None:
        """Drop every registered value (tests only)."""
        with self._lock:
            self._values.clear()
            self._pattern = None
            self._encoded = ()

    def __len__(self) -> int:
        return len(self._values)

    def mask_bytes(self, data: bytes) -> bytes:
        """`data` with every registered value replaced by MASK. Cheap when none occurs (a byte search per
        value): used on upstream bytes relayed as they are (same-dialect streams)."""
        for value in self._encoded:
            if value in data:
                break
        else:
            return data
        mask = MASK.encode()
        for value in self._encoded:
            data = data.replace(value, mask)
        return data

    def redact(self, text: str) -> str:
        """`text` with every registered value and every key-shaped token replaced by MASK."""
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for shape in _SHAPES:
            if "keep" in shape.groupindex:
                text = shape.sub(lambda m: m.group("keep") + MASK, text)
            else:
                text = shape.sub(MASK, text)
        return text


_REDACTOR = Redactor()


def mask_known_secrets(data: bytes) -> bytes:
    """Registered secret values masked in raw bytes (see Redactor.mask_bytes)."""
    return _REDACTOR.mask_bytes(data)


def register_secret(value: str | None) -> None:
    """Mask this value in every log line, crash report and client error from now on."""
    _REDACTOR.register(value)


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        _REDACTOR.register(value)


def redact(text: str) -> str:
    """Mask every known secret value and key-shaped token in `text`."""
    return _REDACTOR.redact(text)


def redact_any(value: Any) -> str:
    """`redact(str(value))`, for exceptions and other objects about to be shown."""
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not break error reporting
        text = f"<{type(value).__name__}>"
    return _REDACTOR.redact(text)


def scrub_for_client(text: str) -> str:
    """Text safe to send to an HTTP client: secrets masked and absolute filesystem paths replaced by
    "<path>". Use on every error message a client sees (the server's error middleware)."""
    return _PATHS.sub("<path>", _REDACTOR.redact(text))


def scrub_error(err: Any) -> None:
    """Make an error safe for a client, in place: its message and any upstream error body it relays."""
    if not getattr(err, "_scrubbed", False):
        err.message = scrub_for_client(err.message)
        body = getattr(err, "body", None)
        if body is not None:
            err.body = _scrub_json(body)
        err._scrubbed = True


def _scrub_json(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_for_client(value)
    if isinstance(value, dict):
        return {k: _scrub_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_json(v) for v in value]
    return value


def forget_registered_secrets() -> None:
    """Tests only: start again with no registered values."""
    _REDACTOR.forget_all()


def registered_secret_count() -> int:
    return len(_REDACTOR)


# ------------------------------------------------------------------------------------------ logging
class RedactingFilter(logging.Filter):
    """Rewrites a record so that its formatted message, exception text and stack text are redacted.

    Formats the message once (msg % args) and stores the result with args=None; pre-formats exc_info into
    exc_text so formatters print the redacted traceback. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_tiergate_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # bad %-args: keep what can be shown without formatting
        message = f"{record.msg!r} (unformattable log arguments)"
    record.msg = _REDACTOR.redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = _format_exception(record.exc_info)
    if record.exc_text:
        record.exc_text = _REDACTOR.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = _REDACTOR.redact(record.stack_info)
    record._tiergate_redacted = True  # type: ignore[attr-defined]
    return record


def _format_exception(exc_info: Any) -> str:
    return logging.Formatter().formatException(exc_info)


_FILTER = RedactingFilter()
_install_lock = threading.Lock()


def install_log_redaction(*, excepthooks: bool = True) -> None:
    """Redact every log record created in this process from now on, and (by default) uncaught-exception
    output. Idempotent: calling it again changes nothing."""
    with _install_lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "_tiergate_redacting", False):
            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                return redact_record(current(*args, **kwargs))

            factory._tiergate_redacting = True  # type: ignore[attr-defined]
            logging.setLogRecordFactory(factory)
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
        if excepthooks:
            _install_excepthooks()


def _install_excepthooks() -> None:
    if not getattr(sys.excepthook, "_tiergate_redacting", False):
        def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            sys.stderr.write(_REDACTOR.redact(text))
            sys.stderr.flush()

        excepthook._tiergate_redacting = True  # type: ignore[attr-defined]
        sys.excepthook = excepthook
    if not getattr(threading.excepthook, "_tiergate_redacting", False):
        def thread_excepthook(args: threading.ExceptHookArgs) -> None:
            if args.exc_type is SystemExit:
                return
            name = args.thread.name if args.thread is not None else "thread"
            text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
            sys.stderr.write(f"Exception in thread {name}:\n" + _REDACTOR.redact(text))
            sys.stderr.flush()

        thread_excepthook._tiergate_redacting = True  # type: ignore[attr-defined]
        threading.excepthook = thread_excepthook
