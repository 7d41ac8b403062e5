"""The webhook spool on a real SQLite file: envelopes, per-session seq, bounds and their exact counts,
persistence across reopen, and a file shared with another table."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from lens.control.spool import Spool

A = "http://127.0.0.1:9/a"
B = "http://127.0.0.1:9/b"


def spool(tmp_path: Path, max_messages: int = 1000, max_mb: float = 10.0, **kw: Any) -> Spool:
    return Spool(tmp_path / "var" / "control.sqlite", "vm_001", max_messages, max_mb, **kw)


def drain(s: Spool, url: str) -> list[dict[str, Any]]:
    """Every waiting envelope for `url`, oldest first, marked delivered."""
    out = []
    while (m := s.peek(url)) is not None:
        out.append(orjson.loads(m.body))
        assert s.done(m.delivery_id)
    return out


def test_put_builds_the_envelope_once(tmp_path: Path) -> None:
    s = spool(tmp_path)
    before = time.time()
    d1 = s.put(A, "s1", "inspection.result", {"result_id": 7, "value": np.float32(0.5)})
    d2 = s.put(A, "s1", "heartbeat", {}, coalesce=True)
    d3 = s.put(B, "s2", "machine.event", {"state": "running"})
    after = time.time()
    assert len(d1) == 32 and int(d1, 16) >= 0 and len({d1, d2, d3}) == 3
    assert s.callbacks() == [A, B]
    m = s.peek(A)
    assert (
        m is not None and m.delivery_id == d1 and m.attempts == 0 and m.next_at == 0 and m.last_error is None
    )
    envelope = orjson.loads(m.body)
    assert list(envelope) == ["type", "machine_id", "session_id", "seq", "timestamp", "payload"]
    assert before <= envelope.pop("timestamp") <= after
    assert envelope == {
        "type": "inspection.result",
        "machine_id": "vm_001",
        "session_id": "s1",
        "seq": 1,
        "payload": {"result_id": 7, "value": 0.5},
    }
    assert (m.type, m.seq, m.session_id, m.callback_url) == ("inspection.result", 1, "s1", A)
    assert [(e["type"], e["session_id"], e["seq"]) for e in drain(s, A)] == [
        ("inspection.result", "s1", 1),
        ("heartbeat", "s1", 2),
    ]
    assert [(e["session_id"], e["seq"]) for e in drain(s, B)] == [("s2", 1)]
    assert s.stats() == {
        "depth": 0,
        "bytes": 0,
        "oldest_age_s": None,
        "delivered": 3,
        "failed_attempts": 0,
        "coalesced": 0,
        "dropped": 0,
        "dead": 0,
        "db_errors": 0,
    }
    assert s.callbacks() == []
    s.close()


def test_seq_counters_and_waiting_messages_survive_reopen(tmp_path: Path) -> None:
    s = spool(tmp_path)
    ids = [s.put(A, "s1", "inspection.result", {"id": i}) for i in range(4)]
    assert s.peek(A) is not None
    assert s.done(ids[0])
    assert s.failed(ids[1], "ConnectError: refused", 123.5)
    assert s.bury(ids[1], "HTTP 400 Bad Request")
    size = s.stats()["bytes"]
    s.close()

    s = spool(tmp_path)
    stats = s.stats()
    assert stats["oldest_age_s"] is not None
    del stats["oldest_age_s"]
    assert stats == {
        "depth": 2,
        "bytes": size,
        "delivered": 1,
        "failed_attempts": 2,
        "coalesced": 0,
        "dropped": 0,
        "dead": 1,
        "db_errors": 0,
    }
    assert s.callbacks() == [A]
    s.put(A, "s1", "inspection.result", {"id": 4})
    s.put(A, "s9", "inspection.result", {"id": 5})
    assert [(e["seq"], e["payload"]["id"]) for e in drain(s, A)] == [(3, 2), (4, 3), (5, 4), (1, 5)]
    [dead] = s.dead_letters()
    assert (dead.delivery_id, dead.seq, dead.attempts, dead.last_error, dead.next_at) == (
        ids[1],
        2,
        2,
        "HTTP 400 Bad Request",
        123.5,
    )
    s.close()


def test_done_failed_bury_of_messages_not_waiting_return_false(tmp_path: Path) -> None:
    s = spool(tmp_path, dead_kept=2)
    ids = [s.put(A, "s1", "inspection.result", {"id": i}) for i in range(4)]
    assert s.done("0" * 32) is False
    assert s.failed("0" * 32, "x", 0) is False
    assert s.bury("0" * 32, "x") is False
    for i in ids[:3]:
        assert s.bury(i, f"dead {i}")
    assert s.done(ids[0]) is False and s.failed(ids[0], "x", 0) is False and s.bury(ids[0], "x") is False
    assert [m.delivery_id for m in s.dead_letters()] == [ids[2], ids[1]]  # the 2 newest dead are kept
    assert (s.depth(), s.stats()["dead"], s.stats()["failed_attempts"]) == (1, 3, 3)
    head = s.peek(A)
    assert head is not None and head.delivery_id == ids[3]
    s.close()


def _summary_counts(s: Spool) -> tuple[int, int, int]:
    st = s.stats()
    return st["depth"], st["coalesced"], st["dropped"]


def test_full_by_count_coalesces_then_drops_with_exact_counts(tmp_path: Path) -> None:
    s = spool(tmp_path, max_messages=6)
    kinds = {"E": ("machine.event", False), "S": ("inspection.summary", True), "H": ("heartbeat", True)}

    def put(name: str, url: str = A) -> str:
        type_, coalesce = kinds[name[0]]
        return s.put(url, "s1", type_, {"id": name}, coalesce=coalesce)

    for name in ["E0", "S1", "S2", "H3", "E4", "S5"]:
        assert put(name)
    assert _summary_counts(s) == (6, 0, 0)
    put("S6")  # replaces the newest summary of A (S5)
    put("H7")  # replaces the newest heartbeat of A (H3)
    assert _summary_counts(s) == (6, 2, 0)
    put("E8")  # not coalescible: the oldest coalescible message (S1) makes room
    put("S9", B)  # no summary waits for B: the oldest coalescible message (S2) makes room
    assert _summary_counts(s) == (6, 4, 0)
    for name in ["E10", "E11", "E12"]:  # evict S6, H7, S9
        assert put(name)
    assert _summary_counts(s) == (6, 7, 0)
    assert put("E13") == ""  # nothing left that may make room: refused, counted
    assert put("S14") == ""
    assert _summary_counts(s) == (6, 7, 2)
    assert s.callbacks() == [A]
    waiting = drain(s, A)
    assert [e["payload"]["id"] for e in waiting] == ["E0", "E4", "E8", "E10", "E11", "E12"]
    assert [e["seq"] for e in waiting] == [1, 5, 9, 11, 12, 13]  # refused puts take no seq
    assert s.put(A, "s1", "machine.event", {"id": "E15"}) and drain(s, A)[0]["seq"] == 14
    s.close()
    s = spool(tmp_path, max_messages=6)
    assert _summary_counts(s) == (0, 7, 2)
    s.close()


def test_a_message_in_flight_is_never_evicted(tmp_path: Path) -> None:
    s = spool(tmp_path, max_messages=3)
    ids = [s.put(A, "s1", "inspection.summary", {"id": i}, coalesce=True) for i in range(3)]
    head = s.peek(A)
    assert head is not None and head.delivery_id == ids[0]
    assert s.put(A, "s1", "machine.event", {"id": 3})  # evicts summary 1, not the head
    assert s.put(A, "s1", "machine.event", {"id": 4})  # evicts summary 2
    assert s.put(A, "s1", "inspection.summary", {"id": 5}, coalesce=True) == ""  # only the head could go
    assert s.put(A, "s1", "machine.event", {"id": 6}) == ""
    assert _summary_counts(s) == (3, 2, 2)
    assert s.done(ids[0])
    assert s.put(A, "s1", "machine.event", {"id": 7})
    assert [e["payload"]["id"] for e in drain(s, A)] == [3, 4, 7]
    s.close()


def test_full_by_bytes(tmp_path: Path) -> None:
    probe = spool(tmp_path / "probe")
    probe.put(A, "s1", "inspection.summary", {"id": 0, "jpeg": "x" * 1000}, coalesce=True)
    size = probe.stats()["bytes"]
    probe.close()
    s = spool(tmp_path, max_mb=(3 * size + size // 2) / 2**20)  # room for three
    for i in range(3):
        assert s.put(A, "s1", "inspection.summary", {"id": i, "jpeg": "x" * 1000}, coalesce=True)
    assert s.put(A, "s1", "inspection.result", {"id": 3, "jpeg": "x" * 1000})  # evicts summary 0
    assert s.put(A, "s1", "inspection.summary", {"id": 4, "jpeg": "x" * 1000}, coalesce=True)  # replaces 2
    big = {"id": 5, "jpeg": "x" * 2000}  # needs the room of two summaries: evicts 1 and 4
    assert s.put(A, "s1", "inspection.result", big)
    assert _summary_counts(s) == (2, 4, 0)
    assert s.put(A, "s1", "inspection.result", {"id": 6, "jpeg": "x" * 4 * size}) == ""  # larger than all
    assert s.put(A, "s1", "inspection.result", {"id": 7, "jpeg": "x" * 1000}) == ""  # no room, none to evict
    assert _summary_counts(s) == (2, 4, 2)
    assert [e["payload"]["id"] for e in drain(s, A)] == [3, 5]
    s.close()


def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    s = spool(tmp_path)
    with pytest.raises(ValueError, match="callback_url is empty"):
        s.put("", "s1", "heartbeat", {})
    with pytest.raises(ValueError, match="session_id is empty"):
        s.put(A, "", "heartbeat", {})
    with pytest.raises(ValueError, match=r"'inspection\.result' payload cannot be serialized to JSON"):
        s.put(A, "s1", "inspection.result", {"image": object()})
    assert s.put(A, "s1", "heartbeat", {}) and drain(s, A)[0]["seq"] == 1  # the refused puts took no seq
    s.close()
    with pytest.raises(ValueError, match="machine_id is empty"):
        Spool(tmp_path / "x.sqlite", "", 10, 1)
    with pytest.raises(ValueError, match="max_messages must be at least 1, got 0"):
        Spool(tmp_path / "x.sqlite", "vm", 0, 1)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"junk.sqlite: file is not a database \(move the file aside"):
        Spool(junk, "vm", 10, 1)
    with sqlite3.connect(tmp_path / "var" / "control.sqlite") as db:
        db.execute("UPDATE outbox_meta SET value = 99 WHERE key = 'schema'")
    db.close()
    with pytest.raises(RuntimeError, match="has schema v99, newer than this lens"):
        spool(tmp_path)


def test_shares_its_file_with_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "var" / "control.sqlite"
    path.parent.mkdir()
    audit = sqlite3.connect(path, isolation_level=None)
    audit.execute("PRAGMA user_version = 7")
    audit.execute("CREATE TABLE audit (at REAL, who TEXT, what TEXT)")
    audit.execute("INSERT INTO audit VALUES (1.0, 'orch-1', 'session.open')")
    s = Spool(path, "vm_001", 100, 1, busy_timeout_s=0.05)
    assert s.put(A, "s1", "heartbeat", {})
    assert audit.execute("SELECT * FROM audit").fetchall() == [(1.0, "orch-1", "session.open")]
    assert audit.execute("PRAGMA user_version").fetchone() == (7,)
    audit.execute("BEGIN IMMEDIATE")  # the audit writer holds the write lock longer than busy_timeout
    assert s.put(A, "s1", "heartbeat", {}) == ""
    assert (s.stats()["dropped"], s.stats()["db_errors"]) == (1, 2)  # the put, and saving `dropped`
    audit.execute("COMMIT")
    assert s.put(A, "s1", "heartbeat", {})
    assert [e["seq"] for e in drain(s, A)] == [1, 2]
    s.close()
    audit.close()
    s = Spool(path, "vm_001", 100, 1)
    assert s.stats()["dropped"] == 1  # the increment the failed write could not save was saved later
    s.close()
