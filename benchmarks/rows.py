"""Result rows of every benchmark, and the writers that turn them into CSV, JSON and Markdown.

Rows are frozen dataclasses so a benchmark cannot quietly change a figure after it was
measured; the writers flatten them (per-layer tuples become ``"a|b|c"`` strings in CSV and
Markdown, and stay nested in JSON) so one row type feeds every output format.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayerCounts:
    """Verdict counts for one hidden layer of the *input* network."""

    width_before: int
    width_after: int
    active: int
    inactive: int
    unstable: int
    undecided: int


@dataclass(frozen=True)
class TableRow:
    """One digits model of the ``table`` grid: compressed, evaluated and verified."""

    arch: str
    l1: float
    seed: int
    acc_before: float
    acc_after: float
    acc_after_f32: float
    test_mismatches: int
    neurons_before: int
    neurons_after: int
    params_before: int
    params_after: int
    pct_removed: float
    layers: tuple[LayerCounts, ...]
    seconds: float
    milps: int
    verdict: str
    verify_seconds: float
    verify_bound: float
    verify_tol: float = math.nan
    verify_note: str = ""
    error: str = ""
    proofs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodRow:
    """One stability method on one network and domain (the ``stability`` and ``scaling`` runs).

    ``status`` is ``"ok"``, ``"did not finish"`` (budget exceeded, process stopped),
    ``"skipped"`` (too large for the method, not attempted) or ``"error: ..."``; every
    figure of a row that is not ``"ok"`` is NaN rather than a guess.
    """

    network: str
    domain: str
    method: str
    status: str
    neurons: int
    seconds: float
    milps: float
    active: float
    inactive: float
    unstable: float
    undecided: float
    proofs: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = math.nan
    speedup_vs_naive: float = math.nan
    speedup_vs_leo: float = math.nan
    same_as: str = ""
    width: int = 0
    depth: int = 0


@dataclass(frozen=True)
class RealRow:
    """One real network compressed over one VNN-LIB property's input boxes, then verified."""

    network: str
    prop: str
    boxes: int
    neurons_before: int
    neurons_after: int
    pct_removed: float
    active: int
    inactive: int
    unstable: int
    undecided: int
    proofs: dict[str, int]
    seconds: float
    milps: int
    verdict: str
    verify_seconds: float
    verify_tol: float = math.nan
    verify_note: str = ""
    error: str = ""
    # written sizes (a convolutional network is written as Conv, never larger than its input)
    parameters_before: int = -1
    parameters_after: int = -1
    bytes_before: int = -1
    bytes_after: int = -1
    channels_removed: int = 0
    bab_nodes: int = -1  # branch-and-bound nodes (input-split boxes, ReLU-split LPs)
    # which code ran it (benchmarks.engines): "current" (this checkout) or "previous"
    engine: str = "current"
    # "ok"; "budget" (analysis stopped at the budget, the rest kept as UNDECIDED);
    # "did not finish" (stopped by the parent: no figures, or no verdict); "error"
    status: str = "ok"
    cpu_seconds: float = math.nan  # compress's CPU seconds, MILP worker processes included
    pct_stable: float = math.nan  # neurons proven stably active or inactive, in %


@dataclass(frozen=True)
class RealConsoleRow:
    """The columns of a :class:`RealRow` that fit an 80-column console (JSON keeps all)."""

    net: str
    prop: str
    eng: str
    undec: str
    sec: str
    milp: str
    nodes: str
    neurons: str
    verdict: str

    @classmethod
    def of(cls, row: RealRow) -> RealConsoleRow:
        """The short form of ``row`` (``-`` where there is no figure; ``*``: budget reached)."""
        prop = row.prop.replace("mnist_spec_idx_", "idx").replace("cifar_base_kw-", "")
        verdict = {"EQUIVALENT": "EQUIV", "did not finish": "DNF", "UNKNOWN": "UNKN"}
        return cls(
            net=row.network[:12],
            prop=prop[:9],
            eng=row.engine[:4],
            undec=_short(row.undecided) + ("*" if row.status == "budget" else ""),
            sec=_short(row.seconds, 1),
            milp=_short(row.milps),
            nodes=_short(row.bab_nodes),
            neurons="-"
            if row.neurons_before < 0
            else f"{_short(row.neurons_before)}>{_short(row.neurons_after)}",
            verdict=verdict.get(row.verdict, row.verdict)[:5],
        )


def _short(v: float, decimals: int = 0) -> str:
    """At most 5 characters: ``-`` for no figure, ``123k``, ``1.2M``; one decimal below 1000."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v < 0:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e5:
        return f"{v / 1e3:.0f}k"
    return f"{v:.{decimals if v < 1000 else 0}f}"


def _flat(value: Any) -> Any:
    """A CSV/Markdown cell: per-layer tuples as ``a|b``, dicts as ``k=v;...``, floats rounded."""
    if isinstance(value, (list, tuple)):
        return "|".join(str(_flat(v)) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items() if v)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return value


def flatten(row: Any) -> dict[str, Any]:
    """A row as a flat dict; ``layers`` becomes one ``"x|y"`` column per counted quantity."""
    out: dict[str, Any] = {}
    for f in fields(row):
        value = getattr(row, f.name)
        if f.name == "layers":
            for key in (
                "width_before",
                "width_after",
                "active",
                "inactive",
                "unstable",
                "undecided",
            ):
                out[f"layer_{key}"] = "|".join(str(getattr(lc, key)) for lc in value)
        else:
            out[f.name] = _flat(value)
    return out


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_rows(rows: Sequence[Any], out_dir: Path, stem: str, meta: dict[str, Any]) -> list[Path]:
    """Write ``stem.csv``, ``stem.json`` (rows plus run metadata) and ``stem.md``; return paths.

    Files are written to a temporary name then renamed, so an interrupted run never leaves
    a half-written result next to older complete ones.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [flatten(r) for r in rows]
    paths = []

    csv_path = out_dir / f"{stem}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        if flat:
            writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
            writer.writeheader()
            writer.writerows(flat)
    tmp.replace(csv_path)
    paths.append(csv_path)

    json_path = out_dir / f"{stem}.json"
    doc = {"meta": meta, "rows": [_nan_to_none(asdict(r)) for r in rows]}
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(json_path)
    paths.append(json_path)

    md_path = out_dir / f"{stem}.md"
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(markdown_table(flat) + "\n")
    tmp.replace(md_path)
    paths.append(md_path)
    return paths


def markdown_table(flat: Sequence[dict[str, Any]]) -> str:
    """A GitHub Markdown table of flat rows (columns in the first row's order)."""
    if not flat:
        return "(no rows)"
    cols = list(flat[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in flat:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)
