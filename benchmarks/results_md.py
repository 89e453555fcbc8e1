"""Regenerate the measured part of ``benchmarks/RESULTS.md`` from ``benchmarks/results/*.json``.

Only the text between the ``<!-- generated:start -->`` and ``<!-- generated:end -->``
markers is replaced, so hand-written commentary around it survives. Every section quotes
the command, time and commit stored in the JSON next to the rows, so a figure in RESULTS.md
always comes with the run that measured it. Run ``python -m benchmarks markdown``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .methods import STABILITY_COLUMNS
from .rows import markdown_table
from .table import TABLE_COLUMNS

START, END = "<!-- generated:start -->", "<!-- generated:end -->"

#: (stem prefix, section title, columns, plots by suffix)
SECTIONS = (
    (
        "table",
        "Results table: digits MLPs over [0,1]^64",
        TABLE_COLUMNS,
        ("_l1.png", "_proofs.png"),
    ),
    (
        "stability",
        "Stability methods side by side",
        STABILITY_COLUMNS,
        ("_proofs.png",),
    ),
    (
        "real",
        "Real networks over their VNN-LIB input boxes",
        (
            "network",
            "prop",
            "engine",
            "status",
            "undecided",
            "seconds",
            "cpu_seconds",
            "milps",
            "bab_nodes",
            "neurons_before",
            "neurons_after",
            "pct_stable",
            "channels_removed",
            "parameters_before",
            "parameters_after",
            "bytes_before",
            "bytes_after",
            "active",
            "inactive",
            "unstable",
            "proofs",
            "verdict",
            "verify_seconds",
            "verify_note",
            "error",
        ),
        ("_proofs.png",),
    ),
    (
        "scaling",
        "Scaling with width and depth (l1 = 5e-4)",
        (
            "width",
            "depth",
            "method",
            "status",
            "neurons",
            "undecided",
            "milps",
            "seconds",
            "speedup_vs_naive",
            "speedup_vs_leo",
            "same_as",
        ),
        (".png",),
    ),
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v)
    return str(value)


def _flat(row: dict[str, Any]) -> dict[str, str]:
    out = {k: _cell(v) for k, v in row.items() if k != "layers"}
    for key in ("active", "inactive", "undecided"):
        if "layers" in row:
            out[f"layer_{key}"] = "/".join(str(la[key]) for la in row["layers"])
    return out


def summary(rows: list[dict[str, Any]]) -> str:
    """Table rows grouped by architecture and l1: means over seeds (the paper-style table)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arch"], r["l1"]), []).append(r)
    out = []
    for (arch, l1), rs in sorted(groups.items()):
        ok = [r for r in rs if r.get("pct_removed") is not None]

        def mean(key: str, rows: list[dict[str, Any]] = ok) -> str:
            vals = [float(r[key]) for r in rows if r.get(key) is not None]
            return f"{sum(vals) / len(vals):.4g}" if vals else ""

        out.append(
            {
                "arch": arch,
                "l1": f"{l1:g}",
                "models": str(len(rs)),
                "test acc. (mean)": mean("acc_before"),
                "acc. after (mean)": mean("acc_after"),
                "% neurons removed (mean)": mean("pct_removed"),
                "% removed (min-max)": (
                    f"{min(r['pct_removed'] for r in ok):.3g}-{max(r['pct_removed'] for r in ok):.3g}"
                    if ok
                    else ""
                ),
                "seconds (mean)": mean("seconds"),
                "MILPs (mean)": mean("milps"),
                "EQUIVALENT": f"{sum(r.get('verdict') == 'EQUIVALENT' for r in rs)}/{len(rs)}",
            }
        )
    return markdown_table(out)


def section(results: Path, stem: str, title: str, columns: tuple, plots: tuple) -> str:
    """One Markdown section for ``results/stem.json`` (empty string when it does not exist)."""
    path = results / f"{stem}.json"
    if not path.is_file():
        return ""
    doc = json.loads(path.read_text())
    meta = doc.get("meta", {})
    raw = doc.get("rows", [])
    rows = [_flat(r) for r in raw]
    rows = [{c: r.get(c, "") for c in columns} for r in rows]
    for optional in ("error", "verify_note"):  # columns shown only when some row has one
        if rows and not any(r.get(optional) for r in rows):
            rows = [{c: v for c, v in r.items() if c != optional} for r in rows]
    load = f", 1-minute load average {meta['load_average']:.1f}" if "load_average" in meta else ""
    lines = [
        f"### {title}{' (quick)' if stem.endswith('_quick') else ''}",
        "",
        f"Command: `{meta.get('command', '?')}` — run {meta.get('utc', '?')} UTC at commit "
        f"`{meta.get('git_commit', '?')}` on {meta.get('cpus', '?')} CPUs{load}. "
        f"Rows: [`{stem}.csv`](results/{stem}.csv), [`{stem}.json`](results/{stem}.json).",
        "",
    ]
    if stem.startswith("table") and raw:
        lines += ["Summary (means over seeds):", "", summary(raw), "", "Every row:", ""]
    lines += [markdown_table(rows), ""]
    for suffix in plots:
        png = results / f"{stem}{suffix}"
        if png.is_file():
            lines += [f"![{stem}{suffix}](results/{png.name})", ""]
    return "\n".join(lines)


def regenerate(md_path: Path, results: Path) -> str:
    """Rewrite the generated block of ``md_path`` from the JSON files in ``results``."""
    parts = []
    for prefix, title, columns, plots in SECTIONS:
        for stem in (prefix, f"{prefix}_quick"):
            text = section(results, stem, title, columns, plots)
            if text:
                parts.append(text)
    block = "\n".join([START, "", *parts, END]) if parts else f"{START}\n(no results yet)\n{END}"
    old = md_path.read_text() if md_path.is_file() else f"# Benchmark results\n\n{START}\n{END}\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1]
        new = head + block + tail
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(md_path)
    return new
