"""Frame sources, built from a camera's config."""

from __future__ import annotations

from lens.capture.sources.base import Source, SourceError, fit_into
from lens.config.models import CameraConfig
from lens.config.models import FolderSource as FolderCfg
from lens.config.models import SyntheticSource as SyntheticCfg
from lens.config.models import VideoSource as VideoCfg

__all__ = ["Source", "SourceError", "fit_into", "make_source"]


def make_source(cam: CameraConfig) -> Source:
    gray = cam.capture.format == "gray"
    src = cam.source
    if isinstance(src, SyntheticCfg):
        from lens.capture.sources.synthetic import SyntheticSource

        return SyntheticSource(
            src.width, src.height, 1 if gray else 3, src.seed, src.defect_rate, src.parts, src.fps
        )
    if isinstance(src, FolderCfg):
        from lens.capture.sources.folder import FolderSource

        return FolderSource(src.path, src.pattern, src.loop, gray, src.cache_mb, src.fps)
    if isinstance(src, VideoCfg):
        from lens.capture.sources.video import VideoSource

        return VideoSource(src.path, src.loop, src.fps)
    raise SourceError(f"source type {src.type!r} is not supported")


def target_size(cam: CameraConfig, native: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the ring: the configured size, or the source's own."""
    h = getattr(cam.source, "height", None) or native[0]
    w = getattr(cam.source, "width", None) or native[1]
    return int(h), int(w)
