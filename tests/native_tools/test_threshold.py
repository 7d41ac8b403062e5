"""band_threshold against cv2.inRange + cv2.countNonZero; otsu_level against cv2.threshold(OTSU)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from native_tools import band_threshold, otsu_level
from tests.native_tools.layouts import read_only, strided


def band_reference(src: np.ndarray, lo: int, hi: int, mask: np.ndarray | None = None) -> np.ndarray:
    out = cv2.inRange(np.ascontiguousarray(src), lo, hi)
    if mask is not None:
        out[np.ascontiguousarray(mask) == 0] = 0
    return out


def assert_band_matches(
    src: np.ndarray,
    lo: int,
    hi: int,
    mask: np.ndarray | None = None,
    dst: np.ndarray | None = None,
    msg: str = "",
) -> int:
    if dst is None:
        dst = np.full(src.shape, 7, np.uint8)  # neither 0 nor 255: every pixel must be written
    n = band_threshold(src, lo, hi, dst, mask)
    want = band_reference(src, lo, hi, mask)
    assert type(n) is int
    np.testing.assert_array_equal(dst, want, err_msg=f"{msg} band={lo}..{hi}")
    assert n == cv2.countNonZero(want), f"{msg} band={lo}..{hi}"
    return n


def otsu_reference(src: np.ndarray) -> int:
    level, _ = cv2.threshold(np.ascontiguousarray(src), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return int(level)


def otsu_masked_reference(src: np.ndarray, mask: np.ndarray) -> int:
    src, mask = np.ascontiguousarray(src), np.ascontiguousarray(mask)
    level, _ = cv2.thresholdWithMask(
        src, np.zeros_like(src), mask, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU
    )
    # the same as Otsu on the selected pixels alone
    assert level == otsu_reference(src[mask != 0].reshape(1, -1))
    return int(level)


def bimodal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    dark = rng.normal(rng.uniform(20, 100), rng.uniform(3, 25), (h, w))
    bright = rng.normal(rng.uniform(120, 230), rng.uniform(3, 25), (h, w))
    return np.where(rng.random((h, w)) < rng.uniform(0.1, 0.9), dark, bright).clip(0, 255).astype(np.uint8)


# ---- band_threshold ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 254, 255])
def test_band_edge_frames(value: int) -> None:
    for shape in [(1, 1), (1, 9), (9, 1), (37, 53)]:
        img = np.full(shape, value, np.uint8)
        for lo, hi in [(0, 255), (0, 0), (255, 255), (1, 254), (value, value)]:
            assert_band_matches(img, lo, hi, msg=f"value={value} shape={shape}")


def test_band_bounds_inclusive() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for lo, hi in [(0, 0), (0, 255), (99, 101), (100, 100), (200, 255), (254, 255)]:
        assert assert_band_matches(img, lo, hi) == hi - lo + 1


@pytest.mark.parametrize("seed", range(6))
def test_band_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 150, 2))
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    lo = int(rng.integers(0, 256))
    hi = int(rng.integers(lo, 256))
    m = (rng.random((h, w)) < 0.6).astype(np.uint8) * 255
    msg = f"seed={seed} shape={(h, w)}"
    assert_band_matches(img, lo, hi, msg=msg)
    assert_band_matches(img, lo, hi, m, msg=msg + " masked")
    assert assert_band_matches(img, lo, hi, np.zeros_like(m), msg=msg + " empty mask") == 0
    assert_band_matches(img, lo, hi, m.astype(bool), msg=msg + " bool mask")


LAYOUTS: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
    ("c", lambda a: a),
    ("strided", strided),
    ("read-only-strided", lambda a: read_only(strided(a))),
    ("step", lambda a: np.repeat(np.repeat(a, 2, 0), 3, 1)[::2, ::3]),
    ("fortran", lambda a: np.asfortranarray(a)),
]


@pytest.mark.parametrize("src_layout", LAYOUTS, ids=[n for n, _ in LAYOUTS])
@pytest.mark.parametrize("dst_layout", ["c", "roi-of-scratch", "fortran"])
def test_band_layouts(src_layout: tuple[str, Callable[[np.ndarray], np.ndarray]], dst_layout: str) -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (23, 41), dtype=np.uint8)
    m = np.zeros(img.shape, np.uint8)
    cv2.circle(m, (20, 11), 10, 255, thickness=-1)
    scratch = np.full((40, 60), 7, np.uint8)
    for mask in (None, m, read_only(strided(m)), np.asfortranarray(m)):
        scratch[...] = 7
        dst = {
            "c": np.full(img.shape, 7, np.uint8),
            "roi-of-scratch": scratch[5:28, 11:52],
            "fortran": np.asfortranarray(np.full(img.shape, 7, np.uint8)),
        }[dst_layout]
        msg = f"seed=4 src={src_layout[0]} dst={dst_layout} masked={mask is not None}"
        assert_band_matches(src_layout[1](img), 90, 180, mask, dst, msg)
        if dst_layout == "roi-of-scratch":  # nothing outside the view was written
            assert (scratch[:5] == 7).all() and (scratch[28:] == 7).all(), msg
            assert (scratch[:, :11] == 7).all() and (scratch[:, 52:] == 7).all(), msg


def test_band_in_place() -> None:
    img = np.random.default_rng(8).integers(0, 256, (20, 30), dtype=np.uint8)
    want = band_reference(img, 50, 150)
    buf = img.copy()
    assert band_threshold(buf, 50, 150, buf) == cv2.countNonZero(want)
    np.testing.assert_array_equal(buf, want)
    buf = img.copy()
    band_threshold(buf[2:, 3:], 50, 150, buf[2:, 3:])  # another view object of the same pixels
    np.testing.assert_array_equal(buf[2:, 3:], want[2:, 3:])


def test_band_rejects_bad_input() -> None:
    img = np.zeros((4, 4), np.uint8)
    dst = np.zeros((4, 4), np.uint8)
    cases: list[tuple[tuple[object, ...], str]] = [
        (
            (img.astype(np.int16), 0, 9, dst),
            r"band_threshold needs a 2-D uint8 src image, got int16 with shape",
        ),
        (
            (img[None], 0, 9, dst),
            r"band_threshold needs a 2-D uint8 src image, got uint8 with shape \(1, 4, 4\)",
        ),
        ((img, 10, 9, dst), r"band_threshold needs 0 <= lo <= hi <= 255, got lo=10, hi=9"),
        ((img, -1, 9, dst), r"0 <= lo <= hi <= 255, got lo=-1, hi=9"),
        ((img, 0, 256, dst), r"0 <= lo <= hi <= 255, got lo=0, hi=256"),
        ((img, 0, 9, dst[:3]), r"dst to be uint8 of src's shape \(4, 4\), got uint8 with shape \(3, 4\)"),
        ((img, 0, 9, dst.astype(np.float32)), r"dst to be uint8 of src's shape \(4, 4\), got float32"),
        ((img, 0, 9, None), r"dst to be uint8 of src's shape \(4, 4\), got NoneType"),
        ((img, 0, 9, read_only(dst)), r"band_threshold needs a writable dst, got a read-only array"),
        (
            (img, 0, 9, dst, np.zeros((4, 5), np.uint8)),
            r"mask of the image's shape \(4, 4\), got shape \(4, 5\)",
        ),
        (
            (img, 0, 9, dst, np.zeros((4, 4), np.float64)),
            r"mask to be None or a 2-D uint8 array, got float64",
        ),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            band_threshold(*args)  # type: ignore[arg-type]
    big = np.zeros((8, 5), np.uint8)
    with pytest.raises(ValueError, match=r"dst not to overlap src \(other than being it\)"):
        band_threshold(big[:4, :4], 0, 9, big[1:5, 1:])
    with pytest.raises(ValueError, match=r"dst not to overlap mask"):
        band_threshold(img, 0, 9, big[:4, :4], big[1:5, 1:])
    band_threshold(big[::2], 0, 9, big[1::2])  # interleaved rows: no pixel shared, allowed


# ---- otsu_level --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((5, 7), np.uint8),
        np.full((5, 7), 255, np.uint8),
        np.full((5, 7), 99, np.uint8),
        np.full((1, 1), 0, np.uint8),
        np.full((1, 1), 200, np.uint8),
        np.array([[10, 200]], np.uint8),
        np.array([[0], [255]], np.uint8),
        np.array([[0, 0, 0, 255]], np.uint8),
        np.array([[1, 2]], np.uint8),
        np.arange(256, dtype=np.uint8).reshape(16, 16),
    ],
    ids=["zero", "saturated", "constant", "pixel-0", "pixel-200", "two", "column", "3-1", "adjacent", "ramp"],
)
def test_otsu_edge_frames(img: np.ndarray) -> None:
    assert otsu_level(img) == otsu_reference(img)
    assert type(otsu_level(img)) is int


@pytest.mark.parametrize("seed", range(40))
def test_otsu_random(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 160, 2))
    lo = int(rng.integers(0, 256))
    for kind, img in [
        ("uniform", rng.integers(0, 256, (h, w), dtype=np.uint8)),
        ("bimodal", bimodal(rng, h, w)),
        ("narrow", rng.integers(lo, min(lo + 3, 255) + 1, (h, w), dtype=np.uint8)),
    ]:
        assert otsu_level(img) == otsu_reference(img), f"seed={seed} {kind} shape={(h, w)}"


def test_otsu_frame_sizes() -> None:
    rng = np.random.default_rng(12)
    for shape in [(480, 640), (1080, 1920)]:
        img = bimodal(rng, *shape)
        assert otsu_level(img) == otsu_reference(img), f"seed=12 shape={shape}"


@pytest.mark.parametrize(
    "make",
    [
        strided,
        read_only,
        lambda a: a[::2, ::3],
        lambda a: a[::-1],
        lambda a: a.T,
        lambda a: read_only(a)[3:30, 5:9],
    ],
    ids=["strided", "read-only", "step", "reversed", "transposed", "read-only-roi"],
)
def test_otsu_views(make: Callable[[np.ndarray], np.ndarray]) -> None:
    img = bimodal(np.random.default_rng(5), 60, 80)
    view = make(img)
    assert otsu_level(view) == otsu_reference(view), f"seed=5 shape={view.shape} strides={view.strides}"


@pytest.mark.parametrize("seed", range(12))
def test_otsu_masked(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(2, 120, 2))
    img = bimodal(rng, h, w)
    disk = np.zeros((h, w), np.uint8)
    cv2.circle(disk, (w // 2, h // 2), max(1, min(h, w) // 3), 255, thickness=-1)
    noise = (rng.random((h, w)) < 0.4).astype(np.uint8)
    noise[0, 0] = 1
    for name, m in [("disk", disk), ("noise", noise)]:
        want = otsu_masked_reference(img, m)
        msg = f"seed={seed} mask={name} shape={(h, w)}"
        assert otsu_level(img, m) == want, msg
        assert otsu_level(strided(img), read_only(m)) == want, msg + " strided, read-only"
        assert otsu_level(img.T, np.ascontiguousarray(m.T)) == want, msg + " transposed"
        assert otsu_level(np.asfortranarray(img), m.astype(bool)) == want, msg + " fortran, bool"
    full = np.ones((h, w), np.uint8)
    assert otsu_level(img, full) == otsu_level(img) == otsu_reference(img), f"seed={seed}"


def test_otsu_mask_selects_one_level() -> None:
    img = np.array([[0, 255, 0, 255]], np.uint8)
    assert otsu_level(img) == otsu_reference(img) == 0
    assert otsu_level(img, np.array([[0, 1, 0, 1]], np.uint8)) == 0  # one class only, as OpenCV


def test_otsu_rejects_bad_input() -> None:
    img = np.zeros((4, 4), np.uint8)
    cases: list[tuple[tuple[object, ...], str]] = [
        (
            (img.astype(np.float32),),
            r"otsu_level needs a 2-D uint8 src image, got float32 with shape \(4, 4\)",
        ),
        ((img.ravel(),), r"otsu_level needs a 2-D uint8 src image, got uint8 with shape \(16,\)"),
        ((np.zeros((0, 3), np.uint8),), r"otsu_level needs a non-empty image, got shape \(0, 3\)"),
        ((img, np.zeros((4, 4), np.uint8)), r"^mask selects no pixel$"),
        ((img, np.zeros((3, 4), np.uint8)), r"mask of the image's shape \(4, 4\), got shape \(3, 4\)"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            otsu_level(*args)  # type: ignore[arg-type]
