"""Lazy rows: the rows of deeper stably inactive neurons that a prefix LP
(:func:`exactcomp.bounds.prefix_lp.build_prefix_lp` with ``lazy=True``) leaves out until an LP
optimum violates one.

A stably inactive neuron ``j`` of a layer past the first has ``h_j = 0``, so nothing later
uses its ``z_j``; its row ``z_j = W h + b`` with the proven bounds ``l <= z_j <= u`` only
cuts relaxed points where the triangle relaxation of the earlier layers lets ``W h + b``
leave ``[l, u]``. That happens only where ``u`` was proven by something stronger than that
relaxation (a split tree or a MILP: ``u = 0``); most rows cut nothing. Leaving a row out is a
relaxation, so every bound of the smaller LP is sound; :func:`lazy_lp_min` solves again with
the rows its optimum violates moved in, so that the bound is the full LP's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
import scipy.sparse as sp

from ..highs.lp import Lp, lp_min
from ..tolerances import LAZY_ROW_TOLERANCE, Tolerances

__all__ = ["LazyRows", "add_lazy_rows", "lazy_lp_min"]


@dataclass(frozen=True, eq=False)
class LazyRows:
    """The rows a :class:`~exactcomp.bounds.prefix_lp.PrefixLP` built with ``lazy=True`` leaves out: one per stably
    inactive ReLU of layers ``j >= 1``, ``lower <= W_j h_{j-1} <= upper`` over the LP's
    columns (its proven bounds ``l <= z <= u`` minus the bias, padded outwards for the
    rounding of that subtraction), until an LP optimum violates it (:func:`add_lazy_rows`).

    Leaving a row out is a relaxation, so every bound of the smaller LP is sound; the row
    matters only when it cuts the optimum (a bound proven by a split tree or a MILP, ``u =
    0``, tighter than the triangle LP). ``matrix`` has the columns the LP had when it was
    built (columns added later, such as the phase columns of
    :mod:`exactcomp.bounds.ideal_cuts`, come after them)."""

    matrix: sp.csr_matrix
    lower: np.ndarray
    upper: np.ndarray

    def violated(self, v: np.ndarray) -> np.ndarray:
        """The rows the LP point ``v`` violates by more than HiGHS' feasibility tolerance
        (relative to the row's scale)."""
        if not self.upper.size:
            return np.zeros(0, dtype=np.int64)
        r = self.matrix @ v[: self.matrix.shape[1]]
        slack = LAZY_ROW_TOLERANCE * (1.0 + np.abs(self.matrix) @ np.abs(v[: self.matrix.shape[1]]))
        return np.flatnonzero((r > self.upper + slack) | (r < self.lower - slack))


class _Model(Protocol):
    """What these functions use of a :class:`~exactcomp.bounds.prefix_lp.PrefixLP`."""

    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    lazy: LazyRows | None


PrefixLP = TypeVar("PrefixLP", bound=_Model)


def add_lazy_rows(solver: Lp, lp: PrefixLP, rows: np.ndarray) -> PrefixLP:
    """Move the lazy rows ``rows`` of ``lp`` into the model: appended to ``solver`` and to a
    copy of ``lp`` (as its last rows), and removed from its :class:`LazyRows`."""
    lazy = lp.lazy
    if lazy is None or not len(rows):
        return lp
    ncol = lp.matrix.shape[1]
    add = lazy.matrix[rows]
    add.resize((add.shape[0], ncol))
    solver.add_rows(lazy.lower[rows], lazy.upper[rows], add.indptr[:-1], add.indices, add.data)
    keep = np.setdiff1d(np.arange(lazy.upper.size), rows)
    left = LazyRows(lazy.matrix[keep], lazy.lower[keep], lazy.upper[keep])
    return replace(
        lp,
        matrix=sp.vstack([lp.matrix, add], format="csr"),
        row_lower=np.concatenate([lp.row_lower, lazy.lower[rows]]),
        row_upper=np.concatenate([lp.row_upper, lazy.upper[rows]]),
        lazy=left,
    )


def lazy_lp_min(
    solver: Lp, lp: PrefixLP, cost: np.ndarray, tol: Tolerances, deadline: float | None
) -> tuple[tuple[float, np.ndarray] | None, PrefixLP]:
    """:func:`~exactcomp.highs.lp.lp_min` on ``lp``, solved again with the lazy rows its
    optimum violates moved into the model (:func:`add_lazy_rows`) until it violates none;
    returns the last result and the LP the solver now holds (the caller keeps it)."""
    while True:
        got = lp_min(solver, lp, cost, tol, deadline)
        if got is None or lp.lazy is None:
            return got, lp
        rows = lp.lazy.violated(got[1])
        if not rows.size:
            return got, lp
        lp = add_lazy_rows(solver, lp, rows)
