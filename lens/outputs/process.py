"""The outputs process: one subscriber of the run's internal bus feeding every configured output —
result store (SQLite), image log (JPEGs on disk), MQTT sink and result actions (reject gate, MQTT,
URL). None of them can slow inspection: each one buffers and counts on its own.

Its events (`event.image_log`, `event.mqtt`, `event.action`) go to the results bus through the
hub; its counters are written to `<run dir>/outputs.json` once a second for status and /metrics.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson
import zmq

from lens.engine import msgs
from lens.engine.bus import SeqGap, pack, unpack
from lens.engine.process import LensProcess, RunContext, SetupError

log = logging.getLogger("lens.outputs")

STATUS_EVERY_S = 1.0


class OutputsProcess(LensProcess):
    role = "outputs"

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx, "outputs")

    def setup(self) -> None:
        cfg = self.ctx.config
        out = cfg.outputs
        self.machine_id = cfg.machine.id
        self.zctx = zmq.Context()
        self.hub = self.zctx.socket(zmq.DEALER)  # our events go out through the dispatcher
        self.hub.setsockopt(zmq.LINGER, 0)
        self.hub.connect(self.ctx.hub_endpoint)
        self.sub = self.zctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.ctx.internal_endpoint)
        self.gap = SeqGap()
        self.images: dict[int, bytes] = {}  # result_id -> JPEG, until its result arrives
        self.store = self.image_log = self.mqtt = self.actions = None
        try:
            if out.store is not None:
                from lens.outputs.store import ResultStore

                self.store = ResultStore(out.store)
            if out.image_log is not None:
                from lens.outputs.imagelog import ImageLog

                self.image_log = ImageLog(out.image_log, self._event)
            if out.mqtt is not None:
                from lens.outputs.mqtt import MqttSink

                self.mqtt = MqttSink(out.mqtt, self.machine_id, self._event)
                self.mqtt.start()
            if out.actions:
                from lens.outputs.actions import ActionRunner

                self.actions = ActionRunner(list(out.actions), self.machine_id, self.mqtt, self._event)
                self.actions.start()
        except (ValueError, OSError) as e:
            raise SetupError(str(e)) from None
        except Exception as e:  # StoreError and the like: a clear line, no crash loop
            raise SetupError(f"{type(e).__name__}: {e}") from None
        self.status_path = Path(self.ctx.run_dir) / "outputs.json"
        self.next_status = 0.0
        self.next_prune = time.monotonic() + 5.0

    def _event(self, kind: str, fields: dict[str, Any]) -> None:
        try:
            self.hub.send_multipart((msgs.EVENT, kind.encode(), pack(fields)), zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.error("event %s not sent (%s): %s", kind, e, fields)

    def loop(self) -> None:
        while not self.stopping:
            pending = self.store is not None and self.store.stats()["pending"] > 0
            if self.sub.poll(20 if pending else 200):
                self._drain(2000)
            self._duties()

    def _drain(self, most: int) -> int:
        n = 0
        while n < most:
            try:
                topic, payload, seq = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            self.gap.see(seq)
            try:
                self._on_message(topic, payload)
            except Exception:
                log.exception("message on %r not handled", topic)
        return n

    def _on_message(self, topic: bytes, payload: bytes) -> None:
        if topic.startswith(b"image."):
            img = unpack(payload)
            if self.image_log is not None:
                self.images[int(img["result_id"])] = img["jpeg"]
                if len(self.images) > 1000:  # results always follow their image; this is a leak guard
                    self.images.pop(next(iter(self.images)))
            return
        if topic.startswith(b"result."):
            env = unpack(payload)
            if self.store is not None:
                self.store.add(env)
            jpeg = self.images.pop(int(env.get("result_id", 0)), None)
            if self.image_log is not None and jpeg is not None and self.image_log.wants(env):
                self.image_log.write(env, jpeg)
            if self.mqtt is not None:
                self.mqtt.publish_result(env)
            if self.actions is not None:
                self.actions.handle(env)
        elif topic.startswith(b"event.") and self.mqtt is not None:
            env = unpack(payload)
            self.mqtt.publish_event(topic.decode().partition(".")[2], env)

    def _duties(self) -> None:
        now = time.monotonic()
        if self.store is not None and self.store.due():
            self.store.flush()
        if now >= self.next_status:
            self.next_status = now + STATUS_EVERY_S
            if self.image_log is not None:
                self.image_log.maintain()
            self._write_status()
        if self.store is not None and now >= self.next_prune:
            self.next_prune = now + 60.0
            self.store.prune()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bus_missed": self.gap.missed, "at": time.time()}
        if self.store is not None:
            out["store"] = self.store.stats()
        if self.image_log is not None:
            out["image_log"] = self.image_log.stats()
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.stats()
        if self.actions is not None:
            out["actions"] = self.actions.stats()
        return out

    def _write_status(self) -> None:
        status = self.status()
        if self.mqtt is not None:
            self.mqtt.set_status({"state": "online", "machine_id": self.machine_id, "outputs": status})
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_NON_STR_KEYS))
            os.replace(tmp, self.status_path)
        except OSError as e:
            log.error("outputs status not written: %s", e)

    def teardown(self) -> None:
        if hasattr(self, "sub"):  # what was published before the workers stopped is still stored
            self._drain(1_000_000)
        for name in ("actions", "mqtt"):
            part = getattr(self, name, None)
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    log.exception("%s did not stop cleanly", name)
        if getattr(self, "store", None) is not None:
            self.store.close()  # flushes what is pending
        if hasattr(self, "status_path"):
            self._write_status()
        for name in ("sub", "hub"):
            if hasattr(self, name):
                getattr(self, name).close(linger=0)
        if hasattr(self, "zctx"):
            self.zctx.term()
