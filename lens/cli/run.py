"""`lens run PIPELINE`: the supervisor in the foreground with one live status line."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from lens.config.load import ConfigError, format_issue, load_pipeline
from lens.engine.process import setup_logging
from lens.engine.stats import HEALTH
from lens.engine.supervisor import StartError, Supervisor

EXIT_OK, EXIT_FAIL, EXIT_INVALID = 0, 1, 2


class StatusLine:
    """Formats counters as one line; rates are measured between two calls."""

    def __init__(self) -> None:
        self.last: tuple[float, dict[str, Any]] | None = None

    def format(self, snap: dict[str, Any]) -> str:
        now = time.monotonic()
        cams = snap["cameras"]
        total = {k: sum(c[k] for c in cams.values()) for k in next(iter(cams.values()))}
        fps_cap = fps_insp = 0.0
        if self.last is not None:
            dt = max(1e-6, now - self.last[0])
            prev = self.last[1]
            fps_cap = (total["captured"] - prev["captured"]) / dt
            fps_insp = (total["inspected"] - prev["inspected"]) / dt
        self.last = (now, total)
        run = snap["run"]
        health = " ".join(
            f"{cam}:{HEALTH[c['health']] if 0 <= c['health'] < len(HEALTH) else '?'}"
            + (f"({c['reconnects']} reconnects)" if c["reconnects"] else "")
            for cam, c in cams.items()
        )
        return (
            f"{health} | "
            f"captured {total['captured']} ({fps_cap:.0f}/s) | inspected {total['inspected']} "
            f"({fps_insp:.0f}/s) pass {total['passed']} fail {total['failed']} err {total['errors']} | "
            f"skipped {total['skipped_by_trigger']} dropped busy {total['dropped_busy']} "
            f"ring {total['dropped_ring_full']} overrun {total['overrun']} | "
            f"bus dropped {run['bus_dropped']} | restarts {run['restarts']}"
        )


def run(path: str, quiet: bool = False, duration: float = 0.0, out: TextIO = sys.stderr) -> int:
    setup_logging(logging.INFO, "supervisor")
    try:
        config = load_pipeline(path)
    except ConfigError as e:
        for issue in e.issues:
            print(format_issue(path, issue), file=out)
        return EXIT_INVALID

    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sup = Supervisor(config, base_dir=str(Path(path).resolve().parent))
    live = out.isatty() and not quiet
    line = StatusLine()
    try:
        sup.start()
        print(
            f"lens: running {path} (machine {config.machine.id}, bus {config.outputs.zmq.bind}); "
            "Ctrl-C stops",
            file=out,
            flush=True,
        )
        t_end = time.monotonic() + duration if duration > 0 else float("inf")
        next_status = time.monotonic() + 1.0
        while not stop and not sup.finished and time.monotonic() < t_end:
            sup.tick()
            time.sleep(0.05)
            if not quiet and time.monotonic() >= next_status:
                text = line.format(sup.status())
                print(f"\r\x1b[2K{text}" if live else text, end="" if live else "\n", file=out, flush=True)
                next_status = time.monotonic() + (0.5 if live else 5.0)
        status = sup.status()
        final = line.format(status)
    except StartError as e:
        print(f"\nlens: cannot start: {e}", file=out)
        return EXIT_FAIL
    finally:
        sup.stop()  # always: no process, segment or socket outlives `lens run`
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    print(("\n" if live else "") + f"lens: stopped. {final}", file=out, flush=True)
    if not quiet:
        print(tool_table(status), file=out, flush=True)
    return EXIT_OK


def tool_table(status: dict[str, Any]) -> str:
    """Per-tool timing of the inspection config in force (min / avg / max elapsed_us)."""
    insp = status.get("inspection") or {}
    tools = insp.get("tools") or {}
    if not tools:
        return "lens: no tool timing (no inspection ran)"
    width = max(len(n) for n in tools)
    lines = [f"tool timing, inspection version {insp['version']} (us):"]
    lines.append(f"  {'tool':<{width}}  {'count':>8}  {'min':>9}  {'avg':>9}  {'max':>9}")
    for name, t in tools.items():
        us = f"{t['min_us']:>9.1f}  {t['avg_us']:>9.1f}  {t['max_us']:>9.1f}"
        lines.append(f"  {name:<{width}}  {t['count']:>8}  {us}")
    return "\n".join(line.rstrip() for line in lines)
