"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _opencv_pool_started() -> Iterator[None]:
    # OpenCV starts its worker threads on its first parallel call and keeps them for the life of
    # the process; start them here, outside any test, so the leak check does not count them.
    cv2.connectedComponentsWithStats(np.ones((256, 256), np.uint8), connectivity=8, ltype=cv2.CV_32S)
    yield
