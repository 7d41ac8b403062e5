"""The result envelope (SPEC §2) and the error codes results carry."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

RESULT_TYPE = "inspection.result"

# Error codes carried by error results ({"error": {"code", "message"}}, "pass": false).
LENS_OVERRUN = "LENS_OVERRUN"  # the frame was overwritten before or while it was inspected
LENS_TIMEOUT = "LENS_TIMEOUT"
LENS_SOURCE_UNAVAILABLE = "LENS_SOURCE_UNAVAILABLE"
LENS_WORKER_CRASHED = "LENS_WORKER_CRASHED"  # the worker died holding this job
LENS_INSPECTION_ERROR = "LENS_INSPECTION_ERROR"  # a tool raised; the message names it


# Job.image: which outcomes of a job get their JPEG encoded by the worker (ranked: a wider one wins)
IMAGE_POLICIES = ("none", "failed", "all")
IMAGE_NONE, IMAGE_FAILED, IMAGE_ALL = range(3)


@dataclass(frozen=True)
class Job:
    """One frame handed to one worker. `result_id` is assigned by the dispatcher, unique per run."""

    result_id: int
    camera_index: int
    camera: str
    ring: str
    slot: int
    seq: int
    frame_id: int
    captured_at: float
    trigger: str
    triggered_at: float
    inspection_version: int
    trigger_id: str = ""  # event triggers (manual, cron, serial): the trigger's own id
    mode: str = "RUN"  # RUN or TEST: the mode the frame was dispatched in (carried by its result)
    image: int = 0  # which outcomes need this result's JPEG: IMAGE_NONE, IMAGE_FAILED or IMAGE_ALL

    def to_wire(self) -> list[Any]:
        return [
            self.result_id,
            self.camera_index,
            self.camera,
            self.ring,
            self.slot,
            self.seq,
            self.frame_id,
            self.captured_at,
            self.trigger,
            self.triggered_at,
            self.inspection_version,
            self.trigger_id,
            self.mode,
            self.image,
        ]

    @classmethod
    def from_wire(cls, data: list[Any]) -> Job:
        return cls(*data)


def result_envelope(
    machine_id: str,
    job: Job,
    mode: str,
    passed: bool,
    tools: dict[str, Any],
    error: dict[str, str] | None = None,
    finished_at: float | None = None,
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "type": RESULT_TYPE,
        "machine_id": machine_id,
        "camera": job.camera,
        "result_id": job.result_id,
        "frame_id": job.frame_id,
        "trigger": job.trigger,
        "triggered_at": job.triggered_at,
        "mode": mode,
        "pass": bool(passed) and error is None,
        "captured_at": job.captured_at,
        "finished_at": time.time() if finished_at is None else finished_at,
        "inspection_version": job.inspection_version,
        "tools": tools,
    }
    if job.trigger_id:
        env["trigger_id"] = job.trigger_id
    if job.frame_id < 0:  # an event trigger answered without a frame (timeout, source unavailable)
        env["frame_id"] = None
        env["captured_at"] = None
    if error is not None:
        env["error"] = error
    return env


def error_envelope(machine_id: str, job: Job, code: str, message: str) -> dict[str, Any]:
    return result_envelope(machine_id, job, job.mode, False, {}, {"code": code, "message": message})


IMAGE_TYPE = "inspection.image"


def image_envelope(machine_id: str, job: Job, jpeg: bytes, width: int, height: int) -> dict[str, Any]:
    """The JPEG of one result, published as `image.<camera>` just before the result itself."""
    return {
        "type": IMAGE_TYPE,
        "machine_id": machine_id,
        "camera": job.camera,
        "result_id": job.result_id,
        "frame_id": job.frame_id,
        "captured_at": job.captured_at,
        "width": width,
        "height": height,
        "jpeg": jpeg,
    }


def event_envelope(machine_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"event.{kind}", "machine_id": machine_id, "at": time.time(), **fields}
