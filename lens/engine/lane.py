"""The data plane of a run: frames, credits, jobs and results between the dispatcher and its
captures and workers, over one Unix stream socket per process (`<run_dir>/lane`).

The hub (the dispatcher's ZeroMQ ROUTER) carries the rest: control, clients, events of the other
processes. Every ZeroMQ message passes through an I/O thread at each end, so one message wakes two
threads in each process it touches; on a Unix socket the kernel wakes the reader directly.
Measured on the 2-core benchmark machine (40-byte ping-pong between two processes, 20,000 round
trips): ZeroMQ ipc 71 us a round trip and ~31 us of CPU on each side; a Unix socket 15 us and
~6 us. A frame makes three or four such hops (FRAME, JOB, RESULT, half a CREDIT).

Messages are multipart, as on the hub. On the wire: u32 size of the rest, u16 number of parts,
each part's u32 size, then the parts. A client's first message names it (`INTRODUCE`, its
identity); the server hands every later message on as (identity, parts).

A client whose server goes away (the dispatcher restarted) connects again and calls its
`on_connect` (a worker says READY again, a capture HELLO), so the new dispatcher knows it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

log = logging.getLogger("lens.lane")

INTRODUCE = b"I"
_HEAD = struct.Struct("<IH")  # size of the rest, number of parts
_SIZE = struct.Struct("<I")
MAX_MESSAGE = 256 << 20  # a bigger announced size is a corrupt stream, not a message
_CHUNK = 1 << 18  # bytes read per recv


class LaneGone(ConnectionError):
    """The peer is not connected (it stopped or is restarting)."""


class Stop(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def encode(parts: Sequence[bytes]) -> bytes:
    sizes = [len(p) for p in parts]
    head = struct.pack(f"<IH{len(parts)}I", 2 + 4 * len(parts) + sum(sizes), len(parts), *sizes)
    return b"".join((head, *parts))


class Decoder:
    """Cuts a byte stream into messages (lists of parts)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> None:
        if self.pos and self.pos == len(self.buf):
            self.buf.clear()
            self.pos = 0
        elif self.pos > _CHUNK:  # compact now and then, not on every message
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def messages(self) -> Iterator[list[bytes]]:
        buf = self.buf
        while len(buf) - self.pos >= _HEAD.size:
            size, n = _HEAD.unpack_from(buf, self.pos)
            if size > MAX_MESSAGE or size < 2 + 4 * n:
                raise ValueError(f"corrupt lane stream: a message of {size} bytes with {n} parts")
            end = self.pos + 4 + size
            if len(buf) < end:
                return
            at = self.pos + _HEAD.size
            sizes = struct.unpack_from(f"<{n}I", buf, at)
            at += 4 * n
            parts = []
            for k in sizes:
                parts.append(bytes(buf[at : at + k]))
                at += k
            if at != end:
                got = at - self.pos - 4
                raise ValueError(f"corrupt lane stream: parts of {got} bytes in a message of {size}")
            self.pos = end
            yield parts

    def pending(self) -> bool:
        """A whole message is buffered."""
        if len(self.buf) - self.pos < _HEAD.size:
            return False
        size = _SIZE.unpack_from(self.buf, self.pos)[0]
        return len(self.buf) - self.pos >= 4 + size


# -- the dispatcher's end -------------------------------------------------------------------------------


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.ident: bytes | None = None
        self.decoder = Decoder()
        self.out = bytearray()
        self.wants_out = False


class LaneServer:
    """Listens at `path`; accepts clients; reads and writes without ever blocking.

    Its file descriptors go into the owner's poll loop: `fds()` says which (for writing too only
    while output is queued for a slow reader); `handle(fd, readable, writable)` returns the
    messages read, as (identity, parts). An error or hang-up counts as readable."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)  # left by a dispatcher that crashed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.conns: dict[int, _Conn] = {}
        self.peers: dict[bytes, _Conn] = {}
        self.changed = True  # the set of fds or their events changed since fds() was last asked

    def fds(self) -> dict[int, bool]:
        """Every socket to poll for reading, and whether it is also to be polled for writing."""
        self.changed = False
        want = {self.listener.fileno(): False}
        for fd, conn in self.conns.items():
            want[fd] = bool(conn.out)
        return want

    def connected(self, ident: bytes) -> bool:
        return ident in self.peers

    def handle(self, fd: int, readable: bool, writable: bool) -> list[tuple[bytes, list[bytes]]]:
        if fd == self.listener.fileno():
            self._accept()
            return []
        conn = self.conns.get(fd)
        if conn is None:
            return []
        if writable:
            self._flush(conn)
        return self._read(conn) if readable else []

    def send(self, ident: bytes, parts: Sequence[bytes]) -> None:
        """Queue a message for `ident` and write what the socket takes now. LaneGone if it is not
        connected (the message is not sent)."""
        conn = self.peers.get(ident)
        if conn is None:
            raise LaneGone(f"{ident.decode(errors='replace')} is not connected")
        conn.out += encode(parts)
        self._flush(conn)
        if ident not in self.peers:
            raise LaneGone(f"{ident.decode(errors='replace')} went away")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            self.conns[conn.fd] = conn
            self.changed = True

    def _read(self, conn: _Conn) -> list[tuple[bytes, list[bytes]]]:
        out: list[tuple[bytes, list[bytes]]] = []
        for _ in range(64):  # bounded: one busy peer must not starve the others
            try:
                data = conn.sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self._close(conn)
                break
            conn.decoder.feed(data)
            if len(data) < _CHUNK:
                break
        try:
            for parts in conn.decoder.messages():
                if conn.ident is None:
                    if len(parts) != 2 or parts[0] != INTRODUCE:
                        raise ValueError("a client must introduce itself first")
                    self._name(conn, parts[1])
                    continue
                out.append((conn.ident, parts))
        except ValueError as e:
            log.error("lane peer %r: %s; disconnected", conn.ident, e)
            self._close(conn)
        return out

    def _name(self, conn: _Conn, ident: bytes) -> None:
        old = self.peers.get(ident)
        if old is not None and old is not conn:  # a restarted process takes its name over
            self._close(old)
        conn.ident = ident
        self.peers[ident] = conn

    def _flush(self, conn: _Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.out[:n]
        if bool(conn.out) != conn.wants_out:  # POLLOUT on (a slow reader) or off again
            conn.wants_out = bool(conn.out)
            self.changed = True

    def _close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        if conn.ident is not None and self.peers.get(conn.ident) is conn:
            del self.peers[conn.ident]
        conn.out.clear()
        conn.sock.close()
        self.changed = True

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn)
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


# -- a capture's or worker's end ------------------------------------------------------------------------


class LaneClient:
    """Connects to the dispatcher's lane as `ident`. `send` never hangs: it gives up (False) once
    `stop` is set; `poll`/`messages` read what has arrived. If the server goes away the client
    connects again (until stopped) and calls `on_connect`, which may send."""

    RETRY_S = 0.05

    def __init__(
        self, path: str, ident: bytes, stop: Stop, on_connect: Callable[[], None] | None = None
    ) -> None:
        self.path = path
        self.ident = ident
        self.stop = stop
        self.on_connect = on_connect
        self.sock: socket.socket | None = None
        self.decoder = Decoder()
        self.connects = 0

    def connect(self) -> bool:
        """Connect (retrying while the server is not there); False if stopped first."""
        self._drop()
        while not self.stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                self.stop.wait(self.RETRY_S)
                continue
            sock.setblocking(False)
            self.sock = sock
            self.decoder = Decoder()
            self.connects += 1
            if not self._write(encode((INTRODUCE, self.ident))):
                continue
            if self.on_connect is not None:
                self.on_connect()
            return True
        return False

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _write(self, data: bytes) -> bool:
        """Write all of `data`; False if stopped or the connection broke (then it is dropped)."""
        view = memoryview(data)
        while view:
            if self.sock is None:
                return False
            try:
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                if self.stop.is_set():
                    return False
                select.select([], [self.sock], [], 0.1)
                continue
            except OSError:
                self._drop()
                return False
            view = view[n:]
        return True

    def send(self, parts: Sequence[bytes]) -> bool:
        """Send one message; False if it was not sent (stopping, or the server went away: the
        message belonged to that server and is dropped, and the client connects again)."""
        if self.sock is None and not self.connect():
            return False
        if self._write(encode(parts)):
            return True
        if not self.stop.is_set():
            log.warning("the dispatcher's lane broke; connecting again")
            self.connect()
        return False

    def poll(self, timeout_ms: float) -> bool:
        """Wait up to `timeout_ms` for a whole message; True if one is buffered."""
        if self.decoder.pending():
            return True
        if self.sock is None and not self.connect():
            return False
        assert self.sock is not None
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            try:
                ready = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]
            except InterruptedError:
                ready = []
            if ready:
                self._read()
                if self.decoder.pending():
                    return True
                if self.sock is None:  # lost and connected again, or stopped
                    return False
            if time.monotonic() >= deadline:
                return False

    def _read(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno not in (errno.ECONNRESET, errno.EPIPE):
                    log.warning("lane read failed: %s", e)
                data = b""
            if not data:
                self._drop()
                if not self.stop.is_set():
                    log.warning("the dispatcher's lane closed; connecting again")
                    self.connect()
                return
            self.decoder.feed(data)
            if len(data) < _CHUNK:
                return

    def messages(self) -> Iterator[list[bytes]]:
        """The messages buffered now (after `poll` said True)."""
        yield from self.decoder.messages()

    def close(self) -> None:
        self._drop()
