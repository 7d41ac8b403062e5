"""The dispatcher's run state (stopped / running / maintenance) and mode (RUN / TEST).

Set by the control service over the command socket (CONTROL message); kept in the run's counters
(`state`, `mode` gauges), so a restarted dispatcher resumes in the state and mode in force.

* Not running: no new frame is inspected. Frames that arrive are counted `skipped_stopped`, paced
  sources get no more credits (they stop producing), and triggers are refused; jobs already in
  flight finish and are published.
* TEST mode: every camera is paced to at most `control.test_rate_hz` inspections per second, and
  every result carries its JPEG (`image.<camera>` on the bus). In RUN mode one result per camera
  carries its JPEG every `min(1 s, control.summary_interval_s)`: what the summaries and the live
  views show.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from lens.engine import msgs
from lens.engine.bus import pack
from lens.engine.envelope import IMAGE_ALL, IMAGE_NONE, IMAGE_POLICIES
from lens.engine.process import RunContext
from lens.engine.stats import CAM, MODES, RUN, STATES
from lens.triggers.camera import CameraState

log = logging.getLogger("lens.dispatcher")


class RunState:
    # state and helpers of the Dispatcher this is mixed into
    ctx: RunContext
    cams: list[CameraState]
    credit_due: list[tuple[float, int]]
    run_row: Any
    workers: int

    def _grant(self, cam: CameraState, n: int) -> None: ...
    def _publish_event(self, kind: str, fields: dict) -> None: ...
    def _reconfigure(self, camera_id: str, data: dict) -> str: ...

    def _init_runstate(self) -> None:
        ctl = self.ctx.config.control
        state_v, mode_v = int(self.run_row[RUN["state"]]), int(self.run_row[RUN["mode"]])
        # set before (a restarted dispatcher): keep it; else the pipeline's autostart decides
        self.state = STATES[state_v - 1] if state_v else ("running" if ctl.autostart else "stopped")
        self.mode = MODES[mode_v - 1] if mode_v else "RUN"
        self.test_pace_s = 1.0 / ctl.test_rate_hz
        self.image_every_s = min(1.0, ctl.summary_interval_s)
        images_v = int(self.run_row[RUN["images"]])
        self.images = images_v - 1 if images_v else IMAGE_NONE  # beyond the pipeline's own policy
        self._write_gauges()
        for cam in self.cams:
            cam.pace_s = self.test_pace_s if self.mode == "TEST" else 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    def _write_gauges(self) -> None:
        self.run_row[RUN["state"]] = STATES.index(self.state) + 1
        self.run_row[RUN["mode"]] = MODES.index(self.mode) + 1
        self.run_row[RUN["images"]] = self.images + 1

    def _on_control(self, ident: bytes, body: dict, sock: zmq.Socket) -> None:
        state, mode, images = body.get("state"), body.get("mode"), body.get("images")
        if state is not None and state not in STATES:
            error = f"state must be one of {', '.join(STATES)}, not {state!r}"
        elif mode is not None and mode not in MODES:
            error = f"mode must be one of {', '.join(MODES)}, not {mode!r}"
        elif images is not None and images not in IMAGE_POLICIES:
            error = f"images must be one of {', '.join(IMAGE_POLICIES)}, not {images!r}"
        else:
            cameras = body.get("cameras") or {}
            error = "cameras must map camera ids to configs" if not isinstance(cameras, dict) else ""
            for cam_id, data in cameras.items() if not error else ():
                error = self._reconfigure(str(cam_id), data if isinstance(data, dict) else {})
                if error:
                    break
        if error:
            sock.send_multipart((ident, msgs.NACK, pack({"error": error})))
            return
        if mode is not None:
            self._set_mode(mode)
        if state is not None:
            self._set_state(state)
        if images is not None and IMAGE_POLICIES.index(images) != self.images:
            self.images = IMAGE_POLICIES.index(images)
            self._write_gauges()
            log.info("images of results: %s (besides the pipeline's policy)", images)
        rings = {c.config.id: c.ring.name for c in self.cams if c.ring is not None}
        answer = {
            "state": self.state,
            "mode": self.mode,
            "images": IMAGE_POLICIES[self.images],
            "rings": rings,
        }
        sock.send_multipart((ident, msgs.ACK, pack(answer)))

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        self._write_gauges()
        log.info("state %s -> %s", previous, state)
        if state == "running":
            for cam in self.cams:
                self._refill(cam)
        else:
            self.credit_due.clear()
            for cam in self.cams:
                if cam.events is None and cam.pending:
                    cam.row[CAM["skipped_stopped"]] += len(cam.pending)
                    cam.pending.clear()
        self._publish_event("state", {"state": state, "previous": previous})

    def _set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        previous, self.mode = self.mode, mode
        self._write_gauges()
        log.info("mode %s -> %s", previous, mode)
        for cam in self.cams:
            cam.pace_s = self.test_pace_s if mode == "TEST" else 0.0
            cam.window = self._window(cam)
            if self.running:
                self._refill(cam)
        self._publish_event("mode", {"mode": mode, "previous": previous})

    def _window(self, cam: CameraState) -> int:
        """Frames a paced camera may produce ahead: one per interval, else enough to feed every worker."""
        if cam.ring is None:
            return 1
        slots = cam.ring.geometry.slots
        held = self.workers * 2  # jobs in flight: JOBS_PER_WORKER per worker, each pinning a slot
        # frames ahead stay clear of the writer's next slots (an unpinned frame can be overwritten)
        return 1 if cam.interval_s > 0 else max(1, min(held + 1, slots - held - 4))

    def _refill(self, cam: CameraState) -> None:
        """Give a paced, continuous camera the credits it lacks (on start, or a larger window)."""
        if not cam.paced or cam.events is not None or cam.eos or not cam.identity:
            return
        lacking = cam.window - cam.granted - len(cam.pending)
        if lacking > 0:
            self._grant(cam, lacking)

    def _wants_image(self, cam: CameraState) -> int:
        """Which outcomes of this job get their JPEG: all in TEST mode and for one job per period,
        else those of the policy asked at run time (`images`, e.g. the legacy inspection log's)."""
        if self.mode == "TEST":
            return IMAGE_ALL
        now = time.monotonic()
        if now >= cam.image_due:
            cam.image_due = now + self.image_every_s
            return IMAGE_ALL
        return self.images

    def _refuse_stopped(self, cam: CameraState) -> str:
        cam.row[CAM["skipped_stopped"]] += 1
        return f"the machine is {self.state}: triggers are refused until it is started (run/start)"
