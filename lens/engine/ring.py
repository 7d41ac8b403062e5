"""Per-camera shared-memory frame ring: written once by capture, read in place by workers.

Layout of one segment (all little-endian, slots page-aligned):

    [header: 16 x int64] [slot meta: slots x 8 x int64] ... pad to 4096 ... [slot 0] [slot 1] ...

Each slot is guarded by a sequence number (a seqlock) and a pin count:

* The writer (the camera's capture process, the only writer of `seq` and `claim`) takes the next
  slot that is not pinned, raises its `claim`, re-checks the pin, then marks `seq` odd (being
  written), fills the pixels, publishes an even sequence number and drops the claim. It never
  waits: if every slot is pinned, the frame is dropped (`dropped_ring_full`).
* The dispatcher (the only writer of `pin`) pins a slot before handing it to a worker and unpins
  it when the result comes back, so a slot under inspection is never chosen for writing. A pin
  fails if the slot is claimed or no longer holds the frame.
* A reader accepts a frame only if `seq` equals the value announced for it before *and* after it
  used the pixels; anything else is a torn or overwritten frame and is counted as `overrun`.

Ordering: on x86-64 (TSO) stores are seen in program order and loads are not reordered with
other loads, which is what the seqlock needs (writer: odd, pixels, even; reader: seq, pixels, seq).
The pin is a store-then-load handshake with the writer (writer: claim, then read pin; dispatcher:
pin, then read claim and seq), and x86 may let a load pass an earlier store, so both sides put a
full fence between their store and their load (`full_fence`: an uncontended lock, i.e. LOCK-prefixed
instructions in glibc, ~0.1 us). Without it the race is rare (about 1 in 60,000 pinned frames in
the stress test) but real; the after-check would still catch it as an `overrun`. The handshake uses
`claim`, not `seq`: a writer that backs off from a slot pinned at that very moment never touches
its `seq`, so the pinned frame stays valid for its reader throughout.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lens.engine.shm import Segment

MAGIC = 0x4C454E5352494E47  # "LENSRING"
VERSION = 2
PAGE = 4096
HEADER_INTS = 16
META_COLS = 8
# header fields
H_MAGIC, H_VERSION, H_SLOTS, H_HEIGHT, H_WIDTH, H_CHANNELS, H_SLOT_BYTES, H_DATA_OFF, H_WRITES = range(9)
# meta columns
M_SEQ, M_FRAME, M_TIME, M_PIN, M_CLAIM = range(5)


_FENCE = threading.Lock()


def full_fence() -> None:
    """A full memory barrier (StoreLoad included): acquiring and releasing an uncontended lock runs
    atomic read-modify-write instructions, which order every earlier store before later loads."""
    _FENCE.acquire()
    _FENCE.release()


def _align(n: int, to: int = PAGE) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingGeometry:
    slots: int
    height: int
    width: int
    channels: int  # 1 = gray, 3 = BGR

    def __post_init__(self) -> None:
        if self.slots < 2 or self.height < 1 or self.width < 1 or self.channels not in (1, 3):
            raise ValueError(f"bad ring geometry {self}: slots >= 2, height and width >= 1, channels 1 or 3")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * self.channels

    @property
    def slot_bytes(self) -> int:
        return _align(self.frame_bytes)

    @property
    def data_offset(self) -> int:
        return _align((HEADER_INTS + self.slots * META_COLS) * 8)

    @property
    def total_bytes(self) -> int:
        return self.data_offset + self.slots * self.slot_bytes


class Ring:
    """A mapped ring. `Ring.create` (capture side) or `Ring.attach` (dispatcher, workers)."""

    def __init__(self, segment: Segment, geometry: RingGeometry, owner: bool) -> None:
        self.segment = segment
        self.name = segment.name
        self.geometry = geometry
        self.owner = owner
        g = geometry
        self._header = np.ndarray((HEADER_INTS,), np.int64, segment.buf, 0)
        self._meta = np.ndarray((g.slots, META_COLS), np.int64, segment.buf, HEADER_INTS * 8)
        self._meta_f = self._meta.view(np.float64)
        # One pre-built view per slot: indexing a list is ~0.2 us, building a view per frame is not.
        self._views = [
            np.ndarray(g.shape, np.uint8, segment.buf, g.data_offset + k * g.slot_bytes)
            for k in range(g.slots)
        ]
        self._ro_views = []
        for v in self._views:
            ro = v.view()
            ro.flags.writeable = False
            self._ro_views.append(ro)
        self._next = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, geometry: RingGeometry) -> Ring:
        seg = Segment(name, geometry.total_bytes, create=True)
        ring = cls(seg, geometry, owner=True)
        # Pre-touch every page: first writes into fresh shared pages are ~4x slower than later ones.
        np.frombuffer(seg.buf, np.uint8).fill(0)
        h = ring._header
        h[H_VERSION], h[H_SLOTS], h[H_HEIGHT], h[H_WIDTH] = (
            VERSION,
            geometry.slots,
            geometry.height,
            geometry.width,
        )
        h[H_CHANNELS], h[H_SLOT_BYTES], h[H_DATA_OFF] = (
            geometry.channels,
            geometry.slot_bytes,
            geometry.data_offset,
        )
        h[H_MAGIC] = MAGIC  # last: a reader that sees the magic sees a complete header
        return ring

    @classmethod
    def attach(cls, name: str) -> Ring:
        seg = Segment(name)
        h = np.ndarray((HEADER_INTS,), np.int64, seg.buf, 0)
        if int(h[H_MAGIC]) != MAGIC or int(h[H_VERSION]) != VERSION:
            del h
            seg.close()
            raise ValueError(f"shared-memory segment {name!r} is not a lens ring (or not initialised yet)")
        geometry = RingGeometry(int(h[H_SLOTS]), int(h[H_HEIGHT]), int(h[H_WIDTH]), int(h[H_CHANNELS]))
        del h
        return cls(seg, geometry, owner=False)

    def close(self) -> None:
        self._views.clear()
        self._ro_views.clear()
        del self._header, self._meta, self._meta_f
        self.segment.close()

    def unlink(self) -> None:
        self.segment.unlink()

    # -- writer (capture) ---------------------------------------------------------------------

    @property
    def writes(self) -> int:
        return int(self._header[H_WRITES])

    def begin_write(self) -> tuple[int, np.ndarray] | None:
        """Claim the next unpinned slot for writing; returns (slot, writable view) or None if all are
        pinned. Never blocks."""
        meta = self._meta
        n = self.geometry.slots
        for i in range(n):
            k = (self._next + i) % n
            if meta[k, M_PIN] != 0:
                continue
            meta[k, M_CLAIM] = 1
            full_fence()
            if meta[k, M_PIN] != 0:  # a pin raced in: leave the slot and its frame as they were
                meta[k, M_CLAIM] = 0
                continue
            meta[k, M_SEQ] = 2 * int(self._header[H_WRITES]) + 1  # odd: being written
            self._next = (k + 1) % n
            return k, self._views[k]
        return None

    def commit(self, slot: int, frame_id: int, captured_at: float) -> int:
        """Publish the frame written into `slot`; returns its sequence number."""
        writes = int(self._header[H_WRITES])
        seq = 2 * writes + 2
        self._meta[slot, M_FRAME] = frame_id
        self._meta_f[slot, M_TIME] = captured_at
        self._meta[slot, M_SEQ] = seq
        self._meta[slot, M_CLAIM] = 0
        self._header[H_WRITES] = writes + 1
        return seq

    def abort(self, slot: int) -> None:
        """Give back a slot claimed by begin_write without publishing (e.g. the source failed)."""
        self._meta[slot, M_SEQ] = 0
        self._meta[slot, M_CLAIM] = 0

    # -- dispatcher -----------------------------------------------------------------------------

    def pin(self, slot: int, seq: int) -> bool:
        """Pin `slot` for a reader if it still holds frame `seq`; False if it is being (or has been)
        overwritten."""
        self._meta[slot, M_PIN] += 1
        full_fence()
        if self._meta[slot, M_CLAIM] != 0 or self._meta[slot, M_SEQ] != seq:
            self._meta[slot, M_PIN] -= 1
            return False
        return True

    def unpin(self, slot: int) -> None:
        if self._meta[slot, M_PIN] > 0:
            self._meta[slot, M_PIN] -= 1

    def pins(self) -> int:
        return int(np.count_nonzero(self._meta[:, M_PIN]))

    # -- readers (workers) ------------------------------------------------------------------------

    def view(self, slot: int) -> np.ndarray:
        """Read-only numpy view of a slot's pixels (no copy)."""
        return self._ro_views[slot]

    def seq(self, slot: int) -> int:
        return int(self._meta[slot, M_SEQ])

    def valid(self, slot: int, seq: int) -> bool:
        """True while `slot` still holds the frame published as `seq`."""
        return bool(self._meta[slot, M_SEQ] == seq)

    def frame_info(self, slot: int) -> tuple[int, float]:
        """(frame_id, captured_at) of the slot; like the pixels, trust it only if `valid` after."""
        return int(self._meta[slot, M_FRAME]), float(self._meta_f[slot, M_TIME])

    def latest(self) -> tuple[int, int] | None:
        """(slot, seq) of the most recently published frame, or None before the first one."""
        writes = int(self._header[H_WRITES])
        if writes == 0:
            return None
        seq = 2 * writes
        hit = np.flatnonzero(self._meta[:, M_SEQ] == seq)
        return (int(hit[0]), seq) if hit.size else None
