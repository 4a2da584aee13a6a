"""`tiergate agents`: one key per agent, so every request says who made it.

    tiergate agents add NAME [--replace]   create NAME's key and print it once (only its hash is kept)
    tiergate agents list                   agents, their status and their settings from the config
    tiergate agents revoke NAME            the key stops working at once, in a running server too
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any, TextIO

from app.errors import TiergateError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("agents", help="manage per-agent API keys", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    s = sub.add_parser("add", help="create an agent key (printed once)")
    s.add_argument("name", help="agent name, e.g. claude-code (appears in usage records)")
    s.add_argument("--replace", action="store_true", help="give an existing agent a new key (the old one stops)")
    s.set_defaults(func=run_add)
    s = sub.add_parser("list", help="list agents")
    s.set_defaults(func=run_list)
    s = sub.add_parser("revoke", help="revoke an agent's key")
    s.add_argument("name")
    s.set_defaults(func=run_revoke)


def registry_path(args: argparse.Namespace) -> Path:
    from app import paths
    from app.agents import default_agents_path

    data_dir = getattr(args, "data_dir", None)
    return default_agents_path(Path(data_dir) if data_dir else paths.data_dir())


def _registry(args: argparse.Namespace) -> Any:
    from app.agents import AgentRegistry

    return AgentRegistry(registry_path(args))


def run_add(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    key = _registry(args).add(args.name, replace=args.replace)
    print(key, file=out)
    print(f"Agent '{args.name}' {'has a new key' if args.replace else 'added'}. This key is shown only "
          f"once: give it to the agent as its API key (OPENAI_API_KEY / ANTHROPIC_API_KEY or "
          f"`Authorization: Bearer …`).", file=err)
    return 0


def run_list(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    records = _registry(args).list()
    policies, problem = _policies(args)
    if not records:
        print("No agents yet. Add one with: tiergate agents add NAME", file=out)
    else:
        rows = [("NAME", "STATUS", "CREATED", "SETTINGS")]
        for r in records:
            created = dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M") if r.created else "?"
            status = "active" if r.active else "revoked"
            rows.append((r.name, status, created, _describe(policies.get(r.name))))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}", file=out)
    unknown = sorted(set(policies) - {r.name for r in records})
    if unknown:
        print(f"\nConfigured but never added: {', '.join(unknown)} (tiergate agents add NAME)", file=out)
    if problem:
        print(f"\nNote: {problem}", file=out)
    return 0


def run_revoke(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    _registry(args).revoke(args.name)
    print(f"Revoked the key of agent '{args.name}'. Requests with it are refused from now on.", file=out)
    return 0


def _policies(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    """Per-agent settings from the config, or ({}, why not)."""
    from app.cli.keys import config_path

    path = config_path(args)
    if not path.exists():
        return {}, None
    try:
        from app.agents import parse_agent_policies
        from app.config import load_config

        return parse_agent_policies(load_config(path).section("agents")), None
    except (TiergateError, ImportError) as exc:
        return {}, f"agent settings not shown: {getattr(exc, 'title', 'Config error')}: {exc}"


def _describe(policy: Any) -> str:
    if policy is None:
        return "-"
    parts = []
    if policy.allowed_tiers is not None:
        parts.append("tiers: " + (", ".join(policy.allowed_tiers) or "none"))
    if policy.privacy:
        parts.append(f"privacy: {policy.privacy}")
    if policy.budget is not None:
        parts.append(f"budget: {policy.budget}")
    return "; ".join(parts) or "-"
