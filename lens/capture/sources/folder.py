"""Images from a folder, in sorted order, optionally looping.

Each image is decoded once and kept in memory (up to `cache_mb`), so a looping folder replays
from memory instead of decoding PNGs again; files that do not fit are decoded each time.
A file that cannot be decoded is skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
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
    ) -> None:
        self.path = Path(path)
        self.pattern = pattern
        self.loop = loop
        self.flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        self.cache_budget = cache_mb << 20
        self.cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0
        self.fps = fps
        self.files: list[Path] = []
        self.index = 0
        self.bad_files = 0  # read by the capture process for its counters
        self.bad: set[int] = set()  # indices of files that cannot be decoded (counted once)
        self.last_resized = False

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
                return first.shape[0], first.shape[1]
        raise SourceError(
            f"folder source: none of the {len(self.files)} images in {self.path} can be decoded"
        )

    def _decode(self, i: int) -> np.ndarray | None:
        hit = self.cache.get(i)
        if hit is not None or i in self.bad:
            return hit
        img = cv2.imread(str(self.files[i]), self.flag)
        if img is None:
            self.bad.add(i)
            self.bad_files += 1
            log.warning("folder source: cannot decode %s, skipped", self.files[i])
            return None
        if self.cached_bytes + img.nbytes <= self.cache_budget:
            self.cache[i] = img
            self.cached_bytes += img.nbytes
        return img

    def read_into(self, out: np.ndarray) -> bool:
        for _ in range(len(self.files)):
            if self.index >= len(self.files):
                if not self.loop:
                    return False
                self.index = 0
            img = self._decode(self.index)
            self.index += 1
            if img is not None:
                self.last_resized = fit_into(img, out)
                return True
        raise SourceError(f"folder source: no decodable image left in {self.path}")

    def seek(self, n: int) -> None:
        self.index = n % len(self.files) if self.loop else min(n, len(self.files))

    def describe(self) -> str:
        return f"folder {self.path} ({len(self.files)} images, loop={self.loop})"
