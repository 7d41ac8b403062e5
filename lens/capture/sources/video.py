"""A video file read through OpenCV (FFmpeg backend), optionally looping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lens.capture.sources.base import Source, SourceError, fit_into


class VideoSource(Source):
    def __init__(self, path: str, loop: bool = True, fps: float = 0.0) -> None:
        self.path = Path(path)
        self.loop = loop
        self.fps = fps
        self.cap: cv2.VideoCapture | None = None
        self.scratch: np.ndarray | None = None
        self.last_resized = False

    def open(self) -> tuple[int, int]:
        if not self.path.is_file():
            raise SourceError(f"video source: {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"video source: OpenCV cannot open {self.path}")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"video source: {self.path} has no readable frame")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.cap = cap
        self.scratch = first
        return first.shape[0], first.shape[1]

    def read_into(self, out: np.ndarray) -> bool:
        assert self.cap is not None, "open() first"
        direct = out.ndim == 3 and self.scratch is not None and out.shape == self.scratch.shape
        for _attempt in range(2):
            # Decode straight into the ring slot when the geometry matches (no staging copy).
            ok, img = self.cap.read(out if direct else self.scratch)
            if ok and img is not None:
                if direct and img is not out:
                    np.copyto(out, img)
                elif not direct:
                    self.scratch = img
                    self.last_resized = fit_into(img, out)
                return True
            if not self.loop:
                return False
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        raise SourceError(f"video source: {self.path} stopped delivering frames")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def describe(self) -> str:
        return f"video {self.path} (loop={self.loop})"
