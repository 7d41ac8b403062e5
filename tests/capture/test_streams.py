"""Live sources against real streams on loopback: ffmpeg encodes a known scene (one white 80x60 box
on black) and serves it, as HTTP MJPEG (ffmpeg's own server) or as RTSP (ffmpeg encodes H.264 to RTP,
and a small RTSP server below relays it over TCP, since ffmpeg cannot serve RTSP itself). Through the
real `lens run`: frames become results that find the box where ffmpeg drew it; killing the server
makes the camera `reconnecting`, then `offline`; a server restarted on the same port brings it back
`online` with the box where the new server draws it, with no process restart."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pytest

from lens.capture.sources import SourceError, make_source
from lens.capture.sources.stream import LiveSource, StreamSource
from lens.capture.sources.usb import UsbSource
from lens.config.models import CameraConfig
from tests.lensrun import LensRun, free_port, write_pipeline

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(
    FFMPEG is None, reason="ffmpeg is not installed: these tests serve real streams with it"
)

W, H, FPS = 320, 240, 15
BOX_Y, BOX_W, BOX_H = 40, 80, 60
USER, PASSWORD, PASSWORD_ENV = "admin", "p@ss:w/rd", "LENS_TEST_CAM_PASSWORD"
BOX_TOOL = {"name": "box", "type": "blob", "params": {"th_min": 128, "th_max": 255, "area_min": 500}}


def scene(box_x: int) -> str:
    """lavfi source: black W x H at FPS with one white box at (box_x, BOX_Y)."""
    return (
        f"color=c=black:s={W}x{H}:r={FPS},"
        f"drawbox=x={box_x}:y={BOX_Y}:w={BOX_W}:h={BOX_H}:color=white:t=fill,format=yuv420p"
    )


def ffmpeg(*args: str) -> subprocess.Popen[bytes]:
    assert FFMPEG is not None
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> None:
    """Wait until `proc` listens on `port` (checked without connecting: ffmpeg serves one client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ffmpeg exited with {proc.returncode}"
        with contextlib.suppress(psutil.Error):
            conns = psutil.Process(proc.pid).net_connections("tcp")
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                return
        time.sleep(0.05)
    raise AssertionError(f"ffmpeg not listening on {port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


class HttpServer:
    """ffmpeg serving the scene as an HTTP MJPEG stream (multipart/x-mixed-replace) to one client."""

    def __init__(self, port: int, box_x: int) -> None:
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"
        args = ["-re", "-f", "lavfi", "-i", scene(box_x), "-c:v", "mjpeg", "-q:v", "3", "-f", "mpjpeg"]
        self.proc = ffmpeg(*args, "-listen", "1", self.url)
        wait_listening(self.proc, port)

    def stop(self) -> None:
        stop_process(self.proc)


class RtspServer:
    """An RTSP server on 127.0.0.1: ffmpeg encodes the scene (H.264, or MPEG-4 without libx264) as
    RTP to a UDP port; this server answers OPTIONS / DESCRIBE / SETUP (TCP interleaved) / PLAY, with
    HTTP Basic authentication, and relays every RTP packet to its players."""

    def __init__(self, port: int, box_x: int, user: str, password: str, sdp_path: Path) -> None:
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests: list[tuple[str, str, bool]] = []  # (method, url, authorized)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.1)
        rtp_port = self.udp.getsockname()[1]
        self.listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: same port again
        self.listener.settimeout(0.1)
        sdp_path.unlink(missing_ok=True)
        codec = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0"]
        if not libx264():
            codec = ["-c:v", "mpeg4"]
        self.proc = ffmpeg(
            "-re", "-f", "lavfi", "-i", scene(box_x), *codec, "-g", "5",
            "-flags", "+global_header", "-bsf:v", "dump_extra",
            "-f", "rtp", "-sdp_file", str(sdp_path), f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200",
        )  # fmt: skip
        self.sdp = self._session(sdp_path)
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.players: list[socket.socket] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._accept, self._pump)]
        for t in self.threads:
            t.start()

    def _session(self, sdp_path: Path) -> str:
        """ffmpeg's SDP, made an RTSP session description (no address, one track with a control)."""
        deadline = time.monotonic() + 10
        while not (sdp_path.exists() and sdp_path.read_text().strip()):
            assert self.proc.poll() is None and time.monotonic() < deadline, "ffmpeg wrote no SDP"
            time.sleep(0.05)
        lines = [ln for ln in sdp_path.read_text().splitlines() if ln and not ln.startswith("c=")]
        lines = [("m=video 0 " + ln.split(" ", 2)[2]) if ln.startswith("m=video") else ln for ln in lines]
        return "\r\n".join([*lines, "c=IN IP4 0.0.0.0", "a=control:track0", ""])

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pump(self) -> None:
        while not self.stopping.is_set():
            try:
                packet = self.udp.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            data = b"$\x00" + len(packet).to_bytes(2, "big") + packet  # interleaved channel 0
            with self.lock:
                for player in list(self.players):
                    try:
                        player.sendall(data)
                    except OSError:
                        self.players.remove(player)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf = b""
        while not self.stopping.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while True:
                if buf[:1] == b"$":  # the client's RTCP, interleaved: skip it
                    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                        break
                    buf = buf[4 + int.from_bytes(buf[2:4], "big") :]
                    continue
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                lines = buf[:end].decode().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
                }
                length = int(headers.get("content-length", "0"))
                if len(buf) < end + 4 + length:
                    break
                buf = buf[end + 4 + length :]
                self._answer(conn, lines[0], headers)

    def _answer(self, conn: socket.socket, request: str, headers: dict[str, str]) -> None:
        method, url, _ = request.split(" ", 2)
        authorized = headers.get("authorization") == self.expected_auth
        self.requests.append((method, url, authorized))
        status, extra, body = "200 OK", "", ""
        if method != "OPTIONS" and not authorized:
            status, extra = "401 Unauthorized", 'WWW-Authenticate: Basic realm="lens-test"\r\n'
        elif method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE":
            body = self.sdp
            extra = f"Content-Type: application/sdp\r\nContent-Base: {url}/\r\n"
        elif method == "SETUP" and "TCP" not in headers.get("transport", ""):
            status = "461 Unsupported Transport"
        elif method == "SETUP":
            extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242\r\n"
        elif method == "PLAY":
            extra = "Session: 4242\r\nRange: npt=0.000-\r\n"
        head = f"RTSP/1.0 {status}\r\nCSeq: {headers.get('cseq', '0')}\r\n{extra}"
        with self.lock:
            conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
            if method == "PLAY" and status.startswith("200"):
                self.players.append(conn)

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        stop_process(self.proc)
        self.listener.close()
        for conn in list(self.conns):  # unblocks a send in progress too
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(5)
        for conn in self.conns:
            conn.close()
        self.udp.close()


_LIBX264: list[bool] = []


def libx264() -> bool:
    if not _LIBX264:
        assert FFMPEG is not None
        out = subprocess.run(
            [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30
        )
        _LIBX264.append(" libx264 " in out.stdout)
    return _LIBX264[0]


@pytest.fixture
def servers() -> Iterator[list[HttpServer | RtspServer]]:
    """Servers started by the test; every one is stopped (its ffmpeg killed) at the end."""
    started: list[HttpServer | RtspServer] = []
    yield started
    for server in started:
        server.stop()


# --- helpers ---------------------------------------------------------------------------------------


def box_x(result: dict[str, Any]) -> int | None:
    """x of the one box a result found where the scene has it (None if the result shows no such box)."""
    tool = result["tools"]["box"]
    if tool["value"] != 1:
        return None
    b = tool["blobs"][0]
    ok = abs(b["y"] - BOX_Y) <= 2 and abs(b["w"] - BOX_W) <= 3 and abs(b["h"] - BOX_H) <= 3
    return int(b["x"]) if ok else None


def boxes_at(run: LensRun, x: int) -> int:
    """Results of cam0 that found the box at x (within 2 px)."""
    found = [box_x(r) for r in run.results if r["camera"] == "cam0"]
    return sum(1 for bx in found if bx is not None and abs(bx - x) <= 2)


def camera_events(run: LensRun, camera: str) -> list[dict[str, Any]]:
    return [e for t, e in run.events if t == "event.camera" and e["camera"] == camera]


def health(run: LensRun, camera: str = "cam0") -> list[str]:
    return [e["health"] for e in camera_events(run, camera)]


def final_line(out: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith("lens: stopped."))


def pipeline(tmp_path: Path, bus: int, cameras: list[dict[str, Any]]) -> Path:
    cfg = {
        "machine": {"id": "vm_streams"},
        "cameras": cameras,
        "inspection": {"workers": 1, "tools": [BOX_TOOL]},
        "outputs": {"zmq": {"bind": f"tcp://127.0.0.1:{bus}"}},
    }
    return write_pipeline(tmp_path / "pipeline.yaml", cfg)


# --- through `lens run` ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rtsp", "http"])
def test_stream_is_inspected_lost_and_recovered_without_a_restart(
    kind: str, tmp_path: Path, servers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, bus = free_port(), free_port()
    start: Callable[[int], HttpServer | RtspServer]
    if kind == "rtsp":
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        start = lambda x: RtspServer(port, x, USER, PASSWORD, tmp_path / "stream.sdp")  # noqa: E731
        source: dict[str, Any] = {"type": "rtsp", "vendor": "intelbras", "host": "127.0.0.1", "port": port,
                                  "user": USER, "password_env": PASSWORD_ENV}  # fmt: skip
        shown = f"rtsp://admin:***@127.0.0.1:{port}/cam/realmonitor?channel=1&subtype=0"
    else:
        start = lambda x: HttpServer(port, x)  # noqa: E731
        source = {"type": "http", "url": f"http://127.0.0.1:{port}/stream.mjpg"}
        shown = source["url"]
    source |= {"stall_s": 2, "retry_max_s": 1}
    path = pipeline(tmp_path, bus, [{"id": "cam0", "source": source}])
    servers.append(start(40))
    with LensRun(path, f"tcp://127.0.0.1:{bus}") as run:
        run.wait_for(lambda: boxes_at(run, 40) >= 10, timeout=40, what="10 results with the box at x=40")
        servers[0].stop()
        run.wait_for(lambda: health(run)[-1] == "offline", timeout=20, what="the camera offline")
        servers.append(start(200))  # the same port, the box elsewhere
        run.wait_for(lambda: boxes_at(run, 200) >= 10, timeout=40, what="10 results with the box at x=200")
        assert run.stop() == 0, run.output()
        out = run.output()
    assert health(run) == ["online", "reconnecting", "offline", "online"], camera_events(run, "cam0")
    online, reconnecting, offline, again = camera_events(run, "cam0")
    for e in (online, again):
        assert e["source"] == f"{kind} {shown}" and e["url"] == shown
        assert (e["width"], e["height"]) == (W, H)
    assert (online["reconnects"], again["reconnects"]) == (0, 1)
    assert reconnecting["error"] == f"{kind} {shown}: stream ended or connection lost"
    assert offline["error"].startswith(f"{kind} {shown}: cannot open the stream")
    # every result shows the box where one of the two servers drew it, old server's first
    xs = [box_x(r) for r in run.results]
    assert None not in xs, [r["tools"]["box"] for r in run.results if box_x(r) is None][:3]
    first_new = next(i for i, x in enumerate(xs) if x is not None and x > 100)
    assert all(abs(x - 40) <= 2 for x in xs[:first_new] if x is not None)
    assert all(abs(x - 200) <= 2 for x in xs[first_new:] if x is not None)
    assert not [e for t, e in run.events if t == "event.process"]
    assert final_line(out).endswith("restarts 0"), out
    if kind == "rtsp":  # the vendor URL reached the server, authenticated, and was never shown
        rtsp = servers[1]
        assert (
            "DESCRIBE",
            f"rtsp://127.0.0.1:{port}/cam/realmonitor?channel=1&subtype=0",
            True,
        ) in rtsp.requests
        assert all(ok for method, _, ok in rtsp.requests if method == "PLAY")
        shown_anywhere = out + json.dumps([e for _, e in run.events])
        for secret in (PASSWORD, "p%40ss%3Aw%2Frd", "p%40ss"):
            assert secret not in shown_anywhere


def test_cameras_that_cannot_open_are_offline_and_the_rest_runs(
    tmp_path: Path, servers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing device, a missing password variable and a wrong password: three clear errors, three
    offline cameras (announced once, retried), no secret shown, and the synthetic camera inspected."""
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv("LENS_TEST_WRONG_PASSWORD", "wr@ng:pw")
    port, bus = free_port(), free_port()
    servers.append(RtspServer(port, 40, USER, PASSWORD, tmp_path / "stream.sdp"))
    hikvision = {"type": "rtsp", "vendor": "hikvision", "host": "127.0.0.1", "port": port, "user": USER}
    cameras = [
        {"id": "usb0", "source": {"type": "usb", "device": "/dev/video99"}},
        {"id": "nopass", "source": hikvision | {"password_env": PASSWORD_ENV}},
        {"id": "wrongpass", "source": hikvision | {"password_env": "LENS_TEST_WRONG_PASSWORD"}},
        {"id": "cam0", "source": {"type": "synthetic", "width": 320, "height": 240, "parts": 1}},
    ]
    path = pipeline(tmp_path, bus, cameras)
    with LensRun(path, f"tcp://127.0.0.1:{bus}") as run:
        run.wait_for(
            lambda: all(health(run, c) for c in ("usb0", "nopass", "wrongpass")) and len(run.results) >= 30,
            timeout=40,
            what="the three cameras reported and 30 results from the synthetic one",
        )
        assert run.proc.poll() is None  # still running
        assert run.stop() == 0, run.output()
        out = run.output()
    events = {c: camera_events(run, c) for c in ("usb0", "nopass", "wrongpass")}
    assert {c: [e["health"] for e in es] for c, es in events.items()} == {
        "usb0": ["offline"], "nopass": ["offline"], "wrongpass": ["offline"]
    }  # fmt: skip
    assert events["usb0"][0]["error"].startswith("usb source: /dev/video99 does not exist")
    assert events["nopass"][0]["error"] == (
        f"rtsp source: environment variable {PASSWORD_ENV} (password_env) is not set"
    )
    shown = f"rtsp rtsp://admin:***@127.0.0.1:{port}/Streaming/Channels/101"
    assert events["wrongpass"][0]["error"].startswith(f"{shown}: cannot open the stream")
    assert ("DESCRIBE", f"rtsp://127.0.0.1:{port}/Streaming/Channels/101", False) in servers[0].requests
    assert {r["camera"] for r in run.results} == {"cam0"}
    assert not [e for t, e in run.events if t == "event.process"]
    assert "Traceback" not in out and final_line(out).endswith("restarts 0"), out
    shown_anywhere = out + json.dumps([e for _, e in run.events])
    assert "wr@ng" not in shown_anywhere and "wr%40ng" not in shown_anywhere


# --- the live sources themselves -----------------------------------------------------------------------


def closed(source: LiveSource) -> None:
    """Close and wait for the reader thread (a test must not leave it running)."""
    source.close()
    if source._thread is not None:
        source._thread.join(10)
        assert not source._thread.is_alive()


def test_reader_hands_over_the_newest_frame_and_counts_superseded(servers: list[Any]) -> None:
    port = free_port()
    servers.append(HttpServer(port, 40))
    source = StreamSource("http", f"http://127.0.0.1:{port}/stream.mjpg", stall_s=5)
    try:
        assert source.open() == (H, W)
        out = np.zeros((H, W), np.uint8)
        assert source.read_into(out)
        ys, xs = np.nonzero(out >= 128)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (40, BOX_Y, 40 + BOX_W - 1, BOX_Y + BOX_H - 1)
        before, received = source.superseded, source.received
        deadline = time.monotonic() + 10
        while source.received < received + 3:  # three frames arrive while nobody takes one
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert source.superseded >= before + 2
        received = source.received
        assert source.read_into(out) and source._taken >= received  # the newest, not the next queued
    finally:
        closed(source)


def test_stream_that_goes_silent_is_a_stall_not_a_hang() -> None:
    """A server that sends one MJPEG part and then nothing: the stall is a SourceError, not a hang."""
    ok, jpeg = cv2.imencode(".jpg", np.full((H, W), 90, np.uint8))
    assert ok
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(
                b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=ffmpeg\r\n\r\n"
            )
            part = b"--lens\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            for _ in range(2):
                conn.sendall(part + jpeg.tobytes() + b"\r\n")
            done.wait(20)  # silent, connection open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    source = StreamSource("http", f"http://127.0.0.1:{port}/x.mjpg", stall_s=1)
    try:
        assert source.open() == (H, W)
        out = np.zeros((H, W), np.uint8)
        assert source.read_into(out) and int(out.mean()) in range(88, 93)
        with pytest.raises(SourceError, match=rf"^http http://127.0.0.1:{port}/x.mjpg: no frame for 1 s$"):
            while True:
                source.wait_frame(0.1)
    finally:
        done.set()
        closed(source)
        thread.join(5)
        listener.close()


def test_nobody_listening_is_a_clear_open_error() -> None:
    port = free_port()
    source = StreamSource("rtsp", f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/live", stall_s=2)
    try:
        with pytest.raises(SourceError) as info:
            source.open()
    finally:
        closed(source)
    assert str(info.value).startswith(f"rtsp rtsp://admin:***@127.0.0.1:{port}/live: cannot open the stream")
    assert PASSWORD not in str(info.value)


def test_missing_password_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LENS_NO_SUCH_PASSWORD", raising=False)
    src = {"type": "rtsp", "vendor": "intelbras", "host": "10.0.0.9", "user": "admin",
           "password_env": "LENS_NO_SUCH_PASSWORD"}  # fmt: skip
    source = make_source(CameraConfig.model_validate({"source": src}))
    message = r"^rtsp source: environment variable LENS_NO_SUCH_PASSWORD \(password_env\) is not set$"
    with pytest.raises(SourceError, match=message):
        source.open()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("/dev/video99", "usb source: /dev/video99 does not exist"),
        (99, "usb source: /dev/video99 does not exist"),
        ("/dev/null", "usb source: cannot open /dev/null as a V4L2 camera"),
    ],
)
def test_usb_device_that_is_not_a_camera(device: int | str, message: str) -> None:
    source = UsbSource(device, stall_s=1)
    try:
        with pytest.raises(SourceError, match=f"^{message}"):
            source.open()
    finally:
        closed(source)
