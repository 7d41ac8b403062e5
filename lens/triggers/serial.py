"""Serial trigger: one process per camera with `trigger: {type: serial}` (an ESP32 or PLC I/O box).

Reads lines from the port; a line that matches `match` fires a trigger stamped with the time the
line arrived (its first regex group, if any, is the trigger id: `^(\\w+);TRIG$` on `CAM7;TRIG` gives
`CAM7`), and `ack` is written back if set. Everything else — lines that do not match, lines longer
than `max_line`, bytes that are not text — is counted as `trigger_noise` and ignored. A port that
cannot be opened or fails is reopened with backoff; the machine keeps running.
"""

from __future__ import annotations

import logging
import re
import time

import serial
import zmq

from lens.engine import msgs
from lens.engine.bus import drain, pack
from lens.engine.process import LensProcess, RunContext
from lens.engine.stats import CAM, Stats

log = logging.getLogger("lens.serial")
BACKOFF_MAX_S = 10.0


class SerialTriggerProcess(LensProcess):
    role = "serial"

    def __init__(self, ctx: RunContext, index: int) -> None:
        super().__init__(ctx, f"serial-{ctx.config.cameras[index].id}")
        self.index = index

    def setup(self) -> None:
        cam = self.ctx.config.cameras[self.index]
        self.camera = cam.id
        self.cfg = cam.trigger
        self.pattern = re.compile(self.cfg.match)
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.ctx.hub_endpoint)
        self.stats = Stats.attach(self.ctx.stats_name, self.ctx.cameras)
        self.row = self.stats.camera(self.index)
        self.port: serial.Serial | None = None
        self.buffer = bytearray()
        self.backoff = 0.5

    def _event(self, **fields: object) -> None:
        self.send(self.sock, (msgs.EVENT, b"trigger", pack({"camera": self.camera, **fields})))

    def _open(self) -> bool:
        try:
            self.port = serial.serial_for_url(self.cfg.port, baudrate=self.cfg.baud, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as e:
            log.error("%s: cannot open serial port %s: %s (retry in %.1f s)", self.camera, self.cfg.port, e,
                      self.backoff)  # fmt: skip
            self._event(port=self.cfg.port, state="offline", error=str(e))
            return False
        log.info(
            "%s: listening for %r on %s at %d baud", self.camera, self.cfg.match, self.cfg.port, self.cfg.baud
        )
        self._event(port=self.cfg.port, state="online")
        self.backoff = 0.5
        self.buffer.clear()
        return True

    def loop(self) -> None:
        while not self.stopping:
            drain(self.sock)  # the dispatcher acknowledges each trigger; nothing to do with it here
            if self.port is None:
                if not self._open():
                    self.stop_event.wait(self.backoff)
                    self.backoff = min(BACKOFF_MAX_S, self.backoff * 2)
                continue
            try:
                # what is waiting, or block (up to the port timeout) for the first byte: read(4096) would
                # wait for 4096 bytes or the whole timeout, holding every trigger line back by up to 50 ms
                waiting = self.port.in_waiting
                chunk = self.port.read(waiting if waiting > 0 else 1)
            except (serial.SerialException, OSError) as e:
                log.error("%s: serial port %s failed: %s", self.camera, self.cfg.port, e)
                self._event(port=self.cfg.port, state="offline", error=str(e))
                self._close_port()
                continue
            if chunk:
                self._feed(chunk, time.time())

    def _feed(self, chunk: bytes, at: float) -> None:
        """Split into lines; each complete line is judged (partial ones wait for the rest)."""
        self.buffer += chunk
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > self.cfg.max_line:  # no end of line in sight: noise
                    self.row[CAM["trigger_noise"]] += 1
                    self.buffer.clear()
                return
            raw = bytes(self.buffer[:end]).rstrip(b"\r")
            del self.buffer[: end + 1]
            self._line(raw, at)

    def _line(self, raw: bytes, at: float) -> None:
        if not raw:
            return  # a bare newline is no trigger and no noise
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self.row[CAM["trigger_noise"]] += 1
            return
        m = self.pattern.search(text) if len(raw) <= self.cfg.max_line and text.isprintable() else None
        if m is None:
            self.row[CAM["trigger_noise"]] += 1
            return
        trigger_id = m.group(1) if m.groups() and m.group(1) else ""
        self.send(
            self.sock,
            (msgs.TRIGGER, pack({"camera": self.index, "id": trigger_id, "at": at, "source": "serial"})),
        )
        if self.cfg.ack is not None and self.port is not None:
            try:
                self.port.write((self.cfg.ack + "\n").encode())
            except (serial.SerialException, OSError) as e:
                log.error("%s: ack not written: %s", self.camera, e)

    def _close_port(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except (serial.SerialException, OSError) as e:
                log.debug("closing %s: %s", self.cfg.port, e)
            self.port = None

    def teardown(self) -> None:
        if hasattr(self, "port"):
            self._close_port()
        if hasattr(self, "sock"):
            self.sock.close(linger=0)
            self.zctx.term()
        if hasattr(self, "stats"):
            self.stats.close()
