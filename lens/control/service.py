"""The control service's state and background work, independent of HTTP: the session lock, the
in-memory log fed from the run's internal bus, status, host telemetry, webhooks and the audit log.

Background tasks (one asyncio loop, uvloop): bus consumer, process-table refresh, telemetry
sampler, webhook producer (summaries, heartbeats, session expiry) and the webhook sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import zmq
import zmq.asyncio

from lens.config.load import validate_data
from lens.config.models import PipelineConfig
from lens.control.audit import AuditLog
from lens.control.engine import EngineLink
from lens.control.memlog import Image, MemoryLog
from lens.control.monitor import HostMonitor
from lens.control.notify import Notifier
from lens.control.session import Session, SessionManager
from lens.control.spool import Spool
from lens.control.webhooks import WebhookSender
from lens.engine.bus import SeqGap, unpack
from lens.engine.process import RunContext
from lens.engine.stats import CAM, HEALTH, MODES, RUN, STATES, Stats, ToolStats
from lens.outputs.store import StoreReader

if TYPE_CHECKING:
    from lens.control.legacy.machine import LegacyMachine

log = logging.getLogger("lens.control")

PROTOCOL_VERSION = "2.1.0"
PROCESS_REFRESH_S = 1.0


class ControlService:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        ctl = self.config.control
        self.machine_id = self.config.machine.id
        self.started_at = time.time()
        self.zctx = zmq.asyncio.Context()
        self.engine = EngineLink(ctx, self.zctx)
        self.stats = Stats.attach(ctx.stats_name, ctx.cameras)
        self.toolstats = ToolStats.attach(ctx.toolstats_name)
        self.memlog = MemoryLog(ctl.log.max_entries, int(ctl.log.max_mb * 1024 * 1024))
        self.audit = AuditLog(ctl.db, self.machine_id)
        self.sessions = SessionManager(os.environ.get(ctl.api_key_env) or None, ctl.lease_s, self._on_session)
        secret = os.environ.get(ctl.webhook_secret_env)
        self.spool = Spool(
            ctl.db, self.machine_id, ctl.webhooks.spool_max_messages, ctl.webhooks.spool_max_mb
        )
        self.sender = WebhookSender(self.spool, secret.encode() if secret else None, ctl.webhooks)
        self.notifier = Notifier(
            self.spool, self.memlog, self.counters, self.sender.wake, ctl.test_heartbeat_s
        )
        image_log = self.config.outputs.image_log  # the disk watched: where images go, else the db's
        disk = image_log.dir if image_log is not None else str(Path(ctl.db).parent)
        self.monitor = HostMonitor(disk, ctl.telemetry_keep)
        store = self.config.outputs.store
        self.store_reader = StoreReader(store.path) if store is not None else None
        self.processes: dict[str, dict[str, Any]] = {}
        self.gap = SeqGap()
        self.waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.trigger_seq = 0
        self.camera_errors: dict[str, str] = {}  # why a camera is not online (its last health event)
        self.legacy: LegacyMachine | None = None
        if ctl.legacy_api:
            from lens.control.legacy.machine import LegacyMachine

            self.legacy = LegacyMachine(self)
        if not self.sessions.api_key_set:
            log.warning("%s is not set: no orchestrator can open a session", ctl.api_key_env)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        for coro in (self._consume(), self._refresh_processes(), self._telemetry(), self._produce()):
            self.tasks.append(asyncio.create_task(coro))
        self.tasks.append(asyncio.create_task(self.sender.run()))
        if self.legacy is not None:
            await self.legacy.start()

    async def stop(self) -> None:
        if self.legacy is not None:
            await self.legacy.stop()
        self.sender.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.sender.aclose()
        self.engine.close()
        self.spool.close()
        self.audit.close()
        if self.store_reader is not None:
            self.store_reader.close()
        self.stats.close()
        self.toolstats.close()
        self.zctx.term()

    # -- state ------------------------------------------------------------------------------------------

    @property
    def engine_state(self) -> str:
        v = int(self.stats.run[RUN["state"]])
        return STATES[v - 1] if 0 < v <= len(STATES) else "stopped"

    @property
    def mode(self) -> str:
        v = int(self.stats.run[RUN["mode"]])
        return MODES[v - 1] if 0 < v <= len(MODES) else "RUN"

    def problems(self) -> list[dict[str, Any]]:
        """What puts a running machine in `error`: a camera whose source is offline, a process down."""
        out: list[dict[str, Any]] = []
        for i, cam in enumerate(self.ctx.cameras):
            health = int(self.stats.camera(i)[CAM["health"]])
            if health == HEALTH.index("offline"):
                out.append(
                    {"code": "LENS_SOURCE_UNAVAILABLE", "camera": cam, "message": f"camera {cam} is offline"}
                )
        for name, p in self.processes.items():
            if not p.get("alive", True):
                out.append(
                    {
                        "code": "LENS_PROCESS_DOWN",
                        "process": name,
                        "message": f"{name} exited (code {p.get('exit_code')}); restarting",
                    }
                )
        return out

    @property
    def state(self) -> str:
        return self._state(self.problems())

    def _state(self, problems: list[dict[str, Any]]) -> str:
        state = self.engine_state
        return "error" if state == "running" and problems else state

    def counters(self) -> dict[str, dict[str, int]]:
        return self.stats.snapshot()["cameras"]

    def status(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        host = self.monitor.latest() or {}
        fps = host.get("cameras", {})
        cameras = {}
        for cam, row in snap["cameras"].items():
            h = row.pop("health")
            cameras[cam] = {
                **row,
                "health": HEALTH[h] if 0 <= h < len(HEALTH) else "unknown",
                "fps": (fps.get(cam) or {}).get("fps"),
            }
        held = self.sessions.holder()
        problems = self.problems()
        return {
            "machine_id": self.machine_id,
            "machine_name": self.config.machine.name,
            "protocol_version": PROTOCOL_VERSION,
            "state": self._state(problems),
            "mode": self.mode,
            "problems": problems,
            "uptime_s": round(time.time() - self.started_at, 3),
            "cameras": cameras,
            "run": {k: v for k, v in snap["run"].items() if k not in ("state", "mode", "images")},
            "inspection": self.toolstats.snapshot(),
            "processes": self.processes,
            "host": host,
            "session": {"held": held is not None, **(held.public() if held else {})},
            "webhooks": self.sender.stats(),
            "outputs": self.outputs_status(),
            "legacy": self.legacy_status(),
            "control": {
                "log_entries": len(self.memlog.entries),
                "log_bytes": self.memlog.bytes,
                "log_evicted": self.memlog.evicted,
                "bus_missed": self.gap.missed,
                "audit_errors": self.audit.errors,
            },
        }

    def legacy_status(self) -> dict[str, Any] | None:
        """The legacy layer's error, live view and inspection log counters (None when it is off)."""
        if self.legacy is None:
            return None
        status, error = self.legacy.status_word()
        return {
            "status": status,
            "error_msg": error,
            **self.legacy.feed.stats(),
            "log_book": self.legacy.book.stats(),
        }

    def outputs_status(self) -> dict[str, Any]:
        """Written about once a second by the outputs process (store, image log, MQTT, actions)."""
        path = Path(self.ctx.run_dir) / "outputs.json"
        try:
            data: dict[str, Any] = orjson.loads(path.read_bytes())
            return data
        except (OSError, orjson.JSONDecodeError):
            return {}

    # -- sessions -----------------------------------------------------------------------------------

    def _on_session(self, what: str, s: Session | None, detail: dict[str, Any]) -> None:
        who = s.orchestrator_id if s else None
        ip = s.client_ip if s else None
        if what == "refused":
            self.audit.record(
                "session.refused", detail.get("orchestrator_id"), detail.get("client_ip"), None, holder=who
            )
            return
        self.audit.record(f"session.{what}", who, ip, s.session_id if s else None, **detail)
        if what in ("opened", "replaced"):
            self.notifier.attach(s)
        elif self.notifier.session is s:
            self.notifier.attach(None)

    # -- background tasks ---------------------------------------------------------------------------------

    async def _consume(self) -> None:
        sock = self.zctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.ctx.internal_endpoint)
        sync = zmq.Socket.shadow(sock.underlying)  # drain without one await per message
        try:
            while True:
                await sock.poll(1000)
                for _ in range(2000):
                    try:
                        topic, payload, seq = sync.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.gap.see(seq)
                    try:
                        self._on_message(topic, payload)
                    except Exception:  # one bad message must not stop the log
                        log.exception("message on %r not handled", topic)
                await asyncio.sleep(0)
        finally:
            sock.close(linger=0)

    def _on_message(self, topic: bytes, payload: bytes) -> None:
        if topic.startswith(b"result."):
            self.memlog.append("result", topic.decode(), payload)
            if self.legacy is not None:
                self.legacy.on_result(topic[7:].decode(), payload)
            test = self.mode == "TEST"
            if self.waiters or test:
                env = unpack(payload)
                waiter = self.waiters.pop(int(env.get("result_id", 0)), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(env)
                if test:
                    self.notifier.result(env)
        elif topic.startswith(b"image."):
            img = unpack(payload)
            self.memlog.add_image(
                int(img["result_id"]),
                Image(img["camera"], img["jpeg"], int(img["width"]), int(img["height"]), time.time()),
            )
        elif topic.startswith(b"event."):
            self.memlog.append("event", topic.decode(), payload)
            env = unpack(payload)
            kind = topic.decode().partition(".")[2]
            fields = {k: v for k, v in env.items() if k not in ("type", "machine_id")}
            if kind == "camera" and "health" in fields:
                cam = str(fields.get("camera"))
                if fields["health"] == "online":
                    self.camera_errors.pop(cam, None)
                elif fields.get("error"):
                    self.camera_errors[cam] = str(fields["error"])
            self.notifier.event(kind, fields)

    async def _refresh_processes(self) -> None:
        while True:
            try:
                self.processes = (await self.engine.supervisor("processes"))["processes"]
            except Exception as e:
                log.debug("process table not refreshed: %s", e)
            await asyncio.sleep(PROCESS_REFRESH_S)

    async def _telemetry(self) -> None:
        interval = self.config.control.telemetry_interval_s
        while True:
            pids = {name: p.get("pid") if p.get("alive") else None for name, p in self.processes.items()}
            captured = {cam: row["captured"] for cam, row in self.counters().items()}
            try:
                self.monitor.sample(pids, captured)
            except Exception:
                log.exception("telemetry sample failed")
            await asyncio.sleep(min(interval, 1.0) if not self.processes else interval)

    async def _produce(self) -> None:
        """Summaries (RUN), heartbeats (TEST), and session expiry noticed without a request."""
        ctl = self.config.control
        next_summary = time.monotonic() + ctl.summary_interval_s
        while True:
            await asyncio.sleep(0.1)
            self.sessions.expire()
            if self.notifier.session is None:
                next_summary = time.monotonic() + ctl.summary_interval_s
                continue
            mode = self.mode
            if mode == "RUN" and time.monotonic() >= next_summary:
                next_summary += ctl.summary_interval_s
                if next_summary < time.monotonic():  # fell behind (a long pause): no burst of catch-up
                    next_summary = time.monotonic() + ctl.summary_interval_s
                self.notifier.summary(self.state, mode)
            elif mode == "TEST" and self.notifier.heartbeat_due():
                self.notifier.heartbeat(self.state, mode)

    # -- requests the HTTP layer makes ----------------------------------------------------------------

    def query_results(
        self, since_id: int, limit: int, passed: bool | None, camera: str | None
    ) -> list[dict[str, Any]]:
        """History: from the result store when it is on (ids are the store's, unique over time),
        else from the in-memory log (ids are the log's)."""
        if self.store_reader is not None:
            return self.store_reader.query(since_id, limit, passed, camera)
        out: list[dict[str, Any]] = []
        cursor = since_id
        while len(out) < limit:
            entries = self.memlog.after(cursor, 1024)
            if not entries:
                break
            for e in entries:
                cursor = e.id
                if e.kind != "result":
                    continue
                env = unpack(e.raw)
                if (passed is None or env.get("pass") is passed) and (
                    camera is None or env.get("camera") == camera
                ):
                    out.append({"id": e.id, "result": env})
                    if len(out) >= limit:
                        break
        return out

    def current_inspection(self) -> tuple[int, dict[str, Any]]:
        """(version, inspection section) in force, as the dispatcher keeps it."""
        path = self.ctx.inspection_path
        if path.exists():
            version, text = unpack(path.read_bytes())
            return int(version), orjson.loads(text)
        return 1, self.config.inspection.model_dump(mode="json")

    async def reconfigure_cameras(self, cameras: dict[str, dict[str, Any]]) -> list[str]:
        """New source / capture / trigger settings for some cameras (merged over each camera's config
        in force; a section whose `type` changes is replaced whole), validated as the pipeline file
        is; then the dispatcher takes them and the supervisor restarts those cameras' captures.
        Raises ConfigError (nothing changed) or EngineError. Returns the processes restarted."""
        data = self.config.model_dump(mode="json")
        for cam in data["cameras"]:
            for section, value in (cameras.get(cam["id"]) or {}).items():
                old = cam.get(section)
                same_type = isinstance(old, dict) and value.get("type", old.get("type")) == old.get("type")
                cam[section] = {**old, **value} if same_type else value  # a new type: the section whole
        new = validate_data(data, PipelineConfig, "cameras", base_dir=self.ctx.extra.get("base_dir"))
        dumps = {
            cam.id: cam.model_dump(mode="json", exclude={"id"}) for cam in new.cameras if cam.id in cameras
        }
        await self.engine.control(cameras=dumps)
        self.config.cameras[:] = new.cameras
        answer = await self.engine.supervisor("cameras", timeout_s=30.0, cameras=dumps)
        return list(answer["restarted"])

    def wait_result(self, result_id: int) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[result_id] = fut
        return fut

    def next_trigger_id(self) -> str:
        self.trigger_seq += 1
        return f"api-{self.trigger_seq}"
