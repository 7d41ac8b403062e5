"""Capture process: one per camera. Opens the source and writes frames straight into the ring.

It never waits for a worker. A paced source (synthetic or file at `fps: 0`) produces a frame only
against a credit from the dispatcher; a timed source (`fps > 0`) produces at its own rate and the
dispatcher picks what it can inspect (latest frame wins).
"""

from __future__ import annotations

import logging
import time

import zmq

from lens.capture.sources import Source, SourceError, make_source, target_size
from lens.engine import msgs
from lens.engine.bus import pack, unpack
from lens.engine.process import LensProcess, RunContext
from lens.engine.ring import Ring, RingGeometry
from lens.engine.stats import CAM, Stats

log = logging.getLogger("lens.capture")
BACKOFF_MAX_S = 30.0


class CaptureProcess(LensProcess):
    role = "capture"

    def __init__(self, ctx: RunContext, index: int) -> None:
        super().__init__(ctx, f"capture-{ctx.config.cameras[index].id}")
        self.index = index

    def setup(self) -> None:
        self.cam = self.ctx.config.cameras[self.index]
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, msgs.capture_identity(self.index))
        self.sock.connect(self.ctx.hub_endpoint)
        self.stats = Stats.attach(self.ctx.stats_name, self.ctx.cameras)
        self.row = self.stats.camera(self.index)
        self.ring: Ring | None = None
        self.source: Source | None = None
        self.credits = 0
        self.backoff = 0.5

    def _event(self, kind: str, **fields: object) -> None:
        self.sock.send_multipart((msgs.EVENT, kind.encode(), pack({"camera": self.cam.id, **fields})))

    def _open(self) -> bool:
        """Open the source and (re)attach the ring; False (counted, announced) if it cannot open."""
        try:
            source = make_source(self.cam)
            native = source.open()
        except SourceError as e:
            self.row[CAM["source_errors"]] += 1
            log.error("%s: %s (retry in %.1f s)", self.cam.id, e, self.backoff)
            self._event("camera", health="offline", error=str(e))
            return False
        h, w = target_size(self.cam, native)
        geometry = RingGeometry(self.cam.ring.slots, h, w, 1 if self.cam.capture.format == "gray" else 3)
        self.ring = self._ring_for(geometry)
        seek = getattr(source, "seek", None)
        if seek is not None and self.ring.writes:
            seek(self.ring.writes)  # a restarted capture resumes the sequence
        self.source = source
        self.paced = source.paced and source.fps == 0
        self.period = 1.0 / source.fps if source.fps > 0 else 0.0
        self.backoff = 0.5
        self.sock.send_multipart((msgs.HELLO, pack([self.index, self.ring.name, self.paced])))
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
        self._event("camera", health="online", source=source.describe())
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

    def _recv_credits(self, timeout_ms: int) -> None:
        if self.sock.poll(timeout_ms):
            while True:
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                if frames[0] == msgs.CREDIT:
                    self.credits += int(unpack(frames[1]))

    def loop(self) -> None:
        next_t = time.monotonic()
        while not self.stopping:
            if self.source is None:
                if not self._open():
                    self.stop_event.wait(self.backoff)
                    self.backoff = min(BACKOFF_MAX_S, self.backoff * 2)
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
                next_t = max(next_t + self.period, time.monotonic() - self.period)
            if not self._capture_one():
                return

    def _capture_one(self) -> bool:
        """Write one frame into the ring and announce it. False when a finite source has ended."""
        assert self.ring is not None and self.source is not None
        claim = self.ring.begin_write()
        if claim is None:
            self.row[CAM["dropped_ring_full"]] += 1
            return True
        slot, view = claim
        bad_before = self.source.bad_files
        try:
            ok = self.source.read_into(view)
        except SourceError as e:
            self.ring.abort(slot)
            self.row[CAM["source_errors"]] += 1
            log.error("%s: %s", self.cam.id, e)
            self._event("camera", health="reconnecting", error=str(e))
            self.source.close()
            self.source = None
            return True
        if self.source.bad_files != bad_before:
            self.row[CAM["source_errors"]] += self.source.bad_files - bad_before
        if not ok:
            self.ring.abort(slot)
            log.info("%s: end of stream", self.cam.id)
            self.sock.send_multipart((msgs.EOS, pack(self.index)))
            self.stop_event.wait()  # stay up (idle) until the run stops
            return False
        captured_at = time.time()
        frame_id = self.ring.writes
        seq = self.ring.commit(slot, frame_id, captured_at)
        if self.source.last_resized:
            self.row[CAM["resized"]] += 1
        self.row[CAM["captured"]] += 1
        self.credits -= 1
        self.sock.send_multipart((msgs.FRAME, pack([self.index, slot, seq, frame_id, captured_at])))
        return True

    def teardown(self) -> None:  # safe after a partial setup
        if getattr(self, "source", None) is not None:
            self.source.close()
        if hasattr(self, "sock"):
            self.sock.close(linger=0)
        if hasattr(self, "zctx"):
            self.zctx.term()
        if getattr(self, "ring", None) is not None:
            self.ring.close()
        if hasattr(self, "stats"):
            self.stats.close()
