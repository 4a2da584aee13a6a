"""kill -9 under load: the database opens intact and holds every record up to the last flush."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import asyncio, sys, time
    from app.ledger.store import Ledger
    from app.usage import UsageRecord

    async def main(path):
        led = Ledger(path, flush_interval=0.2)
        await led.start()
        n = reported = 0
        while True:
            for _ in range(200):  # ~20k records/s
                led.record(UsageRecord(request_id=f"r{n}", ts=time.time(), agent="load", tier="coder",
                                       requested_model="coder", deployment="d", provider="openai", model="gpt-5",
                                       dialect_in="openai_chat", status="ok", input_tokens=n, cost=0.001,
                                       fallback_path=["x", "y"]))
                n += 1
            if led.flushed_total != reported:
                reported = led.flushed_total
                print(reported, flush=True)
            await asyncio.sleep(0.01)

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_under_load_leaves_an_intact_database(tmp_path):
    db = tmp_path / "usage.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, cwd=REPO, env=env,
                            text=True)
    reports: list[int] = []
    try:
        assert proc.stdout is not None
        while len(reports) < 5:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            reports.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = [int(r[0][1:]) for r in conn.execute("SELECT request_id FROM usage ORDER BY id")]
    # Everything reported as flushed is there, in order, with no hole (batches are all-or-nothing).
    assert len(ids) >= reports[-1] > 0
    assert ids == list(range(len(ids)))
    assert conn.execute("SELECT SUM(input_tokens) FROM usage").fetchone()[0] == sum(range(len(ids)))
    conn.close()

    # And the ledger opens it again and carries on.
    import asyncio

    from app.ledger.store import Ledger

    async def reopen() -> int:
        led = Ledger(db)
        await led.start()
        rows = await led.summary("day", "agent")
        await led.close()
        return rows[0].requests

    assert asyncio.run(reopen()) == len(ids)
