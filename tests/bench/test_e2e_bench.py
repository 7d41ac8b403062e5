"""Smoke test of the end-to-end benchmark: one quick run (one frame size, short windows, a short
soak) of every part with real processes: the single-process loop, the multiprocessing.Queue
pipeline, `lens run` subprocesses counted on their results bus, the folder job, the soak. Asserts
what each part really did (frames inspected, result ids, lens's results equal to OpenCV's on the
same frames, clean exits, charts written) and that the whole run left nothing behind. No timing or
ratio thresholds: the numbers are only checked to be the ones the figures derive from."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from bench.e2e import CONTENDERS, DROP_REASONS, TARGETS, WORKERS, run, table
from bench.runner import run_bench
from lens.cli.main import build_parser
from tests import conftest

SOAK_S = 6.0
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One quick run for the whole module, with the suite's leak check around it."""
    before = conftest.Baseline.take()
    family = conftest._Family()
    out = tmp_path_factory.mktemp("e2e_charts")
    try:
        res = run(quick=True, soak_s=SOAK_S, out_dir=out)
    finally:
        conftest.assert_no_leaks(before, family.stop())
    yield res


def _lens_clean(exits: list[dict[str, Any]]) -> None:
    for e in exits:
        assert e["exit_code"] == 0 and e["said_stopped"], e
        assert e["shm_left"] == [] and e["procs_left"] == [], e
        assert e["clean"] is True, e


def _ids_sound(checks: dict[str, Any]) -> None:
    """Every result id once; none missing between the first and the last but the jobs in flight at the
    stop (one a worker) and what lens reported it could not deliver; no error result, no restart."""
    assert checks["received"] > 0 and checks["duplicates"] == 0, checks
    assert checks["unique_ids"] == checks["received"], checks
    assert checks["missing_ids"] <= WORKERS + checks["bus_dropped"], checks
    assert checks["error_results"] == {} and checks["restarts"] == 0, checks


def test_every_contender_inspected_and_lens_agrees_with_opencv(result: dict[str, Any]) -> None:
    assert result["suite"] == "e2e" and result["quick"] is True and result["workers"] == WORKERS
    assert result["machine"]["cores"] == os.cpu_count() and result["machine"]["cpu"]
    rows = result["rows"]
    assert [(r["size"], r["contender"]) for r in rows] == [("640x480 gray", c) for c in CONTENDERS]
    for r in rows:
        assert r["inspected"] > 0 and r["per_s"] > 0, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
        assert len(r["quantiles_ms"]) == 101 and r["quantiles_ms"] == sorted(r["quantiles_ms"]), r
        assert r["cpu_pct"] > 0 and r["bench_cpu_pct"] >= 0, r
        assert r["peak_rss_mb"] > 0 and r["peak_pss_mb"] > 0, r
    single, queue, lens = rows
    assert single["dropped"] == {} and queue["dropped"] == {}  # lossless by construction
    assert single["opencv_variant"] and queue["opencv_variant"] and queue["opencv_threads"] == 1
    assert set(lens["dropped"]) == {*DROP_REASONS, "bus_dropped"} and lens["dropped"]["errors"] == 0
    assert lens["clean_exit"] is True
    _lens_clean(lens["exits"])
    for checks in lens["checks"]:
        _ids_sound(checks)
    same = lens["same_as_opencv"]
    assert same["checked"] > 0 and same["mismatches"] == []
    assert lens["worker_cpu_us_per_inspection"] > 0 and lens["cpu_pct_by_role"]["workers"] > 0
    assert set(lens["tool_avg_us"]) == {"brightness", "binarize", "parts", "edges", "cap"}

    (ratio,) = result["ratios"]
    assert ratio["lens_over_single"] == lens["per_s"] / single["per_s"]
    assert ratio["lens_over_queue"] == lens["per_s"] / queue["per_s"]


def test_rate_scaling_and_cost_per_megapixel(result: dict[str, Any]) -> None:
    rate = result["rate"]
    assert rate["inspected"] > 0 and 0 < rate["p50_ms"] <= rate["p99_ms"] <= rate["max_ms"]
    _lens_clean([rate["exit"]])
    _ids_sound(rate["checks"])
    assert rate["same_as_opencv"]["checked"] > 0 and rate["same_as_opencv"]["mismatches"] == []

    lens = next(r for r in result["rows"] if r["contender"] == "lens")
    points = [(s["axis"], s["n"], s["workers"], s["cameras"]) for s in result["scaling"]]
    assert points == [("workers", 1, 1, 1), ("workers", 2, 2, 1), ("cameras", 1, 2, 1), ("cameras", 2, 2, 2)]
    for s in result["scaling"]:
        assert s["per_s"] > 0 and s["clean_exit"] is True, s
        if (s["workers"], s["cameras"]) == (WORKERS, 1):
            assert s["per_s"] == lens["per_s"]  # the main row, not measured again

    (sweep,) = result["sweep"]
    assert sweep["size"] == "640x480 gray" and sweep["mp"] == 640 * 480 / 1e6
    assert sweep["worker_us_per_inspection"] == lens["worker_cpu_us_per_inspection"]
    assert sweep["worker_us_per_mp"] == sweep["worker_us_per_inspection"] / sweep["mp"]
    assert sweep["mp_per_s"] == lens["per_s"] * sweep["mp"]
    assert result["sweep_fit"] is None  # one size: nothing to fit


def test_folder_job_and_soak(result: dict[str, Any]) -> None:
    f = result["folder"]
    assert f["images"] == 50 and f["png_decode_ms"] > 0
    assert f["tools"] == ["grayscale", "blob", "math"]
    single, lens = f["rows"]
    assert (single["contender"], lens["contender"]) == ("single", "lens")
    assert single["inspected"] > 0 and lens["inspected"] > 0
    assert single["opencv_variant"] == "cv2.imread each time"
    _lens_clean(lens["exits"])
    for checks in lens["checks"]:
        _ids_sound(checks)
    assert f["ratio"] == lens["per_s"] / single["per_s"]

    s = result["soak"]
    assert s["seconds"] == SOAK_S and s["inspected_per_s"] > 0
    _lens_clean([s["exit"]])
    _ids_sound(s["checks"])
    series = s["series"]
    assert len(series["t"]) == len(series["total_rss_mb"]) == len(series["total_fds"]) >= SOAK_S - 1
    names = set(s["processes"])
    assert {"supervisor", "lens-dispatcher", "lens-worker-0", "lens-worker-1", "lens-control"} <= names
    for name, d in s["processes"].items():
        assert d["rss_first_mb"] > 0 and d["fds_first"] > 0 and math.isfinite(d["rss_growth_pct"]), name
    assert math.isfinite(s["rss_growth_pct"])


def test_targets_charts_json_and_table(result: dict[str, Any]) -> None:
    targets = result["targets"]
    # one size only (quick): the 1080p ratios are not measured
    assert set(targets) == set(TARGETS) - {"lens_over_single_1080p", "lens_over_queue_1080p"}
    assert targets["lens_640_per_s"]["measured"] == result["ratios"][0]["lens_per_s"]
    assert targets["p99_ms_at_100hz"]["measured"] == result["rate"]["p99_ms"]
    assert targets["folder_ratio"]["measured"] == result["folder"]["ratio"]
    assert targets["soak_rss_growth_pct"]["measured"] == result["soak"]["rss_growth_pct"]
    for name, t in targets.items():
        higher = TARGETS[name][1]
        assert t["target_met"] is (t["measured"] >= t["target"] if higher else t["measured"] < t["target"])

    charts = result["charts"]
    assert set(charts) == {"throughput", "latency", "scaling", "soak_rss"}
    for path in map(Path, charts.values()):
        assert path.stat().st_size > 0, path
        img = cv2.imread(str(path))
        assert img is not None and img.ndim == 3 and min(img.shape[:2]) > 100, path

    assert json.loads(json.dumps(result, allow_nan=False)) == result

    text = table(result)
    for contender in CONTENDERS:
        assert f"640x480 gray   {contender}" in text
    for part in ("lens/single", "scaling, lens", "pixels per frame", "folder job", "soak:", "targets:"):
        assert part in text, part


def test_soak_option_reaches_the_suite() -> None:
    args = build_parser().parse_args(["bench", "e2e", "--soak", "600", "--quick"])
    assert (args.suites, args.soak, args.quick) == (["e2e"], 600.0, True)
    assert build_parser().parse_args(["bench"]).soak is None
    assert run_bench(["transport"], soak=5.0) == 2  # no suite there takes a soak: refused before running
