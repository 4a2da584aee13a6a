"""Keychain fixtures for tests, and the planted-secrets helper for redaction tests.

Unit tests use the real keyring API with an in-memory backend installed by `keyring.set_keyring()`: the
code under test calls `keyring` exactly as in production, and the user's own keychain is never touched.
The real Secret Service path is tested in tests/unit/test_secrets_secret_service.py (marker
`secret_service`).

Use in a test module:  `from tests.keyring_fixtures import memory_keyring  # noqa: F401` (fixtures are
found by name in the module namespace), or `pytest_plugins = ["tests.keyring_fixtures"]` in a conftest.
"""

from __future__ import annotations

import os
import secrets as _secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import keyring
import keyring.backend
import pytest
from keyring import errors as kerr

from app.secrets.redact import forget_registered_secrets


class MemoryKeyring(keyring.backend.KeyringBackend):
    """Keeps entries in a dict. `locked=True` makes every call raise KeyringLocked, like an unlock prompt
    the user dismissed; `fail_writes=True` makes writes vanish (a backend that accepts but cannot keep)."""

    # No `priority`: the base class's raises, so keyring's detection (which sees every subclass ever
    # imported) finds this backend not viable and never picks it by itself.

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.locked = False
        self.fail_writes = False
        self.calls: list[tuple[str, str, str]] = []  # (operation, service, username), never values

    def _guard(self, op: str, service: str, username: str) -> None:
        self.calls.append((op, service, username))
        if self.locked:
            raise kerr.KeyringLocked("Failed to unlock the collection!")

    def get_password(self, service: str, username: str) -> str | None:
        self._guard("get", service, username)
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._guard("set", service, username)
        if not self.fail_writes:
            self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._guard("delete", service, username)
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise kerr.PasswordDeleteError("not found") from None


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """A fresh in-memory keychain installed as keyring's current backend for the test."""
    previous = keyring.core._keyring_backend  # restore exactly what was there (None: undetected)
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = previous
        forget_registered_secrets()


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """keyring's `fail` backend, as on a headless Linux machine with no Secret Service."""
    from keyring.backends import fail

    previous = keyring.core._keyring_backend
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.core._keyring_backend = previous


# ------------------------------------------------------------------------------- planted secrets
@dataclass
class PlantedSecrets:
    """Known fake key values placed where Tiergate will find them, and the means to look for them.

    `keychain`: name -> value stored through SecretStore; `env`: env var name -> value set in os.environ;
    `master_key`: the master key created in the keychain. Every value is unique and 40+ characters, so a
    hit is never a coincidence.
    """

    keychain: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    master_key: str | None = None

    @property
    def values(self) -> dict[str, str]:
        """label -> value, for every planted secret."""
        out = {f"keychain/{k}": v for k, v in self.keychain.items()}
        out.update({f"os.environ/{k}": v for k, v in self.env.items()})
        if self.master_key:
            out["master key"] = self.master_key
        return out

    def find_in_text(self, text: str | bytes, where: str = "text") -> list[str]:
        """'<where>: <label>' for each planted value found in `text` (also as bytes, so binary files and
        SQLite pages are searched too)."""
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        return [f"{where}: {label}" for label, value in self.values.items() if value.encode() in data]

    def find_in_tree(self, root: str | os.PathLike[str]) -> list[str]:
        """Hits in every file under `root` (config files, SQLite databases, logs, dumps)."""
        hits: list[str] = []
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                try:
                    hits += self.find_in_text(path.read_bytes(), str(path))
                except OSError:
                    continue
        return hits

    def find_anywhere(self, *, trees: list[str | os.PathLike[str]] = (), texts: dict[str, str | bytes] | None = None,
                      caplog: pytest.LogCaptureFixture | None = None) -> list[str]:
        """All hits across directory trees, named texts (captured stdout/stderr, HTTP bodies) and the
        records pytest captured (formatted with their exception text)."""
        hits: list[str] = []
        for tree in trees:
            hits += self.find_in_tree(tree)
        for where, text in (texts or {}).items():
            hits += self.find_in_text(text, where)
        if caplog is not None:
            for record in caplog.records:
                rendered = record.getMessage() + "\n" + (record.exc_text or "") + (record.stack_info or "")
                hits += self.find_in_text(rendered, f"log record {record.name}")
            hits += self.find_in_text(caplog.text, "captured log text")
        return hits


def plant_secrets(store, monkeypatch: pytest.MonkeyPatch, *, keychain_names: tuple[str, ...] = ("PLANTED_KEYCHAIN_KEY",),
                  env_names: tuple[str, ...] = ("PLANTED_ENV_KEY",), master: bool = True) -> PlantedSecrets:
    """Put fake keys in the keychain (through `store`, a SecretStore) and in the environment.

    Values look like real provider keys (so shape-based masking alone would also catch some: the
    planted keychain values are deliberately *not* `sk-` shaped, so the test proves the known-value
    layer works)."""
    planted = PlantedSecrets()
    for name in keychain_names:
        value = "plantedKC" + _secrets.token_hex(20)
        store.set(name, value)
        planted.keychain[name] = value
    for name in env_names:
        value = "plantedENV" + _secrets.token_hex(20)
        monkeypatch.setenv(name, value)
        planted.env[name] = value
    if master:
        planted.master_key = store.master_key()
    return planted


@pytest.fixture
def secrets_test_plant(memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> PlantedSecrets:
    """Planted keychain + env keys and a master key, in an in-memory keychain."""
    from app.secrets.store import SecretStore

    return plant_secrets(SecretStore(), monkeypatch)
