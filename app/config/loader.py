"""Load `config.yaml` (LiteLLM's proxy config plus `tiergate_settings`) into a validated `Config`.

Existing LiteLLM configs load unchanged: keys LiteLLM knows but Tiergate does not use give a warning ("ignored"),
unknown keys a warning with a suggestion, invalid values a ConfigError with the file, the line and a sentence
saying what is expected. Warnings are "file:line: key.path: sentence" strings in `Config.warnings`; neither warnings
nor errors ever quote a value that may be a secret.

Mapping keys are taken as written (`on:` stays "on", `1:` stays "1"), so key paths are always strings.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from app.config.schema import Config, Deployment, Section, ServerSettings
from app.netloc import is_loopback_host
from app.errors import ConfigError

try:  # libyaml is 5-10x faster; the pure-Python loader gives the same result
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

KeyPath = tuple[str | int, ...]
MAX_DEPTH = 64


# ------------------------------------------------------------------------------------------- one document
class Doc:
    """One parsed file: its data, the line of every key and list item, and where warnings go."""

    def __init__(self, text: str, path: str | None, warnings: list[str], order: list[tuple[int, int]] | None = None,
                 rank: int = 0):
        self.path = path
        self.label = path or "<config>"
        self.lines: dict[KeyPath, int] = {}
        self.warnings = warnings  # shared by a config and its includes; sorted by file and line at the end
        self.order = [] if order is None else order  # (file rank, line) of each warning
        self.rank = rank
        self.data = self._compose(text)

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(f"{dotted(path)}: {message}" if path else message, path=self.label, line=self.line(path))

    def warn(self, path: KeyPath, message: str) -> None:
        line = self.line(path)
        where = f"{self.label}:{line}: " if line else f"{self.label}: "
        self.warnings.append(f"{where}{dotted(path)}: {message}" if path else where + message)
        self.order.append((self.rank, line or 0))

    # -- YAML composed node by node, so every key's line is known
    def _compose(self, text: str) -> Any:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else self._build(loader, node, ())
        except yaml.MarkedYAMLError as e:
            raise _yaml_error(e, self.label, text) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"the file is not valid YAML: {e}", path=self.label) from None
        finally:
            loader.dispose()

    def _build(self, loader: Any, node: yaml.Node, path: KeyPath) -> Any:
        if len(path) > MAX_DEPTH:
            raise self.error(path, f"nested more than {MAX_DEPTH} levels deep (a recursive YAML alias?)")
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # `<<: *anchor` merges
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise ConfigError(f"{dotted(path) or 'the top level'}: a key must be plain text, not a list "
                                      f"or mapping", path=self.label, line=knode.start_mark.line + 1)
                key = knode.value
                sub = path + (key,)
                if key in out:
                    self.warn(sub, f"duplicate key: the one on line {knode.start_mark.line + 1} wins "
                                   f"over line {self.lines[sub]}")
                self.lines[sub] = knode.start_mark.line + 1
                out[key] = self._build(loader, vnode, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[path + (i,)] = item.start_mark.line + 1
                items.append(self._build(loader, item, path + (i,)))
            return items
        return loader.construct_object(node, deep=True)


def _yaml_error(e: yaml.MarkedYAMLError, label: str, text: str) -> ConfigError:
    mark = e.problem_mark or e.context_mark
    problem = " ".join((e.problem or e.context or "unreadable YAML").split())
    sentence = f"this is not valid YAML: {problem}"
    if e.context and e.problem:
        sentence += f" ({' '.join(e.context.split())})"
    if mark is not None:
        lines = text.splitlines()
        source = lines[mark.line] if mark.line < len(lines) else ""
        if "\t" in source[: mark.column + 1]:
            sentence += "; indent with spaces, YAML does not allow tabs"
        sentence += f" at column {mark.column + 1}"
    return ConfigError(sentence + ".", path=label, line=mark.line + 1 if mark else None)


def dotted(path: KeyPath) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# ------------------------------------------------------------------------------------------- value checks
def show(value: Any) -> str:
    """A value for an error message (short; strings quoted)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return "nothing" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def kind_of(value: Any) -> str:
    """A value's kind only, for fields that may hold secrets."""
    return {str: "text", bool: "true/false", int: "a number", float: "a number", dict: "a mapping",
            list: "a list", type(None): "nothing"}.get(type(value), type(value).__name__)


def expected(doc: Doc, path: KeyPath, what: str, value: Any, *, secret: bool = False) -> ConfigError:
    return doc.error(path, f"expected {what}, got {kind_of(value) if secret else show(value)}")


def as_number(value: Any) -> float | None:
    """int/float, or a string holding a number (PyYAML reads `3e-6` as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def seconds(doc: Doc, path: KeyPath, value: Any, *, zero_ok: bool = False) -> float:
    number = as_number(value)
    if number is None:
        raise expected(doc, path, "a number of seconds", value)
    if number < 0 or (number == 0 and not zero_ok):
        raise expected(doc, path, "a number of seconds greater than 0" if not zero_ok else
                       "a number of seconds (0 or more)", value)
    return number


def count(doc: Doc, path: KeyPath, value: Any, *, minimum: int = 0, what: str | None = None) -> int:
    number = as_number(value)
    if number is None or number != int(number) or number < minimum:
        raise expected(doc, path, what or f"a whole number ({minimum} or more)", value)
    return int(number)


def flag(doc: Doc, path: KeyPath, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise expected(doc, path, "true or false", value)


def money(doc: Doc, path: KeyPath, value: Any) -> float:
    number = as_number(value)
    if number is None or number < 0:
        raise expected(doc, path, "a cost in US dollars per token (0 or more), such as 0.000003", value)
    return number


def text_value(doc: Doc, path: KeyPath, value: Any, what: str = "text", *, secret: bool = False) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise expected(doc, path, what, value, secret=secret)


def mapping(doc: Doc, path: KeyPath, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise expected(doc, path, "a mapping of `key: value` lines", value)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?", re.IGNORECASE)


def size(doc: Doc, path: KeyPath, value: Any) -> int:
    """Bytes: a number, or "512KB", "32MB", "1GiB" (KB/MB/GB count in powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m:
        unit = (m.group(2) or "b").lower()[:1]
        number = int(float(m.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])
        if number > 0:
            return number
    raise expected(doc, path, 'a size in bytes such as 33554432 or "32MB"', value)


def check_keys(doc: Doc, path: KeyPath, data: Mapping[str, Any], used: set[str] | frozenset[str],
               ignored: frozenset[str] = frozenset(), note: str = "a LiteLLM setting Tiergate does not use") -> None:
    """Warn about keys Tiergate does not read: known LiteLLM ones as ignored, others as unknown."""
    for key in data:
        if key in used:
            continue
        if key in ignored:
            doc.warn(path + (key,), f"ignored ({note})")
        else:
            doc.warn(path + (key,), "unknown key, ignored" + suggest(key, used))


def suggest(key: str, known: set[str] | frozenset[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def tier_ref(doc: Doc, path: KeyPath, value: Any, tiers: set[str]) -> str:
    """A value that must name a tier (a `model_name`)."""
    name = text_value(doc, path, value, "a tier name (a model_name from model_list)")
    if name not in tiers:
        known = ", ".join(sorted(tiers))
        raise doc.error(path, f"{name!r} is not a tier; the tiers are the model_name values in model_list: {known}"
                        + suggest(name, tiers))
    return name


def is_loopback(host: str) -> bool:
    return is_loopback_host(host)


# ------------------------------------------------------------------------------------------------ entry
def parse_config(text: str, path: str | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Validate config text. `path` is used in messages and to find `include:` files; `environ` (default: the
    process environment) resolves `os.environ/NAME` in api_base values."""
    from app.config import compat  # compat builds on the checks above

    warnings: list[str] = []
    doc = Doc(text, path, warnings)
    root = doc.data
    if root is None:
        raise ConfigError("the file is empty: add a model_list with at least one model (see "
                          "resources/config.example.yaml).", path=doc.label)
    if not isinstance(root, dict):
        raise ConfigError(f"expected `key: value` lines at the top level (model_list:, router_settings:…), "
                          f"got {show(root)}.", path=doc.label, line=1)
    check_keys(doc, (), root, compat.TOP_USED, compat.TOP_IGNORED, "a LiteLLM proxy feature Tiergate does not have")

    env_vars = compat.environment_variables(doc, root.get("environment_variables"))
    env: Mapping[str, str] = dict(os.environ if environ is None else environ) | env_vars

    entries: list[tuple[Doc, KeyPath, Any]] = []
    model_list = root.get("model_list")
    if model_list is not None and not isinstance(model_list, list):
        raise expected(doc, ("model_list",), "a list of models (lines starting with `- model_name:`)", model_list)
    entries += [(doc, ("model_list", i), e) for i, e in enumerate(model_list or [])]
    for inc_doc in compat.includes(doc, root.get("include")):
        inc_list = inc_doc.data.get("model_list") if isinstance(inc_doc.data, dict) else None
        if inc_list is not None and not isinstance(inc_list, list):
            raise expected(inc_doc, ("model_list",), "a list of models", inc_list)
        entries += [(inc_doc, ("model_list", i), e) for i, e in enumerate(inc_list or [])]

    deployments: list[Deployment] = []
    for entry_doc, entry_path, entry in entries:
        dep = compat.deployment(entry_doc, entry_path, entry, env)
        if dep is not None:
            deployments.append(dep)
    if not deployments:
        raise doc.error(("model_list",) if "model_list" in root else (),
                        "no chat models: add at least one model_list entry (a model_name and litellm_params.model).")
    _assign_ids(deployments, doc.label)
    tiers = {d.tier for d in deployments}

    router = compat.router_settings(doc, root, deployments)
    server, aliases, concrete, sections = _tiergate(doc, root.get("tiergate_settings"), tiers)
    aliases = compat.model_group_alias(doc, root, tiers) | aliases
    ranked = sorted(range(len(warnings)), key=lambda i: doc.order[i])  # stable: file order, then line
    return Config(deployments=deployments, router=router, server=server, model_aliases=aliases,
                  allow_concrete_models=concrete, sections=sections, path=path,
                  warnings=[warnings[i] for i in ranked],
                  environment_variables=env_vars)


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file. Raises ConfigError (with file and line) when it cannot be used."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("the config file does not exist.", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"the file is not UTF-8 text (byte {e.start}).", path=str(path)) from None
    except OSError as e:
        raise ConfigError(f"the file cannot be read: {e.strerror}.", path=str(path)) from None
    return parse_config(text, str(path), environ=environ)


def _assign_ids(deployments: list[Deployment], label: str) -> None:
    explicit: dict[str, Deployment] = {}
    for d in deployments:
        if d.id in explicit:
            raise ConfigError(f"model_info.id {d.id!r} is already used by the model_list entry on line "
                              f"{explicit[d.id].line}; deployment ids must be unique.", path=label, line=d.line)
        if d.id:
            explicit[d.id] = d
    seen: set[str] = set()
    for d in deployments:
        if d.id:
            seen.add(d.id)
            continue
        base = f"{d.tier}/{d.provider}/{d.model}"
        candidate, n = base, 1
        while candidate in seen or candidate in explicit:
            n += 1
            candidate = f"{base}#{n}"
        d.id = candidate
        seen.add(candidate)


# -------------------------------------------------------------------------------------- tiergate_settings
SERVER_KEYS = frozenset(("host", "port", "max_body_bytes", "max_header_bytes", "request_timeout",
                         "max_concurrent_streams", "require_auth", "allowed_origins", "allowed_hosts", "log_content",
                         "header_timeout", "body_timeout", "auth_max_failures", "auth_failure_window",
                         "auth_block_seconds"))
SECTION_KEYS = frozenset(("privacy", "budgets", "cache", "agents", "ollama", "ledger", "pricing"))


def _tiergate(doc: Doc, raw: Any, tiers: set[str]) -> tuple[ServerSettings, dict[str, str], bool, dict[str, Section]]:
    base: KeyPath = ("tiergate_settings",)
    data = mapping(doc, base, raw)
    check_keys(doc, base, data, SERVER_KEYS | SECTION_KEYS | {"model_aliases", "allow_concrete_models"})
    s = ServerSettings()
    p = lambda key: base + (key,)  # noqa: E731
    if "host" in data:
        s.host = text_value(doc, p("host"), data["host"], "an address such as 127.0.0.1")
    if "port" in data:
        s.port = count(doc, p("port"), data["port"], what="a port number from 0 to 65535")
        if s.port > 65535:
            raise expected(doc, p("port"), "a port number from 0 to 65535", data["port"])
    if "max_body_bytes" in data:
        s.max_body_bytes = size(doc, p("max_body_bytes"), data["max_body_bytes"])
    if "max_header_bytes" in data:
        s.max_header_bytes = size(doc, p("max_header_bytes"), data["max_header_bytes"])
    if "request_timeout" in data:
        s.request_timeout = seconds(doc, p("request_timeout"), data["request_timeout"])
    if "max_concurrent_streams" in data:
        s.max_concurrent_streams = count(doc, p("max_concurrent_streams"), data["max_concurrent_streams"], minimum=1)
    for key in ("header_timeout", "body_timeout", "auth_failure_window", "auth_block_seconds"):
        if key in data:
            setattr(s, key, seconds(doc, p(key), data[key]))
    if "auth_max_failures" in data:
        s.auth_max_failures = count(doc, p("auth_max_failures"), data["auth_max_failures"], minimum=1)
    if "allowed_hosts" in data:
        hosts = data["allowed_hosts"] or []
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise expected(doc, p("allowed_hosts"), 'a list of host names such as ["tiergate.local"]', hosts)
        s.allowed_hosts = list(hosts)
    if "require_auth" in data:
        s.require_auth = flag(doc, p("require_auth"), data["require_auth"])
    if "log_content" in data:
        s.log_content = flag(doc, p("log_content"), data["log_content"])
    if "allowed_origins" in data:
        origins = data["allowed_origins"] or []
        if not isinstance(origins, list) or not all(isinstance(o, str) and o for o in origins):
            raise expected(doc, p("allowed_origins"), 'a list of origins such as ["http://localhost:3000"]', origins)
        s.allowed_origins = [o.rstrip("/") for o in origins]
    if not is_loopback(s.host) and not s.require_auth:
        doc.warn(p("require_auth"), f"require_auth: false is overridden because host {s.host} can be reached from "
                                    f"other machines; every client needs an agent key.")
        s.require_auth = True
    if not is_loopback(s.host):
        s.require_auth = True

    aliases: dict[str, str] = {}
    raw_aliases = mapping(doc, p("model_aliases"), data.get("model_aliases"))
    for name, target in raw_aliases.items():
        ap = p("model_aliases") + (name,)
        aliases[name] = tier_ref(doc, ap, target, tiers)
    concrete = flag(doc, p("allow_concrete_models"), data["allow_concrete_models"]) \
        if "allow_concrete_models" in data else True

    sections: dict[str, Section] = {}
    for name, value in data.items():
        if name in SERVER_KEYS or name in ("model_aliases", "allow_concrete_models"):
            continue
        if name not in SECTION_KEYS and not isinstance(value, dict):
            continue  # unknown and not a section: warned above
        sections[name] = Section(mapping(doc, p(name), value), p(name), doc.path, doc.lines)
    return s, aliases, concrete, sections
