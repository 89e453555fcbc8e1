"""Report assembly: keep only the witness rows cited, and merge per-box reports of a union.

Union of boxes: a neuron is INACTIVE (ACTIVE) over the union iff it is INACTIVE (ACTIVE) on
every box; its proof kind is the most expensive one used on any box and its bounds are the
hull of the per-box bounds. It is UNSTABLE iff concrete inputs (from any box) show both signs:
an INACTIVE-here, ACTIVE-there neuron is unstable only once such inputs are found (we also try
each box's cited witnesses and centre); otherwise, and whenever a box left it UNDECIDED, it is
UNDECIDED.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..network import Network
from ..tolerances import Tolerances
from ..verdicts import LayerStability, Proof, StabilityReport, Verdict
from .witnesses import WitnessPool


def compact_witnesses(
    layers: Sequence[LayerStability], rows: np.ndarray
) -> tuple[list[LayerStability], np.ndarray]:
    """Drop the pool rows no verdict cites and renumber the witness indices."""
    cited = np.unique(
        np.concatenate([np.concatenate([ls.witness_pos, ls.witness_neg]) for ls in layers] or [[]])
    ).astype(np.int64)
    cited = cited[cited >= 0]
    remap = np.full(len(rows) + 1, -1, dtype=np.int64)
    remap[cited] = np.arange(cited.size)
    out = [
        LayerStability(
            ls.layer,
            ls.verdict,
            ls.proof,
            ls.lower,
            ls.upper,
            remap[ls.witness_pos],  # -1 maps to remap[-1] == -1
            remap[ls.witness_neg],
        )
        for ls in layers
    ]
    return out, rows[cited] if len(rows) else np.empty((0, rows.shape[1] if rows.ndim == 2 else 0))


def merge_reports(
    net: Network, boxes: Sequence[Box], reports: Sequence[StabilityReport], tol: Tolerances
) -> StabilityReport:
    """Merge per-box reports into the report for the union of the boxes."""
    hull = Box(np.min([b.lower for b in boxes], axis=0), np.max([b.upper for b in boxes], axis=0))
    pool = WitnessPool(net, hull, tol)
    for r in reports:
        pool.add(r.witnesses)
    pool.add(np.array([b.center for b in boxes]))
    layers = []
    for i, k in enumerate(net.relu_layers):
        per = [r.layers[i] for r in reports]
        v = np.array([ls.verdict for ls in per])
        all_inactive = (v == Verdict.INACTIVE).all(axis=0)
        all_active = (v == Verdict.ACTIVE).all(axis=0)
        any_undecided = (v == Verdict.UNDECIDED).any(axis=0)
        pos, neg = pool.pos[k] >= 0, pool.neg[k] >= 0
        verdict = np.full(v.shape[1], Verdict.UNDECIDED, dtype=np.int8)
        verdict[all_inactive] = Verdict.INACTIVE
        verdict[all_active] = Verdict.ACTIVE
        unstable = ~all_inactive & ~all_active & pos & neg & ~any_undecided
        unstable |= (v == Verdict.UNSTABLE).any(axis=0)
        verdict[unstable] = Verdict.UNSTABLE
        proof = np.max([ls.proof for ls in per], axis=0).astype(np.int8)
        proof[unstable] = Proof.WITNESS
        proof[verdict == Verdict.UNDECIDED] = Proof.NONE
        lower = np.min([ls.lower for ls in per], axis=0)
        upper = np.max([ls.upper for ls in per], axis=0)
        layers.append(
            LayerStability(k, verdict, proof, lower, upper, pool.pos[k].copy(), pool.neg[k].copy())
        )
    stats: dict[str, float] = {}
    for r in reports:
        for key, val in r.stats.items():
            stats[key] = stats.get(key, 0.0) + float(val)
    stats["undecided"] = sum(ls.count(Verdict.UNDECIDED) for ls in layers)
    layers_c, rows = compact_witnesses(layers, pool.rows())
    return StabilityReport(tuple(layers_c), rows, stats)
