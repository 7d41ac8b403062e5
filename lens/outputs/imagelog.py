"""The image log (SPEC §5): JPEGs of inspections on disk, bounded by size and age, paused while the
disk is fuller than a guard threshold.

Layout: `<dir>/<YYYY-MM-DD>/<camera>/<YYYYmmdd-HHMMSS.ffffff>_r<result_id>_<pass|fail|error>.jpg`,
dates and times in UTC from the result's `finished_at`. Files are written under a temporary name
and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from lens.config.outputs import ImageLogOutput

log = logging.getLogger("lens.imagelog")

EVENT_KIND = "image_log"
MB = 1024 * 1024
_TMP_SUFFIX = ".tmp"
_NAME = re.compile(r"^(\d{8}-\d{6}\.\d{6})_r(-?\d+)_(pass|fail|error)\.jpg$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Image(NamedTuple):
    """One image in the log's index: its time (the result's finished_at), path and size."""

    at: float
    path: str
    size: int


def _disk_pct(path: str) -> float:
    return float(psutil.disk_usage(path).percent)


def outcome(env: dict[str, Any]) -> str:
    """`error` for an error result, else `pass` or `fail`."""
    if env.get("error"):
        return "error"
    return "pass" if env.get("pass") is True else "fail"


def image_path(root: str | Path, env: dict[str, Any]) -> Path:
    """Where the image of result envelope `env` is logged under `root`; ValueError naming a bad field."""
    camera, result_id, finished_at = env.get("camera"), env.get("result_id"), env.get("finished_at")
    if not isinstance(camera, str) or not camera:
        raise ValueError(f"camera must be a non-empty string, got {camera!r}")
    if isinstance(result_id, bool) or not isinstance(result_id, int):
        raise ValueError(f"result_id must be an integer, got {result_id!r}")
    if isinstance(finished_at, bool) or not isinstance(finished_at, int | float):
        raise ValueError(f"finished_at must be a number, got {finished_at!r}")
    try:
        at = datetime.fromtimestamp(finished_at, UTC)
    except (OverflowError, OSError, ValueError) as e:
        raise ValueError(f"finished_at {finished_at!r} is not a time: {e}") from None
    folder = _UNSAFE.sub("_", camera).lstrip(".") or "_"
    name = f"{at:%Y%m%d-%H%M%S.%f}_r{result_id}_{outcome(env)}.jpg"
    return Path(root) / f"{at:%Y-%m-%d}" / folder / name


def _name_time(name: str) -> float | None:
    m = _NAME.match(name)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y%m%d-%H%M%S.%f").replace(tzinfo=UTC).timestamp()


class ImageLog:
    """Writes, bounds and guards the image log. One thread (the outputs loop) calls every method;
    no method raises on an OS error: failures are counted, logged once per kind, and raised as an
    `image_log` event.

    `disk_usage(path)` returns the percent used of the filesystem holding `path` (default psutil);
    it is called at most every `guard_check_s` by `write`, and on every `maintain`.

    Events, as `on_event("image_log", fields)`; fields always hold `state`, `disk_pct`, `guard_pct`
    and `dir`: `state` `paused` (the disk went above the guard), `resumed` (back below it), or
    `error` (with `error`: the kind, e.g. `ENOSPC`, `EACCES`, `invalid`, and `message`), raised
    once per kind until a write succeeds again.
    """

    def __init__(
        self,
        cfg: ImageLogOutput,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        disk_usage: Callable[[str], float] | None = None,
        guard_check_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.root = Path(cfg.dir)
        self._on_event = on_event
        self._disk_usage = disk_usage or _disk_pct
        self._guard_check_s = guard_check_s
        self._checked_at = -float("inf")
        self._index: deque[Image] = deque()
        self._logged: set[str] = set()  # failure kinds logged since the last success
        self.written = self.bytes = self.removed = 0
        self.skipped_policy = self.skipped_guard = self.errors = 0
        self.paused = False
        self.disk_pct: float | None = None
        self.last_error: str | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._error("mkdir", e)
        self._scan()
        self.check_guard()

    # --- policy and guard -------------------------------------------------------------------------

    def wants(self, env: dict[str, Any]) -> bool:
        """Whether the keep policy logs this result's image (`failed` includes error results)."""
        if self.cfg.keep == "all":
            return True
        if self.cfg.keep == "failed":
            return env.get("pass") is not True or bool(env.get("error"))
        return False

    def check_guard(self) -> bool:
        """Measure the disk now, pause or resume (one event per change); return True while paused."""
        self._checked_at = time.monotonic()
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            pct = float(self._disk_usage(str(probe)))
        except OSError as e:
            self._error("disk_usage", e)
            return self.paused
        self.disk_pct = pct
        guard = self.cfg.disk_guard_pct
        if not self.paused and pct > guard:
            self.paused = True
            log.warning("image log %s paused: disk %.1f%% full, guard %.1f%%", self.root, pct, guard)
            self._emit("paused")
        elif self.paused and pct < guard:
            self.paused = False
            log.warning("image log %s resumed: disk %.1f%% full, guard %.1f%%", self.root, pct, guard)
            self._emit("resumed")
        return self.paused

    # --- writing ----------------------------------------------------------------------------------

    def write(self, env: dict[str, Any], jpeg: bytes) -> str | None:
        """Log `jpeg` as the image of `env`; return its path, or None when skipped (policy, disk guard)
        or failed (counted in `errors`)."""
        if not self.wants(env):
            self.skipped_policy += 1
            return None
        if time.monotonic() - self._checked_at >= self._guard_check_s:
            self.check_guard()
        if self.paused:
            self.skipped_guard += 1
            return None
        try:
            path = image_path(self.root, env)
            if not isinstance(jpeg, bytes | bytearray | memoryview) or bytes(jpeg[:2]) != b"\xff\xd8":
                raise ValueError("the image is not JPEG bytes (no FF D8 start-of-image marker)")
        except ValueError as e:
            self._error("invalid", e)
            return None
        tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(jpeg)
            os.replace(tmp, path)
        except OSError as e:
            self._discard(tmp)
            self._error(errno.errorcode.get(e.errno or 0, type(e).__name__), e)
            return None
        self._logged.clear()
        self._add(Image(float(env["finished_at"]), str(path), len(jpeg)))
        self.written += 1
        self._evict_size()
        return str(path)

    def maintain(self, now: float | None = None) -> None:
        """Re-check the disk guard, remove images older than max_age_days (finished_at before
        `now - max_age_days`, `now` default time.time()) and the oldest while over max_mb."""
        self.check_guard()
        if self.cfg.max_age_days > 0:
            cutoff = (time.time() if now is None else now) - self.cfg.max_age_days * 86400.0
            while self._index and self._index[0].at < cutoff:
                self._remove(self._index.popleft())
        self._evict_size()

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "bytes": self.bytes,
            "files": len(self._index),
            "removed": self.removed,
            "skipped_policy": self.skipped_policy,
            "skipped_guard": self.skipped_guard,
            "errors": self.errors,
            "paused": self.paused,
            "disk_pct": self.disk_pct,
            "last_error": self.last_error,
            "dir": str(self.root),
        }

    # --- index ------------------------------------------------------------------------------------

    def _scan(self) -> None:
        """Index the images already on disk (once, at start); remove temporary files of a crash."""
        found: list[Image] = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                    self._discard(Path(path))
                    continue
                if not name.endswith(".jpg"):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # removed meanwhile
                at = _name_time(name)
                found.append(Image(st.st_mtime if at is None else at, path, st.st_size))
        found.sort()
        self._index.extend(found)
        self.bytes = sum(i.size for i in found)

    def _add(self, image: Image) -> None:
        if not self._index or image.at >= self._index[-1].at:
            self._index.append(image)  # the usual case: results arrive in time order
        else:
            self._index.insert(bisect.bisect_right(self._index, image.at, key=lambda i: i.at), image)
        self.bytes += image.size

    def _evict_size(self) -> None:
        cap = self.cfg.max_mb * MB
        while self._index and self.bytes > cap:
            self._remove(self._index.popleft())

    def _remove(self, image: Image) -> None:
        """Delete an image taken off the index, then its camera and day folders if emptied."""
        self.bytes -= image.size
        try:
            os.remove(image.path)
        except FileNotFoundError:
            pass  # removed by someone else: the index forgets it all the same
        except OSError as e:
            self._error("remove", e)
            return
        self.removed += 1
        folder = Path(image.path).parent
        for _ in range(2):  # <day>/<camera>, then <day>
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or already gone): leave it
            folder = folder.parent

    def _discard(self, tmp: Path) -> None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as e:
            log.warning("image log: cannot remove temporary file %s: %s", tmp, e)

    # --- failures and events ---------------------------------------------------------------------

    def _error(self, kind: str, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{kind}: {e}"
        if kind not in self._logged:
            self._logged.add(kind)
            log.error(
                "image log %s: %s: %s (further %s errors counted, not logged)", self.root, kind, e, kind
            )
            self._emit("error", error=kind, message=str(e))

    def _emit(self, state: str, **extra: Any) -> None:
        if self._on_event is None:
            return
        fields = {
            "state": state,
            "disk_pct": self.disk_pct,
            "guard_pct": self.cfg.disk_guard_pct,
            "dir": str(self.root),
            **extra,
        }
        try:
            self._on_event(EVENT_KIND, fields)
        except Exception:
            log.exception("image log: the event handler failed on %s", fields)
