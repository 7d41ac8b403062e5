"""Capture process: one per camera. Opens the source and writes frames straight into the ring.

It never waits for a worker. A paced source (synthetic or file at `fps: 0`) produces a frame only
against a credit from the dispatcher; a timed source (`fps > 0`) produces at its own rate and the
dispatcher picks what it can inspect (latest frame wins). A live source (usb, rtsp, http) delivers
at its own pace: the capture takes its newest frame whenever one is ready.

Loss and recovery: a source that fails to open, or fails while reading (a live one also when it
delivers nothing for `stall_s`), is reopened with exponential backoff (0.5 s, x2, up to
`retry_max_s`). Its health goes online -> reconnecting (lost, trying again) -> offline (a reopen
failed) -> online; every change is an `event.camera` and sets the `health` gauge, and every reopen
after a loss counts in `reconnects`. The rest of the run is not disturbed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lens.capture.sources import Source, SourceError, make_source, target_size
from lens.capture.sources.stream import LiveSource
from lens.capture.sources.urls import mask_url
from lens.engine import msgs
from lens.engine.bus import pack, unpack
from lens.engine.lane import LaneClient
from lens.engine.process import LensProcess, RunContext
from lens.engine.ring import Ring, RingGeometry
from lens.engine.stats import CAM, HEALTH, Stats

log = logging.getLogger("lens.capture")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0  # sources without their own retry_max_s
LIVE_POLL_S = 0.1  # longest wait for a live frame before the loop looks at stop and credits again
_SUPERSEDED = CAM.get("superseded")  # per-camera counter of frames a live reader replaced, if kept


class CaptureProcess(LensProcess):
    role = "capture"

    def __init__(self, ctx: RunContext, index: int) -> None:
        super().__init__(ctx, f"capture-{ctx.config.cameras[index].id}")
        self.index = index

    def setup(self) -> None:
        self.cam = self.ctx.config.cameras[self.index]
        ident = msgs.capture_identity(self.index)
        self.lane = LaneClient(self.ctx.lane_path, ident, self.stop_event, self._hello)
        self.stats = Stats.attach(self.ctx.stats_name, self.ctx.cameras)
        self.row = self.stats.camera(self.index)
        self.ring: Ring | None = None
        self.source: Source | None = None
        self.live = False
        self.paced = False
        self.period = 0.0
        self.credits = 0
        self.health: str | None = None  # last health announced
        self.lost = False  # the source was online and failed: its next open is a reconnect
        self.backoff = BACKOFF_START_S
        self.backoff_max = float(getattr(self.cam.source, "retry_max_s", BACKOFF_MAX_S))
        self.retry_at = 0.0
        self.superseded_closed = 0  # superseded frames of live sources already closed
        self.lane.connect()

    # -- health ---------------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: object) -> None:
        self.lane.send((msgs.EVENT, kind.encode(), pack({"camera": self.cam.id, **fields})))

    def _hello(self) -> None:
        """Tell the dispatcher which ring this camera writes (on open, and on every connect: a
        restarted dispatcher learns it again and grants a fresh window)."""
        if self.ring is not None and self.source is not None:
            self.credits = 0
            self.lane.send((msgs.HELLO, pack([self.index, self.ring.name, self.paced])))

    def _set_health(self, state: str, **fields: Any) -> None:
        """Set the health gauge; announce the state (with `fields`) when it changes."""
        self.row[CAM["health"]] = HEALTH.index(state)
        if state != self.health:
            self.health = state
            self._event("camera", health=state, **fields)

    @property
    def superseded(self) -> int:
        current = self.source.superseded if isinstance(self.source, LiveSource) else 0
        return self.superseded_closed + current

    def _retry_later(self) -> None:
        self.retry_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff_max, self.backoff * 2)

    def _close_source(self) -> None:
        if self.source is not None:
            self.source.close()
            if isinstance(self.source, LiveSource):
                self.superseded_closed += self.source.superseded
            self.source = None

    def _lose(self, error: SourceError) -> None:
        """The open source failed: close it and try again after the backoff."""
        message = mask_url(str(error))
        self.row[CAM["source_errors"]] += 1
        self._close_source()
        self.lost = True
        log.error("%s: %s (reconnecting in %.1f s)", self.cam.id, message, self.backoff)
        self._retry_later()
        self._set_health("reconnecting", error=message, superseded=self.superseded)

    # -- open -----------------------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the source and (re)attach the ring; False (counted, announced) if it cannot open."""
        try:
            source = make_source(self.cam)
            if isinstance(source, LiveSource):
                source.cancel = self.stop_event  # a stop interrupts a slow open
            native = source.open()
        except SourceError as e:
            if self.stopping:
                return False
            message = mask_url(str(e))
            self.row[CAM["source_errors"]] += 1
            log.error("%s: %s (retry in %.1f s)", self.cam.id, message, self.backoff)
            self._retry_later()
            self._set_health("offline", error=message)
            return False
        h, w = target_size(self.cam, native)
        geometry = RingGeometry(self.cam.ring.slots, h, w, 1 if self.cam.capture.format == "gray" else 3)
        if self.ring is None or self.ring.geometry != geometry:
            if self.ring is not None:
                self.ring.close()
            self.ring = self._ring_for(geometry)
        seek = getattr(source, "seek", None)
        if seek is not None and self.ring.writes:
            seek(self.ring.writes)  # a restarted capture resumes the sequence
        self.source = source
        self.live = isinstance(source, LiveSource)
        self.paced = source.paced and source.fps == 0
        self.period = 1.0 / source.fps if source.fps > 0 else 0.0
        self.backoff = BACKOFF_START_S
        if self.lost:
            self.row[CAM["reconnects"]] += 1
            self.lost = False
        self._hello()
        log.info(
            "%s: %s -> ring %s (%dx%d %s, %d slots)",
            self.cam.id,
            source.describe(),
            self.ring.name,
            w,
            h,
            self.cam.capture.format,
            geometry.slots,
        )
        info = source.info if isinstance(source, LiveSource) else {}
        self._set_health(
            "online", source=source.describe(), reconnects=int(self.row[CAM["reconnects"]]), **info
        )
        return True

    def _ring_for(self, geometry: RingGeometry) -> Ring:
        """The camera's ring: reattach after a restart if the geometry still matches, else a new one."""
        gen = 0
        while True:
            name = self.ctx.ring_name(self.cam.id, gen)
            try:
                return Ring.create(name, geometry)
            except FileExistsError:
                ring = Ring.attach(name)
                if ring.geometry == geometry:
                    return ring
                ring.close()
                gen += 1

    # -- the loop -------------------------------------------------------------------------------------

    def _recv_credits(self, timeout_ms: int) -> None:
        if self.lane.poll(timeout_ms):
            for frames in self.lane.messages():
                if frames[0] == msgs.CREDIT:
                    self.credits += int(unpack(frames[1]))

    def _live_frame_ready(self) -> bool:
        """A live source has a new frame (waits up to LIVE_POLL_S); a failed one is lost here."""
        assert isinstance(self.source, LiveSource)
        try:
            return self.source.wait_frame(LIVE_POLL_S)
        except SourceError as e:
            self._lose(e)
            return False

    def loop(self) -> None:
        next_t = time.monotonic()
        while not self.stopping:
            if self.source is None:
                wait = self.retry_at - time.monotonic()
                if wait > 0:
                    self.stop_event.wait(wait)
                    continue
                if not self._open():
                    continue
                next_t = time.monotonic()
            if self.paced:
                if self.credits <= 0:
                    self._recv_credits(100)
                    continue
            else:
                wait = next_t - time.monotonic()
                self._recv_credits(max(0, int(wait * 1000)) if wait > 0 else 0)
                if wait > 0.0005:
                    continue
                if self.live and not self._live_frame_ready():
                    continue
                next_t = max(next_t + self.period, time.monotonic() - self.period)
            if not self._capture_one():
                return

    def _capture_one(self) -> bool:
        """Write one frame into the ring and announce it. False when a finite source has ended."""
        assert self.ring is not None and self.source is not None
        claim = self.ring.begin_write()
        if claim is None:
            self.row[CAM["dropped_ring_full"]] += 1
            if isinstance(self.source, LiveSource):
                self.source.skip()  # that frame is dropped; wait for the next one
            return True
        slot, view = claim
        bad_before = self.source.bad_files
        try:
            ok = self.source.read_into(view)
        except SourceError as e:
            self.ring.abort(slot)
            self._lose(e)
            return True
        if self.source.bad_files != bad_before:
            self.row[CAM["source_errors"]] += self.source.bad_files - bad_before
        if not ok:
            self.ring.abort(slot)
            log.info("%s: end of stream", self.cam.id)
            self.row[CAM["health"]] = HEALTH.index("ended")  # the dispatcher announces it
            self.health = "ended"
            self.lane.send((msgs.EOS, pack(self.index)))
            self.stop_event.wait()  # stay up (idle) until the run stops
            return False
        captured_at = time.time()
        frame_id = self.ring.writes
        seq = self.ring.commit(slot, frame_id, captured_at)
        if self.source.last_resized:
            self.row[CAM["resized"]] += 1
        if _SUPERSEDED is not None and self.live:
            self.row[_SUPERSEDED] = self.superseded
        self.row[CAM["captured"]] += 1
        self.credits -= 1
        self.lane.send((msgs.FRAME, pack([self.index, slot, seq, frame_id, captured_at])))
        return True

    def teardown(self) -> None:  # safe after a partial setup
        if getattr(self, "source", None) is not None:
            self._close_source()
        if getattr(self, "superseded_closed", 0):  # every source is closed by now
            log.info("%s: %d frames superseded by newer ones before capture", self.cam.id, self.superseded)
        if hasattr(self, "lane"):
            self.lane.close()
        if getattr(self, "ring", None) is not None:
            self.ring.close()
        if hasattr(self, "stats"):
            self.stats.close()
