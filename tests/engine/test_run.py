"""`lens run` end to end: real processes, real shared memory, results counted on the real bus."""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from lens.triggers.dispatcher import JOBS_PER_WORKER
from tests.lensrun import LensRun, free_port, write_pipeline

TOOLS = [
    {"name": "brightness", "type": "grayscale", "method": "luminance"},
    {"name": "spots", "type": "blob", "params": {"th_min": 128, "th_max": 255, "area_min": 20}},
    {"name": "twice", "type": "math", "expr": "spots.count * 2"},
]


def make_folder(folder: Path, k: int) -> list[tuple[int, float]]:
    """K (<= 30) images; image i holds i+1 bright squares on black. Returns (blobs, mean) per image."""
    assert k <= 30
    folder.mkdir()
    truth = []
    for i in range(k):
        img = np.zeros((120, 200), np.uint8)
        for b in range(i + 1):
            x, y = 6 + (b % 10) * 19, 10 + (b // 10) * 38  # 10 a row, 3 rows: all inside 200x120
            img[y : y + 12, x : x + 12] = 200
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), img)
        truth.append((i + 1, float(img.mean())))
    return truth


def pipeline(tmp_path: Path, port: int, source: dict, workers: int = 2, **cam: object) -> Path:
    cfg = {
        "machine": {"id": "vm_test"},
        "cameras": [{"id": "cam0", "source": source, **cam}],
        "inspection": {"workers": workers, "tools": TOOLS},
        "outputs": {"zmq": {"bind": f"tcp://127.0.0.1:{port}", "command": f"tcp://127.0.0.1:{free_port()}"}},
    }
    return write_pipeline(tmp_path / "pipeline.yaml", cfg)


def test_folder_run_gives_exactly_one_result_per_image(tmp_path: Path) -> None:
    k = 25
    truth = make_folder(tmp_path / "imgs", k)
    port = free_port()
    path = pipeline(tmp_path, port, {"type": "folder", "path": str(tmp_path / "imgs"), "loop": False})
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: run.proc.poll() is not None, timeout=120, what="lens run to finish the folder")
        run.poll(300)
        assert run.proc.returncode == 0, run.output()
        assert len(run.results) == k, run.output()
        by_frame = {r["frame_id"]: r for r in run.results}
        assert sorted(by_frame) == list(range(k))
        for frame_id, (blobs, mean) in enumerate(truth):
            r = by_frame[frame_id]
            assert r["type"] == "inspection.result" and r["machine_id"] == "vm_test" and r["camera"] == "cam0"
            assert r["tools"]["spots"]["value"] == blobs
            assert r["tools"]["twice"]["value"] == 2 * blobs
            assert r["tools"]["brightness"]["value"] == pytest.approx(mean, rel=1e-9)
            assert r["pass"] is True and "error" not in r
        ids = sorted(r["result_id"] for r in run.results)
        assert ids == list(range(1, k + 1))  # unique, dense result ids
        assert any(t == "event.run" and e["state"] == "finished" for t, e in run.events)
        out = run.output()
        assert f"inspected {k} " in out and "dropped busy 0" in out and "overrun 0" in out


@pytest.mark.parametrize("fmt", ["gray", "bgr"])
def test_synthetic_results_match_ground_truth(tmp_path: Path, fmt: str) -> None:
    """Demo-like job: every result's pass/fail agrees with what the synthetic scene drew."""
    from lens.capture.sources.synthetic import SyntheticScene

    port = free_port()
    cfg = {
        "machine": {"id": "vm_demo"},
        "cameras": [
            {
                "id": "cam0",
                "source": {"type": "synthetic", "seed": 3, "defect_rate": 0.3},
                "capture": {"format": fmt},
            }
        ],
        "inspection": {
            "workers": 2,
            "tools": [
                {"name": "brightness", "type": "grayscale", "pass_fail": {"min": 40, "max": 220}},
                {
                    "name": "parts",
                    "type": "blob",
                    "params": {"th_min": 128, "area_min": 50},
                    "pass_fail": {"min": 4, "max": 4},
                },
            ],
        },
        "outputs": {"zmq": {"bind": f"tcp://127.0.0.1:{port}", "command": f"tcp://127.0.0.1:{free_port()}"}},
    }
    path = write_pipeline(tmp_path / "demo.yaml", cfg)
    scene = SyntheticScene(640, 480, 1 if fmt == "gray" else 3, seed=3, defect_rate=0.3, parts=4)
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: len(run.results) >= 300, what="300 results")
        assert run.stop() == 0
    for r in run.results:
        t = scene.truth(r["frame_id"])
        assert r["tools"]["parts"]["value"] == t["blobs"], (r["frame_id"], t)
        assert r["pass"] == t["good"], (r["frame_id"], t)
    assert {r["pass"] for r in run.results} == {True, False}


def test_sigint_stops_everything_with_exit_0(tmp_path: Path) -> None:
    port = free_port()
    path = pipeline(tmp_path, port, {"type": "synthetic"})
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: len(run.results) >= 20, what="20 results")
        kids = run.children()
        assert len(kids) >= 4  # dispatcher, 2 workers, 1 capture
        assert run.stop(signal.SIGINT) == 0, run.output()
        _gone, alive = psutil.wait_procs(kids, timeout=15)  # a loaded machine takes its time
        assert not alive, alive
        assert "lens: stopped." in run.output()


def test_killed_worker_is_restarted_and_results_continue(tmp_path: Path) -> None:
    port = free_port()
    path = pipeline(tmp_path, port, {"type": "synthetic"})
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: len(run.results) >= 50, what="50 results")
        victim = run.child("lens-worker-0")
        victim.kill()
        run.wait_for(
            lambda: any(
                e.get("state") == "restarted" and e.get("name") == "worker-0"
                for t, e in run.events
                if t == "event.process"
            ),
            what="restart event",
        )
        after = len(run.results)
        run.wait_for(lambda: len(run.results) >= after + 200, what="results after the restart")
        new = run.child("lens-worker-0")
        assert new.pid != victim.pid
        # every job handed out was answered: ids are dense even across the crash
        ids = sorted(r["result_id"] for r in run.results)
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        crashed = [r for r in run.results if r.get("error", {}).get("code") == "LENS_WORKER_CRASHED"]
        assert len(crashed) <= JOBS_PER_WORKER  # the jobs the killed worker held, each answered
        assert run.stop() == 0
        assert "restarts 1" in run.output()


def test_killed_supervisor_takes_children_down_and_next_run_starts_clean(tmp_path: Path) -> None:
    port = free_port()
    path = pipeline(tmp_path, port, {"type": "synthetic"})
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: len(run.results) >= 20, what="20 results")
        kids = run.children()
        run.proc.kill()  # SIGKILL: no chance to clean up
        run.proc.wait(5)
        _gone, alive = psutil.wait_procs(kids, timeout=15)  # a loaded machine takes its time
        assert not alive, f"orphans survived the supervisor: {alive}"
    leftovers = [p.name for p in Path("/dev/shm").glob(f"lens_{run.proc.pid}_*")]
    assert leftovers  # a SIGKILLed run cannot clean up; the next start must
    with LensRun(path, f"tcp://127.0.0.1:{port}") as again:  # same ports
        again.wait_for(lambda: len(again.results) >= 20, what="results from the second run")
        assert again.stop() == 0
        assert "left by a killed run" in again.output()
    assert not [p for p in Path("/dev/shm").glob(f"lens_{run.proc.pid}_*")]


def test_bus_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    path = pipeline(tmp_path, port, {"type": "synthetic"})
    with LensRun(path, f"tcp://127.0.0.1:{port}") as first:
        first.wait_for(lambda: len(first.results) >= 5, what="the first run")
        with LensRun(path, f"tcp://127.0.0.1:{port}") as second:
            assert second.proc.wait(60) == 1
            out = second.output()
            assert f"cannot bind the results bus at tcp://127.0.0.1:{port}" in out, out
            assert "lens: cannot start: dispatcher could not start" in out
            assert "Traceback" not in out
        assert first.proc.poll() is None  # the running machine is untouched
        assert first.stop() == 0
