"""Each result of the first camera, as the old machine's: into the inspection log (`LogBook`) and
out to the live view (`test_result` over Socket.IO, see `live`), each only when it wants it.

Runs on the control service's event loop (called by its bus consumer): nothing here touches the
disk; the log book is flushed by a background task in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lens.control.legacy.alog import LogEntry, local_timestamp
from lens.control.legacy.commands import MODES_TO_LEGACY
from lens.control.legacy.model import LegacyToolError, Translation
from lens.control.legacy.results import legacy_results
from lens.control.legacy.tools import translate
from lens.control.memlog import Image
from lens.engine.bus import unpack

if TYPE_CHECKING:
    from lens.control.legacy.machine import LegacyMachine

log = logging.getLogger("lens.control.legacy")

RUN_LIVE_EVERY_S = 1.0  # RUN mode: at most one live `test_result` a second (as the old machine)
LIVE_QUEUE = 32  # live messages waiting for the Socket.IO emitter; older ones are dropped (counted)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class ResultFeed:
    def __init__(self, machine: LegacyMachine) -> None:
        self.m = machine
        self.translation: Translation | None = None  # of the tools of `translation_version`
        self.translation_version = -1
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE)
        self.clients = 0  # live view clients connected
        self.emit: Emit | None = None  # set by the live view
        self.last_live = 0.0
        self.live_dropped = 0  # live messages dropped: the emitter did not keep up
        self.book_errors = 0  # log flushes that raised
        self.logged_without_image = 0  # logged before the engine encoded the JPEGs the log needs
        self.failed = 0  # results this feed could not handle (logged)
        self._last_failure = ""

    def stats(self) -> dict[str, Any]:
        """Counters for /api/v1/status (`legacy`)."""
        return {
            "live_clients": self.clients,
            "live_dropped": self.live_dropped,
            "results_failed": self.failed,
            "last_failure": self._last_failure,
            "log_flush_errors": self.book_errors,
            "logged_without_image": self.logged_without_image,
        }

    def use(self, translation: Translation, version: int) -> None:
        """The translation of the tools now in force (just applied as `version`)."""
        self.translation, self.translation_version = translation, version

    # -- each result -----------------------------------------------------------------------------------

    def on_result(self, camera: str, raw: bytes) -> None:
        """One result of the run. Never raises: the bus consumer hands the same result to the
        native API after this; a failure is counted (`failed`) and logged once per message."""
        if camera != self.m.camera:
            return
        try:
            self._on_result(raw)
        except Exception as e:
            self.failed += 1
            if str(e) != self._last_failure:
                self._last_failure = str(e)
                log.exception("legacy result not logged or shown (%d so far)", self.failed)

    def _on_result(self, raw: bytes) -> None:
        now = time.monotonic()
        regular = self.m.svc.mode == "TEST" or now - self.last_live >= RUN_LIVE_EVERY_S
        # a manual trigger's result is always shown: only a manual camera has them
        may_show = self.clients > 0 and (regular or self.m.svc.config.cameras[0].trigger.type == "manual")
        if not (self.m.logging.enabled or may_show):
            return  # nothing wants this result: not even decoded (RUN mode between live samples)
        env = unpack(raw)
        live_due = may_show and (regular or env.get("trigger") == "manual")
        approved = bool(env.get("pass"))
        logged = self.m.book.wants(approved)
        if not (logged or live_due):
            return
        image = self.m.svc.memlog.image(int(env.get("result_id", 0)))
        result = self.legacy_result(env, (image.width, image.height) if image else None)
        if logged:
            if image is None:
                self.logged_without_image += 1  # the engine was not asked for its JPEG yet
            self.m.book.offer(
                LogEntry(
                    id=str(uuid.uuid4()),
                    timestamp=result["timestamp"],
                    approved=approved,
                    width=image.width if image else 0,
                    height=image.height if image else 0,
                    result=result,
                    jpeg=image.jpeg if image else b"",
                )
            )
        if live_due:
            self.last_live = now
            self._queue(self.test_result(env, result, image))

    def legacy_result(self, env: dict[str, Any], frame_size: tuple[int, int] | None) -> dict[str, Any]:
        """The old machine's inspection result of one envelope (the `.alog` JSON's `result`)."""
        translation = self._translation(int(env.get("inspection_version", 0)))
        tool_results, summary = legacy_results(translation, env, frame_size=frame_size)
        ms = summary.get("total_processing_time_ms", 0.0)
        return {
            "inspection_summary": summary,
            "timestamp": local_timestamp(float(env.get("captured_at") or time.time())),
            **self.m.counters(),
            "time": f"{ms:.2f}ms",
            "tools": [t.config for t in translation.tools],
            "result": tool_results,
            # lens additions
            "result_id": env.get("result_id"),
            "camera": env.get("camera"),
            "pass": env.get("pass"),
        }

    def test_result(self, env: dict[str, Any], result: dict[str, Any], image: Image | None) -> dict[str, Any]:
        """The live view's `test_result` message."""
        msg = {
            **{
                k: result[k]
                for k in ("aprovados", "reprovados", "frame", "time", "tools", "result", "timestamp")
            },
            "source_type": self.m.source_config().get("type", "none"),
            "mode": MODES_TO_LEGACY.get(str(env.get("mode")), self.m.legacy_mode),
            "result_id": env.get("result_id"),
            "pass": env.get("pass"),
            "inspection_summary": result["inspection_summary"],
        }
        if image is not None:
            msg["image_base64"] = base64.b64encode(image.jpeg).decode("ascii")
            msg["mime"] = "image/jpeg"
            msg["resolution"] = [image.width, image.height]
        return msg

    def _translation(self, version: int) -> Translation:
        """The legacy tools in force for results of `version`. Tools that do not translate (native
        tools changed through /api/v1 that the legacy model cannot hold) give results without
        tool results; that is logged once per version."""
        if self.translation is None or version != self.translation_version:
            tools = self.m.inspection_config().get("tools") or []
            try:
                self.translation = translate(tools)
            except LegacyToolError as e:
                log.error("inspection version %d has no legacy view, results show no tools: %s", version, e)
                self.translation = Translation([], {"tools": []})
            self.translation_version = version
        return self.translation

    # -- background ------------------------------------------------------------------------------------

    def _queue(self, msg: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.live_dropped += 1
        self.queue.put_nowait(msg)

    async def send_live(self) -> None:
        """Emit the queued live messages, for ever."""
        while True:
            msg = await self.queue.get()
            if self.emit is None:
                continue
            try:
                await self.emit("test_result", msg)
            except Exception:
                log.exception("live result not sent")

    async def flush_logs(self) -> None:
        """Flush the log book when due, for ever (in a worker thread)."""
        book = self.m.book
        while True:
            await asyncio.sleep(min(0.1, max(0.02, self.m.logging.batch_ms / 1000.0)))
            if book.flush_due():  # also with an empty buffer: a smaller keep_last max_logs trims
                try:
                    await asyncio.to_thread(book.flush)
                except Exception:
                    self.book_errors += 1
                    log.exception("inspection log flush failed")
