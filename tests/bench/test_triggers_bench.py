"""Smoke test of the triggers benchmark: a real engine answers serial triggers written to a real
pseudo-terminal at every rate, and is torn down without leaks (the autouse fixture checks child
processes, /dev/shm segments, sockets and zmq contexts). No timing or ratio asserts."""

from __future__ import annotations

import pytest

from bench.triggers import RATES, run, table


@pytest.mark.timeout(60)
def test_quick_run_answers_triggers_at_every_rate() -> None:
    result = run(quick=True)

    assert result["suite"] == "triggers"
    rows = {r["rate"]: r for r in result["rows"]}
    assert sorted(rows) == sorted(RATES)
    slow = rows[min(RATES)]
    assert slow["sent"] > 0 and slow["answered"] == slow["sent"] and slow["unanswered"] == 0
    for rate, row in rows.items():
        assert row["sent"] > 0 and row["answered"] + row["unanswered"] == row["sent"], rate
        for part in ("bus_ms", "engine_ms", "serial_ms"):
            assert all(row[part][k] > 0 for k in ("p50", "p99", "max")), (rate, part, row[part])
    assert result["duplicates"] == 0 and result["unexpected"] == 0

    text = table(result)
    for rate in RATES:
        assert f"\n{rate:>7d}" in text
