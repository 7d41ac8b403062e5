"""A real `lens run` with its control service on loopback, and a small HTTP client for it (end-to-end
tests of the control API). Every run is stopped with SIGTERM and must exit 0."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import conftest
from tests.lensrun import LensRun, free_port, write_pipeline

API_KEY_ENV = "LENS_TEST_CONTROL_KEY"
API_KEY = "test-machine-key-5f1c"
JSON = {"content-type": "application/json"}
SMALL = {"type": "synthetic", "width": 160, "height": 120, "fps": 30, "seed": 1}
TOOLS: list[dict[str, Any]] = [
    {"name": "brightness", "type": "grayscale", "method": "luminance", "pass_fail": {"min": 0, "max": 255}},
    {
        "name": "parts",
        "type": "blob",
        "params": {"th_min": 128, "th_max": 255, "area_min": 5},
        "pass_fail": {"min": 4, "max": 4},
    },
]


def camera(cam_id: str, source: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A camera section: a small synthetic source unless `source` is given."""
    return {"id": cam_id, "source": source or SMALL, **extra}


class Lens:
    """`lens run` of a pipeline written from the arguments; `url` is its control service."""

    def __init__(
        self,
        tmp_path: Path,
        cameras: list[dict[str, Any]],
        control: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        bus = free_port()
        ctl = {
            "port": self.port,
            "db": str(tmp_path / "control.sqlite"),
            "api_key_env": API_KEY_ENV,
            **(control or {}),
        }
        cfg = {
            "machine": {"id": "vm_ctl", "name": "control e2e"},
            "cameras": cameras,
            "inspection": {"workers": workers, "tools": TOOLS if tools is None else tools},
            "outputs": {
                "zmq": {"bind": f"tcp://127.0.0.1:{bus}", "command": f"tcp://127.0.0.1:{free_port()}"}
            },
            "control": ctl,
        }
        path = write_pipeline(tmp_path / "pipeline.yaml", cfg)
        self.url = f"http://127.0.0.1:{self.port}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(API_KEY_ENV, API_KEY)  # read by the child only: LensRun passes os.environ on
            self.run = LensRun(path, f"tcp://127.0.0.1:{bus}")
        # idle connections are dropped before uvicorn's keep-alive (5 s) closes them, so a request
        # never goes out on a connection the server is closing at that moment
        self.http = httpx.Client(base_url=self.url, timeout=15.0, limits=httpx.Limits(keepalive_expiry=1.0))

    # -- HTTP ---------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self.http.request(method, path, headers=headers, **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return self.request("GET", path, token, **kw)

    def ok(self, method: str, path: str, token: str | None = None, status: int = 200, **kw: Any) -> Any:
        """The JSON body of a request that must answer `status`."""
        r = self.request(method, path, token, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def open_session(self, orchestrator_id: str = "orch-A", **body: Any) -> str:
        answer = self.ok(
            "POST", "/api/v1/session", API_KEY, 201, json={"orchestrator_id": orchestrator_id, **body}
        )
        token: str = answer["session_token"]
        return token

    def status(self, token: str) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("GET", "/api/v1/status", token)
        return data

    def inspected(self, token: str, cam: str = "cam0") -> int:
        return int(self.status(token)["cameras"][cam]["inspected"])

    # -- waiting --------------------------------------------------------------------------------------------

    def wait(self, cond: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
        """Poll `cond` until it returns something truthy; fails with the run's log at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if self.run.proc.poll() is not None:
                raise AssertionError(f"lens run exited waiting for {what}; log:\n{self.run.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log:\n{self.run.output()}")
            time.sleep(0.05)

    def wait_ready(self) -> None:
        """Until GET /api/v1/health answers (any status: an allowlist may refuse us)."""

        def answers() -> bool:
            try:
                self.http.get("/api/v1/health", timeout=2.0)
            except httpx.TransportError:
                return False
            return True

        self.wait(answers, 60.0, "the control service to answer")

    def wait_inspecting(self, token: str, cams: tuple[str, ...] = ("cam0",), at_least: int = 1) -> None:
        """Until the run is `running` and every camera in `cams` has inspected `at_least` frames."""

        def inspecting() -> bool:
            st = self.status(token)
            return st["state"] == "running" and all(st["cameras"][c]["inspected"] >= at_least for c in cams)

        self.wait(inspecting, 60.0, f"{cams} to be inspected")

    # -- end ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """SIGTERM, and the run must exit 0; then the subscriber and log are closed."""
        self.http.close()
        try:
            code = self.run.stop()
            assert code == 0, f"lens run exited {code}; log:\n{self.run.output()}"
        finally:
            self.run.close()


@contextlib.contextmanager
def running(
    tmp_path: Path,
    cameras: list[dict[str, Any]] | None = None,
    control: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    workers: int = 1,
) -> Iterator[Lens]:
    """A started `lens run` whose control service answers; stopped (exit 0 checked) on leaving."""
    lens = Lens(tmp_path, cameras or [camera("cam0")], control, tools, workers)
    try:
        lens.wait_ready()
        yield lens
    except BaseException:
        lens.http.close()
        with contextlib.suppress(AssertionError):  # the test's own failure is the one to report
            lens.run.stop()
        lens.run.close()
        raise
    else:
        lens.close()


# -- runs shared by the tests of a module ---------------------------------------------------------------


class _SharedRuns:
    """The `lens run`s module fixtures keep alive across tests, and every pid seen in each one's process
    tree (a restarted capture gets a new pid, and its ring's segment name carries that pid)."""

    def __init__(self) -> None:
        self.trees: dict[int, set[int]] = {}  # supervisor pid -> pids seen in its tree
        self.runs: dict[int, Lens] = {}
        self._lock = threading.Lock()

    def sample(self) -> set[int]:
        """Record the shared runs' trees as they are now; returns their live pids."""
        now: set[int] = set()
        with self._lock:
            for pid, lens in self.runs.items():
                tree = {pid, *(p.pid for p in lens.run.children())}
                self.trees[pid] |= tree
                now |= tree
        return now

    @property
    def pids(self) -> set[int]:
        with self._lock:
            return set().union(*self.trees.values())

    def add(self, lens: Lens) -> None:
        with self._lock:
            self.runs[lens.run.proc.pid] = lens
            self.trees[lens.run.proc.pid] = {lens.run.proc.pid}

    def remove(self, lens: Lens) -> set[int]:
        """Stop tracking `lens`; returns every pid its tree had."""
        self.sample()
        with self._lock:
            del self.runs[lens.run.proc.pid]
            return self.trees.pop(lens.run.proc.pid)


SHARED = _SharedRuns()


@contextlib.contextmanager
def shared(lens_factory: Callable[[], Lens]) -> Iterator[Lens]:
    """A run for a module fixture: exempt from the per-test leak check while it lives (see
    `no_leaks_but_shared`), and checked itself when it ends: exit 0, no process of its tree left
    and no /dev/shm segment made by one."""
    lens = lens_factory()
    SHARED.add(lens)
    try:
        lens.wait_ready()
        yield lens
    finally:
        tree = SHARED.remove(lens)
        children = lens.run.children()
        lens.close()
        deadline = time.monotonic() + 5.0
        while (alive := [p for p in children if conftest._running(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive, f"processes of the shared run left: {alive}"
        left = conftest._shm(tree)
        assert not left, f"/dev/shm segments of the shared run left: {sorted(left)}"


@pytest.fixture(autouse=True, name="no_leaks")
def no_leaks_but_shared() -> Iterator[None]:
    """The suite's leak check (tests/conftest.py: child processes, /dev/shm segments, listening
    sockets, zmq contexts), except for the process trees of this module's shared runs, which are
    checked by `shared` when they end. Imported by a test module, it replaces `no_leaks` there."""
    before = conftest.Baseline.take()
    family = conftest._Family()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            SHARED.sample()

    watcher = threading.Thread(target=watch, name="shared-run-watch")
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    pids = family.stop()
    SHARED.sample()
    conftest.assert_no_leaks(before, pids - SHARED.pids, exclude=SHARED.sample)


# -- assertions --------------------------------------------------------------------------------------------


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the catalog's error body, exactly {"error": {"code", "message", "details"}};
    returns its details."""
    assert r.status_code == status, f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert list(body) == ["error"], body
    err = body["error"]
    assert sorted(err) == ["code", "details", "message"], body
    assert err["code"] == code, body
    assert isinstance(err["message"], str) and err["message"], body
    assert isinstance(err["details"], dict), body
    details: dict[str, Any] = err["details"]
    return details


def route_example(path: str) -> str:
    """A concrete URL for a route of lens.control.app.ROUTES (path parameters filled in)."""
    return path.replace("{action}", "start").replace("{result_id}", "1")
