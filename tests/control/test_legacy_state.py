"""The file of legacy changes and the legacy source/trigger <-> native mapping
(lens/control/legacy/state.py), on real files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from lens.control.legacy.state import (
    LegacyConfigError,
    LegacyState,
    source_to_native,
    trigger_to_legacy,
    trigger_to_native,
)


def test_sections_of_the_wrong_type_are_left_out_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "legacy.json"
    trigger = {"type": "trigger", "interval_ms": 500}
    path.write_bytes(orjson.dumps({"source_config": [1], "django_url": 5, "trigger_config": trigger, "x": 1}))
    state = LegacyState(path)
    assert state.data == {"trigger_config": trigger}
    assert state.problem == f"{path}: source_config, django_url of the wrong type, not used"


def test_a_failed_save_raises_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "legacy.json"
    target.mkdir()  # a folder where the file should be: the final rename fails
    state = LegacyState(target)
    with pytest.raises(OSError):
        state.put("django_url", "http://orchestrator:8000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.json"]
    saved = LegacyState(tmp_path / "ok" / "legacy.json")
    saved.put("django_url", "http://orchestrator:8000")
    assert LegacyState(saved.path).data == {"django_url": "http://orchestrator:8000"}


@pytest.mark.parametrize(
    ("legacy", "message"),
    [
        ({"type": "camera", "resolution": ["inf", 480]}, "resolution.width: must be a number, not 'inf'"),
        (
            {"type": "camera", "resolution": [640, float("nan")]},
            "resolution.height: must be a number, not nan",
        ),
        ({"type": "camera", "fps": "Infinity"}, "fps: must be a number, not 'Infinity'"),
        ({"type": "camera", "fps": True}, "fps: must be a number, not True"),
    ],
)
def test_source_numbers_must_be_finite(legacy: dict[str, object], message: str) -> None:
    with pytest.raises(LegacyConfigError) as e:
        source_to_native(legacy)
    assert str(e.value) == message


def test_trigger_mapping_and_integer_intervals() -> None:
    assert trigger_to_native({"type": "continuous", "interval_ms": "200"}) == {
        "type": "continuous",
        "interval_ms": 200.0,
    }
    with pytest.raises(LegacyConfigError, match=r"^interval_ms: must be a number, not nan$"):
        trigger_to_native({"type": "continuous", "interval_ms": float("nan")})
    with pytest.raises(LegacyConfigError, match=r"^interval_ms: 50 ms is too short"):
        trigger_to_native({"type": "continuous", "interval_ms": 50})
    shown = trigger_to_legacy({"trigger": {"type": "continuous", "interval_ms": 250.0}})
    assert shown == {"type": "continuous", "interval_ms": 250} and type(shown["interval_ms"]) is int
    assert (
        trigger_to_legacy({"trigger": {"type": "continuous", "interval_ms": 250.5}})["interval_ms"] == 250.5
    )
    assert trigger_to_legacy({"trigger": {"type": "manual"}}) == {"type": "trigger", "interval_ms": 500}
