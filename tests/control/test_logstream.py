"""GET /api/v1/logs/stream end to end: NDJSON of the in-memory log, and a slow follower costing only its
own stream (ended with LENS_SLOW_CLIENT), never the pipeline. A real `lens run` at full speed."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.control.harness import (
    Lens,
    camera,
    no_leaks_but_shared,  # noqa: F401 - replaces the suite's leak check in this module
    shared,
)

FAST = {"type": "synthetic", "width": 640, "height": 480, "fps": 0, "seed": 2}
# 30 small measurements: cheap to run, and each result line is a few KiB, so the socket buffers
# between the service and a stalled reader fill after a few hundred lines
TOOLS = [
    {"name": f"g{i}", "type": "grayscale", "roi": {"x": 20 * i, "y": 8 * i, "w": 16, "h": 16}}
    for i in range(30)
]
MAX_ENTRIES = 200
CHUNK_LINES = 256  # lens.control.memlog sends at most this many lines per write


@pytest.fixture(scope="module")
def lens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lens]:
    tmp = tmp_path_factory.mktemp("logstream")
    control = {"log": {"max_entries": MAX_ENTRIES}}
    with shared(lambda: Lens(tmp, [camera("cam0", FAST)], control, TOOLS, workers=2)) as lens:
        yield lens


@pytest.fixture(scope="module")
def token(lens: Lens) -> str:
    tok = lens.open_session("orch-log")
    lens.wait_inspecting(tok, at_least=MAX_ENTRIES)
    return tok


def records(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\n"), body[-200:]
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


def test_a_bounded_read_gets_exactly_that_many_lines(lens: Lens, token: str) -> None:
    r = lens.get("/api/v1/logs/stream?since=0&follow=false&limit=50", token)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = records(r.content)
    assert len(lines) == 50
    ids = [line["id"] for line in lines]
    assert ids == list(range(ids[0], ids[0] + 50))  # the oldest kept, then in order, none skipped
    for line in lines:
        assert sorted(line) == ["data", "id", "kind", "topic"]
        if line["kind"] == "result":
            assert line["topic"] == "result.cam0" and line["data"]["type"] == "inspection.result"
            assert isinstance(line["data"]["image"], bool)
            assert sorted(line["data"]["tools"]) == sorted(t["name"] for t in TOOLS)
        else:
            assert line["kind"] == "event" and line["topic"].startswith("event.")
    # from a later id, following, with a limit: ends after that many new entries
    since = ids[-1]
    r = lens.get(f"/api/v1/logs/stream?since={since}&follow=true&limit=20", token)
    later = [line["id"] for line in records(r.content)]
    assert len(later) == 20 and later == sorted(later) and later[0] > since


class SlowReader:
    """A follower on a raw socket with a tiny receive buffer that reads a few bytes at a time."""

    def __init__(self, lens: Lens, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a small window
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", lens.port))
        self.conn = h11.Connection(h11.CLIENT)
        target = "/api/v1/logs/stream?since=0&follow=true"
        headers = [("host", f"127.0.0.1:{lens.port}"), ("authorization", f"Bearer {token}")]
        self.sock.sendall(self.conn.send(h11.Request(method="GET", target=target, headers=headers)))
        self.sock.sendall(self.conn.send(h11.EndOfMessage()))
        self.raw = bytearray()

    def nibble(self) -> None:
        self.raw += self.sock.recv(64)
        time.sleep(0.05)

    def drain(self, timeout: float = 60.0) -> tuple[int, bytes]:
        """Read at full speed to the end of the response: (status, body)."""
        self.conn.receive_data(bytes(self.raw))
        status, body = 0, bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
        raise AssertionError(f"the stream did not end within {timeout} s ({len(body)} bytes read)")

    def close(self) -> None:
        self.sock.close()


def buffered_lines(line_size: float) -> int:
    """At most how many lines the kernel and the server can hold for a reader that does not read:
    the largest TCP send buffer plus uvicorn's write buffer (64 KiB), plus one chunk in flight."""
    send_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return int((send_max + 65536) / line_size) + CHUNK_LINES


def test_a_stalled_follower_is_cut_off_and_the_pipeline_never_waits(lens: Lens, token: str) -> None:
    sample = lens.get("/api/v1/logs/stream?since=0&follow=false&limit=50", token).content
    line_size = len(sample) / 50
    # once this many entries were appended after the follower stalled, what it needs next is gone
    behind = buffered_lines(line_size) + MAX_ENTRIES

    reader = SlowReader(lens, token)
    try:
        reader.nibble()
        start = lens.status(token)
        evicted0, inspected0 = start["control"]["log_evicted"], start["cameras"]["cam0"]["inspected"]

        def far_behind() -> bool:
            reader.nibble()
            return bool(lens.status(token)["control"]["log_evicted"] - evicted0 > behind)

        lens.wait(far_behind, 120, f"{behind} entries evicted while the reader stalls")
        end = lens.status(token)
        assert end["cameras"]["cam0"]["inspected"] > inspected0  # the pipeline went on meanwhile
        status, body = reader.drain()
    finally:
        reader.close()
    assert status == 200
    lines = records(body)
    last = lines[-1]
    assert sorted(last) == ["error"] and sorted(last["error"]) == ["code", "details", "message"]
    assert last["error"]["code"] == "LENS_SLOW_CLIENT"
    details = last["error"]["details"]
    ids = [line["id"] for line in lines[:-1]]
    assert ids and ids == list(range(ids[0], ids[0] + len(ids)))  # every entry up to the cut, in order
    assert details["next_id"] == ids[-1] + 1 and details["oldest_id"] > details["next_id"]
    assert "reconnect" in last["error"]["message"]
    # the service is fine: a normal reader still gets its lines
    r = lens.get("/api/v1/logs/stream?since=0&follow=false&limit=5", token)
    assert len(records(r.content)) == 5
