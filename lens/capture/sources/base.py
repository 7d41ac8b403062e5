"""What a frame source is: something that can fill a given array with the next frame."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np


class SourceError(RuntimeError):
    """The source cannot deliver (cannot open, unreadable, gone). The message says which and why."""


class Source(ABC):
    """A frame source. `open()` returns the native (height, width); `read_into(out)` writes the next
    frame into `out` (the ring slot: shape (H, W) for gray or (H, W, 3) for BGR) and returns False at
    the end of a finite stream.

    `paced` sources (synthetic, files) have no clock of their own: with `fps: 0` they produce a frame
    only when the pipeline asks for one, so no frame is made just to be dropped.
    """

    paced = True
    fps: float = 0.0
    last_resized = False  # set by read_into when the frame had to be resized to the ring
    bad_files = 0  # inputs skipped because they could not be decoded

    @abstractmethod
    def open(self) -> tuple[int, int]: ...

    @abstractmethod
    def read_into(self, out: np.ndarray) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        return type(self).__name__


def fit_into(image: np.ndarray, out: np.ndarray) -> bool:
    """Write a decoded image (gray or BGR, any size) into `out`, converting channels and resizing as
    needed with no intermediate copy when the shapes already match. Returns True if it resized."""
    want_gray = out.ndim == 2
    is_gray = image.ndim == 2
    resized = image.shape[:2] != out.shape[:2]
    if resized:
        h, w = out.shape[:2]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if want_gray == is_gray:
        np.copyto(out, image)
    elif want_gray:
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=out)
    else:
        cv2.cvtColor(image, cv2.COLOR_GRAY2BGR, dst=out)
    return resized
