"""Secrets: the OS keychain (the only code that touches `keyring`) and redaction of secret values."""

from app.secrets.redact import install_log_redaction, redact, register_secret, scrub_for_client
from app.secrets.store import (
    SERVICE,
    InvalidKeyName,
    KeychainLocked,
    KeychainUnavailable,
    KeyMissing,
    SecretStore,
)

__all__ = [
    "SERVICE",
    "InvalidKeyName",
    "KeyMissing",
    "KeychainLocked",
    "KeychainUnavailable",
    "SecretStore",
    "install_log_redaction",
    "redact",
    "register_secret",
    "scrub_for_client",
]
