"""Smoke test of the transport benchmark: every contender runs, delivers verified frames, and cleans up
(the autouse leak fixture checks processes, /dev/shm segments and zmq contexts). No timing asserts."""

from __future__ import annotations

from bench.transport import CONTENDERS, SIZES, run, table


def test_quick_run_measures_every_contender_without_errors() -> None:
    result = run(quick=True)

    assert result["suite"] == "transport"
    rows = {(r["size"], r["contender"]): r for r in result["rows"]}
    assert sorted(rows) == sorted((size, c) for size, _ in SIZES for c in CONTENDERS)
    for key, row in rows.items():
        assert row["errors"] == 0, key
        assert row["fps"] > 0, key
        assert 0 < row["lat_p50_us"] <= row["lat_p99_us"], key
        assert 0 < row["sat_lat_p50_us"] <= row["sat_lat_p99_us"], key
    assert [m["size"] for m in result["memcpy"]] == [size for size, _ in SIZES]
    assert all(m["cold_us"] > 0 and m["warm_us"] > 0 for m in result["memcpy"])
    assert [r["size"] for r in result["ratios"]] == [size for size, _ in SIZES]

    text = table(result)
    for contender in CONTENDERS:
        assert contender in text
    for size, _ in SIZES:
        assert size in text
