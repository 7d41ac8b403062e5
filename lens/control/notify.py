"""What the orchestrator's callback receives (SPEC §4 modes), put into the webhook spool:

* RUN: one `inspection.summary` every `control.summary_interval_s`: the latest result, its JPEG
  (base64) and the counts since the previous summary (coalescible: a full spool keeps the newest);
* TEST: one `inspection.result` per result, with its JPEG; a `heartbeat` when `test_heartbeat_s`
  passed without a message;
* both: `machine.event` for state, mode, camera-health, process and error changes.

The pipeline never waits for any of it: producing is a spool insert, delivery is the sender's task.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

from lens.control.memlog import Image, MemoryLog
from lens.control.session import Session
from lens.control.spool import Spool

log = logging.getLogger("lens.control")

COUNTS = (
    "captured",
    "inspected",
    "passed",
    "failed",
    "errors",
    "skipped_by_trigger",
    "skipped_stopped",
    "dropped_busy",
    "dropped_ring_full",
    "overrun",
)
EVENT_KINDS = ("state", "mode", "camera", "process", "error", "image_log", "mqtt", "action", "run")


def image_payload(result_id: int, image: Image | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        "result_id": result_id,
        "mime": "image/jpeg",
        "width": image.width,
        "height": image.height,
        "jpeg_base64": base64.b64encode(image.jpeg).decode(),
    }


class Notifier:
    def __init__(
        self,
        spool: Spool,
        memlog: MemoryLog,
        counters: Callable[[], dict[str, dict[str, int]]],
        wake: Callable[[], None],
        test_heartbeat_s: float,
    ) -> None:
        self.spool = spool
        self.memlog = memlog
        self.counters = counters  # camera -> counter name -> value (cumulative)
        self.wake = wake
        self.test_heartbeat_s = test_heartbeat_s
        self.session: Session | None = None
        self.last_counts: dict[str, dict[str, int]] = {}
        self.last_summary_at = time.time()
        self.last_sent = time.monotonic()
        self.put_failures = 0

    def attach(self, session: Session | None) -> None:
        """The session whose callback gets the messages (None: nobody to tell)."""
        self.session = session
        self.last_counts = self.counters()
        self.last_summary_at = time.time()
        self.last_sent = time.monotonic()

    def _put(self, type_: str, payload: dict[str, Any], coalesce: bool = False) -> None:
        s = self.session
        if s is None or not s.callback_url or s.ended:
            return
        try:
            self.spool.put(s.callback_url, s.session_id, type_, payload, coalesce=coalesce)
        except Exception:  # the spool counts its own refusals; anything else is a bug, logged
            self.put_failures += 1
            log.exception("webhook %s not queued", type_)
            return
        self.last_sent = time.monotonic()
        self.wake()

    def summary(self, state: str, mode: str) -> None:
        """RUN mode, every summary interval."""
        now_counts = self.counters()
        since: dict[str, dict[str, int]] = {}
        for cam, row in now_counts.items():
            before = self.last_counts.get(cam, {})
            since[cam] = {k: row.get(k, 0) - before.get(k, 0) for k in COUNTS}
        total = {k: sum(c[k] for c in since.values()) for k in COUNTS}
        latest = self.memlog.latest_result()
        image = None
        if latest is not None:
            rid = int(latest.get("result_id", 0))
            image = image_payload(rid, self.memlog.image(rid))
            if image is None:  # the newest result with a JPEG (one per camera and second is sampled)
                for img_rid in reversed(self.memlog.images):
                    if self.memlog.images[img_rid].camera == latest.get("camera"):
                        image = image_payload(img_rid, self.memlog.images[img_rid])
                        break
        now = time.time()
        payload = {
            "state": state,
            "mode": mode,
            "period": {"from": self.last_summary_at, "to": now},
            "counts": total,
            "cameras": since,
            "latest": latest,
            "image": image,
        }
        self.last_counts, self.last_summary_at = now_counts, now
        self._put("inspection.summary", payload, coalesce=True)

    def result(self, env: dict[str, Any]) -> None:
        """TEST mode: every result, with its JPEG."""
        rid = int(env.get("result_id", 0))
        self._put("inspection.result", {"result": env, "image": image_payload(rid, self.memlog.image(rid))})

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_sent >= self.test_heartbeat_s

    def heartbeat(self, state: str, mode: str) -> None:
        self._put("heartbeat", {"state": state, "mode": mode, "at": time.time()}, coalesce=True)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        if kind in EVENT_KINDS:
            self._put("machine.event", {"kind": kind, **fields})
