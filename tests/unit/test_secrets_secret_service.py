"""SecretStore against a real Secret Service (gnome-keyring in a D-Bus session), through keyring's own
backend detection: the Linux path users get.

Skipped unless TIERGATE_TEST_SECRET_SERVICE=1. Run it inside a throwaway session with an unlocked keyring
(this is what .ci/run does; XDG_DATA_HOME keeps the test keyring out of the real home):

    export XDG_DATA_HOME=$(mktemp -d)
    dbus-run-session -- sh -c 'echo -n ci-pass | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
        TIERGATE_TEST_SECRET_SERVICE=1 .venv/bin/pytest -m secret_service tests/unit/test_secrets_secret_service.py'

The tests run in file order: the last one locks the collection to check the locked-keychain error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import keyring
import keyring.core
import pytest

from app.secrets.store import SERVICE, KeychainLocked, SecretStore

pytestmark = [
    pytest.mark.secret_service,
    pytest.mark.skipif(os.environ.get("TIERGATE_TEST_SECRET_SERVICE") != "1",
                       reason="set TIERGATE_TEST_SECRET_SERVICE=1 inside a D-Bus session with gnome-keyring"),
]


@pytest.fixture(autouse=True)
def detected_backend():
    """Let keyring detect its backend from scratch (as on a user's machine), then restore."""
    previous = keyring.core._keyring_backend
    keyring.core._keyring_backend = None
    try:
        yield keyring.get_keyring()
    finally:
        keyring.core._keyring_backend = previous


@pytest.fixture
def name() -> str:
    return f"TG_TEST_{uuid.uuid4().hex[:12].upper()}"


def secret_tool_lookup(name: str) -> str | None:
    """The value as libsecret's own CLI sees it (proves the entry is in the Secret Service)."""
    if shutil.which("secret-tool") is None:
        pytest.skip("secret-tool (libsecret-tools) not installed")
    proc = subprocess.run(["secret-tool", "lookup", "service", SERVICE, "username", name],
                          capture_output=True, text=True, timeout=10)
    return proc.stdout if proc.returncode == 0 else None


def test_backend_is_the_secret_service(detected_backend) -> None:
    assert type(detected_backend).__module__ == "keyring.backends.SecretService"
    assert SecretStore().backend_name() == "keyring.backends.SecretService.Keyring"


def test_round_trip_through_gnome_keyring(name: str) -> None:
    store = SecretStore()
    value = "ss-value-" + uuid.uuid4().hex
    store.set(name, value)
    try:
        assert store.get(name) == value
        assert secret_tool_lookup(name) == value
        assert name in store.names()
        assert store.status(name) == "stored"
    finally:
        assert store.delete(name) is True
    assert store.find(name) is None
    assert secret_tool_lookup(name) is None
    assert name not in store.names()


def test_master_key_is_created_once_in_the_keychain() -> None:
    store = SecretStore()
    first = store.master_key()
    assert first.startswith("tg-master-")
    assert SecretStore().master_key() == first
    assert secret_tool_lookup("tiergate:master-key") == first


def test_locked_keychain_gives_our_clear_error(name: str) -> None:
    """Runs last: locks the default collection (as after a screen lock); with no prompt available, keyring
    raises KeyringLocked and the store turns it into KeychainLocked naming the key."""
    import secretstorage

    store = SecretStore()
    store.set(name, "before-lock-" + uuid.uuid4().hex)
    conn = secretstorage.dbus_init()
    collection = secretstorage.get_default_collection(conn)
    collection.lock()
    assert collection.is_locked()
    with pytest.raises(KeychainLocked) as info:
        SecretStore().get(name)
    assert info.value.title == "Keychain locked"
    assert name in info.value.message
    assert SecretStore().status(name) == "locked"
    with pytest.raises(KeychainLocked):
        SecretStore().set(name, "after-lock-value")
