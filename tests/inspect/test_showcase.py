"""pipelines/tools.yaml (every tool) judges synthetic frames exactly as the scene's ground truth says,
offline through the tool chain and live through `lens run`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lens.capture.sources.synthetic import SyntheticScene
from lens.config.load import load_pipeline
from lens.engine import msgs
from lens.engine.envelope import Job
from lens.inspect.runner import ToolChain, inspect_frame
from tests.lensrun import LensRun, free_port

ROOT = Path(__file__).resolve().parents[2]
SHOWCASE = ROOT / "pipelines" / "tools.yaml"


def test_every_verdict_matches_the_scene() -> None:
    cfg = load_pipeline(SHOWCASE)
    assert {t.type for t in cfg.inspection.tools} == {
        "grayscale", "custom", "locate", "pattern_matching", "edge_detection", "blur", "threshold",
        "morphology", "blob", "math",
    }  # fmt: skip
    src = cfg.cameras[0].source
    scene = SyntheticScene(src.width, src.height, 1, src.seed, src.defect_rate, src.parts)
    chain = ToolChain(cfg.inspection)
    seen = set()
    for n in range(300):
        frame = scene.frame(n)
        truth = scene.truth(n)
        job = Job(n + 1, 0, "cam0", "", 0, 0, n, 0.0, "continuous", 0.0, 1)
        outcome, env = inspect_frame(chain, cfg.machine.id, job, frame)
        assert outcome != msgs.ERROR, env.get("error")
        assert env["pass"] == truth["good"], (
            n,
            truth,
            {k: (t["value"], t["pass"]) for k, t in env["tools"].items()},
        )
        seen.add(truth["defect"])
    assert seen == {None, "missing_part", "extra_blob", "dim"}


def test_showcase_runs_live(tmp_path: Path) -> None:
    data = yaml.safe_load(SHOWCASE.read_text())
    port = free_port()
    data["outputs"]["zmq"]["bind"] = f"tcp://127.0.0.1:{port}"
    data["outputs"]["zmq"]["command"] = f"tcp://127.0.0.1:{free_port()}"
    for tool in data["inspection"]["tools"]:
        if tool["type"] == "pattern_matching":
            tool["params"]["template"] = str(ROOT / "pipelines" / tool["params"]["template"])
    path = tmp_path / "tools.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with LensRun(path, f"tcp://127.0.0.1:{port}") as run:
        run.wait_for(lambda: len(run.results) >= 100, timeout=120, what="100 results")
        assert run.stop() == 0
        out = run.output()
    assert all("error" not in r and len(r["tools"]) == 11 for r in run.results)
    assert {r["pass"] for r in run.results} == {True, False}
    assert "tool timing, inspection version 1" in out and "cap_match" in out


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
