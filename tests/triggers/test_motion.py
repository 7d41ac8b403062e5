"""Motion trigger: the detector's rules, and `lens run` on a moving and a static scene."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lens.config.models import MotionTrigger
from lens.triggers.motion import MotionDetector
from tests.lensrun import LensRun, free_port, write_pipeline


def scene(x: int, h: int = 120, w: int = 200) -> np.ndarray:
    img = np.full((h, w), 40, np.uint8)
    img[40:80, x : x + 30] = 220  # a 30x40 part
    return img


def test_detector_fires_on_motion_only_after_a_reference_and_respects_cooldown() -> None:
    d = MotionDetector(MotionTrigger(type="motion", threshold=25, min_area=400, cooldown_ms=500, downscale=4))
    assert d.area(scene(10)) is None and not d.fires(None, 0.0)  # first frame: nothing to compare with
    area = d.area(scene(10))
    assert area == 0 and not d.fires(area, 0.1)  # static
    moved = d.area(scene(40))
    assert moved is not None and moved >= 400 and d.fires(moved, 0.2)
    again = d.area(scene(70))
    assert again is not None and again >= 400 and not d.fires(again, 0.5)  # within the cooldown
    later = d.area(scene(100))
    assert later is not None and d.fires(later, 0.8)
    bgr = MotionDetector(MotionTrigger(type="motion", min_area=400))
    bgr.area(cv2.cvtColor(scene(10), cv2.COLOR_GRAY2BGR))
    assert (bgr.area(cv2.cvtColor(scene(60), cv2.COLOR_GRAY2BGR)) or 0) >= 400


@pytest.mark.parametrize(("moving", "expected"), [(True, 7), (False, 0)])
def test_motion_run_inspects_moving_frames_only(tmp_path: Path, moving: bool, expected: int) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"f{i}.png"), scene(10 + 20 * i if moving else 10))
    port = free_port()
    path = write_pipeline(tmp_path / "motion.yaml", {
        "cameras": [{"id": "cam0", "source": {"type": "folder", "path": str(folder), "loop": False},
                     "trigger": {"type": "motion", "threshold": 25, "min_area": 400}}],
        "inspection": {"workers": 1, "tools": [{"name": "g", "type": "grayscale"}]},
        "outputs": {"zmq": {"bind": f"tcp://127.0.0.1:{port}", "command": f"tcp://127.0.0.1:{free_port()}"}},
    })  # fmt: skip
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: run.proc.poll() is not None, timeout=120, what="the folder to end")
        run.poll(300)
        assert run.proc.returncode == 0, run.output()
        assert len(run.results) == expected
        assert all(r["trigger"] == "motion" and "error" not in r for r in run.results)
        assert sorted(r["frame_id"] for r in run.results) == list(range(1, 8))[:expected]
        assert f"skipped {8 - expected} " in run.output()
