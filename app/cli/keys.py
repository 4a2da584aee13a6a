"""`tiergate keys`: provider keys in the OS keychain, and the master key.

    tiergate keys set NAME          store a key (hidden prompt, or the first line of stdin when piped)
    tiergate keys list              key names, whether each is stored, and which deployments use it
    tiergate keys delete NAME       remove a key from the keychain
    tiergate keys import-env        move os.environ/NAME keys into the keychain and rewrite the config
    tiergate keys master            print the master key (created on first use); --rotate replaces it

Values are never printed, except the master key by `keys master`, which exists to be copied.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from app.errors import ConfigError, SecretError, TiergateError
from app.paths import atomic_write

ENV_PREFIX = "os.environ/"
KEYCHAIN_PREFIX = "keychain/"
_REF_ANY = re.compile(r"(?P<kind>os\.environ|keychain)/(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)")
_SECRET_FIELD = re.compile(r"(?i)(key|token|secret|password)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("keys", help="manage provider keys in the OS keychain",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    s = sub.add_parser("set", help="store a key in the keychain")
    s.add_argument("name", help="key name, e.g. OPENAI_API_KEY (the config refers to it as keychain/NAME)")
    s.set_defaults(func=run_set)
    s = sub.add_parser("list", help="list key names, their status and where the config uses them")
    s.set_defaults(func=run_list)
    s = sub.add_parser("delete", help="remove a key from the keychain")
    s.add_argument("name")
    s.set_defaults(func=run_delete)
    s = sub.add_parser("import-env", help="move os.environ/ keys of the config into the keychain")
    s.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    s.add_argument("--overwrite", action="store_true", help="replace keychain entries that differ")
    s.set_defaults(func=run_import_env)
    s = sub.add_parser("master", help="print the master key (for the management API and the tray)")
    s.add_argument("--rotate", action="store_true", help="replace the master key with a new one")
    s.set_defaults(func=run_master)


# ------------------------------------------------------------------------------------------ helpers
def _store() -> Any:
    from app.secrets.store import SecretStore

    return SecretStore()


def config_path(args: argparse.Namespace) -> Path:
    value = getattr(args, "config", None)
    if value:
        return Path(value).expanduser()
    from app import paths

    return paths.default_config_path()


@dataclass(frozen=True, slots=True)
class Reference:
    """A `os.environ/NAME` or `keychain/NAME` written in the config text."""

    kind: str  # "env" | "keychain"
    name: str
    line: int
    field: str  # the YAML key it is the value of ("" when not on a `key: value` line)


def scan_references(text: str) -> list[Reference]:
    """Every reference in the config text, comments excluded, with its line."""
    out: list[Reference] = []
    for number, line in enumerate(text.splitlines(), 1):
        code = _strip_comment(line)
        key_match = re.match(r"^\s*(?:-\s+)?([\w.-]+)\s*:", code)
        for m in _REF_ANY.finditer(code):
            kind = "env" if m.group("kind") == "os.environ" else "keychain"
            out.append(Reference(kind, m.group("name"), number, key_match.group(1) if key_match else ""))
    return out


def _strip_comment(line: str) -> str:
    """The line without its YAML comment (a '#' at the start or after whitespace, outside quotes)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _usage_by_name(path: Path) -> tuple[dict[tuple[str, str], list[str]], list[str], str | None]:
    """(kind, name) -> where the config uses it; deployments with a literal key; a config problem or None."""
    usage: dict[tuple[str, str], list[str]] = {}
    literal: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return usage, literal, f"no config file at {path}"
    except (OSError, UnicodeDecodeError) as exc:
        return usage, literal, f"the config file cannot be read ({type(exc).__name__})"
    problem: str | None = None
    try:
        from app.config import load_config

        config = load_config(path)
        for d in config.deployments:
            ref = d.api_key_ref
            if not ref:
                continue
            if ref.startswith(ENV_PREFIX):
                usage.setdefault(("env", ref[len(ENV_PREFIX):]), []).append(d.id)
            elif ref.startswith(KEYCHAIN_PREFIX):
                usage.setdefault(("keychain", ref[len(KEYCHAIN_PREFIX):]), []).append(d.id)
            else:
                literal.append(d.id + (f" (line {d.line})" if d.line else ""))
    except (TiergateError, ImportError) as exc:
        problem = f"{getattr(exc, 'title', 'Config error')}: {exc}"
    # References outside model_list (or in a config that does not load) are still listed, by line.
    seen = {k for k in usage}
    for ref in scan_references(text):
        if (ref.kind, ref.name) not in seen:
            usage.setdefault((ref.kind, ref.name), []).append(f"{path.name} line {ref.line}")
    return usage, literal, problem


def _read_secret(name: str, stdin: TextIO) -> str:
    if stdin.isatty():
        value = getpass.getpass(f"Value for {name} (input hidden): ")
    else:
        value = stdin.readline()
    value = value.strip("\r\n").strip()
    if not value:
        raise SecretError(f"No value given for {name}; nothing was stored.", title="Empty key")
    return value


# ------------------------------------------------------------------------------------------ commands
def run_set(args: argparse.Namespace, *, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from app.secrets.store import check_key_name

    check_key_name(args.name)
    store = _store()
    store.backend()  # fail on a missing keychain before asking for the value
    value = _read_secret(args.name, stdin or sys.stdin)
    store.set(args.name, value)
    print(f"Stored {args.name} in the system keychain (service \"{store.service}\").", file=out)
    usage, _literal, _problem = _usage_by_name(config_path(args))
    if ("keychain", args.name) in usage:
        print(f"Used by: {', '.join(usage[('keychain', args.name)])} (takes effect on the next start or "
              f"config reload).", file=out)
    elif ("env", args.name) in usage:
        print(f"The config still reads os.environ/{args.name}; write keychain/{args.name} there, or run "
              f"`tiergate keys import-env`.", file=out)
    else:
        print(f"Refer to it in the config as: api_key: keychain/{args.name}", file=out)
    return 0


def run_list(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = _store()
    path = config_path(args)
    usage, literal, problem = _usage_by_name(path)
    print(f"Keychain: {store.backend_name()} (service \"{store.service}\")", file=out)
    try:
        stored_names = set(store.names())
    except SecretError as exc:
        print(f"{exc.title}: {exc.message}", file=out)
        stored_names = set()
    names = sorted(stored_names | {n for (k, n) in usage if k == "keychain"})
    rows = [("NAME", "STATUS", "USED BY")]
    for name in names:
        rows.append((name, store.status(name), ", ".join(usage.get(("keychain", name), [])) or "-"))
    rows.append(("(master key)", store.master_key_status(), "management API (/tiergate/...)"))
    width = max(len(r[0]) for r in rows)
    for name, status, used in rows:
        print(f"{name:<{width}}  {status:<11}  {used}", file=out)
    env_refs = sorted({n for (k, n) in usage if k == "env"})
    if env_refs:
        print("\nKeys read from environment variables (os.environ/NAME):", file=out)
        for name in env_refs:
            state = "set" if os.environ.get(name) else "not set"
            print(f"  {name} ({state} in this shell): {', '.join(usage[('env', name)])}", file=out)
        print("Move them into the keychain with: tiergate keys import-env", file=out)
    if literal:
        print("\nWarning: these deployments have their key written in the config file itself: "
              f"{', '.join(literal)}. Store it with `tiergate keys set NAME` and write keychain/NAME instead.",
              file=out)
    if problem:
        print(f"\nNote: {problem}", file=out)
    return 0


def run_delete(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    existed = _store().delete(args.name)
    if not existed:
        print(f"There was no key named {args.name} in the keychain.", file=out)
        return 1
    print(f"Deleted {args.name} from the system keychain.", file=out)
    users = _usage_by_name(config_path(args))[0].get(("keychain", args.name))
    if users:
        print(f"These deployments will be unavailable until it is set again: {', '.join(users)}", file=out)
    return 0


def run_master(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    store = _store()
    key = store.rotate_master_key() if args.rotate else store.master_key()
    print(key, file=out)
    note = ("New master key (the old one stops working within 30 s in a running server)." if args.rotate
            else "Master key: use it as the API key for the management API (/tiergate/...).")
    print(note, file=err)
    return 0


# ------------------------------------------------------------------------------------------ import-env
# One block-style `key: value` line: the value plain or quoted, an optional comment after it.
_VALUE_LINE = re.compile(
    r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[\w.-]+)(?P<sep>\s*:\s+)"
    r"(?:(?P<q>[\"'])(?P<qval>[^\"'\\]*)(?P=q)|(?P<val>[^\s\"'#&*!|>{\[][^\s#]*))(?P<tail>(?:\s+#.*)?\s*)$")


def _line_value(line: str) -> tuple[str, str, tuple[int, int]] | None:
    """(key, value, span of the value without quotes) for a simple `key: value` line, else None."""
    m = _VALUE_LINE.match(line)
    if not m:
        return None
    group = "qval" if m.group("q") else "val"
    return m.group("key"), m.group(group), m.span(group)


def rewrite_values(text: str, replacements: dict[int, str]) -> str:
    """`text` with the value on each given line (1-based) replaced; quotes, spacing, comments and line
    endings kept byte for byte."""
    out: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if number in replacements:
            body = line.rstrip("\r\n")
            parsed = _line_value(body)
            if parsed is not None:
                start, end = parsed[2]
                line = body[:start] + replacements[number] + body[end:] + line[len(body):]
        out.append(line)
    return "".join(out)


def rewrite_env_references(text: str, names: set[str]) -> tuple[str, int]:
    """`os.environ/NAME` -> `keychain/NAME` on the key fields of `names`. Returns (text, lines changed)."""
    plan = {n: f"{KEYCHAIN_PREFIX}{v[len(ENV_PREFIX):]}" for n, (k, v) in _value_lines(text).items()
            if v.startswith(ENV_PREFIX) and v[len(ENV_PREFIX):] in names and _SECRET_FIELD.search(k)}
    return rewrite_values(text, plan), len(plan)


def _value_lines(text: str) -> dict[int, tuple[str, str]]:
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        parsed = _line_value(line)
        if parsed is not None:
            out[number] = (parsed[0], parsed[1])
    return out


@dataclass
class _Move:
    """One key to put in the keychain and the config lines that will refer to it."""

    name: str
    value: str
    lines: list[int]
    source: str  # "os.environ/NAME" or "a literal key"


def run_import_env(args: argparse.Namespace, *, out: TextIO | None = None, environ: Any = None) -> int:
    """Move `os.environ/NAME` keys (and keys written literally as `api_key:` values) into the keychain,
    and make the config refer to them as `keychain/NAME`."""
    out = out or sys.stdout
    environ = os.environ if environ is None else environ
    path = config_path(args)
    try:
        text = path.read_bytes().decode("utf-8")  # bytes: keep CRLF line endings as they are
    except FileNotFoundError:
        raise ConfigError("the config file does not exist.", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text.", path=str(path)) from None
    lines = _value_lines(text)
    moves: dict[str, _Move] = {}
    problems: list[str] = []
    skipped_fields: list[str] = []
    for number, (key, value) in lines.items():
        if not value.startswith(ENV_PREFIX):
            continue
        name = value[len(ENV_PREFIX):]
        if not _SECRET_FIELD.search(key):
            skipped_fields.append(f"{key} (line {number})")
        elif not (environ.get(name) or "").strip():
            problems.append(f"{name}: not set in this shell; left as os.environ/{name} (line {number})")
        else:
            moves.setdefault(name, _Move(name, environ[name].strip(), [], f"os.environ/{name}")).lines.append(number)
    _plan_literals(path, lines, moves, problems)
    if not moves and not problems:
        print("The config has no `api_key: os.environ/NAME` references or literal keys; nothing to import.",
              file=out)
        return 0
    store = _store()
    plan: dict[int, str] = {}
    swaps: dict[str, str] = {}
    for move in sorted(moves.values(), key=lambda m: m.name):
        where = f"line{'s' if len(move.lines) > 1 else ''} {', '.join(map(str, move.lines))}"
        existing = store.find(move.name)
        if existing is not None and existing != move.value and not args.overwrite:
            problems.append(f"{move.name}: the keychain already holds a different value; left unchanged "
                            f"(use --overwrite to replace it)")
            continue
        if not args.dry_run and existing != move.value:
            store.set(move.name, move.value)
        for number in move.lines:
            plan[number] = KEYCHAIN_PREFIX + move.name
        swaps[move.source if move.source.startswith(ENV_PREFIX) else move.value] = KEYCHAIN_PREFIX + move.name
        verb = "would move" if args.dry_run else "moved"
        print(f"  {move.name}: {verb} into the keychain from {move.source} ({where})", file=out)
    for problem in problems:
        print(f"  {problem}", file=out)
    new_text = rewrite_values(text, plan)
    if plan and not args.dry_run:
        _check_same_structure(text, new_text, swaps)
        _atomic_write(path, new_text)
    verb = "Would rewrite" if args.dry_run else "Rewrote"
    print(f"{verb} {len(plan)} line{'s' if len(plan) != 1 else ''} of {path.name} to keychain/ references.",
          file=out)
    if skipped_fields:
        print(f"Left alone (not key fields): {', '.join(skipped_fields)}", file=out)
    if plan and not args.dry_run:
        env_names = sorted(m.name for m in moves.values() if m.source.startswith(ENV_PREFIX) and m.lines[0] in plan)
        if env_names:
            print("The keys now live in the keychain; you can remove these variables from your shell profile: "
                  + ", ".join(env_names), file=out)
    return 1 if problems and not plan else 0


def _plan_literals(path: Path, lines: dict[int, tuple[str, str]], moves: dict[str, _Move],
                   problems: list[str]) -> None:
    """Add a move for each deployment whose `api_key:` is written literally in the file."""
    if not any(k == "api_key" and v and not v.startswith((ENV_PREFIX, KEYCHAIN_PREFIX)) for k, v in lines.values()):
        return
    try:
        from app.config import load_config

        deployments = sorted(load_config(path).deployments, key=lambda d: d.line or 0)
    except (TiergateError, ImportError) as exc:
        problems.append(f"literal keys left in the file: the config does not load ({getattr(exc, 'title', '')})")
        return
    by_value: dict[str, _Move] = {m.value: m for m in moves.values()}
    for number, (key, value) in sorted(lines.items()):
        if key != "api_key" or not value or value.startswith((ENV_PREFIX, KEYCHAIN_PREFIX)):
            continue
        owner = [d for d in deployments if (d.line or 0) <= number and d.api_key_ref == value]
        if not owner:
            continue  # an api_key outside model_list (or in an included file): not ours to move
        if value in by_value:
            by_value[value].lines.append(number)
            continue
        d = owner[-1]
        base = re.sub(r"[^A-Za-z0-9_]", "_", f"{d.tier}_{d.provider}_API_KEY").upper()
        name, n = base, 1
        while name in moves:
            n += 1
            name = f"{base}_{n}"
        moves[name] = by_value[value] = _Move(name, value, [number], f"a literal key of {d.id}")


def _check_same_structure(old: str, new: str, swaps: dict[str, str]) -> None:
    """The rewritten YAML must load to the old document with exactly the planned values swapped on key
    fields (guards against a line-based edit changing anything else)."""
    import yaml

    def swap(node: Any, field: str = "") -> Any:
        if isinstance(node, dict):
            return {k: swap(v, str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        if isinstance(node, str) and node in swaps and _SECRET_FIELD.search(field):
            return swaps[node]
        return node

    try:
        same = swap(yaml.safe_load(old)) == yaml.safe_load(new)
    except yaml.YAMLError:
        same = False
    if not same:
        raise ConfigError("could not rewrite the key references without changing other parts of the file; "
                          "the file was left unchanged. Edit them to keychain/NAME by hand.")


def _atomic_write(path: Path, text: str) -> None:
    """The config file rewritten in place, keeping its permission bits."""
    atomic_write(path, text.encode("utf-8"), mode=path.stat().st_mode & 0o777)
