"""Per-agent keys: who is calling, and what they may do.

`tiergate agents add NAME` creates a key "tg-<name>-<64 hex digits>", prints it once, and stores only its
hash in `<data dir>/agents.json`. Requests present the key as `Authorization: Bearer …` or `x-api-key`;
`AgentRegistry.authenticate` turns it into an `AgentIdentity`, which carries the agent's optional settings
from the config (`tiergate_settings.agents.NAME: {allowed_tiers, privacy, budget}`).

Why SHA-256 and not a slow password hash (scrypt, argon2): the keys are 256 random bits made here, not
passwords people choose. Slow hashes exist to make guessing low-entropy passwords expensive; guessing a
256-bit value is infeasible at any hash speed, so a slow hash would only add tens of milliseconds to every
request. The hash is domain-separated ("tiergate-agent-key-v1") and compared with `hmac.compare_digest`
against every stored hash, without stopping at the first match, so timing reveals neither the key nor
which agent it belongs to.

The file is re-read when it changes on disk, so a key added or revoked by the CLI takes effect in a running
server on its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from app.config.schema import Section
from app.errors import BadRequest, Forbidden, TiergateError
from app.paths import atomic_write

log = logging.getLogger(__name__)

KEY_PREFIX = "tg-"
AGENTS_FILE = "agents.json"
RESERVED_NAMES = frozenset({"master", "anonymous", "tiergate"})
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HASH_DOMAIN = b"tiergate-agent-key-v1\x00"
_FILE_VERSION = 1

PrivacyPolicy = Literal["local", "any"]


# ------------------------------------------------------------------------------------------ values
@dataclass(frozen=True, slots=True)
class AgentPolicy:
    """Optional per-agent settings from `tiergate_settings.agents.NAME`."""

    allowed_tiers: tuple[str, ...] | None = None  # None: every tier
    privacy: PrivacyPolicy | None = None  # "local": this agent's traffic never leaves the machine
    budget: Any = None  # as written in the config (number or mapping); app.ledger interprets it


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who made a request. Set by the auth middleware as `request[app.server.security.AGENT_KEY]`."""

    name: str  # appears in every usage record
    is_master: bool = False  # master key: management API allowed, no per-agent limits
    allowed_tiers: tuple[str, ...] | None = None  # None: every tier
    privacy: PrivacyPolicy | None = None  # None: follow the global privacy mode
    budget: Any = None  # the agent's budget setting, for app.ledger

    def may_use_tier(self, tier: str) -> bool:
        return self.allowed_tiers is None or tier in self.allowed_tiers

    def check_tier(self, tier: str) -> None:
        """Raise Forbidden unless this agent may use `tier`."""
        if not self.may_use_tier(tier):
            allowed = ", ".join(self.allowed_tiers or ()) or "none"
            raise Forbidden(f"Agent '{self.name}' may not use tier '{tier}' (allowed: {allowed}).",
                            title="Tier not allowed")


MASTER = AgentIdentity(name="master", is_master=True)
ANONYMOUS = AgentIdentity(name="anonymous")  # only when auth is explicitly off on a loopback bind


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One registered agent as `agents list` shows it (the hash stays inside the registry)."""

    name: str
    created: float  # unix time
    revoked: float | None = None  # unix time; a revoked agent's hash is deleted

    @property
    def active(self) -> bool:
        return self.revoked is None


class UnknownAgent(TiergateError):
    status = 404
    code = "agent_not_found"
    title = "Unknown agent"


class AgentExists(BadRequest):
    code = "agent_exists"
    title = "Agent already exists"


class InvalidAgentName(BadRequest):
    code = "invalid_agent_name"
    title = "Invalid agent name"


def hash_key(key: str) -> bytes:
    """The stored form of an agent key (32 bytes)."""
    return hashlib.sha256(_HASH_DOMAIN + key.encode("utf-8", "surrogatepass")).digest()


def check_agent_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidAgentName(
            "Agent names use letters, digits, '_', '.' and '-' (at most 64 characters, starting with a "
            "letter or digit), e.g. claude-code.")
    if name.lower() in RESERVED_NAMES:
        raise InvalidAgentName(f"'{name}' is reserved; choose another agent name.")


# ------------------------------------------------------------------------------------------ registry
class AgentRegistry:
    """Agent keys (hashes only) in a small JSON file. Safe to share between threads; several processes
    may read it while one writes (writes replace the file atomically)."""

    def __init__(self, path: str | os.PathLike[str], *, policies: Mapping[str, AgentPolicy] | None = None):
        self.path = Path(path)
        self._policies: dict[str, AgentPolicy] = dict(policies or {})
        self._identities: dict[str, AgentIdentity] = {}  # AgentIdentity is frozen: one per name
        self._lock = threading.Lock()
        self._agents: dict[str, dict[str, Any]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._loaded = False
        self._digests: list[tuple[str, bytes]] = []  # active agents' key hashes, decoded once per load
        self._checked_at = 0.0
        # The file is looked at (a stat) at most this often on the request path: keys added or revoked by
        # `tiergate agents` reach a running server within this many seconds.
        self.recheck_seconds = 1.0

    # ---------------------------------------------------------------------------------- policies
    def set_policies(self, policies: Mapping[str, AgentPolicy]) -> None:
        """Replace the per-agent settings (on config load and reload)."""
        self._policies = dict(policies)
        self._identities = {}

    def identity(self, name: str) -> AgentIdentity:
        identity = self._identities.get(name)
        if identity is None:
            policy = self._policies.get(name, AgentPolicy())
            identity = self._identities[name] = AgentIdentity(
                name=name, allowed_tiers=policy.allowed_tiers, privacy=policy.privacy, budget=policy.budget)
        return identity

    # ---------------------------------------------------------------------------------- management
    def add(self, name: str, *, replace: bool = False) -> str:
        """Create a key for agent `name` and return it; it is never shown again. An active agent keeps
        its key unless `replace` (the old key stops working at once)."""
        check_agent_name(name)
        with self._lock:
            self._reload(force=True)
            current = self._agents.get(name)
            if current and current.get("revoked") is None and not replace:
                raise AgentExists(f"Agent '{name}' already has a key. Revoke it first "
                                  f"(tiergate agents revoke {name}) or add it again with --replace.")
            key = f"{KEY_PREFIX}{name}-{secrets.token_hex(32)}"
            self._agents[name] = {"hash": hash_key(key).hex(), "created": time.time(), "revoked": None}
            self._write()
        log.info("Agent '%s' added", name)
        return key

    def revoke(self, name: str) -> None:
        """Stop `name`'s key from working (its hash is deleted; the name stays listed as revoked)."""
        with self._lock:
            self._reload(force=True)
            current = self._agents.get(name)
            if current is None or current.get("revoked") is not None:
                raise UnknownAgent(f"No active agent named '{name}'. See: tiergate agents list")
            current["revoked"] = time.time()
            current["hash"] = None
            self._write()
        log.info("Agent '%s' revoked", name)

    def list(self) -> list[AgentRecord]:
        with self._lock:
            self._reload()
            return [AgentRecord(name=n, created=float(a.get("created") or 0.0), revoked=a.get("revoked"))
                    for n, a in sorted(self._agents.items())]

    def names(self) -> list[str]:
        """Active agent names."""
        return [r.name for r in self.list() if r.active]

    # ---------------------------------------------------------------------------------- auth
    def authenticate(self, presented_key: str) -> AgentIdentity | None:
        """The agent whose key this is, or None (unknown, revoked, malformed). Constant time in the key."""
        if not presented_key:
            return None
        return self.match_digest(hash_key(presented_key))

    def match_digest(self, digest: bytes) -> AgentIdentity | None:
        """Compare `digest` (from `hash_key`) with every active agent's hash, never stopping early."""
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_seconds or not self._loaded:
            with self._lock:
                self._reload()
            self._checked_at = now
        found: str | None = None
        for name, expected in self._digests:
            if hmac.compare_digest(expected, digest) and found is None:
                found = name
        return self.identity(found) if found is not None else None

    # ---------------------------------------------------------------------------------- file
    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload(self, *, force: bool = False) -> None:
        stamp = self._stat()
        if self._loaded and not force and stamp == self._stamp:
            return
        if stamp is None:
            self._agents, self._stamp, self._loaded = {}, None, True
            self._index()
            return
        try:
            data = json.loads(self.path.read_text("utf-8"))
            agents = data["agents"]
            if not isinstance(agents, dict):
                raise ValueError("'agents' is not a mapping")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if self._loaded and not force:
                # Keep the last good set rather than failing every request; say so once per change.
                if stamp != self._stamp:
                    log.error("The agent key file is unreadable (%s); keeping the keys loaded before",
                              type(exc).__name__)
                    self._stamp = stamp
                return
            raise TiergateError(
                f"The agent key file {self.path.name} in Tiergate's data folder is unreadable "
                f"({type(exc).__name__}). Move it away and add the agents again.",
                title="Agent keys unreadable") from exc
        self._agents = {str(n): dict(a) for n, a in agents.items() if isinstance(a, dict)}
        self._stamp, self._loaded = stamp, True
        self._index()

    def _index(self) -> None:
        """Decode the active agents' hashes once, for `match_digest`."""
        digests = []
        for name, agent in self._agents.items():
            try:
                if agent.get("hash"):
                    digests.append((name, bytes.fromhex(agent["hash"])))
            except (TypeError, ValueError):
                continue
        self._digests = digests

    def _write(self) -> None:
        self._index()
        payload = json.dumps({"version": _FILE_VERSION, "agents": self._agents}, indent=2, sort_keys=True)
        atomic_write(self.path, (payload + "\n").encode(), mode=0o600)
        self._stamp = self._stat()


# ------------------------------------------------------------------------------------------ config
_POLICY_KEYS = ("allowed_tiers", "privacy", "budget")


def parse_agent_policies(section: Section) -> dict[str, AgentPolicy]:
    """Validate `tiergate_settings.agents` (a Section from `Config.section("agents")`); errors carry the
    file and line."""
    out: dict[str, AgentPolicy] = {}
    for name, raw in section.data.items():
        if not isinstance(name, str) or not NAME_RE.match(name) or name.lower() in RESERVED_NAMES:
            raise section.error("not a valid agent name (letters, digits, '_', '.', '-'; not 'master')", str(name))
        if raw is None:
            out[name] = AgentPolicy()
            continue
        if not isinstance(raw, dict):
            raise section.error("expected a mapping with allowed_tiers, privacy and/or budget", name)
        unknown = [k for k in raw if k not in _POLICY_KEYS]
        if unknown:
            raise section.error(f"unknown setting '{unknown[0]}' (known: {', '.join(_POLICY_KEYS)})",
                                name, unknown[0])
        tiers = raw.get("allowed_tiers")
        if tiers is not None:
            if isinstance(tiers, str):
                tiers = [tiers]
            if not isinstance(tiers, list) or not all(isinstance(t, str) and t for t in tiers):
                raise section.error("expected a list of tier names", name, "allowed_tiers")
        privacy = raw.get("privacy")
        if privacy is not None and privacy not in ("local", "any"):
            raise section.error("must be 'local' or 'any'", name, "privacy")
        budget = raw.get("budget")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float, dict, str))):
            raise section.error("expected a number or a mapping", name, "budget")
        out[name] = AgentPolicy(allowed_tiers=tuple(tiers) if tiers is not None else None,
                                privacy=privacy, budget=budget)
    return out


def default_agents_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / AGENTS_FILE


def unknown_policy_names(policies: Iterable[str], registry: AgentRegistry) -> list[str]:
    """Agents configured in the config but never added (for a warning)."""
    known = {r.name for r in registry.list()}
    return sorted(n for n in policies if n not in known)
