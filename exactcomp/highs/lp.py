r"""The one LP loop: a HiGHS LP kept across solves, and a rigorous bound from its duals.

:class:`Lp` holds one model whose rows and objective change between solves (HiGHS then
warm-starts from the last basis). Its users: the LP bounds of :mod:`exactcomp.bounds.lp` and
:mod:`exactcomp.bounds.ideal_cuts` (through :func:`lp_min`, which turns a solve into a proven
bound), the region search of :mod:`exactcomp.stability.region_search` and the region splitter
of :mod:`exactcomp.regions.splitting` (whose optima are only candidates, re-checked by them).

Soundness of :func:`lp_min`
---------------------------
We never take the solver's objective value on trust. For the LP
``min c^T v`` s.t. ``L <= A v <= U``, ``lv <= v <= uv`` (all column bounds finite), *any*
row multipliers ``y`` give, by weak duality,

.. math::

    c^\top v = y^\top A v + d^\top v \;\ge\; \sum_r \min(y_r L_r, y_r U_r)
    + \sum_v \min(d_v lv_v, d_v uv_v), \qquad d = c - A^\top y,

where a multiplier whose row side is infinite is set to 0. :func:`dual_bound` evaluates this
with HiGHS' row duals in float64 and pads it for rounding (``bound_abs + bound_rel * scale``,
``scale`` the sum of the absolute terms). The solver margin a caller adds on top is
:func:`~exactcomp.highs.margins.solver_margin`.

Time limits
-----------
HiGHS (1.16) stops a run when the run time of *all* runs of the instance so far
(``getRunTime``) passes its ``time_limit``, so an :class:`Lp` re-solved with "the seconds
left" as its limit answered TIME_LIMIT at once as soon as its earlier solves had used more
than that: on cifar_base_kw's joint LP the first solve took 27 s of a 44.7 s budget and the
nineteen others stopped at once with 16.7 s left (RESULTS.md "clock22"). :meth:`Lp.solve`
sets the limit to the run time so far plus the seconds left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from ..tolerances import Tolerances
from .matrix import MatrixModel, highs_with_model
from .runtime import INF, new_highs, run
from .status import Termination, from_highs

__all__ = ["Lp", "LpSolution", "dual_bound", "dual_bounds", "lp_min"]


@dataclass(frozen=True, eq=False)
class LpSolution:
    """One solve: how it ended, and (when OPTIMAL) the column values and row duals."""

    termination: Termination
    values: np.ndarray | None
    duals: np.ndarray | None


class Lp:
    """A HiGHS LP kept across solves: rows added and removed, the objective changed.

    Build it from a matrix model (:meth:`from_model`) or from bare columns (:meth:`from_columns`,
    then add rows). ``presolve=False`` suits small LPs re-solved from the previous basis.
    """

    def __init__(self, h: highspy.Highs, presolve: bool = True) -> None:
        self.h = h
        self._abs: tuple[object, sp.spmatrix | sp.sparray] | None = None
        self._cost = np.zeros(0)
        if not presolve:
            h.setOptionValue("presolve", "off")

    @classmethod
    def from_model(cls, model: MatrixModel, maximize: bool = False, presolve: bool = True) -> Lp:
        """The LP of ``model`` (objective zero until :meth:`set_cost`)."""
        return cls(highs_with_model(model, maximize=maximize), presolve)

    @classmethod
    def from_columns(
        cls,
        lower: np.ndarray,
        upper: np.ndarray,
        maximize: bool = False,
        presolve: bool = True,
    ) -> Lp:
        """An LP with columns ``lower <= v <= upper`` (``inf`` open) and no rows yet."""
        h = new_highs()
        lo = np.asarray(lower, dtype=np.float64)
        hi = np.asarray(upper, dtype=np.float64)
        h.addVars(lo.size, np.where(np.isfinite(lo), lo, -INF), np.where(np.isfinite(hi), hi, INF))
        if maximize:
            h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        return cls(h, presolve)

    def add_row(self, lower: float, upper: float, cols: np.ndarray, values: np.ndarray) -> None:
        """Add ``lower <= values . v[cols] <= upper`` (``±inf`` open)."""
        lo = float(lower) if np.isfinite(lower) else -INF
        hi = float(upper) if np.isfinite(upper) else INF
        idx = np.asarray(cols, dtype=np.int32)
        self.h.addRow(lo, hi, idx.size, idx, np.asarray(values, dtype=np.float64))

    def add_rows(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        starts: np.ndarray,
        index: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Add rows in compressed row form (``starts`` into ``index``/``values``)."""
        lo = np.asarray(lower, dtype=np.float64)
        hi = np.asarray(upper, dtype=np.float64)
        idx = np.asarray(index, dtype=np.int32)
        self.h.addRows(
            lo.size,
            np.where(np.isfinite(lo), lo, -INF),
            np.where(np.isfinite(hi), hi, INF),
            idx.size,
            np.asarray(starts, dtype=np.int32),
            idx,
            np.asarray(values, dtype=np.float64),
        )

    def delete_rows(self, first: int, count: int) -> None:
        """Remove rows ``first, ..., first + count - 1``."""
        if count > 0:
            self.h.deleteRows(count, np.arange(first, first + count, dtype=np.int32))

    def change_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Set ``lower <= v[cols] <= upper`` (``±inf`` open); the basis is kept."""
        idx = np.asarray(cols, dtype=np.int32)
        lo = np.where(np.isfinite(lower), lower, -INF).astype(np.float64)
        hi = np.where(np.isfinite(upper), upper, INF).astype(np.float64)
        self.h.changeColsBounds(idx.size, idx, lo, hi)

    def change_row_bounds(self, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Set the sides of ``rows`` (``±inf`` open); the basis is kept."""
        idx = np.asarray(rows, dtype=np.int32)
        lo = np.where(np.isfinite(lower), lower, -INF).astype(np.float64)
        hi = np.where(np.isfinite(upper), upper, INF).astype(np.float64)
        self.h.changeRowsBounds(idx.size, idx, lo, hi)

    def row_duals(self) -> np.ndarray:
        """The row duals of the last solve (meaningful after an OPTIMAL one)."""
        return np.asarray(self.h.getSolution().row_dual, dtype=np.float64)

    def dual_ray(self) -> np.ndarray | None:
        """HiGHS' dual ray after an infeasible solve, or None (no ray, or a solver failure).
        Only a certificate candidate: :func:`dual_bound` with cost 0 turns it into a proof."""
        try:
            _, has, ray = self.h.getDualRay()
        except Exception:  # any solver failure means "no ray"
            return None
        ray = np.asarray(ray, dtype=np.float64)
        return ray if has and np.isfinite(ray).all() else None

    def abs_transpose(self, model: MatrixModel) -> sp.spmatrix | sp.sparray:
        """``|A|^T`` of ``model``'s matrix (for :func:`dual_bounds`), kept while the same
        matrix object is asked for again: the nodes of a branch and bound change bounds
        only, and share one matrix."""
        if self._abs is None or self._abs[0] is not model.matrix:
            self._abs = (model.matrix, abs(model.matrix).T.tocsr())
        return self._abs[1]

    def set_cost(self, cost: np.ndarray) -> None:
        """The objective coefficients of the first ``len(cost)`` columns (not sent again when
        they are those of the last call: a branch and bound re-solves one objective)."""
        cost = np.asarray(cost, dtype=np.float64)
        if np.array_equal(cost, self._cost):
            return
        self.h.changeColsCost(cost.size, np.arange(cost.size, dtype=np.int32), cost)
        self._cost = cost.copy()

    def set_col_cost(self, col: int, value: float) -> None:
        """One objective coefficient."""
        self.h.changeColCost(int(col), float(value))
        self._cost = np.zeros(0)  # what set_cost last sent is no longer the objective

    def solve(self, deadline: float | None = None) -> LpSolution:
        """Solve (within ``deadline``, a ``time.monotonic()`` instant); values and duals only
        when the solve ended OPTIMAL. A solver exception is an OTHER termination."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return LpSolution(Termination.TIME_LIMIT, None, None)
            # HiGHS compares its time limit with the run time of every solve of this instance
            # together (getRunTime), not of this one (module docstring, "Time limits")
            self.h.setOptionValue("time_limit", self.h.getRunTime() + float(left))
        try:
            status = run(self.h)
            term = from_highs(self.h.getModelStatus(), status == highspy.HighsStatus.kError)
            if term is not Termination.OPTIMAL:
                return LpSolution(term, None, None)
            sol = self.h.getSolution()
            values = np.asarray(sol.col_value, dtype=np.float64)
            duals = np.asarray(sol.row_dual, dtype=np.float64)
        except Exception:  # any solver failure means "no answer"
            return LpSolution(Termination.OTHER, None, None)
        return LpSolution(term, values, duals)


def dual_bound(model: MatrixModel, cost: np.ndarray, y: np.ndarray, tol: Tolerances) -> float:
    """A rigorous lower bound of ``min cost^T v`` over ``model`` from any row multipliers ``y``.

    Weak duality (module docstring): multipliers on an infinite row side are zeroed, every
    column bound must be finite, and the float64 evaluation is padded for rounding.
    """
    ys = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    return float(dual_bounds(model, cost, ys, tol)[0])


def dual_bounds(
    model: MatrixModel,
    cost: np.ndarray,
    ys: np.ndarray,
    tol: Tolerances,
    abs_transpose: sp.spmatrix | sp.sparray | None = None,
) -> np.ndarray:
    """:func:`dual_bound` for each column of ``ys`` (rows x q), in one pass over the matrix.

    ``abs_transpose`` is ``|A|^T`` when the caller keeps it (:meth:`Lp.abs_transpose`);
    it enters only the rounding pad's scale.
    """
    finite_lo = np.isfinite(model.row_lower)[:, None]
    finite_hi = np.isfinite(model.row_upper)[:, None]
    y = np.where(finite_lo, np.maximum(ys, 0.0), 0.0) + np.where(
        finite_hi, np.minimum(ys, 0.0), 0.0
    )
    cost = np.asarray(cost, dtype=np.float64)
    d = cost[:, None] - model.matrix.T @ y
    row_side = np.where(y > 0.0, model.row_lower[:, None], model.row_upper[:, None])
    row_terms = np.where(y != 0.0, y * np.where(y != 0.0, row_side, 0.0), 0.0)
    col_side = np.where(d > 0.0, model.col_lower[:, None], model.col_upper[:, None])
    col_terms = d * col_side
    value = row_terms.sum(axis=0) + col_terms.sum(axis=0)
    mag = np.maximum(np.abs(model.col_lower), np.abs(model.col_upper))
    abs_t = abs(model.matrix).T if abs_transpose is None else abs_transpose
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow gives no bound below
        scale = np.abs(row_terms).sum(axis=0) + np.abs(cost) @ mag + (abs_t @ np.abs(y)).T @ mag
        out = value - (tol.bound_abs + tol.bound_rel * scale)
    return np.where(np.isfinite(out), out, -np.inf)


def lp_min(
    lp: Lp, model: MatrixModel, cost: np.ndarray, tol: Tolerances, deadline: float | None
) -> tuple[float, np.ndarray] | None:
    """Rigorous lower bound of ``min cost^T v`` over ``model`` (the rows ``lp`` holds) and the
    optimum's values; ``None`` unless the solve is optimal."""
    lp.set_cost(cost)
    sol = lp.solve(deadline)
    if sol.values is None or sol.duals is None:
        return None
    y = sol.duals
    if y.size != model.matrix.shape[0] or not np.isfinite(y).all():
        return None
    # Weak duality holds for any multipliers, so trying both sign conventions of the row
    # duals and keeping the tighter bound is still sound (and robust to the convention).
    both = dual_bounds(model, cost, np.stack([y, -y], axis=1), tol, lp.abs_transpose(model))
    return float(both.max()), sol.values
