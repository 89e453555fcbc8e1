r"""The joint LP of two paired networks: a bound of ``max |g_i - f_i|`` tighter than the symbolic one.

The differential bounds of :mod:`exactcomp.verify.symbolic` keep one linear form per side and
choose, per neuron, *one* relaxation of the ReLU difference (the chords in :math:`d`, or
``g``'s relaxation minus ``f``'s). Here all of them hold *at once*, with every neuron's
triangle, in one LP over the input and both networks' neurons; the LP then picks the worst
point of their intersection for each output. On the digits 64-100-100-10 model quantised to
8 bits this halves the bound (see benchmarks/RESULTS.md, issue 15).

Formulation (hidden layers :math:`k`, neuron :math:`n`; bounds computed before)
----------------------------------------------------------------------------
Known sound bounds: :math:`l^f_k \le z^f_k \le u^f_k` (``f``'s root bounds, LP-tightened by
:mod:`exactcomp.verify.tighten` when the caller did), :math:`\underline{d}_k \le z^g_k - z^f_k
\le \overline{d}_k` (the symbolic bounds of the prefix pair up to layer :math:`k`), and
:math:`l^g = l^f + \underline{d}`, :math:`u^g = u^f + \overline{d}` (padded outwards).

.. math::

    \min / \max \;& \pm\big(W^g_L h^g_{L-1} - W^f_L h^f_{L-1} + b^g_L - b^f_L\big)_i \\
    \text{s.t. }\; & lo \le x \le hi, \quad h^f_{-1} = h^g_{-1} = x, \\
    & z^s_k = W^s_k h^s_{k-1} + b^s_k, \quad l^s_k \le z^s_k \le u^s_k \quad (s \in \{f, g\}), \\
    & \underline{d}_k \le z^g_k - z^f_k \le \overline{d}_k, \\
    & \text{per ReLU neuron and side: } h = 0 \;(u \le 0), \quad h = z \;(l \ge 0), \quad
      0 \le h \le u,\; h \ge z,\; (u - l) h - u z \le -u l \;\text{ otherwise}, \\
    & \text{per ReLU neuron, } \Delta = h^g - h^f,\; d = z^g - z^f: \quad
      \begin{cases}
        0 \le \Delta \le d & \underline{d} \ge 0 \\
        d \le \Delta \le 0 & \overline{d} \le 0 \\
        \Delta \ge \tfrac{-\underline{d}}{\overline{d} - \underline{d}}(d - \overline{d}),\;
        \Delta \le \tfrac{\overline{d}}{\overline{d} - \underline{d}}(d - \underline{d})
        & \text{otherwise.}
      \end{cases}

Every constraint holds at the true :math:`(x, z^f, h^f, z^g, h^g)` of every :math:`x` in the
box: the triangles are ReLU's convex hull on :math:`[l, u]`, and :math:`\Delta =
\mathrm{relu}(z^f + d) - \mathrm{relu}(z^f)` lies between :math:`\min(0, d)` and
:math:`\max(0, d)` (ReLU is monotone and 1-Lipschitz), whose chords on
:math:`[\underline{d}, \overline{d}]` are the two lines above. So the LP's minimum is a lower
bound of the true one.

Phases
------
The chords ignore where :math:`z^f` sits in :math:`[l, u]`; the triangles ignore the
difference. A phase column ties them (``phases=True``, the default). For ``f``'s unstable
neuron, :math:`\sigma^f = [z^f > 0]` satisfies the big-M rows

.. math::

    u\,\sigma^f \ge z^f, \quad -l\,\sigma^f \le z^f - l, \quad
    h^f \le u\,\sigma^f, \quad h^f \le z^f - l\,(1 - \sigma^f), \quad 0 \le \sigma^f \le 1,

and :math:`\Delta \ge \sigma^f d` (``f`` active: :math:`\Delta = \max(d, -z^f) \ge d`;
inactive: :math:`\Delta = \mathrm{relu}(z^g) \ge 0`), relaxed by McCormick over
:math:`d \in [\underline d, \overline d]`: :math:`\Delta \ge \underline d\,\sigma^f` and
:math:`\Delta \ge d - \overline d\,(1 - \sigma^f)`. Mirrored for ``g``'s unstable neuron
(:math:`\sigma^g = [z^g > 0]` on :math:`[l^g, u^g]`): :math:`\Delta \le \sigma^g d`, i.e.
:math:`\Delta \le \overline d\,\sigma^g` and :math:`\Delta \le d - \underline
d\,(1 - \sigma^g)`. All hold at the true point with :math:`\sigma \in \{0, 1\}`, so the
LP stays a relaxation (and with binary :math:`\sigma` it is the exact MILP). Measured: 1.5 %
on the digits model at 8 bits (3.706 -> 3.649 with LP-tightened bounds of ``f``) for 3x the LP
time; 2-17 % on tiny networks (``tests/test_lossy_phases.py``). The McCormick rows without
the big-M rows buy nothing (root bounds of ``f``: 3.775 -> 3.774): the gain is the one
:math:`\sigma` shared by :math:`h` and :math:`\Delta`; ``f``'s rows alone give 3.748,
``g``'s 3.737, both 3.708.

Soundness of the number: the optimum is never trusted. The bound is HiGHS' row duals put
through weak duality (:mod:`exactcomp.highs.lp`: padded for rounding, every column bounded),
less the solver margin (:func:`exactcomp.highs.margins.solver_margin`); a
right-hand side computed in float64 from rounded coefficients is padded outwards. A solve that
is not optimal, or a time-out, leaves the caller's bound as it was (``inf`` here).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.sparse as sp

from ..bounds.interval import pad
from ..bounds.lp import PrefixLP
from ..domain import Box
from ..highs.lp import Lp, lp_min
from ..highs.margins import solver_margin
from ..tolerances import Tolerances
from .symbolic import Pair, difference_bounds


class _Rows:
    """Sparse rows ``lo <= sum v x_c <= hi`` collected one at a time, and bounded columns."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.col_lo: list[float] = []
        self.col_hi: list[float] = []
        self.phases: list[int] = []  # the phase columns (binary in the MILP of this LP)

    def col(self, lo: float, hi: float) -> int:
        self.col_lo.append(float(lo))
        self.col_hi.append(float(hi))
        return len(self.col_lo) - 1

    def row(self, cols, vals, lo: float, hi: float) -> None:
        n = len(self.lo)
        self.r += [n] * len(cols)
        self.c += [int(c) for c in cols]
        self.v += [float(v) for v in vals]
        self.lo.append(float(lo))
        self.hi.append(float(hi))

    def lp(self) -> PrefixLP:
        shape = (len(self.lo), len(self.col_lo))
        matrix = sp.csr_matrix((self.v, (self.r, self.c)), shape=shape)
        return PrefixLP(
            matrix=matrix,
            row_lower=np.array(self.lo),
            row_upper=np.array(self.hi),
            col_lower=np.array(self.col_lo),
            col_upper=np.array(self.col_hi),
            out_cols=np.zeros(0, dtype=np.int64),
        )


def layer_differences(pair: Pair, box: Box) -> list[tuple[np.ndarray, np.ndarray]]:
    r"""Sound bounds of :math:`z^g_k - z^f_k` for every hidden layer ``k`` on ``box`` (the
    root box of ``pair``): the symbolic bounds of the prefix pair ending at layer ``k``."""
    f, g = pair.f, pair.g
    out = []
    for k in range(len(f.layers) - 1):
        fp = f.replace_layers(list(f.layers[: k + 1]))
        gp = g.replace_layers(list(g.layers[: k + 1]))
        sub = dataclasses.replace(
            pair,
            f=fp,
            g=gp,
            outputs=tuple(range(f.layers[k].out_features)),
            root=pair.root[: k + 1],
            pads={j: p for j, p in pair.pads.items() if j < k},
        )
        b = difference_bounds(sub, box.lower[None], box.upper[None])
        out.append((b.lo[0], b.hi[0]))
    return out


def _relu(rows: _Rows, z: int, lo: float, hi: float, tol: Tolerances) -> int:
    """The column of ``h = relu(z)`` for ``z`` in ``[lo, hi]`` (its triangle when unstable)."""
    if hi <= 0.0:
        return rows.col(0.0, 0.0)
    if lo >= 0.0:
        return z
    h = rows.col(0.0, hi)
    rows.row([h, z], [1.0, -1.0], 0.0, np.inf)
    rhs = -hi * lo + float(pad(np.asarray(abs(hi * lo) + (hi - lo) * hi), tol))
    rows.row([h, z], [hi - lo, -hi], -np.inf, rhs)
    return h


def _coupling(rows: _Rows, hf, hg, zf, zg, dl: float, du: float, tol: Tolerances) -> None:
    r"""The chords of :math:`\min(0, d) \le h^g - h^f \le \max(0, d)` on ``[dl, du]``."""
    cols = [hg, hf, zg, zf]
    if dl >= 0.0:
        rows.row(cols[:2], [1.0, -1.0], 0.0, np.inf)
        rows.row(cols, [1.0, -1.0, -1.0, 1.0], -np.inf, 0.0)
    elif du <= 0.0:
        rows.row(cols[:2], [1.0, -1.0], -np.inf, 0.0)
        rows.row(cols, [1.0, -1.0, -1.0, 1.0], 0.0, np.inf)
    else:
        sl, su = -dl / (du - dl), du / (du - dl)
        p = float(pad(np.asarray(abs(du) + abs(dl) + 1.0), tol))
        rows.row(cols, [1.0, -1.0, -sl, sl], -sl * du - p, np.inf)
        rows.row(cols, [1.0, -1.0, -su, su], -np.inf, -su * dl + p)


def _phases(rows: _Rows, hf, hg, zf, zg, bounds, tol: Tolerances) -> None:
    r"""The phase rows of one neuron (module docstring, "Phases"): :math:`\Delta \ge
    \sigma^f d` when ``f`` is unstable, :math:`\Delta \le \sigma^g d` when ``g`` is,
    each product by McCormick over :math:`[\underline d, \overline d]`, each phase by big-M
    on its neuron's bounds. ``bounds`` is ``(l, u, l^g, u^g, dl, du)``."""
    lo, hi, lg, ug, dl, du = bounds
    p = float(pad(np.asarray(abs(dl) + abs(du) + abs(lo) + abs(hi) + abs(lg) + abs(ug) + 1.0), tol))
    if lo < 0.0 < hi:  # sigma^f: u s >= z, -l s <= z - l; h^f <= u s, h^f <= z - l (1 - s)
        s = rows.col(0.0, 1.0)
        rows.phases.append(s)
        rows.row([s, zf], [hi, -1.0], -p, np.inf)
        rows.row([s, zf], [-lo, -1.0], -np.inf, -lo + p)
        rows.row([hf, s], [1.0, -hi], -np.inf, p)
        rows.row([hf, zf, s], [1.0, -1.0, -lo], -np.inf, -lo + p)
        rows.row([hg, hf, s], [1.0, -1.0, -dl], -p, np.inf)  # Delta >= s dl
        rows.row([hg, hf, zg, zf, s], [1.0, -1.0, -1.0, 1.0, -du], -du - p, np.inf)
    if lg < 0.0 < ug:  # sigma^g, alike; Delta <= s du and Delta <= d - dl (1 - s)
        s = rows.col(0.0, 1.0)
        rows.phases.append(s)
        rows.row([s, zg], [ug, -1.0], -p, np.inf)
        rows.row([s, zg], [-lg, -1.0], -np.inf, -lg + p)
        rows.row([hg, s], [1.0, -ug], -np.inf, p)
        rows.row([hg, zg, s], [1.0, -1.0, -lg], -np.inf, -lg + p)
        rows.row([hg, hf, s], [1.0, -1.0, -du], -np.inf, p)
        rows.row([hg, hf, zg, zf, s], [1.0, -1.0, -1.0, 1.0, -dl], -np.inf, -dl + p)


def build_joint_lp(
    pair: Pair, box: Box, deadline: float | None = None, *, phases: bool = True
) -> tuple[PrefixLP, list[int], list[int]]:
    """The LP of the module docstring, and the columns of ``h^f_{L-1}`` and ``h^g_{L-1}``
    (see :func:`joint_lp`)."""
    lp, cols = joint_lp(pair, box, layer_differences(pair, box), deadline, phases=phases)
    return lp, cols[-1].hf, cols[-1].hg


@dataclasses.dataclass(frozen=True)
class LayerColumns:
    """The LP columns of one hidden layer: ``z^f, z^g`` and ``h^f, h^g`` per neuron (``h`` is
    ``z``'s own column for an active or non-ReLU neuron)."""

    zf: list[int]
    zg: list[int]
    hf: list[int]
    hg: list[int]
    phases: tuple[int, ...] = ()  # the phase columns sigma in [0, 1] (binary: a MILP)


def joint_lp(
    pair: Pair,
    box: Box,
    diffs: list[tuple[np.ndarray, np.ndarray]],
    deadline: float | None = None,
    *,
    phases: bool = True,
) -> tuple[PrefixLP, list[LayerColumns]]:
    """The LP of the module docstring on ``f``'s bounds ``pair.root`` and the difference
    bounds ``diffs`` (:func:`layer_differences`), and its columns layer by layer.

    Before a hidden layer ``k >= 1``'s ReLUs are added, until ``deadline`` (``time.monotonic``),
    its bounds :math:`[\\underline{d}_k, \\overline{d}_k]` are tightened by the LP built so far
    (min and max of :math:`z^g_k - z^f_k`, weak-duality bounds less the solver margin): the
    chords of layer ``k`` then are those of the tighter range. Neurons not reached keep the
    symbolic bounds."""
    f, g, tol = pair.f, pair.g, pair.tol
    rows = _Rows()
    cols: list[LayerColumns] = []
    hf = hg = [rows.col(a, b) for a, b in zip(box.lower, box.upper, strict=True)]
    for k in range(len(f.layers) - 1):
        lf_, lg_ = f.layers[k], g.layers[k]
        low, up = pair.root[k]
        dl, du = (a.copy() for a in diffs[k])
        zf, zg, drow = [], [], []
        for n in range(lf_.out_features):
            zf.append(rows.col(low[n], up[n]))
            zg.append(rows.col(-np.inf, np.inf))  # bounded below, once d's range is known
            b_f, b_g = float(lf_.bias[n]), float(lg_.bias[n])
            rows.row([zf[n], *hf], [1.0, *(-lf_.weight[n])], b_f, b_f)
            rows.row([zg[n], *hg], [1.0, *(-lg_.weight[n])], b_g, b_g)
            drow.append(len(rows.lo))
            rows.row([zg[n], zf[n]], [1.0, -1.0], dl[n], du[n])
        if k >= 1 and deadline is not None:
            _tighten_differences(rows, zf, zg, dl, du, low, up, tol, deadline)
        slack = pad(np.abs(low) + np.abs(up) + np.abs(dl) + np.abs(du), tol)
        lg, ug = low + dl - slack, up + du + slack
        nf, ng, n_phase = [], [], len(rows.phases)
        for n in range(lf_.out_features):
            rows.col_lo[zg[n]], rows.col_hi[zg[n]] = float(lg[n]), float(ug[n])
            rows.lo[drow[n]], rows.hi[drow[n]] = float(dl[n]), float(du[n])
            if lf_.relu:
                af = _relu(rows, zf[n], low[n], up[n], tol)
                ag = _relu(rows, zg[n], lg[n], ug[n], tol)
                _coupling(rows, af, ag, zf[n], zg[n], dl[n], du[n], tol)
                if phases:
                    bounds = (low[n], up[n], lg[n], ug[n], dl[n], du[n])
                    _phases(rows, af, ag, zf[n], zg[n], bounds, tol)
            else:
                af, ag = zf[n], zg[n]
            nf.append(af)
            ng.append(ag)
        hf, hg = nf, ng
        cols.append(LayerColumns(zf, zg, hf, hg, tuple(rows.phases[n_phase:])))
    return rows.lp(), cols


def _tighten_differences(rows: _Rows, zf, zg, dl, du, low, up, tol, deadline) -> None:
    """``dl, du`` (in place) tightened by min/max of ``z^g - z^f`` over the LP so far (the
    ``z^g`` columns bounded by the current range meanwhile)."""
    slack = pad(np.abs(low) + np.abs(up) + np.abs(dl) + np.abs(du), tol)
    for n in range(len(zf)):
        rows.col_lo[zg[n]] = float(low[n] + dl[n] - slack[n])
        rows.col_hi[zg[n]] = float(up[n] + du[n] + slack[n])
    lp = rows.lp()
    h = Lp.from_model(lp)
    cost = np.zeros(lp.matrix.shape[1])
    for n in range(len(zf)):
        margin = solver_margin(tol, abs(low[n]) + abs(up[n]) + abs(du[n]))
        for sign in (1.0, -1.0):
            cost[zg[n]], cost[zf[n]] = sign, -sign
            got = lp_min(h, lp, cost, tol, deadline)
            if got is None:
                continue
            if sign > 0:
                dl[n] = max(dl[n], got[0] - margin)
            else:
                du[n] = min(du[n], -got[0] + margin)
        cost[zg[n]] = cost[zf[n]] = 0.0
        if time.monotonic() > deadline:
            return


def lp_difference_bounds(
    pair: Pair, box: Box, seconds: float, *, diff_share: float = 0.0, phases: bool = True
) -> np.ndarray:
    """Per output ``i`` of ``pair.outputs``, a sound bound of ``max_x |g_i(x) - f_i(x)|`` on
    ``box`` from the joint LP (``inf`` for an output not proven within ``seconds``).

    ``diff_share`` > 0: up to that share of the time first tightens the hidden layers'
    difference ranges by LP (:func:`build_joint_lp`). Off by default: on the digits model
    at 8 bits it took 30 s for 3.706 -> 3.685."""
    start = time.monotonic()
    seconds = max(float(seconds), 0.0)
    deadline = start + seconds
    lp, hf, hg = build_joint_lp(
        pair, box, start + diff_share * seconds if diff_share else None, phases=phases
    )
    h = Lp.from_model(lp)
    out = np.full(len(pair.outputs), np.inf)
    for o, i in enumerate(pair.outputs):
        worst = 0.0
        for sign in (1.0, -1.0):
            got = side_bound(h, lp, pair, hf, hg, i, sign, deadline)
            if got is None:
                worst = np.inf
                break
            worst = max(worst, got[0])
        out[o] = worst
    return out


def side_bound(
    h: Lp,
    lp: PrefixLP,
    pair: Pair,
    hf: list[int],
    hg: list[int],
    i: int,
    sign: float,
    deadline: float | None,
) -> tuple[float, np.ndarray] | None:
    r"""A sound bound of :math:`\max -\mathrm{sign}\,(g_i - f_i)` over the LP ``lp`` (held by
    ``h``; ``hf, hg`` the columns of the last hidden layers) and the LP's optimum, or ``None``
    when the solve is not optimal: the weak-duality bound of ``min sign (g_i - f_i)``, less the
    solver margin, negated."""
    last_f, last_g, tol = pair.f.layers[-1], pair.g.layers[-1], pair.tol
    db = float(last_g.bias[i]) - float(last_f.bias[i])
    cost = np.zeros(lp.matrix.shape[1])
    np.add.at(cost, hg, sign * last_g.weight[i])
    np.add.at(cost, hf, -sign * last_f.weight[i])
    got = lp_min(h, lp, cost, tol, deadline)
    if got is None:
        return None
    low = got[0] + sign * db
    scale = float(np.abs(cost) @ np.maximum(-lp.col_lower, lp.col_upper))
    margin = float(pad(np.asarray(abs(db) + abs(got[0])), tol)) + solver_margin(tol, scale)
    return max(-(low - margin), 0.0), got[1]
