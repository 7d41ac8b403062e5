"""Pipeline validation (lens/config/load.py, models.py): exact paths, messages and lines; `lens validate`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lens.config.load import ConfigError, ConfigIssue, load_pipeline, load_pipeline_text
from lens.config.models import ContinuousTrigger, FolderSource, SyntheticSource
from lens.config.tools import BlobTool

ROOT = Path(__file__).resolve().parents[2]
LENS = Path(sys.executable).parent / "lens"

Issue = tuple[str, str, int | None]


def issues_of(text: str) -> list[Issue]:
    """Validate YAML text that must be invalid; return its issues as (path, message, line)."""
    with pytest.raises(ConfigError) as info:
        load_pipeline_text(text, "p.yaml")
    return [(i.path, i.message, i.line) for i in info.value.issues]


def file_issues(path: Path) -> list[Issue]:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    return [(i.path, i.message, i.line) for i in info.value.issues]


def _tool(body: str) -> str:
    """One tool under inspection.tools (body indented 6, the tool's keys start at line 3)."""
    return "inspection:\n  tools:\n" + body


# --- one invalid thing per case: exact (path, message, line) ----------------------------------------------

BLOB = "    - name: b\n      type: blob\n"  # tool keys on lines 3-4; the next key is on line 5
MATH = "    - name: m\n      type: math\n"
NOT_ALLOWED = "has characters that are not allowed"
NOT_ENDPOINT = "is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)"
FUNCS = "(known: abs, max, min, round, sqrt)"
BLOB_MEASURES = "(count, largest_area, roi_area, total_area, value)"

INVALID: list[tuple[str, str, list[Issue]]] = [
    # wrong types
    (
        "string for int",
        "cameras:\n  - ring:\n      slots: abc\n",
        [("cameras[0].ring.slots", "must be an integer (got 'abc')", 3)],
    ),
    (
        "float for int",
        "inspection:\n  workers: 2.5\n",
        [("inspection.workers", "must be an integer (got 2.5)", 2)],
    ),
    (
        "string for float",
        "cameras:\n  - trigger:\n      type: continuous\n      interval_ms: fast\n",
        [("cameras[0].trigger.interval_ms", "must be a number (got 'fast')", 4)],
    ),
    (
        "string for bool",
        "cameras:\n  - source:\n      type: folder\n      path: x\n      loop: maybe\n",
        [("cameras[0].source.loop", "must be true or false (got 'maybe')", 5)],
    ),
    (
        "int for string",
        "outputs:\n  zmq:\n    bind: 5555\n",
        [("outputs.zmq.bind", "must be a string (got 5555)", 3)],
    ),
    ("null for string", "machine:\n  name:\n", [("machine.name", "must be a string (got None)", 2)]),
    ("list for mapping", "machine: [1, 2]\n", [("machine", "must be a mapping (got list)", 1)]),
    ("null for mapping", "machine:\n", [("machine", "must be a mapping (got NoneType)", 1)]),
    (
        "list for source",
        "cameras:\n  - source: [1]\n",
        [("cameras[0].source", "must be a mapping (got list)", 2)],
    ),
    ("string for tool", _tool("    - blob\n"), [("inspection.tools[0]", "must be a mapping (got str)", 3)]),
    ("mapping for list", "cameras: {a: 1}\n", [("cameras", "must be a list (got dict)", 1)]),
    (
        "mapping for tools",
        "inspection:\n  tools: {a: 1}\n",
        [("inspection.tools", "must be a list (got dict)", 2)],
    ),
    (
        "bad literal",
        "cameras:\n  - capture:\n      format: rgb\n",
        [("cameras[0].capture.format", "must be one of 'gray' or 'bgr' (got 'rgb')", 3)],
    ),
    (
        "bad roi shape",
        _tool(BLOB + "      roi: {shape: hexagon}\n"),
        [
            (
                "inspection.tools[0].roi",
                "unknown shape 'hexagon' (expected one of 'rect', 'circle', 'ellipse')",
                5,
            )
        ],
    ),
    (
        "circle roi without its fields",
        _tool(BLOB + "      roi: {shape: circle}\n"),
        [
            ("inspection.tools[0].roi.cx", "required", 5),
            ("inspection.tools[0].roi.cy", "required", 5),
            ("inspection.tools[0].roi.r", "required", 5),
        ],
    ),
    # unknown keys, at every level
    ("unknown top-level key", "bogus: 1\n", [("bogus", "unknown key", 1)]),
    ("unknown machine key", "machine:\n  idd: x\n", [("machine.idd", "unknown key", 2)]),
    ("unknown camera key", "cameras:\n  - foo: 1\n", [("cameras[0].foo", "unknown key", 2)]),
    (
        "unknown source key",
        "cameras:\n  - source:\n      type: synthetic\n      colour: red\n",
        [("cameras[0].source.colour", "unknown key", 4)],
    ),
    (
        "unknown folder source key",
        "cameras:\n  - source:\n      type: folder\n      path: x\n      recurse: true\n",
        [("cameras[0].source.recurse", "unknown key", 5)],
    ),
    (
        "unknown capture key",
        "cameras:\n  - capture:\n      fmt: gray\n",
        [("cameras[0].capture.fmt", "unknown key", 3)],
    ),
    (
        "unknown trigger key",
        "cameras:\n  - trigger:\n      type: continuous\n      every: 3\n",
        [("cameras[0].trigger.every", "unknown key", 4)],
    ),
    (
        "unknown ring key",
        "cameras:\n  - ring:\n      size: 3\n",
        [("cameras[0].ring.size", "unknown key", 3)],
    ),
    ("unknown inspection key", "inspection:\n  threads: 3\n", [("inspection.threads", "unknown key", 2)]),
    (
        "unknown tool key",
        _tool("    - name: g\n      type: grayscale\n      colour: 1\n"),
        [("inspection.tools[0].colour", "unknown key", 5)],
    ),
    (
        "unknown params key",
        _tool(BLOB + "      params:\n        thresh: 1\n"),
        [("inspection.tools[0].params.thresh", "unknown key", 6)],
    ),
    (
        "unknown grayscale params key",
        _tool("    - name: g\n      type: grayscale\n      params:\n        gamma: 2\n"),
        [("inspection.tools[0].params.gamma", "unknown key", 6)],
    ),
    (
        "unknown roi key",
        _tool(BLOB + "      roi:\n        r: 5\n"),
        [("inspection.tools[0].roi.r", "unknown key", 6)],
    ),
    (
        "unknown pass_fail key",
        _tool(BLOB + "      pass_fail:\n        minimum: 1\n"),
        [("inspection.tools[0].pass_fail.minimum", "unknown key", 6)],
    ),
    (
        "unknown pass_fail measure-limit key",
        _tool(BLOB + "      pass_fail:\n        measures:\n          count: {least: 1}\n"),
        [("inspection.tools[0].pass_fail.measures.count.least", "unknown key", 7)],
    ),
    ("unknown outputs key", "outputs:\n  kafka: {}\n", [("outputs.kafka", "unknown key", 2)]),
    ("unknown zmq key", "outputs:\n  zmq:\n    port: 1\n", [("outputs.zmq.port", "unknown key", 3)]),
    # out of bounds, below and above
    (
        "interval below",
        "cameras:\n  - trigger:\n      type: continuous\n      interval_ms: -5\n",
        [("cameras[0].trigger.interval_ms", "must be >= 0.0 (got -5)", 4)],
    ),
    (
        "interval above",
        "cameras:\n  - trigger:\n      type: continuous\n      interval_ms: 86400001\n",
        [("cameras[0].trigger.interval_ms", "must be <= 86400000.0 (got 86400001)", 4)],
    ),
    (
        "ring below",
        "cameras:\n  - ring:\n      slots: 2\n",
        [("cameras[0].ring.slots", "must be >= 3 (got 2)", 3)],
    ),
    (
        "ring above",
        "cameras:\n  - ring:\n      slots: 2000\n",
        [("cameras[0].ring.slots", "must be <= 1024 (got 2000)", 3)],
    ),
    (
        "width below",
        "cameras:\n  - source:\n      type: synthetic\n      width: 8\n",
        [("cameras[0].source.width", "must be >= 16 (got 8)", 4)],
    ),
    (
        "height above",
        "cameras:\n  - source:\n      type: synthetic\n      height: 16385\n",
        [("cameras[0].source.height", "must be <= 16384 (got 16385)", 4)],
    ),
    (
        "defect_rate above",
        "cameras:\n  - source:\n      type: synthetic\n      defect_rate: 1.5\n",
        [("cameras[0].source.defect_rate", "must be <= 1.0 (got 1.5)", 4)],
    ),
    (
        "seed above",
        "cameras:\n  - source:\n      type: synthetic\n      seed: 99999999999\n",
        [("cameras[0].source.seed", "must be <= 2147483647 (got 99999999999)", 4)],
    ),
    (
        "fps nan",
        "cameras:\n  - source:\n      type: synthetic\n      fps: .nan\n",
        [("cameras[0].source.fps", "must be a finite number (got nan)", 4)],
    ),
    (
        "fps inf",
        "cameras:\n  - source:\n      type: synthetic\n      fps: .inf\n",
        [("cameras[0].source.fps", "must be a finite number (got inf)", 4)],
    ),
    (
        "jpeg_quality above",
        "cameras:\n  - capture:\n      jpeg_quality: 101\n",
        [("cameras[0].capture.jpeg_quality", "must be <= 100 (got 101)", 3)],
    ),
    (
        "jpeg_quality below",
        "cameras:\n  - capture:\n      jpeg_quality: 0\n",
        [("cameras[0].capture.jpeg_quality", "must be >= 1 (got 0)", 3)],
    ),
    ("workers below", "inspection:\n  workers: 0\n", [("inspection.workers", "must be >= 1 (got 0)", 2)]),
    ("workers above", "inspection:\n  workers: 65\n", [("inspection.workers", "must be <= 64 (got 65)", 2)]),
    (
        "th_max above",
        _tool(BLOB + "      params:\n        th_max: 256\n"),
        [("inspection.tools[0].params.th_max", "must be <= 255 (got 256)", 6)],
    ),
    (
        "area_min below",
        _tool(BLOB + "      params:\n        area_min: -1\n"),
        [("inspection.tools[0].params.area_min", "must be >= 0 (got -1)", 6)],
    ),
    (
        "roi w below",
        _tool(BLOB + "      roi:\n        w: 0\n"),
        [("inspection.tools[0].roi.w", "must be >= 1 (got 0)", 6)],
    ),
    ("hwm below", "outputs:\n  zmq:\n    hwm: 0\n", [("outputs.zmq.hwm", "must be >= 1 (got 0)", 3)]),
    ("no cameras", "cameras: []\n", [("cameras", "must have at least 1 item(s)", 1)]),
    ("17 cameras", "cameras:\n" + "  - {}\n" * 17, [("cameras", "must have at most 16 item(s)", 2)]),
    (
        "machine id too long",
        "machine:\n  id: " + "a" * 65 + "\n",
        [("machine.id", "must be at most 64 characters", 2)],
    ),
    # missing required
    (
        "folder without path",
        "cameras:\n  - source:\n      type: folder\n",
        [("cameras[0].source.path", "required", 3)],
    ),
    (
        "video without path",
        "cameras:\n  - source:\n      type: video\n",
        [("cameras[0].source.path", "required", 3)],
    ),
    (
        "folder with empty path",
        "cameras:\n  - source:\n      type: folder\n      path: ''\n",
        [("cameras[0].source.path", "must not be empty", 4)],
    ),
    ("tool without name", _tool("    - type: blob\n"), [("inspection.tools[0].name", "required", 3)]),
    ("math without expr", _tool(MATH), [("inspection.tools[0].expr", "required", 3)]),
    (
        "math with empty expr",
        _tool(MATH + "      expr: ''\n"),
        [("inspection.tools[0].expr", "must not be empty", 5)],
    ),
    (
        "math with blank expr",
        _tool(MATH + "      expr: '   '\n"),
        [("inspection.tools[0].expr", "empty expression", 5)],
    ),
    # unknown / missing types
    (
        "unknown source type",
        "cameras:\n  - source:\n      type: gige\n",
        [
            (
                "cameras[0].source",
                "unknown type 'gige' (expected one of 'synthetic', 'folder', 'video', 'usb', 'rtsp', 'http')",
                3,
            )
        ],
    ),
    (
        "unknown trigger type",
        "cameras:\n  - trigger:\n      type: hardware\n",
        [
            (
                "cameras[0].trigger",
                "unknown type 'hardware' "
                "(expected one of 'continuous', 'motion', 'manual', 'cron', 'serial')",
                3,
            )
        ],
    ),
    (
        "unknown tool type",
        _tool("    - name: x\n      type: ocr\n"),
        [
            (
                "inspection.tools[0]",
                "unknown type 'ocr' (expected one of 'grayscale', 'blur', 'threshold', 'morphology', 'blob', "
                "'edge_detection', 'locate', 'pattern_matching', 'math', 'custom')",
                3,
            )
        ],
    ),
    ("tool without type", _tool("    - name: x\n"), [("inspection.tools[0]", "'type' is required", 3)]),
    # cross-field rules
    (
        "duplicate tool names",
        _tool("    - name: a\n      type: blob\n    - name: a\n      type: grayscale\n"),
        [("inspection.tools[1].name", "duplicate tool name 'a'", 5)],
    ),
    (
        "duplicate camera ids",
        "cameras:\n  - id: c\n  - id: c\n",
        [("cameras[1].id", "duplicate camera id 'c'", 3)],
    ),
    (
        "camera id equal to a default id",
        "cameras:\n  - id: cam1\n  - {}\n",
        [("cameras[1].id", "duplicate camera id 'cam1'", 3)],
    ),
    (
        "th_min > th_max",
        _tool(BLOB + "      params:\n        th_min: 200\n        th_max: 100\n"),
        [("inspection.tools[0].params", "th_min (200) is greater than th_max (100)", 6)],
    ),
    (
        "area_min > area_max",
        _tool(BLOB + "      params:\n        area_min: 200\n        area_max: 100\n"),
        [("inspection.tools[0].params", "area_min (200) is greater than area_max (100)", 6)],
    ),
    (
        "pass_fail min > max",
        _tool(BLOB + "      pass_fail:\n        min: 5\n        max: 1\n"),
        [("inspection.tools[0].pass_fail", "min (5.0) is greater than max (1.0)", 6)],
    ),
    (
        "pass_fail measure min > max",
        _tool(BLOB + "      pass_fail:\n        measures:\n          count: {min: 5, max: 1}\n"),
        [("inspection.tools[0].pass_fail.measures.count", "min (5.0) is greater than max (1.0)", 7)],
    ),
    (
        "pass_fail unknown measure",
        _tool(BLOB + "      pass_fail:\n        measures:\n          mean: {min: 1}\n"),
        [
            (
                "inspection.tools[0].pass_fail.measures",
                f"unknown measure 'mean' (known: {BLOB_MEASURES[1:]}",
                7,
            )
        ],
    ),
    (
        "pass_fail measure limits null",
        _tool(BLOB + "      pass_fail:\n        measures:\n          count:\n"),
        [("inspection.tools[0].pass_fail.measures.count", "must be a mapping (got NoneType)", 7)],
    ),
    (
        "pass_fail min not a number",
        _tool(BLOB + "      pass_fail:\n        min: lots\n"),
        [("inspection.tools[0].pass_fail.min", "must be a number (got 'lots')", 6)],
    ),
    # patterns
    (
        "bad zmq endpoint",
        "outputs:\n  zmq:\n    bind: localhost:5555\n",
        [("outputs.zmq.bind", f"'localhost:5555' {NOT_ENDPOINT}", 3)],
    ),
    (
        "bad zmq scheme",
        "outputs:\n  zmq:\n    bind: udp://127.0.0.1:5555\n",
        [("outputs.zmq.bind", f"'udp://127.0.0.1:5555' {NOT_ENDPOINT}", 3)],
    ),
    (
        "machine id with space and !",
        "machine:\n  id: 'vm 001!'\n",
        [("machine.id", f"'vm 001!' {NOT_ALLOWED} (pattern ^[A-Za-z0-9_.-]+$)", 2)],
    ),
    (
        "machine id with trailing newline",
        'machine:\n  id: "vm\\n"\n',
        [("machine.id", f"'vm\\n' {NOT_ALLOWED} (pattern ^[A-Za-z0-9_.-]+$)", 2)],
    ),
    (
        "tool name starting with a digit",
        _tool("    - name: 1bad\n      type: blob\n"),
        [("inspection.tools[0].name", f"'1bad' {NOT_ALLOWED} (pattern ^[A-Za-z_][A-Za-z0-9_]*$)", 3)],
    ),
    (
        "empty camera id",
        "cameras:\n  - id: ''\n",
        [("cameras[0].id", f"'' {NOT_ALLOWED} (pattern ^[A-Za-z_][A-Za-z0-9_]*$)", 2)],
    ),
    # math expressions
    (
        "math syntax error",
        _tool(MATH + "      expr: '1 + * 2'\n"),
        [("inspection.tools[0].expr", "expected a number, tool or '(' at column 5, found '*'", 5)],
    ),
    (
        "math unknown function",
        _tool(MATH + "      expr: 'pow(2, 3)'\n"),
        [("inspection.tools[0].expr", f"unknown function 'pow' at column 1 {FUNCS}", 5)],
    ),
    (
        "math names an unknown tool",
        _tool(MATH + "      expr: ghost > 1\n"),
        [("inspection.tools[0].expr", "'ghost' names no tool (tools run in list order)", 5)],
    ),
    (
        "math names a later tool",
        _tool(MATH + "      expr: b.count > 1\n" + BLOB),
        [("inspection.tools[0].expr", "'b' names a later tool (tools run in list order)", 5)],
    ),
    (
        "math names an unknown measure",
        _tool(BLOB + MATH + "      expr: b.mean > 1\n"),
        [("inspection.tools[1].expr", f"'b.mean' is not a measure {BLOB_MEASURES}", 7)],
    ),
    (
        "math names a dunder measure",
        _tool(BLOB + MATH + "      expr: b.__class__\n"),
        [("inspection.tools[1].expr", f"'b.__class__' is not a measure {BLOB_MEASURES}", 7)],
    ),
    # YAML-level problems
    ("not YAML", "a: [1, 2", [("", "not valid YAML: expected ',' or ']', but got '<stream end>'", 1)]),
    (
        "tab indentation",
        "machine:\n\tid: a\n",
        [("", "not valid YAML: found character '\\t' that cannot start any token", 2)],
    ),
    (
        "bad indentation",
        "machine:\n  id: a\n name: b\n",
        [("", "not valid YAML: expected <block end>, but found '<block mapping start>'", 3)],
    ),
    (
        "python tag refused",
        "machine: !!python/object:os.system {}\n",
        [
            (
                "",
                "not valid YAML: could not determine a constructor for the tag "
                "'tag:yaml.org,2002:python/object:os.system'",
                1,
            )
        ],
    ),
    ("YAML list", "- 1\n- 2\n", [("", "must be a mapping of sections (got list)", None)]),
    ("YAML scalar", "42\n", [("", "must be a mapping of sections (got int)", None)]),
    ("YAML string", "hello\n", [("", "must be a mapping of sections (got str)", None)]),
    ("empty text", "", [("", "the file is empty", None)]),
    ("only a comment", "# nothing here\n", [("", "the file is empty", None)]),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in INVALID])
def test_invalid_reports_exact_path_message_and_line(text: str, expected: list[Issue]) -> None:
    assert issues_of(text) == expected


def test_config_error_message_and_details() -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline_text("machine:\n  idd: x\n", "line3.yaml")
    err = info.value
    assert str(err) == "line3.yaml: line 2: machine.idd: unknown key"
    assert err.source == "line3.yaml"
    assert err.as_details() == [{"path": "machine.idd", "message": "unknown key", "line": 2}]
    assert isinstance(err, ValueError)


def test_config_issue_str_top_level_without_line() -> None:
    assert str(ConfigIssue("", "the file is empty")) == "(top level): the file is empty"
    assert str(ConfigIssue("a.b", "unknown key", 7)) == "line 7: a.b: unknown key"


def test_every_error_in_a_file_is_reported() -> None:
    text = (
        "machine:\n"  # 1
        "  id: 'bad id'\n"  # 2
        "  extra: 1\n"  # 3
        "cameras:\n"  # 4
        "  - ring: {slots: 1}\n"  # 5
        "    trigger: {type: continuous, interval_ms: -1}\n"  # 6
        "inspection:\n"  # 7
        "  workers: 0\n"  # 8
        "  tools:\n"  # 9
        "    - {name: b, type: blob, params: {th_min: 300}}\n"  # 10
        "    - {name: m, type: math, expr: '1 +'}\n"  # 11
        "outputs:\n"  # 12
        "  zmq: {bind: nope, hwm: 0}\n"  # 13
    )
    got = issues_of(text)
    assert len(got) == 9
    assert sorted(got, key=lambda i: (i[2] or 0, i[0])) == [
        ("machine.id", "'bad id' has characters that are not allowed (pattern ^[A-Za-z0-9_.-]+$)", 2),
        ("machine.extra", "unknown key", 3),
        ("cameras[0].ring.slots", "must be >= 3 (got 1)", 5),
        ("cameras[0].trigger.interval_ms", "must be >= 0.0 (got -1)", 6),
        ("inspection.workers", "must be >= 1 (got 0)", 8),
        ("inspection.tools[0].params.th_min", "must be <= 255 (got 300)", 10),
        (
            "inspection.tools[1].expr",
            "expected a number, tool or '(' at column 4, found end of expression",
            11,
        ),
        ("outputs.zmq.bind", "'nope' is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)", 13),
        ("outputs.zmq.hwm", "must be >= 1 (got 0)", 13),
    ]


def test_errors_in_two_cameras_are_both_reported() -> None:
    text = "cameras:\n  - ring: {slots: 0}\n  - capture: {format: rgb}\n  - {}\n"
    assert issues_of(text) == [
        ("cameras[0].ring.slots", "must be >= 3 (got 0)", 2),
        ("cameras[1].capture.format", "must be one of 'gray' or 'bgr' (got 'rgb')", 3),
    ]


# --- valid files ----------------------------------------------------------------------------------------


def test_empty_mapping_gives_every_default() -> None:
    cfg = load_pipeline_text("{}\n")
    assert cfg.machine.id == "vm_001"
    assert cfg.machine.name == ""
    assert len(cfg.cameras) == 1
    cam = cfg.cameras[0]
    assert cam.id == "cam0"
    assert isinstance(cam.source, SyntheticSource)
    assert (cam.source.type, cam.source.width, cam.source.height) == ("synthetic", 640, 480)
    assert (cam.source.fps, cam.source.seed, cam.source.defect_rate, cam.source.parts) == (0, 0, 0.1, 4)
    assert (cam.capture.format, cam.capture.jpeg_quality) == ("gray", 80)
    assert isinstance(cam.trigger, ContinuousTrigger)
    assert (cam.trigger.type, cam.trigger.interval_ms) == ("continuous", 0)
    assert cam.ring.slots == 16
    assert cfg.inspection.workers == 2
    assert cfg.inspection.tools == []
    assert cfg.outputs.zmq.bind == "tcp://127.0.0.1:8711"
    assert cfg.outputs.zmq.hwm == 10000


def test_cameras_get_default_ids_by_index() -> None:
    cfg = load_pipeline_text("cameras:\n  - {}\n  - {id: top}\n  - {}\n")
    assert [c.id for c in cfg.cameras] == ["cam0", "top", "cam2"]


def test_full_tool_chain_is_accepted() -> None:
    cfg = load_pipeline_text(
        "inspection:\n"
        "  tools:\n"
        "    - {name: brightness, type: grayscale, method: luminance, roi: {x: 0, y: 0, w: 640, h: 480},\n"
        "       pass_fail: {min: 40, max: 220}}\n"
        "    - {name: parts, type: blob, params: {th_min: 128, th_max: 255, area_min: 50},\n"
        "       pass_fail: {min: 4, max: 4, measures: {total_area: {min: 100}}}}\n"
        "    - {name: ok, type: math, expr: 'parts.count * 2 <= 10 and abs(brightness - 100) < 20'}\n"
    )
    names = [t.name for t in cfg.inspection.tools]
    assert names == ["brightness", "parts", "ok"]
    blob = cfg.inspection.tools[1]
    assert isinstance(blob, BlobTool)
    assert blob.params.area_min == 50
    assert blob.pass_fail is not None
    assert blob.pass_fail.measures["total_area"].min == 100
    assert blob.pass_fail.check(4) is True
    assert blob.pass_fail.check(5) is False


def test_equal_bands_are_accepted() -> None:
    cfg = load_pipeline_text(
        _tool(
            "    - name: b\n      type: blob\n"
            "      params: {th_min: 7, th_max: 7, area_min: 9, area_max: 9}\n"
            "      pass_fail: {min: 3, max: 3}\n"
        )
    )
    tool = cfg.inspection.tools[0]
    assert isinstance(tool, BlobTool)
    params = tool.params
    assert (params.th_min, params.th_max, params.area_min, params.area_max) == (7, 7, 9, 9)


def test_relative_folder_path_resolves_against_the_pipeline_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "lines" / "l3"
    sub.mkdir(parents=True)
    (sub / "p.yaml").write_text(
        "cameras:\n"
        "  - source: {type: folder, path: images}\n"
        "  - source: {type: folder, path: ../shared/imgs}\n"
        f"  - source: {{type: video, path: {tmp_path / 'clip.mp4'}}}\n"
        "  - source: {type: video, path: clip.mp4}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_pipeline(Path("..") / "lines" / "l3" / "p.yaml")
    paths = [getattr(c.source, "path", None) for c in cfg.cameras]
    assert paths == [
        str((sub / "images").resolve()),
        str((tmp_path / "lines" / "shared" / "imgs").resolve()),
        str(tmp_path / "clip.mp4"),
        str((sub / "clip.mp4").resolve()),
    ]
    assert isinstance(cfg.cameras[0].source, FolderSource)


def test_text_loading_leaves_relative_paths_alone() -> None:
    cfg = load_pipeline_text("cameras:\n  - source: {type: folder, path: images}\n")
    assert isinstance(cfg.cameras[0].source, FolderSource)
    assert cfg.cameras[0].source.path == "images"


# --- file-level problems --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert file_issues(tmp_path / "nope.yaml") == [("", "file not found", None)]


def test_directory(tmp_path: Path) -> None:
    assert file_issues(tmp_path) == [("", "is a directory, not a pipeline file", None)]


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_bytes(b"")
    assert file_issues(p) == [("", "the file is empty", None)]


def test_non_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"machine:\n  name: caf\xe9\n")
    assert file_issues(p) == [("", "not UTF-8 text (byte 20)", None)]


def test_file_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: \(top level\): file not found$") as info:
        load_pipeline(p)
    assert info.value.source == str(p)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbfmachine: {id: bom_1}\n")
    assert load_pipeline(p).machine.id == "bom_1"


def test_second_yaml_document_is_refused() -> None:
    assert issues_of("machine: {id: a}\n---\nmachine: {id: b}\n") == [
        ("", "not valid YAML: but found another document", 2)
    ]


# --- once bugs, now fixed ------------------------------------------------------------------


def test_type_may_be_omitted_where_it_has_a_default() -> None:
    cfg = load_pipeline_text("cameras:\n  - trigger: {interval_ms: 100}\n    source: {width: 800}\n")
    assert cfg.cameras[0].trigger.interval_ms == 100
    assert isinstance(cfg.cameras[0].source, SyntheticSource)
    assert cfg.cameras[0].source.width == 800


def test_boolean_is_not_an_integer() -> None:
    assert issues_of("inspection:\n  workers: true\n") == [
        ("inspection.workers", "must be an integer (got True)", 2)
    ]


def test_duplicate_yaml_key_is_an_error() -> None:
    with pytest.raises(ConfigError):
        load_pipeline_text("machine: {id: a}\nmachine: {id: b}\n")


def test_nan_pass_fail_limit_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"pass_fail\.min"):
        load_pipeline_text(_tool("    - name: b\n      type: blob\n      pass_fail: {min: .nan}\n"))


def test_tcp_endpoint_without_port_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"outputs\.zmq\.bind"):
        load_pipeline_text("outputs:\n  zmq: {bind: 'tcp://127.0.0.1'}\n")


def test_non_string_key_path_is_not_a_list_index() -> None:
    assert issues_of("1: 2\n") == [("1", "unknown key", 1)]


def test_every_duplicate_tool_name_is_reported() -> None:
    got = issues_of(
        _tool(
            "    - {name: a, type: blob}\n    - {name: a, type: blob}\n"
            "    - {name: b, type: blob}\n    - {name: b, type: blob}\n"
        )
    )
    assert got == [
        ("inspection.tools[1].name", "duplicate tool name 'a'", 4),
        ("inspection.tools[3].name", "duplicate tool name 'b'", 6),
    ]


def test_duplicate_camera_ids_reported_alongside_other_errors() -> None:
    got = issues_of("machine: {id: 'bad id'}\ncameras:\n  - id: c\n  - id: c\n")
    assert ("cameras[1].id", "duplicate camera id 'c'", 4) in got
    assert len(got) == 2


def test_math_self_reference_message() -> None:
    [(path, message, line)] = issues_of(_tool("    - name: m\n      type: math\n      expr: m > 1\n"))
    assert (path, line) == ("inspection.tools[0].expr", 5)
    assert "later" not in message


# --- every shipped pipeline validates -------------------------------------------------------------------

SHIPPED = sorted([*(ROOT / "pipelines").glob("*.yaml"), *(ROOT / "pipelines").glob("*.yml")])


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in SHIPPED]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no pipelines/*.yaml yet"), id="none")],
)
def test_shipped_pipeline_is_valid(path: Path) -> None:
    cfg = load_pipeline(path)
    assert len(cfg.cameras) >= 1
    assert len({c.id for c in cfg.cameras}) == len(cfg.cameras)


# --- `lens validate` ------------------------------------------------------------------------------------

LINE_FORMAT = re.compile(
    r"^(?P<file>[^:]+)(?::(?P<line>\d+))?: (?P<path>\(top level\)|[\w.\[\]]+): (?P<msg>.+)$"
)


def run_validate(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LENS), "validate", *files], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_valid_file(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(
        "inspection:\n  workers: 3\n  tools:\n    - {name: g, type: grayscale}\n"
    )
    proc = run_validate(tmp_path, "ok.yaml")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "ok.yaml: OK (1 camera(s), 1 tool(s), 3 worker(s))\n"


def test_cli_invalid_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("cameras:\n  - ring: {slots: 1}\nbogus: 1\n")
    proc = run_validate(tmp_path, "bad.yaml")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "bad.yaml:2: cameras[0].ring.slots: must be >= 3 (got 1)",
        "bad.yaml:3: bogus: unknown key",
    ]
    assert all(LINE_FORMAT.match(line) for line in proc.stderr.splitlines())


def test_cli_several_files_never_trace_back(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("{}\n")
    (tmp_path / "bad.yaml").write_text("machine:\n  id: 'a b'\n")
    (tmp_path / "broken.yaml").write_text("a: [1, 2")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "latin1.yaml").write_bytes(b"\xff\xfe")
    (tmp_path / "adir").mkdir()
    files = [
        "ok.yaml",
        "bad.yaml",
        "broken.yaml",
        "list.yaml",
        "latin1.yaml",
        "adir",
        "missing.yaml",
        "ok.yaml",
    ]
    proc = run_validate(tmp_path, *files)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["ok.yaml: OK (1 camera(s), 0 tool(s), 2 worker(s))"] * 2
    lines = proc.stderr.splitlines()
    assert lines == [
        "bad.yaml:2: machine.id: 'a b' has characters that are not allowed (pattern ^[A-Za-z0-9_.-]+$)",
        "broken.yaml:1: (top level): not valid YAML: expected ',' or ']', but got '<stream end>'",
        "list.yaml: (top level): must be a mapping of sections (got list)",
        "latin1.yaml: (top level): not UTF-8 text (byte 0)",
        "adir: (top level): is a directory, not a pipeline file",
        "missing.yaml: (top level): file not found",
    ]
    assert [m.group("file") for m in map(LINE_FORMAT.match, lines) if m] == [
        "bad.yaml",
        "broken.yaml",
        "list.yaml",
        "latin1.yaml",
        "adir",
        "missing.yaml",
    ]


def test_cli_all_valid_files_exit_zero(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("{}\n")
    (tmp_path / "b.yaml").write_text("cameras:\n  - {}\n  - {}\ninspection: {workers: 1}\n")
    proc = run_validate(tmp_path, "a.yaml", "b.yaml")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "a.yaml: OK (1 camera(s), 0 tool(s), 2 worker(s))",
        "b.yaml: OK (2 camera(s), 0 tool(s), 1 worker(s))",
    ]


def test_rtsp_password_needs_a_user_name() -> None:
    text = "cameras: [{source: {type: rtsp, vendor: hikvision, host: h, password_env: CAM_PW}}]\n"
    assert issues_of(text) == [
        ("cameras[0].source.user", "required with password_env (a password needs a user name)", 1)
    ]
    load_pipeline_text("cameras: [{source: {type: rtsp, url: 'rtsp://op@h/live', password_env: CAM_PW}}]\n")
