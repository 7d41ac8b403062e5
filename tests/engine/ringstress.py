"""Processes for the torn-read stress test (module-level so spawn can import them).

Every frame the writer publishes encodes its own id: the first 8 bytes hold the id, every other
byte is id % 251. A torn frame (parts of two writes) breaks that, whatever the timing.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import numpy as np

from lens.engine.ring import Ring


def stamp(view: np.ndarray, frame_id: int) -> None:
    flat = view.reshape(-1)
    flat[8:] = frame_id % 251
    flat[:8] = np.frombuffer(np.int64(frame_id).tobytes(), np.uint8)


def intact(view: np.ndarray) -> tuple[bool, int]:
    flat = view.reshape(-1)
    fid = int(flat[:8].view(np.int64)[0])
    return bool((flat[8:] == fid % 251).all()), fid


def writer(name: str, frames: int, out: Any) -> None:
    ring = Ring.attach(name)
    written = ring_full = 0
    while written < frames:
        claim = ring.begin_write()
        if claim is None:
            ring_full += 1
            continue
        slot, view = claim
        stamp(view, written)
        ring.commit(slot, written, 0.0)
        written += 1
    ring.close()
    out.put({"written": written, "ring_full": ring_full})


def reader(name: str, stop: Any, out: Any, use_pins: bool, ready: Any = None) -> None:
    """Read the newest frame over and over; verify every frame it accepts.

    use_pins=False exercises detection only (seq checked before and after); use_pins=True is the
    engine's protocol (pin before reading, as the dispatcher does)."""
    ring = Ring.attach(name)
    if ready is not None:
        ready.release()
    accepted = rejected = torn_accepted = torn_rejected = pin_failed = 0
    last = -1
    while not stop.is_set():
        hit = ring.latest()
        if hit is None:
            continue
        slot, seq = hit
        if seq == last:
            continue
        last = seq
        if use_pins and not ring.pin(slot, seq):
            pin_failed += 1
            continue
        ok, _fid = intact(ring.view(slot))
        if ring.valid(slot, seq):
            accepted += 1
            torn_accepted += 0 if ok else 1
        else:
            rejected += 1
            torn_rejected += 0 if ok else 1
        if use_pins:
            ring.unpin(slot)
    ring.close()
    out.put(
        {
            "accepted": accepted,
            "rejected": rejected,
            "torn_accepted": torn_accepted,
            "torn_rejected": torn_rejected,
            "pin_failed": pin_failed,
        }
    )


def run_stress(name: str, frames: int, readers: int, use_pins: bool) -> tuple[dict, list[dict]]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    stop = ctx.Event()
    ready = ctx.Semaphore(0)
    rs = [ctx.Process(target=reader, args=(name, stop, out, use_pins, ready)) for _ in range(readers)]
    for p in rs:
        p.start()
    for _ in rs:  # the readers race the writer from its first frame
        ready.acquire(timeout=60)
    w = ctx.Process(target=writer, args=(name, frames, out))
    w.start()
    w.join(120)
    stalled = w.is_alive()
    stop.set()
    for p in (w, *rs):
        p.join(10)
        if p.is_alive():
            p.kill()
            p.join()
    if stalled:
        raise AssertionError("the writer stalled: every slot stayed pinned")
    results = [out.get(timeout=10) for _ in range(readers + 1)]
    wres = next(r for r in results if "written" in r)
    rres = [r for r in results if "accepted" in r]
    out.close()
    out.join_thread()
    return wres, rres
