"""The result store (SPEC §5): every result envelope in SQLite (WAL), bounded by age and row count.

One process writes (`ResultStore`, in the outputs process), any number read (`StoreReader`, e.g. the
control service), each through its own connection. Rows are paged by the store's own `id`, which
is unique forever; a result's `result_id` restarts at 1 on every `lens run`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from lens.config.outputs import StoreOutput

log = logging.getLogger("lens.store")

SCHEMA_VERSION = 1
MAX_PENDING_BATCHES = 100  # rows kept through failed writes: this many batches, then the oldest are dropped
QUERY_LIMIT = 1000
RETRY_MIN_S = 0.5  # first pause after a failed write before due() says "write" again; doubles up to:
RETRY_MAX_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id INTEGER NOT NULL,
    camera TEXT NOT NULL,
    pass INTEGER NOT NULL,
    error_code TEXT,
    mode TEXT,
    captured_at REAL,
    finished_at REAL NOT NULL,
    inspection_version INTEGER,
    envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_finished_at ON results(finished_at);
CREATE INDEX IF NOT EXISTS results_result_id ON results(result_id);
CREATE INDEX IF NOT EXISTS results_camera_id ON results(camera, id);
CREATE INDEX IF NOT EXISTS results_failed_id ON results(id) WHERE pass = 0;
"""
_INSERT = (
    "INSERT INTO results (result_id, camera, pass, error_code, mode, captured_at, finished_at,"
    " inspection_version, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
Row = tuple[int, str, int, str | None, str | None, float | None, float, int | None, str]


class StoreError(Exception):
    """The store file cannot be opened or is not a lens result store."""


def _number(env: dict[str, Any], key: str) -> float:
    v = env.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key} must be a number, got {v!r}")
    return float(v)


def envelope_row(env: dict[str, Any]) -> Row:
    """The `results` row of a result envelope; ValueError naming the field that is wrong."""
    if not isinstance(env, dict):
        raise ValueError(f"a result envelope is a dict, got {type(env).__name__}")
    result_id, camera, passed = env.get("result_id"), env.get("camera"), env.get("pass")
    if isinstance(result_id, bool) or not isinstance(result_id, int):
        raise ValueError(f"result_id must be an integer, got {result_id!r}")
    if not isinstance(camera, str) or not camera:
        raise ValueError(f"camera must be a non-empty string, got {camera!r}")
    if not isinstance(passed, bool):
        raise ValueError(f"pass must be true or false, got {passed!r}")
    error = env.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    mode, version = env.get("mode"), env.get("inspection_version")
    finished_at = _number(env, "finished_at")
    captured_at = None if env.get("captured_at") is None else _number(env, "captured_at")
    try:
        text = orjson.dumps(env, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as e:
        raise ValueError(f"envelope is not JSON-serializable: {e}") from None
    return (
        result_id,
        camera,
        int(passed),
        str(code) if code is not None else None,
        str(mode) if mode is not None else None,
        captured_at,
        finished_at,
        version if isinstance(version, int) and not isinstance(version, bool) else None,
        text,
    )


class ResultStore:
    """The one writer of a result store: `add` buffers, `flush` writes a batch per transaction.

    Not thread-safe: one thread (the outputs loop) calls every method. No method raises on a failed
    write; failures are counted in `stats()` and the rows stay pending for the next `flush`.
    """

    def __init__(self, cfg: StoreOutput, busy_timeout_ms: int = 2000) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._pending: deque[Row] = deque()
        self._max_pending = cfg.batch_rows * MAX_PENDING_BATCHES
        self._first_at = 0.0  # monotonic time the oldest pending row was added
        self._retry_at = 0.0  # after a failed write, due() waits until then
        self._retry_s = RETRY_MIN_S
        self._failing = False
        self._dropping = False
        self._closed = False
        self.written = self.pruned = self.write_errors = self.dropped = self.invalid = 0
        self.last_error: str | None = None
        self._conn = self._open(busy_timeout_ms)
        self.rows = int(self._conn.execute("SELECT count(*) FROM results").fetchone()[0])

    def _open(self, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"result store {self.path}: cannot open: {e}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"result store {self.path}: WAL mode refused (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"result store {self.path}: schema version {version} is newer than this lens "
                    f"({SCHEMA_VERSION}); use a newer lens or another path"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"result store {self.path}: {e}") from None
        except StoreError:
            conn.close()
            raise
        return conn

    # --- writing ---------------------------------------------------------------------------------

    def add(self, env: dict[str, Any]) -> None:
        """Buffer one result envelope; a malformed one is counted as `invalid` and logged."""
        if self._closed:
            self.dropped += 1
            log.error("result store %s is closed: result dropped", self.path)
            return
        try:
            row = envelope_row(env)
        except ValueError as e:
            self.invalid += 1
            log.warning("result store: result not stored: %s", e)
            return
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(row)
        if len(self._pending) > self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "result store %s: %d results pending, the oldest are dropped until a write succeeds",
                    self.path,
                    self._max_pending,
                )

    def due(self) -> bool:
        """True when a flush should run: a full batch is pending, or the oldest row waited batch_ms
        (after a failed write, not before the retry delay has passed)."""
        if not self._pending:
            return False
        now = time.monotonic()
        if self._failing and now < self._retry_at:
            return False
        return len(self._pending) >= self.cfg.batch_rows or now - self._first_at >= self.cfg.batch_ms / 1000

    def flush(self) -> int:
        """Write every pending row, `batch_rows` per transaction; return the rows written.

        A failed transaction is rolled back, counted in `write_errors`, and its rows (and those after
        it) stay pending."""
        if self._closed:
            return 0
        done = 0
        while self._pending:
            batch = [self._pending[i] for i in range(min(self.cfg.batch_rows, len(self._pending)))]
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(_INSERT, batch)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.Error as e:
                self._failed("write", e)
                break
            for _ in batch:
                self._pending.popleft()
            done += len(batch)
        self.written += done
        self.rows += done
        if done and not self._pending:
            self._recovered()
        if self._pending and done:
            self._first_at = time.monotonic()
        return done

    def prune(self, now: float | None = None) -> int:
        """Delete results finished more than retention_days before `now` (default: time.time()), then
        the oldest beyond max_rows; return the rows deleted (0 when the delete failed)."""
        if self._closed:
            return 0
        now = time.time() if now is None else now
        deleted = 0
        try:
            if self.cfg.retention_days > 0:
                cutoff = now - self.cfg.retention_days * 86400.0
                deleted += self._conn.execute("DELETE FROM results WHERE finished_at < ?", (cutoff,)).rowcount
            if self.cfg.max_rows > 0:
                deleted += self._conn.execute(
                    "DELETE FROM results WHERE id <= "
                    "(SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (self.cfg.max_rows,),
                ).rowcount
        except sqlite3.Error as e:
            self._failed("prune", e)
        self.pruned += deleted
        self.rows = max(0, self.rows - deleted)
        return deleted

    def close(self) -> None:
        """Flush what is pending, then close; rows that still cannot be written are counted as dropped."""
        if self._closed:
            return
        self.flush()
        if self._pending:
            self.dropped += len(self._pending)
            log.error("result store %s closed with %d results unwritten", self.path, len(self._pending))
            self._pending.clear()
        try:
            self._conn.execute("PRAGMA optimize")
        except sqlite3.Error as e:
            log.warning("result store %s: optimize on close failed: %s", self.path, e)
        self._conn.close()
        self._closed = True

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters (no query: `rows` is counted at open and kept up to date)."""
        return {
            "written": self.written,
            "pending": len(self._pending),
            "pruned": self.pruned,
            "write_errors": self.write_errors,
            "dropped": self.dropped,
            "invalid": self.invalid,
            "last_error": self.last_error,
            "path": str(self.path),
            "rows": self.rows,
        }

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as e:  # the transaction is gone with the failure; nothing else to undo
            log.debug("result store: rollback after a failed write: %s", e)

    def _failed(self, what: str, e: sqlite3.Error) -> None:
        self.write_errors += 1
        self.last_error = f"{what}: {e}"
        if not self._failing:
            log.error("result store %s: %s failed (%s); rows kept pending and retried", self.path, what, e)
        else:
            self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        self._failing = True
        self._retry_at = time.monotonic() + self._retry_s

    def _recovered(self) -> None:
        if self._failing or self._dropping:
            log.warning(
                "result store %s: writing again (%d write errors, %d dropped so far)",
                self.path,
                self.write_errors,
                self.dropped,
            )
        self._failing = self._dropping = False
        self._retry_s = RETRY_MIN_S


class StoreReader:
    """Read-only access to a result store, from any process, while its writer runs.

    A store file that does not exist yet (or has no schema yet) reads as empty. Safe to share
    between threads (calls are serialized)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 2000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.path.is_file():
                return None
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            self._conn = conn
        return self._conn

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                conn = self._connection()
                return [] if conn is None else conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):  # created, schema not written yet
                    return []
                raise StoreError(f"result store {self.path}: {e}") from None
            except sqlite3.DatabaseError as e:
                raise StoreError(f"result store {self.path}: {e}") from None

    def query(
        self,
        since_id: int = 0,
        limit: int = 100,
        passed: bool | None = None,
        camera: str | None = None,
        *,
        since_ts: float | None = None,
        until_ts: float | None = None,
    ) -> list[dict[str, Any]]:
        """Results with store id > since_id, oldest first, at most `limit` (clamped to 1..1000), each
        `{"id": <store id>, "result": <envelope>}`. Filters: pass/fail, camera, and finished_at in
        [since_ts, until_ts)."""
        where, args = ["id > ?"], [max(0, int(since_id))]
        if passed is True:
            where.append("pass = 1")
        elif passed is False:
            where.append("pass = 0")  # a literal, so the partial index of failures is used
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        if since_ts is not None:
            where.append("finished_at >= ?")
            args.append(float(since_ts))
        if until_ts is not None:
            where.append("finished_at < ?")
            args.append(float(until_ts))
        args.append(min(QUERY_LIMIT, max(1, int(limit))))
        sql = f"SELECT id, envelope FROM results WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        return [{"id": i, "result": orjson.loads(text)} for i, text in self._rows(sql, tuple(args))]

    def latest(self, camera: str | None = None) -> dict[str, Any] | None:
        """The newest result (of `camera`, when given) as `{"id", "result"}`, or None."""
        if camera is None:
            rows = self._rows("SELECT id, envelope FROM results ORDER BY id DESC LIMIT 1", ())
        else:
            rows = self._rows(
                "SELECT id, envelope FROM results WHERE camera = ? ORDER BY id DESC LIMIT 1", (camera,)
            )
        return {"id": rows[0][0], "result": orjson.loads(rows[0][1])} if rows else None

    def count(self) -> int:
        rows = self._rows("SELECT count(*) FROM results", ())
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
