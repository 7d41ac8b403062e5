"""The AnalyticLens inspection log book: inspections kept for the orchestrator, the `.alog` file
format they travel in, and their upload to the orchestrator (`POST /api/logs/sync`, SPEC §4b).

The old machine appended each logged inspection to a RAM deque, a worker thread wrote them as
`.alog` files in a `logs/` folder, and a sync POSTed every file to `{django_url}/api/logs/upload`
and deleted the ones answered 2xx. Here the files are rows of one table (`legacy_logs`) of the
control service's SQLite file (WAL), written in batches from a bounded RAM buffer; the `.alog`
bytes are built when a row is uploaded. What the orchestrator receives is the same.

`.alog` v1 (big-endian): magic `b"ALOG"`, version u32, json_len u64, img_len u64, the UTF-8 JSON
`{id, timestamp, approved, width, height, result}` (non-ASCII kept as is), then the JPEG (may be
empty: img_len 0, width/height 0).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import struct
import threading
import time
import uuid
from collections import deque
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

log = logging.getLogger("lens.control")

ALOG_MAGIC = b"ALOG"
ALOG_VERSION = 1
_HEADER = struct.Struct(">4sIQQ")  # magic, version, json_len, img_len
ALOG_HEADER_SIZE = _HEADER.size  # 24

MODES = ("keep_last", "keep_first")
POLICIES = ("ALL", "APPROVED", "REJECTED")
BUFFER_MIN = 1000  # the RAM buffer holds max(BUFFER_MIN, 10 * batch_size) entries ...
BUFFER_MAX_BYTES = 64 * 1024 * 1024  # ... and at most this many JPEG bytes
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class AlogError(ValueError):
    """Bytes that are not a readable `.alog` v1 file."""


def _meta_json(meta: dict[str, Any]) -> bytes:
    """The .alog JSON: UTF-8, non-ASCII kept as is, NumPy scalars and arrays as plain values,
    NaN and ±Infinity as null (strict JSON; the old machine wrote `Infinity`)."""
    try:
        return orjson.dumps(meta, option=_JSON_OPTIONS)
    except TypeError as e:
        raise ValueError(f"alog metadata cannot be serialized to JSON: {e}") from None


def _pack(meta_json: bytes, jpeg: bytes) -> bytes:
    return _HEADER.pack(ALOG_MAGIC, ALOG_VERSION, len(meta_json), len(jpeg)) + meta_json + jpeg


def encode_alog(meta: dict[str, Any], jpeg: bytes) -> bytes:
    """One `.alog` v1 file: header, `meta` as JSON, `jpeg` (b"" for none). ValueError if `meta`
    is not a dict or cannot be serialized."""
    if not isinstance(meta, dict):
        raise ValueError(f"alog metadata must be a dict, got {type(meta).__name__}")
    return _pack(_meta_json(meta), bytes(jpeg))


def decode_alog(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(metadata, JPEG bytes) of one `.alog` v1 file; AlogError saying what is wrong otherwise.
    Lenient on JSON like the orchestrator (`NaN`/`Infinity` accepted), strict on the layout
    (trailing bytes are an error)."""
    data = bytes(data)
    if len(data) < ALOG_HEADER_SIZE:
        raise AlogError(f"alog too short: {len(data)} bytes, the header alone is {ALOG_HEADER_SIZE}")
    magic, version, json_len, img_len = _HEADER.unpack_from(data)
    if magic != ALOG_MAGIC:
        raise AlogError(f"not an alog: magic {magic!r}, expected {ALOG_MAGIC!r}")
    if version != ALOG_VERSION:
        raise AlogError(f"alog version {version} is not supported (this reader knows {ALOG_VERSION})")
    end = ALOG_HEADER_SIZE + json_len + img_len
    if end > len(data):
        raise AlogError(
            f"alog lengths run past the data: header {ALOG_HEADER_SIZE} + json {json_len} "
            f"+ image {img_len} bytes > {len(data)} bytes"
        )
    if end < len(data):
        raise AlogError(
            f"alog has {len(data) - end} bytes after the image (json {json_len}, image {img_len})"
        )
    raw = data[ALOG_HEADER_SIZE : ALOG_HEADER_SIZE + json_len]
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise AlogError(f"alog JSON is not UTF-8: {e}") from None
    except ValueError as e:
        raise AlogError(f"alog JSON unreadable: {e}") from None
    if not isinstance(meta, dict):
        raise AlogError(f"alog JSON is a {type(meta).__name__}, expected an object")
    return meta, data[ALOG_HEADER_SIZE + json_len : end]


def alog_name(timestamp: str, log_id: str) -> str:
    """The file name the old machine gave a log: `2025-09-12 18:30:30` + id →
    `2025-09-12 18-30-30_<id>.alog` (':' → '-', 'T' → '_', cut at the first '.')."""
    stamp = timestamp.replace(":", "-").replace("T", "_").split(".", 1)[0]
    return f"{stamp}_{log_id}.alog"


def local_timestamp() -> str:
    """Now as the old machine stamped inspections: local time, `YYYY-MM-DD HH:MM:SS`."""
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


# -- configuration ------------------------------------------------------------------------------------


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"logging_config.{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"logging_config.{name} must be an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise ValueError(f"logging_config.{name} must be an integer, got {value!r}")
    if value < minimum:
        relation = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"logging_config.{name} must be {relation}, got {value}")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"logging_config.{name} must be true or false, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"logging_config.{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class LoggingConfig:
    """The old machine's `logging_config` (`GET|PUT /api/logging_config`, key `logging` of its
    config file), with its defaults and checks: `mode` keep_last|keep_first, `policy`
    ALL|APPROVED|REJECTED, `max_logs` >= 0, `batch_size` > 0, `batch_ms` >= 0.

    Integers are stored as integers (the old machine stored what it was sent, e.g. "20"); integer
    strings and integral floats are accepted and converted, booleans and 2.5 are not. `enabled`
    must be a boolean (or 0/1, "true"/"false"); the old machine stored any value unchecked.
    """

    enabled: bool = False
    mode: str = "keep_last"
    max_logs: int = 1000
    policy: str = "ALL"
    batch_size: int = 20
    batch_ms: int = 500

    def __post_init__(self) -> None:
        for name, value in _normalized(asdict(self)).items():
            object.__setattr__(self, name, value)

    @classmethod
    def merged(cls, current: LoggingConfig, patch: dict[str, Any]) -> LoggingConfig:
        """`current` with the keys of `patch` (a partial PUT body) applied, each validated;
        ValueError naming the field and the value otherwise. Unlike the old machine, which merged
        unknown keys into its config, an unknown key is an error; `buffer_size` (a read-only field
        of the GET answer, so a GET body can be PUT back) is ignored."""
        if not isinstance(patch, dict):
            raise ValueError(f"logging_config must be a JSON object, got {type(patch).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in patch if k not in known and k != "buffer_size")
        if unknown:
            raise ValueError(
                f"unknown logging_config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        values = asdict(current)
        values.update({k: v for k, v in patch.items() if k in known})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """`{enabled, mode, max_logs, policy, batch_size, batch_ms}` as in the old `/api/status`."""
        return asdict(self)


def _normalized(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled": _bool("enabled", values["enabled"]),
        "mode": _choice("mode", values["mode"], MODES),
        "max_logs": _int("max_logs", values["max_logs"], 0),
        "policy": _choice("policy", values["policy"], POLICIES),
        "batch_size": _int("batch_size", values["batch_size"], 1),
        "batch_ms": _int("batch_ms", values["batch_ms"], 0),
    }


# -- entries ----------------------------------------------------------------------------------------


@dataclass
class LogEntry:
    """One logged inspection. `result` is the legacy inspection result (built by the caller: the
    summary, `aprovados`, `reprovados`, `frame`, `time`, `tools`, `result`); `jpeg` the encoded
    image (b"" for none, then width = height = 0); `timestamp` local `YYYY-MM-DD HH:MM:SS`.
    Once offered to a LogBook the entry (and its result) belongs to the book: do not mutate it."""

    id: str
    timestamp: str
    approved: bool
    width: int
    height: int
    result: dict[str, Any]
    jpeg: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"log entry id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.timestamp, str) or not self.timestamp:
            raise ValueError(f"log entry {self.id}: timestamp must be a non-empty string")
        if not isinstance(self.result, dict):
            raise ValueError(f"log entry {self.id}: result must be a dict, got {type(self.result).__name__}")
        self.approved = bool(self.approved)  # a NumPy bool too
        self.width, self.height = int(self.width), int(self.height)
        if self.width < 0 or self.height < 0:
            raise ValueError(f"log entry {self.id}: size {self.width}x{self.height} is negative")
        self.jpeg = bytes(self.jpeg)

    @classmethod
    def create(
        cls, approved: bool, result: dict[str, Any], jpeg: bytes = b"", width: int = 0, height: int = 0
    ) -> LogEntry:
        """A new entry stamped now, with a fresh uuid4 id."""
        return cls(str(uuid.uuid4()), local_timestamp(), approved, width, height, result, jpeg)

    def meta(self) -> dict[str, Any]:
        """The `.alog` JSON: `{id, timestamp, approved, width, height, result}`."""
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "approved": self.approved,
            "width": self.width,
            "height": self.height,
            "result": self.result,
        }


# -- the book ---------------------------------------------------------------------------------------

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
                    meta = _meta_json(e.meta())
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
        db.execute("BEGIN IMMEDIATE")
        try:
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
            db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                removed = self._db.executemany(
                    "DELETE FROM legacy_logs WHERE id = ?", [(i,) for i in ids]
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
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

    # -- for sync() -----------------------------------------------------------------------------------

    def _stored_seqs(self) -> list[int]:
        with self._db_lock:
            return [r[0] for r in self._db.execute("SELECT seq FROM legacy_logs ORDER BY seq")]

    def _load_alog(self, seq: int) -> tuple[str, str, bytes] | None:
        """(id, file name, .alog bytes) of a stored log; None if it is gone (evicted, cleared)."""
        with self._db_lock:
            row = self._db.execute(
                "SELECT id, timestamp, meta, jpeg FROM legacy_logs WHERE seq = ?", (seq,)
            ).fetchone()
        if row is None:
            return None
        return row[0], alog_name(row[1], row[0]), _pack(row[2], row[3])

    def _note_upload(self, uploaded: int, failed: int, error: str | None) -> None:
        with self._lock:
            self._counters["uploaded"] += uploaded
            self._counters["upload_failed"] += failed
            if error is not None:
                self.last_error = error

    def _guard(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._sync_lock is None or self._sync_loop is not loop:
            self._sync_lock, self._sync_loop = asyncio.Lock(), loop
        return self._sync_lock


# -- upload -----------------------------------------------------------------------------------------


async def sync(
    book: LogBook,
    django_url: str,
    machine_id: str,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 10.0,
    budget_s: float | None = None,
) -> dict[str, int]:
    """Upload the stored logs to the orchestrator, oldest first, one `POST
    {django_url}/api/logs/upload` each (multipart: field `machine_id`, file `file` named
    `alog_name()`, application/octet-stream, `timeout_s` each); a 2xx answer deletes the log, any
    other answer or error keeps it (counted failed). Returns `{uploaded, failed, remaining, before}`
    (`before`/`remaining`: stored logs before and after).

    Unlike the old machine: the buffer is flushed first and kept (the old sync discarded the
    entries not yet written); logs go oldest first (the old order was the directory's); when the
    orchestrator cannot be reached (connection refused or connect timeout) the logs not yet tried
    are counted failed without trying each; with `budget_s`, no upload starts after that many
    seconds (the orchestrator waits 60 s for the answer), the rest stays for the next sync,
    neither uploaded nor failed. Entries offered meanwhile are stored and stay for the next
    sync; concurrent syncs of one book run one after the other. ValueError for an empty or
    non-http(s) `django_url` or an empty `machine_id`; database errors are raised.
    """
    base = (django_url or "").strip().rstrip("/")
    if not base:
        raise ValueError("django_url is not configured")
    try:
        parsed = httpx.URL(base)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"django_url must be an http:// or https:// URL, got {django_url!r}")
    if not machine_id:
        raise ValueError("machine_id is empty")
    url = f"{base}/api/logs/upload"
    started = time.monotonic()
    async with book._guard():
        await asyncio.to_thread(book.flush)
        seqs = await asyncio.to_thread(book._stored_seqs)
        uploaded = failed = 0
        error: str | None = None
        http = client or httpx.AsyncClient(timeout=timeout_s)
        try:
            for i, seq in enumerate(seqs):
                if budget_s is not None and time.monotonic() - started >= budget_s:
                    break
                item = await asyncio.to_thread(book._load_alog, seq)
                if item is None:
                    continue
                log_id, name, data = item
                try:
                    r = await http.post(
                        url,
                        data={"machine_id": machine_id},
                        files={"file": (name, data, "application/octet-stream")},
                        timeout=timeout_s,
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                    error = f"log upload to {url}: orchestrator unreachable: {e!r}"
                    failed += len(seqs) - i
                    break
                except httpx.HTTPError as e:
                    error = f"log upload {name} to {url}: {e!r}"
                    failed += 1
                    continue
                if r.is_success:
                    await asyncio.to_thread(book.delete, [log_id])
                    uploaded += 1
                else:
                    error = f"log upload {name} to {url}: HTTP {r.status_code}"
                    failed += 1
        finally:
            if client is None:
                await http.aclose()
        if error is not None:
            log.warning("%s (%d failed, kept for the next sync)", error, failed)
        book._note_upload(uploaded, failed, error)
        return {"uploaded": uploaded, "failed": failed, "remaining": book.count(), "before": len(seqs)}
