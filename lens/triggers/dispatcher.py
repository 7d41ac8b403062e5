"""The dispatcher: decides which frames are inspected, hands them to idle workers, publishes results.

One process for all cameras. It is the hub of the run:

* captures announce frames (slot, seq); the camera's trigger decides whether a frame is wanted
  (`skipped_by_trigger` if not);
* a wanted frame waits for an idle worker. For a timed source only the newest waits: a newer frame
  supersedes it (`dropped_busy`). A paced source is given credits instead, so it never produces a
  frame that nobody will inspect;
* before a frame goes to a worker its slot is pinned, so capture cannot overwrite it; a frame
  already overwritten when pinned is counted as `overrun`;
* results come back to the dispatcher, which unpins, counts, and publishes them on the results bus;
* a worker that restarts while holding a job has that job answered with a LENS_WORKER_CRASHED
  error result: every job handed out yields exactly one result.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path

import zmq
from pydantic import ValidationError

from lens.config.models import CameraConfig
from lens.engine import msgs
from lens.engine.bus import InternalBus, Publisher, event_topic, image_topic, pack, result_topic, unpack
from lens.engine.envelope import LENS_WORKER_CRASHED, Job, error_envelope, event_envelope
from lens.engine.lane import LaneGone, LaneServer
from lens.engine.process import LensProcess, RunContext, SetupError
from lens.engine.ring import Ring
from lens.engine.stats import CAM, RUN, Stats, ToolStats
from lens.triggers.camera import EVENT_TRIGGERS, CameraState, Pending
from lens.triggers.event_dispatch import EventDispatch
from lens.triggers.events import EventTriggers
from lens.triggers.reload import InspectionReload
from lens.triggers.runstate import RunState

# Jobs a worker may hold: the one it inspects and the next, already in its socket, so it never
# waits for a round trip through the dispatcher between two frames.
JOBS_PER_WORKER = 2

log = logging.getLogger("lens.dispatcher")


class Dispatcher(RunState, EventDispatch, InspectionReload, LensProcess):
    role = "dispatcher"

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx, "dispatcher")

    def setup(self) -> None:
        cfg = self.ctx.config
        self.machine_id = cfg.machine.id
        self.workers = cfg.inspection.workers
        self.zctx = zmq.Context()
        hub_path = Path(self.ctx.hub_endpoint.removeprefix("ipc://"))
        hub_path.unlink(missing_ok=True)  # left by a dispatcher that crashed
        self.hub = self.zctx.socket(zmq.ROUTER)
        self.hub.setsockopt(zmq.LINGER, 0)
        self.hub.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.hub.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.hub.setsockopt(zmq.RCVHWM, 0)
        self.hub.setsockopt(zmq.SNDHWM, 0)
        self.hub.bind(self.ctx.hub_endpoint)
        self.lane = LaneServer(self.ctx.lane_path)  # frames, credits, jobs, results
        try:
            self.pub = Publisher(self.zctx, cfg.outputs.zmq.bind, cfg.outputs.zmq.hwm)
        except zmq.ZMQError as e:
            raise SetupError(f"cannot bind the results bus at {cfg.outputs.zmq.bind}: {e}") from None
        Path(self.ctx.internal_endpoint.removeprefix("ipc://")).unlink(missing_ok=True)
        self.internal = InternalBus(self.zctx, self.ctx.internal_endpoint)
        self.command = self.zctx.socket(zmq.ROUTER)  # manual triggers and reloads from outside
        self.command.setsockopt(zmq.LINGER, 0)
        try:
            self.command.bind(cfg.outputs.zmq.command)
        except zmq.ZMQError as e:
            raise SetupError(f"cannot bind the command socket at {cfg.outputs.zmq.command}: {e}") from None
        self.stats = Stats.attach(self.ctx.stats_name, self.ctx.cameras)
        self.run_row = self.stats.run
        self.toolstats = ToolStats.attach(self.ctx.toolstats_name)
        self._load_inspection()
        self.cams = [CameraState(i, c, self.stats.camera(i)) for i, c in enumerate(cfg.cameras)]
        for cam in self.cams:
            self._setup_trigger(cam)
        self.rings: dict[str, Ring] = {}
        self.known_workers: set[bytes] = set()
        self.idle: deque[bytes] = deque()  # one entry per free job slot (JOBS_PER_WORKER per worker)
        self.busy: dict[bytes, deque[Job]] = {}  # jobs handed to each worker, in the order it runs them
        self.credit_due: list[tuple[float, int]] = []  # (when, camera index)
        self.rr = 0  # round-robin start over cameras
        self._init_runstate()

    def _setup_trigger(self, cam: CameraState) -> None:
        trig = cam.config.trigger
        cam.events = cam.motion = cam.cron = None
        cam.next_fire = float("inf")
        if trig.type in EVENT_TRIGGERS:
            max_ready = max(1, cam.config.ring.slots - 3)  # leave the writer slots to write into
            cam.events = EventTriggers(trig.timeout_ms / 1000.0, max_ready)
        if trig.type == "motion":
            from lens.triggers.motion import MotionDetector

            cam.motion = MotionDetector(trig)
        if trig.type == "cron":
            from croniter import croniter

            # the schedule starts when the camera first comes up (see _on_hello)
            cam.cron = croniter(trig.expr, time.time(), second_at_beginning=len(trig.expr.split()) == 6)

    def _reconfigure(self, camera_id: str, data: dict) -> str:
        """Take a camera's new config (its capture is restarted next by the supervisor, which says HELLO
        again). Returns an error message, or "" once done."""
        cam = self._camera(camera_id)
        if cam is None:
            return f"no camera {camera_id!r}"
        try:
            new = CameraConfig.model_validate({**data, "id": camera_id})
        except ValidationError as e:
            return f"camera {camera_id}: {e}"
        if "serial" in (new.trigger.type, cam.config.trigger.type) and new.trigger != cam.config.trigger:
            return (
                f"camera {camera_id}: a serial trigger is changed in the pipeline file (and lens restarted)"
            )
        if cam.events is not None and (cam.events.waiting or cam.events.ready or cam.events.order):
            n = len(cam.events.order)
            return f"camera {camera_id} has {n} trigger(s) in progress; try again when they are answered"
        cam.config = new
        self._setup_trigger(cam)
        cam.pending.clear()
        self.credit_due = [c for c in self.credit_due if c[1] != cam.index]
        self.ctx.config.cameras[cam.index] = new
        log.info(
            "camera %s reconfigured: %s source, %s trigger", camera_id, new.source.type, new.trigger.type
        )
        return ""

    # -- the loop -----------------------------------------------------------------------------------

    def loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pub.sock, zmq.POLLIN)
        poller.register(self.hub, zmq.POLLIN)
        poller.register(self.command, zmq.POLLIN)
        lane = self.lane
        registered: dict[int, int] = {}
        while not self.stopping:
            if lane.changed:
                registered = self._sync_lane(poller, registered)
            events = dict(poller.poll(self._poll_timeout_ms()))
            if self.pub.sock in events:
                self.pub.drain_subscriptions()
            for fd, ev in events.items():
                if isinstance(fd, int) and fd in registered:
                    readable, writable = bool(ev & (zmq.POLLIN | zmq.POLLERR)), bool(ev & zmq.POLLOUT)
                    for ident, parts in lane.handle(fd, readable, writable):
                        self._handle([ident, *parts], self.hub)
            for sock in (self.hub, self.command):
                if sock not in events:
                    continue
                for _ in range(256):  # drain, but keep credits and stop responsive
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle([f.bytes for f in frames[:3]] + frames[3:], sock)
            self._send_due_credits()
            self._fire_cron()
            self._expire_triggers()
            self._dispatch()
            self.run_row[RUN["bus_sent"]] = self.pub.sent
            self.run_row[RUN["bus_dropped"]] = self.pub.dropped

    def _sync_lane(self, poller: zmq.Poller, registered: dict[int, int]) -> dict[int, int]:
        """Poll the lane's sockets as they are now (clients come and go, POLLOUT while output waits)."""
        want = {fd: zmq.POLLIN | (zmq.POLLOUT if out else 0) for fd, out in self.lane.fds().items()}
        for fd in registered.keys() - want.keys():
            poller.unregister(fd)
        for fd, flags in want.items():
            if registered.get(fd) != flags:
                poller.register(fd, flags)
        return want

    def _poll_timeout_ms(self) -> int:
        """Sleep until the next timed duty: a credit due, a cron tick, a trigger deadline (at most 100 ms)."""
        wake = [t for t, _ in self.credit_due]
        mono, wall = time.monotonic(), time.time()
        for cam in self.cams:
            if cam.events is not None:
                deadline = cam.events.next_deadline()
                if deadline is not None:
                    wake.append(deadline)
            if cam.cron is not None and cam.next_fire != float("inf"):  # started with its camera
                wake.append(mono + (cam.next_fire - wall))
        if not wake:
            return 100
        return max(0, min(100, int((min(wake) - mono) * 1000) + 1))

    def _handle(self, frames: list, sock: zmq.Socket) -> None:
        ident, kind = frames[0], frames[1]
        if kind == msgs.FRAME:
            self._on_frame(*unpack(frames[2]))
        elif kind == msgs.RESULT:
            self._on_result(ident, unpack(frames[2]), frames[3], frames[4] if len(frames) > 4 else None)
        elif kind == msgs.READY:
            self._on_ready(ident)
        elif kind == msgs.HELLO:
            self._on_hello(ident, *unpack(frames[2]))
        elif kind == msgs.EOS:
            self._on_eos(int(unpack(frames[2])))
        elif kind == msgs.RELOAD:
            self._on_reload(ident, bytes(frames[2]), sock)
        elif kind == msgs.TRIGGER:
            self._on_trigger(ident, unpack(frames[2]), sock)
        elif kind == msgs.CONTROL:
            self._on_control(ident, unpack(frames[2]) if len(frames) > 2 else {}, sock)
        elif kind == msgs.EVENT:
            event_kind, fields = bytes(frames[2]).decode(), unpack(bytes(frames[3]))
            if event_kind == "process" and fields.get("state") == "exited":
                self._on_process_exit(str(fields.get("name", "")))
            self._publish_event(event_kind, fields)
        else:
            log.error("unknown hub message %r from %r", kind, ident)

    # -- captures -----------------------------------------------------------------------------------

    def _ring(self, name: str) -> Ring:
        ring = self.rings.get(name)
        if ring is None:
            ring = self.rings[name] = Ring.attach(name)
        return ring

    def _on_hello(self, ident: bytes, index: int, ring_name: str, paced: bool) -> None:
        cam = self.cams[index]
        cam.identity, cam.ring, cam.paced, cam.eos = ident, self._ring(ring_name), paced, False
        if cam.cron is not None and cam.next_fire == float("inf"):
            cam.cron.set_current(time.time(), force=True)
            cam.next_fire = cam.cron.get_next(float)
        cam.pending.clear()  # frames announced by a previous capture process are not trusted
        if paced and cam.events is not None:
            # one frame per trigger: a frame for each trigger still waiting (after a capture restart)
            cam.granted = 0
            self._request_frames(cam)
        elif paced:
            cam.window = self._window(cam)
            cam.granted = cam.owed = 0
            if self.running:
                self._grant(cam, cam.window)

    def _grant(self, cam: CameraState, n: int) -> None:
        cam.owed = 0  # every grant settles what was owed (a refill counts it as lacking)
        try:
            self.lane.send(cam.identity, (msgs.CREDIT, pack(n)))
        except LaneGone:  # the capture is gone; its restart says HELLO and gets a fresh window
            log.info("camera %s: capture not connected (stopping or restarting)", cam.config.id)
            return
        cam.granted += n

    def _send_due_credits(self) -> None:
        if not self.credit_due:
            return
        now = time.monotonic()
        due = [c for c in self.credit_due if c[0] <= now]
        if due:
            self.credit_due = [c for c in self.credit_due if c[0] > now]
            for _, index in due:
                self._grant(self.cams[index], 1)

    def _credit_back(self, cam: CameraState) -> None:
        """A paced camera's frame has been dealt with: let it produce the next one (at the interval)."""
        if not cam.paced or cam.eos or cam.events is not None:  # event cameras: one credit per trigger
            return
        if not self.running:  # stopped: the source produces nothing more until run/start
            return
        if cam.interval_s > 0:
            self.credit_due.append((time.monotonic() + cam.interval_s, cam.index))
            return
        # credits go in batches of half the window: one CREDIT message per two frames or more, and
        # the frames still granted or waiting (at least window - batch + 1) keep every worker fed
        cam.owed += 1
        if cam.owed >= max(1, cam.window // 2):
            self._grant(cam, cam.owed)

    def _on_frame(self, index: int, slot: int, seq: int, frame_id: int, captured_at: float) -> None:
        cam = self.cams[index]
        frame = Pending(slot, seq, frame_id, captured_at)
        if cam.events is not None:
            if cam.paced:
                cam.granted -= 1
            assert cam.ring is not None
            took, failures = cam.events.on_frame(frame, cam.ring.pin)
            if took == 0 and not failures:
                cam.row[CAM["skipped_by_trigger"]] += 1
            for failure in failures:
                self._answer_failure(cam, failure)
            self._request_frames(cam)
            return
        if cam.paced:
            cam.granted -= 1
        if not self.running:
            cam.row[CAM["skipped_stopped"]] += 1
            return
        if cam.motion is not None and not self._moved(cam, frame):
            self._credit_back(cam)
            return
        if cam.paced:
            cam.pending.append(frame)  # paced frames never supersede each other
            return
        if cam.interval_s > 0 and captured_at - cam.last_accept < cam.interval_s:
            cam.row[CAM["skipped_by_trigger"]] += 1
            return
        if cam.pending:  # latest frame wins
            cam.pending.popleft()
            cam.row[CAM["dropped_busy"]] += 1
        cam.pending.append(frame)

    def _moved(self, cam: CameraState, frame: Pending) -> bool:
        """Motion trigger: does this frame fire? (read in place; counted as skipped if not)"""
        assert cam.ring is not None
        area = cam.motion.area(cam.ring.view(frame.slot))
        if not cam.ring.valid(frame.slot, frame.seq):  # overwritten while being compared
            cam.row[CAM["overrun"]] += 1
            return False
        if not cam.motion.fires(area, frame.captured_at):
            cam.row[CAM["skipped_by_trigger"]] += 1
            return False
        return True

    def _on_eos(self, index: int) -> None:
        cam = self.cams[index]
        cam.eos = True
        self._publish_event("camera", {"camera": cam.config.id, "health": "ended"})
        self._check_finished()

    def _check_finished(self) -> None:
        if all(c.eos and not c.pending for c in self.cams) and not any(self.busy.values()):
            if not self.run_row[RUN["sources_done"]]:
                log.info("every source has ended and every frame is answered")
                self._publish_event("run", {"state": "finished"})
            self.run_row[RUN["sources_done"]] = 1

    # -- workers ------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._dispatch_triggered()
        n = len(self.cams)
        while self.idle:
            for k in range(n):
                cam = self.cams[(self.rr + k) % n]
                if cam.pending:
                    break
            else:
                return
            self.rr = (cam.index + 1) % n
            frame = cam.pending.popleft()
            assert cam.ring is not None
            if not cam.ring.pin(frame.slot, frame.seq):
                cam.row[CAM["overrun"]] += 1
                self._credit_back(cam)
                continue
            self.run_row[RUN["results"]] += 1
            job = Job(
                int(self.run_row[RUN["results"]]),
                cam.index,
                cam.config.id,
                cam.ring.name,
                frame.slot,
                frame.seq,
                frame.frame_id,
                frame.captured_at,
                cam.config.trigger.type,
                frame.captured_at,
                self.version,
                mode=self.mode,
                image=self._wants_image(cam),
            )
            cam.last_accept = frame.captured_at
            worker = self._take_worker()
            try:
                self.lane.send(worker, (msgs.JOB, pack(job.to_wire())))
            except LaneGone:  # the worker is gone: it will say READY when back
                cam.ring.unpin(frame.slot)
                cam.pending.appendleft(frame)
                self.run_row[RUN["results"]] -= 1
                continue
            self.busy.setdefault(worker, deque()).append(job)
            self._credit_back(cam)

    def _take_worker(self) -> bytes:
        """The worker for the next job (self.idle is not empty): one with no job in flight before one
        that has a job (a second job waits behind the first), and among equals the one that freed a
        slot last. Its caches are warm: at a low rate one worker takes every frame, instead of the
        workers taking turns and each one starting cold (measured at 100 Hz: the tools ran ~2x
        slower in turns than on one process kept busy)."""
        best_pos, best_load = -1, 1 << 30
        for pos in range(len(self.idle) - 1, -1, -1):  # the slot freed last first
            load = len(self.busy.get(self.idle[pos], ()))
            if load < best_load:
                best_pos, best_load = pos, load
        worker = self.idle[best_pos]
        del self.idle[best_pos]
        return worker

    def _on_process_exit(self, name: str) -> None:
        """The supervisor saw a worker die: answer its job now and stop sending it work."""
        if name.startswith("worker-") and name[7:].isdigit():
            ident = msgs.worker_identity(int(name[7:]))
            self._answer_lost_jobs(ident)
            self.idle = deque(w for w in self.idle if w != ident)

    def _answer_lost_jobs(self, ident: bytes) -> None:
        for lost in self.busy.pop(ident, ()):
            self.run_row[RUN["worker_lost_jobs"]] += 1
            env = error_envelope(
                self.machine_id,
                lost,
                LENS_WORKER_CRASHED,
                f"worker {ident.decode()} stopped while inspecting frame {lost.frame_id}",
            )
            self._finish(lost, msgs.ERROR, pack(env))

    def _on_ready(self, ident: bytes) -> None:
        self._answer_lost_jobs(ident)  # restarted before the supervisor's notice reached us
        self.known_workers.add(ident)
        if self.version != 1:  # a (re)started worker learns the config in force before any job
            try:
                self.lane.send(ident, (msgs.CONFIG, pack([self.version, self.inspection_json])))
            except LaneGone:  # gone again: it says READY when back
                return
        self.idle = deque(w for w in self.idle if w != ident)
        self.idle.extend([ident] * JOBS_PER_WORKER)

    def _on_result(self, ident: bytes, meta: list, payload: zmq.Frame, image: zmq.Frame | None) -> None:
        result_id, _index, outcome, version, timings = meta
        self.toolstats.add(version, timings)
        jobs = self.busy.get(ident)
        if not jobs or jobs[0].result_id != result_id:  # a worker answers its jobs in order
            log.error("result %s from %r matches no job in flight; dropped", result_id, ident)
            return
        job = jobs.popleft()
        if image is not None:  # published first: a consumer has the image when the result arrives
            self._emit(image_topic(job.camera), image)
        self._finish(job, outcome, payload)
        self.idle.append(ident)

    def _finish(self, job: Job, outcome: int, payload: bytes | zmq.Frame) -> None:
        cam = self.cams[job.camera_index]
        ring = self.rings.get(job.ring)
        if ring is not None and job.slot >= 0:
            ring.unpin(job.slot)
        self._count(cam, outcome)
        self._publish_result(cam, job, outcome, payload)
        if cam.events is not None:
            self._request_frames(cam)  # a held slot was freed
        if cam.eos:
            self._check_finished()

    def _count(self, cam: CameraState, outcome: int) -> None:
        row = cam.row
        row[CAM["inspected"]] += 1
        if outcome == msgs.PASSED:
            row[CAM["passed"]] += 1
        elif outcome == msgs.FAILED:
            row[CAM["failed"]] += 1
        else:
            row[CAM["errors"]] += 1
            if outcome == msgs.OVERRUN:
                row[CAM["overrun"]] += 1

    def _publish_result(self, cam: CameraState, job: Job, outcome: int, payload: bytes | zmq.Frame) -> None:
        if cam.events is None:
            self._emit(result_topic(job.camera), payload)
            return
        for _, ready in cam.events.complete(job.result_id, outcome, payload):  # in trigger order
            self._emit(result_topic(job.camera), ready)

    # -- events -------------------------------------------------------------------------------------

    def _publish_event(self, kind: str, fields: dict) -> None:
        self._emit(event_topic(kind), pack(event_envelope(self.machine_id, kind, **fields)))

    def _emit(self, topic: bytes, payload: bytes | zmq.Frame) -> None:
        """To lens's own consumers (internal bus) and to the world (results bus)."""
        self.internal.publish(topic, payload)
        self.pub.publish(topic, payload)

    def teardown(self) -> None:
        for ring in getattr(self, "rings", {}).values():
            ring.close()
        if hasattr(self, "lane"):
            self.lane.close()
        if hasattr(self, "pub"):
            self.pub.close()
        if hasattr(self, "internal"):
            self.internal.close()
        if hasattr(self, "hub"):
            self.hub.close(linger=0)
        if hasattr(self, "command"):
            self.command.close(linger=0)
        if hasattr(self, "zctx"):
            self.zctx.term()
        if hasattr(self, "stats"):
            self.stats.close()
        if hasattr(self, "toolstats"):
            self.toolstats.close()
