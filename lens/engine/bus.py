"""The results bus: ZeroMQ PUB of (topic, msgpack payload) messages, and its subscriber.

Topics: `result.<camera>` and `event.<kind>`. The publisher is an XPUB with XPUB_NODROP: when an
external subscriber is slower than the pipeline and its queue (high-water mark) is full, the send
fails instead of silently discarding, and the loss is counted (`bus_dropped`). lens never waits
for an external subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack
import zmq


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def result_topic(camera: str) -> bytes:
    return f"result.{camera}".encode()


def event_topic(kind: str) -> bytes:
    return f"event.{kind}".encode()


def image_topic(camera: str) -> bytes:
    return f"image.{camera}".encode()


def drain(sock: zmq.Socket) -> int:
    """Receive and discard every message already waiting on `sock`; returns how many."""
    n = 0
    while True:
        try:
            sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return n
        n += 1


class Publisher:
    """Bound XPUB socket that never blocks; counts what it could not deliver."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int = 10000) -> None:
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError:
            self.sock.close(linger=0)  # else the context's term() would wait for it forever
            raise
        self.endpoint = endpoint
        self.sent = 0
        self.dropped = 0

    def publish(self, topic: bytes, payload: bytes) -> bool:
        """Send one message; False (and counted) if a subscriber's queue is full."""
        try:
            self.sock.send_multipart((topic, payload), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def drain_subscriptions(self) -> None:
        """Consume (un)subscribe notifications so they do not pile up."""
        drain(self.sock)

    def close(self) -> None:
        self.sock.close(linger=0)


class InternalBus:
    """The run's internal copy of the bus (ipc, in the run folder) for lens's own consumers: the
    control service and the outputs process. External subscribers cannot slow it down (no
    XPUB_NODROP here), and every message carries a sequence number (third frame) so a consumer
    counts what it missed instead of losing it silently."""

    HWM = 200_000  # messages queued per consumer (a few seconds at full speed, even for a slow one)

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, self.HWM)
        self.sock.bind(endpoint)
        self.seq = 0

    def publish(self, topic: bytes, payload: bytes | zmq.Frame) -> None:
        self.seq += 1
        self.sock.send_multipart((topic, payload, self.seq.to_bytes(8, "little")), copy=False)

    def close(self) -> None:
        self.sock.close(linger=0)


class SeqGap:
    """Counts messages an internal consumer missed (gaps in the sequence numbers)."""

    def __init__(self) -> None:
        self.last = 0
        self.missed = 0

    def see(self, seq_frame: bytes) -> None:
        seq = int.from_bytes(seq_frame, "little")
        if self.last and seq > self.last + 1:
            self.missed += seq - self.last - 1
        self.last = seq  # a smaller number: the dispatcher restarted and counts from 1 again


class Subscriber:
    """Connects to a results bus; yields (topic, decoded envelope)."""

    def __init__(
        self, ctx: zmq.Context, endpoint: str, topics: Iterable[str] = ("",), hwm: int = 100000
    ) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(endpoint)

    def recv(self, timeout_ms: int | None = None) -> tuple[str, dict[str, Any]] | None:
        if timeout_ms is not None and not self.sock.poll(timeout_ms):
            return None
        topic, payload = self.sock.recv_multipart()
        return topic.decode(), unpack(payload)

    def close(self) -> None:
        self.sock.close(linger=0)
