"""`lens bench [SUITE...]`: run benchmark suites, print their tables, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# suite name -> module in bench/ with run(quick) -> dict and table(result) -> str
SUITES = {
    "transport": "bench.transport",
    "tools": "bench.tools",
    "triggers": "bench.triggers",
    "control": "bench.control",
    "outputs": "bench.outputs",
}


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


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for the machine line of a suite."""
    try:
        with Path("/proc/cpuinfo").open() as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def suite_main(
    name: str, doc: str, run: Callable[..., dict[str, Any]], table: Callable[[dict[str, Any]], str]
) -> None:
    """`python -m bench.<suite> [--quick] [--json PATH]`: one suite alone, table on stdout, JSON file."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", type=Path, default=Path(f"bench/out/{name}.json"), help="result file")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
