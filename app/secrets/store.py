"""`SecretStore`: the only code in Tiergate that touches `keyring`.

Every provider key lives in the OS keychain (macOS Keychain, Windows Credential Locker, the Secret Service
on Linux: gnome-keyring or KWallet) under one service name, "tiergate", with the key's name as the
keyring "username". Nothing is cached on disk and there is never a plaintext fallback: when no keychain
can be used, every operation raises an error that says so and what to do.

The backend is found lazily, on the first call that needs it, so importing this module or building a
`SecretStore` never talks to D-Bus or prompts the user.

keyring cannot list entries, so the store keeps an index of key *names* (no values) in one extra keychain
entry, "tiergate:index" (a JSON list). Reserved entries ("tiergate:…") never clash with key names, which
may not contain ":".

Calls may block (D-Bus round trips, an unlock prompt on a desktop): async code calls them through
`asyncio.to_thread` / `run_in_executor`, never directly on the event loop.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from typing import Any, Callable, Literal, TypeVar

from keyring import errors as kerr

from app.errors import SecretError
from app.secrets.redact import register_secret

log = logging.getLogger(__name__)

SERVICE = "tiergate"
INDEX_ENTRY = "tiergate:index"
MASTER_ENTRY = "tiergate:master-key"
MASTER_KEY_PREFIX = "tg-master-"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# Backends that store secrets in clear text or not at all: refused, never fallen back to.
_REFUSED_BACKENDS = {
    "keyring.backends.null.Keyring": "keyring is disabled (null backend)",
    "keyrings.alt.file.PlaintextKeyring": "the keyrings.alt plaintext file backend stores keys unencrypted",
}

KeyStatus = Literal["stored", "missing", "locked", "unavailable"]
T = TypeVar("T")


# ------------------------------------------------------------------------------------------- errors
class KeyMissing(SecretError):
    """No keychain entry with this name."""

    code = "secret_missing"
    title = "API key not found"

    def __init__(self, name: str):
        super().__init__(
            f"Tiergate has no key named '{name}' in the system keychain. "
            f"Store it with: tiergate keys set {name}"
        )
        self.key_name = name
        self.fix_command = f"tiergate keys set {name}"


class KeychainLocked(SecretError):
    """The keychain exists but is locked and could not be unlocked."""

    code = "keychain_locked"
    title = "Keychain locked"

    def __init__(self, name: str | None):
        what = f"the key '{name}'" if name else "Tiergate's keys"
        super().__init__(
            f"The system keychain is locked, so {what} cannot be used. Unlock it (log in to your desktop "
            f"session, or unlock the 'login' keyring in your keychain app) and try again; "
            f"`tiergate keys list` shows which keys are reachable."
        )
        self.key_name = name
        self.fix_command = "tiergate keys list"


class KeychainUnavailable(SecretError):
    """No usable keychain backend on this system."""

    code = "keychain_unavailable"
    title = "No keychain available"

    def __init__(self, name: str | None, reason: str):
        what = f" for the key '{name}'" if name else ""
        ref = f"os.environ/{name}" if name else "os.environ/NAME"
        super().__init__(
            f"No usable system keychain was found{what} ({reason}). On Linux, run a Secret Service such as "
            f"gnome-keyring or KWallet in your session; on a headless machine you can instead put the key in "
            f"an environment variable and reference it in the config as {ref}. "
            f"Tiergate never stores keys in plain text."
        )
        self.key_name = name
        self.reason = reason


class KeychainNotOpened(KeychainUnavailable):
    """A keychain service exists but refused to open or create its default collection (on Linux: a
    Secret Service with no 'login' keyring yet, whose create/unlock prompt could not be shown)."""

    title = "Keychain could not be opened"

    def __init__(self, name: str | None, detail: str):
        SecretError.__init__(
            self,
            f"The system keychain could not be opened{f' for the key {name!r}' if name else ''} ({detail}). "
            f"It may have no default keyring yet, or the prompt to create or unlock it could not be shown: "
            f"create or unlock the 'login' keyring in your keychain app (Seahorse, KWalletManager), or on a "
            f"headless machine start it unlocked with `gnome-keyring-daemon --unlock`. "
            f"Tiergate never stores keys in plain text.")
        self.key_name = name
        self.reason = detail


class InvalidKeyName(SecretError):
    code = "invalid_key_name"
    title = "Invalid key name"

    def __init__(self, name: str):
        shown = name if len(name) <= 64 else name[:61] + "..."
        super().__init__(
            f"'{shown}' is not a valid key name: use letters, digits, '_', '.' and '-' "
            f"(at most 128 characters, not starting with '.' or '-'), e.g. OPENAI_API_KEY."
        )


# -------------------------------------------------------------------------------------------- store
class SecretStore:
    """Keys in the OS keychain under one service name. Methods raise `SecretError` subclasses only."""

    def __init__(self, *, service: str = SERVICE, backend: Any | None = None):
        """`backend`: a `keyring.backend.KeyringBackend` to use instead of keyring's current one (tests
        normally install theirs with `keyring.set_keyring()` and leave this None)."""
        self.service = service
        self._backend = backend
        self._lock = threading.Lock()  # index read-modify-write

    # ---------------------------------------------------------------------------------- backend
    def backend(self, name: str | None = None) -> Any:
        """The keyring backend in use (found on first call). Raises KeychainUnavailable, naming `name`."""
        backend = self._backend
        if backend is None:
            try:
                import keyring

                backend = keyring.get_keyring()
            except Exception as exc:  # keyring's own init errors, broken config files
                raise KeychainUnavailable(name, f"keyring could not start: {type(exc).__name__}") from exc
        self._check_backend(backend, name)
        return backend

    def backend_name(self) -> str:
        """A short description of the keychain in use, for `keys list` and diagnostics."""
        try:
            backend = self.backend()
        except SecretError as exc:
            return f"none ({getattr(exc, 'reason', exc.title)})"
        return f"{type(backend).__module__}.{type(backend).__name__}"

    @staticmethod
    def _check_backend(backend: Any, name: str | None) -> None:
        qualname = f"{type(backend).__module__}.{type(backend).__name__}"
        if qualname == "keyring.backends.fail.Keyring":
            raise KeychainUnavailable(name, "keyring found no backend")
        if qualname in _REFUSED_BACKENDS:
            raise KeychainUnavailable(name, _REFUSED_BACKENDS[qualname])
        # A chainer with nothing inside is the same as no backend.
        if qualname == "keyring.backends.chainer.ChainerBackend" and not getattr(backend, "backends", True):
            raise KeychainUnavailable(name, "keyring found no backend")

    def _call(self, name: str | None, fn: Callable[[Any], T]) -> T:
        """Run `fn(backend)`, turning keyring's and the backend's exceptions into our errors."""
        backend = self.backend(name)
        try:
            return fn(backend)
        except SecretError:
            raise
        except kerr.KeyringLocked as exc:
            raise KeychainLocked(name) from exc
        except kerr.NoKeyringError as exc:
            raise KeychainUnavailable(name, "keyring found no backend") from exc
        except kerr.InitError as exc:
            # e.g. "Failed to create the collection: Prompt dismissed." (keyring's own words, no values)
            raise KeychainNotOpened(name, f"keyring: {_short(exc)}") from exc
        except Exception as exc:
            # D-Bus errors from SecretStorage/jeepney, Windows/macOS API errors… The message of such an
            # exception names the backend's own problem and never a value we passed in, but keep to the
            # type name anyway: errors here are shown to people and written to logs.
            raise KeychainUnavailable(name, f"{type(exc).__name__} from the keychain") from exc

    # ---------------------------------------------------------------------------------- keys
    def get(self, name: str) -> str:
        """The key's value. Raises KeyMissing, KeychainLocked, KeychainUnavailable, InvalidKeyName."""
        value = self.find(name)
        if value is None:
            raise KeyMissing(name)
        return value

    def find(self, name: str) -> str | None:
        """Like `get`, but None when the entry does not exist."""
        check_key_name(name)
        value = self._call(name, lambda b: b.get_password(self.service, name))
        register_secret(value)
        return value

    def set(self, name: str, value: str) -> None:
        """Store (or replace) a key and add its name to the index."""
        check_key_name(name)
        if not isinstance(value, str) or not value.strip():
            raise SecretError(f"Refusing to store an empty value for '{name}'.", title="Empty key")
        register_secret(value)
        self._call(name, lambda b: b.set_password(self.service, name, value))
        # Some backends accept writes they cannot keep (a keychain that is read-only, a null backend
        # behind a chainer): read back, so "stored" means stored.
        if self._call(name, lambda b: b.get_password(self.service, name)) != value:
            raise KeychainUnavailable(name, "the keychain did not keep the value it was given")
        self._update_index(add=name)

    def delete(self, name: str) -> bool:
        """Remove a key. True if it existed."""
        check_key_name(name)
        existed = self._call(name, lambda b: b.get_password(self.service, name)) is not None
        if existed:
            self._call(name, lambda b: _delete(b, self.service, name))
        self._update_index(remove=name)
        return existed

    def status(self, name: str) -> KeyStatus:
        """Whether the key can be read right now, without raising."""
        try:
            return "stored" if self.find(name) is not None else "missing"
        except KeychainLocked:
            return "locked"
        except SecretError:
            return "unavailable"

    def names(self) -> list[str]:
        """Names of the keys stored through Tiergate (sorted). Values are never read here."""
        return sorted(self._read_index())

    # ---------------------------------------------------------------------------------- master key
    def master_key_status(self) -> str:
        """"stored", "not created", "locked" or "unavailable", without creating the key."""
        try:
            present = self._call(None, lambda b: b.get_password(self.service, MASTER_ENTRY)) is not None
        except KeychainLocked:
            return "locked"
        except SecretError:
            return "unavailable"
        return "stored" if present else "not created"

    def master_key(self) -> str:
        """The master key, created on first use ("tg-master-" + 64 hex digits, 256 random bits)."""
        value = self._call(None, lambda b: b.get_password(self.service, MASTER_ENTRY))
        if value is None:
            return self.rotate_master_key()
        register_secret(value)
        return value

    def rotate_master_key(self) -> str:
        """Replace the master key with a new random one and return it. Running servers pick it up on
        their next keychain read (see app.server.security.MasterKeyCache)."""
        value = MASTER_KEY_PREFIX + secrets.token_hex(32)
        register_secret(value)
        self._call(None, lambda b: b.set_password(self.service, MASTER_ENTRY, value))
        # Two processes creating it at once: the value that stayed in the keychain wins for both.
        stored = self._call(None, lambda b: b.get_password(self.service, MASTER_ENTRY))
        if stored is None:
            raise KeychainUnavailable(None, "the keychain did not keep the master key")
        register_secret(stored)
        log.info("Master key created in the system keychain")
        return stored

    # ---------------------------------------------------------------------------------- index
    def _read_index(self) -> set[str]:
        raw = self._call(None, lambda b: b.get_password(self.service, INDEX_ENTRY))
        if not raw:
            return set()
        try:
            names = json.loads(raw)
        except ValueError:
            log.warning("The keychain's list of Tiergate key names is unreadable; starting a new one")
            return set()
        if not isinstance(names, list):
            return set()
        return {n for n in names if isinstance(n, str) and NAME_RE.match(n)}

    def _update_index(self, *, add: str | None = None, remove: str | None = None) -> None:
        with self._lock:
            names = self._read_index()
            before = set(names)
            if add:
                names.add(add)
            if remove:
                names.discard(remove)
            if names != before:
                data = json.dumps(sorted(names))
                self._call(None, lambda b: b.set_password(self.service, INDEX_ENTRY, data))


def _delete(backend: Any, service: str, name: str) -> None:
    try:
        backend.delete_password(service, name)
    except kerr.PasswordDeleteError:
        pass  # already gone (another process deleted it between our read and delete)


def check_key_name(name: str) -> None:
    """Raise InvalidKeyName unless `name` can be a keychain entry name."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidKeyName(str(name))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def is_valid_key_name(name: str) -> bool:
    return isinstance(name, str) and bool(NAME_RE.match(name))
