"""The result store on real SQLite files: batching, retention, paging, a reader in another process,
WAL, and writes that fail (a lock held by another connection, a really full filesystem) losing nothing."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from lens.config.outputs import StoreOutput
from lens.outputs.store import MAX_PENDING_BATCHES, RETRY_MIN_S, ResultStore, StoreError, StoreReader

T0 = 1763760000.0
DAY = 86400.0


def envelope(
    result_id: int,
    finished_at: float | None = None,
    camera: str = "cam0",
    passed: bool = True,
    error: str | None = None,
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "type": "inspection.result",
        "machine_id": "vm_001",
        "camera": camera,
        "result_id": result_id,
        "frame_id": result_id * 10,
        "trigger": "continuous",
        "mode": "RUN",
        "pass": passed and error is None,
        "captured_at": (T0 + result_id if finished_at is None else finished_at) - 0.002,
        "finished_at": T0 + result_id if finished_at is None else finished_at,
        "inspection_version": 3,
        "tools": {"brightness": {"type": "grayscale", "value": 97.5, "pass": passed, "elapsed_us": 41.0}},
    }
    if error is not None:
        env["error"] = {"code": error, "message": f"{error} on result {result_id}"}
    return env


def config(path: Path, **kw: Any) -> StoreOutput:
    return StoreOutput(path=str(path), **{"retention_days": 0, "max_rows": 0, "batch_ms": 60_000, **kw})


def fill(fs: Path) -> Path:
    """Write a file until the filesystem says ENOSPC; return it."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
    return filler


def stored_ids(path: Path, **kw: Any) -> list[int]:
    with StoreReader(path) as r:
        return [row["result"]["result_id"] for row in r.query(limit=1000, **kw)]


# --- the file ---------------------------------------------------------------------------------------


def test_new_store_is_wal_with_schema_and_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "results.sqlite"
    with ResultStore(config(path)) as store:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"results_finished_at", "results_result_id", "results_camera_id"} <= names
        cols = [c[1] for c in db.execute("PRAGMA table_info(results)")]
        assert cols == [
            "id",
            "result_id",
            "camera",
            "pass",
            "error_code",
            "mode",
            "captured_at",
            "finished_at",
            "inspection_version",
            "envelope",
        ]
        store.add(envelope(1, error="LENS_OVERRUN"))
        assert store.flush() == 1
        row = db.execute("SELECT id, result_id, camera, pass, error_code, mode, finished_at FROM results")
        assert row.fetchall() == [(1, 1, "cam0", 0, "LENS_OVERRUN", "RUN", T0 + 1)]
        db.close()


def test_refuses_newer_schema_and_unusable_paths(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(StoreError, match=r"schema version 9 is newer than this lens \(1\)"):
        ResultStore(config(path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"file/results.sqlite: cannot open"):
        ResultStore(config(tmp_path / "file" / "results.sqlite"))
    (tmp_path / "junk.sqlite").write_bytes(b"not a database, " * 64)
    with pytest.raises(StoreError, match=r"junk.sqlite: file is not a database"):
        ResultStore(config(tmp_path / "junk.sqlite"))


# --- batching ---------------------------------------------------------------------------------------


def test_due_by_rows_then_flush_writes_the_batch(tmp_path: Path) -> None:
    with ResultStore(config(tmp_path / "r.sqlite", batch_rows=3)) as store:
        assert not store.due()
        store.add(envelope(1))
        store.add(envelope(2))
        assert not store.due()
        store.add(envelope(3))
        assert store.due()
        assert store.stats()["pending"] == 3
        assert stored_ids(store.path) == []  # nothing is written before flush
        assert store.flush() == 3
        assert not store.due()
        assert store.flush() == 0
        assert stored_ids(store.path) == [1, 2, 3]
        assert store.stats() == {
            "written": 3,
            "pending": 0,
            "pruned": 0,
            "write_errors": 0,
            "dropped": 0,
            "invalid": 0,
            "last_error": None,
            "path": str(tmp_path / "r.sqlite"),
            "rows": 3,
        }


def test_due_by_age_of_the_oldest_row(tmp_path: Path) -> None:
    with ResultStore(config(tmp_path / "r.sqlite", batch_rows=100, batch_ms=20)) as store:
        store.add(envelope(1))
        deadline = time.monotonic() + 10
        while not store.due() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store.due()
        assert store.flush() == 1


def test_flush_splits_a_backlog_into_batch_rows_transactions(tmp_path: Path) -> None:
    with ResultStore(config(tmp_path / "r.sqlite", batch_rows=4)) as store:
        for i in range(1, 11):
            store.add(envelope(i))
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        assert store.flush() == 10
        store._conn.set_trace_callback(None)
        assert [s for s in statements if not s.startswith("INSERT")] == ["BEGIN IMMEDIATE", "COMMIT"] * 3
        assert len([s for s in statements if s.startswith("INSERT")]) == 10
        assert stored_ids(store.path) == list(range(1, 11))


def test_malformed_envelopes_are_counted_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with ResultStore(config(tmp_path / "r.sqlite")) as store:
        store.add("not a dict")  # type: ignore[arg-type]
        store.add({**envelope(1), "camera": None})
        store.add({**envelope(2), "finished_at": "yesterday"})
        store.add({**envelope(3), "pass": "yes"})
        store.add({**envelope(4), "tools": {"x": object()}})
        store.add(envelope(5))
        assert store.flush() == 1
        assert store.stats()["invalid"] == 5
    messages = [r.getMessage() for r in caplog.records]
    assert "result store: result not stored: a result envelope is a dict, got str" in messages
    assert "result store: result not stored: camera must be a non-empty string, got None" in messages
    assert "result store: result not stored: finished_at must be a number, got 'yesterday'" in messages
    assert "result store: result not stored: pass must be true or false, got 'yes'" in messages


def test_close_flushes_and_later_adds_are_counted(tmp_path: Path) -> None:
    store = ResultStore(config(tmp_path / "r.sqlite"))
    store.add(envelope(1))
    store.add(envelope(2))
    store.close()
    store.close()  # idempotent
    assert stored_ids(tmp_path / "r.sqlite") == [1, 2]
    store.add(envelope(3))
    assert store.flush() == 0
    assert store.stats()["dropped"] == 1


# --- retention ----------------------------------------------------------------------------------------


def test_retention_by_days(tmp_path: Path) -> None:
    now = T0 + 30 * DAY
    ages = {1: 10.0, 2: 8.0, 3: 7.01, 4: 6.99, 5: 1.0, 6: 0.0}  # result_id: days before now
    with ResultStore(config(tmp_path / "r.sqlite", retention_days=7)) as store:
        for rid, age in ages.items():
            store.add(envelope(rid, finished_at=now - age * DAY))
        store.flush()
        assert store.prune(now) == 3
        assert store.prune(now) == 0
        assert stored_ids(store.path) == [4, 5, 6]
        assert store.stats()["pruned"] == 3
        assert store.stats()["rows"] == 3


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    with ResultStore(config(tmp_path / "r.sqlite", retention_days=0)) as store:
        store.add(envelope(1, finished_at=1.0))
        store.flush()
        assert store.prune(T0) == 0
        assert stored_ids(store.path) == [1]


def test_max_rows_deletes_the_oldest(tmp_path: Path) -> None:
    with ResultStore(config(tmp_path / "r.sqlite", max_rows=5)) as store:
        for i in range(1, 13):
            store.add(envelope(i))
        store.flush()
        assert store.prune(T0) == 7
        assert stored_ids(store.path) == [8, 9, 10, 11, 12]
        assert store.prune(T0) == 0
        assert store.stats()["rows"] == 5


def test_store_ids_are_never_reused_across_runs_and_pruning(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(config(path, max_rows=1)) as store:  # run 1: result ids 1, 2
        store.add(envelope(1))
        store.add(envelope(2))
        store.flush()
        store.prune(T0)
    with ResultStore(config(path, max_rows=1)) as store:  # run 2: result ids restart at 1
        assert store.stats()["rows"] == 1
        store.add(envelope(1, finished_at=T0 + 100))
        store.flush()
        store.prune(T0)
    with StoreReader(path) as r:
        assert [(row["id"], row["result"]["result_id"]) for row in r.query()] == [(3, 1)]


# --- reading ------------------------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Path]:
    """12 results over 2 cameras: ids 1..12; every 3rd fails; id 6 and 12 are errors."""
    path = tmp_path / "r.sqlite"
    with ResultStore(config(path)) as store:
        for i in range(1, 13):
            error = "LENS_TIMEOUT" if i % 6 == 0 else None
            store.add(envelope(i, camera=f"cam{i % 2}", passed=i % 3 != 0, error=error))
    yield path


def test_query_pages_by_store_id(filled: Path) -> None:
    with StoreReader(filled) as r:
        page1 = r.query(since_id=0, limit=5)
        assert [row["id"] for row in page1] == [1, 2, 3, 4, 5]
        assert page1[0] == {"id": 1, "result": envelope(1, camera="cam1")}
        page2 = r.query(since_id=page1[-1]["id"], limit=5)
        assert [row["id"] for row in page2] == [6, 7, 8, 9, 10]
        assert page2[0]["result"]["error"] == {"code": "LENS_TIMEOUT", "message": "LENS_TIMEOUT on result 6"}
        assert [row["id"] for row in r.query(since_id=10, limit=5)] == [11, 12]
        assert r.query(since_id=12) == []
        assert [row["id"] for row in r.query(since_id=-5, limit=2)] == [1, 2]


def test_query_filters(filled: Path) -> None:
    with StoreReader(filled) as r:

        def ids(**kw: Any) -> list[int]:
            return [row["id"] for row in r.query(**kw)]

        assert ids(passed=False) == [3, 6, 9, 12]
        assert ids(passed=True) == [1, 2, 4, 5, 7, 8, 10, 11]
        assert ids(camera="cam0") == [2, 4, 6, 8, 10, 12]
        assert ids(camera="cam0", passed=False) == [6, 12]
        assert ids(camera="cam1", passed=False, since_id=3) == [9]
        assert ids(camera="cam1", passed=True, limit=2) == [1, 5]
        assert ids(camera="nope") == []
        assert ids(since_ts=T0 + 4, until_ts=T0 + 7) == [4, 5, 6]
        assert ids(since_ts=T0 + 11) == [11, 12]


def test_query_limit_is_clamped(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(config(path, batch_rows=2000)) as store:
        for i in range(1, 1006):
            store.add(envelope(i))
    with StoreReader(path) as r:
        assert len(r.query(limit=0)) == 1
        assert len(r.query(limit=-3)) == 1
        assert len(r.query(limit=5000)) == 1000
        assert r.query(limit=5000)[-1]["id"] == 1000
        assert r.count() == 1005


def test_latest_and_count(filled: Path) -> None:
    with StoreReader(filled) as r:
        assert r.count() == 12
        latest = r.latest()
        assert latest is not None and latest["id"] == 12
        cam1 = r.latest("cam1")
        assert cam1 is not None and (cam1["id"], cam1["result"]["camera"]) == (11, "cam1")
        assert r.latest("nope") is None


def test_reader_of_a_missing_store_is_empty_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "later" / "r.sqlite"
    with StoreReader(path) as r:
        assert (r.query(), r.latest(), r.count()) == ([], None, 0)
        assert not path.exists()  # reading never creates the file
        with ResultStore(config(path)) as store:
            store.add(envelope(1))
        assert [row["id"] for row in r.query()] == [1]


def test_reader_of_an_empty_or_junk_file(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").touch()
    with StoreReader(tmp_path / "empty.sqlite") as r:
        assert (r.query(), r.latest(), r.count()) == ([], None, 0)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database, " * 64)
    junk = StoreReader(tmp_path / "junk.sqlite")
    with pytest.raises(StoreError, match=r"junk.sqlite: file is not a database"):
        junk.query()
    junk.close()


def _read_in_step(path: str, step: int, steps: int, conn: Connection) -> None:
    """Child process: page through the store with a small limit; after each `step` results, report
    what was read so far and wait for the next step to be written."""
    seen: list[tuple[int, int]] = []
    with StoreReader(path) as reader:
        for k in range(1, steps + 1):
            deadline = time.monotonic() + 30
            while len(seen) < k * step and time.monotonic() < deadline:
                since = seen[-1][0] if seen else 0
                rows = reader.query(since_id=since, limit=37)
                seen.extend((row["id"], row["result"]["result_id"]) for row in rows)
                if not rows:
                    time.sleep(0.002)
            conn.send(seen)
    conn.close()


def test_reader_in_another_process_while_the_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    step, steps = 50, 6
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_read_in_step, args=(str(path), step, steps, there))
    child.start()  # before the store exists: the reader waits for it
    there.close()
    try:
        with ResultStore(config(path, batch_rows=step)) as store:
            for k in range(1, steps + 1):
                for i in range((k - 1) * step + 1, k * step + 1):
                    store.add(envelope(i))
                assert store.flush() == step
                assert here.poll(30), f"the reader did not report step {k}"
                assert here.recv() == [(i, i) for i in range(1, k * step + 1)]
    finally:
        child.join(30)
        here.close()
    assert child.exitcode == 0


def test_reader_after_the_writer_closed(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(config(path)) as store:
        store.add(envelope(1))
    assert not Path(f"{path}-wal").exists()  # the last connection checkpointed and removed it
    with StoreReader(path) as r:
        assert [row["id"] for row in r.query()] == [1]


# --- failing writes -------------------------------------------------------------------------------------


def test_locked_database_keeps_rows_pending_and_writes_them_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "r.sqlite"
    with ResultStore(config(path, batch_rows=2), busy_timeout_ms=50) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        for i in range(1, 4):
            store.add(envelope(i))
        assert store.flush() == 0
        failed_at = time.monotonic()
        stats = store.stats()
        assert (stats["written"], stats["pending"], stats["write_errors"]) == (0, 3, 1)
        assert stats["last_error"] == "write: database is locked"
        due = store.due()
        if time.monotonic() - failed_at < RETRY_MIN_S:
            assert not due  # retried after a delay, not on every turn of the outputs loop
        assert store.flush() == 0
        assert store.stats()["write_errors"] == 2
        other.execute("ROLLBACK")
        other.close()
        assert store.flush() == 3
        assert (store.stats()["pending"], store.stats()["dropped"]) == (0, 0)
        assert stored_ids(path) == [1, 2, 3]
    logged = [r.getMessage() for r in caplog.records if r.name == "lens.store"]
    assert len([m for m in logged if "write failed (database is locked)" in m]) == 1  # once, not per retry
    assert any("writing again (2 write errors, 0 dropped so far)" in m for m in logged)


def test_pending_rows_are_bounded_and_the_oldest_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    cap = MAX_PENDING_BATCHES * 1
    with ResultStore(config(path, batch_rows=1), busy_timeout_ms=20) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        for i in range(1, cap + 6):
            store.add(envelope(i))
        assert store.flush() == 0
        assert (store.stats()["pending"], store.stats()["dropped"]) == (cap, 5)
        other.execute("ROLLBACK")
        other.close()
        assert store.flush() == cap
        assert stored_ids(path) == list(range(6, cap + 6))


def test_full_filesystem_keeps_rows_pending_and_loses_nothing(tmpfs: Path) -> None:
    path = tmpfs / "r.sqlite"
    with ResultStore(config(path, batch_rows=1000)) as store:
        store.add(envelope(1))
        assert store.flush() == 1
        filler = fill(tmpfs)
        big = {"blob": "x" * 2000}
        for i in range(2, 202):
            store.add({**envelope(i), "tools": big})
        assert store.flush() == 0
        stats = store.stats()
        assert (stats["pending"], stats["write_errors"]) == (200, 1)
        assert stats["last_error"] == "write: database or disk is full"
        filler.unlink()
        assert store.flush() == 200
        assert store.stats()["pending"] == 0
    assert stored_ids(path) == list(range(1, 202))
