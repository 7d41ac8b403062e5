"""warmup() compiles every kernel for every array type production passes, so none compiles later."""

from __future__ import annotations

import numpy as np

from native_tools import (
    BlobScratch,
    band_threshold,
    blob_stats,
    edge_count,
    find_edges,
    otsu_level,
    profile,
    profile_length,
    roi_stats,
    warmup,
)
from native_tools._jit import REGISTRY
from tests.native_tools.layouts import read_only


def test_warmup_names_every_kernel() -> None:
    names = warmup()
    assert names == [f"{k.py_func.__module__}.{k.py_func.__qualname__}" for k in REGISTRY]
    kernels = {
        "native_tools.stats._stats",
        "native_tools.stats._stats_masked",
        "native_tools.blob._runs",
        "native_tools.blob._components",
        "native_tools.edges._edge_count",
        "native_tools.threshold._band",
        "native_tools.threshold._histogram",
        "native_tools.threshold._otsu",
        "native_tools.caliper._sample",
        "native_tools.caliper._edges",
    }
    assert kernels <= set(names)


def signatures() -> dict[str, int]:
    return {k.py_func.__qualname__: len(k.signatures) for k in REGISTRY}


def test_no_compile_after_warmup() -> None:
    warmup()
    before = signatures()
    frame = np.random.default_rng(2).integers(0, 256, (120, 160), dtype=np.uint8)
    ring_slot = read_only(frame)  # lens ring slots are read-only views
    scratch = BlobScratch()
    for img in (
        frame,
        frame[10:50, 7:33],
        frame[::2, ::3],
        frame.T,
        frame[0:1, :],
        frame[:, 5:6],
        ring_slot,
        ring_slot[30:90, 40:41],
        ring_slot[::-1],
    ):
        h, w = img.shape
        disk = np.zeros((h, w), np.uint8)
        disk[h // 4 : h // 2 + 1, w // 4 : w // 2 + 1] = 255
        big = np.zeros((h + 4, w + 4), np.uint8)
        big[2 : h + 2, 2 : w + 2] = disk
        masks = [
            None,
            disk,
            read_only(disk),  # lens/inspect/roi.py caches its masks read-only
            big[2 : h + 2, 2 : w + 2],  # a ROI of a full-frame mask
            read_only(big)[2 : h + 2, 2 : w + 2],
            disk.astype(bool),
            np.asfortranarray(disk),
        ]
        scratch_image = np.zeros((200, 200), np.uint8)
        for mask in masks:
            roi_stats(img, mask)
            blob_stats(
                img, 100, 200, area_min=np.int64(2), area_max=50, scratch=scratch, offset=(3, 4.5), mask=mask
            )
            blob_stats(img, np.uint8(0), 255, mask=mask)
            edge_count(img, 40, mask)
            edge_count(img, np.float32(12.5), mask)
            edge_count(img, -1.0, mask)
            band_threshold(img, 100, np.uint8(200), np.empty((h, w), np.uint8), mask)
            band_threshold(img, 0, 10, scratch_image[3 : h + 3, 5 : w + 5], mask)
            band_threshold(img, 0, 10, np.asfortranarray(np.empty((h, w), np.uint8)), mask)
            otsu_level(img, mask)
        writable = np.array(img)
        band_threshold(writable, 0, 10, writable)  # in place
        prof = profile(img, 0, 0, w - 1, h - 1)
        profile(
            img,
            np.float32(0.5),
            1,
            np.int64(w),
            2.5,
            out=np.empty(profile_length(0.5, 1, w, 2.5), np.float32),
        )
        for p in (prof, prof.astype(np.float64), read_only(prof.astype(np.float64)), prof[::2]):
            find_edges(p, 1.5, 10, "any")
            find_edges(p, 0, np.float32(2), "rising")
            find_edges(p, np.int64(2), 5.5, "falling")
    assert signatures() == before
