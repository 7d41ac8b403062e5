"""`lens bench [SUITE...]`: run benchmark suites, print their tables, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib
import inspect
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
    "e2e": "bench.e2e",
}


def run_bench(
    suites: list[str], json_path: str | None = None, quick: bool = False, soak: float | None = None
) -> int:
    """`soak`: seconds of soak for the suites whose run() takes `soak_s` (e2e); None = no soak."""
    names = suites or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(
            f"lens bench: unknown suite(s) {', '.join(unknown)} (known: {', '.join(SUITES)})", file=sys.stderr
        )
        return 2
    modules = {name: importlib.import_module(SUITES[name]) for name in names}
    takes_soak = [n for n, mod in modules.items() if "soak_s" in inspect.signature(mod.run).parameters]
    if soak is not None and not takes_soak:
        print(f"lens bench: --soak applies to none of {', '.join(names)} (only to e2e)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"started_at": time.time(), "quick": quick, "suites": {}}
    for name, mod in modules.items():
        print(f"== {name} ==", flush=True)
        result = mod.run(quick=quick, soak_s=soak) if name in takes_soak else mod.run(quick=quick)
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
    name: str,
    doc: str,
    run: Callable[..., dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    soak: bool = False,
) -> None:
    """`python -m bench.<suite> [--quick] [--json PATH]`: one suite alone, table on stdout, JSON file.
    With `soak`, also `--soak SECONDS`, passed to run() as `soak_s`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", type=Path, default=Path(f"bench/out/{name}.json"), help="result file")
    if soak:
        parser.add_argument("--soak", type=float, default=None, metavar="SECONDS", help="soak this long")
    args = parser.parse_args()
    result = run(quick=args.quick, soak_s=args.soak) if soak else run(quick=args.quick)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
