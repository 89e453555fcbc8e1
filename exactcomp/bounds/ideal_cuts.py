r"""LP bounds tightened by the cuts of the ideal single-neuron formulation.

The triangle relaxation (:mod:`exactcomp.bounds.lp`) treats each unstable ReLU through its
own two bounds only. Anderson et al. ("Strong mixed-integer programming formulations for
trained neural networks", Math. Programming 2020) give the convex hull of one neuron
:math:`h = \max(0, w^\top x + b)` with its inputs in a box :math:`[L, U]` and its phase
:math:`a \in \{0, 1\}`: besides :math:`h \ge 0`, :math:`h \ge w^\top x + b`, it takes, for
every subset :math:`I` of the inputs,

.. math::

    h \;\le\; \sum_{t \in I} w_t \bigl(x_t - \breve L_t (1 - a)\bigr)
    + \Bigl(b + \sum_{t \notin I} w_t \breve U_t\Bigr) a ,

with :math:`\breve L_t, \breve U_t` the input bounds that minimise / maximise
:math:`w_t x_t`. Every network point satisfies it with :math:`a = [w^\top x + b > 0]`
(for :math:`a = 0` it reads :math:`0 \le \sum_I w_t (x_t - \breve L_t)`, for :math:`a = 1`
:math:`0 \le \sum_{t \notin I} w_t (\breve U_t - x_t)`), so the LP with any of these cuts is
still a relaxation of the network on the box and its optimum bounds :math:`z_k`. Given an LP
point, the most violated cut of a neuron puts :math:`t` in :math:`I` exactly when
:math:`w_t (x_t - \breve L_t (1 - a)) < w_t \breve U_t a`: a linear-time separation.

Here each unstable neuron of layers ``< k`` gets a phase column :math:`a \in [0, 1]` and the
big-M rows :math:`h \le u a`, :math:`h \le z - l (1 - a)`; then, per question
("bound :math:`s z_{k,i}`"), a few rounds of solve, separate, add. On mnist-net_256x2's
prop_1 box these cuts decide 70 of the 98 second-layer neurons the triangle LP left open, at
about 0.1 s each, where each MILP took 0.5-2.7 s.

Soundness: the bound is read from the row duals by weak duality, as in
:mod:`exactcomp.bounds.lp` (the cut rows are ordinary rows of the LP there), and each cut's
right-hand side is padded for the rounding of its float64 coefficients.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ..domain import Box
from ..highs.lp import Lp, lp_min
from ..highs.margins import solver_margin
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .interval import Bounds, pad
from .linear import all_finite, finite_prefix_bounds
from .lp import LAZY_ROWS, LPLayerResult, PrefixLP, add_lazy_rows, build_prefix_lp, layer_lp

__all__ = ["add_cut_rows", "ideal_cut_layer_result", "separate", "with_phases"]

_ROUNDS = 4
"""Separation rounds per question. On mnist-net_256x2 prop_1 every neuron the cuts decided
needed at most 3; the others improve by a few percent a round after that."""
_VIOLATION = 1e-9  # relative violation (to the cut's scale) below which a cut is not added
_PROBE = 10
_MIN_SETTLED = 0.1
"""After :data:`_PROBE` questions, the call stops once fewer than this share of its questions
were settled: on ACAS Xu's deeper layers (prop_1) the cuts settled none, and their 18.6 s
were pure overhead; on mnist-net_256x2 (prop_1) they settle about 60%."""


def _with_phases(lp: PrefixLP) -> tuple[PrefixLP, list[np.ndarray]]:
    """``lp`` plus a phase column ``a`` in [0, 1] per unstable ReLU and its big-M rows
    ``h - u a <= 0`` and ``h - z - l a <= -l``; returns it and the ``a`` columns per layer."""
    ncol = lp.matrix.shape[1]
    ri, ci, vi, hi_rows, phases = [], [], [], [], []
    nrow = 0
    for r in lp.relus:
        m = r.neurons.size
        a = np.arange(ncol, ncol + m)
        ncol += m
        phases.append(a)
        idx = np.arange(nrow, nrow + m)
        nrow += 2 * m
        ri += [idx, idx, idx + m, idx + m, idx + m]
        ci += [r.h, a, r.h, r.z, a]
        vi += [np.ones(m), -r.upper, np.ones(m), -np.ones(m), -r.lower]
        hi_rows += [np.zeros(m), -r.lower]
    if not phases:
        return lp, phases
    base = sp.csr_matrix(lp.matrix)
    base.resize((base.shape[0], ncol))
    rows = sp.csr_matrix(
        (np.concatenate(vi), (np.concatenate(ri), np.concatenate(ci))), shape=(nrow, ncol)
    )
    n_new = ncol - lp.matrix.shape[1]
    out = replace(
        lp,
        matrix=sp.vstack([base, rows], format="csr"),
        row_lower=np.concatenate([lp.row_lower, np.full(nrow, -np.inf)]),
        row_upper=np.concatenate([lp.row_upper, *hi_rows]),
        col_lower=np.concatenate([lp.col_lower, np.zeros(n_new)]),
        col_upper=np.concatenate([lp.col_upper, np.ones(n_new)]),
    )
    return out, phases


def _separate(
    net: Network, lp: PrefixLP, phases: list[np.ndarray], v: np.ndarray, tol: Tolerances
) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """The most violated ideal cut of every unstable ReLU at the LP point ``v``, if violated:
    (column indices, coefficients, right-hand side) of rows ``coef . v <= rhs``."""
    cols, coefs, rhss = [], [], []
    for r, acols in zip(lp.relus, phases, strict=True):
        live = r.inputs >= 0
        icol = r.inputs[live]
        lo_in, hi_in = lp.col_lower[icol], lp.col_upper[icol]
        xin = v[icol]
        weight = net.layers[r.layer].weight[r.neurons][:, live]
        bias = net.layers[r.layer].bias[r.neurons]
        for n in range(r.neurons.size):
            w = weight[n]
            nz = w != 0.0
            w, xt, lo_t, hi_t, c_t = w[nz], xin[nz], lo_in[nz], hi_in[nz], icol[nz]
            low = np.where(w > 0, lo_t, hi_t)  # the input bound minimising w_t x_t
            high = np.where(w > 0, hi_t, lo_t)
            a, h = v[acols[n]], v[r.h[n]]
            t_in = w * (xt - low * (1.0 - a))
            t_out = w * high * a
            inside = t_in < t_out
            value = float(np.where(inside, t_in, t_out).sum() + bias[n] * a)
            scale = float(np.abs(w * low).sum() + np.abs(w * high).sum() + abs(bias[n]))
            if h <= value + _VIOLATION * (1.0 + scale):
                continue
            # h - sum_I w_t x_t - C a <= -sum_I w_t low_t,  C = sum_I w low + b + sum_~I w high
            sum_low = float((w[inside] * low[inside]).sum())
            c = sum_low + float(bias[n]) + float((w[~inside] * high[~inside]).sum())
            cols.append(np.concatenate([[r.h[n], acols[n]], c_t[inside]]))
            coefs.append(np.concatenate([[1.0, -c], -w[inside]]))
            rhss.append(-sum_low + float(pad(np.asarray(scale), tol)))
    return cols, coefs, rhss


def ideal_cut_layer_result(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds | None],
    neurons: Sequence[int] | np.ndarray,
    sides: Sequence[int] | np.ndarray,
    tol: Tolerances = DEFAULT,
    deadline: float | None = None,
    probe: bool = True,
    cpu_limit: float | None = None,
) -> LPLayerResult:
    """Sound bounds of ``z_k`` for ``neurons`` from the triangle LP with ideal cuts.

    ``sides`` (one per neuron) as in :func:`~exactcomp.bounds.lp.lp_layer_result`: ``+1``
    tightens only the upper bound, ``-1`` only the lower, ``0`` both. ``deadline`` is a
    ``time.monotonic()`` instant after which no further LP is solved; ``cpu_limit`` the CPU
    seconds of this process (``time.process_time()``, HiGHS solving in it) after which none
    starts either, so that a cap on a load-bound machine cuts off as many LPs as on a quiet
    one (the cut LPs are many and short: the cap is checked between them, and a started LP
    runs to its end or ``deadline``). Cuts are added per
    question and removed after it, so each question's bound depends on that question only.
    Once the cuts have settled too few questions (:data:`_MIN_SETTLED`) the call stops, and
    the remaining neurons keep their input bounds; ``probe=False`` asks every question (to
    tighten the bounds of neurons whose sign is not in question, none of which settles).
    """
    pre = finite_prefix_bounds(net, box, k, known, tol)
    lower, upper = pre[k][0].copy(), pre[k][1].copy()
    none = np.empty((0, net.input_size))
    idx = np.asarray(neurons, dtype=int).reshape(-1)
    if k == 0 or idx.size == 0 or not all_finite(pre[:k]):
        return LPLayerResult(lower, upper, none, 0, 0)
    lp, phases = _with_phases(build_prefix_lp(net, box, k, pre, tol, lazy=LAZY_ROWS))
    if not phases:  # no unstable ReLU before layer k: the LP is exact, nothing to cut
        return LPLayerResult(lower, upper, none, 0, 0)
    solver = layer_lp(lp)
    base_rows = lp.matrix.shape[0]
    layer = net.layers[k]
    cost = np.zeros(lp.matrix.shape[1])
    live = lp.out_cols >= 0
    points: list[np.ndarray] = []
    failed = asked = settled = 0
    cpu_end = None if cpu_limit is None else time.process_time() + cpu_limit
    for i, side in zip(idx.tolist(), np.asarray(sides, dtype=int).tolist(), strict=True):
        if probe and asked >= _PROBE and settled < _MIN_SETTLED * asked:
            break  # the cuts do not pay on this layer: leave the rest to the MILP
        margin = solver_margin(tol, max(abs(lower[i]), abs(upper[i])))
        b = float(layer.bias[i])
        for sign in {0: (1.0, -1.0), 1: (-1.0,), -1: (1.0,)}[int(np.sign(side))]:
            asked += 1
            cost[lp.out_cols[live]] = sign * layer.weight[i][live]
            got, cut_lp = None, lp
            for rnd in range(_ROUNDS + 1):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if cpu_end is not None and time.process_time() >= cpu_end:
                    break
                got = lp_min(solver, cut_lp, cost, tol, deadline)  # capped: no LP overruns it
                while got is not None and lp.lazy is not None:  # lazy rows it violates join
                    rows = lp.lazy.violated(got[1])
                    if not rows.size:
                        break
                    lp, cut_lp = _move_lazy(solver, lp, cut_lp, rows)
                    base_rows = lp.matrix.shape[0]
                    got = lp_min(solver, cut_lp, cost, tol, deadline)
                if got is None or rnd == _ROUNDS:
                    break
                if _settled(got[0], b, sign, margin, tol):
                    break  # more cuts cannot change the verdict
                cols, coefs, rhss = _separate(net, cut_lp, phases, got[1], tol)
                if not cols:
                    break
                cut_lp = _add_rows(solver, cut_lp, cols, coefs, rhss)
            if cut_lp is not lp:
                solver.delete_rows(base_rows, cut_lp.matrix.shape[0] - base_rows)
            if got is None:
                failed += 1
                continue
            points.append(box.clip(got[1][: net.input_size]))
            settled += _settled(got[0], b, sign, margin, tol)
            if sign > 0:
                lower[i] = max(lower[i], _side(got[0], b, sign, margin, tol))
            else:
                upper[i] = min(upper[i], _side(got[0], b, sign, margin, tol))
    pts = np.vstack(points) if points else none
    return LPLayerResult(lower, upper, pts, len(points), failed)


def _move_lazy(
    solver: Lp, lp: PrefixLP, cut_lp: PrefixLP, rows: np.ndarray
) -> tuple[PrefixLP, PrefixLP]:
    """Move the lazy rows ``rows`` into the base LP ``lp`` (for every later question too),
    before the question's cut rows (the rows of ``cut_lp`` after those of ``lp``, taken out
    of the solver and put back after them); returns the new ``lp`` and ``cut_lp``."""
    base_rows = lp.matrix.shape[0]
    extra = cut_lp.matrix[base_rows:]
    solver.delete_rows(base_rows, extra.shape[0])
    lp = add_lazy_rows(solver, lp, rows)
    if not extra.shape[0]:
        return lp, lp
    ptr = extra.indptr
    solver.add_rows(
        cut_lp.row_lower[base_rows:], cut_lp.row_upper[base_rows:], ptr[:-1], extra.indices,
        extra.data,
    )  # fmt: skip
    cut_lp = replace(
        lp,
        matrix=sp.vstack([lp.matrix, extra], format="csr"),
        row_lower=np.concatenate([lp.row_lower, cut_lp.row_lower[base_rows:]]),
        row_upper=np.concatenate([lp.row_upper, cut_lp.row_upper[base_rows:]]),
    )
    return lp, cut_lp


def _side(bound: float, b: float, sign: float, margin: float, tol: Tolerances) -> float:
    """The sound bound of ``z`` from the LP bound of ``min sign * (z - b)`` (as in
    :func:`~exactcomp.bounds.lp.lp_layer_result`): a lower bound for ``sign > 0``, else an
    upper bound."""
    slack = float(pad(np.asarray(abs(b) + abs(bound)), tol)) + margin
    return bound + b - slack if sign > 0 else -bound + b + slack


def _settled(bound: float, b: float, sign: float, margin: float, tol: Tolerances) -> bool:
    """Whether the bound already proves the sign of ``z`` on its side."""
    value = _side(bound, b, sign, margin, tol)
    return value >= 0.0 if sign > 0 else value <= 0.0


def _add_rows(
    solver: Lp,
    lp: PrefixLP,
    cols: list[np.ndarray],
    coefs: list[np.ndarray],
    rhss: list[float],
) -> PrefixLP:
    """Add rows ``coef . v <= rhs`` to the solver and to (a copy of) ``lp``."""
    ncol = lp.matrix.shape[1]
    starts = np.cumsum([0] + [c.size for c in cols[:-1]]).astype(np.int32)
    index = np.concatenate(cols).astype(np.int32)
    value = np.concatenate(coefs)
    rhs = np.asarray(rhss, dtype=np.float64)
    solver.add_rows(np.full(len(cols), -np.inf), rhs, starts, index, value)
    ptr = np.concatenate([starts, [index.size]])
    rows = sp.csr_matrix((value, index, ptr), shape=(len(cols), ncol))
    return replace(
        lp,
        matrix=sp.vstack([lp.matrix, rows], format="csr"),
        row_lower=np.concatenate([lp.row_lower, np.full(len(cols), -np.inf)]),
        row_upper=np.concatenate([lp.row_upper, rhs]),
    )


# The same formulation in the node LPs of the ReLU-split search (:mod:`exactcomp.bab.relu`),
# where a split fixes a phase column.
with_phases = _with_phases
separate = _separate
add_cut_rows = _add_rows
