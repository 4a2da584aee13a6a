"""The usage ledger: one SQLite row per request, written in batches off the request path.

`Ledger.record(rec)` only appends to an in-memory queue, updates today's live counters and emits
`app.events.UsageRecorded`; it never touches the disk. A background task hands the queue to one dedicated
worker thread (which owns the only write connection) every `flush_interval` seconds (0.5 s by default),
or sooner when a batch fills up; each batch is one transaction.

Durability: the database is in WAL mode with synchronous=NORMAL. A committed batch survives the process
being killed (kill -9 included: the WAL is in the OS's hands once the commit returns), and SQLite's journal
guarantees the file is never left half-written. What a kill loses is what was still queued in memory: at
most the last `flush_interval` of records. `await close()` writes everything still queued. (A power cut may
also lose the last committed batches; synchronous=FULL would cost an fsync per batch for that.)

The schema follows `app.usage.UsageRecord`: one column per field (lists as JSON text). A new field added to
UsageRecord becomes a new column on the next start (ALTER TABLE ADD COLUMN); `schema_version` records the
layout for migrations that need more than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import operator
import sqlite3
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson

from app.events import EventBus, UsageRecorded
from app.ledger.aggregates import LiveCounters, UsageRow, spend_rows, usage_summary
from app.usage import UsageRecord

log = logging.getLogger(__name__)

DB_FILENAME = "usage.sqlite3"
SCHEMA_VERSION = 1
T = TypeVar("T")

_FIELDS = dataclasses.fields(UsageRecord)
COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
_SQL_TYPES = {
    "str": "TEXT NOT NULL DEFAULT ''",
    "int": "INTEGER NOT NULL DEFAULT 0",
    "float": "REAL NOT NULL DEFAULT 0",
    "float | None": "REAL",
    "bool": "INTEGER NOT NULL DEFAULT 0",
    "list[str]": "TEXT NOT NULL DEFAULT '[]'",
}
_JSON_COLUMNS = frozenset(f.name for f in _FIELDS if str(f.type).startswith("list"))
_BOOL_COLUMNS = frozenset(f.name for f in _FIELDS if str(f.type) == "bool")


def _column_sql(f: dataclasses.Field[Any]) -> str:
    return f"{f.name} {_SQL_TYPES.get(str(f.type), '')}".strip()


_INDICES = (
    "CREATE INDEX IF NOT EXISTS usage_ts ON usage(ts)",
    "CREATE INDEX IF NOT EXISTS usage_agent_ts ON usage(agent, ts)",
    "CREATE INDEX IF NOT EXISTS usage_tier_ts ON usage(tier, ts)",
)


def default_db_path() -> Path:
    """`<user data dir>/usage.sqlite3` (app.paths when present, else platformdirs' data dir for "tiergate")."""
    try:
        from app.paths import data_dir  # type: ignore[import-not-found,unused-ignore]

        return Path(data_dir()) / DB_FILENAME
    except ImportError:
        import platformdirs

        return Path(platformdirs.user_data_dir("tiergate", appauthor=False)) / DB_FILENAME


_VALUES_OF = operator.attrgetter(*COLUMNS)
_JSON_INDEX = tuple(i for i, name in enumerate(COLUMNS) if name in _JSON_COLUMNS)
_EMPTY_JSON_LIST = "[]"


def row_of(rec: UsageRecord) -> tuple[Any, ...]:
    """The record as INSERT parameters, in `COLUMNS` order (lists as JSON text; bools go in as 0/1)."""
    row = _VALUES_OF(rec)
    if not _JSON_INDEX:
        return row
    out = list(row)
    for i in _JSON_INDEX:
        value = out[i]
        out[i] = orjson.dumps(value).decode() if value else _EMPTY_JSON_LIST
    return tuple(out)


def record_of(row: sqlite3.Row | tuple[Any, ...], columns: tuple[str, ...] = COLUMNS) -> UsageRecord:
    values = dict(zip(columns, row))
    for name in _JSON_COLUMNS:
        if name in values:
            values[name] = orjson.loads(values[name] or "[]")
    for name in _BOOL_COLUMNS:
        if name in values:
            values[name] = bool(values[name])
    return UsageRecord(**{k: v for k, v in values.items() if k in COLUMNS})


# ------------------------------------------------------------------------------ blocking DB helpers
def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating or migrating) the ledger database for writing. Blocking."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        if row[0] is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            log.warning("usage database %s has schema %s, newer than this Tiergate (%s)", path.name, row[0],
                        SCHEMA_VERSION)
        cols = ", ".join(_column_sql(f) for f in _FIELDS)
        conn.execute(f"CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY, {cols})")
        present = {r[1] for r in conn.execute("PRAGMA table_info(usage)")}
        for f in _FIELDS:
            if f.name not in present:
                conn.execute(f"ALTER TABLE usage ADD COLUMN {_column_sql(f)}")
        for sql in _INDICES:
            conn.execute(sql)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (for `tiergate usage` while the server runs). Blocking."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    return conn


_ROW_PLACEHOLDERS = f"({', '.join('?' * len(COLUMNS))})"


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES " + ", ".join([_ROW_PLACEHOLDERS] * rows)


def write_batch(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows` (from `row_of`) in one transaction. Blocking.

    Rows go in as multi-row INSERTs (up to 128 rows per statement, then powers of two: a handful of
    statements that SQLite's statement cache keeps compiled). The sqlite3 module lets go of the GIL
    around every statement step; one step per row (executemany) meant a GIL hand-off with the event loop
    thread per request, which cost the proxy ~35 µs of CPU per request under load; one per 128 rows
    does not."""
    per_statement = 128
    while per_statement > 1 and per_statement * len(COLUMNS) > conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
        per_statement //= 2  # an SQLite built with a low parameter limit (999 before 3.32)
    conn.execute("BEGIN")
    try:
        i, total = 0, len(rows)
        while i < total:
            n = min(per_statement, 1 << ((total - i).bit_length() - 1))
            params = [value for row in rows[i:i + n] for value in row]
            conn.execute(_insert_sql(n), params)
            i += n
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def write_records(conn: sqlite3.Connection, records: list[UsageRecord]) -> None:
    """`write_batch` of the records' rows (built here, in the writer thread, not on the event loop)."""
    write_batch(conn, [row_of(r) for r in records])


def read_records(conn: sqlite3.Connection, since: float = 0.0, until: float = float("inf")) -> list[UsageRecord]:
    """Records with since <= ts < until, oldest first. Blocking."""
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM usage WHERE ts >= ? AND ts < ? ORDER BY id",
                       (since, until if until != float("inf") else 1e300))
    return [record_of(r) for r in cur]


# ------------------------------------------------------------------------------------------ ledger
class Ledger:
    """Batched, crash-safe usage store. Use from the event loop thread:

        ledger = Ledger(path, bus); await ledger.start(); ledger.record(rec); ...; await ledger.close()
    """

    def __init__(self, db_path: str | Path, bus: EventBus | None = None, *, flush_interval: float = 0.5,
                 batch_size: int = 1000, max_pending: int = 200_000) -> None:
        self.db_path = Path(db_path)
        self.bus = bus
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.live = LiveCounters()
        self.flushed_total = 0  # records committed since start
        self.dropped_total = 0  # records dropped because the queue overflowed while writes failed
        self._pending: deque[UsageRecord] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False

    # -------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the database (in the worker thread), seed today's live counters, start the flusher."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tiergate-ledger")
        self._conn = await self._run(open_db, self.db_path)
        rows = await self._run(usage_summary, self._conn, "day", "tier", with_latency=False)
        self.live.seed(rows)
        for rec in self._pending:  # recorded before start
            self.live.add(rec)
        self._task = asyncio.create_task(self._flush_loop(), name="tiergate-ledger-flush")

    async def close(self) -> None:
        """Write everything still queued and close the database."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None:
            try:
                await self.flush()
            finally:
                conn, self._conn = self._conn, None
                await self._run(conn.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ----------------------------------------------------------------------------------- record
    def record(self, rec: UsageRecord) -> None:
        """Queue one record and announce it. Never blocks, never raises for a bad subscriber."""
        if self._closed:
            log.warning("usage record %s arrived after the ledger closed; not stored", rec.request_id)
            return
        self._pending.append(rec)
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped_total += 1
            if self.dropped_total in (1, 1000) or self.dropped_total % 100_000 == 0:
                log.error("usage ledger cannot write; %d records dropped so far", self.dropped_total)
        if self._conn is not None:
            self.live.add(rec)
        if len(self._pending) >= self.batch_size:
            self._wake.set()
        if self.bus is not None:
            self.bus.emit(UsageRecorded(record=rec))

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is queued now; returns how many records were committed."""
        async with self._lock:
            if self._conn is None or not self._pending:
                return 0
            batch = list(self._pending)
            self._pending.clear()
            try:
                await self._run(write_records, self._conn, batch)
            except sqlite3.Error as e:
                # Keep them for the next try (oldest first), bounded by max_pending.
                self._pending.extendleft(reversed(batch[-self.max_pending:]))
                log.warning("usage ledger write failed (%s); %d records kept for retry", type(e).__name__,
                            len(self._pending))
                return 0
            self.flushed_total += len(batch)
            return len(batch)

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the flusher die
                log.exception("usage ledger flush failed")

    # ---------------------------------------------------------------------------------- queries
    async def summary(self, period: str, by: str, *, now: float | None = None) -> list[UsageRow]:
        """Totals per `by` for the current `period` (queued records included)."""
        await self.flush()
        return await self._run(usage_summary, self._require_conn(), period, by, now=now)

    async def spend_rows(self, since: float) -> list[tuple[float, str, str, float]]:
        """(ts, agent, tier, cost) of priced requests since `since` (queued records included)."""
        await self.flush()
        return await self._run(spend_rows, self._require_conn(), since)

    async def records(self, since: float = 0.0, until: float = float("inf")) -> list[UsageRecord]:
        await self.flush()
        return await self._run(read_records, self._require_conn(), since, until)

    # ---------------------------------------------------------------------------------- helpers
    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("ledger not started")
        return self._conn

    async def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        if self._executor is None:
            raise RuntimeError("ledger not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kw))
