"""SecretStore against the real keyring API with an in-memory backend (and keyring's own fail backend)."""

from __future__ import annotations

import json
import subprocess
import sys

import keyring
import pytest

from app.errors import SecretError
from app.secrets.redact import redact
from app.secrets.store import (
    INDEX_ENTRY,
    MASTER_ENTRY,
    SERVICE,
    InvalidKeyName,
    KeychainLocked,
    KeychainUnavailable,
    KeyMissing,
    SecretStore,
)
from tests.keyring_fixtures import MemoryKeyring, memory_keyring, no_keyring  # noqa: F401


def test_set_get_goes_through_keyring_under_one_service(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    store.set("OPENAI_API_KEY", "value-one-123456")
    assert keyring.get_password("tiergate", "OPENAI_API_KEY") == "value-one-123456"
    assert store.get("OPENAI_API_KEY") == "value-one-123456"
    assert {svc for (_op, svc, _user) in memory_keyring.calls} == {SERVICE}
    # values never appear in the call log the backend keeps (it records names only), and the index
    # entry holds names only
    index = json.loads(memory_keyring.entries[(SERVICE, INDEX_ENTRY)])
    assert index == ["OPENAI_API_KEY"]


def test_construction_is_lazy(memory_keyring: MemoryKeyring) -> None:
    SecretStore()
    assert memory_keyring.calls == []


def test_names_index_tracks_set_and_delete_without_values(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    store.set("B_KEY", "bbbbbbbbbb")
    store.set("A_KEY", "aaaaaaaaaa")
    store.set("A_KEY", "aaaaaaaaa2")  # replacing keeps one entry
    assert store.names() == ["A_KEY", "B_KEY"]
    assert store.delete("A_KEY") is True
    assert store.names() == ["B_KEY"]
    assert store.delete("A_KEY") is False
    assert "aaaaaaaaa2" not in memory_keyring.entries[(SERVICE, INDEX_ENTRY)]
    assert store.find("A_KEY") is None


def test_master_key_is_not_listed_and_reserved_names_are_refused(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    master = store.master_key()
    assert store.names() == []
    with pytest.raises(InvalidKeyName):
        store.get(MASTER_ENTRY)  # "tiergate:master-key" has a colon: not a key name
    with pytest.raises(InvalidKeyName):
        store.set("tiergate:index", "x" * 20)
    assert master.startswith("tg-master-") and len(master) == len("tg-master-") + 64


def test_missing_key_error_names_key_and_fix(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(KeyMissing) as info:
        SecretStore().get("ANTHROPIC_API_KEY")
    err = info.value
    assert isinstance(err, SecretError)
    assert err.title == "API key not found"
    assert "ANTHROPIC_API_KEY" in err.message
    assert "tiergate keys set ANTHROPIC_API_KEY" in err.message


def test_locked_keychain_gives_clear_error(memory_keyring: MemoryKeyring) -> None:
    SecretStore().set("OPENAI_API_KEY", "value-123456")
    memory_keyring.locked = True
    with pytest.raises(KeychainLocked) as info:
        SecretStore().get("OPENAI_API_KEY")
    assert info.value.title == "Keychain locked"
    assert "OPENAI_API_KEY" in info.value.message and "unlock" in info.value.message.lower()
    assert SecretStore().status("OPENAI_API_KEY") == "locked"
    assert SecretStore().master_key_status() == "locked"


def test_no_backend_gives_clear_error_and_no_plaintext_fallback(no_keyring: None, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SecretStore()
    with pytest.raises(KeychainUnavailable) as info:
        store.get("OPENAI_API_KEY")
    assert info.value.title == "No keychain available"
    assert "os.environ/OPENAI_API_KEY" in info.value.message
    assert "never stores keys in plain text" in info.value.message
    with pytest.raises(KeychainUnavailable):
        store.set("OPENAI_API_KEY", "value-123456")
    with pytest.raises(KeychainUnavailable):
        store.master_key()
    assert store.status("OPENAI_API_KEY") == "unavailable"
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere as a fallback
    assert store.backend_name().startswith("none (")


def test_null_backend_is_refused(memory_keyring) -> None:
    from keyring.backends import null

    with pytest.raises(KeychainUnavailable) as info:
        SecretStore(backend=null.Keyring()).set("K_NAME", "value-123456")
    assert "null backend" in info.value.message


def test_write_that_does_not_stick_is_an_error(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.fail_writes = True
    with pytest.raises(KeychainUnavailable) as info:
        SecretStore().set("K_NAME", "value-123456")
    assert "did not keep" in info.value.message


def test_backend_exceptions_become_secret_errors_without_values(memory_keyring: MemoryKeyring, monkeypatch) -> None:
    def boom(service, username, password):
        raise OSError(f"dbus exploded while storing {password}")

    monkeypatch.setattr(memory_keyring, "set_password", boom)
    with pytest.raises(KeychainUnavailable) as info:
        SecretStore().set("K_NAME", "secretvalue-987654")
    assert "secretvalue-987654" not in info.value.message
    assert "OSError" in info.value.message


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x:y", "-lead", ".lead", "x" * 129, "é"])
def test_invalid_names(memory_keyring: MemoryKeyring, bad: str) -> None:
    with pytest.raises(InvalidKeyName):
        SecretStore().get(bad)


def test_empty_value_refused(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(SecretError):
        SecretStore().set("K_NAME", "   ")
    assert (SERVICE, "K_NAME") not in memory_keyring.entries


def test_master_key_created_once_then_stable_and_rotatable(memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    assert store.master_key_status() == "not created"
    first = store.master_key()
    assert store.master_key_status() == "stored"
    assert SecretStore().master_key() == first
    rotated = store.rotate_master_key()
    assert rotated != first and store.master_key() == rotated
    assert memory_keyring.entries[(SERVICE, MASTER_ENTRY)] == rotated


def test_values_read_or_written_are_registered_for_redaction(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.entries[(SERVICE, "PRESET_KEY")] = "preset-value-abcdef"  # set outside Tiergate
    store = SecretStore()
    store.get("PRESET_KEY")
    store.set("NEW_KEY", "new-value-ghijkl")
    master = store.master_key()
    text = f"a preset-value-abcdef b new-value-ghijkl c {master}"
    assert redact(text) == "a [REDACTED] b [REDACTED] c [REDACTED]"


def test_corrupt_index_is_rebuilt(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.entries[(SERVICE, INDEX_ENTRY)] = "{not json"
    store = SecretStore()
    assert store.names() == []
    store.set("K_NAME", "value-123456")
    assert store.names() == ["K_NAME"]


def test_importing_the_store_does_not_touch_the_keychain() -> None:
    code = ("import keyring.core, app.secrets, app.secrets.store, app.agents, app.server.security, app.cli.keys;"
            "print(keyring.core._keyring_backend)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_keychain_that_cannot_open_its_collection(memory_keyring: MemoryKeyring, monkeypatch) -> None:
    from keyring.errors import InitError

    from app.secrets.store import KeychainNotOpened

    def refuse(service, username):
        raise InitError("Failed to create the collection: Prompt dismissed.")

    monkeypatch.setattr(memory_keyring, "get_password", refuse)
    with pytest.raises(KeychainNotOpened) as info:
        SecretStore().get("OPENAI_API_KEY")
    assert isinstance(info.value, KeychainUnavailable)
    assert info.value.title == "Keychain could not be opened"
    assert "'OPENAI_API_KEY'" in info.value.message and "Prompt dismissed" in info.value.message
    assert "gnome-keyring-daemon --unlock" in info.value.message
