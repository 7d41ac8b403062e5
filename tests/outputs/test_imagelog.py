"""The image log on real files: layout, keep policy, size and age bounds, the disk guard proven on a
really filling filesystem, and OS errors (a full disk, a folder that is a file) counted, never raised."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from lens.config.outputs import ImageLogOutput
from lens.outputs.imagelog import MB, ImageLog, image_path

T0 = datetime(2025, 11, 21, 21, 20, 0, 123456, tzinfo=UTC).timestamp()
DAY = 86400.0
Events = list[tuple[str, dict[str, Any]]]


def envelope(
    result_id: int, finished_at: float | None = None, passed: bool = False, error: bool = False
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "type": "inspection.result",
        "machine_id": "vm_001",
        "camera": "cam0",
        "result_id": result_id,
        "pass": passed and not error,
        "finished_at": T0 + result_id if finished_at is None else finished_at,
        "tools": {},
    }
    if error:
        env["error"] = {"code": "LENS_TIMEOUT", "message": "late"}
    return env


def jpeg(size: int = 1000) -> bytes:
    """`size` bytes starting with the JPEG start-of-image marker."""
    return b"\xff\xd8" + bytes(size - 2)


def config(root: Path, **kw: Any) -> ImageLogOutput:
    return ImageLogOutput(dir=str(root), **{"keep": "all", "max_age_days": 0, **kw})


def on_disk(root: Path) -> list[str]:
    """Every file under root, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --- layout and policy -------------------------------------------------------------------------------


def test_layout_and_atomic_write(tmp_path: Path) -> None:
    log = ImageLog(config(tmp_path / "img"))
    data = jpeg(777)
    path = log.write(envelope(1042, finished_at=T0), data)
    assert path == str(tmp_path / "img" / "2025-11-21" / "cam0" / "20251121-212000.123456_r1042_fail.jpg")
    assert Path(path).read_bytes() == data
    assert on_disk(tmp_path / "img") == ["2025-11-21/cam0/20251121-212000.123456_r1042_fail.jpg"]  # no temp
    assert image_path(tmp_path / "img", envelope(1042, finished_at=T0)) == Path(path)
    stats = log.stats()
    assert {k: stats[k] for k in ("written", "bytes", "files", "removed", "errors", "paused")} == {
        "written": 1,
        "bytes": 777,
        "files": 1,
        "removed": 0,
        "errors": 0,
        "paused": False,
    }


def test_camera_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    log = ImageLog(config(tmp_path / "img"))
    path = log.write({**envelope(1, finished_at=T0), "camera": "../../etc"}, jpeg())
    assert path == str(tmp_path / "img" / "2025-11-21" / "_.._etc" / "20251121-212000.123456_r1_fail.jpg")


@pytest.mark.parametrize(
    ("keep", "written", "skipped"),
    [("all", ["pass", "fail", "error"], 0), ("failed", ["fail", "error"], 1), ("none", [], 3)],
)
def test_keep_policy(tmp_path: Path, keep: str, written: list[str], skipped: int) -> None:
    log = ImageLog(config(tmp_path, keep=keep))
    envs = [envelope(1, passed=True), envelope(2), envelope(3, error=True)]
    paths = [log.write(env, jpeg()) for env in envs]
    assert [Path(p).stem.split("_")[-1] for p in paths if p is not None] == written
    assert [log.wants(env) for env in envs] == [o in written for o in ("pass", "fail", "error")]
    assert log.stats()["skipped_policy"] == skipped
    assert len(on_disk(tmp_path)) == len(written)


# --- bounds ---------------------------------------------------------------------------------------------


def test_size_cap_removes_the_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "img"
    size = 10_000
    log = ImageLog(config(root, max_mb=5.5 * size / MB))  # room for 5 images
    for rid in (1, 2, 3):  # the day before
        log.write(envelope(rid, finished_at=T0 - DAY + rid), jpeg(size))
    for rid in (5, 4, 6, 7, 8):  # 4 arrives after 5 but is older: removed before it
        log.write(envelope(rid), jpeg(size))
    assert [name.split("_")[1] for name in on_disk(root)] == ["r4", "r5", "r6", "r7", "r8"]
    assert not (root / "2025-11-20").exists()  # the emptied day folder went with its last image
    stats = log.stats()
    assert (stats["files"], stats["bytes"], stats["removed"], stats["written"]) == (5, 5 * size, 3, 8)


def test_a_restart_indexes_what_is_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "img"
    first = ImageLog(config(root))
    for rid in range(1, 9):
        first.write(envelope(rid), jpeg(1000))
    (root / "2025-11-21" / "cam0" / ".20251121-212009.123456_r9_fail.jpg.tmp").write_bytes(b"half")
    second = ImageLog(config(root, max_mb=3.5 * 1000 / MB))
    assert (second.stats()["files"], second.stats()["bytes"]) == (8, 8000)
    assert len(on_disk(root)) == 8  # the crash leftover is gone
    second.maintain()
    assert [name.split("_")[1] for name in on_disk(root)] == ["r6", "r7", "r8"]
    assert second.stats()["removed"] == 5


def test_age_limit(tmp_path: Path) -> None:
    root = tmp_path / "img"
    now = T0 + 10 * DAY
    log = ImageLog(config(root, max_age_days=1))
    for rid, age in enumerate([3.0, 2.0, 1.01, 0.99, 0.1], start=1):
        log.write(envelope(rid, finished_at=now - age * DAY), jpeg())
    log.maintain(now=now)
    assert [name.split("_")[1] for name in on_disk(root)] == ["r4", "r5"]
    assert sorted(p.name for p in root.iterdir()) == ["2025-11-30", "2025-12-01"]  # emptied days removed
    assert log.stats()["removed"] == 3
    log.maintain(now=now)
    assert log.stats()["removed"] == 3


def test_no_age_limit(tmp_path: Path) -> None:
    log = ImageLog(config(tmp_path, max_age_days=0))
    log.write(envelope(1, finished_at=86400.0), jpeg())
    log.maintain(now=T0)
    assert log.stats()["files"] == 1


# --- disk guard ----------------------------------------------------------------------------------------


def test_guard_below_current_usage_pauses_with_one_event(tmp_path: Path) -> None:
    usage = psutil.disk_usage(str(tmp_path)).percent
    if usage < 0.2:
        pytest.skip(f"the temp filesystem is {usage}% used: no guard below it to set")
    events: Events = []
    log = ImageLog(
        config(tmp_path / "img", disk_guard_pct=usage / 2), on_event=lambda k, e: events.append((k, e))
    )
    assert log.write(envelope(1), jpeg()) is None
    assert log.write(envelope(2), jpeg()) is None
    log.maintain()
    assert [(kind, e["state"]) for kind, e in events] == [("image_log", "paused")]
    assert events[0][1]["guard_pct"] == usage / 2
    assert events[0][1]["disk_pct"] > usage / 2
    assert events[0][1]["dir"] == str(tmp_path / "img")
    stats = log.stats()
    assert (stats["paused"], stats["skipped_guard"], stats["written"]) == (True, 2, 0)
    assert on_disk(tmp_path / "img") == []


def test_guard_resumes_by_itself_with_one_event(tmp_path: Path) -> None:
    pct = [50.0]
    calls: list[str] = []

    def usage(path: str) -> float:
        calls.append(path)
        return pct[0]

    events: Events = []
    log = ImageLog(
        config(tmp_path / "img", disk_guard_pct=90),
        on_event=lambda k, e: events.append((k, e)),
        disk_usage=usage,
        guard_check_s=3600,
    )
    assert log.write(envelope(1), jpeg()) is not None
    pct[0] = 97.0
    assert log.write(envelope(2), jpeg()) is not None  # not measured again within guard_check_s
    assert len(calls) == 1
    log.maintain()
    assert log.write(envelope(3), jpeg()) is None
    log.maintain()
    pct[0] = 90.0  # at the guard: still paused
    log.maintain()
    assert log.write(envelope(4), jpeg()) is None
    pct[0] = 80.0
    log.maintain()
    assert log.write(envelope(5), jpeg()) is not None
    assert len(calls) == 5
    assert calls[0] == str(tmp_path / "img")
    assert events == [
        ("image_log", {"state": "paused", "disk_pct": 97.0, "guard_pct": 90, "dir": str(tmp_path / "img")}),
        ("image_log", {"state": "resumed", "disk_pct": 80.0, "guard_pct": 90, "dir": str(tmp_path / "img")}),
    ]
    assert (log.stats()["skipped_guard"], log.stats()["written"]) == (2, 3)


def test_guard_on_a_really_filling_filesystem(tmpfs: Path) -> None:
    events: Events = []
    root = tmpfs / "img"
    log = ImageLog(
        config(root, disk_guard_pct=50), on_event=lambda k, e: events.append((k, e)), guard_check_s=0
    )
    assert log.write(envelope(1), jpeg(20_000)) is not None
    filler = tmpfs / "filler"
    filler.write_bytes(bytes(1_300_000))  # ~62% of 2 MiB
    assert log.write(envelope(2), jpeg(20_000)) is None
    assert log.write(envelope(3), jpeg(20_000)) is None
    assert [e["state"] for _, e in events] == ["paused"]
    assert events[0][1]["disk_pct"] > 50
    assert (log.stats()["paused"], log.stats()["skipped_guard"]) == (True, 2)
    filler.unlink()
    assert log.write(envelope(4), jpeg(20_000)) is not None
    assert [e["state"] for _, e in events] == ["paused", "resumed"]
    assert events[1][1]["disk_pct"] < 50
    assert [name.split("_")[1] for name in on_disk(root)] == ["r1", "r4"]


# --- failures --------------------------------------------------------------------------------------------


def test_a_full_disk_is_counted_not_raised(tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    events: Events = []
    root = tmpfs / "img"
    log = ImageLog(
        config(root, disk_guard_pct=100), on_event=lambda k, e: events.append((k, e)), guard_check_s=0
    )
    assert log.write(envelope(1), jpeg(1000)) is not None
    filler = tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as e:
            assert e.errno == 28  # ENOSPC
    assert log.write(envelope(2), jpeg(64_000)) is None
    assert log.write(envelope(3), jpeg(64_000)) is None
    assert on_disk(root) == ["2025-11-21/cam0/20251121-212001.123456_r1_fail.jpg"]  # no temp file left
    assert [(e["state"], e["error"]) for _, e in events] == [("error", "ENOSPC")]  # once per kind
    assert (log.stats()["errors"], log.stats()["written"]) == (2, 1)
    assert log.stats()["last_error"].startswith("ENOSPC: [Errno 28] No space left on device")
    assert len([r for r in caplog.records if "ENOSPC" in r.getMessage()]) == 1
    filler.unlink()
    assert log.write(envelope(4), jpeg(64_000)) is not None
    assert log.stats()["written"] == 2


def test_a_folder_that_is_a_file_is_counted_not_raised(tmp_path: Path) -> None:
    # root ignores permissions, so an unwritable folder is made by putting a file where it should be
    (tmp_path / "img").write_bytes(b"not a folder")
    events: Events = []
    log = ImageLog(config(tmp_path / "img"), on_event=lambda k, e: events.append((k, e)))
    assert log.write(envelope(1), jpeg()) is None
    assert log.write(envelope(2), jpeg()) is None
    assert [e["error"] for _, e in events] == ["mkdir", "ENOTDIR"]
    assert log.stats()["errors"] == 3
    log.maintain()
    assert (tmp_path / "img").read_bytes() == b"not a folder"


def test_bad_input_is_counted_not_raised(tmp_path: Path) -> None:
    log = ImageLog(config(tmp_path))
    assert log.write({**envelope(1), "camera": None}, jpeg()) is None
    assert log.write({**envelope(2), "finished_at": "now"}, jpeg()) is None
    assert log.write(envelope(3), b"GIF89a") is None
    assert log.write(envelope(4), "text") is None  # type: ignore[arg-type]
    assert log.stats()["errors"] == 4
    assert (
        log.stats()["last_error"] == "invalid: the image is not JPEG bytes (no FF D8 start-of-image marker)"
    )
    assert on_disk(tmp_path) == []


def test_a_failing_event_handler_does_not_stop_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(kind: str, event: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    log = ImageLog(config(tmp_path, disk_guard_pct=90), on_event=broken, disk_usage=lambda p: 99.0)
    assert log.stats()["paused"] is True
    assert any("the event handler failed" in r.getMessage() for r in caplog.records)


def test_disk_usage_failure_is_counted(tmp_path: Path) -> None:
    def usage(path: str) -> float:
        raise OSError(5, "Input/output error")

    log = ImageLog(config(tmp_path), disk_usage=usage)
    assert log.write(envelope(1), jpeg()) is not None  # unknown usage does not stop logging
    assert (log.stats()["errors"], log.stats()["disk_pct"]) == (1, None)
    assert os.path.exists(tmp_path / "2025-11-21")
