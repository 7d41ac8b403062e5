"""Paths in a pipeline: a relative path is relative to the pipeline file's folder."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationInfo


def resolve_path(v: str, info: ValidationInfo) -> str:
    """Field validator: resolve `v` against the validation context's `base_dir` (the pipeline's folder)."""
    base = (info.context or {}).get("base_dir")
    return str((Path(base) / v).resolve()) if base is not None and not Path(v).is_absolute() else v
