"""The old machine's edits of its tool list (`config_tool`, `delete_tool` commands): pure functions
over the legacy tool JSON list; applying the result is the caller's.

A tool's id is its `id`, or its list index when it has none (as `translate` and the results say).
"""

from __future__ import annotations

from typing import Any


class ToolListError(ValueError):
    """An edit that cannot be made; the message says why."""


def parse_id(v: Any) -> int:
    """A tool id sent by the orchestrator (`int()` of it, as the old machine; booleans refused)."""
    n = _as_int(v)
    if n is None:
        raise ToolListError(f"tool id {v!r} is not an integer")
    return n


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return None


def tool_ids(tools: list[dict[str, Any]]) -> list[int | None]:
    """Each tool's id: its `id`, or its list index when it has none (None: an id that is not one)."""
    return [i if t.get("id") in (None, "") else _as_int(t.get("id")) for i, t in enumerate(tools)]


def upsert_tool(
    tools: list[dict[str, Any]], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """`config_tool`: the tool `params` (with `id` and `name`) replaces the tool with that id AND
    name (`updated`), else is appended (`added`); an id another tool has becomes max(ids) + 1.
    Returns (new list, the tool as stored, action)."""
    for key in ("id", "name"):
        if key not in params:
            raise ToolListError(f"{key} is missing")
    tool_id = parse_id(params["id"])
    ids = tool_ids(tools)
    tool = {**params, "id": tool_id}
    out = list(tools)
    at = next((i for i, t in enumerate(tools) if ids[i] == tool_id and t.get("name") == params["name"]), None)
    if at is not None:
        out[at] = tool
        return out, tool, "updated"
    if tool_id in ids:  # the id is another tool's: the next free one
        tool["id"] = 1 + max(i for i in ids if i is not None)
    out.append(tool)
    return out, tool, "added"


def remove_tool(tools: list[dict[str, Any]], tool_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`delete_tool`: (new list, the removed tool) without the first tool with id `tool_id`."""
    ids = tool_ids(tools)
    if tool_id not in ids:
        raise ToolListError(f"no tool with id {tool_id}")
    at = ids.index(tool_id)
    return tools[:at] + tools[at + 1 :], tools[at]
