r"""Re-check of the UNSTABLE claims of a stability report: their witnesses, in float64.

A neuron :math:`(k, j)` claimed UNSTABLE keeps its ReLU, so the claim does not bear on
exactness; it is re-checked all the same, as every claim of the report is. Each claim names
two rows of ``report.witnesses``, inputs at which :math:`z_{kj} > 0` and
:math:`z_{kj} < 0`. Both rows must lie in the domain (a box of the union) and, by a float64
forward pass, clear the one witness rule (:func:`exactcomp.search.witness_margin`):

.. math::

    s\, z_{kj}(x) > \tau(h_{k-1}(x)), \qquad s = +1 \text{ (positive witness)}, -1 \text{ (negative)},

with :math:`h_{k-1}` the layer's input at :math:`x` (:math:`x` itself for :math:`k = 0`).
Part of :func:`exactcomp.verify.recheck.recheck_certificates` (its step 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..network import Network
from ..search import witness_margin
from ..tolerances import Tolerances
from ..verdicts import StabilityReport, Verdict
from .result import ClaimFailure


def check_witnesses(
    net: Network,
    report: StabilityReport,
    boxes: Sequence[Box],
    tol: Tolerances,
    checked: dict[str, int],
) -> list[ClaimFailure]:
    """Every UNSTABLE claim needs a positive and a negative witness inside the domain (module
    docstring); each claim that has both counts under ``checked["witness"]``, each other one
    is a failure (not refuted: the neuron only keeps its ReLU)."""
    failures = []
    wit = np.asarray(report.witnesses, dtype=np.float64)
    inside = np.zeros(len(wit), dtype=bool)
    for b in boxes:
        if len(wit):
            inside |= b.contains(wit)
    pre = net.preactivations(wit) if len(wit) else None
    for ls in report.layers:
        layer = net.layers[ls.layer]
        for j in ls.indices(Verdict.UNSTABLE):
            ok, detail = True, ""
            for idx, sign in ((ls.witness_pos[j], 1.0), (ls.witness_neg[j], -1.0)):
                if idx < 0 or idx >= len(wit) or not inside[idx]:
                    ok, detail = False, f"no {'positive' if sign > 0 else 'negative'} witness"
                    break
                z = pre[ls.layer][idx, j]
                h = wit[idx] if ls.layer == 0 else _input_of(net, pre, ls.layer, idx)
                w, b = layer.weight[j : j + 1], layer.bias[j : j + 1]
                if not sign * z > witness_margin(h[None, :], w, b, tol)[0, 0]:
                    ok, detail = False, f"witness {idx} gives z = {z:.3g}"
                    break
            if ok:
                checked["witness"] += 1
            else:
                failures.append(ClaimFailure(ls.layer, int(j), "UNSTABLE", False, detail))
    return failures


def _input_of(net: Network, pre: list[np.ndarray], k: int, row: int) -> np.ndarray:
    """Layer ``k``'s input at witness ``row``: layer ``k - 1``'s output."""
    z = pre[k - 1][row]
    return np.maximum(z, 0.0) if net.layers[k - 1].relu else z
