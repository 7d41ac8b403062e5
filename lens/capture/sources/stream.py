"""Live sources: network streams (rtsp, http MJPEG) through OpenCV's FFmpeg backend, and the base
they share with usb cameras.

A live source has its own clock. A reader thread takes every frame as it arrives and keeps only the
newest; `read_into` hands that one over. So a slow pipeline never works through stale frames queued
in FFmpeg or the driver: a frame replaced before anyone took it is counted in `superseded`.
Every wait is bounded and can be cancelled: `open()` by 3 x `stall_s` (connect and probe the stream,
then the first frame), `wait_frame` and `read_into` by `stall_s`. No frame for `stall_s`, or a stream
that ends, is a SourceError (the capture process then reconnects with backoff). FFmpeg's own open and
read timeouts are 2 x `stall_s`, so a reader blocked in FFmpeg always comes back.
"""

from __future__ import annotations

import os
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from lens.capture.sources.base import Source, SourceError, fit_into
from lens.capture.sources.urls import mask_url

if TYPE_CHECKING:
    from lens.engine.process import StopFlag

OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
LOW_DELAY = "fflags;nobuffer|flags;low_delay"  # no input buffering, decode without delay
POLL_S = 0.1  # how often a wait looks at `cancel`
OPEN_STALLS = 3  # open() waits this many stall_s for the first frame
FFMPEG_STALLS = 2  # FFmpeg's open (connect + probe) and read timeouts, in stall_s
CLOSE_WAIT_S = 1.0  # a reader still blocked in FFmpeg after this finishes (and releases) on its own
_env_lock = threading.Lock()  # OPENCV_FFMPEG_CAPTURE_OPTIONS is process-wide


class LiveSource(Source):
    """A source that delivers at its own pace through a reader thread (usb, rtsp, http).

    Subclasses implement `_connect()` (runs on the reader thread and owns the VideoCapture from then
    on) and may implement `_prepare()` (quick checks on the caller's thread) and `_opened()`.
    """

    paced = False

    def __init__(self, stall_s: float, fps: float = 0.0) -> None:
        self.stall_s = stall_s
        self.fps = fps  # a cap on what the capture takes; 0 = every frame the source delivers
        self.cancel: StopFlag | None = None  # set: stop waiting (the capture's stop event)
        self.info: dict[str, Any] = {}  # what was actually opened (size, fps, ...), for the online event
        self.superseded = 0  # frames replaced by a newer one before they were taken
        self.last_resized = False
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._frame: np.ndarray | None = None
        self._received = 0  # frames read by the reader thread
        self._taken = 0  # value of _received when a frame was last handed over
        self._last_frame_t = 0.0
        self._error: str | None = None

    # -- subclass hooks ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Checks that can fail at once, on the caller's thread (raise SourceError)."""

    @abstractmethod
    def _connect(self) -> cv2.VideoCapture:
        """Open the device or stream (on the reader thread); raise SourceError if it cannot."""

    def _opened(self, cap: cv2.VideoCapture, first: np.ndarray) -> None:
        """Called once with the first frame (on the reader thread): fill `info`."""

    # -- the source --------------------------------------------------------------------------------

    def open(self) -> tuple[int, int]:
        if self._thread is not None:
            raise RuntimeError("a live source is opened once; make a new one to reconnect")
        self._prepare()
        self._thread = threading.Thread(target=self._read_loop, name="lens-reader", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + OPEN_STALLS * self.stall_s
        with self._cond:
            while self._received == 0 and self._error is None and not self._cancelled():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(POLL_S, remaining))
            first, error = self._frame, self._error
        if first is not None:
            return first.shape[0], first.shape[1]
        self.close()
        if error is not None:
            raise SourceError(error)
        if self._cancelled():
            raise SourceError(f"{self.describe()}: stopped while opening")
        raise SourceError(f"{self.describe()}: no frame within {OPEN_STALLS * self.stall_s:g} s of opening")

    def wait_frame(self, timeout: float) -> bool:
        """True once a frame newer than the last one handed over is ready; False if none came within
        `timeout`. SourceError if the stream failed, or delivered nothing for `stall_s`."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._received == self._taken:
                if self._error is not None:
                    raise SourceError(self._error)
                now = time.monotonic()
                silent = now - self._last_frame_t
                if silent >= self.stall_s:
                    raise SourceError(f"{self.describe()}: no frame for {self.stall_s:g} s")
                if now >= end:
                    return False
                self._cond.wait(min(end - now, self.stall_s - silent))
        return True

    def read_into(self, out: np.ndarray) -> bool:
        """Write the newest frame into `out` (waiting up to `stall_s` for one newer than the last)."""
        if not self.wait_frame(self.stall_s):
            raise SourceError(f"{self.describe()}: no frame for {self.stall_s:g} s")
        with self._cond:
            assert self._frame is not None
            self.last_resized = fit_into(self._frame, out)
            self._taken = self._received
        return True

    def skip(self) -> None:
        """Drop the frame that is ready (the caller had nowhere to put it, and counts it)."""
        with self._cond:
            self._taken = self._received

    def close(self) -> None:
        self._closing.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT_S)

    @property
    def received(self) -> int:
        """Frames the reader thread has read so far."""
        return self._received

    # -- the reader thread ---------------------------------------------------------------------------

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _fail(self, message: str) -> None:
        with self._cond:
            if self._error is None:
                self._error = mask_url(message)
            self._cond.notify_all()

    def _read_loop(self) -> None:
        try:
            cap = self._connect()
        except SourceError as e:
            self._fail(str(e))
            return
        except cv2.error as e:
            self._fail(f"{self.describe()}: OpenCV error while opening: {e}")
            return
        try:
            spare: np.ndarray | None = None
            while not self._closing.is_set():
                ok, image = cap.read(spare) if spare is not None else cap.read()
                if not ok or image is None:
                    what = "stream ended or connection lost" if self._received else "opened but gave no frame"
                    self._fail(f"{self.describe()}: {what}")
                    return
                with self._cond:
                    if self._received == 0:
                        self._opened(cap, image)
                    elif self._received > self._taken:
                        self.superseded += 1
                    spare, self._frame = self._frame, image  # the consumer reads _frame under the lock
                    self._received += 1
                    self._last_frame_t = time.monotonic()
                    self._cond.notify_all()
        except cv2.error as e:
            self._fail(f"{self.describe()}: OpenCV error while reading: {e}")
        finally:
            cap.release()


class StreamSource(LiveSource):
    """An rtsp or http (MJPEG) stream. `url` may be a callable, resolved at open (it reads the
    password from the environment and raises SourceError if it cannot)."""

    def __init__(
        self,
        kind: Literal["rtsp", "http"],
        url: str | Callable[[], str],
        transport: Literal["tcp", "udp"] = "tcp",
        fps: float = 0.0,
        stall_s: float = 5.0,
    ) -> None:
        super().__init__(stall_s, fps)
        self.kind = kind
        self._url_source = url
        self.url: str | None = url if isinstance(url, str) else None
        self.transport = transport

    @property
    def options(self) -> str:
        """FFmpeg options (OPENCV_FFMPEG_CAPTURE_OPTIONS): low latency, and the RTSP transport."""
        return f"rtsp_transport;{self.transport}|{LOW_DELAY}" if self.kind == "rtsp" else LOW_DELAY

    def _prepare(self) -> None:
        if self.url is None:
            assert callable(self._url_source)
            self.url = self._url_source()

    def _connect(self) -> cv2.VideoCapture:
        assert self.url is not None
        ms = int(FFMPEG_STALLS * self.stall_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        with _env_lock:
            before = os.environ.get(OPTIONS_ENV)
            os.environ[OPTIONS_ENV] = self.options
            try:
                cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
            finally:
                if before is None:
                    del os.environ[OPTIONS_ENV]
                else:
                    os.environ[OPTIONS_ENV] = before
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.describe()}: cannot open the stream (refused, unreachable, wrong path or "
                "credentials, or not a video stream; FFmpeg's log line above says which)"
            )
        return cap

    def _opened(self, cap: cv2.VideoCapture, first: np.ndarray) -> None:
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.info = {"url": self.shown_url, "width": int(first.shape[1]), "height": int(first.shape[0])}
        if 0 < fps <= 1000:  # some RTSP servers report the RTP clock instead
            self.info["stream_fps"] = round(float(fps), 2)

    @property
    def shown_url(self) -> str:
        return mask_url(self.url) if self.url is not None else "(url not resolved yet)"

    def describe(self) -> str:
        return f"{self.kind} {self.shown_url}"
