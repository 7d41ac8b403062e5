"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _numba_started() -> Iterator[None]:
    # numba's first compile (or cache load) in a process imports SciPy when it is installed, whose
    # OpenBLAS starts a worker thread that lives as long as the process; start it here, outside any
    # test, so the leak check does not count it. (OpenCV's pool: tests/conftest.py.)
    from native_tools import roi_stats

    roi_stats(np.zeros((1, 1), np.uint8))
    yield
