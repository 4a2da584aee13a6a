"""Model names Tiergate accepts, and their normal form.

A pull may only name a model of the default library (`gemma3:4b`, `qwen3:14b`) or of a user namespace on it
(`someone/model:tag`). A registry host (`registry.example.com/x/y`, `localhost:5000/x`, `hf.co/org/repo`)
is refused: where models come from is not something a request or a typo may change, and Tiergate never
asks Ollama for `insecure` transfers. Names are compared in their normal form, `model:tag` with the tag
defaulting to `latest`, the way Ollama lists them.
"""

from __future__ import annotations

import re

from app.errors import BadRequest

# namespace: a user name (no dots, so it can never be read as a host); model: letters, digits, . _ -
_NAME = re.compile(
    r"^(?:(?P<ns>[a-z0-9][a-z0-9_-]{0,79})/)?"
    r"(?P<model>[a-z0-9][a-z0-9._-]{0,79})"
    r"(?::(?P<tag>[a-z0-9_][a-z0-9._-]{0,127}))?$",
    re.IGNORECASE,
)


class InvalidModelName(BadRequest):
    code = "invalid_model_name"
    title = "Invalid model name"


def validate_model_name(name: str) -> str:
    """The name in normal form (`model:tag`, namespace kept) or InvalidModelName."""
    if not isinstance(name, str):
        raise InvalidModelName("a model name must be text, e.g. gemma3:4b")
    raw = name.strip()
    m = _NAME.match(raw)
    if m is None or ".." in raw:
        shown = raw if len(raw) <= 80 and raw.isprintable() else "that name"
        hint = ""
        if "/" in raw and raw.split("/", 1)[0].count(".") or "://" in raw or raw.count("/") > 1:
            hint = " Pulls come only from the Ollama library: give a plain name such as gemma3:4b."
        raise InvalidModelName(f"{shown!r} is not a model name Tiergate will use.{hint}")
    ns, model, tag = m.group("ns"), m.group("model"), m.group("tag") or "latest"
    return f"{ns + '/' if ns else ''}{model}:{tag}".lower()


def normalize(name: str) -> str:
    """`name` with `:latest` added when it has no tag (no validation; for comparing listed names)."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def same_model(a: str, b: str) -> bool:
    return normalize(a).lower() == normalize(b).lower()


def family_of(name: str) -> str:
    """The model part without tag or namespace: `gemma3:27b` -> `gemma3`."""
    return normalize(name).rsplit("/", 1)[-1].split(":", 1)[0].lower()
