"""Every output from YAML through a real `lens run`: a finite folder of images (half of them fail)
→ the SQLite store, the image log, a real mosquitto, and a pseudo-terminal as the reject gate."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import orjson

from tests.lensrun import LensRun, free_port, write_pipeline
from tests.outputs.conftest import Broker

N = 12  # images; the odd ones are dark and fail


def images(folder: Path) -> None:
    folder.mkdir()
    for i in range(N):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((120, 160), 40 if i % 2 else 200, np.uint8))


def read_lines(fd: int) -> list[str]:
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


def test_store_image_log_mqtt_and_reject_gate_from_yaml(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., object]
) -> None:
    images(tmp_path / "imgs")
    master, slave = os.openpty()
    sub = subscriber(mosquitto, ["lens/#"])
    bus = free_port()
    folder = str(tmp_path / "imgs")
    cfg = {
        "machine": {"id": "vm_out"},
        "cameras": [{"id": "cam0", "source": {"type": "folder", "path": folder, "loop": False}}],
        "inspection": {"workers": 1, "tools": [{"name": "brightness", "type": "grayscale",
                                                "pass_fail": {"min": 100}}]},
        "outputs": {
            "zmq": {"bind": f"tcp://127.0.0.1:{bus}", "command": f"tcp://127.0.0.1:{free_port()}"},
            "store": {"path": "var/results.sqlite"},
            "image_log": {"dir": "var/images", "keep": "failed"},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "qos": 1},
            "actions": [{"type": "serial", "when": ["fail", "error"], "port": os.ttyname(slave),
                         "line": "REJECT;{result_id}"}],
        },
    }  # fmt: skip
    path = write_pipeline(tmp_path / "outputs.yaml", cfg)
    try:
        with LensRun(path, f"tcp://127.0.0.1:{bus}") as run:
            run.wait_for(lambda: run.proc.poll() is not None, 90, "the finite run to end by itself")
            assert run.proc.returncode == 0, run.output()
            run.poll(200)
            failed = sorted(r["result_id"] for r in run.results if not r["pass"])
        assert len(run.results) == N and len(failed) == N // 2
        # the store has every result, relative path resolved next to the pipeline
        with sqlite3.connect(tmp_path / "var" / "results.sqlite") as db:
            rows = db.execute("SELECT result_id, pass FROM results ORDER BY result_id").fetchall()
        assert [r[0] for r in rows] == list(range(1, N + 1))
        assert sorted(r[0] for r in rows if not r[1]) == failed
        # the image log has exactly the failed ones, each a JPEG of the frame
        jpgs = sorted((tmp_path / "var" / "images").rglob("*.jpg"))
        assert sorted(int(p.name.split("_r")[1].split("_")[0]) for p in jpgs) == failed
        assert cv2.imread(str(jpgs[0]), cv2.IMREAD_UNCHANGED).shape == (120, 160)
        # the reject gate got exactly one line per failed inspection
        assert read_lines(master) == [f"REJECT;{rid}" for rid in failed]
        # MQTT: every result on lens/vm_out/cam0/result, and the retained status
        got = sub.wait_for(N, topic="lens/vm_out/cam0/result")  # type: ignore[attr-defined]
        assert sorted(orjson.loads(m.payload)["result_id"] for m in got) == list(range(1, N + 1))
    finally:
        os.close(master)
        os.close(slave)
