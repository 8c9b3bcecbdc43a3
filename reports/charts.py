"""Charts for the reports, drawn with matplotlib's Agg backend (no display) in DejaVu Sans, which has the
Vietnamese glyphs. Each function returns PNG bytes that both renderers embed.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

SEVERITY_COLOURS = ["#7b1fa2", "#d32f2f", "#f57c00", "#fbc02d", "#90a4ae"]
PALETTE = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457", "#558b2f",
           "#283593", "#9e9d24", "#4e342e", "#37474f"]
DPI = 120
MAX_SERIES = 10  # more series than this are summed into "other"


def _style() -> None:
    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 8, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.titlesize": 9})


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)  # layout="constrained" already fits the legend: one draw
    plt.close(fig)
    return out.getvalue()


def stacked_bars(series: dict[str, list[int]], buckets: list[str], title: str,
                 labels: dict[str, str] | None = None) -> bytes:
    """One bar per time bucket, stacked by series (log source, tactic)."""
    _style()
    ranked = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    if len(ranked) > MAX_SERIES:
        rest = [sum(vals) for vals in zip(*(v for _, v in ranked[MAX_SERIES - 1:]))]
        ranked = ranked[: MAX_SERIES - 1] + [("…", rest)]
    fig, ax = plt.subplots(figsize=(7.2, 2.8), layout="constrained")
    positions = range(len(buckets))
    bottom = [0] * len(buckets)
    for i, (name, values) in enumerate(ranked):
        values = (list(values) + [0] * len(buckets))[: len(buckets)]
        ax.bar(positions, values, bottom=bottom, color=PALETTE[i % len(PALETTE)], width=0.8,
               label=(labels or {}).get(name, name))
        bottom = [b + v for b, v in zip(bottom, values)]
    step = max(1, len(buckets) // 10)
    ax.set_xticks(list(positions)[::step])
    ax.set_xticklabels([b[5:] for b in buckets][::step], rotation=0)
    ax.set_title(title)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts, not fractions
    ax.grid(axis="y", alpha=0.3)
    if ranked:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def bars(values: dict[str, int], title: str, colors: list[str] | None = None) -> bytes:
    _style()
    fig, ax = plt.subplots(figsize=(7.2, 1.8), layout="constrained")
    names = list(values)
    ax.barh(names[::-1], [values[n] for n in names][::-1],
            color=(colors or PALETTE)[: len(names)][::-1] if colors else PALETTE[0])
    for i, name in enumerate(names[::-1]):
        ax.text(values[name], i, f" {values[name]}", va="center", fontsize=7)
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
