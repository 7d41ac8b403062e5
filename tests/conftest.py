"""Suite-wide fixtures: one numba cache, and a leak check around every test."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
# One on-disk kernel cache for the whole suite (warmed once by `make test` via `lens warmup`).
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


@pytest.fixture(scope="session", autouse=True)
def _native_threads_started() -> Iterator[None]:
    """OpenCV starts its worker threads on its first parallel call, and numba a thread on its first
    kernel call; both keep them for the life of the process. Start them once, outside any test,
    so the leak check does not count them."""
    from native_tools import warmup

    cv2.connectedComponentsWithStats(np.ones((256, 256), np.uint8), connectivity=8, ltype=cv2.CV_32S)
    warmup()
    yield


def _infrastructure(p: psutil.Process) -> bool:
    """multiprocessing's resource tracker lives as long as the interpreter: not a leak."""
    try:
        return "resource_tracker" in " ".join(p.cmdline())
    except psutil.Error:
        return True


def _shm(pids: set[int] | None = None) -> set[str]:
    """lens segments in /dev/shm; with `pids`, only those created by those processes (a segment's
    name carries its creator's pid: lens_<pid>_<token>_...). Other runs on the machine are not ours."""
    names = {p.name for p in Path("/dev/shm").glob("lens_*")}
    if pids is None:
        return names
    return {n for n in names if n.split("_")[1].isdigit() and int(n.split("_")[1]) in pids}


class _Family:
    """Records the pids of this process's descendants while a test runs (they may be gone by its end)."""

    def __init__(self) -> None:
        self.pids = {os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="leak-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                self.pids.update(c.pid for c in me.children(recursive=True))

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join()
        return self.pids


def _listening() -> set[tuple[str, int]]:
    me = psutil.Process()
    return {(c.laddr.ip, c.laddr.port) for c in me.net_connections("inet") if c.status == psutil.CONN_LISTEN}


def _zmq_threads() -> int:
    # every live zmq.Context owns I/O threads; python-visible threads are checked separately
    return psutil.Process().num_threads() - threading.active_count()


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, whenever it gets to it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class Baseline:
    """What exists before a test: segments, listening sockets, zmq I/O threads."""

    shm: set[str]
    listening: set[tuple[str, int]]
    native_threads: int

    @classmethod
    def take(cls) -> Baseline:
        return cls(_shm(), _listening(), _zmq_threads())


def assert_no_leaks(
    before: Baseline, pids: set[int], exclude: Callable[[], set[int]] = frozenset
) -> None:
    """Fail the test if a child process (not in `exclude()`), a segment made by `pids`, a listening
    socket or a zmq context outlived it (waiting up to 5 s for them to go); kill and remove them."""
    deadline = time.monotonic() + 5.0
    while True:
        excluded = exclude()
        kids = [
            p
            for p in psutil.Process().children(recursive=True)
            if p.pid not in excluded and _running(p) and not _infrastructure(p)
        ]
        leaked_shm = _shm(pids) - before.shm
        leaked_listen = _listening() - before.listening
        native_threads = _zmq_threads() - before.native_threads
        if not (kids or leaked_shm or leaked_listen or native_threads > 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if kids:
        problems.append(f"child processes left running: {[(p.pid, p.name()) for p in kids]}")
        for p in kids:
            p.kill()
    if leaked_shm:
        problems.append(f"shared-memory segments left in /dev/shm: {sorted(leaked_shm)}")
        for name in leaked_shm:
            (Path("/dev/shm") / name).unlink(missing_ok=True)
    if leaked_listen:
        problems.append(f"listening sockets left open: {sorted(leaked_listen)}")
    if native_threads > 0:
        problems.append(f"{native_threads} native thread(s) left (an unclosed zmq.Context?)")
    if problems:
        pytest.fail("leak check: " + "; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test that leaves a child process, a /dev/shm segment, a listening socket or a
    ZeroMQ context (its I/O threads) behind."""
    before = Baseline.take()
    family = _Family()
    yield
    assert_no_leaks(before, family.stop())
