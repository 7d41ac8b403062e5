"""A local camera through OpenCV's V4L2 backend, by index (0) or device path (/dev/video0).

Width, height, frame rate and pixel format (fourcc) are requests: the camera picks the nearest mode it
has. The values it actually delivers are read back, shown by `describe()` and carried in `info` (the
capture's `event.camera` online event); the ring takes the actual frame size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lens.capture.sources.base import SourceError
from lens.capture.sources.stream import LiveSource

log = logging.getLogger("lens.capture")


def _fourcc_text(code: float) -> str:
    """The four characters of a V4L2 pixel format code ("" if the camera reports none)."""
    n = int(code)
    text = "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip("\0") else ""


class UsbSource(LiveSource):
    def __init__(
        self,
        device: int | str = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float = 0.0,
        fourcc: str | None = None,
        stall_s: float = 5.0,
    ) -> None:
        super().__init__(stall_s)  # no cap: the camera sets the pace
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device: int | str = device
        self.path = f"/dev/video{device}" if isinstance(device, int) else device
        self.requested: dict[str, Any] = {"width": width, "height": height, "fps": fps, "fourcc": fourcc}

    def _prepare(self) -> None:
        if not Path(self.path).exists():
            raise SourceError(
                f"usb source: {self.path} does not exist (no camera there; `v4l2-ctl --list-devices` "
                "lists the cameras this machine has)"
            )

    def _connect(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"usb source: cannot open {self.path} as a V4L2 camera (not a capture device, busy, "
                "or no permission)"
            )
        req = self.requested
        if req["fourcc"]:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*str(req["fourcc"])))
        if req["width"]:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(req["width"]))
        if req["height"]:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(req["height"]))
        if req["fps"]:
            cap.set(cv2.CAP_PROP_FPS, float(req["fps"]))
        return cap

    def _opened(self, cap: cv2.VideoCapture, first: np.ndarray) -> None:
        self.info = {
            "device": self.path,
            "width": int(first.shape[1]),
            "height": int(first.shape[0]),
            "fps": round(float(cap.get(cv2.CAP_PROP_FPS)), 2),
            "fourcc": _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)),
            "requested": {k: v for k, v in self.requested.items() if v},
        }
        req, got = self.requested, self.info
        differs = [k for k in ("width", "height", "fps", "fourcc") if req[k] and req[k] != got[k]]
        if differs:
            log.warning(
                "usb source %s: asked for %s, the camera gives %s",
                self.path,
                ", ".join(f"{k} {req[k]}" for k in differs),
                ", ".join(f"{k} {got[k]}" for k in differs),
            )

    def describe(self) -> str:
        if not self.info:
            return f"usb {self.path}"
        i, req = self.info, self.requested
        text = f"usb {self.path} {_mode(i['width'], i['height'], i['fps'], i['fourcc'])}"
        if any(req.values()):
            text += f" (requested {_mode(req['width'], req['height'], req['fps'], req['fourcc'])})"
        return text


def _mode(width: int | None, height: int | None, fps: float | None, fourcc: str | None) -> str:
    """`640x480 @ 30 fps MJPG`, leaving out what is not given."""
    parts: list[str] = []
    if width or height:
        parts.append(f"{width or 'auto'}x{height or 'auto'}")
    if fps:
        parts.append(f"@ {fps:g} fps")
    if fourcc:
        parts.append(fourcc)
    return " ".join(parts)
