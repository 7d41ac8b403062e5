"""Load and validate pipeline YAML, reporting every error with its path (and YAML line)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lens.config.models import PipelineConfig

# Tags pydantic inserts in an error path for a discriminated union; they are not YAML keys.
# (kept in step with the tagged unions of lens.config.models and lens.config.tools)
_UNION_TAGS = {
    "synthetic", "folder", "video", "usb", "rtsp", "http", "continuous", "motion", "manual", "cron", "serial",
    "grayscale", "blur", "threshold", "morphology", "blob", "edge_detection", "locate",
    "pattern_matching", "math", "custom", "rect", "circle", "ellipse", "url", "mqtt",
}  # fmt: skip
_PATH_PREFIX = re.compile(r"^((?:[A-Za-z_][A-Za-z0-9_]*|\[\d+\])(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*): ")


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


def format_issue(source: str, issue: ConfigIssue) -> str:
    """`FILE:LINE: path: message`, the one format every command prints config errors in."""
    line = f":{issue.line}" if issue.line else ""
    return f"{source}{line}: {issue.path or '(top level)'}: {issue.message}"


class ConfigError(ValueError):
    """Invalid configuration; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = issues
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(i) for i in issues))

    def as_details(self) -> list[dict[str, Any]]:
        return [{"path": i.path, "message": i.message, "line": i.line} for i in self.issues]


def _join(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    if kind == "missing":
        return "required"
    if kind in ("extra_forbidden", "invalid_key"):
        return "unknown key"
    if kind == "finite_number":
        return f"must be a finite number (got {shown})"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[
            kind
        ]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound} (got {shown})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer (got {shown})"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number (got {shown})"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {shown})"
    if kind == "string_type":
        return f"must be a string (got {shown})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (got {type(value).__name__})"
    if kind == "list_type":
        return f"must be a list (got {type(value).__name__})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {shown})"
    if kind == "union_tag_invalid":
        word = "shape" if "'rect'" in str(ctx.get("expected_tags")) else "type"
        return f"unknown {word} {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return (
            "'type' is required"
            if isinstance(value, dict)
            else f"must be a mapping (got {type(value).__name__})"
        )
    if kind == "string_pattern_mismatch":
        return f"{shown} has characters that are not allowed (pattern {ctx.get('pattern')})"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _is_union_tag(loc: tuple[str | int, ...], i: int) -> bool:
    """True where loc[i] is the discriminator tag pydantic inserts after a tagged-union field:
    after `source`, `trigger` or `roi`, or after a list index under `tools` or `actions`."""
    part = loc[i]
    if not isinstance(part, str) or part not in _UNION_TAGS or i == 0:
        return False
    prev = loc[i - 1]
    if prev in ("source", "trigger", "roi"):
        return True
    return isinstance(prev, int) and i >= 2 and loc[i - 2] in ("tools", "actions")


def issues_from(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[ConfigIssue]:
    """Turn a pydantic ValidationError into path-precise issues."""
    out: list[ConfigIssue] = []
    for err in exc.errors():
        loc = list(prefix)
        raw = tuple(err["loc"])
        for i, part in enumerate(raw):
            if _is_union_tag(raw, i):  # the tag pydantic adds after a union field is not a YAML key
                continue
            loc.append(part)
        if err["type"] == "invalid_key" and loc:
            loc[-1] = str(loc[-1])  # a non-string key: name it as a key, not a list index
        base = _join(tuple(loc))
        # a validator may report several problems, one a line, each naming its field: "[1].expr: ..."
        for msg in _message(err).split("\n"):
            path = base
            m = _PATH_PREFIX.match(msg)
            if m:
                sub = m.group(1)
                path = f"{base}{'' if sub.startswith('[') or not base else '.'}{sub}"
                msg = msg[m.end() :]
            out.append(ConfigIssue(path, msg))
    return out


def _line_of(node: yaml.Node | None, path: str) -> int | None:
    """Line (1-based) of the YAML node at `path`, or of the nearest parent that exists."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", path):
        if isinstance(node, yaml.MappingNode) and not part.startswith("["):
            hit = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if hit is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = hit
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            idx = int(part[1:-1])
            if idx >= len(node.value):
                return line
            node = node.value[idx]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, path: str = "") -> list[ConfigIssue]:
    """YAML silently keeps the last of two equal keys; a pipeline must not lose a section that way."""
    out: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = getattr(k, "value", None)
            sub = f"{path}.{key}" if path else str(key)
            if key in seen:
                out.append(
                    ConfigIssue(
                        sub, "duplicate key (it would replace the earlier one)", k.start_mark.line + 1
                    )
                )
            seen.add(key)
            out += _duplicate_keys(v, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out += _duplicate_keys(v, f"{path}[{i}]")
    return out


def parse_yaml(text: str, source: str = "") -> tuple[Any, yaml.Node | None]:
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigIssue("", f"not valid YAML: {problem}", line)], source) from None
    dups = _duplicate_keys(tree)
    if dups:
        raise ConfigError(dups, source)
    return data, tree


def validate_data(
    data: Any,
    model: type[BaseModel] = PipelineConfig,
    source: str = "",
    tree: yaml.Node | None = None,
    base_dir: str | None = None,
) -> Any:
    """Validate parsed data against a config model; raises ConfigError listing every issue.
    Relative paths in it (sources, templates) resolve against `base_dir`."""
    if data is None:
        raise ConfigError([ConfigIssue("", "the file is empty")], source)
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue("", f"must be a mapping of sections (got {type(data).__name__})")], source
        )
    try:
        return model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        issues = [ConfigIssue(i.path, i.message, _line_of(tree, i.path)) for i in issues_from(e)]
        raise ConfigError(issues, source) from None


def load_pipeline_text(text: str, source: str = "<string>", base_dir: str | None = None) -> PipelineConfig:
    """Validate pipeline YAML text; relative paths in it resolve against `base_dir` (default: cwd)."""
    data, tree = parse_yaml(text, source)
    return validate_data(data, PipelineConfig, source, tree, base_dir)


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline file. Relative paths inside it resolve against its folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("", "file not found")], str(p)) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue("", "is a directory, not a pipeline file")], str(p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue("", f"not UTF-8 text (byte {e.start})")], str(p)) from None
    except OSError as e:
        raise ConfigError([ConfigIssue("", f"cannot read: {e.strerror}")], str(p)) from None
    return load_pipeline_text(text, str(p), str(p.parent.resolve()))
