"""The webhook spool: undelivered webhook messages on disk (SQLite), in put order per callback, bounded.

A message's envelope (`type`, `machine_id`, `session_id`, `seq`, `timestamp`, `payload`) is built and
serialized once, in `put()`; the stored body bytes are exactly what is sent, so its signature and its
delivery id stay the same across retries and restarts. `seq` counts per session and survives restarts.

The spool is bounded by message count and body bytes. When full, a coalescible message (a summary, a
heartbeat: only the latest matters) replaces the newest waiting message of its callback and type; if
there is still no room, or the new message is not coalescible, the oldest waiting coalescible message
is deleted; if there is none, the new message is refused and counted `dropped`. Nothing is deleted
without being counted (`coalesced`, `dropped`).

The file may be shared with other tables (the audit log) written through other connections: the spool
only touches its own tables (`outbox`, `outbox_seq`, `outbox_meta`, where its schema version lives)
and leaves `PRAGMA user_version` to the file's other owners. One `Spool` per file at a time.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("lens.webhooks")

SCHEMA_VERSION = 1
COUNTERS = ("delivered", "failed_attempts", "coalesced", "dropped", "dead")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    callback_url TEXT NOT NULL,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    coalescible INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (callback_url, dead, id);
CREATE INDEX IF NOT EXISTS outbox_newest ON outbox (callback_url, type, id)
    WHERE coalescible = 1 AND dead = 0;
CREATE INDEX IF NOT EXISTS outbox_oldest ON outbox (id) WHERE coalescible = 1 AND dead = 0;
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (id) WHERE dead = 1;
CREATE TABLE IF NOT EXISTS outbox_seq (
    session_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = "delivery_id, callback_url, session_id, type, seq, body, created_at, attempts, next_at, last_error"
_SESSIONS_KEPT = 1000  # seq counters of the most recent sessions kept; older ones are forgotten on open


@dataclass(frozen=True, slots=True)
class Message:
    """One spooled webhook: `body` is the exact JSON sent; `next_at` is wall-clock time (0: at once)."""

    delivery_id: str
    callback_url: str
    session_id: str
    type: str
    seq: int
    body: bytes
    created_at: float
    attempts: int
    next_at: float
    last_error: str | None


class _NotWaiting(Exception):
    """Raised inside a write transaction to roll it back: the message is not waiting."""


class Spool:
    """Undelivered webhook messages in the SQLite file `path` (created with its folder if missing).

    `dead_kept`: dead messages kept for inspection; `busy_timeout_s`: how long a write waits for
    another connection's (the audit log's) write to finish before failing.

    Thread-safe; `put()` is synchronous and fast (one small write transaction, no fsync in WAL mode
    with synchronous=NORMAL, so a committed message survives a killed process, not a power cut).
    """

    def __init__(
        self,
        path: str | Path,
        machine_id: str,
        max_messages: int,
        max_mb: float,
        dead_kept: int = 1000,
        busy_timeout_s: float = 2.0,
    ) -> None:
        if not machine_id:
            raise ValueError("machine_id is empty: the webhook envelope names the machine")
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if not max_mb > 0:
            raise ValueError(f"max_mb must be positive, got {max_mb}")
        if dead_kept < 0:
            raise ValueError(f"dead_kept must be >= 0, got {dead_kept}")
        self.path = Path(path)
        self.machine_id = machine_id
        self.max_messages = max_messages
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.dead_kept = dead_kept
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._lock = threading.Lock()
        self._inflight: set[str] = set()  # delivery ids handed out by peek(): never evicted
        self._seqs: dict[str, int] = {}
        self._per_callback: dict[str, int] = {}
        self._depth = 0
        self._bytes = 0
        self._dead_rows = 0
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._unsaved: set[str] = set()  # counters whose last increment a failed write could not save
        self.db_errors = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise ValueError(
                f"webhook spool {self.path}: {e} (move the file aside to start with an empty spool)"
            ) from None
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        with self._write():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM outbox_meta WHERE key = 'schema'").fetchone()
            if row is not None and row[0] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"webhook spool {self.path} has schema v{row[0]}, newer than this lens "
                    f"(v{SCHEMA_VERSION}): run the newer lens or move the file aside"
                )
            db.execute("INSERT OR REPLACE INTO outbox_meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute(
                "DELETE FROM outbox_seq WHERE session_id NOT IN "
                "(SELECT session_id FROM outbox_seq ORDER BY updated_at DESC LIMIT ?)",
                (_SESSIONS_KEPT,),
            )
        for key, value in db.execute("SELECT key, value FROM outbox_meta"):
            if key in self._counters:
                self._counters[key] = value
        for url, count, size in db.execute(
            "SELECT callback_url, COUNT(*), SUM(length(body)) FROM outbox WHERE dead = 0 "
            "GROUP BY callback_url"
        ):
            self._per_callback[url] = count
            self._depth += count
            self._bytes += size
        self._dead_rows = db.execute("SELECT COUNT(*) FROM outbox WHERE dead = 1").fetchone()[0]

    @contextmanager
    def _write(self, counts: dict[str, int] | None = None) -> Iterator[None]:
        """One write transaction; `counts` (counter increments) are saved in it and applied in memory
        once it commits."""
        counts = counts or {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            for name in {*counts, *self._unsaved}:
                self._db.execute(
                    "INSERT OR REPLACE INTO outbox_meta VALUES (?, ?)",
                    (name, self._counters[name] + counts.get(name, 0)),
                )
            self._db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        for name, delta in counts.items():
            self._counters[name] += delta
        self._unsaved.clear()

    def _count_unsaved(self, name: str) -> None:
        """A counter increment whose write failed: kept in memory, saved with the next transaction."""
        self._counters[name] += 1
        self._unsaved.add(name)

    def put(
        self, callback_url: str, session_id: str, type: str, payload: dict[str, Any], coalesce: bool = False
    ) -> str:
        """Spool one message for `callback_url`; returns its delivery id, or "" if it was refused (the
        spool is full of messages that cannot make room, or the disk failed: counted `dropped`).
        Raises ValueError for an empty url, session or type, or a payload orjson cannot serialize."""
        if not callback_url:
            raise ValueError(f"webhook {type!r}: callback_url is empty")
        if not session_id:
            raise ValueError(f"webhook {type!r}: session_id is empty")
        if not type:
            raise ValueError("webhook type is empty (inspection.summary, inspection.result, ...)")
        with self._lock:
            seq = self._next_seq(session_id)
            now = time.time()
            envelope = {
                "type": type,
                "machine_id": self.machine_id,
                "session_id": session_id,
                "seq": seq,
                "timestamp": now,
                "payload": payload,
            }
            try:
                body = orjson.dumps(envelope, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError as e:
                raise ValueError(f"webhook {type!r} payload cannot be serialized to JSON: {e}") from None
            if len(body) > self.max_bytes:
                return self._refuse(
                    type, f"its body ({len(body)} bytes) is larger than the spool ({self.max_bytes} bytes)"
                )
            delivery_id = uuid.uuid4().hex
            try:
                victims = self._make_room(callback_url, type, coalesce, len(body))
                if victims is None:
                    return self._refuse(
                        type,
                        f"the spool is full ({self._depth} messages, {self._bytes} bytes) "
                        "and holds no coalescible message to make room",
                    )
                with self._write({"coalesced": len(victims)} if victims else None):
                    if victims:
                        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(v[0],) for v in victims])
                    self._db.execute(
                        "INSERT INTO outbox (delivery_id, callback_url, session_id, type, seq, body, "
                        "coalescible, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (delivery_id, callback_url, session_id, type, seq, body, int(coalesce), now),
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO outbox_seq VALUES (?, ?, ?)", (session_id, seq, now)
                    )
            except sqlite3.Error as e:
                self.db_errors += 1
                return self._refuse(type, f"the spool could not be written: {e}")
            for _, url, size in victims:
                self._forget(url, size)
            self._seqs[session_id] = seq
            self._per_callback[callback_url] = self._per_callback.get(callback_url, 0) + 1
            self._depth += 1
            self._bytes += len(body)
            return delivery_id

    def _next_seq(self, session_id: str) -> int:
        last = self._seqs.get(session_id)
        if last is None:
            row = self._db.execute(
                "SELECT seq FROM outbox_seq WHERE session_id = ?", (session_id,)
            ).fetchone()
            last = row[0] if row else 0
        return last + 1

    def _make_room(
        self, callback_url: str, type: str, coalesce: bool, size: int
    ) -> list[tuple[int, str, int]] | None:
        """(row id, callback, body size) of the messages to delete so one of `size` bytes fits; None if
        it cannot fit."""
        victims: list[tuple[int, str, int]] = []
        count, total = self._depth + 1, self._bytes + size

        def full() -> bool:
            return count > self.max_messages or total > self.max_bytes

        if not full():
            return victims
        if coalesce:
            for row_id, delivery_id, length in self._db.execute(
                "SELECT id, delivery_id, length(body) FROM outbox WHERE callback_url = ? AND type = ? "
                "AND coalescible = 1 AND dead = 0 ORDER BY id DESC",
                (callback_url, type),
            ):
                if delivery_id not in self._inflight:
                    victims.append((row_id, callback_url, length))
                    count, total = count - 1, total - length
                    break
        if not full():
            return victims
        replaced = {v[0] for v in victims}
        for row_id, delivery_id, url, length in self._db.execute(
            "SELECT id, delivery_id, callback_url, length(body) FROM outbox "
            "WHERE coalescible = 1 AND dead = 0 ORDER BY id"
        ):
            if delivery_id in self._inflight or row_id in replaced:
                continue
            victims.append((row_id, url, length))
            count, total = count - 1, total - length
            if not full():
                return victims
        return None

    def _refuse(self, type: str, why: str) -> str:
        log.error("webhook %s refused and dropped: %s", type, why)
        try:
            with self._write({"dropped": 1}):
                pass
        except sqlite3.Error:
            self.db_errors += 1
            self._count_unsaved("dropped")
        return ""

    def _forget(self, callback_url: str, size: int) -> None:
        """Memory accounting of one waiting message leaving the queue."""
        left = self._per_callback[callback_url] - 1
        if left:
            self._per_callback[callback_url] = left
        else:
            del self._per_callback[callback_url]
        self._depth -= 1
        self._bytes -= size

    def peek(self, callback_url: str) -> Message | None:
        """The oldest waiting message for `callback_url`; from now on in flight (never evicted to make
        room) until `done()`, `failed()` or `bury()`."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE callback_url = ? AND dead = 0 ORDER BY id LIMIT 1",
                (callback_url,),
            ).fetchone()
            if row is None:
                return None
            message = Message(*row)
            self._inflight.add(message.delivery_id)
            return message

    def callbacks(self) -> list[str]:
        """Callback URLs with waiting messages."""
        with self._lock:
            return list(self._per_callback)

    def done(self, delivery_id: str) -> bool:
        """The message was delivered: delete it. False if it is not waiting (unknown or dead)."""
        with self._lock:
            self._inflight.discard(delivery_id)
            try:
                with self._write({"delivered": 1}):
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE delivery_id = ? AND dead = 0 "
                        "RETURNING callback_url, length(body)",
                        (delivery_id,),
                    ).fetchone()
                    if row is None:
                        raise _NotWaiting
            except _NotWaiting:
                return False
            self._forget(*row)
            return True

    def failed(self, delivery_id: str, error: str, next_at: float) -> bool:
        """One attempt failed: count it and keep the message for another attempt at `next_at` (wall
        clock). False if it is not waiting."""
        with self._lock:
            self._inflight.discard(delivery_id)
            try:
                with self._write({"failed_attempts": 1}):
                    updated = self._db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? "
                        "WHERE delivery_id = ? AND dead = 0",
                        (error, next_at, delivery_id),
                    ).rowcount
                    if not updated:
                        raise _NotWaiting
            except _NotWaiting:
                return False
            return True

    def bury(self, delivery_id: str, error: str) -> bool:
        """The last attempt failed for good: set the message aside as dead (kept, the `dead_kept` newest,
        for inspection with `dead_letters()`), so the messages after it flow. False if it is not waiting."""
        with self._lock:
            self._inflight.discard(delivery_id)
            try:
                with self._write({"failed_attempts": 1, "dead": 1}):
                    row = self._db.execute(
                        "UPDATE outbox SET dead = 1, attempts = attempts + 1, last_error = ? "
                        "WHERE delivery_id = ? AND dead = 0 RETURNING callback_url, length(body)",
                        (error, delivery_id),
                    ).fetchone()
                    if row is None:
                        raise _NotWaiting
                    excess = self._dead_rows + 1 - self.dead_kept
                    if excess > 0:
                        self._db.execute(
                            "DELETE FROM outbox WHERE id IN "
                            "(SELECT id FROM outbox WHERE dead = 1 ORDER BY id LIMIT ?)",
                            (excess,),
                        )
            except _NotWaiting:
                return False
            self._dead_rows = min(self._dead_rows + 1, self.dead_kept)
            self._forget(*row)
            return True

    def dead_letters(self, limit: int = 100) -> list[Message]:
        """The newest dead messages, newest first (attempts and last_error say why)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE dead = 1 ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Message(*row) for row in rows]

    def depth(self) -> int:
        """Waiting messages (dead ones excluded)."""
        return self._depth

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting message; None when none waits."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at FROM outbox WHERE dead = 0 ORDER BY id LIMIT 1"
            ).fetchone()
        return None if row is None else max(0.0, time.time() - row[0])

    def stats(self) -> dict[str, Any]:
        """depth, bytes, oldest_age_s, and the counters (kept across restarts): delivered,
        failed_attempts, coalesced, dropped, dead; db_errors since this spool was opened."""
        return {
            "depth": self._depth,
            "bytes": self._bytes,
            "oldest_age_s": self.oldest_age_s(),
            **self._counters,
            "db_errors": self.db_errors,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
