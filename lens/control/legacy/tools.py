"""The old machine's tool JSON -> lens's native tools (SPEC §4b): translation only, no I/O.

`translate` turns the `inspection_config.tools` list an AnalyticLens orchestrator sends into a native
inspection section (one translator per legacy type: `translators`); `results.legacy_results` turns
a native result envelope back into the old machine's `tool_results` and `inspection_summary`;
`view.native_to_legacy` shows native tools (changed through /api/v1) in the legacy shape.

Reading the legacy JSON: list order is execution order (`order_index` is ignored); `tool_id` is the
tool's `id`, or its list index when it has none; values are read as `reading` says. Where lens
behaves differently from the old machine, the function that decides says so in its docstring; the
list is in the README ("Replacing an AnalyticLens Flask machine").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from lens.config.tools import TOOL_MODELS
from lens.control.legacy.model import Context, LegacyTool, LegacyToolError, Translation, limits_expr, slug
from lens.control.legacy.reading import Reader, read_roi
from lens.control.legacy.translators import TRANSLATORS
from lens.control.legacy.view import legacy_view, unchanged
from lens.inspect.expr import parse_expr

__all__ = ["LegacyTool", "LegacyToolError", "Translation", "translate"]


def _passthrough(
    r: Reader, lt: LegacyTool, ctx: Context, group: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The native tools a `native_to_legacy` entry carries (`native`), used as they are while its
    legacy keys are unchanged; None when they were edited (translate the legacy keys instead). A
    native-only type keeps its tool, with the edited name and ROI applied. A `native` that does not
    validate is the legacy tool's error."""
    for tool in group:
        _check_native(r, tool)
    kind = str(group[0].get("type"))
    view = legacy_view(group, {n: t.tool_id for t in ctx.done for n in t.native}, lt.tool_id)
    if not unchanged(r.cfg, view):
        if kind in TRANSLATORS or len(group) != 1:
            return None
        tool = dict(group[0])
        if (r.cfg.get("ROI") or {}) != view["ROI"]:
            tool["roi"] = read_roi(r) or {}
        if r.cfg.get("name") != view["name"]:
            tool["name"] = ctx.names.take(slug(lt.name) or kind, lt.tool_id)
        group = [tool]
    for tool in group:
        name = tool.get("name")
        if not isinstance(name, str) or not ctx.names.free(name):
            raise r.error("native.name", f"{name!r} is not a free tool name")
        ctx.names.used.add(name)
    lt.type = kind
    model = TOOL_MODELS.get(kind)
    first, pf = group[0]["name"], group[0].get("pass_fail")
    if kind == "math":
        boolean = parse_expr(str(group[0].get("expr", ""))).is_boolean
        lt.spec.update(operation=view["operation"], formula=view["formula"], boolean=boolean)
    elif kind in TRANSLATORS:  # the legacy translation of the view gives what results need (no names)
        try:
            TRANSLATORS[kind](Reader(r.index, r.name, view), lt, Context(ctx.ids, ctx.done))
        except LegacyToolError:  # a native value the legacy model cannot hold: report it natively
            lt.spec = {"native_only": True}
    if kind not in TRANSLATORS or lt.spec.get("native_only"):
        lt.spec.update(native_only=True, filter=model is not None and model.FILTER)
    lt.judged = isinstance(pf, dict) or kind == "locate" or bool(lt.spec.get("boolean"))
    if isinstance(pf, dict):
        lt.spec["pass_expr"] = limits_expr(first, pf)
    elif kind == "locate":
        lt.spec["pass_expr"] = f"{first}.found"
    else:
        lt.spec["pass_expr"] = f"({first}.value != 0)" if lt.spec.get("boolean") else None
    return group


def translate(tools: list[Any]) -> Translation:
    """The legacy tool list (as the old orchestrator sends it) -> native tools.

    Unknown tool types are refused with LegacyToolError (the old machine silently skipped them,
    so a typo ran an inspection without that tool), as are values lens cannot honour. Duplicate
    `id`s are refused (the old machine kept only the last result of each id).
    """
    if not isinstance(tools, list):
        raise LegacyToolError(f"tools: must be a list of tool objects, not {type(tools).__name__}")
    readers: list[Reader] = []
    ids: list[int] = []
    for i, cfg in enumerate(tools):
        name = str(cfg.get("name") or "") if isinstance(cfg, dict) else ""
        r = Reader(i, name or "?", cfg if isinstance(cfg, dict) else {})
        if not isinstance(cfg, dict):
            raise r.error("", f"must be an object, not {type(cfg).__name__}")
        tool_id = r.integer(cfg["id"], "id") if cfg.get("id") not in (None, "") else i
        if tool_id in ids:
            twin = ids.index(tool_id)
            raise r.error("id", f"{tool_id} is also the id of tools[{twin}] ({readers[twin].name})")
        readers.append(r)
        ids.append(tool_id)
    ctx = Context(ids)
    natives: list[dict[str, Any]] = []
    for r, tool_id in zip(readers, ids, strict=True):
        cfg = r.cfg
        kind = str(cfg.get("type") or "").strip().lower()
        group = cfg.get("native")
        group = [group] if isinstance(group, dict) else group
        if not (isinstance(group, list) and group and all(isinstance(t, dict) for t in group)):
            group = None
        name = r.name if r.name != "?" else f"{kind}_{tool_id}"
        lt = LegacyTool(dict(cfg), tool_id, name, kind, r.flag("inspec_pass_fail", False), [], r.index)
        produced = _passthrough(r, lt, ctx, group) if group is not None else None
        if produced is None:
            if kind not in TRANSLATORS:
                raise r.error(
                    "type", f"unknown tool type {cfg.get('type')!r} (known: {', '.join(TRANSLATORS)})"
                )
            produced = TRANSLATORS[kind](r, lt, ctx)
        for tool in produced:
            _check_native(r, tool)
        lt.native = [t["name"] for t in produced]
        ctx.done.append(lt)
        natives.extend(produced)
    return Translation(ctx.done, {"tools": natives})


def _check_native(r: Reader, tool: Mapping[str, Any]) -> None:
    """Validate one produced native tool, so a bad value is the legacy tool's error, not a reload's."""
    model = TOOL_MODELS.get(str(tool.get("type")))
    if model is None:
        raise r.error("native.type", f"unknown native tool type {tool.get('type')!r}")
    try:
        model.model_validate(tool)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise r.error("native" + (f".{where}" if where else ""), first["msg"]) from None
