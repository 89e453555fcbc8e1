"""``stability`` and ``scaling``: the stability methods side by side, in one run.

Each (network, domain) case runs every method (``naive``, ``leo``, ``fast``) in its own
child process with a wall-clock budget (see :mod:`benchmarks.isolate`). A method that runs
out of budget is recorded as "did not finish" with no figures; a method deliberately not
attempted (naive on a large network) as "skipped". Speed-ups are computed only between
methods that both finished, and stable sets are compared neuron by neuron.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from exactcomp.verdicts import Verdict

from .console import RichProgress
from .isolate import MethodSpec, run_isolated
from .measure import milp_count, proof_counts, verdict_counts
from .rows import MethodRow

METHODS = ("naive", "leo", "fast")


@dataclass(frozen=True)
class Case:
    """One network over one domain; ``naive_ok`` is False where naive is not attempted."""

    network: str
    model: Path
    domain: dict[str, Any]
    domain_label: str
    neurons: int
    width: int = 0
    depth: int = 0
    naive_ok: bool = True
    data: str | None = None


@dataclass(frozen=True)
class MethodOptions:
    """Budgets and engine options of a side-by-side run."""

    methods: tuple[str, ...] = METHODS
    time_limit: float = 10.0
    jobs: int | None = None
    budget: float = 600.0
    naive_budget: float = 300.0


def run_cases(cases: Sequence[Case], opts: MethodOptions, bars: RichProgress) -> list[MethodRow]:
    """Run every method on every case; rows carry speed-ups and stable-set comparisons."""
    rows: list[MethodRow] = []
    for case in cases:
        results: dict[str, tuple[MethodRow, Any]] = {}
        for method in opts.methods:
            bars.row(f"{case.network} {case.domain_label} {method}")
            results[method] = _run_one(case, method, opts)
            bars.row_done()
        rows += _compare(results)
    return rows


def _run_one(case: Case, method: str, opts: MethodOptions) -> tuple[MethodRow, Any]:
    nan = math.nan
    base = MethodRow(
        network=case.network,
        domain=case.domain_label,
        method=method,
        status="skipped",
        neurons=case.neurons,
        seconds=nan,
        milps=nan,
        active=nan,
        inactive=nan,
        unstable=nan,
        undecided=nan,
        width=case.width,
        depth=case.depth,
    )
    if method == "naive" and not case.naive_ok:
        return base, None
    spec = MethodSpec(
        model=str(case.model.resolve()),
        domain=case.domain,
        method=method,
        time_limit=opts.time_limit,
        jobs=opts.jobs,
        data=case.data,
    )
    budget = opts.naive_budget if method == "naive" else opts.budget
    outcome = run_isolated(spec, budget)
    if outcome.report is None:
        status = outcome.status
        if status == "did not finish":
            status = f"did not finish in {budget:g} s"
        return replace(base, status=status), None
    rep = outcome.report
    counts = verdict_counts(rep)
    row = replace(
        base,
        status="ok",
        seconds=outcome.seconds,
        wall_seconds=outcome.wall_seconds,
        milps=float(milp_count(rep)),
        proofs={k: v for k, v in proof_counts(rep).items() if v},
        **{k: float(v) for k, v in counts.items()},
    )
    return row, rep


def _compare(results: dict[str, tuple[MethodRow, Any]]) -> list[MethodRow]:
    """Fill in speed-ups against naive and leo, and whether stable sets match theirs."""
    out = []
    for _method, (row, rep) in results.items():
        speed: dict[str, float] = {}
        same = []
        for ref in ("naive", "leo"):
            ref_row, ref_rep = results.get(ref, (None, None))
            if ref_rep is None or rep is None:
                speed[ref] = math.nan
                continue
            speed[ref] = ref_row.seconds / row.seconds if row.seconds > 0 else math.nan
            if ref_row is row:
                continue
            same.append(f"{ref}:{_agreement(rep, ref_rep)}")
        out.append(
            replace(
                row,
                speedup_vs_naive=speed["naive"],
                speedup_vs_leo=speed["leo"],
                same_as=" ".join(same),
            )
        )
    return out


def _agreement(rep: Any, ref: Any) -> str:
    """How two runs' verdicts compare: ``yes`` (identical), ``yes where both decided (n
    undecided in one)`` (a time-out is not a disagreement), or ``CONTRADICTION (n)``: neurons
    both runs decided differently, which is a soundness bug since every verdict is proven."""
    contradictions = one_sided = 0
    for a, b in zip(rep.layers, ref.layers, strict=True):
        va, vb = np.asarray(a.verdict), np.asarray(b.verdict)
        decided = (va != Verdict.UNDECIDED) & (vb != Verdict.UNDECIDED)
        contradictions += int(np.sum(decided & (va != vb)))
        one_sided += int(np.sum((va == Verdict.UNDECIDED) != (vb == Verdict.UNDECIDED)))
    if contradictions:
        return f"CONTRADICTION ({contradictions} neurons)"
    if one_sided:
        return f"yes where both decided ({one_sided} undecided in one)"
    return "yes"


STABILITY_COLUMNS = (
    "network",
    "domain",
    "method",
    "status",
    "neurons",
    "active",
    "inactive",
    "unstable",
    "undecided",
    "proofs",
    "milps",
    "seconds",
    "wall_seconds",
    "speedup_vs_naive",
    "speedup_vs_leo",
    "same_as",
)
SCALING_COLUMNS = ("width", "depth", *STABILITY_COLUMNS[2:])
