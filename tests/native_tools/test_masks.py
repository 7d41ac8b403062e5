"""Masks (circle/ellipse ROIs) in roi_stats and blob_stats, against NumPy and OpenCV references."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from native_tools import BlobScratch, blob_stats, roi_stats
from tests.native_tools.layouts import read_only, strided
from tests.native_tools.test_blob import blobby, by_position
from tests.native_tools.test_blob import reference as blob_reference


def stats_reference(img: np.ndarray, mask: np.ndarray) -> tuple[float, int, int, float]:
    sel = img[mask != 0]
    return float(sel.mean()), int(sel.min()), int(sel.max()), float(sel.std())


def assert_stats_match(img: np.ndarray, mask: np.ndarray, msg: str = "") -> None:
    got = roi_stats(img, mask)
    want = stats_reference(img, mask)
    assert type(got[0]) is float and type(got[1]) is int and type(got[2]) is int and type(got[3]) is float
    assert got[1:3] == want[1:3], msg
    assert got[0] == pytest.approx(want[0], rel=1e-9, abs=0), msg
    assert got[3] == pytest.approx(want[3], rel=1e-9, abs=1e-12), msg


def blobs_masked_reference(img: np.ndarray, lo: int, hi: int, mask: np.ndarray, **kw: object) -> np.ndarray:
    """OpenCV's components of (band & mask)."""
    binary = ((img >= lo) & (img <= hi) & (mask != 0)).astype(np.uint8)
    return blob_reference(binary, 1, 1, **kw)  # type: ignore[arg-type]


def assert_blobs_match(
    img: np.ndarray,
    lo: int,
    hi: int,
    mask: np.ndarray,
    msg: str = "",
    scratch: BlobScratch | None = None,
    **kw: object,
) -> None:
    got = blob_stats(img, lo, hi, mask=mask, scratch=scratch, **kw)  # type: ignore[arg-type]
    want = blobs_masked_reference(img, lo, hi, mask, **kw)
    assert got.shape == want.shape, f"{msg}: {len(got)} blobs, OpenCV finds {len(want)}"
    g, w = by_position(got), by_position(want)
    np.testing.assert_array_equal(g[:, :5], w[:, :5], err_msg=msg)
    np.testing.assert_allclose(g[:, 5:], w[:, 5:], rtol=1e-9, atol=1e-9, err_msg=msg)


def disk(h: int, w: int, cx: int, cy: int, r: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (cx, cy), r, 255, thickness=-1)
    return m


def ellipse(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (w // 2, h // 3), 30, 0, 360, 255, thickness=-1)
    return m


@pytest.fixture
def frame() -> np.ndarray:
    return blobby(np.random.default_rng(21), 70, 110)


# ---- roi_stats ---------------------------------------------------------------------------------


def test_stats_full_mask_equals_unmasked(frame: np.ndarray) -> None:
    full = np.full(frame.shape, 255, np.uint8)
    assert roi_stats(frame, full) == roi_stats(frame)
    assert roi_stats(frame, np.ones(frame.shape, bool)) == roi_stats(frame)


def test_stats_one_pixel_mask(frame: np.ndarray) -> None:
    for y, x in [(0, 0), (69, 109), (33, 50)]:
        m = np.zeros(frame.shape, np.uint8)
        m[y, x] = 1
        v = int(frame[y, x])
        assert roi_stats(frame, m) == (float(v), v, v, 0.0)


def test_stats_all_zero_mask_rejected(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="mask selects no pixel"):
        roi_stats(frame, np.zeros(frame.shape, np.uint8))


def test_stats_mask_hides_extremes() -> None:
    img = np.full((9, 9), 100, np.uint8)
    img[0, 0], img[8, 8] = 0, 255  # outside the disk: neither min nor max
    img[4, 4] = 120
    m = disk(9, 9, 4, 4, 3)
    mean, lo, hi, _ = roi_stats(img, m)
    assert (lo, hi) == (100, 120)
    assert mean == pytest.approx(100 + 20 / np.count_nonzero(m), rel=1e-12)
    assert_stats_match(img, m)


@pytest.mark.parametrize("value", [0, 255])
def test_stats_edge_frames(value: int) -> None:
    img = np.full((13, 17), value, np.uint8)
    assert roi_stats(img, ellipse(13, 17)) == (float(value), value, value, 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_stats_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 90, 2))
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    m = (rng.random((h, w)) < rng.random()).astype(np.uint8) * rng.integers(1, 256, dtype=np.uint8)
    m[rng.integers(h), rng.integers(w)] = 1  # never empty
    assert_stats_match(img, m, f"seed={seed} shape={(h, w)}")


def test_stats_long_rows() -> None:
    # more than one 65536-pixel accumulator chunk per row, all selected pixels saturated
    img = np.full((2, 70_000), 255, np.uint8)
    m = np.ones(img.shape, np.uint8)
    m[1, -1] = 0
    img[1, -1] = 0  # outside: not the min
    assert roi_stats(img, m) == (255.0, 255, 255, 0.0)


LAYOUTS: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
    ("c", lambda a: a),
    ("strided", strided),
    ("read-only", read_only),
    ("read-only-strided", lambda a: read_only(strided(a))),
    ("transposed-back", lambda a: np.ascontiguousarray(a.T).T),  # Fortran order, same pixels
]


@pytest.mark.parametrize("img_layout", LAYOUTS, ids=[n for n, _ in LAYOUTS])
@pytest.mark.parametrize("mask_layout", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_layouts(
    frame: np.ndarray,
    img_layout: tuple[str, Callable[[np.ndarray], np.ndarray]],
    mask_layout: tuple[str, Callable[[np.ndarray], np.ndarray]],
) -> None:
    m = ellipse(*frame.shape)
    img, mask = img_layout[1](frame), mask_layout[1](m)
    msg = f"img {img_layout[0]}, mask {mask_layout[0]}"
    assert roi_stats(img, mask) == roi_stats(frame, m), msg
    np.testing.assert_array_equal(
        blob_stats(img, 128, 255, mask=mask), blob_stats(frame, 128, 255, mask=m), msg
    )
    assert_stats_match(img, mask, msg)
    assert_blobs_match(img, 128, 255, mask, msg)


def test_roi_views_with_cached_masks(frame: np.ndarray) -> None:
    # as lens/inspect/roi.py: a read-only C-contiguous mask of the ROI's bbox, over a frame view
    for y0, y1, x0, x1 in [(0, 40, 0, 60), (30, 70, 50, 110), (5, 65, 3, 107)]:
        view = read_only(frame)[y0:y1, x0:x1]
        m = read_only(disk(y1 - y0, x1 - x0, (x1 - x0) // 2, (y1 - y0) // 2, min(y1 - y0, x1 - x0) // 2))
        assert_stats_match(view, m, f"view {(y0, y1, x0, x1)}")
        assert_blobs_match(view, 128, 255, m, f"view {(y0, y1, x0, x1)}", offset=(x0, y0))


# ---- blob_stats --------------------------------------------------------------------------------


def test_blobs_full_mask_equals_unmasked(frame: np.ndarray) -> None:
    full = np.full(frame.shape, 1, np.uint8)
    np.testing.assert_array_equal(blob_stats(frame, 128, 255, mask=full), blob_stats(frame, 128, 255))


def test_blobs_all_zero_mask_finds_nothing(frame: np.ndarray) -> None:
    assert blob_stats(frame, 0, 255, mask=np.zeros(frame.shape, np.uint8)).shape == (0, 7)


def test_mask_cuts_a_blob_in_two() -> None:
    img = np.full((5, 20), 200, np.uint8)
    m = np.ones(img.shape, np.uint8)
    m[:, 9:11] = 0  # a 2-pixel wide cut: not even diagonals join across it
    np.testing.assert_array_equal(
        blob_stats(img, 100, 255, mask=m), [[45, 0, 0, 9, 5, 4, 2], [45, 11, 0, 9, 5, 15, 2]]
    )
    m[:, 10] = 1  # a 1-pixel cut: diagonal neighbours do not bridge a full column
    assert len(blob_stats(img, 100, 255, mask=m)) == 2
    m[2, 9] = 1  # one pixel bridges it
    assert len(blob_stats(img, 100, 255, mask=m)) == 1


@pytest.mark.parametrize("value", [0, 255])
def test_blobs_saturated_and_zero_frames(value: int) -> None:
    img = np.full((31, 45), value, np.uint8)
    m = disk(31, 45, 22, 15, 12)
    assert_blobs_match(img, value, value, m)
    out = blob_stats(img, value, value, mask=m)
    assert out.shape == (1, 7) and out[0, 0] == np.count_nonzero(m)
    assert blob_stats(img, 1, 254, mask=m).shape == (0, 7)


def test_blobs_single_pixel() -> None:
    img = np.full((1, 1), 9, np.uint8)
    np.testing.assert_array_equal(
        blob_stats(img, 9, 9, mask=np.ones((1, 1), np.uint8)), [[1, 0, 0, 1, 1, 0, 0]]
    )
    assert blob_stats(img, 9, 9, mask=np.zeros((1, 1), np.uint8)).shape == (0, 7)


@pytest.mark.parametrize("seed", range(6))
def test_blobs_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 200, 2))
    lo = int(rng.integers(0, 256))
    hi = int(rng.integers(lo, 256))
    img = blobby(rng, h, w)
    masks = {
        "ellipse": ellipse(h, w),
        "noise": (rng.random((h, w)) < 0.7).astype(np.uint8),
        "blocky": (blobby(rng, h, w) > 100).astype(np.uint8),  # edges across 64-pixel blocks
    }
    for name, m in masks.items():
        msg = f"seed={seed} shape={(h, w)} band={lo}..{hi} mask={name}"
        assert_blobs_match(img, lo, hi, m, msg)
        assert_blobs_match(img, 0, 255, m, msg + " full band")


def test_blobs_area_filter_and_offset_with_mask(frame: np.ndarray) -> None:
    m = ellipse(*frame.shape)
    scratch = BlobScratch()
    assert_blobs_match(
        frame, 100, 200, m, "seed=21", area_min=5, area_max=400, offset=(10, 20.5), scratch=scratch
    )


# ---- bad input ---------------------------------------------------------------------------------

BAD_MASKS = [
    (np.zeros((4, 5), np.uint8), r"mask of the image's shape \(4, 4\), got shape \(4, 5\)"),
    (np.zeros((4, 4), np.float32), r"mask to be None or a 2-D uint8 array, got float32 with shape \(4, 4\)"),
    (np.zeros((4, 4), np.int64), r"mask to be None or a 2-D uint8 array, got int64"),
    (
        np.zeros((4, 4, 1), np.uint8),
        r"mask to be None or a 2-D uint8 array, got uint8 with shape \(4, 4, 1\)",
    ),
    ([[1] * 4] * 4, r"mask to be None or a 2-D uint8 array, got list"),
]


@pytest.mark.parametrize("mask, match", BAD_MASKS)
def test_rejects_bad_masks(mask: object, match: str) -> None:
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="roi_stats needs " + match):
        roi_stats(img, mask)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="blob_stats needs " + match):
        blob_stats(img, 0, 255, mask=mask)  # type: ignore[arg-type]
