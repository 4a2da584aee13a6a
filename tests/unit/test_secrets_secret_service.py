"""SecretStore against a real Secret Service (gnome-keyring in a D-Bus session), through keyring's own
backend detection: the Linux path users get.

Skipped unless TIERGATE_TEST_SECRET_SERVICE=1. Run it inside a throwaway session with an unlocked keyring
(this is what .ci/run does; XDG_DATA_HOME keeps the test keyring out of the real home):

    export XDG_DATA_HOME=$(mktemp -d)
    dbus-run-session -- sh -c 'echo -n ci-pass | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
        TIERGATE_TEST_SECRET_SERVICE=1 .venv/bin/pytest -m secret_service tests/unit/test_secrets_secret_service.py'

The locked-keychain test starts its own second D-Bus session, so the tests can run in any order and
alongside the rest of the suite (scripts/test.py runs everything inside one such session).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import keyring
import keyring.core
import pytest

from app.secrets.store import SERVICE, SecretStore

pytestmark = [
    pytest.mark.secret_service,
    pytest.mark.skipif(os.environ.get("TIERGATE_TEST_SECRET_SERVICE") != "1",
                       reason="set TIERGATE_TEST_SECRET_SERVICE=1 inside a D-Bus session with gnome-keyring"),
]


ROOT = Path(__file__).resolve().parents[2]


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


LOCKED_PROBE = """
import json, sys
from app.errors import SecretError
from app.secrets.store import SecretStore
out = {}
for op in ("get", "set", "status"):
    try:
        if op == "get":
            SecretStore().get(sys.argv[1])
        elif op == "set":
            SecretStore().set(sys.argv[1], "after-lock-value-123")
        else:
            out[op] = SecretStore().status(sys.argv[1])
            continue
        out[op] = "no error"
    except SecretError as e:
        out[op] = [type(e).__name__, e.title, e.message]
print(json.dumps(out))
"""


def test_locked_keychain_gives_our_clear_error(name: str, tmp_path) -> None:
    """A second gnome-keyring, started without --unlock on a copy of this session's keyrings, has its
    'login' collection locked (as after a reboot with no desktop login). With no prompt available, keyring
    raises KeyringLocked and the store turns it into KeychainLocked naming the key. The session running
    the other tests is left untouched."""
    for tool in ("dbus-run-session", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    store = SecretStore()
    store.set(name, "before-lock-" + uuid.uuid4().hex)  # makes sure the login keyring exists on disk
    try:
        data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        shutil.copytree(data_home / "keyrings", tmp_path / "keyrings")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "GNOME_KEYRING"))}
        env.update(XDG_DATA_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
        inner = 'gnome-keyring-daemon --components=secrets >/dev/null; exec "$0" -c "$1" "$2"'
        proc = subprocess.run(["dbus-run-session", "--", "sh", "-c", inner, sys.executable, LOCKED_PROBE, name],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        store.delete(name)
    assert result["status"] == "locked"
    for op in ("get", "set"):
        kind, title, message = result[op]
        assert (kind, title) == ("KeychainLocked", "Keychain locked")
        assert name in message and "Unlock it" in message
