"""Malformed inspection tool configs (lens/config/tools.py, models.py): each is a ConfigError whose issue
names the tool and the field, with its exact path, message and YAML line; and template paths resolve
against the pipeline file's folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lens.config.load import ConfigError, load_pipeline, load_pipeline_text
from lens.config.tools import CustomTool, PatternTool
from lens.inspect.runner import ToolChain

SEED = 515  # the random template images below come from this seed

Issue = tuple[str, str, int | None]


def issues_of(text: str, base_dir: Path | None = None) -> list[Issue]:
    """Validate YAML text that must be invalid; its issues as (path, message, line)."""
    with pytest.raises(ConfigError) as info:
        load_pipeline_text(text, "p.yaml", None if base_dir is None else str(base_dir))
    return [(i.path, i.message, i.line) for i in info.value.issues]


def tools(body: str, cameras: str = "") -> str:
    """`body` under inspection.tools, after `cameras` (the first tool's keys start on line 3 when there
    are no cameras)."""
    return cameras + "inspection:\n  tools:\n" + body


def random_image(path: Path, h: int = 40, w: int = 60) -> Path:
    img = np.random.default_rng(SEED).integers(0, 256, (h, w), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def case_id(v: object) -> str | None:
    """`blur:params.ksize`-style ids for YAML tool bodies (the type, then the first key after it)."""
    if not isinstance(v, str) or "type:" not in v:
        return None
    lines = [x.strip() for x in v.splitlines()]
    kind = lines[1].removeprefix("type: ")
    rest = lines[2].split(":")[0] if len(lines) > 2 else "bare"
    return f"{kind}:{rest}"


PATTERN = "    - name: pm\n      type: pattern_matching\n"  # lines 3-4
CAM_640 = "cameras:\n  - id: cam0\n    source: {type: synthetic, width: 640, height: 480}\n"  # lines 1-3


# --- pattern_matching templates ----------------------------------------------------------------------------


def test_missing_template_file(tmp_path: Path) -> None:
    text = tools(PATTERN + "      params:\n        template: missing.png\n")
    assert issues_of(text, tmp_path) == [
        (
            "inspection.tools[0].params.template",
            f"template file '{tmp_path / 'missing.png'}' does not exist",
            6,
        )
    ]
    absent = tmp_path / "elsewhere" / "t.png"
    assert issues_of(tools(PATTERN + f"      params: {{template: '{absent}'}}\n")) == [
        ("inspection.tools[0].params.template", f"template file '{absent}' does not exist", 5)
    ]


def test_template_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    assert issues_of(tools(PATTERN + "      params: {template: assets}\n"), tmp_path) == [
        ("inspection.tools[0].params.template", f"template file '{tmp_path / 'assets'}' does not exist", 5)
    ]


BAD_TEMPLATES = [
    ("garbage.png", "template file '{path}' is not a readable image", ""),
    ("flat.png", "template '{path}' is flat (one gray level): it cannot be correlated", ""),
    (
        "t.png",
        "region {{x: 50, y: 0, w: 20, h: 10}} is outside the 60x40 image '{path}'",
        "        region: {x: 50, y: 0, w: 20, h: 10}\n",
    ),
    (
        "t.png",
        "region {{x: -1, y: 0, w: None, h: None}} is outside the 60x40 image '{path}'",
        "        region: {x: -1, y: 0}\n",
    ),
    ("t.png", "template '{path}' is 50x1: at least 2x2 pixels needed", "        region: {x: 10, y: 39}\n"),
]


def write_bad_templates(folder: Path) -> None:
    # a PNG signature, then noise
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    assert cv2.imwrite(str(folder / "flat.png"), np.full((20, 30), 7, np.uint8))
    random_image(folder / "t.png")


@pytest.mark.parametrize(
    ("file", "message", "extra"),
    BAD_TEMPLATES,
    ids=["garbage", "flat", "region_outside", "region_negative", "region_one_row"],
)
def test_unusable_template_names_the_tool_and_the_file(
    tmp_path: Path, file: str, message: str, extra: str
) -> None:
    write_bad_templates(tmp_path)
    text = tools(PATTERN + "      params:\n        template: " + file + "\n" + extra)
    [(path, got, line)] = issues_of(text, tmp_path)
    assert got == message.format(path=tmp_path.resolve() / file)
    assert path.startswith("inspection.tools[0].params")
    assert line == (7 if path.endswith(".region") else 6)  # each problem at its own field


@pytest.mark.parametrize(("file", "message", "extra"), BAD_TEMPLATES[:3], ids=["garbage", "flat", "region"])
def test_unusable_template_is_reported_at_its_field(
    tmp_path: Path, file: str, message: str, extra: str
) -> None:
    write_bad_templates(tmp_path)
    text = tools(PATTERN + "      params:\n        template: " + file + "\n" + extra)
    field = "region" if extra else "template"
    [(path, _, line)] = issues_of(text, tmp_path)
    assert (path, line) == (f"inspection.tools[0].params.{field}", 7 if extra else 6)


def test_template_larger_than_the_roi_on_a_camera_of_known_size(tmp_path: Path) -> None:
    random_image(tmp_path / "t.png", h=40, w=60)
    body = PATTERN + "      roi: {x: 0, y: 0, w: 50, h: 50}\n      params:\n        template: t.png\n"
    assert issues_of(tools(body, CAM_640), tmp_path) == [
        (
            "inspection.tools[0].params.template",
            "the 60x40 template is larger than the 50x50 search region on camera cam0",
            10,
        )
    ]
    # the same ROI where the frame clips it: 640 - 600 = 40 px wide
    body = PATTERN + "      roi: {x: 600, y: 0, w: 100, h: 100}\n      params:\n        template: t.png\n"
    assert issues_of(tools(body, CAM_640), tmp_path) == [
        (
            "inspection.tools[0].params.template",
            "the 60x40 template is larger than the 40x100 search region on camera cam0",
            10,
        )
    ]
    # a camera of unknown frame size (a folder of images) cannot be checked: accepted
    folder = "cameras:\n  - source: {type: folder, path: imgs}\n"
    body = PATTERN + "      roi: {x: 0, y: 0, w: 50, h: 50}\n      params:\n        template: t.png\n"
    cfg = load_pipeline_text(tools(body, folder), "p.yaml", str(tmp_path))
    assert cfg.inspection.tools[0].roi.w == 50


def test_relative_template_resolves_against_the_pipeline_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = tmp_path / "lines" / "l3"
    (line / "assets").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    frame = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    assert cv2.imwrite(str(line / "assets" / "t.png"), frame[30:60, 50:90])
    (line / "p.yaml").write_text(
        "cameras:\n  - source: {type: synthetic, width: 160, height: 120}\n"
        + tools(PATTERN + "      params: {template: assets/t.png, min_score: 0.99}\n")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_pipeline(Path("..") / "lines" / "l3" / "p.yaml")
    tool = cfg.inspection.tools[0]
    assert isinstance(tool, PatternTool)
    assert tool.params.template == str((line / "assets" / "t.png").resolve())
    # the chain finds it from any working directory
    results, passed = ToolChain(cfg.inspection).run(frame)
    assert (results["pm"]["measures"]["x"], results["pm"]["measures"]["y"], passed) == (50, 30, True)
    # a missing relative template names the path it was looked for at
    (line / "q.yaml").write_text(tools(PATTERN + "      params: {template: assets/none.png}\n"))
    with pytest.raises(ConfigError) as info:
        load_pipeline(Path("..") / "lines" / "l3" / "q.yaml")
    assert [(i.path, i.message, i.line) for i in info.value.issues] == [
        (
            "inspection.tools[0].params.template",
            f"template file '{line.resolve() / 'assets' / 'none.png'}' does not exist",
            5,
        )
    ]
    # text with no base folder resolves against the working directory
    (elsewhere / "assets").mkdir()
    random_image(elsewhere / "assets" / "t.png")
    cfg = load_pipeline_text(tools(PATTERN + "      params: {template: assets/t.png}\n"))
    assert cfg.inspection.tools[0].params.template == str((elsewhere / "assets" / "t.png").resolve())


# --- ROIs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roi", "frame"),
    [
        ("{x: 640, y: 0}", "640x480"),
        ("{x: -100, y: 10, w: 100, h: 50}", "640x480"),
        ("{x: 10, y: 480, w: 5, h: 5}", "640x480"),
        ("{shape: circle, cx: 700, cy: 100, r: 50}", "640x480"),
        ("{shape: ellipse, cx: 100, cy: -60, rx: 80, ry: 20, angle: 10}", "640x480"),
    ],
)
def test_roi_wholly_outside_a_known_frame(roi: str, frame: str) -> None:
    body = "    - name: g\n      type: grayscale\n      roi: " + roi + "\n"
    assert issues_of(tools(body, CAM_640)) == [
        ("inspection.tools[0].roi", f"lies outside the {frame} frame of camera cam0", 8)
    ]


def test_roi_outside_only_one_of_two_cameras() -> None:
    cams = (
        "cameras:\n  - id: top\n    source: {type: synthetic, width: 640, height: 480}\n"
        "  - id: side\n    source: {type: synthetic, width: 320, height: 240}\n"
    )
    body = (
        "    - name: g\n      type: grayscale\n"
        "    - name: b\n      type: blob\n      roi: {x: 400, y: 10, w: 50, h: 50}\n"
    )
    assert issues_of(tools(body, cams)) == [
        ("inspection.tools[1].roi", "lies outside the 320x240 frame of camera side", 12)
    ]


def test_roi_outside_the_default_camera() -> None:
    # no cameras: the default synthetic camera, 640x480, cam0
    assert issues_of(tools("    - name: g\n      type: grayscale\n      roi: {x: 0, y: 500}\n")) == [
        ("inspection.tools[0].roi", "lies outside the 640x480 frame of camera cam0", 5)
    ]


def test_circle_with_no_pixel_in_a_known_frame_is_rejected() -> None:
    # the box (-18, -18)..(3, 3) overlaps the frame's corner; the circle stops 1.3 px short of pixel (0, 0)
    body = "    - name: g\n      type: grayscale\n      roi: {shape: circle, cx: -8, cy: -8, r: 10}\n"
    assert issues_of(tools(body, CAM_640)) == [
        ("inspection.tools[0].roi", "lies outside the 640x480 frame of camera cam0", 8)
    ]


@pytest.mark.parametrize(
    ("roi", "issues"),
    [
        ("{shape: circle, cx: 10, cy: 10}", [("inspection.tools[0].roi.r", "required", 5)]),
        ("{shape: circle, cx: 10, cy: 10, r: 0}", [("inspection.tools[0].roi.r", "must be >= 1 (got 0)", 5)]),
        (
            "{shape: circle, cx: 10.5, cy: 10, r: 4}",
            [("inspection.tools[0].roi.cx", "must be an integer (got 10.5)", 5)],
        ),
        (
            "{shape: ellipse, cx: 10, cy: 10, rx: -5, ry: 3}",
            [("inspection.tools[0].roi.rx", "must be >= 1 (got -5)", 5)],
        ),
        ("{shape: ellipse, cx: 10, cy: 10, rx: 5}", [("inspection.tools[0].roi.ry", "required", 5)]),
        (
            "{shape: ellipse, cx: 10, cy: 10, rx: 5, ry: 3, angle: 400}",
            [("inspection.tools[0].roi.angle", "must be <= 360.0 (got 400)", 5)],
        ),
        ("{shape: circle, cx: 10, cy: 10, r: 3, w: 5}", [("inspection.tools[0].roi.w", "unknown key", 5)]),
        (
            "{shape: ellipse, cx: 10, cy: 10, rx: 5, ry: 3, r: 4}",
            [("inspection.tools[0].roi.r", "unknown key", 5)],
        ),
    ],
)
def test_malformed_shaped_roi(roi: str, issues: list[Issue]) -> None:
    assert issues_of(tools("    - name: g\n      type: grayscale\n      roi: " + roi + "\n")) == issues


# --- tool parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "issues"),
    [
        (
            "    - name: b\n      type: blur\n      params: {ksize: 4}\n",
            [("inspection.tools[0].params.ksize", "must be odd (got 4)", 5)],
        ),
        (
            "    - name: b\n      type: blur\n      method: box\n",
            [("inspection.tools[0].method", "must be one of 'gaussian' or 'median' (got 'box')", 5)],
        ),
        (
            "    - name: b\n      type: blur\n      params: {ksize: 101}\n",
            [("inspection.tools[0].params.ksize", "must be <= 99 (got 101)", 5)],
        ),
        (
            "    - name: m\n      type: morphology\n      params: {shape: disk}\n",
            [
                (
                    "inspection.tools[0].params.shape",
                    "must be one of 'rect', 'ellipse' or 'cross' (got 'disk')",
                    5,
                )
            ],
        ),
        (
            "    - name: m\n      type: morphology\n      params: {ksize: 2}\n",
            [("inspection.tools[0].params.ksize", "must be odd (got 2)", 5)],
        ),
        (
            "    - name: m\n      type: morphology\n      method: tophat\n",
            [
                (
                    "inspection.tools[0].method",
                    "must be one of 'open', 'close', 'erode' or 'dilate' (got 'tophat')",
                    5,
                )
            ],
        ),
        (
            "    - name: m\n      type: morphology\n      params: {iterations: 0}\n",
            [("inspection.tools[0].params.iterations", "must be >= 1 (got 0)", 5)],
        ),
        (
            "    - name: t\n      type: threshold\n      params: {th_min: 200, th_max: 100}\n",
            [("inspection.tools[0].params", "th_min (200) is greater than th_max (100)", 5)],
        ),
        (
            "    - name: t\n      type: threshold\n      method: adaptive\n",
            [
                (
                    "inspection.tools[0].method",
                    "must be one of 'binary', 'range' or 'otsu' (got 'adaptive')",
                    5,
                )
            ],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [1, 2]}\n",
            [("inspection.tools[0].params", "p0 and p1 are the same point", 5)],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [9, 2], shift_rois: true}\n",
            [("inspection.tools[0].params", "shift_rois needs a reference position", 5)],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2, 3], p1: [9, 2]}\n",
            [("inspection.tools[0].params.p0", "must have at most 2 item(s)", 5)],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1], p1: [9, 2]}\n",
            [("inspection.tools[0].params.p0", "must have at least 2 item(s)", 5)],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [9, 2], polarity: up}\n",
            [
                (
                    "inspection.tools[0].params.polarity",
                    "must be one of 'rising', 'falling' or 'any' (got 'up')",
                    5,
                )
            ],
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [9, 2], reference: -3}\n",
            [("inspection.tools[0].params.reference", "must be >= 0.0 (got -3)", 5)],
        ),
        ("    - name: l\n      type: locate\n", [("inspection.tools[0].params", "required", 3)]),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2]}\n",
            [("inspection.tools[0].params.p1", "required", 5)],
        ),
        (
            "    - name: p\n      type: pattern_matching\n      params: {template: ''}\n",
            [("inspection.tools[0].params.template", "must not be empty", 5)],
        ),
        ("    - name: c\n      type: custom\n", [("inspection.tools[0].params", "required", 3)]),
    ],
    ids=case_id,
)
def test_malformed_tool_params(body: str, issues: list[Issue]) -> None:
    assert issues_of(tools(body)) == issues


@pytest.mark.parametrize(
    ("body", "issue"),
    [
        (
            "    - name: e\n      type: edge_detection\n      params: {threshold: -1}\n",
            ("inspection.tools[0].params.threshold", "must be >= 0.0 (got -1)", 5),
        ),
        (
            "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [9, 2], threshold: 300}\n",
            ("inspection.tools[0].params.threshold", "must be <= 255.0 (got 300)", 5),
        ),
        (
            "    - name: e\n      type: edge_detection\n      params: {threshold: 5, blur: 1}\n",
            ("inspection.tools[0].params.blur", "unknown key", 5),
        ),
    ],
    ids=case_id,
)
def test_field_named_like_a_tool_type_keeps_its_path(body: str, issue: Issue) -> None:
    assert issues_of(tools(body)) == [issue]


def test_field_named_like_a_tool_type_is_still_an_error() -> None:
    # whatever its path, the bad value is refused, under the right tool
    [(path, message, line)] = issues_of(
        tools("    - name: e\n      type: edge_detection\n      params: {threshold: -1}\n")
    )
    assert path.startswith("inspection.tools[0].params") and (message, line) == ("must be >= 0.0 (got -1)", 5)


# --- custom functions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "nope_pkg.mod.fn",
            "cannot import module 'nope_pkg.mod': ModuleNotFoundError: No module named 'nope_pkg'",
        ),
        ("math.pi", "'math' has no callable 'pi'"),
        ("lens.inspect.examples.nothing", "'lens.inspect.examples' has no callable 'nothing'"),
        ("contrast", "'contrast' is not a dotted path like package.module.function"),
        (
            "lens.inspect.examples.",
            "'lens.inspect.examples.' is not a dotted path like package.module.function",
        ),
        (
            "lens.inspect.examples.2x",
            "'lens.inspect.examples.2x' is not a dotted path like package.module.function",
        ),
    ],
)
def test_custom_function_that_cannot_be_called(function: str, message: str) -> None:
    body = f"    - name: c\n      type: custom\n      params: {{function: '{function}'}}\n"
    assert issues_of(tools(body)) == [("inspection.tools[0].params.function", message, 5)]


def test_custom_function_by_module_colon_name() -> None:
    cfg = load_pipeline_text(
        tools(
            "    - name: c\n      type: custom\n"
            "      params: {function: 'lens.inspect.examples:contrast', args: {low: 2}}\n"
        )
    )
    tool = cfg.inspection.tools[0]
    assert isinstance(tool, CustomTool)
    assert (tool.params.function, tool.params.args) == ("lens.inspect.examples:contrast", {"low": 2})


# --- measures named by pass_fail and math ------------------------------------------------------------------

# every tool type, minimally configured (pattern_matching's template written by the test)
MINIMAL = {
    "grayscale": ("", "max, mean, min, std, value"),
    "blur": ("", "mean, value"),
    "threshold": ("", "count, level, ratio, value"),
    "morphology": ("", "count, value"),
    "blob": ("", "count, largest_area, roi_area, total_area, value"),
    "edge_detection": ("", "count, density, value"),
    "locate": (
        "      params: {p0: [1, 2], p1: [90, 2]}\n",
        "edges, found, offset, position, strength, value, x, y",
    ),
    "pattern_matching": ("      params: {template: t.png}\n", "cx, cy, score, value, x, y"),
    "math": ("      expr: '1 + 1'\n", "value"),
}


@pytest.mark.parametrize("kind", sorted(MINIMAL))
def test_pass_fail_with_an_unknown_measure(tmp_path: Path, kind: str) -> None:
    random_image(tmp_path / "t.png")
    params, known = MINIMAL[kind]
    body = (
        f"    - name: x\n      type: {kind}\n{params}"
        "      pass_fail:\n        measures:\n          bogus: {min: 1}\n"
    )
    line = 8 if params else 7
    assert issues_of(tools(body), tmp_path) == [
        ("inspection.tools[0].pass_fail.measures", f"unknown measure 'bogus' (known: {known})", line)
    ]
    # and every known one is accepted
    for measure in known.split(", "):
        ok = body.replace("bogus", measure)
        cfg = load_pipeline_text(tools(ok), "p.yaml", str(tmp_path))
        pass_fail = cfg.inspection.tools[0].pass_fail
        assert pass_fail is not None and list(pass_fail.measures) == [measure], (kind, measure)


def test_custom_measures_are_open_to_pass_fail_and_math() -> None:
    cfg = load_pipeline_text(
        tools(
            "    - name: c\n      type: custom\n      params: {function: lens.inspect.examples.contrast}\n"
            "      pass_fail: {measures: {p_high: {min: 10}, anything_at_all: {max: 3}}}\n"
            "    - name: m\n      type: math\n      expr: 'c.p_high - c.p_low + c.whatever'\n"
        )
    )
    names = [t.name for t in cfg.inspection.tools]
    assert names == ["c", "m"]
    custom = cfg.inspection.tools[0]
    assert custom.pass_fail is not None and set(custom.pass_fail.measures) == {"p_high", "anything_at_all"}


@pytest.mark.parametrize(
    ("tool", "expr", "message"),
    [
        (
            "    - name: pm\n      type: pattern_matching\n      params: {template: t.png}\n",
            "pm.angle",
            "'pm.angle' is not a measure (cx, cy, score, value, x, y)",
        ),
        (
            "    - name: edge\n      type: locate\n      params: {p0: [1, 2], p1: [90, 2]}\n",
            "edge.distance",
            "'edge.distance' is not a measure (edges, found, offset, position, strength, value, x, y)",
        ),
        (
            "    - name: t\n      type: threshold\n",
            "t.area",
            "'t.area' is not a measure (count, level, ratio, value)",
        ),
        (
            "    - name: k\n      type: math\n      expr: '2'\n",
            "k.count",
            "'k.count' is not a measure (value)",
        ),
    ],
)
def test_math_naming_a_measure_the_tool_does_not_have(
    tmp_path: Path, tool: str, expr: str, message: str
) -> None:
    random_image(tmp_path / "t.png")
    body = tool + f"    - name: m\n      type: math\n      expr: '{expr} > 1'\n"
    line = body.count("\n")  # the expr is the last line
    assert issues_of(tools(body), tmp_path) == [("inspection.tools[1].expr", f"{message}", line + 2)]
    good = body.replace(expr, expr.split(".")[0] + ".value")
    assert len(load_pipeline_text(tools(good), "p.yaml", str(tmp_path)).inspection.tools) == 2


def test_every_issue_of_a_chain_is_reported_at_once(tmp_path: Path) -> None:
    body = (
        "    - name: b\n      type: blur\n      params: {ksize: 6}\n"  # 3-5
        "    - name: m\n      type: morphology\n      params: {shape: disk}\n"  # 6-8
        "    - name: l\n      type: locate\n      params: {p0: [1, 2], p1: [1, 2]}\n"  # 9-11
        "    - name: c\n      type: custom\n      params: {function: nope_pkg.f}\n"  # 12-14
        "    - name: p\n      type: pattern_matching\n      params: {template: gone.png}\n"  # 15-17
    )
    assert issues_of(tools(body), tmp_path) == [
        ("inspection.tools[0].params.ksize", "must be odd (got 6)", 5),
        ("inspection.tools[1].params.shape", "must be one of 'rect', 'ellipse' or 'cross' (got 'disk')", 8),
        ("inspection.tools[2].params", "p0 and p1 are the same point", 11),
        (
            "inspection.tools[3].params.function",
            "cannot import module 'nope_pkg': ModuleNotFoundError: No module named 'nope_pkg'",
            14,
        ),
        (
            "inspection.tools[4].params.template",
            f"template file '{tmp_path / 'gone.png'}' does not exist",
            17,
        ),
    ]
