"""The `tiergate` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands: each has `register(subparsers)`.
SUBCOMMAND_MODULES = ("app.cli.serve", "app.cli.keys", "app.cli.agents", "app.cli.models", "app.cli.usage",
                      "app.cli.privacy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiergate", description="One local endpoint for every AI agent.")
    parser.add_argument("--config", help="config file (default: the user config dir's config.yaml)")
    parser.add_argument("--version", action="version", version=f"tiergate {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["serve", *(argv or sys.argv[1:])])
    from app.errors import TiergateError

    try:
        return int(args.func(args) or 0)
    except TiergateError as e:
        print(f"{e.title}: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _version() -> str:
    from app import __version__

    return __version__
