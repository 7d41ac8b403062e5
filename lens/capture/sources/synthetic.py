"""The embedded camera: a deterministic, seeded scene of bright parts on a dark belt.

A share (`defect_rate`) of frames is defective, cycling through three defects an inspection should
catch: a missing part, an extra blob, and a dim frame. `truth(n)` tells what frame n shows, so tests
and demos can check results against ground truth.

Frames are rendered once into a pool of variants (bounded memory) and copied into the ring slot,
so the source costs one memcpy per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from lens.capture.sources.base import Source

DEFECTS = ("missing_part", "extra_blob", "dim")
BELT_LEVEL = 55
PART_LEVEL = 215
DIM_FACTOR = 0.35
POOL_BYTES = 64 << 20
MIN_SPACING = 8  # px of width per part, so parts never touch
MIN_HEIGHT = 32


def _mix(seed: int, n: int) -> int:
    """splitmix64 of (seed, n): a well-spread deterministic hash."""
    z = (seed * 0x9E3779B97F4A7C15 + n + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class SyntheticScene:
    def __init__(
        self, width: int, height: int, channels: int, seed: int = 0, defect_rate: float = 0.1, parts: int = 4
    ) -> None:
        if width < MIN_SPACING * parts or height < MIN_HEIGHT:
            raise ValueError(
                f"a {width}x{height} scene is too small for {parts} parts "
                f"(width >= {MIN_SPACING * parts}, height >= {MIN_HEIGHT})"
            )
        self.width, self.height, self.channels = width, height, channels
        self.seed, self.parts = seed, parts
        frame_bytes = width * height * channels
        self.pool_size = int(min(64, max(8, POOL_BYTES // frame_bytes)))
        n_defect = round(self.pool_size * defect_rate)
        self.defects: list[str | None] = [
            DEFECTS[v % len(DEFECTS)] if v < n_defect else None for v in range(self.pool_size)
        ]
        self.pool = [self._render(v) for v in range(self.pool_size)]
        self.defect_rate = n_defect / self.pool_size  # the share actually produced

    def variant(self, n: int) -> int:
        return _mix(self.seed, n) % self.pool_size

    def truth(self, n: int) -> dict[str, object]:
        """What frame n shows: its defect (or None) and how many bright blobs it holds."""
        defect = self.defects[self.variant(n)]
        count = self.parts + (1 if defect == "extra_blob" else 0) - (1 if defect == "missing_part" else 0)
        if defect == "dim":
            count = 0  # parts fall below any bright-part threshold
        return {"defect": defect, "blobs": count, "good": defect is None}

    def frame(self, n: int) -> np.ndarray:
        return self.pool[self.variant(n)]

    def _render(self, v: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, v])
        h, w = self.height, self.width
        img = np.full((h, w), BELT_LEVEL, np.int16)
        img += rng.integers(-8, 9, size=(h, w), dtype=np.int16)  # belt texture, never near 128
        for y in range(h // 8, h, max(2, h // 4)):  # belt seams
            img[y : y + max(1, h // 240)] -= 12
        spacing = w / self.parts
        r = max(2, int(min(spacing * 0.27, h * 0.175)))
        jx = max(0, min(r // 6, int(spacing / 2 - r - 2)))  # jitter never lets two parts touch
        jy = max(0, min(h // 12, int(h * 0.62 - h / 2 - r - 3)))
        defect = self.defects[v]
        missing = int(rng.integers(self.parts)) if defect == "missing_part" else -1
        for i in range(self.parts):
            if i == missing:
                continue
            cx = int((i + 0.5) * spacing + rng.integers(-jx, jx + 1))
            cy = int(h / 2 + rng.integers(-jy, jy + 1))
            level = int(PART_LEVEL + rng.integers(-12, 13))
            cv2.circle(img, (cx, cy), r, level, thickness=-1, lineType=cv2.LINE_8)
            cv2.circle(
                img, (cx, cy), max(1, r // 3), level - 25, thickness=-1, lineType=cv2.LINE_8
            )  # cap centre
        if defect == "extra_blob":
            er = max(2, r // 5)
            ex = int(rng.integers(er + 1, w - er - 1))
            ey = max(int(h * 0.88), int(h * 0.62) + er + 2)  # below every part, inside the frame
            cv2.circle(img, (ex, min(ey, h - er - 1)), er, PART_LEVEL, thickness=-1, lineType=cv2.LINE_8)
        if defect == "dim":
            img = (img * DIM_FACTOR).astype(np.int16)
        gray = np.clip(img, 0, 255).astype(np.uint8)
        if self.channels == 1:
            return gray
        bgr = np.empty((h, w, 3), np.uint8)
        # a slightly warm colour cast; luminance stays close to the gray scene
        bgr[..., 0] = np.clip(gray.astype(np.int16) - 10, 0, 255)
        bgr[..., 1] = gray
        bgr[..., 2] = np.clip(gray.astype(np.int16) + 8, 0, 255)
        return bgr


class SyntheticSource(Source):
    def __init__(
        self,
        width: int,
        height: int,
        channels: int,
        seed: int,
        defect_rate: float,
        parts: int,
        fps: float = 0.0,
    ) -> None:
        self.scene = SyntheticScene(width, height, channels, seed, defect_rate, parts)
        self.fps = fps
        self.n = 0

    def open(self) -> tuple[int, int]:
        return self.scene.height, self.scene.width

    def read_into(self, out: np.ndarray) -> bool:
        np.copyto(out, self.scene.frame(self.n))
        self.n += 1
        return True

    def seek(self, n: int) -> None:
        """Continue from frame n (a restarted capture process resumes the sequence)."""
        self.n = n

    def describe(self) -> str:
        s = self.scene
        return f"synthetic {s.width}x{s.height} seed={s.seed} defect_rate={s.defect_rate:.3f}"
