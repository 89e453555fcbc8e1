"""The outcomes of ``compress --tol``'s strategies: what each writes, and which one is kept.

The greedy search (:mod:`exactcomp.rewrite.lossy`), global magnitude pruning
(:mod:`exactcomp.rewrite.magnitude`) and the low-rank strategy
(:mod:`exactcomp.rewrite.lowrank`) each end in a
:class:`~exactcomp.rewrite.lossy.LossyOutcome` proven by one proof of the whole against the
original. The network it writes folds its merges and expands its low-rank layers into factor
pairs (:func:`written_network`); the proof of the outcome's network plus :func:`pad` bounds
the written one; :func:`better` keeps the outcome within ``tol`` with the fewest parameters as
written. :func:`exact_pass_facts`: what the exact pass that runs first removed (the report's
``exact_pass``).
"""

from __future__ import annotations

from typing import Any

from .lossy_result import nonzero_parameters
from .network import Network
from .rewrite import merging
from .rewrite.lossy import LossyOutcome
from .rewrite.lowrank import expand, rounding_pad, written_frozen
from .rewrite.structural import drop_unused_grids

__all__ = ["better", "exact_pass_facts", "pad", "written_network"]


def pad(out: LossyOutcome, boxes) -> float:
    """What the written factors' real products and the folded merges may add to a proof of
    ``out.network``."""
    folds = merging.fold_pad(out.network, out.merges, boxes)
    if not out.factors:
        return folds
    return folds + rounding_pad(out.network, written_frozen(out.network, out.factors), boxes)


def written_network(out: LossyOutcome) -> Network:
    """The network an outcome writes: its merges folded, its low-rank layers as factor
    pairs, if any."""
    net = merging.fold(out.network, out.merges) if out.merges else out.network
    return expand(net, out.factors) if out.factors else net


def better(
    search_out: LossyOutcome,
    magnitude_out: LossyOutcome,
    tol: float,
    lowrank_out: LossyOutcome | None = None,
) -> tuple[LossyOutcome, dict]:
    """Of the greedy search's result, global magnitude pruning's
    (:mod:`exactcomp.rewrite.magnitude`) and the low-rank strategy's
    (:mod:`exactcomp.rewrite.lowrank`, when it found a rank), each proven by one proof of the
    whole against the original: the one proven within ``tol`` that keeps fewer nonzero
    parameters as written (factors counted) once the neurons without effect are dropped (a
    tie: the smaller proof, then the search). Returns it and the report's keys ``strategy``
    and ``strategies`` (each one's size and proof; the low-rank one's per-layer ranks)."""
    outs = {"search": search_out, "magnitude": magnitude_out}
    if lowrank_out is not None:
        outs["lowrank"] = lowrank_out
    facts = {
        name: {
            "parameters_after": nonzero_parameters(
                drop_unused_grids(written_network(o), [None] * len(written_network(o).layers))[0]
            ),
            "proven_max_abs_diff": o.proven,
        }
        for name, o in outs.items()
    }
    if lowrank_out is not None:
        facts["lowrank"]["ranks"] = [
            {"layer": fa.layer, "rank": fa.rank, "of": fa.full_rank, "charge": fa.charge}
            for fa in lowrank_out.factors
        ]

    def key(name: str) -> tuple:
        return (outs[name].proven > tol, facts[name]["parameters_after"], outs[name].proven)

    best = min(outs, key=key)  # min is stable: "search" first on a full tie
    return outs[best], {"strategy": best, "strategies": facts}


def exact_pass_facts(original: Network, done: Any, seconds: float, gap: float = 0.0) -> dict:
    """What the exact pass (a ``CompressionResult``) removed, its ``seconds``, the points its
    re-check evaluated (``check_points``: :mod:`exactcomp.api.sampling`) and the proven
    ``gap`` between its network and ``original`` (:mod:`exactcomp.exact_reference`)."""
    stats = done.stability.stats
    return {
        "neurons_removed": original.num_neurons - done.network.num_neurons,
        "parameters_removed": nonzero_parameters(original) - nonzero_parameters(done.network),
        "seconds": round(seconds, 3),
        "undecided": int(stats.get("undecided", 0)),
        "architecture_after": done.network.describe(),
        "check_points": int(done.check.points),
        "gap": gap,
    }
