r"""The one matrix builder: a sparse model :math:`\ell_r \le A v \le u_r`,
:math:`\ell_c \le v \le u_c` handed to HiGHS.

The LP bounds (:mod:`exactcomp.bounds.lp`, :mod:`exactcomp.bounds.ideal_cuts`) and the compiled
MILP questions (:mod:`exactcomp.milp.highs`) both pass their models here. The model is passed
as written: open sides (``±inf``) become HiGHS' infinity, nothing is scaled or reordered.
"""

from __future__ import annotations

from typing import Protocol

import highspy
import numpy as np
import scipy.sparse as sp

from .runtime import INF, new_highs

__all__ = ["MatrixModel", "highs_with_model"]


class MatrixModel(Protocol):
    """What a matrix model exposes: the constraint matrix and the bounds of rows and columns."""

    @property
    def matrix(self) -> sp.spmatrix | sp.sparray: ...

    @property
    def row_lower(self) -> np.ndarray: ...

    @property
    def row_upper(self) -> np.ndarray: ...

    @property
    def col_lower(self) -> np.ndarray: ...

    @property
    def col_upper(self) -> np.ndarray: ...


def _open(values: np.ndarray, side: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, side * INF)


def highs_with_model(
    model: MatrixModel,
    cost: np.ndarray | None = None,
    integer: np.ndarray | None = None,
    maximize: bool = False,
) -> highspy.Highs:
    """A fresh quiet HiGHS instance (:func:`~exactcomp.highs.runtime.new_highs`) holding
    ``model``, with objective ``cost`` (default zero; set per solve) and the columns marked in
    ``integer`` integral (default none: an LP)."""
    h = new_highs()
    csc = sp.csc_array(model.matrix)
    ncol, nrow = csc.shape[1], csc.shape[0]
    kinds = np.zeros(ncol, dtype=np.int32)  # HighsVarType: 0 continuous, 1 integer
    if integer is not None:
        kinds[np.asarray(integer, dtype=bool)] = int(highspy.HighsVarType.kInteger)
    sense = highspy.ObjSense.kMaximize if maximize else highspy.ObjSense.kMinimize
    # the overload of plain arrays: a HighsLp's vectors are filled element by element (5.4 s
    # of a joint LP's 7 s on resnet_2b's wide dense layers, RESULTS.md "lead24")
    h.passModel(
        ncol,
        nrow,
        csc.nnz,
        int(highspy.MatrixFormat.kColwise),
        int(sense),
        0.0,
        np.zeros(ncol) if cost is None else np.asarray(cost, dtype=np.float64),
        _open(model.col_lower, -1.0),
        _open(model.col_upper, 1.0),
        _open(model.row_lower, -1.0),
        _open(model.row_upper, 1.0),
        csc.indptr.astype(np.int32),
        csc.indices.astype(np.int32),
        csc.data.astype(np.float64),
        kinds,
    )
    return h
