"""The data plane between the dispatcher and its captures and workers (lens.engine.lane): framing
over a byte stream, and a real server and clients on a Unix socket."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lens.engine.lane import Decoder, LaneClient, LaneGone, LaneServer, encode
from lens.engine.process import StopFlag


def test_messages_survive_any_split_of_the_stream() -> None:
    messages = [[b"F", b"\x01\x02"], [b""], [b"S", b"meta", b"x" * 70_000, b""], [b"R"]]
    stream = b"".join(encode(m) for m in messages)
    for step in (1, 2, 3, 7, 4096, len(stream)):
        dec = Decoder()
        got = []
        for i in range(0, len(stream), step):
            dec.feed(stream[i : i + step])
            got.extend(dec.messages())
        assert got == messages, step
        assert not dec.pending()


def test_pending_says_when_a_whole_message_is_buffered() -> None:
    data = encode([b"J", b"abc"])
    dec = Decoder()
    dec.feed(data[:-1])
    assert not dec.pending() and list(dec.messages()) == []
    dec.feed(data[-1:])
    assert dec.pending()
    assert list(dec.messages()) == [[b"J", b"abc"]]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((2**31).to_bytes(4, "little") + b"\x01\x00", "a message of 2147483648 bytes"),
        ((3).to_bytes(4, "little") + b"\x05\x00\x00", "a message of 3 bytes with 5 parts"),
        # one part announced as 9 bytes in a message that has room for 2
        ((2 + 4 + 2).to_bytes(4, "little") + b"\x01\x00" + (9).to_bytes(4, "little") + b"ab",
         "parts of 15 bytes in a message of 8"),
    ],
)  # fmt: skip
def test_a_corrupt_stream_is_an_error_naming_what_is_wrong(data: bytes, match: str) -> None:
    dec = Decoder()
    dec.feed(data)
    with pytest.raises(ValueError, match=match):
        list(dec.messages())


# -- a real server and clients ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LaneServer]:
    srv = LaneServer(str(tmp_path / "lane"))
    yield srv
    srv.close()


def pump(srv: LaneServer, until: int, timeout_s: float = 5.0) -> list[tuple[bytes, list[bytes]]]:
    """Run the server's side of a poll loop (one round at least) until `until` messages have arrived."""
    got: list[tuple[bytes, list[bytes]]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        poller = select.poll()
        for fd, out in srv.fds().items():
            poller.register(fd, select.POLLIN | (select.POLLOUT if out else 0))
        for fd, ev in poller.poll(50):
            readable = bool(ev & (select.POLLIN | select.POLLERR | select.POLLHUP))
            got.extend(srv.handle(fd, readable, bool(ev & select.POLLOUT)))
        if len(got) >= until:
            return got
        assert time.monotonic() < deadline, f"only {len(got)} of {until} messages arrived: {got}"


def test_clients_are_known_by_the_name_they_introduce(server: LaneServer) -> None:
    stop = StopFlag()
    a = LaneClient(server.path, b"wrk:0", stop, lambda: a.send([b"R"]))
    b = LaneClient(server.path, b"cap:0", stop)
    try:
        assert a.connect() and b.connect()
        assert b.send([b"F", b"1"]) and a.send([b"S", b"meta", b"payload"])
        got = pump(server, 3)
        assert sorted(got) == sorted([(b"wrk:0", [b"R"]), (b"cap:0", [b"F", b"1"]),
                                      (b"wrk:0", [b"S", b"meta", b"payload"])])  # fmt: skip
        assert [p for i, p in got if i == b"wrk:0"] == [[b"R"], [b"S", b"meta", b"payload"]]  # in order
        server.send(b"wrk:0", [b"J", b"job"])
        server.send(b"cap:0", [b"C", b"2"])
        assert a.poll(2000) and list(a.messages()) == [[b"J", b"job"]]
        assert b.poll(2000) and list(b.messages()) == [[b"C", b"2"]]
        assert not a.poll(10)
        with pytest.raises(LaneGone, match="wrk:9 is not connected"):
            server.send(b"wrk:9", [b"J"])
    finally:
        a.close()
        b.close()


def test_a_client_must_introduce_itself(server: LaneServer) -> None:
    import socket

    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(server.path)
    try:
        raw.sendall(encode([b"F", b"1"]))
        raw.settimeout(10)
        assert pump(server, 0) == []  # accepted
        deadline = time.monotonic() + 5
        while server.conns:
            assert time.monotonic() < deadline
            assert pump(server, 0) == []  # read, refused: nothing handed on
        assert server.peers == {}
        assert raw.recv(10) == b""  # closed by the server
    finally:
        raw.close()


def test_a_restarted_process_takes_its_name_over(server: LaneServer) -> None:
    stop = StopFlag()
    old = LaneClient(server.path, b"wrk:1", stop)
    new = LaneClient(server.path, b"wrk:1", stop)
    try:
        assert old.connect()
        assert old.send([b"R"])
        assert pump(server, 1) == [(b"wrk:1", [b"R"])]
        assert new.connect() and new.send([b"R"])
        assert pump(server, 1) == [(b"wrk:1", [b"R"])]
        server.send(b"wrk:1", [b"J", b"x"])
        assert new.poll(2000) and list(new.messages()) == [[b"J", b"x"]]
        assert len(server.conns) == 1  # the old connection was closed
    finally:
        old.close()
        new.close()


def test_a_client_connects_again_to_a_restarted_server(tmp_path: Path) -> None:
    path = str(tmp_path / "lane")
    stop = StopFlag()
    hellos: list[int] = []
    client = LaneClient(path, b"cap:0", stop, lambda: hellos.append(client.connects))
    first = LaneServer(path)
    try:
        assert client.connect()
        assert client.send([b"H"])
        assert pump(first, 1) == [(b"cap:0", [b"H"])]
        first.close()  # the dispatcher died
        second = LaneServer(path)
        try:
            # the client notices on its next read, connects again and says hello to the new server
            got: list[tuple[bytes, list[bytes]]] = []

            def serve() -> None:
                got.extend(pump(second, 1))

            srv = threading.Thread(target=serve)
            srv.start()
            client.poll(200)  # reads EOF, connects again (on_connect runs), no message
            assert client.send([b"F", b"after"])
            srv.join(6)
            assert got == [(b"cap:0", [b"F", b"after"])]
            assert hellos == [1, 2]
        finally:
            second.close()
    finally:
        client.close()


def test_send_gives_up_when_stopped_instead_of_hanging(server: LaneServer) -> None:
    stop = StopFlag()
    client = LaneClient(server.path, b"wrk:0", stop)
    try:
        assert client.connect()
        pump(server, 0)  # accepted, never read again: the socket buffers fill up
        threading.Timer(0.3, stop.set).start()
        t0 = time.monotonic()
        sent = 0
        while client.send([b"S", b"x" * 65536]):
            sent += 1
            assert time.monotonic() - t0 < 30, "send kept going after stop"
        assert sent > 0 and stop.is_set()
    finally:
        client.close()


def test_the_server_never_blocks_on_a_slow_reader(server: LaneServer) -> None:
    stop = StopFlag()
    client = LaneClient(server.path, b"wrk:0", stop)
    try:
        assert client.connect() and client.send([b"R"])
        pump(server, 1)
        big = b"j" * 65536
        for _ in range(64):  # 4 MiB: more than the socket takes while nobody reads
            server.send(b"wrk:0", [b"J", big])
        conn = server.peers[b"wrk:0"]
        assert conn.out  # queued, not blocked
        assert server.fds()[conn.fd]  # polled for writing
        received = 0
        deadline = time.monotonic() + 10
        while received < 64:
            assert time.monotonic() < deadline
            pump(server, 0, 0.01)  # writes what the socket takes when it is writable
            if client.poll(10):
                received += sum(1 for m in client.messages() if m == [b"J", big])
        assert not conn.out and not server.fds()[conn.fd]
    finally:
        client.close()


def test_close_removes_the_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "lane"
    path.write_text("left by a crashed dispatcher")
    srv = LaneServer(str(path))
    assert path.exists() and not path.is_file()  # replaced by the socket
    srv.close()
    assert not os.path.exists(path)
