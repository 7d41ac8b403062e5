"""motion_area against a NumPy reference: block means (rounded), changed blocks, state update."""

from __future__ import annotations

import numpy as np
import pytest

from native_tools import motion_area, motion_state

SEED = 20261121


def small(x: np.ndarray, f: int) -> np.ndarray:
    h, w = x.shape[0] // f, x.shape[1] // f
    blocks = x[: h * f, : w * f].reshape(h, f, w, f).astype(np.int64).sum(axis=(1, 3))
    return (blocks + (f * f) // 2) // (f * f)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(480, 640), (37, 53), (8, 8)])
def test_matches_the_reference_and_keeps_the_new_frame(factor: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = a.copy()
    b[1:7, 2:6] = 255 - b[1:7, 2:6]
    if shape[0] < factor or shape[1] < factor:
        pytest.skip("frame smaller than one block")
    prev = motion_state(a.shape, factor)
    motion_area(a, prev, factor, 25)
    expect = int((np.abs(small(b, factor) - small(a, factor)) > 25).sum()) * factor * factor
    assert motion_area(b, prev, factor, 25) == expect, f"seed {SEED}"
    assert np.array_equal(prev, small(b, factor).astype(np.uint8))
    assert motion_area(b, prev, factor, 25) == 0  # nothing changed since


def test_strided_read_only_views() -> None:
    rng = np.random.default_rng(SEED)
    big = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    view = big[10:170, 20:260]
    view.flags.writeable = False
    prev = motion_state(view.shape, 4)
    motion_area(np.zeros((160, 240), np.uint8), prev, 4, 10)
    assert motion_area(view, prev, 4, 10) == int((small(view, 4) > 10).sum()) * 16


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="needs a 2-D uint8 image"):
        motion_area(np.zeros((8, 8), np.float32), motion_state((8, 8), 2), 2, 5)
    with pytest.raises(ValueError, match="needs prev from motion_state"):
        motion_area(np.zeros((8, 8), np.uint8), np.zeros((3, 3), np.uint8), 2, 5)
    with pytest.raises(ValueError, match="at least factor x factor"):
        motion_state((3, 3), 4)
