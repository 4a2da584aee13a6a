"""`tiergate usage`: table, JSON and CSV from the ledger database, read-only."""

from __future__ import annotations

import argparse
import csv
import io
import time

import orjson

from app.cli import usage as usage_cli
from app.ledger.store import open_db, row_of, write_batch
from app.usage import UsageRecord


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tiergate")
    usage_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["usage", *argv])


def seed(path) -> None:
    conn = open_db(path)
    now = time.time()
    recs = [
        UsageRecord(request_id="1", ts=now, agent="aider", tier="orchestrator", requested_model="o",
                    deployment="orch", provider="anthropic", model="claude-haiku-4-5", dialect_in="anthropic",
                    status="ok", input_tokens=2_000, output_tokens=1_000, cache_read_tokens=90_000,
                    cache_write_tokens=10_000, cost=0.0285, latency_ms=900),
        UsageRecord(request_id="2", ts=now, agent="codex", tier="helper", requested_model="h", deployment="local",
                    provider="ollama", model="gemma3:4b", dialect_in="openai_chat", status="ok", input_tokens=1_500,
                    output_tokens=300, cost=0.0, saved=0.003, latency_ms=400),
        UsageRecord(request_id="3", ts=now, agent="codex", tier="coder", requested_model="c", deployment="x",
                    provider="openai", model="mystery", dialect_in="openai_chat", status="ok", input_tokens=10,
                    cost=None, price_known=False, latency_ms=100),
    ]
    write_batch(conn, [row_of(r) for r in recs])
    conn.close()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = usage_cli.run(parse(*argv), out)
    return code, out.getvalue()


def test_table(tmp_path):
    db = tmp_path / "usage.sqlite3"
    seed(db)
    code, text = run("--db", str(db))
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "Usage today, by tier:"
    assert lines[1].split()[:3] == ["TIER", "REQUESTS", "INPUT"]
    assert lines[2].split()[:2] == ["orchestrator", "1"] and "0.0285" in lines[2]
    assert lines[-2].split()[0] == "total" and "0.0285" in lines[-2] and "0.0030" in lines[-2]
    assert "1 request(s) used a model with no known price" in lines[-1]


def test_json_by_agent(tmp_path):
    db = tmp_path / "usage.sqlite3"
    seed(db)
    code, text = run("--db", str(db), "--by", "agent", "--period", "month", "--json")
    doc = orjson.loads(text)
    assert code == 0 and (doc["period"], doc["by"]) == ("month", "agent")
    rows = {r["key"]: r for r in doc["rows"]}
    assert rows["aider"]["cost"] == 0.0285 and rows["aider"]["cache_read_tokens"] == 90_000
    assert rows["codex"]["requests"] == 2 and rows["codex"]["unknown_price"] == 1 and rows["codex"]["saved"] == 0.003
    assert rows["codex"]["p50_latency_ms"] == 250
    assert doc["total"]["requests"] == 3


def test_csv_by_model(tmp_path):
    db = tmp_path / "usage.sqlite3"
    seed(db)
    code, text = run("--db", str(db), "--by", "model", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and [r["key"] for r in rows] == ["claude-haiku-4-5", "gemma3:4b", "mystery"]
    assert rows[0]["input_tokens"] == "2000" and rows[0]["cost"] == "0.0285"


def test_no_database_yet(tmp_path):
    code, text = run("--db", str(tmp_path / "none.sqlite3"))
    assert (code, text) == (0, "No requests recorded today.\n")
    assert not (tmp_path / "none.sqlite3").exists()


def test_default_path_is_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path))
    seed(tmp_path / "usage.sqlite3")
    code, text = run("--json")
    assert code == 0 and orjson.loads(text)["total"]["requests"] == 3
