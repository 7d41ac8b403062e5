"""The `control` and `outputs` sections: defaults, path resolution, and errors with exact paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from lens.config.load import ConfigError, load_pipeline_text


def issues(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        load_pipeline_text(text, "p.yaml")
    return [(i.path, i.message) for i in e.value.issues]


def test_defaults_and_paths_relative_to_the_pipeline(tmp_path: Path) -> None:
    text = "outputs: {store: {}, image_log: {keep: all}}\n"
    cfg = load_pipeline_text(text, "p.yaml", base_dir=str(tmp_path))
    assert cfg.control.port == 8710 and cfg.control.lease_s == 30 and cfg.control.heartbeat_s == 10
    assert cfg.control.db == str(tmp_path / "var" / "control.sqlite")
    assert cfg.outputs.store is not None and cfg.outputs.image_log is not None
    assert cfg.outputs.store.path == str(tmp_path / "var" / "results.sqlite")
    assert cfg.outputs.image_log.dir == str(tmp_path / "var" / "images")
    assert cfg.outputs.mqtt is None and cfg.outputs.actions == [] and cfg.outputs.enabled


def test_errors_name_the_field() -> None:
    text = (
        "control: {allow: [10.0.0.0/8, nonsense], lease_s: 5, heartbeat_interval_s: 9, test_rate_hz: 0}\n"
        "outputs:\n"
        "  mqtt: {qos: 3, topic_prefix: 'a/#'}\n"
        "  actions:\n"
        "    - {type: serial, when: [fail], port: /dev/ttyS9, line: 'R;{nope}'}\n"
        "    - {type: url, when: [sometimes], url: ftp://x}\n"
        "    - {when: [fail], topic: t}\n"
    )
    got = issues(text)
    paths = [p for p, _ in got]
    assert "control.allow" in paths[0] or "control.allow[1]" in " ".join(paths)
    assert "control.test_rate_hz" in paths
    assert "outputs.mqtt.qos" in paths and "outputs.mqtt.topic_prefix" in paths
    why = "'R;{nope}': unknown placeholder {nope}; use one of result_id, camera, machine_id, frame_id, "
    assert ("outputs.actions[0].line", why + "pass, outcome, finished_at") in got
    assert "outputs.actions[1].when[0]" in paths and "outputs.actions[1].url" in paths
    assert "outputs.actions[2]" in paths


def test_heartbeat_must_be_shorter_than_the_lease() -> None:
    assert issues("control: {lease_s: 5, heartbeat_interval_s: 9}\n") == [
        ("control.heartbeat_interval_s", "9.0 s must be shorter than lease_s (5.0 s)")
    ]
