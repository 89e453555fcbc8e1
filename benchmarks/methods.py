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

from .console import RichProgress
from .isolate import MethodSpec, run_isolated
from .measure import milp_count, proof_counts, stable_sets, verdict_counts
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
            diff = _differing(stable_sets(rep), stable_sets(ref_rep))
            same.append(f"{ref}:{'yes' if diff == 0 else f'NO ({diff} neurons differ)'}")
        out.append(
            replace(
                row,
                speedup_vs_naive=speed["naive"],
                speedup_vs_leo=speed["leo"],
                same_as=" ".join(same),
            )
        )
    return out


def _differing(a: tuple[frozenset, frozenset], b: tuple[frozenset, frozenset]) -> int:
    """Neurons whose stable/not-stable classification (and sign) differs between two runs."""
    return len((a[0] ^ b[0]) | (a[1] ^ b[1]))


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
