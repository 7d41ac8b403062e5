"""The dispatcher's side of event triggers (manual, cron, serial): firing, frames for them,
deadlines and error results. A mixin of `Dispatcher`: it uses the dispatcher's state (cameras,
workers, sockets, counters); the per-camera bookkeeping itself is `lens.triggers.events`."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import zmq

from lens.engine import msgs
from lens.engine.bus import pack
from lens.engine.envelope import IMAGE_ALL, LENS_OVERRUN, Job, error_envelope
from lens.engine.lane import LaneGone, LaneServer
from lens.engine.stats import CAM, RUN
from lens.triggers.camera import CameraState
from lens.triggers.events import Failure, Fired

log = logging.getLogger("lens.dispatcher")


class EventDispatch:
    # state and helpers of the Dispatcher this is mixed into
    cams: list[CameraState]
    idle: deque[bytes]
    busy: dict[bytes, deque[Job]]
    hub: zmq.Socket
    lane: LaneServer
    run_row: Any
    version: int
    machine_id: str
    mode: str
    running: bool

    def _grant(self, cam: CameraState, n: int) -> None: ...
    def _take_worker(self) -> bytes: ...
    def _count(self, cam: CameraState, outcome: int) -> None: ...
    def _publish_result(self, cam: CameraState, job: Job, outcome: int, payload: Any) -> None: ...
    # (implemented by RunState, which comes before this mixin in the Dispatcher's bases)
    def _wants_image(self, cam: CameraState) -> int: ...
    def _refuse_stopped(self, cam: CameraState) -> str: ...

    def _dispatch_triggered(self) -> None:
        """Frames held for event triggers go first, one camera after another."""
        while self.idle:
            cams = [c for c in self.cams if c.events is not None and c.events.ready]
            if not cams:
                return
            for cam in cams:
                if not self.idle:
                    return
                assert cam.events is not None and cam.ring is not None
                item = cam.events.next_ready()
                if item is None:
                    continue
                fired, frame = item
                # a manual trigger's result always carries its JPEG (someone is waiting to see it)
                image = IMAGE_ALL if fired.source == "manual" else self._wants_image(cam)
                job = Job(fired.result_id, cam.index, cam.config.id, cam.ring.name, frame.slot, frame.seq,
                          frame.frame_id, frame.captured_at, fired.source, fired.at, self.version,
                          fired.trigger_id, self.mode, image)  # fmt: skip
                worker = self._take_worker()
                try:
                    self.lane.send(worker, (msgs.JOB, pack(job.to_wire())))
                except LaneGone:  # the worker is gone: keep the frame for the next one
                    cam.events.ready.appendleft(item)
                    continue
                self.busy.setdefault(worker, deque()).append(job)

    # -- event triggers -----------------------------------------------------------------------------

    def _camera(self, ref: object) -> CameraState | None:
        if isinstance(ref, int) and 0 <= ref < len(self.cams):
            return self.cams[ref]
        return next((c for c in self.cams if c.config.id == ref), None)

    def _on_trigger(self, ident: bytes, body: dict, sock: zmq.Socket) -> None:
        cam = self._camera(body.get("camera", 0))
        if cam is None or cam.events is None:
            if cam is None:
                why = f"no camera {body.get('camera')!r}"
            else:
                kind = cam.config.trigger.type
                why = f"camera {cam.config.id} has a {kind} trigger, not manual, cron or serial"
            sock.send_multipart((ident, msgs.NACK, pack({"error": why})))
            return
        if not self.running:
            why = self._refuse_stopped(cam)
            sock.send_multipart((ident, msgs.NACK, pack({"error": why, "code": "LENS_INVALID_STATE"})))
            return
        source = str(body.get("source", "manual"))
        at = float(body.get("at") or time.time())
        rid = self._fire(cam, str(body.get("id") or ""), source, at)
        try:
            sock.send_multipart((ident, msgs.ACK, pack({"result_id": rid})), zmq.NOBLOCK)
        except zmq.ZMQError:  # the sender went away; its trigger is still answered on the bus
            log.info("trigger %d: sender gone before the acknowledgement", rid)

    def _fire(self, cam: CameraState, trigger_id: str, source: str, at: float) -> int:
        """Record one trigger; from here on it yields exactly one result (or error result)."""
        assert cam.events is not None
        self.run_row[RUN["results"]] += 1
        rid = int(self.run_row[RUN["results"]])
        cam.row[CAM["triggers"]] += 1
        fired = Fired(
            rid, trigger_id or f"{source}-{rid}", source, at, time.monotonic() + cam.events.timeout_s
        )
        cam.events.fire(fired)
        self._request_frames(cam)  # a file or synthetic source produces the frame for this trigger now
        return rid

    def _request_frames(self, cam: CameraState) -> None:
        """Paced event camera: a frame produced now is the first after every waiting trigger, so one
        outstanding request serves them all; made only while the ring has room next to the frames held
        for triggers and in inspection (else when a slot frees up)."""
        if not cam.paced or cam.events is None or cam.ring is None or not cam.identity:
            return
        if not cam.events.waiting or cam.granted > 0:
            return
        jobs = [j for q in self.busy.values() for j in q if j.camera_index == cam.index]
        in_flight = len({(j.slot, j.seq) for j in jobs})
        if cam.ring.geometry.slots - 3 - cam.events.held() - in_flight > 0:
            self._grant(cam, 1)

    def _fire_cron(self) -> None:
        now = time.time()
        for cam in self.cams:
            while cam.cron is not None and cam.next_fire <= now:
                if self.running:
                    self._fire(cam, "", "cron", cam.next_fire)  # stamped with its tick, not with now
                else:
                    self._refuse_stopped(cam)
                cam.next_fire = cam.cron.get_next(float)

    def _expire_triggers(self) -> None:
        now = time.monotonic()
        for cam in self.cams:
            if cam.events is not None and (cam.events.waiting or cam.events.ready):
                online = int(cam.row[CAM["health"]]) == 1 or cam.paced
                for failure in cam.events.expired(now, online):
                    self._answer_failure(cam, failure)

    def _answer_failure(self, cam: CameraState, failure: Failure) -> None:
        """An error result for a trigger that could not be served, published in its turn."""
        fired, frame = failure.fired, failure.frame
        if frame is not None and cam.ring is not None:
            cam.ring.unpin(frame.slot)
        frame_id, captured_at = (frame.frame_id, frame.captured_at) if frame else (-1, 0.0)
        ring = cam.ring.name if cam.ring else ""
        job = Job(fired.result_id, cam.index, cam.config.id, ring, -1, 0, frame_id, captured_at, fired.source,
                  fired.at, self.version, fired.trigger_id, self.mode)  # fmt: skip
        env = error_envelope(self.machine_id, job, failure.code, failure.message)
        self._count(cam, msgs.OVERRUN if failure.code == LENS_OVERRUN else msgs.ERROR)
        self._publish_result(cam, job, msgs.ERROR, pack(env))
        self._request_frames(cam)
