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

from ..bounds.interval import pad
from ..bounds.lp import PrefixLP
from ..domain import Box
from ..highs.lp import Lp, lp_min
from ..highs.margins import solver_margin
from .jointrows import Rows, coupling_rows, phase_rows, relu_rows
from .pairs import Pair
from .symbolic import difference_bounds

#: Where the difference ranges come from the one symbolic pass of the whole pair (``known``,
#: :meth:`~exactcomp.verify.pairs.DifferenceBounds.differences`), the bound of each
#: prefix pair (tighter: its last layer back-substituted whole) is met with them for hidden
#: layer ``k >= 1`` only while ``PREFIX_COST`` times that pass's seconds still fit before
#: ``PREFIX_SHARE`` of the LP's seconds. On cifar_base_kw the prefixes took 11 s CPU (the
#: 960-neuron one 7.4 s, 1.9 times the whole pass) to narrow the ranges by 0.05 % and 1.3 %
#: (RESULTS.md "clock22"); on the digits models they take milliseconds and always run.
PREFIX_SHARE = 0.25
PREFIX_COST = 2.0


class Late(Exception):
    """The joint LP's seconds ran out before its model was built (nothing is claimed)."""


def layer_differences(
    pair: Pair,
    box: Box,
    known: list[tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    end: float | None = None,
    prefix_end: float | None = None,
    pass_seconds: float = 0.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    r"""Sound bounds of :math:`z^g_k - z^f_k` for every hidden layer ``k`` on ``box`` (the
    root box of ``pair``): the symbolic bounds of the prefix pair ending at layer ``k``, met
    with ``known`` (sound bounds of the same, e.g. the whole pair's pass) where given; with
    ``known``, a prefix is bounded only while :data:`PREFIX_COST` ``* pass_seconds`` fits before
    ``prefix_end`` (``time.monotonic``), never for layer 0 (its difference is affine: the pass
    has it exactly). :class:`Late` once ``end`` has passed between two layers."""
    f, g = pair.f, pair.g
    out = []
    for k in range(len(f.layers) - 1):
        if end is not None and time.monotonic() > end:
            raise Late
        have = None if known is None else known[k]
        late = prefix_end is not None and time.monotonic() + PREFIX_COST * pass_seconds > prefix_end
        if have is not None and (k == 0 or late):
            out.append(have)
            continue
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
        lo, hi = b.lo[0], b.hi[0]
        if have is not None:
            lo, hi = np.maximum(lo, have[0]), np.minimum(hi, have[1])
        out.append((lo, hi))
    return out


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
    end: float | None = None,
) -> tuple[PrefixLP, list[LayerColumns]]:
    """The LP of the module docstring on ``f``'s bounds ``pair.root`` and the difference
    bounds ``diffs`` (:func:`layer_differences`), and its columns layer by layer.

    Before a hidden layer ``k >= 1``'s ReLUs are added, until ``deadline`` (``time.monotonic``),
    its bounds :math:`[\\underline{d}_k, \\overline{d}_k]` are tightened by the LP built so far
    (min and max of :math:`z^g_k - z^f_k`, weak-duality bounds less the solver margin): the
    chords of layer ``k`` then are those of the tighter range. Neurons not reached keep the
    symbolic bounds. :class:`Late` once ``end`` (``time.monotonic``) has passed between two
    layers."""
    f, g, tol = pair.f, pair.g, pair.tol
    rows = Rows()
    cols: list[LayerColumns] = []
    hf = hg = [rows.col(a, b) for a, b in zip(box.lower, box.upper, strict=True)]
    for k in range(len(f.layers) - 1):
        if end is not None and time.monotonic() > end:
            raise Late
        lf_, lg_ = f.layers[k], g.layers[k]
        low, up = pair.root[k]
        dl, du = (a.copy() for a in diffs[k])
        m = lf_.out_features
        zf, zg = [], []
        for n in range(m):  # the columns and rows in the order of one neuron at a time
            zf.append(rows.col(low[n], up[n]))
            zg.append(rows.col(-np.inf, np.inf))  # bounded below, once d's range is known
        first = len(rows.lo)
        at = first + 3 * np.arange(m)  # per neuron: its row of z^f, of z^g, of d
        rows.lo += [0.0] * (3 * m)
        rows.hi += [0.0] * (3 * m)
        rows.affine(at, zf, hf, lf_.weight, lf_.bias)
        rows.affine(at + 1, zg, hg, lg_.weight, lg_.bias)
        drow = (at + 2).tolist()
        for n in range(m):
            rows.r += [drow[n], drow[n]]
            rows.c += [zg[n], zf[n]]
            rows.v += [1.0, -1.0]
            rows.lo[drow[n]], rows.hi[drow[n]] = float(dl[n]), float(du[n])
        if k >= 1 and deadline is not None:
            _tighten_differences(rows, zf, zg, dl, du, low, up, tol, deadline)
        slack = pad(np.abs(low) + np.abs(up) + np.abs(dl) + np.abs(du), tol)
        lg, ug = low + dl - slack, up + du + slack
        nf, ng, n_phase = [], [], len(rows.phases)
        for n in range(lf_.out_features):
            rows.col_lo[zg[n]], rows.col_hi[zg[n]] = float(lg[n]), float(ug[n])
            rows.lo[drow[n]], rows.hi[drow[n]] = float(dl[n]), float(du[n])
            if lf_.relu:
                af = relu_rows(rows, zf[n], low[n], up[n], tol)
                ag = relu_rows(rows, zg[n], lg[n], ug[n], tol)
                coupling_rows(rows, af, ag, zf[n], zg[n], dl[n], du[n], tol)
                if phases:
                    bounds = (low[n], up[n], lg[n], ug[n], dl[n], du[n])
                    phase_rows(rows, af, ag, zf[n], zg[n], bounds, tol)
            else:
                af, ag = zf[n], zg[n]
            nf.append(af)
            ng.append(ag)
        hf, hg = nf, ng
        cols.append(LayerColumns(zf, zg, hf, hg, tuple(rows.phases[n_phase:])))
    return rows.lp(), cols


def _tighten_differences(rows: Rows, zf, zg, dl, du, low, up, tol, deadline) -> None:
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
    pair: Pair,
    box: Box,
    seconds: float,
    *,
    diff_share: float = 0.0,
    phases: bool = True,
    known: list[tuple[np.ndarray, np.ndarray]] | None = None,
    pass_seconds: float = 0.0,
) -> np.ndarray:
    """Per output ``i`` of ``pair.outputs``, a sound bound of ``max_x |g_i(x) - f_i(x)|`` on
    ``box`` from the joint LP (``inf`` for an output not proven within ``seconds``: the
    caller's bound before the LP stands; an optimum is never a bound, only its duals).

    ``known``, ``pass_seconds``: the difference ranges of the pair's symbolic pass and its
    seconds (:func:`layer_differences`). ``diff_share`` > 0: up to that share of the time
    first tightens the hidden layers' difference ranges by LP (:func:`joint_lp`). Off by
    default: on the digits model at 8 bits it took 30 s for 3.706 -> 3.685.

    The call ends within ``seconds`` plus one step that does not look at the clock: a prefix
    pair's symbolic bound, one layer's rows, the model handed to HiGHS, or HiGHS' own
    overrun of its limit. Every solve ends ``reserve`` before the end, the seconds that
    handing the model to HiGHS took (a pass over the matrix, as the duals' re-check of each
    solve in :func:`~exactcomp.highs.lp.lp_min`). On cifar_base_kw the build ignored the
    clock: 32 s for 17.6 s asked (RESULTS.md "clock22")."""
    start = time.monotonic()
    seconds = max(float(seconds), 0.0)
    end = start + seconds
    out = np.full(len(pair.outputs), np.inf)
    try:
        diffs = layer_differences(pair, box, known, end=end, prefix_end=start + PREFIX_SHARE * seconds,
                                  pass_seconds=pass_seconds)  # fmt: skip
        tighten = start + diff_share * seconds if diff_share else None
        lp, cols = joint_lp(pair, box, diffs, tighten, phases=phases, end=end)
    except Late:
        return out
    if time.monotonic() > end:
        return out
    t = time.monotonic()
    h = Lp.from_model(lp)
    h.abs_transpose(lp)  # kept for every solve's re-check
    reserve = time.monotonic() - t
    hf, hg = cols[-1].hf, cols[-1].hg
    for o, i in enumerate(pair.outputs):
        worst = 0.0
        for sign in (1.0, -1.0):
            got = side_bound(h, lp, pair, hf, hg, i, sign, end - reserve)
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
