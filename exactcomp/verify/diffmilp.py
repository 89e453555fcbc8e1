r"""The exact joint MILP of two paired networks, in decision form: "is ``max |g_j - f_j| <= tol``?".

The joint LP of :mod:`exactcomp.verify.difflp` relaxes each unstable ReLU of ``f`` and ``g``
and leaves its phase :math:`\sigma \in [0, 1]` open; rounding errors of a quantised copy have
random signs and cancel at a fixed phase pattern, which every relaxation misses (RESULTS.md
"lossy5": 8-bit, proven 3.63 against a true error >= 0.407). With the phase columns
(``LayerColumns.phases``) binary, the same rows are the exact MILP: :math:`\sigma^f` and
:math:`\sigma^g` binary make :math:`h^f = \mathrm{relu}(z^f)` and :math:`h^g = \mathrm{relu}(z^g)`
through the big-M rows on the (sound) bounds of each neuron, and the triangles and chords are
then redundant, valid rows. A phase that ``f``'s bounds prove (a stable neuron) has no column.

The question (per output :math:`j`, sign :math:`s`, tolerance :math:`\tau`)
--------------------------------------------------------------------------
One column :math:`t = s\,(W^g_{L,j} h^g_{L-1} - W^f_{L,j} h^f_{L-1} + b^g_{L,j} - b^f_{L,j})`
(one equality row; :math:`|t| \le T`, :math:`T` from the columns' bounds), then

.. math::

    \min\; -t \quad \text{s.t. the joint rows, } \sigma \in \{0, 1\},\;
    t \ge \tau - m ,

with HiGHS' cut-off ``objective_bound`` :math:`= -(\tau - m)` and target
``objective_target`` :math:`= -(\tau + m)` (stop at the first incumbent beyond it). Then

* *infeasible*: no point of the (tolerance-relaxed) model has :math:`t \ge \tau - m`:
  **proven** :math:`\max_x s\,(g_j - f_j) \le \tau`;
* an incumbent: its input ``x`` is re-evaluated in float64; if :math:`s\,(g_j - f_j)(x) >
  \tau` there, a **counterexample** (the true maximum exceeds :math:`\tau`; nothing better can
  be proven), else nothing;
* any other end (time limit, solver error, numerical trouble): **nothing** is claimed; the
  caller's LP bound stands.

Why the claim is sound, and what it rests on
--------------------------------------------
The rows hold at every true point of the box with :math:`\sigma` the true phases (module
:mod:`exactcomp.verify.difflp`; every right-hand side computed in float64 is padded outwards),
so in exact arithmetic "infeasible" proves :math:`\max t < \tau - m`. HiGHS decides
infeasibility in floating point with tolerances and gives no certificate (its branch-and-bound
tree, thousands of node LPs, is not exposed, so the node bounds cannot be re-checked by weak
duality as :func:`exactcomp.highs.lp.lp_min` does for one LP). The claim therefore rests on the
same rule as every MILP proof of the package (:mod:`exactcomp.milp.highs`, the stability
questions): the margin

.. math::

    m = \mu(T) + \varepsilon\,(A^f_j + A^g_j) + N^f_j + N^g_j

of :func:`~exactcomp.highs.margins.milp_margin`, with :math:`\varepsilon` the MILP
feasibility tolerance :data:`~exactcomp.tolerances.FEASIBILITY_TOLERANCE`, :math:`A` how far a
slip of :math:`\varepsilon` in each row, bound and integrality moves the output through each
network's encoding (:func:`~exactcomp.milp.encoding.tolerance_amplification`; ``t`` is a
difference of the two outputs, so the two amplifications add) and :math:`N` what a solver may
drop as tiny coefficients (:func:`~exactcomp.milp.encoding.negligible_contribution`); a model
whose float64 rounding reaches the solver's row tolerance
(:func:`~exactcomp.highs.margins.rounding_doubt` > 1) gets no MILP claim at all. The margin is
taken off the question (``tau - m``), never added to a bound. The same trust as a stability
proof of the engine, checked by the same soak: ``python -m benchmarks lossy --soak`` and
``tests/test_lossy_milp.py`` compare every MILP claim with the oracle's exact maximum.
"""

from __future__ import annotations

import dataclasses
import time
from enum import Enum

import numpy as np
import scipy.sparse as sp

from ..bounds.interval import pad
from ..domain import Box
from ..highs.margins import milp_margin, rounding_doubt
from ..highs.milp import run_milp
from ..highs.runtime import milp_options
from ..highs.status import cutoff_empty
from ..tolerances import FEASIBILITY_TOLERANCE
from .difflp import joint_lp, layer_differences
from .pairs import Pair


class Verdict(Enum):
    """The answer to "is ``max_x s (g_j - f_j) <= tol``?"."""

    PROVEN = "proven"  # max <= tol
    COUNTEREXAMPLE = "counterexample"  # a float64 point with s (g_j - f_j) > tol
    UNKNOWN = "unknown"  # time-out, solver error, numerical doubt: nothing claimed


@dataclasses.dataclass(frozen=True)
class SideAnswer:
    """One side ``(j, s)``: the verdict, the worst float64 value seen at the solver's points
    (a lower bound of the maximum, ``-inf`` if none), that point, HiGHS' words, seconds."""

    verdict: Verdict
    seen: float
    x: np.ndarray | None
    status: str
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Model:
    """The joint rows with the objective column ``t`` appended (a matrix model)."""

    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray
    t: int

    @property
    def a(self) -> sp.csr_matrix:  # what rounding_doubt reads
        return self.matrix

    @property
    def target_cols(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)


class JointMilp:
    """The joint rows of ``pair`` on ``box`` (its root box), built once, asked per side."""

    def __init__(self, pair: Pair, box: Box) -> None:
        self.pair, self.box = pair, box
        self.diffs = layer_differences(pair, box)
        self.lp, self.cols = joint_lp(pair, box, self.diffs)
        self._margins: dict[int, float] = {}

    def model(self, j: int, sign: float) -> _Model:
        """The rows, the column ``t = sign (g_j - f_j)`` and the phase columns marked integral."""
        lp, f, g = self.lp, self.pair.f, self.pair.g
        lf, lg = f.layers[-1], g.layers[-1]
        hf, hg = self.cols[-1].hf, self.cols[-1].hg
        n_rows, n_cols = lp.matrix.shape
        coef = np.zeros(n_cols)
        np.add.at(coef, hg, -sign * lg.weight[j])
        np.add.at(coef, hf, sign * lf.weight[j])
        db = sign * (float(lg.bias[j]) - float(lf.bias[j]))
        # t - sign (W^g h^g - W^f h^f) = sign (b^g - b^f), its rounding padded outwards
        mag = np.maximum(np.abs(lp.col_lower), np.abs(lp.col_upper))
        span = float(np.abs(coef) @ mag) + abs(db)
        slip = float(pad(np.asarray(span), self.pair.tol))
        row = sp.csr_matrix(np.append(coef, 1.0)[None, :])
        matrix = sp.vstack([sp.hstack([lp.matrix, sp.csr_matrix((n_rows, 1))]), row]).tocsr()
        integer = np.zeros(n_cols + 1, dtype=bool)
        for c in self.cols:
            integer[list(c.phases)] = True
        return _Model(
            matrix=matrix,
            row_lower=np.append(lp.row_lower, db - slip),
            row_upper=np.append(lp.row_upper, db + slip),
            col_lower=np.append(lp.col_lower, -span - slip),
            col_upper=np.append(lp.col_upper, span + slip),
            integer=integer,
            t=n_cols,
        )

    def margin(self, j: int, span: float) -> float:
        """The margin ``m`` of the module docstring for output ``j`` (``span`` bounds ``|t|``)."""
        from ..milp.encoding import negligible_contribution, tolerance_amplification

        if j not in self._margins:
            f, g, box = self.pair.f, self.pair.g, self.box
            last = len(f.layers) - 1
            root_f = list(self.pair.root)
            root_g = [
                (lo + d[0], hi + d[1]) for (lo, hi), d in zip(root_f, self.diffs, strict=False)
            ]
            amp = tolerance_amplification(f, box, last, root_f)[j]
            amp += tolerance_amplification(g, box, last, root_g)[j]
            neg = negligible_contribution(f, box, last, root_f)[j]
            neg += negligible_contribution(g, box, last, root_g)[j]
            self._margins[j] = float(
                milp_margin(self.pair.tol, span, FEASIBILITY_TOLERANCE, amp, neg)
            )
        return self._margins[j]

    def decide(self, j: int, sign: float, tau: float, seconds: float) -> SideAnswer:
        """Is ``max_x sign (g_j - f_j) <= tau`` on the box (module docstring)?"""
        start = time.perf_counter()
        model = self.model(j, sign)
        span = float(model.col_upper[model.t])
        m = self.margin(j, span)
        if rounding_doubt(model, np.zeros(0)) > 1.0 or not np.isfinite(m) or tau - m <= 0:
            return SideAnswer(Verdict.UNKNOWN, -np.inf, None, "numerical doubt", 0.0)
        found: list[np.ndarray] = []
        d = self.box.dim

        def _on_incumbent(event) -> None:
            if len(found) < 8:
                found.append(np.array(event.data_out.mip_solution, dtype=np.float64)[:d])

        cost = np.zeros(model.matrix.shape[1])
        cost[model.t] = -1.0
        out = run_milp(
            model,
            cost,
            model.integer,
            time_limit=max(float(seconds), 1e-3),
            options=milp_options(FEASIBILITY_TOLERANCE),
            cutoff=-(tau - m),
            target=-(tau + m),
            row=(model.t, tau - m, np.inf),
            on_incumbent=_on_incumbent,
        )
        points = ([out.values[:d]] if out.values is not None else []) + found
        seen, x = self.worst(j, sign, points)
        took = time.perf_counter() - start
        if out.error is None and cutoff_empty(out.termination) and seen <= tau:
            return SideAnswer(Verdict.PROVEN, seen, x, out.text, took)
        verdict = Verdict.COUNTEREXAMPLE if seen > tau else Verdict.UNKNOWN
        return SideAnswer(verdict, seen, x, out.text, took)

    def worst(self, j: int, sign: float, points: list[np.ndarray]):
        """The largest float64 ``sign (g_j - f_j)`` over ``points`` clipped into the box."""
        if not points:
            return -np.inf, None
        x = np.clip(np.array(points), self.box.lower, self.box.upper)
        v = sign * (self.pair.g.forward(x)[:, j] - self.pair.f.forward(x)[:, j])
        r = int(np.argmax(v))
        return float(v[r]), x[r]

    def dual_bound(self, j: int, sign: float, seconds: float) -> tuple[float, str]:
        """HiGHS' bound of ``max sign (g_j - f_j)`` after ``seconds`` without a cut-off, plus the
        margin (a figure for measurements; the claims of this module are the decisions)."""
        model = self.model(j, sign)
        cost = np.zeros(model.matrix.shape[1])
        cost[model.t] = -1.0
        out = run_milp(
            model,
            cost,
            model.integer,
            time_limit=seconds,
            options=milp_options(FEASIBILITY_TOLERANCE),
        )
        m = self.margin(j, float(model.col_upper[model.t]))
        bound = -out.dual + m if np.isfinite(out.dual) else np.inf
        return float(bound), out.text


def milp_within(
    pair: Pair, box: Box, tau: float, seconds: float, sides: list[tuple[int, float]]
) -> bool:
    """Whether every side ``(j, s)`` of ``sides`` is proven ``max_x s (g_j - f_j) <= tau`` on
    ``box`` within ``seconds`` in all; stops at the first side not proven (a counterexample or
    no verdict), since then the claim ``<= tau`` cannot be made. ``False`` claims nothing."""
    deadline = time.perf_counter() + max(float(seconds), 0.0)
    milp = JointMilp(pair, box)
    for n, (j, sign) in enumerate(sides):
        left = deadline - time.perf_counter()
        if left <= 0:
            return False
        got = milp.decide(j, sign, tau, left / (len(sides) - n))
        if got.verdict is not Verdict.PROVEN:
            return False
    return True
