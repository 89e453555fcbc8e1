"""Any Pyomo MILP solver on the same Pyomo model: solved to optimality, only a proven bound counts.

The compiled HiGHS path (:mod:`exactcomp.milp.highs`) is the default. This path hands the
*same* Pyomo model to ``SolverFactory`` (Gurobi, CPLEX, SCIP, CBC, or HiGHS through Pyomo's
APPSI interface, which the tests use to cross-check the compiled path). Termination options
differ between solvers, so no early stop here: the question "can ``s z_j > 0``?" is answered
by minimising :math:`-s z_j` to optimality within the time limit, and it is **proven** (``s
z_j <= -margin`` on the box) iff the termination condition is *optimal* and the reported
lower (dual) bound is finite and ``>= margin`` (:func:`exactcomp.highs.status.bound_proves`). The solution's inputs, when the solver has
one, are candidate witnesses like any other (re-checked in float64 by the caller).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyomo.environ as pyo

from ..errors import InvalidOptionError
from ..highs.status import bound_proves, from_pyomo
from .highs import Answer, CompiledMilp, Question

_FACTORY = {
    "highs": "appsi_highs",
    "gurobi": "gurobi",
    "cplex": "cplex",
    "scip": "scip",
    "cbc": "cbc",
}
_TIME_OPTION = {"gurobi": "TimeLimit", "cplex": "timelimit", "scip": "limits/time", "cbc": "sec"}


def pyomo_solver(
    model: pyo.ConcreteModel, targets: pyo.Var, name: str
) -> Callable[[CompiledMilp, Question], Answer]:
    """A ``solve(milp, question)`` function that answers questions on ``model`` with ``name``.

    ``model`` is a :func:`~exactcomp.milp.encoding.build_prefix_model` model (``model.x``,
    ``model.obj``); ``targets`` its ``z_k`` variables. The compiled ``milp`` argument is
    ignored (kept for a common signature). Raises :class:`InvalidOptionError` when the solver
    is not installed.
    """
    if name not in _FACTORY:
        raise InvalidOptionError(f"unknown solver {name!r}; choose one of {', '.join(_FACTORY)}")
    opt = pyo.SolverFactory(_FACTORY[name])
    if not opt.available(exception_flag=False):
        raise InvalidOptionError(
            f"the MILP solver {name!r} is not installed or not licensed; use --solver highs"
        )
    xs = [model.x[i] for i in sorted(model.x.keys())]

    def solve(_milp: CompiledMilp, q: Question) -> Answer:
        t0 = time.perf_counter()
        model.obj.set_value(-float(q.sign) * targets[q.neuron])
        model.obj.sense = pyo.minimize
        kwargs: dict[str, object] = {"load_solutions": False}
        if name == "highs":
            opt.config.time_limit = float(q.time_limit)
        else:
            kwargs["options"] = {_TIME_OPTION[name]: float(q.time_limit)}
        try:
            res = opt.solve(model, **kwargs)
            cond = res.solver.termination_condition
            lb = res.problem.lower_bound
            lb = float(lb) if lb is not None else -np.inf
            points = np.empty((0, len(xs)))
            if len(res.solution):
                model.solutions.load_from(res)
                vals = [v.value for v in xs]
                if all(val is not None for val in vals):
                    points = np.array([vals], dtype=np.float64)
        except Exception as exc:  # any solver failure proves nothing
            return Answer(q, False, f"error: {exc}", np.empty((0, len(xs))), 0.0)
        proven = bound_proves(from_pyomo(cond), lb, q.margin)
        return Answer(q, bool(proven), str(cond), points, time.perf_counter() - t0)

    return solve
