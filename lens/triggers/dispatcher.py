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
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from pydantic import ValidationError

from lens.config.load import issues_from
from lens.config.models import CameraConfig, InspectionConfig
from lens.engine import msgs
from lens.engine.bus import Publisher, event_topic, pack, result_topic, unpack
from lens.engine.envelope import LENS_WORKER_CRASHED, Job, error_envelope, event_envelope
from lens.engine.process import LensProcess, RunContext, SetupError
from lens.engine.ring import Ring
from lens.engine.stats import CAM, RUN, Stats, ToolStats

log = logging.getLogger("lens.dispatcher")
MODE = "RUN"


@dataclass
class Pending:
    slot: int
    seq: int
    frame_id: int
    captured_at: float


@dataclass
class CameraState:
    index: int
    config: CameraConfig
    row: object  # the camera's counter row (numpy int64 view)
    identity: bytes = b""
    ring: Ring | None = None
    paced: bool = False
    window: int = 1  # paced: frames the capture may produce ahead
    granted: int = 0  # paced: credits given and not yet turned into frames
    pending: deque[Pending] = field(default_factory=deque)
    last_accept: float = 0.0
    eos: bool = False

    @property
    def interval_s(self) -> float:
        return self.config.trigger.interval_ms / 1000.0


class Dispatcher(LensProcess):
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
        try:
            self.pub = Publisher(self.zctx, cfg.outputs.zmq.bind, cfg.outputs.zmq.hwm)
        except zmq.ZMQError as e:
            raise SetupError(f"cannot bind the results bus at {cfg.outputs.zmq.bind}: {e}") from None
        self.stats = Stats.attach(self.ctx.stats_name, self.ctx.cameras)
        self.run_row = self.stats.run
        self.toolstats = ToolStats.attach(self.ctx.toolstats_name)
        self._load_inspection()
        self.cams = [CameraState(i, c, self.stats.camera(i)) for i, c in enumerate(cfg.cameras)]
        self.rings: dict[str, Ring] = {}
        self.known_workers: set[bytes] = set()
        self.idle: deque[bytes] = deque()
        self.busy: dict[bytes, Job] = {}
        self.credit_due: list[tuple[float, int]] = []  # (when, camera index)
        self.rr = 0  # round-robin start over cameras

    # -- the loop -----------------------------------------------------------------------------------

    def loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pub.sock, zmq.POLLIN)
        poller.register(self.hub, zmq.POLLIN)
        while not self.stopping:
            timeout = 100
            if self.credit_due:
                timeout = max(0, min(timeout, int((min(self.credit_due)[0] - time.monotonic()) * 1000) + 1))
            events = dict(poller.poll(timeout))
            if self.pub.sock in events:
                self.pub.drain_subscriptions()
            if self.hub in events:
                for _ in range(256):  # drain, but keep credits and stop responsive
                    try:
                        frames = self.hub.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle([f.bytes for f in frames[:3]] + frames[3:])
            self._send_due_credits()
            self._dispatch()
            self.run_row[RUN["bus_sent"]] = self.pub.sent
            self.run_row[RUN["bus_dropped"]] = self.pub.dropped

    def _handle(self, frames: list) -> None:
        ident, kind = frames[0], frames[1]
        if kind == msgs.FRAME:
            self._on_frame(*unpack(frames[2]))
        elif kind == msgs.RESULT:
            self._on_result(ident, unpack(frames[2]), frames[3])
        elif kind == msgs.READY:
            self._on_ready(ident)
        elif kind == msgs.HELLO:
            self._on_hello(ident, *unpack(frames[2]))
        elif kind == msgs.EOS:
            self._on_eos(int(unpack(frames[2])))
        elif kind == msgs.RELOAD:
            self._on_reload(ident, bytes(frames[2]))
        elif kind == msgs.EVENT:
            event_kind, fields = bytes(frames[2]).decode(), unpack(frames[3].bytes)
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
        cam.pending.clear()  # frames announced by a previous capture process are not trusted
        if paced:
            # With an interval, one frame per interval; else enough to keep every worker fed.
            slots = cam.ring.geometry.slots
            cam.window = 1 if cam.interval_s > 0 else max(1, min(self.workers + 1, slots - self.workers - 2))
            cam.granted = 0
            self._grant(cam, cam.window)

    def _grant(self, cam: CameraState, n: int) -> None:
        try:
            self.hub.send_multipart((cam.identity, msgs.CREDIT, pack(n)))
        except zmq.ZMQError:  # the capture is gone; its restart says HELLO and gets a fresh window
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
        if not cam.paced or cam.eos:
            return
        if cam.interval_s > 0:
            self.credit_due.append((time.monotonic() + cam.interval_s, cam.index))
        else:
            self._grant(cam, 1)

    def _on_frame(self, index: int, slot: int, seq: int, frame_id: int, captured_at: float) -> None:
        cam = self.cams[index]
        frame = Pending(slot, seq, frame_id, captured_at)
        if cam.paced:
            cam.granted -= 1
            cam.pending.append(frame)  # paced frames never supersede each other
            return
        if cam.interval_s > 0 and captured_at - cam.last_accept < cam.interval_s:
            cam.row[CAM["skipped_by_trigger"]] += 1
            return
        if cam.pending:  # latest frame wins
            cam.pending.popleft()
            cam.row[CAM["dropped_busy"]] += 1
        cam.pending.append(frame)

    def _on_eos(self, index: int) -> None:
        cam = self.cams[index]
        cam.eos = True
        self._publish_event("camera", {"camera": cam.config.id, "health": "ended"})
        self._check_finished()

    def _check_finished(self) -> None:
        if all(c.eos and not c.pending for c in self.cams) and not self.busy:
            if not self.run_row[RUN["sources_done"]]:
                log.info("every source has ended and every frame is answered")
                self._publish_event("run", {"state": "finished"})
            self.run_row[RUN["sources_done"]] = 1

    # -- workers ------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
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
            )
            cam.last_accept = frame.captured_at
            worker = self.idle.popleft()
            try:
                self.hub.send_multipart((worker, msgs.JOB, pack(job.to_wire())))
            except zmq.ZMQError:  # the worker is gone (EHOSTUNREACH): it will say READY when back
                cam.ring.unpin(frame.slot)
                cam.pending.appendleft(frame)
                self.run_row[RUN["results"]] -= 1
                continue
            self.busy[worker] = job
            self._credit_back(cam)

    def _on_process_exit(self, name: str) -> None:
        """The supervisor saw a worker die: answer its job now and stop sending it work."""
        if name.startswith("worker-") and name[7:].isdigit():
            ident = msgs.worker_identity(int(name[7:]))
            self._answer_lost_job(ident)
            if ident in self.idle:
                self.idle.remove(ident)

    def _answer_lost_job(self, ident: bytes) -> None:
        lost = self.busy.pop(ident, None)
        if lost is not None:
            self.run_row[RUN["worker_lost_jobs"]] += 1
            env = error_envelope(
                self.machine_id,
                lost,
                MODE,
                LENS_WORKER_CRASHED,
                f"worker {ident.decode()} stopped while inspecting frame {lost.frame_id}",
            )
            self._finish(lost, msgs.ERROR, pack(env))

    def _on_ready(self, ident: bytes) -> None:
        self._answer_lost_job(ident)  # restarted before the supervisor's notice reached us
        self.known_workers.add(ident)
        if self.version != 1:  # a (re)started worker learns the config in force before any job
            self.hub.send_multipart((ident, msgs.CONFIG, pack([self.version, self.inspection_json])))
        if ident not in self.idle:
            self.idle.append(ident)

    def _on_result(self, ident: bytes, meta: list, payload: zmq.Frame) -> None:
        result_id, _index, outcome, version, timings = meta
        self.toolstats.add(version, timings)
        job = self.busy.pop(ident, None)
        if job is None or job.result_id != result_id:
            log.error("result %s from %r matches no job in flight; dropped", result_id, ident)
            if job is not None:
                self.busy[ident] = job
            return
        self._finish(job, outcome, payload)
        self.idle.append(ident)

    def _finish(self, job: Job, outcome: int, payload: bytes | zmq.Frame) -> None:
        cam = self.cams[job.camera_index]
        ring = self.rings.get(job.ring)
        if ring is not None:
            ring.unpin(job.slot)
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
        self.pub.publish(result_topic(job.camera), payload)
        if cam.eos:
            self._check_finished()

    # -- hot reload ---------------------------------------------------------------------------------

    def _load_inspection(self) -> None:
        """The config in force: the last reloaded one (after a dispatcher restart), else the pipeline's."""
        path = self.ctx.inspection_path
        if path.exists():
            version, text = unpack(path.read_bytes())
            self.version, self.inspection_json = int(version), str(text)
        else:
            self.version = 1
            self.inspection_json = self.ctx.config.inspection.model_dump_json()
        self.run_row[RUN["inspection_version"]] = self.version
        if self.toolstats.snapshot()["version"] != self.version:
            tools = InspectionConfig.model_validate_json(self.inspection_json).tools
            self.toolstats.reset(self.version, [t.name for t in tools])

    def _on_reload(self, ident: bytes, data: bytes) -> None:
        """Replace the inspection config: jobs handed out from now on use the new version; every
        worker gets it before its next job (messages to a worker arrive in order)."""
        try:
            cfg = InspectionConfig.model_validate_json(data)
        except ValidationError as e:
            issues = [f"{i.path}: {i.message}" for i in issues_from(e)]
            self.hub.send_multipart((ident, msgs.NACK, pack({"error": "; ".join(issues), "issues": issues})))
            return
        if cfg.workers != self.workers:  # the number of processes changes only with a restart
            cfg = cfg.model_copy(update={"workers": self.workers})
        self.version += 1
        self.inspection_json = cfg.model_dump_json()
        tmp = self.ctx.inspection_path.with_suffix(".tmp")
        tmp.write_bytes(pack([self.version, self.inspection_json]))
        tmp.replace(self.ctx.inspection_path)
        self.toolstats.reset(self.version, [t.name for t in cfg.tools])
        self.run_row[RUN["inspection_version"]] = self.version
        for worker in self.known_workers:
            try:
                self.hub.send_multipart((worker, msgs.CONFIG, pack([self.version, self.inspection_json])))
            except zmq.ZMQError:  # gone: it gets the config with its READY when it is back
                log.info("worker %s not connected; gets version %d with its READY", worker, self.version)
        log.info("inspection config replaced: version %d (%d tools)", self.version, len(cfg.tools))
        self._publish_event("inspection", {"version": self.version, "tools": [t.name for t in cfg.tools]})
        self.hub.send_multipart((ident, msgs.ACK, pack({"version": self.version})))

    # -- events -------------------------------------------------------------------------------------

    def _publish_event(self, kind: str, fields: dict) -> None:
        self.pub.publish(event_topic(kind), pack(event_envelope(self.machine_id, kind, **fields)))

    def teardown(self) -> None:
        for ring in getattr(self, "rings", {}).values():
            ring.close()
        if hasattr(self, "pub"):
            self.pub.close()
        if hasattr(self, "hub"):
            self.hub.close(linger=0)
        if hasattr(self, "zctx"):
            self.zctx.term()
        if hasattr(self, "stats"):
            self.stats.close()
        if hasattr(self, "toolstats"):
            self.toolstats.close()
