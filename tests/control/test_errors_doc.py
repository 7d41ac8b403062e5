"""The README's error catalog is generated from the code's (`lens.control.errors.CATALOG`)."""

from __future__ import annotations

from pathlib import Path

from lens.control.errors import CATALOG, ApiError, catalog_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_has_the_error_catalog() -> None:
    assert catalog_markdown() in (ROOT / "README.md").read_text()


def test_spec_codes_have_their_spec_status() -> None:
    spec = {"LENS_BUSY": 423, "LENS_UNAUTHORIZED": 401, "LENS_FORBIDDEN": 403, "LENS_SESSION_EXPIRED": 401,
            "LENS_INVALID_CONFIG": 422, "LENS_INVALID_STATE": 409, "LENS_NOT_FOUND": 404,
            "LENS_SOURCE_UNAVAILABLE": 503, "LENS_TIMEOUT": 504}  # fmt: skip
    assert {code: CATALOG[code][0] for code in spec} == spec
    assert ApiError("LENS_BUSY", "held").status == 423
