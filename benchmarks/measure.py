"""Turning engine results into the figures the benchmarks record.

Counts are read from the :class:`~exactcomp.verdicts.StabilityReport` itself (not from
the engine's free-form statistics) so that every method is counted the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.verdicts import Proof, StabilityReport, Verdict

from .rows import LayerCounts


def verdict_counts(report: StabilityReport) -> dict[str, int]:
    """Neurons by verdict over the whole network."""
    return {
        "active": report.count(Verdict.ACTIVE),
        "inactive": report.count(Verdict.INACTIVE),
        "unstable": report.count(Verdict.UNSTABLE),
        "undecided": report.count(Verdict.UNDECIDED),
    }


def proof_counts(report: StabilityReport) -> dict[str, int]:
    """Neurons by the kind of proof that settled them (``none`` = undecided)."""
    totals = {p.name.lower(): 0 for p in Proof}
    for ls in report.layers:
        for p in Proof:
            totals[p.name.lower()] += int(np.count_nonzero(ls.proof == p))
    return totals


def milp_count(report: StabilityReport) -> int:
    """MILPs the engine says it solved (``stats["milps"]``; 0 when it does not say)."""
    return int(report.stats.get("milps", 0) or 0)


def bab_nodes(report: StabilityReport) -> int:
    """Branch-and-bound nodes the engine says it bounded (``stats["bab_nodes"]``)."""
    return int(report.stats.get("bab_nodes", 0) or 0)


def layer_counts(report: StabilityReport, json_report: dict[str, Any] | None) -> tuple:
    """Per hidden layer: width before/after and verdict counts.

    ``width_after`` comes from the compression report (layers may be merged away, so it
    cannot be read off the compressed network); without one it equals ``width_before``.
    """
    after = []
    if json_report is not None:
        after = [int(la.get("width_after", -1)) for la in json_report.get("layers", [])]
    out = []
    for i, ls in enumerate(report.layers):
        out.append(
            LayerCounts(
                width_before=ls.width,
                width_after=after[i] if i < len(after) else ls.width,
                active=ls.count(Verdict.ACTIVE),
                inactive=ls.count(Verdict.INACTIVE),
                unstable=ls.count(Verdict.UNSTABLE),
                undecided=ls.count(Verdict.UNDECIDED),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Verification:
    """The combined verdict of ``verify_equivalence`` over one or more boxes."""

    verdict: str
    seconds: float
    upper_bound: float
    tol: float
    note: str = ""  # the verifier's reason when it did not prove equivalence


def verify_boxes(
    original: Network,
    compressed: Network,
    boxes: Sequence[Box],
    *,
    time_limit: float,
    tol: float | None = None,
    certificates: StabilityReport | None = None,
) -> Verification:
    """Verify ``max |f - g|_inf <= tol`` over the union of ``boxes``.

    ``certificates``: the stability report the compression used; as in ``compress --verify``
    its claims are re-proven first and only then used (see ``api.verify_equivalence``).

    ``tol=None`` uses the library's default (the verifier knows which tolerances its solver
    margins can prove); the tolerance actually used is recorded. The API checks box by box
    and stops at the first that is not EQUIVALENT; the bound reported is the largest proven
    (NaN when the result carries none).
    """
    from exactcomp.api import verify_equivalence

    start = time.perf_counter()
    res = verify_equivalence(
        original,
        compressed,
        list(boxes),
        mode="linf",
        tol=tol,
        time_limit=time_limit,
        certificates=certificates,
    )
    seconds = time.perf_counter() - start
    ub = getattr(res, "upper_bound", None)
    return Verification(
        verdict=res.status.name,
        seconds=seconds,
        upper_bound=float(ub) if ub is not None else float("nan"),
        tol=float(getattr(res, "tol", tol if tol is not None else float("nan"))),
        note="" if res.status.name == "EQUIVALENT" else str(getattr(res, "reason", "") or ""),
    )
