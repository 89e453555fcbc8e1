"""PNG plots of benchmark rows (matplotlib, Agg, no pyplot).

Figures are built with :class:`matplotlib.figure.Figure` directly rather than through
``pyplot``, whose global figure registry is shared mutable state; nothing here needs a
display. Rows that did not finish or failed are left out of a plot (never drawn as zero).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PROOF_ORDER = (
    "interval",
    "linear",
    "lp",
    "bab",
    "relu_split",
    "milp",
    "witness",
    "enumeration",
    "constant",
    "none",
)
PROOF_COLOR = dict(
    zip(PROOF_ORDER, ("C0", "C2", "C9", "C1", "C6", "C3", "C4", "C5", "C7", "0.6"), strict=True)
)
METHOD_STYLE = {"naive": "s--", "leo": "^-.", "fast": "o-"}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def plot_l1(rows: Sequence[Any], path: Path) -> Path:
    """% neurons removed vs l1 per architecture (left axis), test accuracy (right, dashed).

    Seeds are averaged. l1 values sit at evenly spaced positions because 0 has no place on
    a log axis.
    """
    by_arch: dict[str, dict[float, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in rows:
        if _finite(r.pct_removed) and _finite(r.acc_before):
            by_arch[r.arch][r.l1].append((r.pct_removed, 100.0 * r.acc_before))
    l1s = sorted({l1 for per in by_arch.values() for l1 in per})
    pos = {l1: i for i, l1 in enumerate(l1s)}
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    for i, (arch, per) in enumerate(sorted(by_arch.items())):
        color = f"C{i % 10}"
        xs = sorted(per)
        removed = [sum(p for p, _ in per[x]) / len(per[x]) for x in xs]
        acc = [sum(a for _, a in per[x]) / len(per[x]) for x in xs]
        ax.plot([pos[x] for x in xs], removed, "o-", color=color, label=f"{arch} removed")
        ax2.plot([pos[x] for x in xs], acc, "x--", color=color, alpha=0.7, label=f"{arch} acc.")
    ax.set_xticks(range(len(l1s)), [f"{v:g}" for v in l1s])
    ax.set_xlabel("l1 penalty")
    ax.set_ylabel("neurons removed exactly (%)")
    ax2.set_ylabel("test accuracy (%), dashed")
    ax.set_title("Exact compression of digits MLPs over [0,1]^64 (mean over seeds)")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=7, loc="best")
    return _save(fig, path)


def plot_scaling(rows: Sequence[Any], path: Path) -> Path:
    """Seconds (log) and MILPs vs width (at the reference depth) and vs depth, per method."""
    ok = [r for r in rows if r.status == "ok" and _finite(r.seconds)]
    depths = sorted({r.depth for r in rows})
    widths = sorted({r.width for r in rows})
    ref_depth = 2 if 2 in depths else (depths[0] if depths else 0)
    deep = {r.width for r in rows if r.depth > ref_depth} or set(widths)
    ref_width = min(deep) if deep else 0
    fig = Figure(figsize=(10, 7))
    axes = fig.subplots(2, 2)
    for col, (key, fixed, fixed_val) in enumerate(
        (("width", "depth", ref_depth), ("depth", "width", ref_width))
    ):
        for method in ("naive", "leo", "fast"):
            pts = sorted(
                (getattr(r, key), r.seconds, r.milps)
                for r in ok
                if r.method == method and getattr(r, fixed) == fixed_val
            )
            if not pts:
                continue
            xs = [p[0] for p in pts]
            style = METHOD_STYLE.get(method, "o-")
            axes[0][col].plot(xs, [p[1] for p in pts], style, label=method)
            axes[1][col].plot(xs, [max(p[2], 0) for p in pts], style, label=method)
        ticks = sorted({getattr(r, key) for r in ok if getattr(r, fixed) == fixed_val})
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("seconds (log)")
        axes[1][col].set_yscale("symlog", linthresh=1)
        axes[1][col].set_ylabel("MILPs solved")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xlabel(f"{key} ({fixed} = {fixed_val})")
            if ticks:
                ax.set_xticks(ticks)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle("Stability analysis cost vs size (l1 = 5e-4; unfinished runs omitted)")
    return _save(fig, path)


def plot_proofs(rows: Sequence[Any], path: Path, label_fields: Sequence[str]) -> Path:
    """Stacked bars: share of neurons settled by each proof kind, one bar per row."""
    bars = [r for r in rows if getattr(r, "proofs", None)]
    labels = ["\n".join(str(getattr(r, f)) for f in label_fields) for r in bars]
    fig = Figure(figsize=(max(6.0, 0.7 * len(bars) + 2), 4.8))
    ax = fig.add_subplot()
    bottom = [0.0] * len(bars)
    for kind in PROOF_ORDER:
        shares = []
        for r in bars:
            total = sum(r.proofs.values()) or 1
            shares.append(100.0 * r.proofs.get(kind, 0) / total)
        if not any(shares):
            continue
        ax.bar(range(len(bars)), shares, bottom=bottom, label=kind, color=PROOF_COLOR[kind])
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.set_xticks(range(len(bars)), labels, fontsize=6, rotation=90)
    ax.set_ylabel("share of neurons (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Which proof settled each neuron ('none' = undecided)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)
