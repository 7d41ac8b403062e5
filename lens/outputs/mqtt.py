"""MQTT sink (SPEC §5): results, events and a retained status on a real broker, reconnecting.

Topics, under `<prefix>/<machine>/`: `<camera>/result` (each result envelope as JSON), `event/<kind>`,
and `status`, a retained JSON `{"state": "online", "machine_id", "at", ...}` published on every
(re)connect and whenever `set_status` is called (the outputs process: once a second, with its
counters); on a clean stop it becomes `offline`, and the broker publishes the last will
`{"state": "offline", "machine_id"}` there when the link dies uncleanly.

Nothing here blocks the caller: a publish is one command on a queue served by a single sender thread,
which owns all the state. The sender hands paho at most `WINDOW` unconfirmed messages at a time and
keeps the rest, in order, in a buffer of `cfg.buffer` messages (beyond it the oldest is dropped and
counted). A message is *published* once paho confirms it (QoS 0: written to the socket; 1: PUBACK;
2: PUBCOMP), so every message is published, waiting, or counted as dropped:
- QoS 0 messages queued in paho but not written when the link died are lost by paho: they go back to
  the head of the buffer.
- QoS 1/2 messages paho holds unconfirmed (or refused with MQTT_ERR_NO_CONN, which it keeps too) are
  re-sent by paho itself after the reconnect; newer messages wait for those, so order is kept.
- At stop(), whatever is still waiting after the grace period is counted as dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from lens.config.outputs import MqttOutput

log = logging.getLogger("lens.mqtt")

EventHook = Callable[[str, dict[str, Any]], None]
WINDOW = 50  # unconfirmed messages handed to paho at once (also paho's in-flight limit)
RESUME_WAIT_S = 10.0  # after a reconnect, newer messages wait at most this long for paho's re-sends
DROP_LOG_EVERY_S = 10.0
JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# sender-thread commands
_MSG, _STATUS, _ACK, _UP, _DOWN, _FAIL, _STOP = range(7)


def topic_error(topic: str) -> str | None:
    """Why `topic` cannot be published to, or None: it must be non-empty, without `+`, `#` or NUL."""
    if not topic:
        return "empty topic"
    if any(c in topic for c in "+#\x00"):
        return f"topic {topic!r} has a wildcard (+ or #) or a NUL"
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return f"topic {topic[:40]!r}... is longer than 65535 bytes"
    return None


def _level_error(name: str) -> str | None:
    """Why `name` cannot be one topic level (a machine id, a camera, an event kind), or None."""
    if not name or "/" in name:
        return f"{name!r} is not one topic level (empty, or has a /)"
    return topic_error(name)


@dataclass(slots=True)
class _Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    status: bool = False  # superseded by the next status: never re-sent from the buffer


class MqttSink:
    """Publishes results, events and the machine's status to `cfg`'s broker; see the module doc."""

    def __init__(
        self,
        cfg: MqttOutput,
        machine_id: str,
        on_event: EventHook | None = None,
        *,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        if err := _level_error(machine_id):
            raise ValueError(f"machine_id: {err}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(
                f"reconnect delays must be 0 < min <= max, got {reconnect_min_s}, {reconnect_max_s}"
            )
        self.cfg = cfg
        self.machine_id = machine_id
        self.on_event = on_event
        self.base = f"{cfg.topic_prefix}/{machine_id}"
        self.status_topic = f"{self.base}/status"
        self.broker = f"{cfg.host}:{cfg.port}"
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._cmds: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._gate = threading.Lock()  # makes "is it open? then enqueue" atomic against stop()
        self._open = False
        self._closed = False
        self._rejected = 0  # refused in the caller's thread (under _gate)
        self._client: paho.Client | None = None
        self._sender: threading.Thread | None = None
        # owned by the sender thread once started (stats() only reads them)
        self._buf: deque[_Msg] = deque()
        self._pending: dict[int, _Msg] = {}  # handed to paho, not yet confirmed, in send order
        self._link = False  # CONNACK received, no disconnect since
        self._stalled = False  # paho answered NO_CONN: wait for the disconnect/connect callbacks
        self._resume_until = 0.0  # > 0: waiting for paho's own re-sends after a reconnect
        self._failing = False  # connection attempts failing (logged once per outage)
        self._status: dict[str, Any] = {}
        self._connects = 0
        self._published = 0
        self._dropped = 0
        self._last_drop_log = 0.0
        self.last_error: str | None = None

    # ---- caller side (any thread; never blocks) ----

    def start(self) -> None:
        """Connect in the background; raises ValueError if a credential variable is not set."""
        if self._client is not None or self._closed:
            raise RuntimeError("MqttSink.start() may be called once")
        username, password = self._credentials()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"lens-{self.machine_id}-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.will_set(
            self.status_topic, self._status_payload("offline", will=True), self.cfg.qos, retain=True
        )
        if username is not None:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(*self._reconnect)  # type: ignore[arg-type]  # paho takes floats too
        client.max_inflight_messages_set(WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self._client = client
        self._open = True
        self._sender = threading.Thread(target=self._run, name=f"mqtt-{self.machine_id}", daemon=True)
        self._sender.start()
        client.loop_start()

    def stop(self, grace_s: float = 2.0) -> None:
        """Publish the retained `offline` status, wait up to `grace_s` for what is still waiting
        (then count it as dropped), disconnect and join both threads."""
        with self._gate:
            if not self._open:
                self._closed = True
                return
            self._open = False
            self._closed = True
            self._cmds.put((_STOP, grace_s))
        assert self._sender is not None and self._client is not None
        self._sender.join()
        self._client.disconnect()
        self._client.loop_stop()
        while True:  # commands that raced with the sender's exit
            try:
                kind, _ = self._cmds.get_nowait()
            except queue.Empty:
                break
            if kind == _MSG:
                self._dropped += 1

    def publish_result(self, env: Mapping[str, Any]) -> bool:
        """Queue `env` on `<prefix>/<machine>/<camera>/result`; False if refused (counted) or
        results are off (`cfg.results: false`, not counted)."""
        if not self.cfg.results:
            return False
        camera = env.get("camera")
        if not isinstance(camera, str) or _level_error(camera):
            return self._refuse(f"result {env.get('result_id')!r}: camera {camera!r} is not one topic level")
        return self._queue_json(f"{self.base}/{camera}/result", env)

    def publish_event(self, kind: str, env: Mapping[str, Any]) -> bool:
        """Queue `env` on `<prefix>/<machine>/event/<kind>`; False if refused (counted)."""
        if err := _level_error(kind):
            return self._refuse(f"event kind: {err}")
        return self._queue_json(f"{self.base}/event/{kind}", env)

    def publish(self, topic: str, payload: bytes | str, qos: int, retain: bool = False) -> bool:
        """Queue one message; False if refused (bad topic or QoS, or the sink is stopped; counted)."""
        if err := topic_error(topic):
            return self._refuse(err)
        if qos not in (0, 1, 2):
            return self._refuse(f"QoS {qos!r} is not 0, 1 or 2")
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        return self._put(_Msg(topic, data, qos, retain))

    def set_status(self, status: Mapping[str, Any]) -> bool:
        """Replace the extra fields of the retained status (published now if connected, else on the
        next connect); False if they are not JSON-serialisable (the previous ones stay)."""
        fields = dict(status)
        try:
            orjson.dumps(fields, option=JSON_OPTS)
        except (orjson.JSONEncodeError, TypeError) as e:
            log.error("mqtt: status is not JSON: %s", e)
            self.last_error = f"status is not JSON: {e}"
            return False
        with self._gate:
            if self._open:
                self._cmds.put((_STATUS, fields))
            elif self._client is None and not self._closed:
                self._status = fields  # not started yet: the first connect publishes it
            else:
                return False
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: connected, published (confirmed by paho), buffered and inflight (now), dropped
        (buffer overflow, refused, or unconfirmed at stop), reconnects, last_error."""
        return {
            "broker": self.broker,
            "connected": self._link,
            "published": self._published,
            "buffered": len(self._buf),
            "inflight": len(self._pending),
            "dropped": self._dropped + self._rejected,
            "reconnects": max(0, self._connects - 1),
            "last_error": self.last_error,
        }

    def _credentials(self) -> tuple[str | None, str | None]:
        def read(field: str, name: str | None) -> str | None:
            if name is None:
                return None
            value = os.environ.get(name)
            if value is None:
                raise ValueError(f"outputs.mqtt.{field}: environment variable {name} is not set")
            return value

        username = read("username_env", self.cfg.username_env)
        password = read("password_env", self.cfg.password_env)
        if password is not None and username is None:
            raise ValueError(
                "outputs.mqtt.password_env needs username_env too (MQTT sends no password alone)"
            )
        return username, password

    def _queue_json(self, topic: str, env: Mapping[str, Any]) -> bool:
        try:
            payload = orjson.dumps(env, option=JSON_OPTS)
        except (orjson.JSONEncodeError, TypeError) as e:
            return self._refuse(f"{topic}: payload is not JSON: {e}")
        return self._put(_Msg(topic, payload, self.cfg.qos, False))

    def _put(self, msg: _Msg) -> bool:
        with self._gate:
            if self._open:
                self._cmds.put((_MSG, msg))
                return True
        return self._refuse(f"{msg.topic}: the sink is not running")

    def _refuse(self, why: str) -> bool:
        with self._gate:
            self._rejected += 1
        self.last_error = why
        log.error("mqtt: message dropped: %s", why)
        return False

    # ---- paho's network thread: only posts commands ----

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._cmds.put((_FAIL, f"connection refused: {reason}") if reason.is_failure else (_UP, None))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._cmds.put((_FAIL, f"cannot connect to {self.broker}"))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._cmds.put((_DOWN, str(reason)))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._cmds.put((_ACK, mid))

    # ---- sender thread: owns _buf, _pending and the link state ----

    def _run(self) -> None:
        stop_at: float | None = None
        while True:
            waiting = stop_at is not None or self._resume_until > 0
            try:
                kind, arg = self._cmds.get(timeout=0.1 if waiting else None)
            except queue.Empty:
                kind, arg = None, None
            if kind == _MSG:
                self._append(arg)
            elif kind == _ACK:
                if self._pending.pop(arg, None) is not None:
                    self._published += 1
            elif kind == _STATUS:
                self._status = arg
                if self._link and not self._stalled and not self._resume_until:
                    self._send(self._status_msg("online"))
            elif kind == _UP:
                self._up()
            elif kind == _DOWN:
                self._down(arg)
            elif kind == _FAIL:
                self._connect_failed(arg)
            elif kind == _STOP:
                stop_at = time.monotonic() + arg
                if self._link and not self._stalled:
                    self._send(self._status_msg("offline"))
            if self._resume_until and (not self._pending or time.monotonic() > self._resume_until):
                self._resumed()
            self._pump()
            if stop_at is not None and (
                not self._link or not (self._buf or self._pending) or time.monotonic() > stop_at
            ):
                break
        lost = len(self._buf) + sum(not m.status for m in self._pending.values())
        if lost:
            log.warning("mqtt: %d message(s) not delivered at stop: counted as dropped", lost)
        self._dropped += lost
        self._buf.clear()
        self._pending.clear()
        self._link = False

    def _append(self, msg: _Msg) -> None:
        self._buf.append(msg)
        self._trim()

    def _trim(self) -> None:
        over = len(self._buf) - self.cfg.buffer
        if over <= 0:
            return
        for _ in range(over):
            self._buf.popleft()
        self._dropped += over
        self.last_error = f"buffer full ({self.cfg.buffer} messages): oldest dropped"
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.warning("mqtt: %s; %d dropped so far", self.last_error, self._dropped)

    def _pump(self) -> None:
        while (
            self._buf
            and self._link
            and not self._stalled
            and not self._resume_until
            and len(self._pending) < WINDOW
        ):
            self._send(self._buf.popleft())

    def _send(self, msg: _Msg) -> None:
        assert self._client is not None
        try:
            info = self._client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        except ValueError as e:  # paho's own checks (e.g. payload too large)
            self._dropped += 1
            self.last_error = f"{msg.topic}: {e}"
            log.error("mqtt: message dropped: %s", self.last_error)
            return
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._pending[info.mid] = msg
        elif info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            self._stalled = True  # the link just died; on_disconnect is on its way
            if msg.qos > 0:
                self._pending[info.mid] = msg  # paho keeps it and sends it after the reconnect
            elif not msg.status:
                self._buf.appendleft(msg)
        else:
            self._dropped += 1
            self.last_error = f"{msg.topic}: {paho.error_string(info.rc)}"
            log.error("mqtt: message dropped: %s", self.last_error)

    def _up(self) -> None:
        self._connects += 1
        self._link = True
        self._stalled = False
        self._failing = False
        log.info("mqtt: connected to %s", self.broker)
        self._emit({"state": "connected", "broker": self.broker, "reconnects": max(0, self._connects - 1)})
        if self._pending:  # paho re-sends these itself right after the CONNACK: let them go first
            self._resume_until = time.monotonic() + RESUME_WAIT_S
        else:
            self._resumed()

    def _resumed(self) -> None:
        self._resume_until = 0.0
        self._send(self._status_msg("online"))

    def _down(self, reason: str) -> None:
        was_up = self._link
        self._link = False
        self._stalled = False
        self._resume_until = 0.0
        lost = [mid for mid, m in self._pending.items() if m.qos == 0]
        requeue = [m for m in (self._pending.pop(mid) for mid in lost) if not m.status]
        self._buf.extendleft(reversed(requeue))
        self._trim()
        self.last_error = f"disconnected from {self.broker}: {reason}"
        if was_up:
            log.warning("mqtt: %s (%d message(s) buffered)", self.last_error, len(self._buf))
            self._emit({"state": "disconnected", "broker": self.broker, "reason": reason,
                        "buffered": len(self._buf)})  # fmt: skip

    def _connect_failed(self, why: str) -> None:
        self.last_error = why
        if not self._failing:
            self._failing = True
            log.warning("mqtt: %s (retrying with backoff)", why)

    def _status_msg(self, state: str) -> _Msg:
        return _Msg(self.status_topic, self._status_payload(state), self.cfg.qos, True, status=True)

    def _status_payload(self, state: str, will: bool = False) -> bytes:
        fixed: dict[str, Any] = {"state": state, "machine_id": self.machine_id}
        if will:  # sent by the broker at an unknown later time: no timestamp, no stale fields
            return orjson.dumps(fixed)
        extra = self._status if state == "online" else {}
        return orjson.dumps({**extra, **fixed, "at": time.time()}, option=JSON_OPTS)

    def _emit(self, fields: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event("mqtt", fields)
        except Exception:
            log.exception("mqtt: on_event hook failed")
