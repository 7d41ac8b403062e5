"""`lens bench [SUITE...]`: run benchmark suites, print their tables, optionally write JSON."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

# suite name -> module in bench/ with run(quick) -> dict and table(result) -> str
SUITES = {"transport": "bench.transport", "tools": "bench.tools"}


def run_bench(suites: list[str], json_path: str | None = None, quick: bool = False) -> int:
    names = suites or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(
            f"lens bench: unknown suite(s) {', '.join(unknown)} (known: {', '.join(SUITES)})", file=sys.stderr
        )
        return 2
    results: dict[str, Any] = {"started_at": time.time(), "quick": quick, "suites": {}}
    for name in names:
        mod = importlib.import_module(SUITES[name])
        print(f"== {name} ==", flush=True)
        result = mod.run(quick=quick)
        results["suites"][name] = result
        print(mod.table(result), flush=True)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        print(f"results written to {path}")
    return 0
