"""The shared-memory ring: layout, seqlock, pins, and the torn-read stress test."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from lens.engine.ring import Ring, RingGeometry
from lens.engine.shm import new_run_prefix
from tests.engine.ringstress import intact, run_stress, stamp


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring.create(f"{new_run_prefix()}_ring_test", RingGeometry(4, 48, 64, 1))
    yield r
    r.close()
    r.unlink()


def test_write_commit_read_in_place(ring: Ring) -> None:
    slot, view = ring.begin_write()  # type: ignore[misc]
    stamp(view, 42)
    seq = ring.commit(slot, 42, 123.5)
    assert ring.latest() == (slot, seq)
    assert ring.frame_info(slot) == (42, 123.5)
    frame = ring.view(slot)
    assert intact(frame) == (True, 42)
    assert not frame.flags.writeable  # readers get read-only views
    assert np.shares_memory(frame, view)  # no copy between writer and reader


def test_attach_sees_same_geometry_and_pixels(ring: Ring) -> None:
    slot, view = ring.begin_write()  # type: ignore[misc]
    view[:] = 7
    seq = ring.commit(slot, 0, 0.0)
    other = Ring.attach(ring.name)
    try:
        assert other.geometry == RingGeometry(4, 48, 64, 1)
        assert other.valid(slot, seq)
        assert int(other.view(slot).sum()) == 7 * 48 * 64
    finally:
        other.close()


def test_bgr_geometry_and_page_alignment() -> None:
    g = RingGeometry(3, 1080, 1920, 3)
    assert g.shape == (1080, 1920, 3)
    assert g.slot_bytes % 4096 == 0 and g.slot_bytes >= 1080 * 1920 * 3
    assert g.data_offset % 4096 == 0


def test_writer_skips_pinned_slots_and_reports_full(ring: Ring) -> None:
    seqs = []
    for i in range(4):
        slot, _view = ring.begin_write()  # type: ignore[misc]
        seqs.append((slot, ring.commit(slot, i, 0.0)))
    for slot, seq in seqs[:3]:
        assert ring.pin(slot, seq)
    slot, _ = ring.begin_write()  # type: ignore[misc]
    assert slot == seqs[3][0]  # the only unpinned slot
    ring.commit(slot, 4, 0.0)
    ring.pin(slot, ring.seq(slot))
    assert ring.begin_write() is None  # every slot pinned: the writer does not wait
    ring.unpin(seqs[0][0])
    claim = ring.begin_write()
    assert claim is not None and claim[0] == seqs[0][0]


def test_pin_refuses_an_overwritten_frame(ring: Ring) -> None:
    slot, _ = ring.begin_write()  # type: ignore[misc]
    seq = ring.commit(slot, 0, 0.0)
    for i in range(4):  # lap the ring: slot now holds a newer frame
        s, _ = ring.begin_write()  # type: ignore[misc]
        ring.commit(s, i + 1, 0.0)
    assert not ring.pin(slot, seq)
    assert ring.pins() == 0


def test_a_frame_being_written_is_never_valid(ring: Ring) -> None:
    """The seqlock, step by step: what a reader racing the writer sees."""
    slot, view = ring.begin_write()  # type: ignore[misc]
    stamp(view, 1)
    seq = ring.commit(slot, 1, 0.0)
    reader_view = ring.view(slot)
    assert ring.valid(slot, seq)
    # the writer laps the ring and starts overwriting this slot while a reader holds (slot, seq)
    for i in range(3):
        s, v = ring.begin_write()  # type: ignore[misc]
        ring.commit(s, 2 + i, 0.0)
    s, v = ring.begin_write()  # type: ignore[misc]
    assert s == slot
    v[:10] = 99  # half-written
    assert not ring.valid(slot, seq)  # mid-write: odd sequence number
    assert ring.seq(slot) % 2 == 1
    assert not intact(reader_view)[0]  # the pixels really are torn
    stamp(v, 5)
    new_seq = ring.commit(slot, 5, 0.0)
    assert not ring.valid(slot, seq)  # after the write: a different frame
    assert ring.valid(slot, new_seq) and new_seq > seq


def test_abort_leaves_no_valid_frame(ring: Ring) -> None:
    slot, _view = ring.begin_write()  # type: ignore[misc]
    ring.abort(slot)
    assert ring.seq(slot) == 0 and ring.latest() is None


def test_attach_rejects_a_foreign_segment() -> None:
    from lens.engine.shm import Segment

    seg = Segment(f"{new_run_prefix()}_junk", 8192, create=True)
    try:
        with pytest.raises(ValueError, match="is not a lens ring"):
            Ring.attach(seg.name)
    finally:
        seg.close()
        seg.unlink()


@pytest.mark.parametrize("use_pins", [False, True], ids=["seqlock-only", "pins"])
def test_torn_read_stress(use_pins: bool) -> None:
    """10^5 frames at full speed into a 3-slot ring: no accepted frame is torn.

    Without pins, two readers race the writer constantly: the test also requires that torn frames
    were really seen and rejected (so it can fail). With pins (the engine's protocol) one process
    pins, as the dispatcher is the only writer of pins, and a pinned frame is never overwritten."""
    frames = 100_000
    r = Ring.create(f"{new_run_prefix()}_ring_stress", RingGeometry(3, 128, 256, 1))
    try:
        wres, rres = run_stress(r.name, frames, readers=1 if use_pins else 2, use_pins=use_pins)
    finally:
        r.close()
        r.unlink()
    assert wres["written"] == frames
    accepted = sum(x["accepted"] for x in rres)
    rejected = sum(x["rejected"] for x in rres)
    torn_accepted = sum(x["torn_accepted"] for x in rres)
    torn_rejected = sum(x["torn_rejected"] for x in rres)
    summary = f"writer={wres} readers={rres}"
    print(f"torn frames seen and rejected: {torn_rejected}; {summary}")
    assert accepted > 0, summary
    assert torn_accepted == 0, summary  # the property: no torn frame is ever accepted
    if use_pins:
        assert rejected == 0, summary  # a pinned frame is never overwritten (fenced handshake)
