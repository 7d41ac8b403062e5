"""What every config section shares: strict models, and discriminated unions with a default tag."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Discriminator

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
MACHINE_ID = r"^[A-Za-z0-9_.-]+$"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values validated on assignment."""

    # strict: YAML `yes` is not 1 and "3" is not 3; no NaN/inf limits.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


def http_url(v: str) -> str:
    """Field validator: an http:// or https:// URL."""
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} is not an http:// or https:// URL")
    return v


def tagged_by(key: str, default: str | None) -> Any:
    """Discriminator by `key`, defaulting to `default` when the key is left out."""

    def pick(v: Any) -> str | None:
        if isinstance(v, dict):
            return v.get(key, default)
        return getattr(v, key, default)

    return Discriminator(pick)
