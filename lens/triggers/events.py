"""Event triggers (manual, cron, serial): every trigger gets exactly one result, or one error result.

Per camera, a trigger goes through three queues, all in trigger order:

    waiting  -- fired, needs a frame: the first frame captured at or after the trigger
    ready    -- has its frame (slot pinned so it cannot be overwritten), needs an idle worker
    order    -- its result id, until the result can be published: results go out in trigger order

A trigger that cannot be served says why instead of vanishing: no frame or no worker within the
camera's `timeout_ms` (LENS_TIMEOUT, or LENS_SOURCE_UNAVAILABLE when the camera is not online),
or no ring slot left to hold its frame while every worker is busy (LENS_OVERRUN).
This module holds no sockets; the dispatcher drives it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lens.engine.envelope import LENS_OVERRUN, LENS_SOURCE_UNAVAILABLE, LENS_TIMEOUT


@dataclass(frozen=True)
class Frame:
    slot: int
    seq: int
    frame_id: int
    captured_at: float


@dataclass(frozen=True)
class Fired:
    result_id: int
    trigger_id: str
    source: str  # manual | cron | serial
    at: float  # when the trigger happened (epoch s): its frame is the first captured at or after it
    deadline: float  # monotonic s: past it, the trigger is answered with an error


@dataclass(frozen=True)
class Failure:
    fired: Fired
    code: str
    message: str
    frame: Frame | None  # a frame it held (pinned): the caller unpins it


class EventTriggers:
    def __init__(self, timeout_s: float, max_ready: int) -> None:
        self.timeout_s = timeout_s
        self.max_ready = max_ready  # frames held (pinned) for triggers waiting for a worker
        self.waiting: deque[Fired] = deque()
        self.ready: deque[tuple[Fired, Frame]] = deque()
        self.order: deque[int] = deque()
        self.done: dict[int, tuple[int, Any]] = {}

    def fire(self, fired: Fired) -> None:
        self.order.append(fired.result_id)
        self.waiting.append(fired)

    def on_frame(self, frame: Frame, pin: Callable[[int, int], bool]) -> tuple[int, list[Failure]]:
        """Give `frame` to every waiting trigger it serves (fired at or before it was captured).
        Returns (how many took it, failures)."""
        took = 0
        failures: list[Failure] = []
        while self.waiting and self.waiting[0].at <= frame.captured_at:
            fired = self.waiting.popleft()
            shares = bool(self.ready) and self.ready[-1][1] == frame  # same frame: no new slot held
            if not shares and self.held() >= self.max_ready:
                msg = (f"every worker is busy and {self.max_ready} frames are already held for triggers: "
                       f"no ring slot left for trigger {fired.trigger_id}")  # fmt: skip
                failures.append(Failure(fired, LENS_OVERRUN, msg, None))
                continue
            if not pin(frame.slot, frame.seq):
                msg = (
                    f"frame {frame.frame_id} was overwritten before trigger {fired.trigger_id} could hold it"
                )
                failures.append(Failure(fired, LENS_OVERRUN, msg, None))
                continue
            self.ready.append((fired, frame))
            took += 1
        return took, failures

    def held(self) -> int:
        """Distinct frames (ring slots) held for triggers waiting for a worker."""
        return len({(frame.slot, frame.seq) for _, frame in self.ready})

    def next_ready(self) -> tuple[Fired, Frame] | None:
        return self.ready.popleft() if self.ready else None

    def expired(self, now: float, online: bool) -> list[Failure]:
        """Triggers past their deadline, removed from the queues (heads only: deadlines are in order)."""
        out: list[Failure] = []
        ms = round(self.timeout_s * 1000)
        while self.waiting and self.waiting[0].deadline <= now:
            fired = self.waiting.popleft()
            if online:
                code, msg = LENS_TIMEOUT, f"no frame within {ms} ms of trigger {fired.trigger_id}"
            else:
                code, msg = (
                    LENS_SOURCE_UNAVAILABLE,
                    f"the camera is not online: no frame for {fired.trigger_id}",
                )
            out.append(Failure(fired, code, msg, None))
        while self.ready and self.ready[0][0].deadline <= now:
            fired, frame = self.ready.popleft()
            msg = f"no free worker within {ms} ms of trigger {fired.trigger_id}"
            out.append(Failure(fired, LENS_TIMEOUT, msg, frame))
        return out

    def next_deadline(self) -> float | None:
        heads = [q[0].deadline for q in (self.waiting,) if q] + (
            [self.ready[0][0].deadline] if self.ready else []
        )
        return min(heads) if heads else None

    def complete(self, result_id: int, outcome: int, payload: Any) -> list[tuple[int, Any]]:
        """Record a result; returns the results that can now be published, in trigger order."""
        self.done[result_id] = (outcome, payload)
        out = []
        while self.order and self.order[0] in self.done:
            out.append(self.done.pop(self.order.popleft()))
        return out
