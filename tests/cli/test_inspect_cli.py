"""`lens inspect`, `lens validate` and `lens subscribe` as real subprocesses (the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
import zmq

from lens.engine.bus import Publisher, event_topic, pack, result_topic
from tests.lensrun import free_port

ROOT = Path(__file__).resolve().parents[2]
LENS = str(Path(sys.executable).parent / "lens")
PIPELINE = {
    "machine": {"id": "vm_cli"},
    "cameras": [{"id": "top", "source": {"type": "synthetic", "width": 160, "height": 120}}],
    "inspection": {
        "workers": 1,
        "tools": [
            {"name": "brightness", "type": "grayscale", "pass_fail": {"min": 20, "max": 220}},
            {
                "name": "parts",
                "type": "blob",
                "params": {"th_min": 128, "th_max": 255, "area_min": 20},
                "pass_fail": {"min": 3, "max": 3},
            },
            {"name": "double", "type": "math", "expr": "parts.count * 2"},
        ],
    },
}


def lens(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LENS, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def make_image(path: Path, squares: int) -> np.ndarray:
    """120x160 gray: background 30, `squares` separate 10x10 squares of 200 (plus a 3x3 speck of 250
    that the area filter drops)."""
    img = np.full((120, 160), 30, np.uint8)
    for i in range(squares):
        x, y = 8 + (i % 6) * 25, 15 + (i // 6) * 40
        img[y : y + 10, x : x + 10] = 200
    img[100:103, 150:153] = 250
    assert cv2.imwrite(str(path), img)
    return img


def expected_tools(img: np.ndarray) -> dict[str, Any]:
    """What the pipeline's tools must report, computed with NumPy and OpenCV."""
    n, _, st, cen = cv2.connectedComponentsWithStats((img >= 128).astype(np.uint8), connectivity=8)
    blobs = [
        {
            "x": int(st[i, 0]),
            "y": int(st[i, 1]),
            "w": int(st[i, 2]),
            "h": int(st[i, 3]),
            "area": int(st[i, 4]),
            "cx": round(float(cen[i, 0]), 2),
            "cy": round(float(cen[i, 1]), 2),
        }
        for i in range(1, n)
        if st[i, 4] >= 20
    ]
    count = len(blobs)
    mean = float(img.mean())
    return {
        "brightness": {
            "type": "grayscale",
            "method": "luminance",
            "value": mean,
            "pass": 20 <= mean <= 220,
            "measures": {"mean": mean, "min": int(img.min()), "max": int(img.max()), "std": float(img.std())},
        },
        "parts": {
            "type": "blob",
            "method": "threshold",
            "value": count,
            "pass": count == 3,
            "measures": {
                "count": count,
                "total_area": sum(b["area"] for b in blobs),
                "largest_area": max((b["area"] for b in blobs), default=0),
                "roi_area": img.shape[0] * img.shape[1],
            },
            "blobs": blobs,
            "detections": [
                {"class": "parts", "confidence": 1.0, "bbox": [b["x"], b["y"], b["w"], b["h"]]} for b in blobs
            ],
        },
        "double": {"type": "math", "value": 2.0 * count, "pass": True},
    }


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    pipeline = tmp_path / "job.yaml"
    pipeline.write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    images = {}
    for name, squares in [("a_three.png", 3), ("b_two.png", 2), ("c_seven.png", 7)]:
        images[name] = make_image(tmp_path / name, squares)
    return pipeline, images


def test_summary_output_is_one_line_per_image(
    job: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    pipeline, images = job
    paths = [str(tmp_path / name) for name in images]
    proc = lens("inspect", "--summary", str(pipeline), *paths)
    assert proc.returncode == 0, proc.stderr  # FAIL verdicts are results, not errors
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for line, path, img in zip(lines, paths, images.values(), strict=True):
        exp = expected_tools(img)
        count = exp["parts"]["value"]
        verdict = "PASS" if count == 3 else "FAIL"
        parts = f"parts={count}" + ("" if count == 3 else " (FAIL)")
        assert (
            line
            == f"{path}: {verdict}  brightness={exp['brightness']['value']:.4g}  {parts}  double={2 * count}"
        )


def test_default_output_is_the_json_envelope(job: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    """SPEC §6: one JSON result envelope a line, with or without --json."""
    pipeline, images = job
    paths = [str(tmp_path / name) for name in images]

    def values(stdout: str) -> list[tuple[str, bool, dict[str, float]]]:
        envs = [json.loads(line) for line in stdout.splitlines()]
        return [(e["image"], e["pass"], {n: t["value"] for n, t in e["tools"].items()}) for e in envs]

    plain = values(lens("inspect", str(pipeline), *paths).stdout)
    assert plain == values(lens("inspect", "--json", str(pipeline), *paths).stdout)
    assert [p for p, _, _ in plain] == paths


def test_json_output_matches_opencv(job: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    pipeline, images = job
    paths = [str(tmp_path / name) for name in images]
    proc = lens("inspect", "--json", str(pipeline), *paths)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for i, (line, path, img) in enumerate(zip(lines, paths, images.values(), strict=True)):
        env = json.loads(line)
        exp = expected_tools(img)
        assert env["type"] == "inspection.result"
        assert (env["machine_id"], env["camera"], env["mode"], env["trigger"]) == (
            "vm_cli",
            "top",
            "TEST",
            "file",
        )
        assert (env["result_id"], env["frame_id"], env["inspection_version"]) == (i + 1, i, 1)
        assert env["image"] == path
        assert env["pass"] is (exp["parts"]["value"] == 3)
        assert "error" not in env
        for name, tool in env["tools"].items():
            assert tool.pop("elapsed_us") >= 0
            if name == "brightness":  # floats: NumPy sums in another order than the kernel
                assert tool.pop("measures") == pytest.approx(exp[name].pop("measures"), rel=1e-12)
                assert tool.pop("value") == pytest.approx(exp[name].pop("value"), rel=1e-12)
            assert tool == exp[name], name
        assert list(env["tools"]) == ["brightness", "parts", "double"]


def test_bad_images_give_error_lines_and_exit_1(
    job: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    pipeline, _ = job
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    missing = tmp_path / "missing.png"
    paths = [str(tmp_path / "a_three.png"), str(missing), str(garbage), str(tmp_path / "c_seven.png")]
    proc = lens("inspect", "--json", str(pipeline), *paths)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    envs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["image"] for e in envs] == paths
    for env, why in ((envs[1], "no such file"), (envs[2], "not a readable image")):
        assert env["pass"] is False and env["tools"] == {}
        assert env["error"] == {"code": "LENS_INVALID_IMAGE", "message": f"{env['image']}: {why}"}
    assert envs[0]["pass"] is True and envs[0]["tools"]["parts"]["value"] == 3
    assert envs[3]["pass"] is False and envs[3]["tools"]["parts"]["value"] == 7
    pretty = lens("inspect", "--summary", str(pipeline), *paths)
    assert pretty.returncode == 1 and "Traceback" not in pretty.stderr
    assert pretty.stdout.splitlines()[1:3] == [
        f"{missing}: ERROR LENS_INVALID_IMAGE: {missing}: no such file",
        f"{garbage}: ERROR LENS_INVALID_IMAGE: {garbage}: not a readable image",
    ]


def test_invalid_pipeline_exits_2_with_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "machine: {id: vm_cli}\n"
        "inspection:\n"
        "  tools:\n"
        "    - {name: a, type: blob, roi: {w: 0}}\n"
        "    - {name: b, type: grayscale, colour: red}\n"
    )
    img = tmp_path / "x.png"
    make_image(img, 1)
    proc = lens("inspect", str(bad), str(img))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines == [
        f"{bad}:4: inspection.tools[0].roi.w: must be >= 1 (got 0)",
        f"{bad}:5: inspection.tools[1].colour: unknown key",
    ]


def test_invalid_pipeline_top_level_error_names_a_path(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    img = tmp_path / "x.png"
    make_image(img, 1)
    validate = lens("validate", str(bad))
    assert validate.returncode == 2
    assert validate.stderr.splitlines() == [f"{bad}: (top level): must be a mapping of sections (got list)"]
    proc = lens("inspect", str(bad), str(img))
    assert proc.returncode == 2
    assert proc.stderr == f"{bad}: (top level): must be a mapping of sections (got list)\n"


def test_validate_demo_pipeline() -> None:
    proc = lens("validate", "pipelines/demo.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "pipelines/demo.yaml: OK (1 camera(s), 3 tool(s), 2 worker(s))\n"


# --- lens subscribe ------------------------------------------------------------------------------------

RESULT = {
    "type": "inspection.result",
    "machine_id": "vm_cli",
    "camera": "cam0",
    "frame_id": 0,
    "trigger": "continuous",
    "mode": "RUN",
    "pass": True,
    "captured_at": 1763760000.5,
    "finished_at": 1763760000.75,
    "inspection_version": 2,
    "tools": {"parts": {"type": "blob", "value": 4, "pass": True, "elapsed_us": 12.5}},
}


def run_subscriber(args: list[str], n: int) -> tuple[int, list[dict[str, Any]]]:
    """Start `lens subscribe ARGS` and publish (result i, event i) pairs until it exits by itself."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = zmq.Context()
    pub = Publisher(ctx, endpoint)
    proc = subprocess.Popen(
        [LENS, "subscribe", "--count", str(n), "--json", *args, endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        i = 0
        while proc.poll() is None:
            assert time.monotonic() < deadline, "lens subscribe did not finish"
            pub.publish(result_topic("cam0"), pack({**RESULT, "result_id": i, "frame_id": 100 + i}))
            pub.publish(event_topic("camera"), pack({"type": "event.camera", "machine_id": "vm_cli", "n": i}))
            pub.drain_subscriptions()
            i += 1
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        pub.close()
        ctx.term()
    assert "Traceback" not in err, err
    return proc.returncode, [json.loads(line) for line in out.splitlines()]


def test_subscribe_prints_count_json_lines() -> None:
    code, lines = run_subscriber([], 4)
    assert code == 0
    assert len(lines) == 4
    # publication order is result i, event i, result i+1, ...: the lines are a contiguous run of it
    stream = []
    for line in lines:
        if line["topic"] == "result.cam0":
            i = line["result_id"]
            assert line == {"topic": "result.cam0", **RESULT, "result_id": i, "frame_id": 100 + i}
            stream.append(2 * i)
        else:
            assert line == {
                "topic": "event.camera",
                "type": "event.camera",
                "machine_id": "vm_cli",
                "n": line["n"],
            }
            stream.append(2 * line["n"] + 1)
    assert stream == list(range(stream[0], stream[0] + 4))


def test_subscribe_topic_filter() -> None:
    code, lines = run_subscriber(["--topic", "result."], 3)
    assert code == 0
    assert [line["topic"] for line in lines] == ["result.cam0"] * 3
    first = lines[0]["result_id"]
    assert [line["result_id"] for line in lines] == [first, first + 1, first + 2]
    assert all(line["tools"] == RESULT["tools"] for line in lines)
