"""The results bus over real sockets: exact round trips, topic filtering, and XPUB_NODROP accounting."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from lens.engine.bus import Publisher, Subscriber, event_topic, pack, result_topic, unpack
from tests.lensrun import free_port

RESULT = {
    "type": "inspection.result",
    "machine_id": "vm_001",
    "camera": "cam0",
    "result_id": 1042,
    "frame_id": 5310,
    "trigger": "continuous",
    "mode": "RUN",
    "pass": True,
    "captured_at": 1763760000.123,
    "finished_at": 1763760000.125,
    "inspection_version": 3,
    "tools": {
        "brightness": {
            "type": "grayscale",
            "method": "luminance",
            "value": 97.2,
            "pass": True,
            "elapsed_us": 41.0,
            "measures": {"mean": 97.2, "min": 3, "max": 250, "std": 61.0},
        },
        "parts": {
            "type": "blob",
            "value": 4,
            "pass": True,
            "elapsed_us": 180.0,
            "measures": {"count": 4, "total_area": 9120},
            "blobs": [{"x": 10, "y": 20, "w": 40, "h": 40, "area": 1300, "cx": 30.1, "cy": 40.2}],
        },
    },
}
EVENT = {
    "type": "event.camera",
    "machine_id": "vm_001",
    "at": 1763760001.5,
    "camera": "cam0",
    "state": "online",
}
ERROR = {**RESULT, "pass": False, "tools": {}, "error": {"code": "LENS_OVERRUN", "message": "frame 1 ..."}}


@pytest.fixture(params=["ipc", "tcp"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "tcp":
        yield f"tcp://127.0.0.1:{free_port()}"
    else:
        with tempfile.TemporaryDirectory(prefix="lensbus") as d:  # short: unix socket paths are < 108 bytes
            yield f"ipc://{d}/bus.sock"


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)  # closes whatever a failing test left open, then terminates


def await_subscriptions(pub: Publisher, n: int = 1) -> list[bytes]:
    """Block until `n` subscription messages reached the publisher (the connection is up)."""
    got = []
    for _ in range(n):
        assert pub.sock.poll(10_000), "no subscription reached the publisher"
        got.append(pub.sock.recv())
    return got


def test_topics_round_trip_exactly(ctx: zmq.Context, endpoint: str) -> None:
    pub = Publisher(ctx, endpoint)
    sub = Subscriber(ctx, endpoint)
    try:
        assert await_subscriptions(pub) == [b"\x01"]  # subscribe to everything
        assert pub.publish(result_topic("cam0"), pack(RESULT))
        assert pub.publish(event_topic("camera"), pack(EVENT))
        assert pub.publish(result_topic("cam0"), pack(ERROR))
        assert sub.recv(timeout_ms=10_000) == ("result.cam0", RESULT)
        assert sub.recv(timeout_ms=10_000) == ("event.camera", EVENT)
        assert sub.recv(timeout_ms=10_000) == ("result.cam0", ERROR)
        assert (pub.sent, pub.dropped) == (3, 0)
    finally:
        sub.close()
        pub.close()


def test_envelope_types_survive_msgpack() -> None:
    env: dict[str, Any] = {**RESULT, "raw": b"\x00\xff", "none": None, 7: "int key", "big": 2**40}
    back = unpack(pack(env))
    assert back == env
    assert isinstance(back["raw"], bytes) and isinstance(back["captured_at"], float)
    assert isinstance(back["tools"]["parts"]["value"], int)


def test_topic_filtering(ctx: zmq.Context, endpoint: str) -> None:
    pub = Publisher(ctx, endpoint)
    results = Subscriber(ctx, endpoint, topics=["result."])
    cam1 = Subscriber(ctx, endpoint, topics=["result.cam1", "event."])
    try:
        assert sorted(await_subscriptions(pub, 3)) == [b"\x01event.", b"\x01result.", b"\x01result.cam1"]
        sent = [
            (event_topic("camera"), {**EVENT, "n": 0}),
            (result_topic("cam0"), {**RESULT, "frame_id": 1}),
            (result_topic("cam1"), {**RESULT, "camera": "cam1", "frame_id": 2}),
            (event_topic("summary"), {**EVENT, "type": "event.summary", "n": 3}),
            (result_topic("cam0"), {**RESULT, "frame_id": 4}),
        ]
        for topic, env in sent:
            assert pub.publish(topic, pack(env))
        # one pipe per subscriber keeps publication order, so a message that should have been
        # filtered out would show up before the ones after it
        assert [results.recv(timeout_ms=10_000) for _ in range(3)] == [
            ("result.cam0", sent[1][1]),
            ("result.cam1", sent[2][1]),
            ("result.cam0", sent[4][1]),
        ]
        assert [cam1.recv(timeout_ms=10_000) for _ in range(3)] == [
            ("event.camera", sent[0][1]),
            ("result.cam1", sent[2][1]),
            ("event.summary", sent[3][1]),
        ]
        pub.publish(result_topic("cam2"), pack({"last": True}))  # a marker after everything
        assert results.recv(timeout_ms=10_000) == ("result.cam2", {"last": True})
    finally:
        results.close()
        cam1.close()
        pub.close()


def test_nodrop_counts_what_a_stalled_subscriber_cannot_take(ctx: zmq.Context, endpoint: str) -> None:
    pub = Publisher(ctx, endpoint, hwm=10)
    sub = Subscriber(ctx, endpoint, topics=["result."], hwm=10)  # never reads while we publish
    try:
        await_subscriptions(pub)
        accepted = []
        for i in range(5000):
            if pub.publish(result_topic("cam0"), pack({**RESULT, "result_id": i})):
                accepted.append(i)
        assert pub.dropped > 0
        assert pub.sent + pub.dropped == 5000
        assert pub.sent == len(accepted)
        # nothing the publisher accepted is lost: the subscriber gets exactly those, in order
        received = []
        while len(received) < len(accepted):
            msg = sub.recv(timeout_ms=10_000)
            assert msg is not None, f"only {len(received)} of {len(accepted)} accepted messages arrived"
            received.append(msg[1]["result_id"])
        assert received == accepted
        assert pub.publish(result_topic("cam0"), pack({"marker": 1}))
        assert sub.recv(timeout_ms=10_000) == ("result.cam0", {"marker": 1})  # nothing else was queued
    finally:
        sub.close()
        pub.close()


def test_nothing_dropped_without_a_matching_subscriber(ctx: zmq.Context, endpoint: str) -> None:
    pub = Publisher(ctx, endpoint, hwm=10)
    try:
        for i in range(5000):
            assert pub.publish(result_topic("cam0"), pack({"result_id": i}))
        assert (pub.sent, pub.dropped) == (5000, 0)
        events_only = Subscriber(ctx, endpoint, topics=["event."], hwm=10)
        try:
            await_subscriptions(pub)
            for i in range(5000):  # filtered out at the publisher: never queued, never dropped
                pub.publish(result_topic("cam0"), pack({"result_id": i}))
            assert (pub.sent, pub.dropped) == (10000, 0)
        finally:
            events_only.close()
    finally:
        pub.close()


def test_drain_subscriptions_consumes_notifications(ctx: zmq.Context, endpoint: str) -> None:
    pub = Publisher(ctx, endpoint)
    sub = Subscriber(ctx, endpoint, topics=["result."])
    try:
        assert pub.sock.poll(10_000)  # the subscription is waiting to be read
        pub.drain_subscriptions()
        assert pub.sock.poll(0) == 0
        assert pub.publish(result_topic("cam0"), pack(RESULT))  # still delivering after the drain
        assert sub.recv(timeout_ms=10_000) == ("result.cam0", RESULT)
    finally:
        sub.close()
        pub.close()
