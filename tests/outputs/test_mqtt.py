"""MqttSink against a real mosquitto: topics and exact payloads, retained status, last will,
buffering across a broker restart, overflow accounting."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from lens.config.outputs import MqttOutput
from lens.outputs.mqtt import MqttSink
from tests.outputs.conftest import Broker, Subscriber, free_port, wait_until

Events = list[tuple[str, dict[str, Any]]]


def result(rid: int, camera: str = "cam0", passed: bool = True) -> dict[str, Any]:
    return {
        "type": "inspection.result", "machine_id": "m1", "camera": camera, "result_id": rid,
        "frame_id": 1000 + rid, "trigger": "continuous", "mode": "RUN", "pass": passed,
        "captured_at": 1763760000.0 + rid, "finished_at": 1763760000.5 + rid, "inspection_version": 3,
        "tools": {"brightness": {"type": "grayscale", "value": 97.2, "pass": passed, "elapsed_us": 41.0,
                                 "measures": {"mean": 97.2, "min": 3, "max": 250}}},
    }  # fmt: skip


@pytest.fixture
def sinks() -> Iterator[Callable[..., MqttSink]]:
    """sinks(port, on_event=None, reconnect_min_s=..., **MqttOutput fields) -> a sink for machine m1,
    stopped after the test."""
    made: list[MqttSink] = []

    def make(port: int, on_event: Any = None, reconnect_min_s: float = 0.1, **cfg: Any) -> MqttSink:
        sink = MqttSink(
            MqttOutput(host="127.0.0.1", port=port, **cfg),
            "m1",
            on_event,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=0.5,
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.stop()


def recorder() -> tuple[Events, Callable[[str, dict[str, Any]], None]]:
    events: Events = []
    return events, lambda kind, fields: events.append((kind, fields))


def states(got: list[Any]) -> list[str]:
    return [orjson.loads(m.payload)["state"] for m in got]


def test_results_events_and_retained_status(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], sinks: Callable[..., MqttSink]
) -> None:
    sub = subscriber(mosquitto, ["lens/m1/#"])
    events, hook = recorder()
    sink = sinks(mosquitto.port, on_event=hook)
    sink.start()
    wait_until(lambda: sink.stats()["connected"], "the sink to connect")
    failed, passed = result(1, passed=False), result(2, camera="cam1")
    assert sink.publish_result(failed) is True
    assert sink.publish_result(passed) is True
    assert sink.publish_event("image_log", {"type": "image_log", "state": "paused", "disk_pct": 96.5})
    assert sink.set_status({"mode": "RUN", "cameras": 2}) is True

    assert sub.wait_for(1, "lens/m1/cam0/result")[0].payload == orjson.dumps(failed)
    assert sub.wait_for(1, "lens/m1/cam1/result")[0].payload == orjson.dumps(passed)
    event = sub.wait_for(1, "lens/m1/event/image_log")[0]
    assert orjson.loads(event.payload) == {"type": "image_log", "state": "paused", "disk_pct": 96.5}
    online, with_mode = (orjson.loads(m.payload) for m in sub.wait_for(2, "lens/m1/status"))
    assert online.keys() == {"state", "machine_id", "at"}
    assert (online["state"], online["machine_id"]) == ("online", "m1")
    assert isinstance(online["at"], float)
    assert {k: v for k, v in with_mode.items() if k != "at"} == {
        "mode": "RUN", "cameras": 2, "state": "online", "machine_id": "m1"
    }  # fmt: skip
    wait_until(lambda: sink.stats()["published"] == 5, "5 confirmed publishes (2 status, 2 results, 1 event)")

    late = subscriber(mosquitto, ["lens/m1/status"])  # subscribes after the status was set
    retained = late.wait_for(1)[0]
    assert retained.retain is True
    assert orjson.loads(retained.payload) == with_mode

    sink.stop()
    assert states(sub.wait_for(3, "lens/m1/status")) == ["online", "online", "offline"]
    after_stop = subscriber(mosquitto, ["lens/m1/status"]).wait_for(1)[0]
    assert after_stop.retain is True
    offline = orjson.loads(after_stop.payload)
    assert {k: v for k, v in offline.items() if k != "at"} == {"state": "offline", "machine_id": "m1"}
    assert sink.stats() == {
        "broker": f"127.0.0.1:{mosquitto.port}", "connected": False, "published": 6, "buffered": 0,
        "inflight": 0, "dropped": 0, "reconnects": 0, "last_error": None,
    }  # fmt: skip
    assert events == [
        ("mqtt", {"state": "connected", "broker": f"127.0.0.1:{mosquitto.port}", "reconnects": 0})
    ]


@pytest.mark.parametrize(("qos", "buffer", "n"), [(1, 1000, 40), (0, 1000, 40), (2, 5, 12)])
def test_broker_outage_buffers_and_delivers_in_order(
    mosquitto_persistent: Broker,
    subscriber: Callable[..., Subscriber],
    sinks: Callable[..., MqttSink],
    qos: int,
    buffer: int,
    n: int,
) -> None:
    broker = mosquitto_persistent
    topic = "lens/m1/cam0/result"
    # a persistent session: the broker queues for it whichever of the two reconnects first
    sub = subscriber(broker, [topic], session="lens-test-outage")
    events, hook = recorder()
    sink = sinks(broker.port, on_event=hook, qos=qos, buffer=buffer)
    sink.start()
    sink.publish_result(result(1))
    sub.wait_for(1, topic)
    wait_until(lambda: sink.stats()["published"] == 2, "status and result 1 confirmed")

    broker.stop()
    wait_until(lambda: not sink.stats()["connected"], "the sink to see the broker gone")
    ids = list(range(2, 2 + n))
    for rid in ids:
        assert sink.publish_result(result(rid)) is True
    kept = ids[-buffer:]
    wait_until(lambda: sink.stats()["buffered"] == len(kept), f"{len(kept)} buffered messages")
    assert sink.stats()["dropped"] == n - len(kept)

    broker.start()
    got = sub.wait_for(1 + len(kept), topic)
    assert [orjson.loads(m.payload)["result_id"] for m in got] == [1, *kept]
    assert [m.payload for m in got[1:]] == [orjson.dumps(result(rid)) for rid in kept]
    wait_until(lambda: sink.stats()["published"] == 3 + len(kept), "every buffered message confirmed")
    stats = sink.stats()
    assert (stats["connected"], stats["buffered"], stats["inflight"], stats["reconnects"]) == (True, 0, 0, 1)
    assert stats["dropped"] == n - len(kept)
    broker_name = f"127.0.0.1:{broker.port}"
    assert [(k, f["state"]) for k, f in events] == [("mqtt", "connected"), ("mqtt", "disconnected"),
                                                    ("mqtt", "connected")]  # fmt: skip
    assert events[2][1] == {"state": "connected", "broker": broker_name, "reconnects": 1}
    assert events[1][1]["broker"] == broker_name


@pytest.mark.parametrize("qos", [0, 1])
def test_link_cut_with_messages_in_flight_loses_nothing(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], sinks: Callable[..., MqttSink], qos: int
) -> None:
    """Whatever paho held when the link died (QoS 0 not yet written, QoS 1 unacknowledged) arrives
    after the reconnect, before anything newer: ids arrive in order, duplicates allowed at QoS 1."""
    topic = "lens/m1/cam0/result"
    sub = subscriber(mosquitto, [topic])
    sink = sinks(mosquitto.port, qos=qos)
    sink.start()
    wait_until(lambda: sink.stats()["connected"], "the sink to connect")
    n, cuts = 2000, 0
    for rid in range(1, n + 1):
        sink.publish_result(result(rid))
        if rid % 500 == 250 and (sock := sink._client.socket()) is not None:  # type: ignore[union-attr]
            with contextlib.suppress(OSError):  # paho may have closed it a moment ago
                sock.shutdown(socket.SHUT_RDWR)
                cuts += 1
    ids: list[int] = []  # result ids in arrival order, parsed as they come

    def all_arrived() -> bool:
        ids.extend(orjson.loads(m.payload)["result_id"] for m in sub.messages[len(ids) :])
        return len(set(ids)) == n

    wait_until(all_arrived, f"all {n} results", timeout=60)
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(1, n + 1))
    assert cuts >= 1
    stats = sink.stats()
    assert (stats["dropped"], stats["reconnects"] >= 1) == (0, True)


def test_last_will_on_an_unclean_disconnect(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], sinks: Callable[..., MqttSink]
) -> None:
    status = "lens/m1/status"
    sub = subscriber(mosquitto, [status], v5=True)  # retain-as-published: live messages keep the flag
    sink = sinks(mosquitto.port)
    sink.start()
    sub.wait_for(1, status)
    sock = sink._client.socket()  # type: ignore[union-attr]
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)  # the link dies without a DISCONNECT packet, as in a crash
    got = sub.wait_for(3, status)  # online, the will, online again after the reconnect
    assert states(got) == ["online", "offline", "online"]
    assert [m.retain for m in got] == [True, True, True]
    assert orjson.loads(got[1].payload) == {"state": "offline", "machine_id": "m1"}
    wait_until(lambda: sink.stats()["reconnects"] == 1, "the reconnect counted")


def test_stop_while_the_broker_is_away_counts_what_was_waiting(sinks: Callable[..., MqttSink]) -> None:
    port = free_port()  # nothing listens there
    sink = sinks(port)
    sink.start()
    for rid in (1, 2, 3):
        assert sink.publish_result(result(rid)) is True
    wait_until(lambda: sink.stats()["buffered"] == 3, "3 buffered messages")
    wait_until(lambda: sink.stats()["last_error"] is not None, "a failed connection attempt")
    sink.stop()
    assert sink.stats() == {
        "broker": f"127.0.0.1:{port}", "connected": False, "published": 0, "buffered": 0, "inflight": 0,
        "dropped": 3, "reconnects": 0, "last_error": f"cannot connect to 127.0.0.1:{port}",
    }  # fmt: skip
    assert sink.publish_result(result(4)) is False  # stopped: refused and counted
    assert sink.stats()["dropped"] == 4


def test_refused_messages_are_counted(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], sinks: Callable[..., MqttSink]
) -> None:
    sub = subscriber(mosquitto, ["lens/#"])
    quiet = sinks(mosquitto.port, results=False)
    assert quiet.publish_event("e", {}) is False  # not started yet
    assert quiet.stats()["last_error"] == "lens/m1/event/e: the sink is not running"
    quiet.start()
    assert quiet.publish_result(result(1)) is False  # results are off: not an error
    assert quiet.publish("lens/m1/a/+", "x", 1) is False
    assert quiet.stats()["last_error"] == "topic 'lens/m1/a/+' has a wildcard (+ or #) or a NUL"
    assert quiet.publish_event("a/b", {"x": 1}) is False
    assert quiet.publish("lens/m1/raw", b"\x00\x01", 2) is True
    assert quiet.publish_event("ok", {"not json": {1, 2}}) is False
    assert quiet.publish_result({**result(2), "camera": "cam/0"}) is False
    assert quiet.set_status({"bad": object()}) is False
    raw = sub.wait_for(1, "lens/m1/raw")[0]
    assert (raw.payload, raw.qos) == (b"\x00\x01", 1)  # delivered at the subscription's QoS
    stats = quiet.stats()
    assert (stats["dropped"], stats["buffered"]) == (4, 0)


def test_bad_configuration_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"machine_id: 'a/b' is not one topic level"):
        MqttSink(MqttOutput(), "a/b")
    monkeypatch.delenv("LENS_TEST_MQTT_USER", raising=False)
    sink = MqttSink(MqttOutput(username_env="LENS_TEST_MQTT_USER"), "m1")
    with pytest.raises(
        ValueError, match=r"outputs\.mqtt\.username_env: environment variable LENS_TEST_MQTT_USER is not set"
    ):
        sink.start()
    monkeypatch.setenv("LENS_TEST_MQTT_PASSWORD", "secret")
    with pytest.raises(ValueError, match=r"outputs\.mqtt\.password_env needs username_env too"):
        MqttSink(MqttOutput(password_env="LENS_TEST_MQTT_PASSWORD"), "m1").start()
    sink.stop()  # never started: nothing to do
