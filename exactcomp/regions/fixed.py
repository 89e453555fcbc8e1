"""Which neurons never split a region: signs proven on the box, as the counters take them.

A counter takes ``fixed``: per ReLU layer an int8 array, 1 (proven active), 0 (proven
inactive) or -1 (free). The proofs come from a :class:`~exactcomp.verdicts.StabilityReport`:
the stability engine's, or :func:`bound_verdicts` (linear bounds only, milliseconds).
"""

from __future__ import annotations

import numpy as np

from ..bounds import linear_bounds
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import LayerStability, Proof, StabilityReport, Verdict


def fixed_signs(report: StabilityReport) -> list[np.ndarray]:
    """``fixed`` for the counters: 1/0 where ``report`` proves active/inactive, else -1."""
    out = []
    for ls in report.layers:
        v = np.asarray(ls.verdict)
        out.append(np.where(v == Verdict.ACTIVE, 1, np.where(v == Verdict.INACTIVE, 0, -1)))
    return [f.astype(np.int8) for f in out]


def bound_verdicts(net: Network, box: Box, tol: Tolerances = DEFAULT) -> StabilityReport:
    """Verdicts from linear (CROWN-style) bounds alone: sound and padded, no LP, no witness
    (a neuron they cannot settle is UNDECIDED, never UNSTABLE)."""
    pre = linear_bounds(net, box, tol=tol)
    layers = []
    for k in net.relu_layers:
        lo, hi = pre[k]
        verdict = np.where(hi <= 0, Verdict.INACTIVE, np.where(lo >= 0, Verdict.ACTIVE, 0))
        proof = np.where(verdict != 0, Proof.LINEAR, Proof.NONE)
        none = np.full(lo.size, -1, dtype=np.int64)
        layers.append(
            LayerStability(k, verdict.astype(np.int8), proof.astype(np.int8), lo, hi, none, none)
        )
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))
