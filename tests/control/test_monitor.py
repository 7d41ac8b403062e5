"""HostMonitor against real processes: CPU and memory of live children, dead and zombie pids,
history paging, and camera fps from counters at injected times."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lens.control.monitor import MIB, HostMonitor, _hottest

BUSY = "import sys; print('ready', flush=True)\nwhile True: pass"
SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(120)"


def _spawn(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"  # started: its interpreter start-up is behind it
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


@pytest.fixture
def children() -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    busy = _spawn(BUSY)
    try:
        sleeper = _spawn(SLEEPER)
    except BaseException:
        _stop(busy)
        raise
    yield busy, sleeper
    _stop(busy)
    _stop(sleeper)


def _wait_cpu(pid: int, seconds: float, deadline_s: float = 20.0) -> None:
    """Wait until process `pid` has used `seconds` more CPU time than now."""
    proc = psutil.Process(pid)
    start = sum(proc.cpu_times()[:2])
    deadline = time.monotonic() + deadline_s
    while sum(proc.cpu_times()[:2]) - start < seconds:
        assert time.monotonic() < deadline, f"pid {pid} got no CPU for {deadline_s} s"
        time.sleep(0.02)


def test_sample_shape_and_host_figures(tmp_path: Path) -> None:
    mon = HostMonitor(str(tmp_path), keep=10)
    assert mon.latest() is None
    first = mon.sample({"control": os.getpid(), "worker-0": None}, {"cam0": 0}, now=100.0)
    assert list(first) == [
        "id", "at", "cpu_pct", "cpu_count", "load_1m", "memory", "disk", "temperature_c", "processes",
        "cameras",
    ]  # fmt: skip
    assert first["id"] == 1
    assert first["at"] == 100.0
    assert first["cpu_pct"] is None  # one reading is no rate
    assert first["cpu_count"] == psutil.cpu_count()
    assert first["load_1m"] >= 0
    vm = psutil.virtual_memory()
    assert first["memory"]["total_mb"] == round(vm.total / MIB, 1)
    assert 0 < first["memory"]["used_mb"] <= first["memory"]["total_mb"]
    assert 0 < first["memory"]["pct"] < 100
    disk, du = first["disk"], psutil.disk_usage(str(tmp_path))
    assert disk["path"] == str(tmp_path)
    assert disk["total_gb"] == round(du.total / (1 << 30), 2)
    assert 0 < disk["used_gb"] <= disk["total_gb"] and 0 < disk["pct"] <= 100
    expected_temp = (
        _hottest(psutil.sensors_temperatures()) if hasattr(psutil, "sensors_temperatures") else None
    )
    assert first["temperature_c"] == expected_temp
    me = first["processes"]["control"]
    assert me["pid"] == os.getpid() and me["alive"] is True and me["cpu_pct"] is None
    assert me["rss_mb"] > 0 and me["threads"] >= 1
    assert first["processes"]["worker-0"] == {
        "pid": None, "cpu_pct": None, "rss_mb": None, "threads": None, "alive": False
    }  # fmt: skip
    assert first["cameras"] == {"cam0": {"fps": None}}
    assert mon.latest() is first

    second = mon.sample({"control": os.getpid()}, {}, now=101.0)
    assert second["id"] == 2
    # the system rate exists once some CPU time has passed between the two readings
    assert second["cpu_pct"] is None or 0.0 <= second["cpu_pct"] <= 100.0
    assert second["processes"]["control"]["cpu_pct"] is not None
    stats = mon.stats()
    assert stats["samples"] == 2 and stats["kept"] == 2
    assert stats["errors"] == {"cpu": 0, "memory": 0, "disk": 0, "temperature": 0, "process": 0}
    assert stats["last_error"] is None
    assert stats["last_sample_ms"] > 0 and stats["max_sample_ms"] >= stats["last_sample_ms"]


def test_busy_child_reports_more_cpu_than_a_sleeper(children) -> None:
    busy, sleeper = children
    mon = HostMonitor("/", keep=4)
    procs = {"worker-0": busy.pid, "capture-cam0": sleeper.pid}
    first = mon.sample(procs, {})
    for name, pid in procs.items():
        p = first["processes"][name]
        assert p["pid"] == pid and p["alive"] is True and p["cpu_pct"] is None
        assert p["rss_mb"] > 0
        assert p["threads"] == 1

    _wait_cpu(busy.pid, 0.3)
    second = mon.sample(procs, {})
    busy_pct = second["processes"]["worker-0"]["cpu_pct"]
    sleeper_pct = second["processes"]["capture-cam0"]["cpu_pct"]
    assert busy_pct is not None and sleeper_pct is not None
    assert busy_pct > sleeper_pct, (busy_pct, sleeper_pct)
    assert sleeper_pct == 0.0
    assert second["cpu_pct"] is not None and 0.0 < second["cpu_pct"] <= 100.0
    assert second["processes"]["worker-0"]["rss_mb"] > 0


def test_dead_and_zombie_processes_are_not_alive() -> None:
    dead = _spawn(SLEEPER)
    zombie = _spawn(SLEEPER)
    try:
        mon = HostMonitor("/", keep=4)
        procs = {"worker-0": dead.pid, "worker-1": zombie.pid}
        assert all(p["alive"] for p in mon.sample(procs, {})["processes"].values())

        _stop(dead)
        zombie.kill()  # exits, but stays a zombie until waited for
        deadline = time.monotonic() + 10
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.02)

        gone = {"cpu_pct": None, "rss_mb": None, "threads": None, "alive": False}
        after = mon.sample(procs, {})["processes"]
        assert after == {"worker-0": {"pid": dead.pid, **gone}, "worker-1": {"pid": zombie.pid, **gone}}
        assert mon.sample(procs, {})["processes"] == after  # stays dead, no error counted
        assert mon.stats()["errors"]["process"] == 0
    finally:
        _stop(dead)
        _stop(zombie)


def test_a_new_pid_starts_a_new_cpu_baseline(children) -> None:
    busy, sleeper = children
    mon = HostMonitor("/", keep=4)
    mon.sample({"worker-0": busy.pid}, {})
    assert mon.sample({"worker-0": busy.pid}, {})["processes"]["worker-0"]["cpu_pct"] is not None
    restarted = mon.sample({"worker-0": sleeper.pid}, {})["processes"]["worker-0"]
    assert restarted["pid"] == sleeper.pid and restarted["alive"] is True
    assert restarted["cpu_pct"] is None  # first reading of this pid
    # one pid listed under two names is read once; both names get the same, separate figures
    shared = mon.sample({"a": sleeper.pid, "b": sleeper.pid}, {})["processes"]
    assert shared["a"] == shared["b"] and shared["a"] is not shared["b"]
    assert shared["a"]["cpu_pct"] == 0.0


def test_history_pages_by_id() -> None:
    mon = HostMonitor("/", keep=5)
    assert mon.history() == {"samples": [], "next_since": 0, "more": False}
    for i in range(8):
        mon.sample({}, {}, now=1000.0 + i)
    assert mon.latest()["id"] == 8

    def ids(page: dict) -> list[int]:
        return [s["id"] for s in page["samples"]]

    page = mon.history(since=0, limit=2)  # older than the oldest kept (4): starts there
    assert (ids(page), page["next_since"], page["more"]) == ([4, 5], 5, True)
    page = mon.history(since=5, limit=2)
    assert (ids(page), page["next_since"], page["more"]) == ([6, 7], 7, True)
    page = mon.history(since=7, limit=2)
    assert (ids(page), page["next_since"], page["more"]) == ([8], 8, False)
    assert mon.history(since=8) == {"samples": [], "next_since": 8, "more": False}
    assert mon.history(since=100) == {"samples": [], "next_since": 100, "more": False}
    assert ids(mon.history(since=-3)) == [4, 5, 6, 7, 8]
    assert ids(mon.history(since=4, limit=0)) == [5]  # clamped to 1
    assert ids(mon.history(since=0, limit=5000)) == [4, 5, 6, 7, 8]  # clamped to 1000
    assert [s["at"] for s in mon.history()["samples"]] == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]
    assert mon.stats()["samples"] == 8 and mon.stats()["kept"] == 5


def test_history_limit_is_clamped_to_1000() -> None:
    mon = HostMonitor("/", keep=1200)
    for i in range(1100):
        mon.sample({}, {}, now=float(i))
    page = mon.history(since=0, limit=5000)
    assert [s["id"] for s in page["samples"]] == list(range(1, 1001))
    assert (page["next_since"], page["more"]) == (1000, True)
    page = mon.history(since=page["next_since"], limit=5000)
    assert [s["id"] for s in page["samples"]] == list(range(1001, 1101))
    assert (page["next_since"], page["more"]) == (1100, False)


def test_camera_fps_from_counters() -> None:
    mon = HostMonitor("/", keep=10)
    assert mon.sample({}, {"cam0": 0, "cam1": 100}, now=10.0)["cameras"] == {
        "cam0": {"fps": None},
        "cam1": {"fps": None},
    }
    assert mon.sample({}, {"cam0": 50, "cam1": 100, "cam2": 7}, now=12.0)["cameras"] == {
        "cam0": {"fps": 25.0},
        "cam1": {"fps": 0.0},
        "cam2": {"fps": None},  # first seen
    }
    # cam0's counter went back (the run restarted): no rate; cam1 left the run
    assert mon.sample({}, {"cam0": 10, "cam2": 10}, now=14.0)["cameras"] == {
        "cam0": {"fps": None},
        "cam2": {"fps": 1.5},
    }
    assert mon.sample({}, {"cam0": 40, "cam1": 130, "cam2": 11}, now=18.0)["cameras"] == {
        "cam0": {"fps": 7.5},
        "cam1": {"fps": None},  # back again: a fresh baseline
        "cam2": {"fps": 0.25},
    }
    assert mon.sample({}, {"cam0": 41}, now=18.0)["cameras"] == {"cam0": {"fps": None}}  # no time passed
    assert mon.sample({}, {"cam0": 51}, now=21.0)["cameras"] == {"cam0": {"fps": 3.33}}


def test_disk_path_not_created_yet_reports_its_disk(tmp_path: Path) -> None:
    path = tmp_path / "var" / "images"
    disk = HostMonitor(str(path), keep=1).sample({}, {})["disk"]
    assert disk["path"] == str(path)
    assert disk["total_gb"] == round(psutil.disk_usage(str(tmp_path)).total / (1 << 30), 2)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"keep: must be a positive int"):
        HostMonitor("/", keep=0)
    with pytest.raises(ValueError, match=r"disk_path"):
        HostMonitor("", keep=1)
    mon = HostMonitor("/", keep=2)
    with pytest.raises(
        ValueError, match=r"processes\['worker-0'\]: pid must be a positive int or None, got -4"
    ):
        mon.sample({"worker-0": -4}, {})
    with pytest.raises(ValueError, match=r"processes\['worker-1'\]: .* got '12'"):
        mon.sample({"worker-1": "12"}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"processes\['x'\]: .* got True"):
        mon.sample({"x": True}, {})
    with pytest.raises(ValueError, match=r"cameras\['cam0'\]: captured must be a non-negative int, got 1.5"):
        mon.sample({}, {"cam0": 1.5})  # type: ignore[dict-item]
    assert mon.latest() is None  # nothing half-taken was kept


def test_hottest_temperature_reading() -> None:
    reading = namedtuple("reading", "label current high critical")
    assert _hottest({}) is None
    assert _hottest({"acpitz": []}) is None
    sensors = {
        "coretemp": [reading("Core 0", 45.0, 80.0, 95.0), reading("Core 1", 61.54, 80.0, 95.0)],
        "acpitz": [reading("", math.nan, None, None), reading("", None, None, None)],
        "nvme": [reading("Composite", 38, None, None)],
    }
    assert _hottest(sensors) == 61.5
