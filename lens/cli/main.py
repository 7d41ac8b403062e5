"""`lens` command line: run, validate, inspect, subscribe, bench, warmup."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lens import __version__

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from lens.config.load import ConfigError, format_issue, load_pipeline

    status = EXIT_OK
    for path in args.files:
        try:
            cfg = load_pipeline(path)
        except ConfigError as e:
            status = EXIT_INVALID
            for issue in e.issues:
                print(format_issue(path, issue), file=sys.stderr)
            continue
        tools = len(cfg.inspection.tools)
        print(
            f"{path}: OK ({len(cfg.cameras)} camera(s), {tools} tool(s), {cfg.inspection.workers} worker(s))"
        )
    return status


def _cmd_run(args: argparse.Namespace) -> int:
    from lens.cli.run import run

    return run(args.pipeline, quiet=args.quiet, duration=args.duration)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lens.cli.inspect import inspect_files

    return inspect_files(args.pipeline, args.images, camera=args.camera, summary=args.summary)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    from lens.cli.subscribe import subscribe

    return subscribe(args.endpoint, topics=args.topic, count=args.count, raw=args.json)


def _cmd_trigger(args: argparse.Namespace) -> int:
    from lens.engine.client import EngineClient, EngineTimeout

    camera: str | int = int(args.camera) if args.camera.isdigit() else args.camera
    with EngineClient(args.endpoint, timeout_s=5.0) as client:
        try:
            rid = client.trigger(camera, args.id or "")
        except (RuntimeError, EngineTimeout) as e:
            print(f"lens trigger: {e}", file=sys.stderr)
            return EXIT_FAIL
    print(f"triggered {args.camera}: its result will be result_id {rid}")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from bench.runner import run_bench

    return run_bench(args.suites, json_path=args.json, quick=args.quick, soak=args.soak)


def _cmd_warmup(args: argparse.Namespace) -> int:
    import time

    from native_tools import warmup

    t0 = time.perf_counter()
    names = warmup()
    print(f"kernels ready: {len(names)} compiled or loaded from cache in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lens", description="AnalyticLens vision machine runtime")
    p.add_argument("--version", action="version", version=f"lens {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="run a pipeline in the foreground (Ctrl-C stops cleanly)")
    s.add_argument("pipeline")
    s.add_argument("--quiet", action="store_true", help="no live status line")
    s.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = never)")
    s.set_defaults(fn=_cmd_run)

    s = sub.add_parser("validate", help="check pipeline files; exit 2 and list every error if invalid")
    s.add_argument("files", nargs="+")
    s.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("inspect", help="run the pipeline's tool chain on image files, one envelope a line")
    s.add_argument("pipeline")
    s.add_argument("images", nargs="+")
    s.add_argument("--camera", default=None, help="camera whose capture format applies (default: first)")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON result envelope per line (the default)")
    out.add_argument("--summary", action="store_true", help="one readable line per image instead")
    s.set_defaults(fn=_cmd_inspect)

    s = sub.add_parser("subscribe", help="print results and events from a results bus")
    s.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:8711")
    s.add_argument("--topic", action="append", default=[], help="topic prefix (repeatable; default all)")
    s.add_argument("--count", type=int, default=0, help="exit after this many messages (0 = never)")
    s.add_argument("--json", action="store_true", help="one compact JSON object a line")
    s.set_defaults(fn=_cmd_subscribe)

    s = sub.add_parser("trigger", help="fire a manual trigger on a running machine's camera")
    s.add_argument("camera", help="camera id (or index)")
    s.add_argument("--id", default="", help="trigger id carried by the result (default: manual-<result_id>)")
    s.add_argument("--endpoint", default="tcp://127.0.0.1:8712", help="the machine's command socket")
    s.set_defaults(fn=_cmd_trigger)

    s = sub.add_parser("bench", help="benchmark harness: table on stdout, optional JSON file")
    s.add_argument("suites", nargs="*", default=[], help="suites to run (default: all)")
    s.add_argument("--json", default=None, help="write results to this JSON file")
    s.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    s.add_argument(
        "--soak", type=float, default=None, metavar="SECONDS", help="e2e: soak the demo this long, too"
    )
    s.set_defaults(fn=_cmd_bench)

    s = sub.add_parser("warmup", help="compile every numba kernel into the on-disk cache")
    s.set_defaults(fn=_cmd_warmup)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        return fn(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
