"""Smoke test of the tools benchmark: every row is measured, after its lens and OpenCV sides were
checked to compute the same result (run raises NotSame otherwise). No timing asserts."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from bench.tools import CASES, KERNELS, SIZES, run, table


@pytest.fixture(scope="module", autouse=True)
def _opencv_pool_started() -> Iterator[None]:
    # OpenCV starts its worker threads on its first parallel call and keeps them for the life of
    # the process; start them here, outside any test, so the leak check does not count them.
    cv2.connectedComponentsWithStats(np.ones((256, 256), np.uint8), connectivity=8, ltype=cv2.CV_32S)
    yield


def test_quick_run_checks_and_times_every_tool() -> None:
    before = cv2.getNumThreads()
    result = run(quick=True)

    assert cv2.getNumThreads() == before  # setNumThreads(1) was undone
    assert result["suite"] == "tools"
    assert result["machine"]["opencv_threads"] == 1
    rows = {(r["tool"], r["case"], r["size"]): r for r in result["rows"]}
    assert len(rows) == len(result["rows"])
    assert sorted(rows) == sorted((tool, case, size) for tool, case in CASES for size, _ in SIZES)
    for key, row in rows.items():
        assert row["same"] is True, key
        assert row["lens_us"] > 0 and row["opencv_us"] > 0 and row["ratio"] > 0, key
        assert row["result"] and row["note"], key
    # where OpenCV has several ways, the fastest one was picked and named
    picked = [r["opencv_variant"] for r in rows.values() if r["tool"] in ("blob", "edge_detection", "locate")]
    assert len(picked) == 4 * len(SIZES) and all(picked)

    (chain,) = result["chain"]
    assert chain["size"] == "640x480" and chain["same"] is True
    assert chain["tools"] == ["grayscale", "threshold", "blob", "edge_detection", "pattern_matching"]
    assert chain["lens_us"] > 0 and chain["opencv_us"] > 0
    assert set(chain["per_tool_us"]) == {"brightness", "binarize", "parts", "edges", "cap"}

    jit = result["jit"]
    assert [k["kernel"] for k in jit["first_calls"]] == list(KERNELS)
    assert all(k["cold_s"] > 0 and k["warm_s"] > 0 for k in jit["first_calls"])
    assert "skipped" in jit["warmup"]  # a cold warmup takes ~40 s: full runs only

    text = table(result)
    for tool, case in CASES:
        assert tool in text and case in text
    for size, _ in SIZES:
        assert size in text
