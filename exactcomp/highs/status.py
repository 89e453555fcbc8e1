r"""What a solver's answer proves: the one table from a termination status to "proven or not".

Solvers report how a run ended in their own words (highspy's ``HighsModelStatus``, Pyomo's
``TerminationCondition``, old and new). :func:`from_highs` and :func:`from_pyomo` translate
them to one :class:`Termination`, and every rule that turns an answer into a proof reads that:

* **Cut-off questions** ("is there a point with :math:`\varphi \ge p`?", posed as
  :math:`\min -\varphi` with the cut-off ``objective_bound`` :math:`= -p`, or with the row
  :math:`\varphi \ge p`): the region beyond the cut-off is empty, a proof of
  :math:`\max\varphi < p`, iff the run ends :data:`~Termination.INFEASIBLE` or
  :data:`~Termination.INFEASIBLE_OR_UNBOUNDED` (:func:`cutoff_empty`). Every model of the
  package is bounded (each column has finite bounds or equals an affine map of bounded
  columns), so it is never unbounded and the second status means infeasible too.
* **Optimality questions** (:math:`\min -\varphi` solved to the end): a proof of
  :math:`-\varphi \ge m` iff the run ends :data:`~Termination.OPTIMAL` *and* its dual bound
  is finite and :math:`\ge m` (:func:`bound_proves`); the primal value proves nothing.
* **Both at once** (:func:`decide`, the equivalence objectives, run with the cut-off and a
  target): as above, and :data:`~Termination.OBJECTIVE_LIMIT` (the cut-off or the target was
  reached; Pyomo does not say which) proves the bound only when no incumbent lies beyond the
  cut-off.

Any other status (time limit, interrupt, numerical trouble, a solver error, "unknown") proves
nothing. After a cut-off run the solver's dual bound is not a global bound, so it is read only
from runs that ended :data:`~Termination.OPTIMAL`.
"""

from __future__ import annotations

from enum import Enum

import highspy
import numpy as np

__all__ = [
    "Decision",
    "Termination",
    "bound_proves",
    "cutoff_empty",
    "decide",
    "from_highs",
    "from_pyomo",
]


class Termination(Enum):
    """How a solver run ended, in the terms the proof rules need."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    INFEASIBLE_OR_UNBOUNDED = "infeasible or unbounded"
    OBJECTIVE_LIMIT = "objective bound or target reached"
    TIME_LIMIT = "time limit"
    OTHER = "other"


_M = highspy.HighsModelStatus
_FROM_HIGHS = {
    _M.kOptimal: Termination.OPTIMAL,
    _M.kInfeasible: Termination.INFEASIBLE,
    _M.kUnboundedOrInfeasible: Termination.INFEASIBLE_OR_UNBOUNDED,
    _M.kObjectiveBound: Termination.OBJECTIVE_LIMIT,
    _M.kObjectiveTarget: Termination.OBJECTIVE_LIMIT,
    _M.kTimeLimit: Termination.TIME_LIMIT,
}

_FROM_PYOMO = {
    # pyomo.contrib.solver (the interface of exactcomp.verify.solve)
    "convergenceCriteriaSatisfied": Termination.OPTIMAL,
    "provenInfeasible": Termination.INFEASIBLE,
    "infeasibleOrUnbounded": Termination.INFEASIBLE_OR_UNBOUNDED,
    "objectiveLimit": Termination.OBJECTIVE_LIMIT,
    "maxTimeLimit": Termination.TIME_LIMIT,
    # pyomo.opt (SolverFactory, exactcomp.milp.solvers): only "optimal" is ever read there
    "optimal": Termination.OPTIMAL,
}
"""Pyomo's condition names (both enums share ``maxTimeLimit`` and ``infeasibleOrUnbounded``);
every other name, ``locallyInfeasible`` included, proves nothing."""


def from_highs(model_status: object, run_failed: bool = False) -> Termination:
    """The termination of a highspy run from its model status; ``run_failed``: ``run()``
    itself returned an error, after which nothing is read."""
    if run_failed:
        return Termination.OTHER
    return _FROM_HIGHS.get(model_status, Termination.OTHER)


def from_pyomo(condition: object) -> Termination:
    """The termination of a Pyomo solve from its termination condition (either Pyomo enum)."""
    return _FROM_PYOMO.get(getattr(condition, "name", ""), Termination.OTHER)


def cutoff_empty(term: Termination) -> bool:
    """Whether a cut-off question's region is proven empty (see the module docstring)."""
    return term in (Termination.INFEASIBLE, Termination.INFEASIBLE_OR_UNBOUNDED)


def bound_proves(term: Termination, dual: float | None, margin: float) -> bool:
    """Whether a run to optimality proves the minimum ``>= margin``: only an OPTIMAL run with a
    finite dual bound at least ``margin``."""
    return (
        term is Termination.OPTIMAL
        and dual is not None
        and bool(np.isfinite(dual))
        and float(dual) >= margin
    )


class Decision(Enum):
    PROVEN = "proven"  # max phi <= tau (with margin)
    FOUND = "found"  # an incumbent with phi >= tau + margin (to be re-checked in float64)
    UNDECIDED = "undecided"


def decide(
    condition: Termination | object,
    incumbent: float | None,
    dual: float | None,
    prove_at: float,
    find_at: float,
    margin: float,
) -> tuple[Decision, float]:
    """Map a solver answer for ``min -phi`` to a decision and a proven bound on ``max phi``.

    ``condition`` is a :class:`Termination` or a Pyomo termination condition;
    ``incumbent``/``dual`` the solver's primal and dual objective values of ``min -phi``
    (``None`` when absent); the run had the cut-off ``-prove_at`` and the target ``-find_at``.
    Pure, so the soundness rules can be tested without a solver.
    """
    term = condition if isinstance(condition, Termination) else from_pyomo(condition)
    phi_inc = -incumbent if incumbent is not None and np.isfinite(incumbent) else None
    phi_dual = -dual if dual is not None and np.isfinite(dual) else None
    if cutoff_empty(term) or term is Termination.OBJECTIVE_LIMIT:
        if phi_inc is not None and phi_inc >= find_at:
            return Decision.FOUND, np.inf
        if term is not Termination.OBJECTIVE_LIMIT or phi_inc is None or phi_inc <= prove_at:
            # Everything with phi > prove_at was pruned: the cut-off proved the bound.
            return Decision.PROVEN, prove_at + margin
        return Decision.UNDECIDED, np.inf
    if term is Termination.OPTIMAL and phi_dual is not None:
        bound = max(phi_dual, prove_at) + margin
        if phi_inc is not None and phi_inc >= find_at:
            return Decision.FOUND, bound
        if phi_dual <= prove_at:
            return Decision.PROVEN, prove_at + margin
        return Decision.UNDECIDED, bound
    # Time limit or any other status: nothing is proven, and after a cut-off run HiGHS' dual
    # bound is not a global bound, so none is reported.
    if phi_inc is not None and phi_inc >= find_at:
        return Decision.FOUND, np.inf
    return Decision.UNDECIDED, np.inf
