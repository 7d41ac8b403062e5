"""Frame sources, built from a camera's config."""

from __future__ import annotations

from functools import partial

from lens.capture.sources.base import Source, SourceError, fit_into
from lens.config.models import CameraConfig
from lens.config.models import FolderSource as FolderCfg
from lens.config.models import HttpSource as HttpCfg
from lens.config.models import RtspSource as RtspCfg
from lens.config.models import SyntheticSource as SyntheticCfg
from lens.config.models import UsbSource as UsbCfg
from lens.config.models import VideoSource as VideoCfg

__all__ = ["Source", "SourceError", "fit_into", "make_source", "target_size"]


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

        return FolderSource(src.path, src.pattern, src.loop, gray, src.cache_mb, src.fps, src.decode_threads)
    if isinstance(src, VideoCfg):
        from lens.capture.sources.video import VideoSource

        return VideoSource(src.path, src.loop, src.fps)
    if isinstance(src, UsbCfg):
        from lens.capture.sources.usb import UsbSource

        return UsbSource(src.device, src.width, src.height, src.fps, src.fourcc, src.stall_s)
    if isinstance(src, RtspCfg):
        from lens.capture.sources.stream import StreamSource
        from lens.capture.sources.urls import rtsp_url

        # the URL (with the password from the environment) is built at open, never stored in config
        return StreamSource("rtsp", partial(rtsp_url, src), src.transport, src.fps, src.stall_s)
    if isinstance(src, HttpCfg):
        from lens.capture.sources.stream import StreamSource

        return StreamSource("http", src.url, fps=src.fps, stall_s=src.stall_s)
    raise SourceError(f"source type {src.type!r} is not supported")


def target_size(cam: CameraConfig, native: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the ring: the configured size, or the source's own. A usb camera's width and
    height are requests to the camera, so its ring takes the size the camera actually delivers."""
    if isinstance(cam.source, UsbCfg):
        return native
    h = getattr(cam.source, "height", None) or native[0]
    w = getattr(cam.source, "width", None) or native[1]
    return int(h), int(w)
