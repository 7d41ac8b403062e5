"""Which worker the dispatcher hands the next job to (Dispatcher._take_worker)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

from lens.triggers.dispatcher import Dispatcher

A, B, C = b"wrk:0", b"wrk:1", b"wrk:2"


def take(idle: list[bytes], busy: dict[bytes, int]) -> tuple[bytes, list[bytes]]:
    """(worker chosen, idle slots left) for free job slots `idle` (oldest first) and jobs in flight."""
    state = SimpleNamespace(idle=deque(idle), busy={w: deque(range(n)) for w, n in busy.items()})
    worker = Dispatcher._take_worker(state)  # type: ignore[arg-type]
    return worker, list(state.idle)


def test_the_worker_that_freed_a_slot_last_goes_first() -> None:
    # both idle: B finished after A, so B is warm and takes the frame (not A, as in turns)
    assert take([A, A, B, B], {}) == (B, [A, A, B])
    assert take([B, B, A, A], {}) == (A, [B, B, A])


def test_an_idle_worker_goes_before_one_with_a_job_in_flight() -> None:
    # A freed a slot last but still has a job: its second job would wait behind the first
    assert take([B, B, A], {A: 1}) == (B, [B, A])
    assert take([C, B, A], {A: 1, B: 1}) == (C, [B, A])


def test_with_every_worker_busy_the_least_loaded_takes_it() -> None:
    assert take([A, B], {A: 1, B: 1}) == (B, [A])
    assert take([A], {A: 1}) == (A, [])
