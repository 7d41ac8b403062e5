"""Errors as the old machine answered them: `{"success": false, "error": message}` with its status
codes, and the message of lens's own errors in that answer."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from lens.config.load import ConfigError
from lens.control.engine import EngineError
from lens.control.errors import ApiError


class LegacyHttpError(Exception):
    """Answered as `{"success": false, "error": message}` with `status` (the old machine's codes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_message(e: Exception) -> str:
    """What went wrong, for the legacy answer: a config error's issues, an API error's message."""
    if isinstance(e, ConfigError):
        return "; ".join(f"{i.path}: {i.message}" if i.path else i.message for i in e.issues)
    if isinstance(e, ApiError):
        return e.message
    return str(e)


async def engine_call(coro: Awaitable[Any]) -> Any:
    """Await an engine request; a refusal (or an engine that does not answer) is a 400."""
    try:
        return await coro
    except (EngineError, ApiError) as e:
        raise LegacyHttpError(400, error_message(e)) from None
