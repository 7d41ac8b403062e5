"""Images from a folder, in sorted order, optionally looping.

Each image is decoded once and kept in memory (up to `cache_mb`), so a looping folder replays
from memory instead of decoding PNGs again. Decoding is spread over `decode_threads` threads
(OpenCV releases the GIL while it decodes): when the source opens, every image that fits the cache
is decoded ahead in parallel, and images that do not fit are decoded a few frames ahead of use, so
a folder larger than the cache still reads at the speed of all cores, not of one.
A file that cannot be decoded is skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from lens.capture.sources.base import Source, SourceError, fit_into

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
log = logging.getLogger("lens.capture")


class FolderSource(Source):
    def __init__(
        self,
        path: str,
        pattern: str = "*",
        loop: bool = True,
        gray: bool = True,
        cache_mb: int = 256,
        fps: float = 0.0,
        decode_threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.pattern = pattern
        self.loop = loop
        self.flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        self.cache_budget = cache_mb << 20
        self.cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0
        self.fps = fps
        self.threads = decode_threads or os.cpu_count() or 1
        self.files: list[Path] = []
        self.index = 0
        self.bad_files = 0  # read by the capture process for its counters
        self.bad: set[int] = set()  # indices of files that cannot be decoded (counted once)
        self.last_resized = False
        self.pool: ThreadPoolExecutor | None = None
        self.ahead: dict[int, Future[np.ndarray | None]] = {}  # decodes started, by file index
        self.lock = threading.Lock()  # cache and bad-file accounting, shared with the decode threads

    def open(self) -> tuple[int, int]:
        if not self.path.is_dir():
            raise SourceError(f"folder source: {self.path} is not a directory")
        self.files = sorted(
            p for p in self.path.glob(self.pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise SourceError(f"folder source: no images matching {self.pattern!r} in {self.path}")
        for i in range(len(self.files)):
            first = self._decode(i)
            if first is not None:
                self._start_pool(i + 1)
                return first.shape[0], first.shape[1]
        raise SourceError(
            f"folder source: none of the {len(self.files)} images in {self.path} can be decoded"
        )

    def _start_pool(self, start: int) -> None:
        """Decode ahead, in parallel, the images after `start` that the cache can hold (estimated
        from the first image's size)."""
        if self.threads < 2 or len(self.files) < 2:
            return
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        fits = self.cache_budget // max(1, self.cached_bytes) if self.cached_bytes else 0
        for i in range(start, min(len(self.files), fits)):
            self.ahead[i] = self.pool.submit(self._decode, i)

    def _decode(self, i: int) -> np.ndarray | None:
        with self.lock:
            hit = self.cache.get(i)
            if hit is not None or i in self.bad:
                return hit
        img = cv2.imread(str(self.files[i]), self.flag)
        with self.lock:
            if img is None:
                if i not in self.bad:
                    self.bad.add(i)
                    self.bad_files += 1
                    log.warning("folder source: cannot decode %s, skipped", self.files[i])
                return None
            if i not in self.cache and self.cached_bytes + img.nbytes <= self.cache_budget:
                self.cache[i] = img
                self.cached_bytes += img.nbytes
        return img

    def _get(self, i: int) -> np.ndarray | None:
        """Image `i`: from the cache, from a decode started ahead, or decoded now. Then keep the next
        uncached images decoding ahead (one per thread)."""
        future = self.ahead.pop(i, None)
        img = future.result() if future is not None else self._decode(i)
        if self.pool is not None:
            n = len(self.files)
            for k in range(1, self.threads + 1):
                j = (i + k) % n if self.loop else i + k
                if j < n and j not in self.ahead and j not in self.cache and j not in self.bad:
                    self.ahead[j] = self.pool.submit(self._decode, j)
        return img

    def read_into(self, out: np.ndarray) -> bool:
        for _ in range(len(self.files)):
            if self.index >= len(self.files):
                if not self.loop:
                    return False
                self.index = 0
            img = self._get(self.index)
            self.index += 1
            if img is not None:
                self.last_resized = fit_into(img, out)
                return True
        raise SourceError(f"folder source: no decodable image left in {self.path}")

    def seek(self, n: int) -> None:
        self.index = n % len(self.files) if self.loop else min(n, len(self.files))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.ahead.clear()

    def describe(self) -> str:
        return f"folder {self.path} ({len(self.files)} images, loop={self.loop})"
