"""Key references in the config: a literal value, `os.environ/NAME` or `keychain/NAME`.

LiteLLM configs write `api_key: os.environ/OPENAI_API_KEY`; Tiergate adds `keychain/NAME` for keys kept in the OS
keychain (`tiergate keys ...`). The config keeps the reference; the value is looked up only when a request needs it,
through `resolve_secret`. Messages name the variable or keychain entry, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from app.errors import SecretError

ENV_PREFIX = "os.environ/"
KEYCHAIN_PREFIX = "keychain/"

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYCHAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

KeychainLookup = Callable[[str], "str | None"]


def is_reference(value: Any) -> bool:
    """True for `os.environ/NAME` and `keychain/NAME` strings (well formed or not)."""
    return isinstance(value, str) and (value.startswith(ENV_PREFIX) or value.startswith(KEYCHAIN_PREFIX))


def reference_kind(value: Any) -> Literal["env", "keychain"] | None:
    if not isinstance(value, str):
        return None
    if value.startswith(ENV_PREFIX):
        return "env"
    if value.startswith(KEYCHAIN_PREFIX):
        return "keychain"
    return None


def reference_name(value: str) -> str:
    """The NAME part of a reference ("" when `value` is not one)."""
    kind = reference_kind(value)
    if kind == "env":
        return value[len(ENV_PREFIX):]
    if kind == "keychain":
        return value[len(KEYCHAIN_PREFIX):]
    return ""


def reference_problem(value: str) -> str | None:
    """Why a reference is malformed (a sentence), or None when it is fine or not a reference."""
    kind = reference_kind(value)
    name = reference_name(value)
    if kind == "env" and not ENV_NAME.fullmatch(name):
        return "expected os.environ/NAME with NAME an environment variable name such as OPENAI_API_KEY"
    if kind == "keychain" and not KEYCHAIN_NAME.fullmatch(name):
        return "expected keychain/NAME with NAME a keychain entry such as ANTHROPIC_API_KEY"
    return None


def resolve_secret(ref: str | None, *, keychain: KeychainLookup | None = None,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """The value a reference stands for.

    None and "" give None (no key). A literal is returned as is. `os.environ/NAME` reads `environ` (default: the
    process environment; pass `config_environ(config)` to include the config's `environment_variables`).
    `keychain/NAME` calls `keychain(NAME)`. Raises SecretError naming the variable or entry when it has no value.
    """
    if ref is None or ref == "":
        return None
    kind = reference_kind(ref)
    if kind is None:
        return ref
    name = reference_name(ref)
    if kind == "env":
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise SecretError(
                f"The environment variable {name} is not set. Set it before starting Tiergate, or store the key in "
                f"the keychain (`tiergate keys import-env`) and write keychain/{name} in the config.")
        return value
    if keychain is None:
        raise SecretError(f"keychain references are not available yet (keychain/{name}); "
                          f"use os.environ/{name} for now.")
    value = keychain(name)
    if not value:
        raise SecretError(f"The keychain has no entry named {name}. Add it with `tiergate keys set {name}`, "
                          f"or import it from the environment with `tiergate keys import-env`.")
    return value


def config_environ(config: Any) -> Mapping[str, str]:
    """The environment as LiteLLM sees it: the config's `environment_variables` over the process environment."""
    from collections import ChainMap

    extra = getattr(config, "environment_variables", None) or {}
    return ChainMap(dict(extra), os.environ) if extra else os.environ
