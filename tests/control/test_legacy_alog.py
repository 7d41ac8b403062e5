"""The AnalyticLens inspection log (lens/control/legacy/alog.py, logbook.py, upload.py): the .alog
format, the logging config, the SQLite log book with its batching and max_logs rules, and the upload
to a real HTTP server on loopback that parses the multipart body as Django would."""

from __future__ import annotations

import asyncio
import email.policy
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from lens.control.audit import AuditLog
from lens.control.legacy.alog import (
    ALOG_MAGIC,
    ALOG_VERSION,
    AlogError,
    LogEntry,
    LoggingConfig,
    alog_name,
    decode_alog,
    encode_alog,
)
from lens.control.legacy.logbook import LogBook
from lens.control.legacy.upload import sync
from tests.control.receiver import LoopbackServer, QuietHandler
from tests.lensrun import free_port

MACHINE = "vm_042"
FIRST_FOUR = ["log-0000", "log-0001", "log-0002", "log-0003"]  # ids of make_entry(0) .. make_entry(3)


def jpeg_of(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def make_entry(n: int, approved: bool = True, jpeg: bytes = b"") -> LogEntry:
    """Entry `n`: id `log-000n`, a small legacy result naming it."""
    result = {
        "inspection_summary": {"total_tools": 1, "overall_pass": approved, "total_processing_time_ms": 1.5},
        "timestamp": "2025-09-12 18:30:30",
        "aprovados": 0,
        "reprovados": 1,
        "frame": n,
        "time": "1.50ms",
        "tools": [{"id": 1, "name": "Blob ç", "type": "blob"}],
        "result": [{"tool_id": 1, "pass_fail": approved}],
    }
    w, h = (64, 48) if jpeg else (0, 0)
    return LogEntry(f"log-{n:04d}", "2025-09-12 18:30:30", approved, w, h, result, jpeg)


def book_at(tmp_path: Path, **cfg: Any) -> LogBook:
    config = LoggingConfig.merged(LoggingConfig(enabled=True), cfg)
    return LogBook(tmp_path / "control.db", config)


def stored_ids(book: LogBook) -> list[str]:
    return [e.id for e in book.oldest(10_000)]


# -- the .alog format ---------------------------------------------------------------------------------


def test_round_trip_header_json_and_jpeg() -> None:
    jpeg = jpeg_of()
    entry = LogEntry(
        "6051ecba-9f19-4dfd-b1a1-b57fe2f1dacf",
        "2025-09-12 18:30:30",
        False,
        64,
        48,
        {"frame": 7, "name": "Inspeção"},
        jpeg,
    )
    data = encode_alog(entry.meta(), entry.jpeg)
    magic, version, json_len, img_len = struct.unpack(">4sIQQ", data[:24])
    assert (magic, version, img_len) == (b"ALOG", 1, len(jpeg))
    assert len(data) == 24 + json_len + img_len
    assert "Inspeção".encode() in data[24 : 24 + json_len]  # UTF-8, not \u escapes
    assert data[24 + json_len :] == jpeg
    meta, img = decode_alog(data)
    assert meta == {
        "id": "6051ecba-9f19-4dfd-b1a1-b57fe2f1dacf",
        "timestamp": "2025-09-12 18:30:30",
        "approved": False,
        "width": 64,
        "height": 48,
        "result": {"frame": 7, "name": "Inspeção"},
    }
    decoded = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (48, 64, 3)


def test_encode_without_image_numpy_values_and_non_finite_floats() -> None:
    data = encode_alog(
        {
            "approved": np.bool_(True),
            "v": np.float32(2.5),
            "a": np.arange(3),
            "inf": float("inf"),
            "nan": float("nan"),
        },
        b"",
    )
    assert struct.unpack(">Q", data[16:24]) == (0,)
    meta, img = decode_alog(data)
    assert meta == {"approved": True, "v": 2.5, "a": [0, 1, 2], "inf": None, "nan": None}
    assert img == b""
    with pytest.raises(ValueError, match="cannot be serialized to JSON"):
        encode_alog({"x": object()}, b"")
    with pytest.raises(ValueError, match="must be a dict, got list"):
        encode_alog([1], b"")  # type: ignore[arg-type]


def _alog(
    json_bytes: bytes,
    img: bytes = b"",
    magic: bytes = ALOG_MAGIC,
    version: int = ALOG_VERSION,
    json_len: int | None = None,
    img_len: int | None = None,
) -> bytes:
    header = struct.pack(
        ">4sIQQ",
        magic,
        version,
        len(json_bytes) if json_len is None else json_len,
        len(img) if img_len is None else img_len,
    )
    return header + json_bytes + img


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"alog too short: 0 bytes, the header alone is 24"),
        (b"ALOG\x00\x00\x00\x01" + b"\x00" * 10, r"alog too short: 18 bytes"),
        (_alog(b"{}", magic=b"JPEG"), r"not an alog: magic b'JPEG', expected b'ALOG'"),
        (_alog(b"{}", version=2), r"alog version 2 is not supported \(this reader knows 1\)"),
        (
            _alog(b"{}", b"xy", img_len=10),
            r"lengths run past the data: header 24 \+ json 2 \+ image 10 bytes > 28",
        ),
        (_alog(b"{}", json_len=2**63), r"lengths run past the data"),
        (_alog(b"{}", b"xy") + b"!!", r"alog has 2 bytes after the image \(json 2, image 2\)"),
        (_alog(b'{"a": "\xff"}'), r"alog JSON is not UTF-8"),
        (_alog(b'{"a": '), r"alog JSON unreadable"),
        (_alog(b"[1, 2]"), r"alog JSON is a list, expected an object"),
        (_alog(b'"text"'), r"alog JSON is a str, expected an object"),
    ],
)
def test_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(AlogError, match=message):
        decode_alog(data)


def test_decode_accepts_the_old_machines_infinity() -> None:
    meta, _ = decode_alog(_alog(b'{"area_max": Infinity}'))
    assert meta == {"area_max": float("inf")}


def test_alog_name_as_the_old_machine() -> None:
    uid = "6051ecba-9f19-4dfd-b1a1-b57fe2f1dacf"
    assert alog_name("2025-09-12 18:30:30", uid) == f"2025-09-12 18-30-30_{uid}.alog"
    assert alog_name("2025-09-12T21:30:30.123456", uid) == f"2025-09-12_21-30-30_{uid}.alog"


def test_log_entry_create_and_checks() -> None:
    e = LogEntry.create(np.bool_(False), {"frame": 1})
    assert e.approved is False and type(e.approved) is bool
    assert len(e.id) == 36 and e.id.count("-") == 4
    assert len(e.timestamp) == 19 and e.timestamp[4] == "-" and e.timestamp[13] == ":"
    assert (e.width, e.height, e.jpeg) == (0, 0, b"")
    with pytest.raises(ValueError, match="result must be a dict, got list"):
        LogEntry("x", "t", True, 0, 0, [], b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size -1x2 is negative"):
        LogEntry("x", "t", True, -1, 2, {}, b"")
    with pytest.raises(ValueError, match="id must be a non-empty string"):
        LogEntry("", "t", True, 0, 0, {}, b"")


# -- the logging config -------------------------------------------------------------------------------


def test_logging_config_defaults_and_partial_merge() -> None:
    default = LoggingConfig()
    assert default.to_dict() == {
        "enabled": False,
        "mode": "keep_last",
        "max_logs": 1000,
        "policy": "ALL",
        "batch_size": 20,
        "batch_ms": 500,
    }
    cfg = LoggingConfig.merged(default, {"enabled": True, "policy": "REJECTED"})
    assert cfg.to_dict() == {**default.to_dict(), "enabled": True, "policy": "REJECTED"}
    cfg = LoggingConfig.merged(
        cfg, {"max_logs": "50", "batch_ms": 0.0, "buffer_size": 99, "mode": "keep_first"}
    )
    assert cfg.to_dict() == {
        "enabled": True,
        "mode": "keep_first",
        "max_logs": 50,
        "policy": "REJECTED",
        "batch_size": 20,
        "batch_ms": 0,
    }
    assert LoggingConfig.merged(cfg, {"enabled": "false", "max_logs": 0}).to_dict()["enabled"] is False
    assert LoggingConfig.merged(cfg, {}) == cfg


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"mode": "keep_all"}, r"logging_config.mode must be one of keep_last, keep_first, got 'keep_all'"),
        ({"policy": "all"}, r"logging_config.policy must be one of ALL, APPROVED, REJECTED, got 'all'"),
        ({"max_logs": -1}, r"logging_config.max_logs must be >= 0, got -1"),
        ({"max_logs": "abc"}, r"logging_config.max_logs must be an integer, got 'abc'"),
        ({"max_logs": None}, r"logging_config.max_logs must be an integer, got None"),
        ({"batch_size": 0}, r"logging_config.batch_size must be > 0, got 0"),
        ({"batch_size": True}, r"logging_config.batch_size must be an integer, got True"),
        ({"batch_size": 2.5}, r"logging_config.batch_size must be an integer, got 2.5"),
        ({"batch_ms": -5}, r"logging_config.batch_ms must be >= 0, got -5"),
        ({"enabled": "maybe"}, r"logging_config.enabled must be true or false, got 'maybe'"),
        ({"enabled": None}, r"logging_config.enabled must be true or false, got None"),
        ({"max_log": 5, "zz": 1}, r"unknown logging_config key\(s\): max_log, zz \(known: batch_ms, "),
    ],
)
def test_logging_config_invalid(patch: dict[str, Any], message: str) -> None:
    current = LoggingConfig(enabled=True, max_logs=7)
    with pytest.raises(ValueError, match=message):
        LoggingConfig.merged(current, patch)
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        LoggingConfig.merged(current, [])  # type: ignore[arg-type]


# -- the log book ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enabled", "policy", "approved_wanted", "rejected_wanted"),
    [
        (True, "ALL", True, True),
        (True, "APPROVED", True, False),
        (True, "REJECTED", False, True),
        (False, "ALL", False, False),
        (False, "REJECTED", False, False),
    ],
)
def test_wants_follows_enabled_and_policy(
    tmp_path: Path, enabled: bool, policy: str, approved_wanted: bool, rejected_wanted: bool
) -> None:
    book = book_at(tmp_path, enabled=enabled, policy=policy)
    try:
        assert (book.wants(True), book.wants(False)) == (approved_wanted, rejected_wanted)
    finally:
        book.close()


def test_keep_first_refuses_once_full(tmp_path: Path) -> None:
    book = book_at(tmp_path, mode="keep_first", max_logs=3)
    try:
        for n in range(2):
            assert book.offer(make_entry(n))
        assert book.flush() == 2
        for n in range(2, 5):
            book.offer(make_entry(n))
        assert book.flush() == 1
        assert stored_ids(book) == ["log-0000", "log-0001", "log-0002"]
        assert book.count() == 3 and book.buffer_size == 0
        stats = book.stats()
        assert (stats["written"], stats["dropped_keep_first"], stats["evicted"]) == (3, 2, 0)
    finally:
        book.close()


def test_keep_last_evicts_the_oldest(tmp_path: Path) -> None:
    book = book_at(tmp_path, mode="keep_last", max_logs=3)
    try:
        for n in range(5):  # one batch larger than max_logs
            book.offer(make_entry(n))
        assert book.flush() == 3
        assert stored_ids(book) == ["log-0002", "log-0003", "log-0004"]
        for n in range(5, 7):  # across batches
            book.offer(make_entry(n))
        assert book.flush() == 2
        assert stored_ids(book) == ["log-0004", "log-0005", "log-0006"]
        stats = book.stats()
        assert (stats["count"], stats["written"], stats["evicted"], stats["dropped_keep_first"]) == (
            3,
            5,
            4,
            0,
        )
    finally:
        book.close()


def test_smaller_max_logs_under_keep_last_trims_at_the_next_flush(tmp_path: Path) -> None:
    book = book_at(tmp_path, max_logs=10)
    try:
        for n in range(6):
            book.offer(make_entry(n))
        book.flush()
        assert not book.flush_due()
        book.configure(LoggingConfig.merged(book.config, {"max_logs": 4}))
        assert book.count() == 6 and book.flush_due()
        assert book.flush() == 0
        assert stored_ids(book) == ["log-0002", "log-0003", "log-0004", "log-0005"]
        assert book.stats()["evicted"] == 2 and not book.flush_due()
        book.configure(LoggingConfig.merged(book.config, {"mode": "keep_first", "max_logs": 2}))
        assert not book.flush_due() and book.flush() == 0 and book.count() == 4  # keep_first never deletes
    finally:
        book.close()


def test_max_logs_zero_keeps_nothing_new(tmp_path: Path) -> None:
    book = book_at(tmp_path, max_logs=5)
    try:
        book.offer(make_entry(0))
        book.flush()
        for mode in ("keep_last", "keep_first"):
            book.configure(LoggingConfig.merged(book.config, {"max_logs": 0, "mode": mode}))
            book.offer(make_entry(1))
            book.offer(make_entry(2))
            assert book.flush() == 0
        assert stored_ids(book) == ["log-0000"]  # what was stored stays, as on the old machine
        assert book.stats()["dropped_max_logs_zero"] == 4
    finally:
        book.close()


def test_buffer_bound_counts_drops(tmp_path: Path) -> None:
    book = book_at(tmp_path, batch_size=20)
    try:
        assert book.buffer_max == 1000
        accepted = [book.offer(make_entry(n)) for n in range(1003)]
        assert accepted.count(False) == 3 and accepted[-3:] == [False] * 3
        assert book.buffer_size == 1000 and book.stats()["dropped_buffer_full"] == 3
        book.configure(LoggingConfig.merged(book.config, {"batch_size": 150}))
        assert book.buffer_max == 1500
        assert book.flush() == 1000 and book.buffer_size == 0
    finally:
        book.close()
    small = LogBook(tmp_path / "small.db", LoggingConfig(enabled=True), buffer_max=2, buffer_max_bytes=5000)
    try:
        assert small.offer(make_entry(0)) and small.offer(make_entry(1))
        assert not small.offer(make_entry(2))
        small.flush()
        big = jpeg_of(120, 160)
        assert len(big) > 5000 and not small.offer(make_entry(3, jpeg=big))  # bytes bound
        assert small.stats()["dropped_buffer_full"] == 2
    finally:
        small.close()


def test_flush_due_by_size_and_by_age(tmp_path: Path) -> None:
    book = book_at(tmp_path, batch_size=3, batch_ms=60_000)
    try:
        assert not book.flush_due()
        book.offer(make_entry(0))
        book.offer(make_entry(1))
        assert not book.flush_due()
        book.offer(make_entry(2))
        assert book.flush_due()  # by size
        assert book.flush() == 3 and not book.flush_due()
        book.offer(make_entry(3))
        assert not book.flush_due()
        book.configure(LoggingConfig.merged(book.config, {"batch_ms": 20}))
        time.sleep(0.03)
        assert book.flush_due()  # by age
        book.configure(LoggingConfig.merged(book.config, {"batch_ms": 0}))
        assert book.flush_due()
    finally:
        book.close()


def test_survives_restart_and_shares_the_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "control.db"
    audit = AuditLog(str(path), MACHINE)  # another table of the same file, its own connection
    book = LogBook(path, LoggingConfig(enabled=True))
    try:
        jpeg = jpeg_of()
        book.offer(make_entry(0, approved=False, jpeg=jpeg))
        book.flush()
        book.offer(make_entry(1))  # still buffered: close() flushes it
        audit.record("mode", orchestrator_id="orch")
        book.close()
        book.close()
        book = LogBook(path, LoggingConfig(enabled=True))
        assert book.count() == 2
        first, second = book.oldest(10)
        assert (first.id, first.approved, first.width, first.height, first.jpeg) == (
            "log-0000",
            False,
            64,
            48,
            jpeg,
        )
        assert first.result == make_entry(0, approved=False).result
        assert second.id == "log-0001" and second.jpeg == b""
        assert [r["action"] for r in audit.query()] == ["mode"]
    finally:
        book.close()
        audit.close()


def test_clear_oldest_and_delete(tmp_path: Path) -> None:
    book = book_at(tmp_path)
    try:
        for n in range(4):
            book.offer(make_entry(n))
        book.flush()
        book.offer(make_entry(4))
        assert [e.id for e in book.oldest(2)] == ["log-0000", "log-0001"]
        assert book.delete(["log-0001", "nope"]) == 1
        assert stored_ids(book) == ["log-0000", "log-0002", "log-0003"]
        assert book.clear() == {"removed": 4, "errors": 0, "remaining": 0}
        assert book.count() == 0 and book.buffer_size == 0 and book.flush() == 0
        assert book.stats()["cleared"] == 4
    finally:
        book.close()


def test_a_locked_database_keeps_the_batch_for_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    book = LogBook(path, LoggingConfig(enabled=True), busy_timeout_s=0.02)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        book.offer(make_entry(0))
        book.offer(make_entry(1))
        other.execute("BEGIN IMMEDIATE")  # another writer of the shared file holds the lock
        assert book.flush() == 0
        stats = book.stats()
        assert (stats["db_errors"], stats["buffer_size"], stats["count"]) == (1, 2, 0)
        assert "database is locked" in stats["last_error"]
        other.execute("ROLLBACK")
        assert book.flush() == 2 and stored_ids(book) == ["log-0000", "log-0001"]
    finally:
        other.close()
        book.close()


# -- upload to a real orchestrator on loopback ----------------------------------------------------


@dataclass(frozen=True)
class Upload:
    path: str
    machine_id: str
    filename: str
    content_type: str
    meta: dict[str, Any]
    jpeg: bytes


def parse_upload(path: str, content_type: str, body: bytes) -> Upload:
    """Parse a multipart/form-data body with the stdlib email parser, then the .alog in it."""
    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert msg.get_content_type() == "multipart/form-data"
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
    assert set(parts) == {"machine_id", "file"}
    file = parts["file"]
    meta, jpeg = decode_alog(file.get_payload(decode=True))
    return Upload(
        path,
        parts["machine_id"].get_payload(decode=True).decode(),
        file.get_filename(),
        file.get_content_type(),
        meta,
        jpeg,
    )


class Orchestrator(LoopbackServer):
    """Django's `/api/logs/upload` on 127.0.0.1: `status(n)` answers the n-th upload (0-based);
    `on_upload` runs in the server thread before the answer."""

    def __init__(self, port: int, status: Callable[[int], int] = lambda n: 200) -> None:
        super().__init__(port)
        self.status = status
        self.on_upload: Callable[[int], None] = lambda n: None
        self.accepted: list[Upload] = []
        self.refused: list[Upload] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def up(self) -> None:
        orch = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upload = parse_upload(self.path, self.headers["Content-Type"], body)
                with orch.lock:
                    n = len(orch.accepted) + len(orch.refused)
                    status = orch.status(n)
                    (orch.accepted if status == 200 else orch.refused).append(upload)
                orch.on_upload(n)
                payload = b'{"success": true, "parsed": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.serve(Handler)


@pytest.fixture
def orchestrator() -> Iterator[Orchestrator]:
    orch = Orchestrator(free_port())
    try:
        yield orch
    finally:
        orch.down()


def test_sync_uploads_every_log_as_django_reads_it(tmp_path: Path, orchestrator: Orchestrator) -> None:
    orchestrator.up()
    book = book_at(tmp_path)
    jpeg = jpeg_of()
    try:
        for n in range(3):
            book.offer(make_entry(n, approved=n != 1, jpeg=jpeg))
        book.flush()
        book.offer(make_entry(3, jpeg=jpeg))  # still buffered: sync flushes it first
        answer = asyncio.run(sync(book, orchestrator.url, MACHINE))
        assert answer == {"uploaded": 4, "failed": 0, "remaining": 0, "before": 4}
        assert book.count() == 0 and book.buffer_size == 0 and book.stats()["uploaded"] == 4
        ups = orchestrator.accepted
        assert [u.meta["id"] for u in ups] == FIRST_FOUR
        for n, u in enumerate(ups):
            assert (u.path, u.machine_id, u.content_type) == (
                "/api/logs/upload",
                MACHINE,
                "application/octet-stream",
            )
            assert u.filename == f"2025-09-12 18-30-30_log-{n:04d}.alog"
            assert u.meta == {**make_entry(n, approved=n != 1, jpeg=jpeg).meta(), "width": 64, "height": 48}
            assert u.jpeg == jpeg
            assert cv2.imdecode(np.frombuffer(u.jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        assert asyncio.run(sync(book, orchestrator.url, MACHINE)) == {
            "uploaded": 0,
            "failed": 0,
            "remaining": 0,
            "before": 0,
        }
    finally:
        book.close()


def test_sync_keeps_what_the_server_refuses(tmp_path: Path, orchestrator: Orchestrator) -> None:
    orchestrator.status = lambda n: 500 if n in (1, 3) else 200
    orchestrator.up()
    book = book_at(tmp_path)

    async def both() -> tuple[dict[str, int], dict[str, int]]:
        async with httpx.AsyncClient() as client:  # a client of the caller's
            first = await sync(book, orchestrator.url, MACHINE, client=client)
            assert not client.is_closed
            return first, await sync(book, orchestrator.url, MACHINE, client=client)

    try:
        for n in range(5):
            book.offer(make_entry(n))
        first, second = asyncio.run(both())
        assert first == {"uploaded": 3, "failed": 2, "remaining": 2, "before": 5}
        assert [u.meta["id"] for u in orchestrator.refused] == ["log-0001", "log-0003"]
        assert second == {"uploaded": 2, "failed": 0, "remaining": 0, "before": 2}
        assert [u.meta["id"] for u in orchestrator.accepted] == [
            "log-0000",
            "log-0002",
            "log-0004",
            "log-0001",
            "log-0003",
        ]
        stats = book.stats()
        assert (stats["uploaded"], stats["upload_failed"]) == (5, 2)
        assert stats["last_error"].endswith("HTTP 500")
    finally:
        book.close()


def test_sync_with_the_orchestrator_down_loses_nothing(tmp_path: Path, orchestrator: Orchestrator) -> None:
    book = book_at(tmp_path)
    try:
        for n in range(4):
            book.offer(make_entry(n))
        down = asyncio.run(sync(book, orchestrator.url, MACHINE, timeout_s=2.0))
        assert down == {"uploaded": 0, "failed": 4, "remaining": 4, "before": 4}
        assert "unreachable" in book.stats()["last_error"]
        orchestrator.up()
        up = asyncio.run(sync(book, orchestrator.url, MACHINE))
        assert up == {"uploaded": 4, "failed": 0, "remaining": 0, "before": 4}
        assert [u.meta["id"] for u in orchestrator.accepted] == FIRST_FOUR
    finally:
        book.close()


def test_entries_logged_during_a_sync_are_kept(tmp_path: Path, orchestrator: Orchestrator) -> None:
    book = book_at(tmp_path, mode="keep_last", max_logs=100)
    fresh = iter(range(10, 20))

    def inspections_go_on(n: int) -> None:  # while the sync waits for its answer
        book.offer(make_entry(next(fresh)))
        if n == 1:
            book.flush()

    orchestrator.on_upload = inspections_go_on
    orchestrator.up()
    try:
        for n in range(3):
            book.offer(make_entry(n))
        answer = asyncio.run(sync(book, orchestrator.url, MACHINE))
        assert answer == {"uploaded": 3, "failed": 0, "remaining": 2, "before": 3}
        assert stored_ids(book) == ["log-0010", "log-0011"] and book.buffer_size == 1
        orchestrator.on_upload = lambda n: None
        assert asyncio.run(sync(book, orchestrator.url, MACHINE))["uploaded"] == 3
        assert [u.meta["id"] for u in orchestrator.accepted][3:] == ["log-0010", "log-0011", "log-0012"]
    finally:
        book.close()


def test_sync_needs_an_orchestrator_url_and_a_machine_id(tmp_path: Path) -> None:
    book = book_at(tmp_path)
    try:
        with pytest.raises(ValueError, match="django_url is not configured"):
            asyncio.run(sync(book, "  ", MACHINE))
        with pytest.raises(ValueError, match="must be an http:// or https:// URL, got 'ftp://x'"):
            asyncio.run(sync(book, "ftp://x", MACHINE))
        with pytest.raises(ValueError, match="must be an http:// or https:// URL, got 'http://'"):
            asyncio.run(sync(book, "http://", MACHINE))
        with pytest.raises(ValueError, match="machine_id is empty"):
            asyncio.run(sync(book, "http://127.0.0.1:1", ""))
    finally:
        book.close()


def test_concurrent_syncs_upload_each_log_once(tmp_path: Path, orchestrator: Orchestrator) -> None:
    orchestrator.up()
    book = book_at(tmp_path)

    async def two_at_once() -> list[dict[str, int]]:
        return list(
            await asyncio.gather(sync(book, orchestrator.url, MACHINE), sync(book, orchestrator.url, MACHINE))
        )

    try:
        for n in range(4):
            book.offer(make_entry(n))
        first, second = asyncio.run(two_at_once())
        assert first == {"uploaded": 4, "failed": 0, "remaining": 0, "before": 4}
        assert second == {"uploaded": 0, "failed": 0, "remaining": 0, "before": 0}
        assert [u.meta["id"] for u in orchestrator.accepted] == FIRST_FOUR
    finally:
        book.close()


def test_sync_budget_leaves_the_rest_for_the_next_sync(tmp_path: Path, orchestrator: Orchestrator) -> None:
    orchestrator.up()
    book = book_at(tmp_path)
    try:
        for n in range(3):
            book.offer(make_entry(n))
        answer = asyncio.run(sync(book, orchestrator.url, MACHINE, budget_s=0.0))
        assert answer == {"uploaded": 0, "failed": 0, "remaining": 3, "before": 3}
        assert orchestrator.accepted == [] and book.stats()["upload_failed"] == 0
    finally:
        book.close()
