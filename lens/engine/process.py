"""One small base for every lens child process: title, signals, parent-death, logging, stop."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import select
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from lens.config.models import PipelineConfig

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
SPAWN = mp.get_context("spawn")

log = logging.getLogger("lens")


@dataclass(frozen=True)
class RunContext:
    """Everything a child needs to join a run; picklable, passed at spawn."""

    prefix: str  # lens_<pid>_<token>: names of every segment and socket of this run
    run_dir: str  # folder of the ipc:// sockets
    supervisor_pid: int
    config: PipelineConfig
    log_level: int = logging.INFO
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hub_endpoint(self) -> str:
        return f"ipc://{Path(self.run_dir) / 'hub'}"

    @property
    def lane_path(self) -> str:
        """The dispatcher's data plane with captures and workers (lens.engine.lane)."""
        return str(Path(self.run_dir) / "lane")

    @property
    def internal_endpoint(self) -> str:
        """The internal copy of the results bus (lens.engine.bus.InternalBus)."""
        return f"ipc://{Path(self.run_dir) / 'bus'}"

    @property
    def supervisor_endpoint(self) -> str:
        """The supervisor's command socket (process table, source restarts) for the control service."""
        return f"ipc://{Path(self.run_dir) / 'sup'}"

    @property
    def stats_name(self) -> str:
        return f"{self.prefix}_stats"

    @property
    def toolstats_name(self) -> str:
        return f"{self.prefix}_toolstats"

    @property
    def inspection_path(self) -> Path:
        """The inspection config in force after a hot reload (survives a dispatcher restart)."""
        return Path(self.run_dir) / "inspection.json"

    @property
    def cameras(self) -> list[str]:
        return [c.id for c in self.config.cameras]

    def ring_name(self, camera: str, generation: int = 0) -> str:
        return f"{self.prefix}_ring_{camera}_g{generation}"


class StopFlag:
    """The stop event of a lens process: `threading.Event` that a signal handler may set.

    `threading.Event.set()` takes the event's lock, which the main thread may be holding inside
    `Event.wait()` at the moment the handler runs on it: the process then deadlocks (1 SIGTERM in 7
    against a loop of short waits, measured). Here `set()` takes no lock: it raises a flag and writes
    one byte into a pipe that is never drained, so every `wait()`, in any thread, wakes at once.
    """

    def __init__(self) -> None:
        self._set = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        os.write(self._w, b"x")  # a byte or two in a pipe of 64 KiB: never blocks

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or `timeout` seconds; True if set. A signal's handler that sets the flag
        ends the wait too (select is retried after the handler runs, and the pipe is readable)."""
        if not self._set:
            select.select([self._r], [], [], timeout)
        return self._set


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGTERM us when our parent dies (even by SIGKILL); exit now if it already has."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


def set_title(title: str) -> None:
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)


def setup_logging(level: int, name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class SetupError(RuntimeError):
    """A process cannot start for a reason the user can fix (a port in use, a missing file).
    Logged as one line, no traceback; the process exits with EXIT_SETUP."""


EXIT_SETUP = 3


class LensProcess(SPAWN.Process):  # type: ignore[name-defined,misc]
    """Base of capture, dispatcher and worker processes.

    Subclasses implement `setup()`, `loop()` (return when `self.stopping` is set) and `teardown()`.
    SIGTERM (sent by the supervisor, or by the kernel when the supervisor dies) sets the stop event;
    SIGINT is ignored so that Ctrl-C reaches only the supervisor, which stops children in order.
    """

    role = "process"

    def __init__(self, ctx: RunContext, name: str) -> None:
        super().__init__(name=name, daemon=False)
        self.ctx = ctx
        self.ready = SPAWN.Event()
        self.stop_event: StopFlag = None  # type: ignore[assignment]  # made in the child

    @property
    def stopping(self) -> bool:
        if self.stop_event.is_set():
            return True
        if os.getppid() != self.ctx.supervisor_pid:  # belt and braces beside PDEATHSIG
            self.stop_event.set()
            return True
        return False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_event.set()

    def run(self) -> None:
        self.stop_event = StopFlag()  # before the handler that sets it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_signal)
        die_with_parent(self.ctx.supervisor_pid)
        set_title(f"lens-{self.name}")
        setup_logging(self.ctx.log_level, self.name)
        try:
            try:
                self.setup()
            except SetupError as e:
                log.error("%s cannot start: %s", self.name, e)
                sys.exit(EXIT_SETUP)  # teardown runs in the finally below
            self.ready.set()
            self.loop()
        finally:
            self.teardown()

    def send(self, sock: zmq.Socket, parts: tuple[bytes, ...]) -> bool:
        """Send to the hub without ever hanging: a DEALER whose peer (the dispatcher) is gone blocks
        a plain send forever, which would keep this process alive after the run was stopped or its
        supervisor killed. Retries while the queue is full; False once the process is stopping."""
        while True:
            try:
                sock.send_multipart(parts, zmq.NOBLOCK)
                return True
            except zmq.Again:
                if self.stopping:
                    return False
                self.stop_event.wait(0.005)

    def setup(self) -> None:
        pass

    def loop(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass
