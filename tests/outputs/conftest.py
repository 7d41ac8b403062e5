"""A real Mosquitto broker per test, and real paho subscribers that record what they receive."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process on 127.0.0.1:`port`; stop() and start() again keep the port. With
    `persistent`, sessions, queued messages (QoS 0 too) and retained messages survive a restart."""

    def __init__(self, exe: str, workdir: Path, persistent: bool) -> None:
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            f"persistence {'true' if persistent else 'false'}\n"
            f"persistence_location {workdir}/\n"
            "queue_qos0_messages true\n"
            # no per-subscriber queue cap: a burst must not be dropped because the Python subscriber
            # reads slower than mosquitto forwards (the default, 1000, drops and logs "being dropped")
            "max_queued_messages 0\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )

    def start(self) -> None:
        assert self.proc is None, "broker already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"mosquitto exited with {code}:\n{self.log.read_text()[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    self.stop()
                    log = self.log.read_text()[-2000:]
                    raise RuntimeError(f"mosquitto not listening after 10 s ({e}):\n{log}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _broker(tmp_path: Path, persistent: bool) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Broker(MOSQUITTO, workdir, persistent)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A broker with persistence off."""
    yield from _broker(tmp_path, persistent=False)


@pytest.fixture
def mosquitto_persistent(tmp_path: Path) -> Iterator[Broker]:
    """A broker that keeps sessions and their queued messages across stop()/start()."""
    yield from _broker(tmp_path, persistent=True)


@dataclass(frozen=True)
class Got:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class Subscriber:
    """A paho client subscribed to `topics` (connected and subscribed when the constructor returns)
    that records every message it receives. `session`: a client id whose session the broker keeps
    while it is away (MQTT 3.1.1 clean_session false). `v5`: MQTT 5, with retain-as-published, so the
    retain flag of live messages shows what the publisher set."""

    def __init__(
        self, broker: Broker, topics: list[str], *, session: str | None = None, v5: bool = False
    ) -> None:
        self.messages: list[Got] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = topics
        self.v5 = v5
        if v5:
            self.client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"sub-{uuid.uuid4().hex[:8]}",
                protocol=MQTTProtocolVersion.MQTTv5,
            )
        else:
            self.client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=session or f"sub-{uuid.uuid4().hex[:8]}",
                clean_session=session is None,
                protocol=MQTTProtocolVersion.MQTTv311,
            )
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"subscriber: no SUBACK for {topics} within 10 s")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure or flags.session_present:
            return
        if self.v5:
            client.subscribe([(t, SubscribeOptions(qos=1, retainAsPublished=True)) for t in self._topics])
        else:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Got(msg.topic, msg.payload, bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def wait_for(self, n: int, topic: str | None = None, timeout: float = 15.0) -> list[Got]:
        """The first `n` messages (on `topic`, if given), once that many have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if topic is None or m.topic == topic]
                if len(got) >= n:
                    return got[:n]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"subscriber: {len(got)} of {n} messages on {topic or '*'}: {got}")
                self._cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    """subscriber(broker, topics, session=None, v5=False) -> a Subscriber, closed after the test."""
    made: list[Subscriber] = []

    def make(broker: Broker, topics: list[str], **kw: Any) -> Subscriber:
        sub = Subscriber(broker, topics, **kw)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll `predicate` until it is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, so a full disk is really full (needs root or CAP_SYS_ADMIN)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small filesystem to fill")
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
