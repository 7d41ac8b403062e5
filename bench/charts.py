"""PNG charts of the e2e suite (matplotlib, Agg backend: no display needed).

`write_charts(result, out_dir)` writes, from `bench.e2e.run()`'s result:

* e2e_throughput.png: inspections/s per contender and frame size (grouped bars, each run as a dot);
* e2e_latency.png: capture->result latency distribution (CDF) per contender at 640x480, and lens
  at the 100 Hz trigger;
* e2e_scaling.png: lens throughput and p99 latency vs workers and vs cameras, and the worker cost
  per megapixel vs frame size;
* e2e_soak_rss.png: RSS of every process (and their total) over the soak, when one ran.

Every title names the machine (CPU model, cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

COLORS = {"single": "#8c8c8c", "queue": "#e3a33b", "lens": "#2a6fb0", "lens @100 Hz": "#47a447"}
DPI = 110


def _machine(result: dict[str, Any]) -> str:
    m = result["machine"]
    quick = ", quick run" if result.get("quick") else ""
    return f"{m['cpu']}, {m['cores']} cores{quick}"


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return str(path)


def throughput(result: dict[str, Any], path: Path) -> str:
    rows = result["rows"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    width = 0.8 / len(contenders)
    x = np.arange(len(sizes))
    for k, contender in enumerate(contenders):
        by = {r["size"]: r for r in rows if r["contender"] == contender}
        heights = [by[s]["per_s"] for s in sizes]
        pos = x + (k - (len(contenders) - 1) / 2) * width
        bars = ax.bar(pos, heights, width, label=contender, color=COLORS.get(contender))
        ax.bar_label(bars, labels=[f"{h:.0f}" for h in heights], fontsize=8, padding=2)
        for p, s in zip(pos, sizes, strict=True):
            runs = by[s].get("runs_per_s", [])
            ax.plot([p] * len(runs), runs, "k.", markersize=3)
    ax.set_xticks(x, sizes)
    ax.set_ylabel("inspections / s (median of runs; dots: each run)")
    ax.set_title(f"5-tool chain end to end, {result['workers']} workers\n{_machine(result)}", fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def latency(result: dict[str, Any], path: Path) -> str:
    size = "640x480 gray"
    series = [(r["contender"], r["quantiles_ms"]) for r in result["rows"] if r["size"] == size]
    rate = result.get("rate")
    if rate and rate.get("quantiles_ms"):
        series.append(("lens @100 Hz", rate["quantiles_ms"]))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for name, q in series:
        if q:
            ax.plot(q, np.linspace(0, 1, len(q)), label=name, color=COLORS.get(name), linewidth=2)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set_xlabel("capture -> result latency, ms (log)")
    ax.set_ylabel("share of results")
    ax.axhline(0.99, color="k", linewidth=0.6, linestyle=":")
    ax.text(ax.get_xlim()[0], 0.99, " p99", va="bottom", fontsize=8)
    ax.set_title(
        f"Latency at {size}: saturated contenders, and lens with the camera at 100 fps\n{_machine(result)}",
        fontsize=10,
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def scaling(result: dict[str, Any], path: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    for ax, axis in zip(axes[:2], ("workers", "cameras"), strict=True):
        pts = sorted((s for s in result["scaling"] if s["axis"] == axis), key=lambda s: s["n"])
        n = [s["n"] for s in pts]
        ax.plot(n, [s["per_s"] for s in pts], "o-", color=COLORS["lens"], label="inspections/s")
        ax.set_xticks(n)
        ax.set_xlabel(axis + (" (1 camera)" if axis == "workers" else f" ({result['workers']} workers)"))
        ax.set_ylabel("inspections / s")
        ax.set_ylim(bottom=0, top=1.15 * max(s["per_s"] for s in pts))
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(n, [s["p99_ms"] for s in pts], "s--", color="#c0392b", label="p99 latency ms")
        twin.set_ylabel("p99 latency, ms")
        twin.set_ylim(bottom=0, top=1.15 * max(s["p99_ms"] for s in pts))
        ax.set_title(f"lens at 640x480 vs {axis}", fontsize=10)
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8, loc="upper left")
    ax = axes[2]
    sweep = result["sweep"]
    mp = [s["mp"] for s in sweep]
    ax.plot(mp, [s["worker_us_per_mp"] for s in sweep], "o-", color=COLORS["lens"], label="worker us per MP")
    for s in sweep:
        ax.annotate(s["size"].split()[0], (s["mp"], s["worker_us_per_mp"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 4))  # fmt: skip
    ax.set_xlabel("megapixels per frame")
    ax.set_ylabel("worker CPU us per megapixel")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(mp, [s["mp_per_s"] for s in sweep], "s--", color="#7f3fbf", label="MP/s inspected")
    twin.set_ylabel("megapixels / s")
    twin.set_ylim(bottom=0)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8, loc="upper right")
    fit = result.get("sweep_fit")
    title = "worker cost per megapixel (gray)"
    if fit:
        title += f"\nper inspection ~ {fit['fixed_us']:.0f} us + {fit['us_per_mp']:.0f} us/MP"
    ax.set_title(title, fontsize=10)
    fig.suptitle(f"lens scaling; {_machine(result)}", fontsize=10)
    return _save(fig, path)


def soak_rss(result: dict[str, Any], path: Path) -> str:
    s = result["soak"]
    series = s["series"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    ax.plot(series["t"], series["total_rss_mb"], color="k", linewidth=2, label="total")
    for name, rss in sorted(series["rss_mb"].items()):
        ax.plot(series["t_by_process"][name], rss, linewidth=1, label=name)
    lo, hi = s["warm_s"], s["warm_s"] + s["span_s"]
    end = series["t"][-1] if series["t"] else 0
    ax.axvspan(lo, hi, color="#2a6fb0", alpha=0.08)
    ax.axvspan(end - s["span_s"], end, color="#c0392b", alpha=0.08)
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS, MB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="center right")
    ax.set_title(
        f"Soak: pipelines/demo.yaml at {s['inspected_per_s']:.0f} insp/s for {s['seconds']:g} s, "
        f"RSS growth {s['rss_growth_pct']:+.2f} % (shaded: compared spans)\n{_machine(result)}",
        fontsize=10,
    )
    return _save(fig, path)


def write_charts(result: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Every chart the result has data for; name -> path written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = {
        "throughput": throughput(result, out_dir / "e2e_throughput.png"),
        "latency": latency(result, out_dir / "e2e_latency.png"),
        "scaling": scaling(result, out_dir / "e2e_scaling.png"),
    }
    if result.get("soak"):
        charts["soak_rss"] = soak_rss(result, out_dir / "e2e_soak_rss.png")
    return charts
