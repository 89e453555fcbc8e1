r"""Witnesses by local search over activation patterns, one LP per step.

Why: gradient search on a piecewise-linear function stalls on its kinks, and on
mnist-net_256x2 (prop_1 box) it left 47 questions of layer 1 open whose answer HiGHS then
had to find by branch and bound. Many of those neurons are unstable by a small margin
(one reaches +0.05 where 5,000 samples and gradient search saw at most -0.27). This search
finds such points with LPs only.

The idea, for the question "can :math:`s\,z_{kj} > 0`?" with :math:`p = k - 1` the layer
feeding the target and :math:`c = s\,W_{k,j\cdot}`:

.. math::

    s\,z_{kj}(x) = \sum_{i:\,c_i > 0} c_i\, \mathrm{relu}(z_{pi}(x))
                 + \sum_{i:\,c_i < 0} c_i\, \mathrm{relu}(z_{pi}(x)) + s\,b_{kj}.

Since :math:`\mathrm{relu}(t) \ge t` and :math:`\mathrm{relu}(t) \ge 0`, replacing the first
sum by :math:`\sum_{i \in S} c_i z_{pi}(x)` for *any* subset :math:`S` of the positive terms
gives a lower bound :math:`f_S(x) \le s\,z_{kj}(x)`, with equality when :math:`S` is the set of
those neurons active at :math:`x`. The second sum is concave, so
:math:`\max_x f_S(x)` is an LP (an epigraph variable :math:`t_i \ge z_{pi}, t_i \ge 0` per
negative term) whenever :math:`z_p` is affine in :math:`x`: always for :math:`p = 0`, and for
deeper layers inside the activation region of the layers below :math:`p` (whose sign
constraints are then rows of the LP). The search:

1. from a start :math:`x`, take :math:`S` = the active positive terms, solve the LP, and move
   to its optimum while the true value improves (a convex-concave ascent: each step can only
   increase :math:`s\,z_{kj}`);
2. when stuck, try toggling one neuron in or out of :math:`S` (one LP each; those whose
   term :math:`|c_i z_{pi}(x)|` is smallest first, i.e. nearest their kink) and restart 1
   from the first toggle that improves the true value;
3. stop at a positive value, when no toggle improves, after ``max_lps`` LPs, or at the
   deadline (checked before each LP, and the running LP is capped to the time left).

Everything returned is only a *candidate*: the caller evaluates it in float64 through the
whole network (:class:`~exactcomp.stability.witnesses.WitnessPool`), so a mistake here can
cost time but never soundness.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from ..domain import Box
from ..highs.lp import Lp
from ..network import Network
from ..verdicts import stable_masks


def _states(net: Network, bounds, verdicts, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Proven (inactive, active) masks of one layer from its bounds and verdicts."""
    v = verdicts[layer] if verdicts is not None and layer < len(verdicts) else None
    return stable_masks(*bounds[layer], v)


def _affine_prefix(net, bounds, verdicts, p: int, x: np.ndarray):
    """``z_p = A x + d`` on the activation region of ``x`` in layers ``< p``, and the region
    as rows ``G x <= g`` (one per neuron of those layers not proven stable)."""
    n = net.input_size
    ha, hd = None, np.zeros(n)  # h = ha x + hd; None: the identity (no n x n product)
    rows, rhs = [np.zeros((0, n))], [np.zeros(0)]
    for layer_index in range(p + 1):
        layer = net.layers[layer_index]
        za = layer.weight if ha is None else layer.weight @ ha
        zd = layer.weight @ hd + layer.bias
        if layer_index == p:
            return za, zd, np.vstack(rows), np.concatenate(rhs)
        if not layer.relu:
            ha, hd = za, zd
            continue
        inactive, active = _states(net, bounds, verdicts, layer_index)
        on = np.where(inactive, False, np.where(active, True, za @ x + zd > 0.0))
        free = ~(inactive | active)
        sign = np.where(on, -1.0, 1.0)[free]  # on: -(za x + zd) <= 0; off: za x + zd <= 0
        rows.append(sign[:, None] * za[free])
        rhs.append(-sign * zd[free])
        ha, hd = za * on[:, None], zd * on
    raise AssertionError("unreachable")


class _Lp:
    """``max c_S . z_p + c_N . t`` over the box and region, only the objective changing."""

    def __init__(self, box: Box, a, d, g, gb, negative: np.ndarray) -> None:
        n = box.dim
        self.a, self.n = a, n
        m = len(negative)
        lp = Lp.from_columns(
            np.concatenate([box.lower, np.zeros(m)]),
            np.concatenate([box.upper, np.full(m, np.inf)]),
            maximize=True,
            presolve=False,  # re-solved from the previous basis each time
        )
        for r, i in enumerate(negative):  # t_i - a_i x >= d_i
            idx = np.append(np.arange(n), n + r)
            lp.add_row(float(d[i]), np.inf, idx, np.append(-a[i], 1.0))
        cols = np.arange(n)
        for row, b in zip(g, gb, strict=True):
            lp.add_row(-np.inf, float(b), cols, row)
        self.lp = lp

    def solve(
        self, linear: np.ndarray, cost_neg: np.ndarray, deadline: float | None = None
    ) -> np.ndarray | None:
        """Maximise ``linear . z_p`` (over the rows of ``a``) plus ``cost_neg . t``, within
        ``deadline`` (``time.monotonic()``; ``None`` past it)."""
        obj = np.concatenate([linear @ self.a, cost_neg])
        self.lp.set_cost(obj)
        values = self.lp.solve(deadline).values
        return None if values is None else np.array(values[: self.n], dtype=np.float64)


def region_search(
    net: Network,
    box: Box,
    k: int,
    bounds: Sequence[tuple[np.ndarray, np.ndarray]],
    verdicts: Sequence[np.ndarray | None] | None,
    neuron: int,
    sign: int,
    start: np.ndarray,
    max_lps: int,
    deadline: float | None = None,
) -> np.ndarray:
    """Candidate inputs with large ``sign * z[k][neuron]`` (see the module docstring).

    ``bounds``/``verdicts``: proven bounds and verdicts of layers ``< k`` (they only decide
    which neurons need a pattern; nothing is trusted beyond that). ``deadline``: a
    ``time.monotonic()`` instant after which no LP starts. Returns the visited points (the
    best last), possibly none.
    """
    p = k - 1
    if p < 0 or not net.layers[p].relu:
        return np.empty((0, box.dim))
    x = box.clip(np.asarray(start, dtype=np.float64).reshape(1, -1))[0]
    c = sign * net.layers[k].weight[neuron]
    inactive, active = _states(net, bounds, verdicts, p)
    free = ~(inactive | active)
    positive = np.flatnonzero(free & (c > 0))
    negative = np.flatnonzero(free & (c < 0))
    always = np.where(active, c, 0.0)  # stably active neurons are linear terms

    def value(y: np.ndarray) -> float:
        return float(sign * net.preactivations(y[None, :])[k][0, neuron])

    a, d, g, gb = _affine_prefix(net, bounds, verdicts, p, x)
    lp = _Lp(box, a, d, g, gb, negative)
    cost_neg = c[negative]
    best, visited, lps = value(x), [], 0

    def step(chosen: np.ndarray) -> np.ndarray | None:
        nonlocal lps
        lps += 1
        linear = always.copy()
        linear[chosen] += c[chosen]
        y = lp.solve(linear, cost_neg, deadline)
        return None if y is None else box.clip(y[None, :])[0]

    def late() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    while lps < max_lps and best <= 0.0 and not late():
        zp = a[positive] @ x + d[positive]
        on = positive[zp > 0.0]
        moved = False
        # toggles that change f_S(x) least first: neurons close to their kink
        order = positive[np.argsort(np.abs(c[positive] * zp), kind="stable")]
        candidates = itertools.chain([on], (np.setxor1d(on, [i]) for i in order))
        for chosen in candidates:
            if lps >= max_lps or late():
                break
            y = step(chosen)
            if y is None:
                continue
            v = value(y)
            if v > best + 1e-12 * (1.0 + abs(best)):
                best, x, moved = v, y, True
                visited.append(y)
                break
        if not moved:
            break
    return np.array(visited) if visited else np.empty((0, box.dim))
