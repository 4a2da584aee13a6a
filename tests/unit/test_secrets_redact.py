"""The redaction layer: known values and key shapes masked in text, log records and crash output."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
import threading

import pytest

import app.secrets.redact as redact_mod
from app.secrets.redact import (
    MASK,
    RedactingFilter,
    forget_registered_secrets,
    install_log_redaction,
    redact,
    register_secret,
    scrub_for_client,
)

SECRET = "plantedRedactValue0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_registry():
    forget_registered_secrets()
    yield
    forget_registered_secrets()


@pytest.fixture
def restore_logging_hooks():
    factory = logging.getLogRecordFactory()
    hooks = (sys.excepthook, threading.excepthook)
    root_filters = {h: list(h.filters) for h in logging.getLogger().handlers}
    yield
    logging.setLogRecordFactory(factory)
    sys.excepthook, threading.excepthook = hooks
    for h, filters in root_filters.items():
        h.filters[:] = filters


def test_registered_values_are_masked_everywhere_in_text() -> None:
    register_secret(SECRET)
    text = f"start {SECRET} middle {SECRET}end"
    assert redact(text) == f"start {MASK} middle {MASK}end"


def test_longer_secret_containing_a_shorter_one_is_masked_whole() -> None:
    register_secret("abcdefgh")
    register_secret("abcdefgh-and-more")
    assert redact("x abcdefgh-and-more y abcdefgh") == f"x {MASK} y {MASK}"


def test_short_and_empty_values_are_not_registered() -> None:
    register_secret("")
    register_secret(None)
    register_secret("abc")
    assert redact_mod.registered_secret_count() == 0
    assert redact("abc is fine") == "abc is fine"


def test_regex_metacharacters_in_values_are_literal() -> None:
    register_secret("a.b*c+d?e(f)")
    assert redact("a.b*c+d?e(f) axbbbcd") == f"{MASK} axbbbcd"


@pytest.mark.parametrize("text,expected", [
    ("key tg-claude-code-" + "0a" * 32 + " end", f"key {MASK} end"),
    ("sk-proj-abcdefghijklmnop1234", MASK),
    ("sk-ant-api03-abcdefghijklmnopqrstuv", MASK),
    ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
    ("{'authorization': 'Bearer zzzzzzzzzzzz'}", f"{{'authorization': 'Bearer {MASK}'}}"),
    ("x-api-key: hunter2hunter2", f"x-api-key: {MASK}"),
    ('"api_key": "literal-key-value"', f'"api_key": "{MASK}"'),
    ("api_key: os.environ/OPENAI_API_KEY", "api_key: os.environ/OPENAI_API_KEY"),
    ("api_key: keychain/OPENAI_API_KEY", "api_key: keychain/OPENAI_API_KEY"),
    ("POST /v1/chat/completions 200 in 12 ms", "POST /v1/chat/completions 200 in 12 ms"),
    ("task-skeleton ask-me", "task-skeleton ask-me"),
])
def test_key_shapes_are_masked_without_registration(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_scrub_for_client_hides_paths_and_secrets() -> None:
    register_secret(SECRET)
    text = (f"Config error: /home/bob/.config/tiergate/config.yaml:12: bad key {SECRET}; "
            r"see C:\Users\bob\AppData\tiergate\config.yaml or ~/notes; POST /v1/messages failed")
    out = scrub_for_client(text)
    assert out == ("Config error: <path>:12: bad key [REDACTED]; see <path> or <path>; "
                   "POST /v1/messages failed")


def _capture_handler() -> tuple[logging.Handler, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return handler, buf


def test_filter_on_handler_masks_args_exceptions_and_stack() -> None:
    register_secret(SECRET)
    handler, buf = _capture_handler()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tiergate.test.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("value %s and %r", SECRET, {"k": SECRET})
        try:
            raise ValueError(f"upstream said {SECRET}")
        except ValueError:
            logger.exception("failed")
        logger.info("stack", stack_info=True, extra={"x": 1})
        logger.error("bad args %s %s", SECRET)  # wrong arg count must not crash or leak
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = buf.getvalue()
    assert SECRET not in out
    assert out.count(MASK) >= 3
    assert "ValueError: upstream said [REDACTED]" in out
    assert "unformattable log arguments" in out


def test_install_covers_child_loggers_and_handlers_added_later(restore_logging_hooks) -> None:
    # A filter on the root *logger* would miss records propagated from "app.x"; the record factory does not.
    install_log_redaction(excepthooks=False)
    install_log_redaction(excepthooks=False)  # idempotent
    register_secret(SECRET)
    handler, buf = _capture_handler()  # no filter on this handler at all
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("app.deep.child").debug("resolved key %s", SECRET)
        logging.getLogger("aiohttp.server").error("boom %s", SECRET, exc_info=RuntimeError(SECRET))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    out = buf.getvalue()
    assert SECRET not in out
    assert "app.deep.child DEBUG resolved key [REDACTED]" in out
    assert "RuntimeError: [REDACTED]" in out


def test_queue_handler_pipeline_stays_redacted() -> None:
    # The bootstrap's arrangement: QueueHandler in the process, RedactingFilter on the listener's handlers.
    import logging.handlers
    import queue

    register_secret(SECRET)
    q: queue.SimpleQueue = queue.SimpleQueue()
    handler, buf = _capture_handler()
    handler.addFilter(RedactingFilter())
    listener = logging.handlers.QueueListener(q, handler)
    logger = logging.getLogger("tiergate.test.queue")
    logger.addHandler(logging.handlers.QueueHandler(q))
    logger.propagate = False
    listener.start()
    try:
        try:
            raise KeyError(SECRET)
        except KeyError:
            logger.exception("lookup of %s failed", SECRET)
    finally:
        listener.stop()
        logger.handlers.clear()
        logger.propagate = True
    assert SECRET not in buf.getvalue() and MASK in buf.getvalue()


CRASH_SCRIPT = textwrap.dedent("""
    import sys, threading
    from app.secrets.redact import install_log_redaction, register_secret
    secret = sys.argv[1]
    register_secret(secret)
    install_log_redaction()
    t = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("thread " + secret)))
    t.start(); t.join()
    raise RuntimeError("crash while using " + secret)
""")


def test_crash_output_is_redacted() -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, SECRET], capture_output=True, text=True)
    assert proc.returncode == 1
    assert SECRET not in proc.stderr and SECRET not in proc.stdout
    assert "RuntimeError: crash while using [REDACTED]" in proc.stderr
    assert "RuntimeError: thread [REDACTED]" in proc.stderr


def test_known_secrets_are_masked_in_relayed_bytes():
    from app.secrets.redact import forget_registered_secrets, mask_known_secrets, register_secret

    forget_registered_secrets()
    try:
        assert mask_known_secrets(b"data: {}\n\n") == b"data: {}\n\n"  # nothing registered: unchanged
        register_secret("sk-live-0123456789abcdef")
        chunk = b'data: {"debug": "key sk-live-0123456789abcdef"}\n\n'
        out = mask_known_secrets(chunk)
        assert b"sk-live-0123456789abcdef" not in out and b"REDACTED" in out
        assert mask_known_secrets(b'data: {"x": 1}\n\n') == b'data: {"x": 1}\n\n'
    finally:
        forget_registered_secrets()
