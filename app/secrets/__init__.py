"""Secrets: the OS keychain (the only code that touches `keyring`) and redaction of secret values."""

# `app.secrets.redact` stays the module (the function is `app.secrets.redact.redact`).
from app.secrets.redact import install_log_redaction, register_secret, scrub_for_client
from app.secrets.store import (
    SERVICE,
    InvalidKeyName,
    KeychainLocked,
    KeychainNotOpened,
    KeychainUnavailable,
    KeyMissing,
    SecretStore,
)

__all__ = [
    "SERVICE",
    "InvalidKeyName",
    "KeyMissing",
    "KeychainLocked",
    "KeychainNotOpened",
    "KeychainUnavailable",
    "SecretStore",
    "install_log_redaction",
    "register_secret",
    "scrub_for_client",
]
