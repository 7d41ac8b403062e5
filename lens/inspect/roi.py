"""ROIs at run time: a shape resolved against the frame size (and a caliper's shift), clipped, with
its mask. Resolved once per (frame size, shift) and cached, so the hot path allocates nothing."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lens.config.tools import CircleRoi, EllipseRoi, RectRoi, RoiConfig, clip


class RoiOutside(ValueError):
    """The ROI has no pixel inside the frame."""


@dataclass(frozen=True)
class Region:
    x0: int
    y0: int
    x1: int
    y1: int
    mask: np.ndarray | None  # uint8, shape (y1-y0, x1-x0), 255 inside; None for a rectangle
    pixels: int  # pixels inside the ROI

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def of(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y1, self.x0 : self.x1]


def _mask(cfg: CircleRoi | EllipseRoi, box: tuple[int, int, int, int], dx: int, dy: int) -> np.ndarray:
    """The shape, moved by (dx, dy), drawn into its (moved) bounding box."""
    bx0, by0, bx1, by1 = box
    m = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    cx, cy = cfg.cx + dx - bx0, cfg.cy + dy - by0
    if isinstance(cfg, CircleRoi):
        cv2.circle(m, (cx, cy), cfg.r, 255, thickness=-1, lineType=cv2.LINE_8)
    else:
        cv2.ellipse(m, (cx, cy), (cfg.rx, cfg.ry), cfg.angle, 0, 360, 255, thickness=-1,
                    lineType=cv2.LINE_8)  # fmt: skip
    return m


class Roi:
    def __init__(self, cfg: RoiConfig, tool: str) -> None:
        self.cfg = cfg
        self.tool = tool
        self._cache: dict[tuple[int, int, int, int], Region] = {}

    def resolve(self, height: int, width: int, shift: tuple[int, int] = (0, 0)) -> Region:
        key = (height, width, *shift)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        dx, dy = shift
        bx0, by0, bx1, by1 = self.cfg.bbox(width, height)
        # a shift moves every edge the config defines; an edge at "to the frame edge" (null) stays
        open_w = isinstance(self.cfg, RectRoi) and self.cfg.w is None
        open_h = isinstance(self.cfg, RectRoi) and self.cfg.h is None
        bx0, by0 = bx0 + dx, by0 + dy
        bx1, by1 = bx1 + (0 if open_w else dx), by1 + (0 if open_h else dy)
        box = clip((bx0, by0, bx1, by1), width, height)
        if box is None:
            raise RoiOutside(
                f"tool '{self.tool}': roi {self._describe()} lies outside the {width}x{height} frame"
            )
        x0, y0, x1, y1 = box
        mask = None
        pixels = (x1 - x0) * (y1 - y0)
        if not isinstance(self.cfg, RectRoi):
            full = _mask(self.cfg, (bx0, by0, bx1, by1), dx, dy)
            mask = np.ascontiguousarray(full[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0])
            pixels = int(np.count_nonzero(mask))
            if pixels == 0:
                raise RoiOutside(f"tool '{self.tool}': roi {self._describe()} has no pixel inside the "
                                 f"{width}x{height} frame")  # fmt: skip
            mask.flags.writeable = False
        region = Region(x0, y0, x1, y1, mask, pixels)
        if len(self._cache) > 64:  # shifts vary per frame with a caliper: keep the cache bounded
            self._cache.clear()
        self._cache[key] = region
        return region

    def _describe(self) -> str:
        fields = self.cfg.model_dump()
        if fields.get("shape") == "rect":
            del fields["shape"]  # the default needs no mention
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"
