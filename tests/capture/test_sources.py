"""Frame sources: the synthetic scene against its own ground truth, fit_into against OpenCV, and the
folder and video sources on real files written by the test."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from lens.capture.sources import SourceError, fit_into, make_source, target_size
from lens.capture.sources.folder import FolderSource
from lens.capture.sources.synthetic import SyntheticScene, SyntheticSource
from lens.capture.sources.video import VideoSource
from lens.config.models import CameraConfig

# --- synthetic ---------------------------------------------------------------------------------------


def reference_blobs(gray: np.ndarray, area_min: int = 50) -> int:
    """8-connected components of (gray >= 128) with at least `area_min` pixels, by OpenCV."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((gray >= 128).astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= area_min).sum())


def test_scene_is_deterministic_per_seed() -> None:
    a = SyntheticScene(160, 120, 1, seed=11, defect_rate=0.3)
    b = SyntheticScene(160, 120, 1, seed=11, defect_rate=0.3)
    c = SyntheticScene(160, 120, 1, seed=12, defect_rate=0.3)
    for n in range(40):
        assert np.array_equal(a.frame(n), b.frame(n)), f"seed 11, frame {n}"
        assert a.truth(n) == b.truth(n)
    differing = sum(not np.array_equal(a.frame(n), c.frame(n)) for n in range(40))
    assert differing == 40  # the belt texture alone makes every frame of another seed differ


@pytest.mark.parametrize(("width", "height", "seed"), [(640, 480, 7), (1280, 720, 3), (640, 480, 123)])
def test_truth_matches_opencv_blob_count(width: int, height: int, seed: int) -> None:
    scene = SyntheticScene(width, height, 1, seed=seed, defect_rate=0.5)
    seen: set[object] = set()
    for n in range(300):
        truth = scene.truth(n)
        seen.add(truth["defect"])
        assert reference_blobs(scene.frame(n)) == truth["blobs"], f"seed {seed}, frame {n}: {truth}"
    assert seen == {None, "missing_part", "extra_blob", "dim"}  # every kind was checked


def test_truth_without_area_filter_at_smaller_sizes() -> None:
    # every drawn part and extra blob is one bright component, whatever its size
    for width, height in [(320, 240), (200, 150), (64, 48)]:
        scene = SyntheticScene(width, height, 1, seed=5, defect_rate=0.5)
        for n in range(100):
            assert reference_blobs(scene.frame(n), area_min=1) == scene.truth(n)["blobs"], (width, n)


def test_truth_matches_at_smallest_accepted_width() -> None:
    scene = SyntheticScene(32, 48, 1, seed=5, defect_rate=0.0)
    for n in range(50):
        assert reference_blobs(scene.frame(n), area_min=1) == scene.truth(n)["blobs"], f"frame {n}"


def test_defect_share_and_brightness() -> None:
    scene = SyntheticScene(640, 480, 1, seed=7, defect_rate=0.3)
    assert scene.defect_rate == pytest.approx(19 / 64)  # round(64 * 0.3) of a 64-variant pool
    n_frames = 4000
    truths = [scene.truth(n) for n in range(n_frames)]
    share = sum(not t["good"] for t in truths) / n_frames
    assert share == pytest.approx(scene.defect_rate, abs=0.03)
    for n in range(200):
        mean = float(scene.frame(n).mean())
        if truths[n]["defect"] == "dim":
            assert mean < 40, f"dim frame {n}: mean {mean}"
        elif truths[n]["good"]:
            assert 40 <= mean <= 220, f"good frame {n}: mean {mean}"
            assert truths[n]["blobs"] == 4


def test_bgr_scene_has_the_same_blobs_in_luminance() -> None:
    gray = SyntheticScene(640, 480, 1, seed=9, defect_rate=0.5)
    bgr = SyntheticScene(640, 480, 3, seed=9, defect_rate=0.5)
    for n in range(100):
        frame = bgr.frame(n)
        assert frame.shape == (480, 640, 3)
        assert bgr.truth(n) == gray.truth(n)
        lum = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        assert reference_blobs(lum) == bgr.truth(n)["blobs"], f"seed 9, frame {n}"


@pytest.mark.parametrize(("rate", "good"), [(0.0, True), (1.0, False)])
def test_defect_rate_extremes(rate: float, good: bool) -> None:
    scene = SyntheticScene(320, 240, 1, seed=1, defect_rate=rate)
    assert scene.defect_rate == rate
    assert {scene.truth(n)["good"] for n in range(500)} == {good}


def test_synthetic_source_reads_into_given_array_and_seeks() -> None:
    src = SyntheticSource(160, 120, 1, seed=4, defect_rate=0.2, parts=3)
    assert src.open() == (120, 160)
    slot = np.zeros((120, 160), np.uint8)
    base = slot.__array_interface__["data"][0]
    for n in range(5):
        assert src.read_into(slot) is True
        assert np.array_equal(slot, src.scene.frame(n))
        assert slot.__array_interface__["data"][0] == base  # written in place
    src.seek(1000)
    src.read_into(slot)
    assert np.array_equal(slot, src.scene.frame(1000))
    src.read_into(slot)
    assert np.array_equal(slot, src.scene.frame(1001))


# --- fit_into ----------------------------------------------------------------------------------------

RNG_SEED = 20240611


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def test_fit_into_same_shape_copies(rng: np.random.Generator) -> None:
    for shape in [(40, 60), (40, 60, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        out = np.zeros(shape, np.uint8)
        assert fit_into(img, out) is False
        assert np.array_equal(out, img)
        assert not np.shares_memory(out, img)


def test_fit_into_converts_channels_in_place(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    bgr = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    # slot-like outputs: views into a larger preallocated buffer
    buf3 = np.zeros((50, 70, 3), np.uint8)
    out3 = buf3[5:45, 3:63]
    assert fit_into(gray, out3) is False
    assert np.array_equal(out3, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert np.array_equal(buf3[5:45, 3:63], out3) and int(buf3[:5].sum()) == 0
    buf1 = np.zeros((50, 70), np.uint8)
    out1 = buf1[5:45, 3:63]
    assert fit_into(bgr, out1) is False
    assert np.array_equal(buf1[5:45, 3:63], cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert int(buf1[:, :3].sum()) == 0


@pytest.mark.parametrize(
    ("src_shape", "out_shape", "code"),
    [
        ((90, 130), (40, 60), None),
        ((90, 130, 3), (40, 60, 3), None),
        ((90, 130, 3), (40, 60), cv2.COLOR_BGR2GRAY),
        ((30, 50), (40, 60, 3), cv2.COLOR_GRAY2BGR),
    ],
)
def test_fit_into_resizes_like_inter_area(
    rng: np.random.Generator, src_shape: tuple[int, ...], out_shape: tuple[int, ...], code: int | None
) -> None:
    img = rng.integers(0, 256, src_shape, dtype=np.uint8)
    out = np.zeros(out_shape, np.uint8)
    before = out.__array_interface__["data"][0]
    assert fit_into(img, out) is True
    expected = cv2.resize(img, (out_shape[1], out_shape[0]), interpolation=cv2.INTER_AREA)
    if code is not None:
        expected = cv2.cvtColor(expected, code)
    assert np.array_equal(out, expected)
    assert out.__array_interface__["data"][0] == before


# --- folder ------------------------------------------------------------------------------------------


def write_images(folder: Path, names: list[str], shape: tuple[int, int] = (24, 32)) -> dict[str, int]:
    """One constant-level PNG per name (level = 10 * (index + 1)); returns name -> level."""
    folder.mkdir(exist_ok=True)
    levels = {}
    for i, name in enumerate(names):
        level = 10 * (i + 1)
        cv2.imwrite(str(folder / name), np.full(shape, level, np.uint8))
        levels[name] = level
    return levels


def read_levels(src: FolderSource, count: int, shape: tuple[int, ...] = (24, 32)) -> list[int | None]:
    """Up to `count` frames' (constant) levels; None where read_into returned False."""
    out = np.zeros(shape, np.uint8)
    levels: list[int | None] = []
    for _ in range(count):
        if not src.read_into(out):
            levels.append(None)
            continue
        assert int(out.min()) == int(out.max())
        levels.append(int(out[0, 0]))
    return levels


def test_folder_sorted_order_and_end_without_loop(tmp_path: Path) -> None:
    levels = write_images(tmp_path / "imgs", ["c.png", "a.png", "b.png"])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / "sub.png").mkdir()  # a directory named like an image is not a file
    src = FolderSource(str(tmp_path / "imgs"), loop=False)
    assert src.open() == (24, 32)
    assert [p.name for p in src.files] == ["a.png", "b.png", "c.png"]
    expected = [levels["a.png"], levels["b.png"], levels["c.png"]]
    assert read_levels(src, 5) == [*expected, None, None]
    assert src.bad_files == 0


def test_folder_loop_wraps_and_seek(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    src = FolderSource(str(tmp_path / "imgs"), loop=True)
    src.open()
    assert read_levels(src, 7) == [10, 20, 30, 10, 20, 30, 10]
    src.seek(5)  # 5 mod 3
    assert read_levels(src, 2) == [30, 10]


def test_folder_pattern_filter(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["cam_1.png", "other.png", "cam_2.png"])
    src = FolderSource(str(tmp_path / "imgs"), pattern="cam_*.png", loop=False)
    src.open()
    assert [p.name for p in src.files] == ["cam_1.png", "cam_2.png"]
    assert read_levels(src, 3) == [10, 30, None]


def test_folder_skips_and_counts_undecodable_file(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png", "c.png"])
    (tmp_path / "imgs" / "b.png").write_bytes(b"\x89PNG but not really")
    src = FolderSource(str(tmp_path / "imgs"), loop=False)
    src.open()
    assert len(src.files) == 3
    assert read_levels(src, 3) == [10, 20, None]
    assert src.bad_files == 1


def test_folder_counts_undecodable_first_file_once(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["b.png", "c.png"])
    (tmp_path / "imgs" / "a.png").write_bytes(b"garbage")
    src = FolderSource(str(tmp_path / "imgs"), loop=False)
    src.open()
    assert read_levels(src, 3) == [10, 20, None]
    assert src.bad_files == 1


def test_folder_of_garbage_only_is_a_source_error(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"garbage")
    src = FolderSource(str(folder))
    with pytest.raises(SourceError, match=re.escape(f"none of the 2 images in {folder} can be decoded")):
        src.open()
    assert src.bad_files == 2


def test_folder_missing_or_empty_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=re.escape(f"{tmp_path / 'nope'} is not a directory")):
        FolderSource(str(tmp_path / "nope")).open()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match=re.escape(f"no images matching '*' in {tmp_path / 'empty'}")):
        FolderSource(str(tmp_path / "empty")).open()


def test_folder_cache_budget(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png", "b.png", "c.png"])
    nocache = FolderSource(str(tmp_path / "imgs"), cache_mb=0)
    nocache.open()
    assert read_levels(nocache, 4) == [10, 20, 30, 10]
    assert nocache.cache == {} and nocache.cached_bytes == 0

    cached = FolderSource(str(tmp_path / "imgs"), cache_mb=1)
    cached.open()
    assert read_levels(cached, 3) == [10, 20, 30]
    assert sorted(cached.cache) == [0, 1, 2]
    assert cached.cached_bytes == 3 * 24 * 32
    for p in (tmp_path / "imgs").iterdir():
        p.unlink()  # a looping folder now replays from memory only
    assert read_levels(cached, 4) == [10, 20, 30, 10]
    assert cached.bad_files == 0


def test_folder_resizes_mixed_sizes(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    small = np.full((24, 32), 50, np.uint8)
    big = np.tile(np.arange(64, dtype=np.uint8), (48, 1))
    cv2.imwrite(str(folder / "a.png"), small)
    cv2.imwrite(str(folder / "b.png"), big)
    src = FolderSource(str(folder), loop=False)
    assert src.open() == (24, 32)
    out = np.zeros((24, 32), np.uint8)
    assert src.read_into(out) and src.last_resized is False
    assert np.array_equal(out, small)
    assert src.read_into(out) and src.last_resized is True
    assert np.array_equal(out, cv2.resize(big, (32, 24), interpolation=cv2.INTER_AREA))


def test_folder_bgr_output_from_gray_file(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png"])
    src = FolderSource(str(tmp_path / "imgs"), gray=False)
    src.open()
    out = np.zeros((24, 32, 3), np.uint8)
    assert src.read_into(out)
    assert np.array_equal(out, np.full((24, 32, 3), 10, np.uint8))


# --- video -------------------------------------------------------------------------------------------

LEVELS = [20 + 20 * i for i in range(10)]


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG/AVI")
    for level in LEVELS:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def read_video_levels(src: VideoSource, count: int, shape: tuple[int, ...]) -> list[float | None]:
    out = np.zeros(shape, np.uint8)
    got: list[float | None] = []
    for _ in range(count):
        got.append(float(out.mean()) if src.read_into(out) else None)
    return got


def assert_levels(got: list[float | None], expected: list[int | None]) -> None:
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if e is None:
            assert g is None, f"frame {i}: expected the end, got level {g}"
        else:
            assert g is not None and abs(g - e) <= 3, f"frame {i}: level {g}, expected {e} (MJPG, +-3)"


def test_video_reads_every_frame_then_ends(video: Path) -> None:
    src = VideoSource(str(video), loop=False)
    try:
        assert src.open() == (48, 64)
        assert_levels(read_video_levels(src, 12, (48, 64, 3)), [*LEVELS, None, None])
    finally:
        src.close()


def test_video_loop_wraps(video: Path) -> None:
    src = VideoSource(str(video), loop=True)
    try:
        src.open()
        assert_levels(read_video_levels(src, 23, (48, 64, 3)), LEVELS + LEVELS + LEVELS[:3])
    finally:
        src.close()


def test_video_gray_and_resized_output(video: Path) -> None:
    src = VideoSource(str(video), loop=False)
    try:
        src.open()
        assert_levels(read_video_levels(src, 3, (48, 64)), LEVELS[:3])
        assert src.last_resized is False
        assert_levels(read_video_levels(src, 2, (24, 32)), LEVELS[3:5])
        assert src.last_resized is True
    finally:
        src.close()


def test_video_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=re.escape(f"video source: {tmp_path / 'nope.avi'} does not exist")):
        VideoSource(str(tmp_path / "nope.avi")).open()
    (tmp_path / "junk.avi").write_bytes(b"not a video" * 100)
    with pytest.raises(SourceError, match=re.escape(str(tmp_path / "junk.avi"))):
        VideoSource(str(tmp_path / "junk.avi")).open()


# --- make_source / target_size -----------------------------------------------------------------------


def test_make_source_synthetic_gray_and_bgr() -> None:
    gray_cam = CameraConfig.model_validate(
        {"source": {"type": "synthetic", "width": 160, "height": 120, "seed": 3, "defect_rate": 0.25}}
    )
    src = make_source(gray_cam)
    assert isinstance(src, SyntheticSource)
    assert src.open() == (120, 160)
    assert src.scene.channels == 1 and src.scene.seed == 3 and src.scene.parts == 4
    assert src.scene.defect_rate == pytest.approx(0.25)
    assert target_size(gray_cam, (120, 160)) == (120, 160)

    bgr_cam = CameraConfig.model_validate(
        {
            "source": {"type": "synthetic", "width": 160, "height": 120, "parts": 2},
            "capture": {"format": "bgr"},
        }
    )
    bgr = make_source(bgr_cam)
    assert isinstance(bgr, SyntheticSource)
    assert bgr.scene.channels == 3 and bgr.scene.parts == 2
    assert bgr.scene.frame(0).shape == (120, 160, 3)


def test_make_source_folder_and_target_size(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["a.png", "b.png"])
    cam = CameraConfig.model_validate(
        {"source": {"type": "folder", "path": str(tmp_path / "imgs"), "loop": False, "cache_mb": 0}}
    )
    src = make_source(cam)
    assert isinstance(src, FolderSource)
    assert (src.loop, src.cache_budget, src.flag) == (False, 0, cv2.IMREAD_GRAYSCALE)
    native = src.open()
    assert native == (24, 32)
    assert target_size(cam, native) == (24, 32)  # no size configured: the source's own
    sized = CameraConfig.model_validate(
        {"source": {"type": "folder", "path": str(tmp_path), "width": 64}, "capture": {"format": "bgr"}}
    )
    assert target_size(sized, native) == (24, 64)
    bgr = make_source(sized)
    assert isinstance(bgr, FolderSource) and bgr.flag == cv2.IMREAD_COLOR


def test_make_source_video(video: Path) -> None:
    cam = CameraConfig.model_validate({"source": {"type": "video", "path": str(video), "height": 96}})
    src = make_source(cam)
    assert isinstance(src, VideoSource) and src.loop is True
    try:
        native = src.open()
        assert native == (48, 64)
        assert target_size(cam, native) == (96, 64)
    finally:
        src.close()


@pytest.mark.parametrize("cache_mb", [0, 256])
def test_folder_decodes_ahead_in_threads_in_order(tmp_path: Path, cache_mb: int) -> None:
    """With the cache off (every image decoded for every use) or on (each decoded once, in parallel
    at open), images still come out in sorted order, looping, with a bad file skipped."""
    names = [f"{i:02d}.png" for i in range(9)]
    levels = write_images(tmp_path / "imgs", names)
    (tmp_path / "imgs" / "04.png").write_bytes(b"garbage")
    src = FolderSource(str(tmp_path / "imgs"), loop=True, cache_mb=cache_mb, decode_threads=3)
    try:
        src.open()
        good = [levels[n] for n in names if n != "04.png"]
        assert read_levels(src, 20) == (good * 3)[:20]
        assert src.bad_files == 1
        assert len(src.cache) == (8 if cache_mb else 0)
        assert len(src.ahead) <= 3  # never more decodes in flight than threads
    finally:
        src.close()
    assert src.pool is None and not src.ahead
