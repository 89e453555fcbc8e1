r"""The solver margins: how far a solver's answer must clear 0 before it is a proof.

Every LP and MILP answer of the package is read through these functions; their constants live
in :mod:`exactcomp.tolerances`.

The solver margin
-----------------
A solver checks each row :math:`\ell_r \le a_r^\top v \le u_r`, each bound and each
integrality only up to its feasibility tolerance (HiGHS: :math:`10^{-7}` on rows after scaling,
:math:`\varepsilon = 10^{-6}` on integrality), and reports objective values and bounds within
a similar tolerance of the true ones. So a claim "the minimum of :math:`-s\,z_j` is
:math:`\ge 0`" is trusted only with the margin

.. math::

    \mu(M) = \text{solver\_abs} + \text{solver\_rel} \cdot \max(M, 1)

(:func:`solver_margin`), where :math:`M` is the a-priori magnitude bound of the quantity (the
neuron's :math:`\max(|l_j|, |u_j|)`, or the largest output magnitude of an equivalence
question). The floor :math:`\max(M, 1)` keeps the relative part from vanishing on tiny
bounds: the solver's tolerances are absolute below scale 1, and a smaller margin would rest on
a precision the solver does not promise. (The re-check floored :math:`M` at 1 and the engine
did not; the floored rule is the larger margin, so it is the one kept everywhere.)

For a MILP the margin also covers what the encoding amplifies (:func:`milp_margin`; its last two terms are :func:`milp_doubt`):

.. math::

    m_j = \mu(M_j) + \varepsilon\, A_j + N_j ,

with :math:`A_j` the amplification of the feasibility tolerance through the encoded prefix
(:func:`~exactcomp.milp.encoding.tolerance_amplification`: rows, bounds and relaxed
integrality each slip by :math:`\varepsilon`, and the big-M rows scale that slip by the
neurons' bounds :math:`\max(|l|, |u|)`) and :math:`N_j` what a solver may drop as tiny
coefficients (:func:`~exactcomp.milp.encoding.negligible_contribution`). A question is then
proven when the solver shows :math:`s\,z_j \le -m_j` on the whole (tolerance-relaxed) model.

For an LP bound the dual value is first made rigorous by weak duality
(:func:`~exactcomp.highs.lp.dual_bound`), then :math:`\mu(M)` is subtracted on top, as the
contract of :class:`~exactcomp.tolerances.Tolerances` asks for every solver-derived bound.

The rounding doubt
------------------
The margins assume the model the solver sees is the model we meant. When float64 rounding of a
row can itself reach the solver's row tolerance, no status is a proof at all:
:func:`rounding_doubt` measures that, and a model where it exceeds 1 gets no MILP proof.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from ..tolerances import ROUNDING_BUDGET, ROW_TOLERANCE, SMALL_MATRIX_VALUE, Tolerances

__all__ = ["milp_doubt", "milp_margin", "rounding_doubt", "solver_margin"]


def solver_margin(tol: Tolerances, magnitude: float | np.ndarray) -> float | np.ndarray:
    r"""The margin :math:`\mu(M) = \text{solver\_abs} + \text{solver\_rel} \max(M, 1)` a solver
    answer must clear (module docstring); elementwise for an array of magnitudes."""
    m = np.maximum(np.abs(magnitude), 1.0)
    out = tol.solver_abs + tol.solver_rel * m
    return float(out) if np.ndim(out) == 0 else out


def milp_doubt(feasibility: float, amplification: np.ndarray, negligible: np.ndarray) -> np.ndarray:
    r"""The part :math:`\varepsilon A + N` of the MILP margin that the encoding adds (module
    docstring), per neuron, at the solver's feasibility tolerance ``feasibility``."""
    return feasibility * np.asarray(amplification, dtype=np.float64) + negligible


def milp_margin(
    tol: Tolerances,
    magnitude: float | np.ndarray,
    feasibility: float,
    amplification: float | np.ndarray,
    negligible: float | np.ndarray,
) -> float | np.ndarray:
    r"""The MILP margin :math:`\mu(M) + \varepsilon A + N` (module docstring);
    elementwise for arrays."""
    out = solver_margin(tol, magnitude) + milp_doubt(feasibility, amplification, negligible)
    return float(out) if np.ndim(out) == 0 else out


class CompiledModel(Protocol):
    """What :func:`rounding_doubt` reads of a compiled MILP."""

    a: sp.sparray
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    target_cols: np.ndarray


def rounding_doubt(
    milp: CompiledModel, target_magnitude: np.ndarray, row_tolerance: float = ROW_TOLERANCE
) -> float:
    r"""How close float64 rounding brings the model to the solver's own row tolerance (<= 1 ok).

    A solver checks :math:`\ell_r \le a_r^\top v \le u_r` up to an absolute tolerance
    :math:`\tau` (after scaling the row by at most its largest coefficient). If evaluating a
    row in float64 can err by more than a fraction of :math:`\tau`, the solver may reject
    truly feasible points, and its "infeasible"/"optimal" claims may be false: this happens
    on networks whose pre-activations reach ~1e10, where exact cancellation matters. Per row,

    .. math::

        \rho_r = \frac{2^{-52} (n_r + 1) \left(\sum_j |a_{rj}| M_j + |\text{rhs}_r|\right)
        + \sum_{|a_{rj}| < s} |a_{rj}| M_j}{\beta\, \tau \min(1, \max_j |a_{rj}|)}

    with :math:`M_j` the magnitude bound of column :math:`j` (``target_magnitude`` for the
    free target columns), :math:`s` = :data:`~exactcomp.tolerances.SMALL_MATRIX_VALUE` and
    :math:`\beta` = :data:`~exactcomp.tolerances.ROUNDING_BUDGET`. Returns
    :math:`\max_r \rho_r`; the caller trusts no proof from a model where it exceeds 1.
    ``row_tolerance`` is :math:`\tau` (lower for a precise question).
    """
    mag = np.maximum(np.abs(milp.col_lower), np.abs(milp.col_upper))
    mag[milp.target_cols] = np.asarray(target_magnitude, dtype=np.float64)
    if not np.isfinite(mag).all():
        return np.inf
    a = sp.csr_array(milp.a)
    if a.nnz == 0:
        return 0.0
    absa = abs(a)
    terms = absa @ mag
    rhs = np.where(np.isfinite(milp.row_lower), np.abs(milp.row_lower), 0.0)
    rhs = np.maximum(rhs, np.where(np.isfinite(milp.row_upper), np.abs(milp.row_upper), 0.0))
    nnz = np.diff(a.indptr)
    small = absa.copy()
    small.data = np.where(small.data < SMALL_MATRIX_VALUE, small.data, 0.0)
    tiny = small @ mag
    biggest = absa.max(axis=1).toarray().ravel()
    err = 2.0**-52 * (nnz + 1) * (terms + rhs) + tiny
    allowed = ROUNDING_BUDGET * row_tolerance * np.minimum(1.0, biggest)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err > 0, err / allowed, 0.0)
    return float(np.max(ratio)) if ratio.size else 0.0
