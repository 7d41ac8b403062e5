"""The tool chain: runs the configured tools in order on one frame and builds their results."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from lens.config.models import InspectionConfig
from lens.engine import msgs
from lens.engine.envelope import LENS_INSPECTION_ERROR, Job, error_envelope, result_envelope
from lens.inspect.tools import Canvas, Tool, ToolError, make_tool

log = logging.getLogger("lens.inspect")


class ToolChain:
    """Built once per inspection config version; `run` is called per frame (no per-frame setup)."""

    def __init__(self, config: InspectionConfig, version: int = 1) -> None:
        self.config = config
        self.version = version
        self.tools: list[Tool] = [make_tool(t) for t in config.tools]
        self.canvas = Canvas()

    def run(self, frame: np.ndarray) -> tuple[dict[str, Any], bool]:
        """Returns (tools, passed): each tool's result dict, and whether every tool passed.
        Raises ToolError if a tool cannot run on this frame."""
        canvas = self.canvas
        canvas.reset(frame)
        values: dict[str, dict[str, float]] = {}
        results: dict[str, Any] = {}
        passed = True
        for tool in self.tools:
            t0 = time.perf_counter_ns()
            m = tool.measure(canvas, values)
            elapsed_us = (time.perf_counter_ns() - t0) / 1000.0
            ok = tool.judge(m)
            passed = passed and ok
            out: dict[str, Any] = {
                "type": tool.type,
                "value": m.value,
                "pass": ok,
                "elapsed_us": round(elapsed_us, 1),
            }
            if tool.method is not None:
                out["method"] = tool.method
            if m.measures:
                out["measures"] = m.measures
            out.update(m.extra)
            results[tool.name] = out
            # math sees only what exists: a missing value (no edge found) is "has no value", not None
            values[tool.name] = {k: v for k, v in (("value", m.value), *m.measures.items()) if v is not None}
        return results, passed


def inspect_frame(
    chain: ToolChain, machine_id: str, job: Job, frame: np.ndarray
) -> tuple[int, dict[str, Any]]:
    """Run the chain on one frame and build its envelope (in the job's mode): (outcome, envelope).
    Never raises for a tool's failure: a tool that cannot run gives an error result naming it
    (LENS_INSPECTION_ERROR)."""
    try:
        tools, passed = chain.run(frame)
    except ToolError as e:
        return msgs.ERROR, error_envelope(machine_id, job, LENS_INSPECTION_ERROR, str(e))
    except Exception as e:  # a bug in a tool must cost one result, not the worker
        log.exception("tool chain failed on frame %s of %s", job.frame_id, job.camera)
        message = f"internal error in the tool chain: {type(e).__name__}: {e}"
        return msgs.ERROR, error_envelope(machine_id, job, LENS_INSPECTION_ERROR, message)
    return (msgs.PASSED if passed else msgs.FAILED), result_envelope(machine_id, job, job.mode, passed, tools)
