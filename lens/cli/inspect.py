"""`lens inspect PIPELINE IMAGE...`: run the pipeline's tool chain on image files, offline.

Output: one result envelope per line (the envelope the bus carries; `--json` says so explicitly),
or with `--summary` one readable line per image. Exit 0 when every image was inspected (pass or
fail), 1 when an image could not be read or a tool could not run, 2 for an invalid pipeline.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import cv2
import orjson

from lens.config.load import ConfigError, format_issue, load_pipeline
from lens.engine import msgs
from lens.engine.envelope import Job, error_envelope
from lens.inspect.runner import ToolChain, inspect_frame

LENS_INVALID_IMAGE = "LENS_INVALID_IMAGE"
MODE = "TEST"
EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def _summary(path: str, env: dict[str, Any]) -> str:
    if "error" in env:
        return f"{path}: ERROR {env['error']['code']}: {env['error']['message']}"
    parts = []
    for name, t in env["tools"].items():
        value = t["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{name}={shown}{'' if t['pass'] else ' (FAIL)'}")
    return f"{path}: {'PASS' if env['pass'] else 'FAIL'}  " + "  ".join(parts)


def inspect_files(
    pipeline: str,
    images: list[str],
    camera: str | None = None,
    summary: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        config = load_pipeline(pipeline)
    except ConfigError as e:
        for issue in e.issues:
            print(format_issue(pipeline, issue), file=err)
        return EXIT_INVALID
    cams = {c.id: c for c in config.cameras}
    if camera is not None and camera not in cams:
        print(f"lens inspect: no camera {camera!r} in {pipeline} (cameras: {', '.join(cams)})", file=err)
        return EXIT_INVALID
    cam = cams[camera] if camera else config.cameras[0]
    flag = cv2.IMREAD_GRAYSCALE if cam.capture.format == "gray" else cv2.IMREAD_COLOR
    chain = ToolChain(config.inspection)
    status = EXIT_OK
    for i, path in enumerate(images):
        taken = os.path.getmtime(path) if os.path.exists(path) else time.time()
        job = Job(i + 1, 0, cam.id, "", 0, 0, i, taken, "file", taken, chain.version, mode=MODE)
        image = cv2.imread(path, flag) if os.path.isfile(path) else None
        if image is None:
            why = "no such file" if not os.path.exists(path) else "not a readable image"
            env = error_envelope(config.machine.id, job, LENS_INVALID_IMAGE, f"{path}: {why}")
            status = EXIT_FAIL
        else:
            outcome, env = inspect_frame(chain, config.machine.id, job, image)
            if outcome == msgs.ERROR:
                status = EXIT_FAIL
        env["image"] = path
        out.write((_summary(path, env) if summary else orjson.dumps(env).decode()) + "\n")
    out.flush()
    return status
