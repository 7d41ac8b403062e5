"""Result actions (SPEC §5): on chosen outcomes, write a line to a serial port (a reject gate),
publish to MQTT, or call a URL.

`ActionRunner.handle(env)` only filters and enqueues: each action has its own bounded queue and
worker thread, so a slow URL or a stuck port holds up neither the caller nor another action. A full
queue drops the result for that action and counts it. Failures are counted, logged, kept as
`last_error`, and raised as an `action` event at most once per 10 s per action; nothing raises.

Templates (`line`, `topic`, `payload`, `url`) are `str.format` strings over exactly TEMPLATE_FIELDS:
result_id, camera, machine_id, frame_id, pass ("true"/"false"), outcome (fail/pass/error), finished_at.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import orjson
import serial

from lens.config.outputs import ActionConfig, MqttAction, SerialAction, UrlAction
from lens.outputs.mqtt import JSON_OPTS, MqttSink, topic_error

log = logging.getLogger("lens.actions")

EventHook = Callable[[str, dict[str, Any]], None]
QUEUE_SIZE = 1000  # results waiting per action; beyond, dropped and counted
REOPEN_EVERY_S = 1.0  # a failed serial port is reopened at most this often
EVENT_EVERY_S = 10.0  # an action's failure event (and warning log) at most this often
STOP_GRACE_S = 2.0  # at stop, queued results are still run for this long, then dropped and counted
SERIAL_WRITE_TIMEOUT_S = 1.0
_STOP = object()


def outcome(env: Mapping[str, Any]) -> str:
    """`error` if the result carries an error, else `pass` or `fail`."""
    if env.get("error") is not None:
        return "error"
    return "pass" if env.get("pass") else "fail"


def template_fields(env: Mapping[str, Any], machine_id: str) -> dict[str, Any]:
    """The values a template may name (TEMPLATE_FIELDS); a field missing from `env` is empty."""
    return {
        "result_id": env.get("result_id", ""),
        "camera": env.get("camera", ""),
        "machine_id": machine_id,
        "frame_id": env.get("frame_id", ""),
        "pass": "true" if env.get("pass") else "false",
        "outcome": outcome(env),
        "finished_at": env.get("finished_at", ""),
    }


class _Failed(Exception):
    """One run of an action failed; the message says why."""


def _render(template: str, fields: Mapping[str, Any]) -> str:
    try:
        return template.format_map(fields)
    except (ValueError, KeyError, IndexError, AttributeError) as e:  # a format spec that does not fit
        raise _Failed(f"template {template!r}: {type(e).__name__}: {e}") from None


class _Action:
    """One configured action: a bounded queue and a worker thread that runs `perform` per result."""

    kind: ClassVar[str]

    def __init__(self, index: int, cfg: ActionConfig, machine_id: str, on_event: EventHook | None) -> None:
        self.index = index
        self.cfg = cfg
        self.machine_id = machine_id
        self.on_event = on_event
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self.thread = threading.Thread(target=self._run, name=f"action-{index}-{self.kind}", daemon=True)
        self._lock = threading.Lock()  # counters are written by the caller (dropped) and the worker
        self._stop_at = 0.0
        self.fired = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._last_event: float | None = None
        self._unreported = 0

    @property
    def target(self) -> str:
        raise NotImplementedError

    def wants(self, env: Mapping[str, Any], result_outcome: str) -> bool:
        return result_outcome in self.cfg.when and self.cfg.camera in (None, env.get("camera"))

    def offer(self, env: Mapping[str, Any]) -> bool:
        """Queue `env`; False if the queue is full (the caller counts the drop)."""
        try:
            self.queue.put_nowait(env)
        except queue.Full:
            return False
        return True

    def begin_stop(self, grace_s: float) -> None:
        self._stop_at = time.monotonic() + grace_s
        self.queue.put(_STOP)  # after every queued result; the worker drains fast once grace is over

    def stats(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.kind,
            "target": self.target,
            "fired": self.fired,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.queue.qsize(),
            "last_error": self.last_error,
        }

    def open(self) -> None:
        """Called in the worker thread before the first result."""

    def close(self) -> None:
        """Called in the worker thread after the last result."""

    def perform(self, env: Mapping[str, Any]) -> None:
        """Run the action for one result; raise _Failed on failure."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.open()
            while True:
                env = self.queue.get()
                if env is _STOP:
                    break
                if self._stop_at and time.monotonic() > self._stop_at:
                    self.drop("stopping: not run within the stop grace period")
                    continue
                try:
                    self.perform(env)
                except _Failed as e:
                    self._fail(str(e))
                except Exception as e:  # a bug must not kill the worker: count it and go on
                    log.exception("action %d (%s): unexpected error", self.index, self.kind)
                    self._fail(f"{type(e).__name__}: {e}")
                else:
                    with self._lock:
                        self.fired += 1
        finally:
            self.close()

    def drop(self, why: str) -> None:
        with self._lock:
            self.dropped += 1
            self.last_error = why
        self._report(why)

    def _fail(self, why: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = why
        self._report(why)

    def _report(self, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._unreported += 1
            if self._last_event is not None and now - self._last_event < EVENT_EVERY_S:
                return
            self._last_event = now
            count, self._unreported = self._unreported, 0
        log.warning("action %d (%s %s): %s [%d problem(s) since the last report]",
                    self.index, self.kind, self.target, why, count)  # fmt: skip
        if self.on_event is None:
            return
        try:
            self.on_event("action", {"index": self.index, "type": self.kind, "error": why})
        except Exception:
            log.exception("action %d: on_event hook failed", self.index)


class _SerialAction(_Action):
    """Writes `line` + newline to a serial port, opened on first use and reopened after a failure."""

    kind = "serial"
    cfg: SerialAction

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.port: serial.SerialBase | None = None
        self._next_open = 0.0
        self._open_error = ""

    @property
    def target(self) -> str:
        return self.cfg.port

    def perform(self, env: Mapping[str, Any]) -> None:
        data = (_render(self.cfg.line, template_fields(env, self.machine_id)) + "\n").encode("utf-8")
        port = self._port()
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError) as e:
            self.close()
            raise _Failed(f"write to {self.cfg.port}: {e}") from None

    def _port(self) -> serial.SerialBase:
        if self.port is not None:
            return self.port
        now = time.monotonic()
        if now < self._next_open:
            raise _Failed(
                f"{self.cfg.port} is not open ({self._open_error}); retried at most once per second"
            )
        self._next_open = now + REOPEN_EVERY_S
        try:
            self.port = serial.serial_for_url(
                self.cfg.port, baudrate=self.cfg.baud, timeout=0, write_timeout=SERIAL_WRITE_TIMEOUT_S
            )
        except (serial.SerialException, OSError, ValueError) as e:
            self._open_error = str(e)
            raise _Failed(f"cannot open {self.cfg.port}: {e}") from None
        log.info("action %d: serial port %s open at %d baud", self.index, self.cfg.port, self.cfg.baud)
        return self.port

    def close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as e:
                log.warning("action %d: closing %s: %s", self.index, self.cfg.port, e)


class _MqttAction(_Action):
    """Hands `payload` on `topic` to the MQTT sink (which buffers while the broker is away)."""

    kind = "mqtt"
    cfg: MqttAction

    def __init__(self, *args: Any, mqtt: MqttSink, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.mqtt = mqtt

    @property
    def target(self) -> str:
        return self.cfg.topic

    def perform(self, env: Mapping[str, Any]) -> None:
        fields = template_fields(env, self.machine_id)
        topic = _render(self.cfg.topic, fields)
        if err := topic_error(topic):
            raise _Failed(err)
        if not self.mqtt.publish(topic, _render(self.cfg.payload, fields), self.cfg.qos):
            raise _Failed(f"the MQTT sink refused a message on {topic!r}: {self.mqtt.last_error}")


class _UrlAction(_Action):
    """Sends the result envelope as JSON to `url` with `method`; anything but a 2xx answer fails.
    The URL is called directly: proxy settings from the environment are not used."""

    kind = "url"
    cfg: UrlAction

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.client: httpx.Client | None = None

    @property
    def target(self) -> str:
        return self.cfg.url

    def open(self) -> None:
        self.client = httpx.Client(timeout=self.cfg.timeout_s, trust_env=False)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def perform(self, env: Mapping[str, Any]) -> None:
        assert self.client is not None
        url = _render(self.cfg.url, template_fields(env, self.machine_id))
        try:
            body = orjson.dumps(env, option=JSON_OPTS)
        except (orjson.JSONEncodeError, TypeError) as e:
            raise _Failed(f"result {env.get('result_id')!r} is not JSON: {e}") from None
        try:
            r = self.client.request(
                self.cfg.method, url, content=body, headers={"content-type": "application/json"}
            )
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise _Failed(f"{self.cfg.method} {url}: {type(e).__name__}: {e}") from None
        if not 200 <= r.status_code < 300:
            raise _Failed(f"{self.cfg.method} {url}: HTTP {r.status_code}")


class ActionRunner:
    """Runs the configured result actions; see the module doc."""

    def __init__(
        self,
        actions: Sequence[ActionConfig],
        machine_id: str,
        mqtt: MqttSink | None,
        on_event: EventHook | None = None,
    ) -> None:
        self.machine_id = machine_id
        self.actions: list[_Action] = []
        for i, cfg in enumerate(actions):
            if isinstance(cfg, SerialAction):
                self.actions.append(_SerialAction(i, cfg, machine_id, on_event))
            elif isinstance(cfg, MqttAction):
                if mqtt is None:
                    raise ValueError(f"outputs.actions[{i}]: an mqtt action needs outputs.mqtt (the broker)")
                self.actions.append(_MqttAction(i, cfg, machine_id, on_event, mqtt=mqtt))
            elif isinstance(cfg, UrlAction):
                self.actions.append(_UrlAction(i, cfg, machine_id, on_event))
            else:
                raise ValueError(f"outputs.actions[{i}]: unknown action {cfg!r}")
        self._lock = threading.Lock()  # makes "still running? then enqueue" atomic against stop()
        self._state = "new"

    def start(self) -> None:
        """Start one worker thread per action."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError("ActionRunner.start() may be called once")
            self._state = "running"
        for a in self.actions:
            a.thread.start()

    def handle(self, env: Mapping[str, Any]) -> None:
        """Queue `env` for every action it fires (never blocks). `env` must not change afterwards."""
        result_outcome = outcome(env)
        refused: list[_Action] = []
        with self._lock:
            state = self._state
            for a in self.actions:
                if a.wants(env, result_outcome) and not (state == "running" and a.offer(env)):
                    refused.append(a)
        for a in refused:  # counted and reported outside the lock: on_event may take its time
            why = f"queue full ({QUEUE_SIZE} results waiting)" if state == "running" else f"runner is {state}"
            a.drop(f"{why}: result {env.get('result_id')!r} not run")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Run what is queued for up to `grace_s` (the rest is dropped and counted), then join the
        workers and close their ports and clients."""
        with self._lock:
            started = self._state == "running"
            self._state = "stopped"
        if not started:
            return
        for a in self.actions:
            a.begin_stop(grace_s)
        for a in self.actions:
            a.thread.join()

    def stats(self) -> list[dict[str, Any]]:
        """Per action: index, type, target, fired (ran fine), failed (ran and failed), dropped
        (never ran: queue full or stopping), queued (now), last_error."""
        return [a.stats() for a in self.actions]
