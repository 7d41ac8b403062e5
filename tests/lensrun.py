"""Run the real `lens run` as a subprocess and listen to its results bus (for end-to-end tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
import zmq

from lens.engine.bus import unpack

LENS = str(Path(sys.executable).parent / "lens")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_pipeline(path: Path, config: dict[str, Any]) -> Path:
    """Write a test pipeline; without a `control` section the control service is off (engine tests)."""
    config = {**config, "control": config.get("control", {"enabled": False})}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class LensRun:
    """`lens run PIPELINE` in a child process, with a subscriber connected before it starts."""

    def __init__(self, pipeline: Path, endpoint: str, extra_args: tuple[str, ...] = ()) -> None:
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RECONNECT_IVL, 20)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(endpoint)  # before the bind: zmq connects as soon as the bus is up
        self.log_path = pipeline.with_suffix(".log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [LENS, "run", str(pipeline), *extra_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.results: list[dict[str, Any]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.images: list[dict[str, Any]] = []  # image.<camera> messages (JPEGs of results)

    def poll(self, timeout_ms: int = 100) -> None:
        """Collect every message that arrives within timeout_ms."""
        if self.sub.poll(timeout_ms):
            while True:
                try:
                    topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                env = unpack(payload)
                if topic.startswith(b"result."):
                    self.results.append(env)
                elif topic.startswith(b"image."):
                    self.images.append(env)
                else:
                    self.events.append((topic.decode(), env))

    def wait_for(self, cond: Any, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or cond}; log:\n{self.output()}")
            if self.proc.poll() is not None and not self.sub.poll(0):
                raise AssertionError(
                    f"lens run exited ({self.proc.returncode}) waiting for {what}; log:\n{self.output()}"
                )
            self.poll(100)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def find_child(self, title: str) -> psutil.Process | None:
        for p in self.children():
            try:
                if p.name() == title[:15]:
                    return p
            except psutil.NoSuchProcess:
                continue
        return None

    def child(self, title: str, timeout: float = 30.0) -> psutil.Process:
        """The child process titled `title` (a restarted one takes its title once spawned)."""
        self.wait_for(lambda: self.find_child(title) is not None, timeout, f"a child named {title!r}")
        proc = self.find_child(title)
        assert proc is not None
        return proc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"lens run did not stop within {timeout} s; log:\n{self.output()}") from None

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.sub.close(linger=0)
        self.ctx.term()
        self.log.close()

    def __enter__(self) -> LensRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
