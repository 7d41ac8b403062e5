"""POSIX shared-memory segments under /dev/shm, named per run, with stale-run cleanup.

Segments are plain files in /dev/shm mapped with mmap. We do not use
multiprocessing.shared_memory: its resource tracker unlinks segments when an attaching process
exits (Python 3.11), which is wrong for a ring that outlives a restarted worker. Ownership is
explicit instead: the supervisor unlinks everything with its run prefix at exit, and removes the
segments of runs whose supervisor process is dead at the next start.

Name: lens_<supervisor pid>_<token>_<what>. The pid makes a dead run recognisable.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import psutil

SHM_DIR = Path("/dev/shm")
_NAME = re.compile(r"^lens_(\d+)_([0-9a-f]+)_")


def new_run_prefix() -> str:
    """A prefix unique to this run: lens_<pid>_<token>."""
    return f"lens_{os.getpid()}_{secrets.token_hex(3)}"


class Segment:
    """One mapped shared-memory file. Create it (owner) or attach to it by name."""

    def __init__(self, name: str, size: int = 0, create: bool = False) -> None:
        self.name = name
        self.path = SHM_DIR / name
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            else:
                size = os.fstat(fd).st_size
            self.size = size
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.buf = memoryview(self._mm)

    def close(self) -> None:
        """Unmap. Views over `buf` must be gone first (numpy arrays keep the export alive)."""
        try:
            self.buf.release()
            self._mm.close()
        except BufferError:
            # A numpy view still references the map; it goes away with the process.
            pass

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _run_alive(pid: int, path: Path) -> bool:
    """True if process `pid` exists and is older than `path` (a reused pid is not the owner)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
        made = path.stat().st_mtime
    except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError):
        return False
    return started <= made + 1.0


def remove_segments(prefix: str) -> list[str]:
    """Unlink every segment whose name starts with `prefix`; returns their names."""
    removed = []
    for path in SHM_DIR.glob(f"{prefix}*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


def clean_stale() -> list[str]:
    """Remove segments and run folders of lens runs whose supervisor is no longer alive."""
    removed: list[str] = []
    for path in SHM_DIR.glob("lens_*"):
        m = _NAME.match(path.name)
        if m and not _run_alive(int(m.group(1)), path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    for path in Path(tempfile.gettempdir()).glob("lens_*"):
        m = _NAME.match(path.name + "_")
        if m and path.is_dir() and not _run_alive(int(m.group(1)), path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def run_dir(prefix: str) -> Path:
    """Per-run folder for ipc:// sockets; removed with the run."""
    path = Path(tempfile.gettempdir()) / prefix
    path.mkdir(mode=0o700, exist_ok=True)
    return path
