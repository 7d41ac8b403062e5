"""The supervisor: starts every process of a run, restarts the ones that crash, stops them all.

Start order: dispatcher (binds the hub and the results bus), the outputs process (store, image
log, MQTT, actions) and the control service when configured, one worker alone (so a cold numba
cache is compiled once, not by every worker at the same time), the other workers, the captures.
Stop order: serial triggers, captures, workers, control, outputs, dispatcher; SIGTERM, then
SIGKILL after a grace period. The control service asks the supervisor (its command socket, polled
by `tick()`) for the process table and for planned restarts of the captures (run/restart).
At exit every segment and socket file with the run's prefix is removed; at start, those of dead runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from lens.config.models import CameraConfig, PipelineConfig
from lens.engine import msgs, shm
from lens.engine.bus import pack, unpack
from lens.engine.process import LensProcess, RunContext
from lens.engine.stats import CAM, HEALTH, RUN, Stats, ToolStats

log = logging.getLogger("lens.supervisor")

READY_TIMEOUT_S = 180.0  # a worker compiling every kernel cold on a loaded 2-core machine
STOP_GRACE_S = 5.0


class StartError(RuntimeError):
    """A process could not start; the message says which (its log has why)."""


@dataclass
class Slot:
    """One supervised process and its restart history."""

    make: Callable[[], LensProcess]
    proc: LensProcess
    restarts: int = 0
    next_start: float = 0.0
    recent: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(
        self, config: PipelineConfig, log_level: int = logging.INFO, base_dir: str | None = None
    ) -> None:
        """`base_dir`: the pipeline file's folder (relative paths in REST bodies resolve against it)."""
        extra: dict[str, Any] = {"base_dir": base_dir} if base_dir else {}
        if config.control.enabled and config.control.legacy_api:
            from lens.control.legacy.state import effective_config

            # changes an orchestrator made through the legacy routes, saved by an earlier run
            config, extra["legacy_problems"] = effective_config(config, base_dir)
        self.config = config
        prefix = shm.new_run_prefix()
        self.ctx = RunContext(prefix, str(shm.run_dir(prefix)), os.getpid(), config, log_level, extra)
        self.slots: dict[str, Slot] = {}
        self.stats: Stats | None = None
        self.toolstats: ToolStats | None = None
        self.started_at = 0.0
        self.zctx: zmq.Context | None = None
        self.events: zmq.Socket | None = None
        self.command: zmq.Socket | None = None

    # -- start --------------------------------------------------------------------------------------

    def start(self) -> None:
        stale = shm.clean_stale()
        if stale:
            log.warning(
                "removed %d segment(s)/folder(s) left by a killed run: %s", len(stale), ", ".join(stale)
            )
        try:
            from lens.capture.process import CaptureProcess
            from lens.inspect.worker import WorkerProcess
            from lens.triggers.dispatcher import Dispatcher

            self.stats = Stats.create(self.ctx.stats_name, self.ctx.cameras)
            self.toolstats = ToolStats.create(self.ctx.toolstats_name)
            self.started_at = time.time()
            self._spawn("dispatcher", lambda: Dispatcher(self.ctx), wait=True)
            self.zctx = zmq.Context()
            self.events = self.zctx.socket(zmq.DEALER)
            self.events.setsockopt(zmq.LINGER, 0)
            self.events.setsockopt(zmq.IDENTITY, b"sup")
            self.events.connect(self.ctx.hub_endpoint)
            self.command = self.zctx.socket(zmq.ROUTER)
            self.command.setsockopt(zmq.LINGER, 0)
            self.command.bind(self.ctx.supervisor_endpoint)
            if self.config.outputs.enabled:
                from lens.outputs.process import OutputsProcess

                self._spawn("outputs", lambda: OutputsProcess(self.ctx), wait=True)
            if self.config.control.enabled:
                from lens.control.process import ControlProcess

                self._spawn("control", lambda: ControlProcess(self.ctx), wait=True)
            n = self.config.inspection.workers
            for i in range(n):
                self._spawn(f"worker-{i}", lambda i=i: WorkerProcess(self.ctx, i), wait=(i == 0))
            for i, cam in enumerate(self.config.cameras):
                self._spawn(f"capture-{cam.id}", lambda i=i: CaptureProcess(self.ctx, i), wait=False)
                if cam.trigger.type == "serial":
                    from lens.triggers.serial import SerialTriggerProcess

                    self._spawn(f"serial-{cam.id}", lambda i=i: SerialTriggerProcess(self.ctx, i), wait=False)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, make: Callable[[], LensProcess], wait: bool) -> None:
        proc = make()
        proc.start()
        self.slots[name] = Slot(make, proc)
        if wait:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not proc.ready.wait(0.1):
                if not proc.is_alive():
                    raise StartError(
                        f"{name} could not start (exit code {proc.exitcode}; its log above says why)"
                    )
                if time.monotonic() > deadline:
                    raise StartError(f"{name} not ready after {READY_TIMEOUT_S:.0f} s")

    # -- watch --------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Restart crashed children (with backoff) and answer the control service; call a few times
        a second."""
        self._serve_commands()
        now = time.monotonic()
        for name, slot in self.slots.items():
            proc = slot.proc
            if proc.is_alive():
                continue
            if slot.next_start == 0.0:  # just noticed
                proc.join(0)
                slot.recent = [t for t in slot.recent if now - t < 60.0] + [now]
                delay = min(10.0, 0.25 * 2 ** (len(slot.recent) - 1))
                slot.next_start = now + delay
                log.error("%s exited with code %s; restarting in %.2f s", name, proc.exitcode, delay)
                self._event(name=name, state="exited", exit_code=proc.exitcode, restart_in_s=delay)
                continue
            if now >= slot.next_start:
                slot.proc = slot.make()
                slot.proc.start()
                slot.restarts += 1
                slot.next_start = 0.0
                assert self.stats is not None
                self.stats.run[RUN["restarts"]] += 1
                self._event(name=name, state="restarted", restarts=slot.restarts, pid=slot.proc.pid)

    def _serve_commands(self) -> None:
        if self.command is None:
            return
        while True:
            try:
                ident, body = self.command.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # not (identity, body): not ours
                continue
            try:
                request = unpack(body)
                cmd = request.get("cmd") if isinstance(request, dict) else None
                if cmd == "processes":
                    answer: dict[str, Any] = {"processes": self.processes()}
                elif cmd == "restart":
                    answer = {"restarted": self.restart_group(str(request.get("group", "")))}
                elif cmd == "cameras":
                    answer = {"restarted": self.reconfigure_cameras(request.get("cameras") or {})}
                else:
                    answer = {"error": f"unknown command {cmd!r}"}
            except Exception as e:  # a bad request must not take the supervisor down
                log.exception("supervisor command failed")
                answer = {"error": f"{type(e).__name__}: {e}"}
            self.command.send_multipart((ident, pack(answer)))

    def processes(self) -> dict[str, dict[str, Any]]:
        """Every process of the run: pid, alive, restarts (the supervisor itself included)."""
        table: dict[str, dict[str, Any]] = {
            "supervisor": {"pid": os.getpid(), "alive": True, "restarts": 0, "exit_code": None}
        }
        for name, s in self.slots.items():
            alive = s.proc.is_alive()
            table[name] = {
                "pid": s.proc.pid,
                "alive": alive,
                "restarts": s.restarts,
                "exit_code": None if alive else s.proc.exitcode,
            }
        return table

    def restart_group(self, group: str) -> list[str]:
        """Planned restart of every process whose name starts with `group` (e.g. `capture`: reopen
        every source). Not counted as a crash restart; announced as `event.process`."""
        if group.split("-")[0] not in ("capture", "serial", "worker"):
            raise ValueError(f"group must be capture, serial or worker (or one of them), not {group!r}")
        names = [name for name in self.slots if name == group or name.startswith(f"{group}-")]
        for name in names:
            slot = self.slots[name]
            if slot.proc.is_alive():
                slot.proc.terminate()
                slot.proc.join(STOP_GRACE_S)
                if slot.proc.is_alive():
                    slot.proc.kill()
                    slot.proc.join(2.0)
            slot.proc.close()
            if name.startswith("capture-") and self.stats is not None:  # until the new one opens its source
                cam = self.ctx.cameras.index(name.removeprefix("capture-"))
                self.stats.camera(cam)[CAM["health"]] = HEALTH.index("starting")
            slot.proc = slot.make()
            slot.proc.start()
            slot.next_start = 0.0
            self._event(name=name, state="restarted", planned=True, pid=slot.proc.pid)
        return names

    def reconfigure_cameras(self, cameras: dict[str, dict[str, Any]]) -> list[str]:
        """New configs for some cameras (source, capture, trigger; the dispatcher has taken them
        first): their captures restart with them, reopening the source (a new ring if the frame size
        changed). The configs given to later (re)started children are the new ones too."""
        config = self.config.model_copy(deep=True)
        index = {cam.id: i for i, cam in enumerate(config.cameras)}
        for cam_id, data in cameras.items():
            if cam_id not in index:
                raise ValueError(f"no camera {cam_id!r}")
            config.cameras[index[cam_id]] = CameraConfig.model_validate({**data, "id": cam_id})
        self.config = config
        self.ctx = dataclasses.replace(self.ctx, config=config)
        names = []
        for cam_id in cameras:
            names += self.restart_group(f"capture-{cam_id}")
        return names

    def _event(self, **fields: Any) -> None:
        """Publish an `event.process` on the results bus (through the dispatcher)."""
        if self.events is not None:
            try:
                self.events.send_multipart((msgs.EVENT, b"process", pack(fields)), zmq.NOBLOCK)
            except zmq.ZMQError as e:
                log.error("process event not sent (%s): %s", e, fields)

    @property
    def finished(self) -> bool:
        """True once every source has ended and every frame was answered (finite sources only)."""
        return bool(self.stats is not None and self.stats.run[RUN["sources_done"]])

    def status(self) -> dict[str, Any]:
        assert self.stats is not None
        snap = self.stats.snapshot()
        snap["processes"] = {
            name: {"pid": s.proc.pid, "alive": s.proc.is_alive(), "restarts": s.restarts}
            for name, s in self.slots.items()
        }
        snap["uptime_s"] = time.time() - self.started_at
        if self.toolstats is not None:
            snap["inspection"] = self.toolstats.snapshot()
        return snap

    def pids(self) -> dict[str, int | None]:
        return {name: s.proc.pid for name, s in self.slots.items()}

    # -- stop ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child (serial triggers, captures, workers, control, outputs, then the dispatcher)
        and remove the run's files."""
        if self.events is not None:
            self.events.close(linger=0)
            self.events = None
        if self.command is not None:
            self.command.close(linger=0)
            self.command = None
        if self.zctx is not None:
            self.zctx.term()
            self.zctx = None
        for group in ("serial", "capture", "worker", "control", "outputs", "dispatcher"):
            procs = [slot.proc for name, slot in self.slots.items() if name.startswith(group)]
            for p in procs:
                if p.is_alive():
                    p.terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    log.warning("%s did not stop in %.0f s; killed", p.name, STOP_GRACE_S)
                    p.kill()
                    p.join(2.0)
        for slot in self.slots.values():
            if slot.proc.exitcode is not None:
                slot.proc.close()
        self.slots.clear()
        if self.stats is not None:
            self.stats.close()
            self.stats = None
        if self.toolstats is not None:
            self.toolstats.close()
            self.toolstats = None
        shm.remove_segments(self.ctx.prefix)
        shutil.rmtree(self.ctx.run_dir, ignore_errors=True)
