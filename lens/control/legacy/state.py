"""What the legacy routes changed, kept on disk, and the mapping of the old machine's source and
trigger configs to the native camera model.

The Flask machine saved its config to a JSON file after every change; lens does the same
(`control.legacy_state`, default `var/legacy.json` beside the pipeline) and applies the file over
the pipeline at every start (`effective_config`), so a change made by an orchestrator survives a
restart and shows in `/api/v1/config`. Only the sections changed through the legacy routes are in
the file; everything else comes from the pipeline YAML. The legacy routes address the first camera
(the old machine had one).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import orjson

from lens.capture.sources.urls import mask_url
from lens.config.load import ConfigError, validate_data
from lens.config.models import PipelineConfig

log = logging.getLogger("lens.control.legacy")

STATE_VERSION = 1
SECTIONS = ("source_config", "trigger_config", "inspection_config", "logging_config", "django_url")
_TYPES = {"source_config": dict, "trigger_config": dict, "inspection_config": dict, "logging_config": dict,
          "django_url": str}  # fmt: skip
DEFAULT_SOURCE: dict[str, Any] = {
    "type": "pasta",
    "camera_id": 0,
    "resolution": [640, 480],
    "fps": 30,
    "folder_path": "./test_images",
    "rtsp_url": "",
}
DEFAULT_TRIGGER: dict[str, Any] = {"type": "continuous", "interval_ms": 500}
MIN_INTERVAL_MS = 100


class LegacyConfigError(ValueError):
    """A legacy config the machine cannot apply (answered 500 with the message, as the old machine)."""


class LegacyState:
    """The file of legacy changes: read at start, rewritten (atomically) after every change."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}
        self.problem = ""  # why the file could not be read, if it could not
        self._read()

    def _read(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            self.problem = f"{self.path}: cannot read ({e.strerror})"
            return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            self.problem = f"{self.path}: not valid JSON ({e}); the pipeline's config is used"
            return
        if not isinstance(data, dict):
            self.problem = f"{self.path}: must hold a JSON object; the pipeline's config is used"
            return
        self.data = {k: v for k, v in data.items() if k in SECTIONS and isinstance(v, _TYPES[k])}
        wrong = [k for k, v in data.items() if k in SECTIONS and not isinstance(v, _TYPES[k])]
        if wrong:
            self.problem = f"{self.path}: {', '.join(wrong)} of the wrong type, not used"

    def get(self, section: str, default: Any = None) -> Any:
        return self.data.get(section, default)

    def put(self, section: str, value: Any) -> None:
        assert section in SECTIONS, section
        self.data[section] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"version": STATE_VERSION, "saved_at": time.time(), **self.data}
        try:
            tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise


# -- source and trigger: legacy <-> native ------------------------------------------------------------


def source_to_native(legacy: dict[str, Any]) -> dict[str, Any]:
    """The old machine's source config as a native `source` section (raises LegacyConfigError)."""
    kind = legacy.get("type")
    fps = _number(legacy.get("fps", 0), "fps")
    width, height = _resolution(legacy.get("resolution"))
    if kind == "pasta":
        path = legacy.get("folder_path")
        if not isinstance(path, str) or not path.strip():
            raise LegacyConfigError("folder_path: no folder configured for source type 'pasta'")
        return {"type": "folder", "path": path, "loop": True}
    if kind == "camera":
        device = legacy.get("camera_id", 0)
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device)
        if not isinstance(device, int | str) or isinstance(device, bool):
            raise LegacyConfigError(f"camera_id: must be a camera index or device path, not {device!r}")
        return {"type": "usb", "device": device, "width": width, "height": height, "fps": fps}
    if kind in ("camera_IP", "rtsp"):  # the orchestrator's UI says rtsp; the old machine wanted camera_IP
        url = legacy.get("rtsp_url")
        if not isinstance(url, str) or not url.strip():
            raise LegacyConfigError("rtsp_url: empty (an RTSP URL is needed for source type camera_IP)")
        return {"type": "rtsp", "url": url.strip()}
    if kind in ("picamera2", "camerapi2"):
        raise LegacyConfigError(f"type: {kind!r} (Raspberry Pi camera) is not supported by lens; use camera")
    raise LegacyConfigError(f"type: {kind!r} is not a source type (pasta, camera, camera_IP)")


def source_to_legacy(camera: dict[str, Any]) -> dict[str, Any]:
    """A native camera section seen as the old machine's source config (passwords masked)."""
    src = camera.get("source", {})
    kind = src.get("type")
    out: dict[str, Any] = {**DEFAULT_SOURCE, "folder_path": "", "rtsp_url": ""}
    if kind == "folder":
        out.update(type="pasta", folder_path=src.get("path", ""))
    elif kind == "usb":
        out.update(type="camera", camera_id=src.get("device", 0))
    elif kind == "rtsp":
        out.update(type="camera_IP", rtsp_url=mask_url(src.get("url") or ""))
    else:
        out["type"] = kind
    w, h = src.get("width"), src.get("height")
    out["resolution"] = [w or 0, h or 0]
    out["fps"] = src.get("fps", 0)
    return out


def trigger_to_native(legacy: dict[str, Any]) -> dict[str, Any]:
    """The old machine's trigger config (`continuous` every interval_ms >= 100, or `trigger`: on
    command) as a native `trigger` section."""
    kind = legacy.get("type")
    if kind == "trigger":
        return {"type": "manual"}
    if kind == "continuous":
        interval = _number(legacy.get("interval_ms", MIN_INTERVAL_MS), "interval_ms")
        if interval < MIN_INTERVAL_MS:
            raise LegacyConfigError(
                f"interval_ms: {interval:g} ms is too short for continuous mode (at least {MIN_INTERVAL_MS})"
            )
        return {"type": "continuous", "interval_ms": interval}
    raise LegacyConfigError(f"type: {kind!r} is not a trigger type (continuous, trigger)")


def trigger_to_legacy(camera: dict[str, Any]) -> dict[str, Any]:
    trig = camera.get("trigger", {})
    kind = trig.get("type")
    if kind == "manual":
        return {"type": "trigger", "interval_ms": DEFAULT_TRIGGER["interval_ms"]}
    if kind == "continuous":
        interval = trig.get("interval_ms", 0)
        if isinstance(interval, float) and interval.is_integer():
            interval = int(interval)  # the old machine's field is an integer
        return {"type": "continuous", "interval_ms": interval}
    return {"type": kind, "interval_ms": 0}


def _number(v: Any, name: str) -> float:
    """A finite number (or numeric string); LegacyConfigError otherwise."""
    try:
        if isinstance(v, bool) or not isinstance(v, int | float | str) or not math.isfinite(float(v)):
            raise ValueError
    except (ValueError, OverflowError):
        raise LegacyConfigError(f"{name}: must be a number, not {v!r}") from None
    return float(v)


def _resolution(v: Any) -> tuple[int | None, int | None]:
    """[w, h] (either may be null or 0: the camera's own)."""
    if v is None:
        return None, None
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise LegacyConfigError(f"resolution: must be [width, height], not {v!r}")
    out = []
    for name, x in zip(("width", "height"), v, strict=True):
        n = None if x in (None, "", 0) else int(_number(x, f"resolution.{name}"))
        if n is not None and not 1 <= n <= 16384:
            raise LegacyConfigError(f"resolution.{name}: {n} is out of range 1..16384")
        out.append(n)
    return out[0], out[1]


# -- the effective config at start --------------------------------------------------------------------


def effective_config(config: PipelineConfig, base_dir: str | None) -> tuple[PipelineConfig, list[str]]:
    """The pipeline with the saved legacy changes applied (first camera's source and trigger, the
    tools). A part that cannot be applied is left out and reported (the machine still starts)."""
    ctl = config.control
    if not (ctl.enabled and ctl.legacy_api):
        return config, []
    state = LegacyState(ctl.legacy_state)
    problems = [state.problem] if state.problem else []
    if not state.data:
        return config, problems
    from lens.control.legacy.tools import LegacyToolError, translate

    data = config.model_dump(mode="json")
    applied: list[str] = []
    for section in ("source_config", "trigger_config", "inspection_config"):
        value = state.get(section)
        if value is None:
            continue
        candidate = orjson.loads(orjson.dumps(data))
        try:
            if section == "source_config":
                candidate["cameras"][0]["source"] = source_to_native(value)
            elif section == "trigger_config":
                candidate["cameras"][0]["trigger"] = trigger_to_native(value)
            else:
                candidate["inspection"]["tools"] = translate(value.get("tools") or []).native["tools"]
            validate_data(candidate, PipelineConfig, base_dir=base_dir)
        except (LegacyConfigError, LegacyToolError, ConfigError, AttributeError, TypeError) as e:
            problems.append(f"{state.path}: {section} not applied: {e}")
            continue
        data = candidate
        applied.append(section)
    if applied:
        log.info("legacy changes applied from %s: %s", state.path, ", ".join(applied))
    for p in problems:
        log.error("%s", p)
    return validate_data(data, PipelineConfig, base_dir=base_dir), problems
