r"""Branch and bound on ``f``'s ReLU phases inside the joint LP: a tighter bound of ``max |g - f|``.

The joint LP of :mod:`exactcomp.verify.difflp` relaxes every unstable ReLU of ``f`` and ``g``
by its triangle and every ReLU difference :math:`\Delta = h^g - h^f` by its chord band between
:math:`\min(0, d)` and :math:`\max(0, d)`, :math:`d = z^g - z^f`. Fixing the phase of one of
``f``'s unstable neurons :math:`(k, n)` removes ``f``'s triangle there: on the half
:math:`z^f_{kn} \ge 0`, :math:`h^f = z^f` and :math:`\Delta \ge \max(d, -z^f)` holds exactly
through ``g``'s triangle; on :math:`z^f_{kn} \le 0`, :math:`h^f = 0` and ``g``'s upper bound
drops to :math:`\overline{d}_{kn}`. (A three-way split at :math:`-\overline{d}, 0,
-\underline{d}`, where both networks' phases are fixed on the outer parts, was measured too:
no better on the digits model at 8 bits, worse on 9 of 12 tiny networks.)

Search (best first). A node is a set of split neurons with their ranges; its LP is the joint
LP rebuilt on ``f``'s root bounds cut to those ranges. Each node holds one *side* ``(i, s)``:
a bound of :math:`\max_x -s\,(g_i - f_i)` over its half-space set. The open node with the largest bound is
split on the unstable neuron of ``f`` with the largest score

.. math::

    \sigma_{kn} \,\big(|h^f - \mathrm{relu}(z^f)| + |h^g - \mathrm{relu}(z^g)|\big)_{kn}
    \quad\text{at the node LP's optimum,}

:math:`\sigma_{L-1} = |W^f_L[i]|`, :math:`\sigma_k = \sigma_{k+1} |W^f_{k+1}|` (how much the
relaxation gap of that neuron moves the objective). Until the time budget is spent.

Soundness by construction: the two children's sets cover the parent's (every :math:`x` has
:math:`z^f_{kn}(x) \ge 0` or :math:`\le 0`); the root bounds of every node hold on its set, the
difference bounds :math:`[\underline{d}, \overline{d}]` are the root's (valid on the whole box);
each node's bound is the weak-duality bound of :func:`exactcomp.verify.difflp.side_bound`, and
a child whose LP is not solved to optimality (time-out, infeasible, error) keeps its parent's
bound. The claim for output ``i`` is the max over its two sides of the max over their open
leaves; a time-out simply returns the current maxima.

What it buys (benchmarks/RESULTS.md, issue 15): on tiny networks up to a third of the gap
between the joint LP and the exact maximum in a few seconds; on the digits 64-100-100-10 model
at 8 bits 3.706 -> 3.681 in 48 nodes (30 s) and 3.666 in 177 (120 s): the looseness is spread
over 200 unstable neurons, and a node keeps the root's bounds of the layers after a split.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from itertools import count

import numpy as np

from ..domain import Box
from ..highs.lp import Lp
from .difflp import LayerColumns, joint_lp, layer_differences, side_bound
from .pairs import Pair


@dataclasses.dataclass(frozen=True)
class BabBounds:
    """Per output of ``pair.outputs``, the proven bound of ``max |g_i - f_i|`` (``inf`` if the
    root LP was not solved), the root LP's bounds, and the nodes whose LP was solved."""

    bounds: np.ndarray
    root: np.ndarray
    nodes: int


def _node_pair(pair: Pair, fixed: dict[tuple[int, int], tuple[float, float]]) -> Pair:
    """``pair`` with ``f``'s root bounds cut to the split neurons' ranges."""
    root = [(lo.copy(), hi.copy()) for lo, hi in pair.root]
    for (k, n), (a, b) in fixed.items():
        root[k][0][n] = max(root[k][0][n], a)
        root[k][1][n] = min(root[k][1][n], b)
    return dataclasses.replace(pair, root=tuple(root))


def _children(fixed, where) -> list[dict]:
    """The two children of a node split on ``f``'s neuron ``where``: ``z >= 0``, ``z <= 0``."""
    return [{**fixed, where: (0.0, np.inf)}, {**fixed, where: (-np.inf, 0.0)}]


def _solve(pair: Pair, box: Box, diffs, i: int, sign: float, fixed, deadline: float):
    """One node: its side bound and the branching neuron (``None`` if none is left)."""
    sub = _node_pair(pair, fixed)
    lp, cols = joint_lp(sub, box, diffs)
    got = side_bound(Lp.from_model(lp), lp, sub, cols[-1].hf, cols[-1].hg, i, sign, deadline)
    if got is None:
        return None
    return got[0], _branch(sub, cols, got[1], i)


def _branch(pair: Pair, cols: list[LayerColumns], values: np.ndarray, i: int):
    """The unstable neuron of ``f`` of largest score (module docstring), or ``None``."""
    f = pair.f
    sigma = np.abs(f.layers[-1].weight[i])
    best, where = 0.0, None
    for k in range(len(cols) - 1, -1, -1):
        c = cols[k]
        lo, hi = pair.root[k]
        gap = np.abs(values[c.hf] - np.maximum(values[c.zf], 0.0))
        gap += np.abs(values[c.hg] - np.maximum(values[c.zg], 0.0))
        score = np.where((lo < 0) & (hi > 0), sigma * gap, 0.0) if f.layers[k].relu else 0 * gap
        n = int(np.argmax(score))
        if score[n] > best:
            best, where = float(score[n]), (k, n)
        sigma = sigma @ np.abs(f.layers[k].weight)
    return where


def bab_difference_bounds(
    pair: Pair, box: Box, seconds: float, *, target: float = 0.0, max_nodes: int | None = None
) -> BabBounds:
    """Per output ``i`` of ``pair.outputs``, a sound bound of ``max_x |g_i(x) - f_i(x)|`` on
    ``box`` (the root box of ``pair``) by best-first branch and bound on ``f``'s ReLU phases
    (module docstring) within ``seconds``; a side whose bound is at most ``target`` is not
    split further; ``max_nodes`` caps the node LPs solved (a count, so that a result does not
    depend on the machine's load)."""
    deadline = time.monotonic() + max(float(seconds), 0.0)
    diffs = layer_differences(pair, box)
    outs = list(pair.outputs)
    side = np.full((len(outs), 2), np.inf)
    heap: list = []
    tie = count()
    nodes = 0
    lp, cols = joint_lp(pair, box, diffs)
    h = Lp.from_model(lp)
    for o, i in enumerate(outs):
        for s, sign in enumerate((1.0, -1.0)):
            got = side_bound(h, lp, pair, cols[-1].hf, cols[-1].hg, i, sign, deadline)
            if got is None:
                continue
            nodes += 1
            side[o, s] = got[0]
            where = _branch(pair, cols, got[1], i)
            heapq.heappush(heap, (-got[0], next(tie), o, s, {}, where))
    root = side.max(axis=1)
    leaves: dict[tuple[int, int], list[float]] = {}  # closed leaves per side
    cap = np.inf if max_nodes is None else max_nodes
    while heap and time.monotonic() < deadline and nodes < cap:
        neg, _, o, s, fixed, where = heapq.heappop(heap)
        if where is None or -neg <= target:
            leaves.setdefault((o, s), []).append(-neg)
            continue
        sign = 1.0 if s == 0 else -1.0
        for child in _children(fixed, where):
            got = _solve(pair, box, diffs, outs[o], sign, child, deadline)
            if got is None:  # not solved: the parent's bound holds on the child's set
                leaves.setdefault((o, s), []).append(-neg)
                continue
            nodes += 1
            bound = min(got[0], -neg)
            heapq.heappush(heap, (-bound, next(tie), o, s, child, got[1]))
    for neg, _, o, s, *_ in heap:
        leaves.setdefault((o, s), []).append(-neg)
    for (o, s), bs in leaves.items():
        side[o, s] = max(bs)
    return BabBounds(side.max(axis=1), root, nodes)
