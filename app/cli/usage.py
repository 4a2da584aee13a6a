"""`tiergate usage`: what every tier, model, agent or deployment cost today, this week or this month.

Reads the ledger database directly through a read-only connection, so it works whether or not the server
runs (records still queued in a running server, at most the last half second, are not shown yet).

    tiergate usage [--period day|week|month] [--by tier|model|agent|deployment] [--json | --csv] [--db PATH]
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from app.ledger.aggregates import GROUP_BY, PERIODS, UsageRow, total_row, usage_summary
from app.ledger.store import default_db_path, open_readonly

_COLUMNS = (  # (header, attribute, format)
    ("REQUESTS", "requests", "{:,}"),
    ("INPUT", "input_tokens", "{:,}"),
    ("OUTPUT", "output_tokens", "{:,}"),
    ("CACHE READ", "cache_read_tokens", "{:,}"),
    ("CACHE WRITE", "cache_write_tokens", "{:,}"),
    ("COST $", "cost", "{:,.4f}"),
    ("SAVED $", "saved", "{:,.4f}"),
    ("UNPRICED", "unknown_price", "{:,}"),
    ("ERRORS", "errors", "{:,}"),
    ("HITS", "cache_hits", "{:,}"),
    ("P50 ms", "p50_latency_ms", "{:,.0f}"),
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("usage", help="show requests, tokens and cost per tier, model, agent or deployment",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--period", choices=PERIODS, default="day", help="calendar period in local time (default: day)")
    p.add_argument("--by", choices=GROUP_BY, default="tier", help="group rows by (default: tier)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (rows and total)")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--db", type=Path, default=None, help="ledger database (default: the user data directory)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    db = args.db or default_db_path()
    rows: list[UsageRow] = []
    if db.exists():
        try:
            conn = open_readonly(db)
            try:
                rows = usage_summary(conn, args.period, args.by)
            finally:
                conn.close()
        except sqlite3.Error as e:
            print(f"Usage unavailable: cannot read the usage database ({type(e).__name__}).", file=sys.stderr)
            return 1
    total = total_row(rows)
    if args.json:
        doc = {"period": args.period, "by": args.by, "rows": [r.to_dict() for r in rows], "total": total.to_dict()}
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.csv:
        names = list(UsageRow.__dataclass_fields__)
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for r in rows:
            w.writerow([_csv_value(getattr(r, n)) for n in names])
    else:
        out.write(render_table(rows, total, args.period, args.by))
    return 0


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def render_table(rows: list[UsageRow], total: UsageRow, period: str, by: str) -> str:
    title = {"day": "today", "week": "this week", "month": "this month"}[period]
    if not rows:
        return f"No requests recorded {title}.\n"
    header = [by.upper(), *(c[0] for c in _COLUMNS)]
    body = [[r.key, *(_fmt(getattr(r, attr), f) for _, attr, f in _COLUMNS)] for r in [*rows, total]]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = [f"Usage {title}, by {by}:"]
    for i, cells in enumerate([header, *body]):
        if i == len(body):  # before the total line
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths))))
    if total.unknown_price:
        lines.append(f"{total.unknown_price} request(s) used a model with no known price: their cost is not in "
                     "COST. Set input_cost_per_token / output_cost_per_token on the deployment to price them.")
    return "\n".join(lines) + "\n"


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
