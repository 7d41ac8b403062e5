"""The inspection log book: inspections kept for the orchestrator until `upload.sync` sends them
(`POST /api/logs/sync`, SPEC §4b).

The old machine appended each logged inspection to a RAM deque, a worker thread wrote them as
`.alog` files in a `logs/` folder, and a sync POSTed every file to `{django_url}/api/logs/upload`
and deleted the ones answered 2xx. Here the files are rows of one table (`legacy_logs`) of the
control service's SQLite file (WAL), written in batches from a bounded RAM buffer; the `.alog`
bytes (`alog`) are built when a row is uploaded. What the orchestrator receives is the same.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lens.control.legacy.alog import LogEntry, LoggingConfig, alog_name, meta_json, pack_alog

log = logging.getLogger("lens.control")

BUFFER_MIN = 1000  # the RAM buffer holds max(BUFFER_MIN, 10 * batch_size) entries ...
BUFFER_MAX_BYTES = 64 * 1024 * 1024  # ... and at most this many JPEG bytes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS legacy_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    approved INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    meta BLOB NOT NULL,
    jpeg BLOB NOT NULL,
    created_at REAL NOT NULL
)
"""
COUNTERS = (
    "offered",
    "written",
    "dropped_buffer_full",
    "dropped_max_logs_zero",
    "dropped_keep_first",
    "dropped_unencodable",
    "evicted",
    "cleared",
    "uploaded",
    "upload_failed",
    "db_errors",
)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (the connection is in autocommit mode): committed, or rolled back
    and the error raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


@dataclass
class _Pending:
    entry: LogEntry
    at: float  # monotonic time it was offered


class LogBook:
    """Inspections logged for the orchestrator, in table `legacy_logs` of the SQLite file `path`
    (created with its folder; WAL; its own connection; other tables of the file are left alone).
    One LogBook per file at a time.

    `offer()` (on the event loop) only appends to a bounded RAM buffer; `flush()` writes it in one
    transaction and applies `max_logs`. `flush()` and the queries are synchronous, for
    `asyncio.to_thread`: a lock guards the buffer and counters (held for microseconds, so `offer()`
    never waits for the disk) and a second one the connection. Counters count since open.
    """

    def __init__(
        self,
        path: str | Path,
        config: LoggingConfig | None = None,
        buffer_max: int | None = None,
        buffer_max_bytes: int = BUFFER_MAX_BYTES,
        busy_timeout_s: float = 2.0,
    ) -> None:
        if buffer_max is not None and buffer_max < 1:
            raise ValueError(f"buffer_max must be at least 1, got {buffer_max}")
        self.path = Path(path)
        self._config = config or LoggingConfig()
        self._fixed_buffer_max = buffer_max
        self._buffer_max_bytes = buffer_max_bytes
        self._buffer: deque[_Pending] = deque()
        self._buffer_bytes = 0
        self._counters = dict.fromkeys(COUNTERS, 0)
        self.last_error: str | None = None
        self._lock = threading.Lock()  # buffer, counters, config
        self._db_lock = threading.Lock()  # the connection; always taken before _lock, never after
        self._sync_lock: asyncio.Lock | None = None
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(_SCHEMA)
            self._count = int(self._db.execute("SELECT COUNT(*) FROM legacy_logs").fetchone()[0])
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise ValueError(f"inspection log book {self.path}: {e}") from None

    # -- configuration and intake -----------------------------------------------------------------

    @property
    def config(self) -> LoggingConfig:
        return self._config

    @property
    def buffer_max(self) -> int:
        if self._fixed_buffer_max is not None:
            return self._fixed_buffer_max
        return max(BUFFER_MIN, 10 * self._config.batch_size)

    def configure(self, config: LoggingConfig) -> None:
        """Use `config` from now on; a smaller `max_logs` under keep_last trims at the next flush."""
        with self._lock:
            self._config = config

    def wants(self, approved: bool) -> bool:
        """Whether an inspection with this outcome is to be logged (enabled and the policy
        matches): ask before building the entry."""
        cfg = self._config
        if not cfg.enabled:
            return False
        return cfg.policy == "ALL" or (cfg.policy == "APPROVED") == bool(approved)

    def offer(self, entry: LogEntry) -> bool:
        """Buffer `entry` for the next flush; False (counted `dropped_buffer_full`) if the buffer
        is full, i.e. flushes do not keep up. Never touches the disk."""
        now = time.monotonic()
        with self._lock:
            if (
                len(self._buffer) >= self.buffer_max
                or self._buffer_bytes + len(entry.jpeg) > self._buffer_max_bytes
            ):
                self._counters["dropped_buffer_full"] += 1
                return False
            self._buffer.append(_Pending(entry, now))
            self._buffer_bytes += len(entry.jpeg)
            self._counters["offered"] += 1
            return True

    @property
    def buffer_size(self) -> int:
        """Entries waiting in RAM (the old `logging_buffer_size`)."""
        return len(self._buffer)

    def flush_due(self) -> bool:
        """Whether `flush()` has work: `batch_size` entries waiting, the oldest waiting for
        `batch_ms`, or more than `max_logs` stored under keep_last (after `configure()`)."""
        cfg = self._config
        with self._lock:
            if self._buffer:
                if len(self._buffer) >= cfg.batch_size:
                    return True
                if (time.monotonic() - self._buffer[0].at) * 1000.0 >= cfg.batch_ms:
                    return True
        return cfg.mode == "keep_last" and 0 < cfg.max_logs < self._count

    # -- writing ------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the whole buffer in one transaction; returns the entries stored. `max_logs` 0
        drops them (`dropped_max_logs_zero`; stored logs stay, as on the old machine); keep_first
        refuses them once `max_logs` are stored (`dropped_keep_first`); keep_last stores them and
        deletes the oldest beyond `max_logs` (`evicted`). A database error keeps the batch buffered
        for the next flush (counted `db_errors`, logged, `last_error`), it is not raised."""
        with self._db_lock:
            with self._lock:
                cfg = self._config
                batch = list(self._buffer)
                self._buffer.clear()
                self._buffer_bytes = 0
            rows: list[tuple[Any, ...]] = []
            unencodable = 0
            now = time.time()
            for pending in batch:
                e = pending.entry
                try:
                    meta = meta_json(e.meta())
                except ValueError as err:
                    unencodable += 1
                    log.error("inspection log %s dropped: %s", e.id, err)
                    continue
                rows.append((e.id, e.timestamp, int(e.approved), e.width, e.height, meta, e.jpeg, now))
            counts = dict.fromkeys(COUNTERS, 0)
            counts["dropped_unencodable"] = unencodable
            if cfg.max_logs == 0:
                counts["dropped_max_logs_zero"] = len(rows)
                rows = []
            elif cfg.mode == "keep_first":
                room = max(0, cfg.max_logs - self._count)
                counts["dropped_keep_first"] = max(0, len(rows) - room)
                rows = rows[:room]
            else:
                counts["evicted"] = max(0, len(rows) - cfg.max_logs)  # evicted by this same batch
                rows = rows[counts["evicted"] :]
            trimming = cfg.mode == "keep_last" and cfg.max_logs > 0
            if rows or (trimming and self._count > cfg.max_logs):
                try:
                    count, evicted = self._write(rows, cfg.max_logs if trimming else None)
                except sqlite3.Error as err:
                    self._failed(f"writing {len(rows)} inspection logs: {err}", batch)
                    return 0
                self._count = count
                counts["evicted"] += evicted
            counts["written"] = len(rows)
            with self._lock:
                for name, n in counts.items():
                    self._counters[name] += n
            return len(rows)

    def _write(self, rows: list[tuple[Any, ...]], keep: int | None) -> tuple[int, int]:
        """Insert `rows` (an id already stored is ignored) and, with `keep`, delete the oldest
        beyond `keep`, in one transaction; returns (rows stored, rows deleted)."""
        db = self._db
        with _transaction(db):
            db.executemany(
                "INSERT OR IGNORE INTO legacy_logs (id, timestamp, approved, width, height, meta, jpeg, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            count = int(db.execute("SELECT COUNT(*) FROM legacy_logs").fetchone()[0])
            excess = max(0, count - keep) if keep is not None else 0
            if excess:
                db.execute(
                    "DELETE FROM legacy_logs WHERE seq IN (SELECT seq FROM legacy_logs ORDER BY seq LIMIT ?)",
                    (excess,),
                )
        return count - excess, excess

    def _failed(self, what: str, batch: list[_Pending]) -> None:
        """A write failed: put `batch` back in front of the buffer (beyond its bound: counted
        `dropped_buffer_full`, oldest first)."""
        log.error("%s (kept in RAM for the next flush)", what)
        with self._lock:
            self.last_error = what
            self._counters["db_errors"] += 1
            self._buffer.extendleft(reversed(batch))
            self._buffer_bytes += sum(len(p.entry.jpeg) for p in batch)
            while len(self._buffer) > self.buffer_max or self._buffer_bytes > self._buffer_max_bytes:
                self._buffer_bytes -= len(self._buffer.popleft().entry.jpeg)
                self._counters["dropped_buffer_full"] += 1

    # -- queries ------------------------------------------------------------------------------------

    def count(self) -> int:
        """Stored logs (the old `logs_count`), buffer excluded."""
        return self._count

    def oldest(self, limit: int = 100) -> list[LogEntry]:
        """Up to `limit` stored logs, oldest first."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT id, timestamp, approved, width, height, meta, jpeg FROM legacy_logs "
                "ORDER BY seq LIMIT ?",
                (max(0, limit),),
            ).fetchall()
        return [
            LogEntry(r[0], r[1], bool(r[2]), r[3], r[4], orjson.loads(r[5])["result"], r[6]) for r in rows
        ]

    def delete(self, ids: list[str]) -> int:
        """Delete stored logs by id; returns how many were there."""
        if not ids:
            return 0
        with self._db_lock:
            with _transaction(self._db):
                removed = self._db.executemany(
                    "DELETE FROM legacy_logs WHERE id = ?", [(i,) for i in ids]
                ).rowcount
            self._count -= removed
            return removed

    def clear(self) -> dict[str, int]:
        """Remove every log, stored and buffered (`clear_logs`): `{removed, errors, remaining}`,
        `removed` counting both; on a database error the stored logs stay (`errors` = how many)."""
        with self._db_lock:
            with self._lock:
                buffered = len(self._buffer)
                self._buffer.clear()
                self._buffer_bytes = 0
            try:
                removed = self._db.execute("DELETE FROM legacy_logs").rowcount
                errors = 0
            except sqlite3.Error as err:
                log.error("clearing the inspection logs failed: %s", err)
                removed = 0
                errors = self._count
                with self._lock:
                    self.last_error = f"clearing the inspection logs: {err}"
                    self._counters["db_errors"] += 1
            self._count -= removed
            with self._lock:
                self._counters["cleared"] += removed + buffered
            return {"removed": removed + buffered, "errors": errors, "remaining": self._count}

    def stats(self) -> dict[str, Any]:
        """count, buffer_size, buffer_max, last_error and the counters (since open)."""
        with self._lock:
            return {
                "count": self._count,
                "buffer_size": len(self._buffer),
                "buffer_max": self.buffer_max,
                **self._counters,
                "last_error": self.last_error,
            }

    def close(self) -> None:
        """Flush what is buffered, then close the connection (a second call does nothing)."""
        if self._closed:
            return
        self.flush()
        with self._db_lock:
            self._closed = True
            self._db.close()

    # -- for upload.sync() -----------------------------------------------------------------------------------

    def stored_seqs(self) -> list[int]:
        """The stored logs' sequence numbers, oldest first."""
        with self._db_lock:
            return [r[0] for r in self._db.execute("SELECT seq FROM legacy_logs ORDER BY seq")]

    def load_alog(self, seq: int) -> tuple[str, str, bytes] | None:
        """(id, file name, .alog bytes) of a stored log; None if it is gone (evicted, cleared)."""
        with self._db_lock:
            row = self._db.execute(
                "SELECT id, timestamp, meta, jpeg FROM legacy_logs WHERE seq = ?", (seq,)
            ).fetchone()
        if row is None:
            return None
        return row[0], alog_name(row[1], row[0]), pack_alog(row[2], row[3])

    def note_upload(self, uploaded: int, failed: int, error: str | None) -> None:
        """Count a sync's uploads (and keep its last error)."""
        with self._lock:
            self._counters["uploaded"] += uploaded
            self._counters["upload_failed"] += failed
            if error is not None:
                self.last_error = error

    def sync_lock(self) -> asyncio.Lock:
        """The lock that runs the syncs of this book one after the other (on the running loop)."""
        loop = asyncio.get_running_loop()
        if self._sync_lock is None or self._sync_loop is not loop:
            self._sync_lock, self._sync_loop = asyncio.Lock(), loop
        return self._sync_lock
