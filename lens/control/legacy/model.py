"""The legacy tool model shared by translation (`tools`, `translators`), results (`results`) and the
legacy view of native tools (`view`): what one legacy tool became, and the naming of native tools."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNLIMITED = 1e12  # the UI's and Django's "no limit" for area_max and the test maxima
EMPTY_AREA = 2**31  # a blob area_min no blob reaches (frames are at most 16384 x 16384 = 2**28 px)
MAX_BLOBS = 10000  # blobs listed per result (the old machine listed all of them)
FILTERS = ("grayscale", "blur", "threshold", "morphology")
_KEYWORDS = {"and", "or", "not", "true", "false"}


class LegacyToolError(ValueError):
    """A legacy tool lens cannot translate; the message names the tool (index and name) and the
    field: `tools[2] (blob_1).th_min: must be a number 0..255, not 'abc'`."""


@dataclass
class LegacyTool:
    """One legacy tool: its config as stored (returned unchanged by GET /api/inspection_config) and
    the native tools it became (several, e.g. morphology open + close, or none)."""

    config: dict[str, Any]
    tool_id: int
    name: str
    type: str
    inspec_pass_fail: bool
    native: list[str]
    index: int = 0  # position in the legacy list
    judged: bool = False  # reports true/false as pass_fail (else null while it passes)
    spec: dict[str, Any] = field(default_factory=dict, repr=False)  # normalised values for results


@dataclass
class Translation:
    """Legacy tools and the native inspection section `{"tools": [...]}` they became."""

    tools: list[LegacyTool]
    native: dict[str, Any]

    def owner(self, native_name: str) -> LegacyTool | None:
        """The legacy tool a native tool came from."""
        return next((t for t in self.tools if native_name in t.native), None)


def slug(name: str) -> str:
    """A legacy tool name as a native identifier (ASCII, `_` for the rest, at most 64 chars)."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_")
    s = re.sub(r"_+", "_", s)[:64]
    return f"t_{s}"[:64] if s[:1].isdigit() else s


class Names:
    """Native tool names: valid identifiers, unique, never an expression keyword."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def free(self, name: str) -> bool:
        return name not in self.used and name not in _KEYWORDS

    def take(self, base: str, tool_id: int) -> str:
        """`base`, else `base_<tool_id>`, else `base_<tool_id>_<n>`."""
        name = base = base[:64]
        if not self.free(name):
            name = with_id = f"{base[:40]}_{tool_id}".replace("-", "m")
            n = 2
            while not self.free(name):
                name, n = f"{with_id}_{n}", n + 1
        self.used.add(name)
        return name


class Context:
    """One translation in progress: every tool's id, the native names taken, the tools done."""

    def __init__(self, ids: list[int], done: list[LegacyTool] | None = None) -> None:
        self.ids = ids  # every tool's tool_id, in list order
        self.names = Names()
        self.done: list[LegacyTool] = [] if done is None else done  # translated so far, in order


def limits_expr(ref: str, pass_fail: Mapping[str, Any]) -> str:
    """A native `pass_fail` (limits on `value` and on named measures) of tool `ref` as one test
    expression, for formulas that read the legacy `pass_fail`."""
    parts = []
    for measure, lim in (("value", pass_fail), *(pass_fail.get("measures") or {}).items()):
        for key, op in (("min", ">="), ("max", "<=")):
            if lim.get(key) is not None:
                parts.append(f"{ref}.{measure} {op} {float(lim[key])!r}")
    return f"({' and '.join(parts)})" if parts else "1"
