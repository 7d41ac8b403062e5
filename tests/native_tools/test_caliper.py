"""profile against a NumPy bilinear sampler and cv2.remap; find_edges against a NumPy reference."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from native_tools import find_edges, profile, profile_length
from tests.native_tools.layouts import read_only, strided

# ---- profile -----------------------------------------------------------------------------------


def points(x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    n = round(math.hypot(x1 - x0, y1 - y0)) + 1
    return np.linspace(x0, x1, n), np.linspace(y0, y1, n)


def profile_reference(img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Slow and plain: bilinear in float64, with BORDER_REPLICATE as an explicitly padded image."""
    h, w = img.shape
    pad = 2 + int(max(abs(x0), abs(x1), abs(y0), abs(y1), h, w))
    big = np.pad(img.astype(np.float64), pad, mode="edge")
    out = []
    for x, y in zip(*points(x0, y0, x1, y1), strict=True):
        x, y = x + pad, y + pad
        xi, yi = math.floor(x), math.floor(y)
        fx, fy = x - xi, y - yi
        top = (1 - fx) * big[yi, xi] + fx * big[yi, xi + 1]
        bottom = (1 - fx) * big[yi + 1, xi] + fx * big[yi + 1, xi + 1]
        out.append((1 - fy) * top + fy * bottom)
    return np.array(out)


def assert_profile_matches(
    img: np.ndarray, line: tuple[float, float, float, float], msg: str = ""
) -> np.ndarray:
    got = profile(img, *line)
    want = profile_reference(img, *line)
    assert got.dtype == np.float32 and got.shape == (profile_length(*line),), msg
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3, err_msg=f"{msg} line={line}")
    return got


LINES = [
    (0, 0, 79, 0),  # the top row
    (0, 59, 79, 59),  # the bottom row
    (79, 5, 0, 5),  # right to left
    (3, 0, 3, 59),  # a column
    (0, 0, 79, 59),  # the diagonal
    (10.3, 20.7, 50.1, 5.2),  # sub-pixel ends
    (-5, -3, 90, 70),  # beyond every border: clamped (replicated)
    (-10, 30, -2, 31),  # wholly outside, left
    (78.6, 58.6, 79.4, 59.4),  # across the last pixel centre
    (12.5, 12.5, 12.5, 12.5),  # zero length: one sample
    (5, 5, 5.3, 5.1),  # shorter than half a pixel: one sample
]


@pytest.mark.parametrize("line", LINES)
def test_profile_lines(line: tuple[float, float, float, float]) -> None:
    img = np.random.default_rng(1).integers(0, 256, (60, 80), dtype=np.uint8)
    assert_profile_matches(img, line, "seed=1")


def test_profile_samples_pixel_centres() -> None:
    img = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    np.testing.assert_array_equal(profile(img, 0, 2, 9, 2), img[2].astype(np.float32))
    np.testing.assert_array_equal(profile(img, 4, 0, 4, 5), img[:, 4].astype(np.float32))
    np.testing.assert_array_equal(profile(img, 9, 5, 0, 5), img[5, ::-1].astype(np.float32))
    assert profile(img, 0.5, 2, 0.5, 2)[0] == (img[2, 0] + img[2, 1]) / 2
    assert profile(img, -3, -3, -3, -3)[0] == img[0, 0]
    assert profile(img, 50, 50, 50, 50)[0] == img[5, 9]


@pytest.mark.parametrize("value", [0, 255])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (37, 53)])
def test_profile_edge_frames(value: int, shape: tuple[int, int]) -> None:
    img = np.full(shape, value, np.uint8)
    for line in [(0, 0, 5, 3), (-2, -2, 60, 40), (0.5, 0.5, 0.5, 0.5)]:
        np.testing.assert_array_equal(assert_profile_matches(img, line), value)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5)])
def test_profile_tiny_images(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    for line in [(0, 0, 6, 0), (0, 0, 0, 6), (-1, -1, 7.5, 7.5), (0.25, 0.75, 3.3, 1.1)]:
        assert_profile_matches(img, line, f"seed=2 shape={shape}")


@pytest.mark.parametrize(
    "make",
    [
        strided,
        read_only,
        lambda a: read_only(strided(a)),
        lambda a: a[::2, ::3],
        lambda a: a[::-1],
        lambda a: a.T,
    ],
    ids=["strided", "read-only", "read-only-strided", "step", "reversed", "transposed"],
)
def test_profile_views(make: Callable[[np.ndarray], np.ndarray]) -> None:
    img = np.random.default_rng(3).integers(0, 256, (60, 80), dtype=np.uint8)
    view = make(img)
    for line in [(0, 0, 40, 25), (-3, 7.5, 33.2, 19.9), (5, 50, 25, 2)]:
        got = assert_profile_matches(view, line, f"seed=3 shape={view.shape} strides={view.strides}")
        np.testing.assert_array_equal(got, profile(np.ascontiguousarray(view), *line))


@pytest.mark.parametrize("seed", range(4))
def test_profile_against_remap(seed: int) -> None:
    # OpenCV's bilinear weights are fixed point (1/32 pixel) and its uint8 output is rounded: within 1
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160), dtype=np.uint8), (0, 0), 3.0)
    x0, x1 = rng.uniform(-10, 170, 2)
    y0, y1 = rng.uniform(-10, 130, 2)
    xs, ys = points(x0, y0, x1, y1)
    mx, my = xs.astype(np.float32)[None], ys.astype(np.float32)[None]
    want = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
    got = profile(img, x0, y0, x1, y1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1.0, err_msg=f"seed={seed}")


def test_profile_into_out() -> None:
    img = np.random.default_rng(4).integers(0, 256, (30, 40), dtype=np.uint8)
    n = profile_length(1, 2, 30.5, 20)
    assert n == round(math.hypot(29.5, 18)) + 1
    out = np.full(n, -1, np.float32)
    assert profile(img, 1, 2, 30.5, 20, out=out) is out
    np.testing.assert_array_equal(out, profile(img, 1, 2, 30.5, 20))


def test_profile_rejects_bad_input() -> None:
    img = np.zeros((4, 4), np.uint8)
    n = profile_length(0, 0, 3, 0)
    cases: list[tuple[tuple[object, ...], dict[str, object], str]] = [
        (
            (img.astype(np.float32), 0, 0, 3, 0),
            {},
            r"profile needs a 2-D uint8 image, got float32 with shape",
        ),
        (
            (np.zeros((0, 4), np.uint8), 0, 0, 3, 0),
            {},
            r"profile needs a non-empty image, got shape \(0, 4\)",
        ),
        ((img, 0, math.nan, 3, 0), {}, r"profile needs finite coordinates, got \(0, nan\) -> \(3, 0\)"),
        ((img, 0, 0, math.inf, 0), {}, r"profile needs finite coordinates"),
        (
            (img, 0, 0, 3, 0),
            {"out": np.zeros(n + 1, np.float32)},
            rf"float32 array of shape \({n},\), got float32",
        ),
        ((img, 0, 0, 3, 0), {"out": np.zeros(n, np.float64)}, r"float32 array of shape \(4,\), got float64"),
        (
            (img, 0, 0, 3, 0),
            {"out": np.zeros(2 * n, np.float32)[::2]},
            r"writable C-contiguous float32 array",
        ),
        (
            (img, 0, 0, 3, 0),
            {"out": read_only(np.zeros(n, np.float32))},
            r"writable C-contiguous float32 array",
        ),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            profile(*args, **kwargs)  # type: ignore[arg-type]


# ---- find_edges --------------------------------------------------------------------------------


def edges_reference(prof: np.ndarray, sigma: float, threshold: float, polarity: str) -> np.ndarray:
    """Plain NumPy smoothing and np.gradient, then a scan over runs of equal derivative values."""
    p = np.asarray(prof, np.float64)
    r = math.ceil(3 * sigma) if sigma > 0 else 0
    g = np.array([math.exp(-0.5 * (k / sigma) ** 2) if r else 1.0 for k in range(-r, r + 1)])
    g /= sum(g)  # summed in order, as the kernel does
    padded = np.pad(p, r, mode="edge")
    s = np.zeros(len(p))
    for k in range(2 * r + 1):
        s = s + g[k] * padded[k : k + len(p)]
    d = np.gradient(s) if len(p) > 1 else np.zeros(1)
    rows = []
    i = 1
    for v, run in itertools.groupby(range(1, len(d) - 1), key=lambda j: d[j]):
        run = list(run)
        i, j = run[0], run[-1]
        left, right = d[i - 1], d[j + 1]
        is_max = v > 0 and v > left and v > right and polarity in ("rising", "any")
        is_min = v < 0 and v < left and v < right and polarity in ("falling", "any")
        if (is_max or is_min) and abs(v) >= threshold:
            pos = i + 0.5 * (left - right) / (left - 2 * v + right) if i == j else (i + j) / 2
            rows.append((pos, v))
    return np.array(rows, np.float64).reshape(-1, 2)


def assert_edges_match(
    prof: np.ndarray, sigma: float, threshold: float, polarity: str, msg: str = ""
) -> np.ndarray:
    got = find_edges(prof, sigma, threshold, polarity)
    want = edges_reference(prof, sigma, threshold, polarity)
    assert got.dtype == np.float64 and got.ndim == 2 and got.shape[1] == 2, msg
    assert got.shape == want.shape, f"{msg}: {len(got)} edges, reference {len(want)}"
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=msg)
    return got


def step(n: int, at: float, lo: float = 20.0, hi: float = 220.0) -> np.ndarray:
    """An ideal step at `at` (between samples), as a camera sees it: each sample averages its pixel."""
    x = np.arange(n, dtype=np.float64)
    cover = np.clip(x + 0.5 - at, 0.0, 1.0)  # the fraction of pixel [x - 0.5, x + 0.5] right of the step
    return lo + (hi - lo) * cover


@pytest.mark.parametrize("at", [40.0, 40.25, 40.5, 40.8, 41.1])
@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.5])
def test_step_found_at_its_subpixel_position(at: float, sigma: float) -> None:
    prof = step(90, at)
    rising = assert_edges_match(prof, sigma, 10, "rising")
    assert rising.shape == (1, 2)
    assert abs(rising[0, 0] - at) < 0.1, f"sigma={sigma}: found {rising[0, 0]}, step at {at}"
    assert rising[0, 1] > 10
    falling = assert_edges_match(prof[::-1], sigma, 10, "falling")  # the same step, walked backwards
    assert falling.shape == (1, 2)
    assert abs(falling[0, 0] - (89 - at)) < 0.1 and falling[0, 1] == pytest.approx(-rising[0, 1])


def test_step_in_an_image_through_profile() -> None:
    img = np.tile(step(80, 37.3).astype(np.uint8), (30, 1))  # a vertical edge at x = 37.3
    prof = profile(img, 5, 12.5, 70, 12.5)  # one sample per pixel from x = 5
    edges = find_edges(prof, 1.0, 20, "rising")
    assert edges.shape == (1, 2) and abs(edges[0, 0] + 5 - 37.3) < 0.1
    assert find_edges(prof, 1.0, 20, "falling").shape == (0, 2)


def test_polarity_and_two_edges() -> None:
    prof = step(100, 30.4) - step(100, 70.7) + 20  # a bright bar from 30.4 to 70.7
    rising = assert_edges_match(prof, 1.0, 5, "rising")
    falling = assert_edges_match(prof, 1.0, 5, "falling")
    both = assert_edges_match(prof, 1.0, 5, "any")
    assert rising.shape == falling.shape == (1, 2) and both.shape == (2, 2)
    np.testing.assert_array_equal(both, np.vstack([rising, falling]))  # in order of position
    assert abs(rising[0, 0] - 30.4) < 0.1 and rising[0, 1] > 0
    assert abs(falling[0, 0] - 70.7) < 0.1 and falling[0, 1] < 0


@pytest.mark.parametrize("sigma", [0.0, 2.0])
def test_flat_profile_has_no_edge(sigma: float) -> None:
    for prof in [np.full(50, 128.0), np.zeros(3), np.full(1, 9.0), np.full(2, 255.0)]:
        for polarity in ("rising", "falling", "any"):
            assert find_edges(prof, sigma, 0, polarity).shape == (0, 2)
    assert find_edges(np.zeros(0), sigma, 0, "any").shape == (0, 2)


def test_threshold_boundary_is_inclusive() -> None:
    prof = np.array([0, 0, 0, 10, 10, 10], np.float64)  # d = [0, 0, 5, 5, 0, 0]: a plateau
    np.testing.assert_array_equal(find_edges(prof, 0, 5, "rising"), [[2.5, 5.0]])
    assert find_edges(prof, 0, np.nextafter(5.0, 6.0), "rising").shape == (0, 2)
    np.testing.assert_array_equal(find_edges(-prof, 0, 5, "falling"), [[2.5, -5.0]])
    assert find_edges(-prof, 0, 5, "rising").shape == (0, 2)


def test_plateau_counts_once_at_its_centre() -> None:
    prof = np.array([0, 0, 0, 10, 20, 30, 40, 40, 40], np.float64)  # d: 0 0 5 10 10 10 5 0 0
    np.testing.assert_array_equal(find_edges(prof, 0, 1, "any"), [[4.0, 10.0]])
    prof = np.array([0, 10, 20, 20], np.float64)  # d: 10 10 5 0: the maximum touches the start
    assert find_edges(prof, 0, 1, "any").shape == (0, 2)


def test_ends_are_never_edges() -> None:
    assert find_edges(np.array([0.0, 100.0]), 0, 1, "any").shape == (0, 2)
    assert find_edges(np.array([0.0, 100.0, 100.0, 100.0]), 0, 1, "any").shape == (0, 2)  # d: 100 50 0 0
    np.testing.assert_array_equal(find_edges(np.array([0.0, 0.0, 100.0, 100.0]), 0, 1, "any"), [[1.5, 50.0]])


@pytest.mark.parametrize("seed", range(10))
def test_random_profiles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    raw = rng.normal(0, 20, n).cumsum() + 128
    for prof in (raw, raw.astype(np.float32), np.round(raw).clip(0, 255).astype(np.uint8)):
        for sigma in (0.0, 0.6, 3.0):
            for polarity in ("rising", "falling", "any"):
                msg = f"seed={seed} n={n} dtype={prof.dtype} sigma={sigma} {polarity}"
                assert_edges_match(prof, sigma, float(rng.uniform(0, 10)), polarity, msg)


def test_profile_inputs_accepted() -> None:
    prof = step(60, 30.5)
    want = find_edges(prof, 1.0, 5, "any")
    for p in [
        prof.astype(np.float32),
        read_only(prof),
        prof[::-1][::-1],
        np.repeat(prof, 2)[::2],
        list(prof),
    ]:
        np.testing.assert_array_equal(find_edges(p, 1.0, 5, "any"), want)  # type: ignore[arg-type]


def test_find_edges_rejects_bad_input() -> None:
    prof = np.zeros(10)
    cases: list[tuple[tuple[object, ...], str]] = [
        (
            (np.zeros((2, 5)), 1, 1, "any"),
            r"find_edges needs a 1-D numeric profile, got float64 with shape \(2, 5\)",
        ),
        ((np.array(["a", "b"]), 1, 1, "any"), r"find_edges needs a 1-D numeric profile, got <U1"),
        ((prof, -1, 1, "any"), r"find_edges needs a finite sigma >= 0, got -1"),
        ((prof, math.nan, 1, "any"), r"find_edges needs a finite sigma >= 0, got nan"),
        ((prof, 1, -0.5, "any"), r"find_edges needs a finite threshold >= 0, got -0.5"),
        ((prof, 1, math.inf, "any"), r"find_edges needs a finite threshold >= 0, got inf"),
        ((prof, 1, 1, "up"), r"find_edges needs polarity 'rising', 'falling' or 'any', got 'up'"),
        ((prof, 1, 1, "Rising"), r"polarity 'rising', 'falling' or 'any', got 'Rising'"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            find_edges(*args)  # type: ignore[arg-type]
