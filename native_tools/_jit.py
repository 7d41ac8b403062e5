"""The one place numba options are set. Kernels elsewhere use only `@kernel`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

#: Every compiled kernel, in definition order; `native_tools.warmup` checks each got compiled.
REGISTRY: list[Any] = []

OPTIONS: dict[str, Any] = {
    "cache": True,  # on-disk cache (NUMBA_CACHE_DIR) so a restarted worker loads instead of compiling
    "nogil": True,  # kernels release the GIL: workers may run them from threads
    "fastmath": False,  # results must equal the NumPy/OpenCV references exactly
    "error_model": "numpy",  # no ZeroDivisionError checks inside loops
    "boundscheck": False,
}


def kernel(fn: F) -> F:
    """Compile `fn` with the project-wide numba options and register it for warmup."""
    compiled = numba.njit(**OPTIONS)(fn)
    REGISTRY.append(compiled)
    return compiled  # type: ignore[no-any-return]


def inline(fn: F) -> F:
    """A small helper of kernels, inlined into each caller at numba IR level (same options).

    Never called from Python, so it has no compiled signatures of its own and is not registered.
    """
    return numba.njit(inline="always", **OPTIONS)(fn)  # type: ignore[no-any-return]
