r"""Solving the equivalence objectives with HiGHS, and reading each answer soundly.

Each objective :math:`\varphi` (see :mod:`exactcomp.verify.formulation`) is solved as
:math:`\min -\varphi` with two HiGHS cut-offs, so that the solver stops as soon as the question
"is :math:`\max \varphi \le \tau`?" is decided rather than at the optimum:

* ``objective_bound = -p`` with :math:`p = \tau - \mu` prunes every node whose relaxation
  proves :math:`\varphi \le p`; if nothing is left (status *infeasible* or *objective bound*
  without an incumbent above :math:`p`) then :math:`\max \varphi \le p`, and so
  :math:`\le \tau` even if the solver's tolerances shifted the bound by up to :math:`\mu`.
* ``objective_target = -(\tau + \mu)`` stops at the first incumbent with
  :math:`\varphi \ge \tau + \mu`; its input is only a *candidate*: the caller re-evaluates it
  in float64 with the original weights before calling it a counterexample.

The margin is :math:`\mu` of :func:`~exactcomp.highs.margins.solver_margin` with :math:`M` the
largest a-priori output magnitude. Every other status (time limit, iteration limit, numerical
trouble, "unknown") is UNDECIDED, never proven: the table is
:func:`exactcomp.highs.status.decide`.

:func:`solve_objectives` is the MILP phase of a run (:mod:`exactcomp.verify.equivalence`):
the objectives not yet proven, one at a time, each within an equal share of the time left;
those left undecided get a second pass with the time that remains. An incumbent ends the run
only once it reproduces in exact arithmetic
(:meth:`~exactcomp.verify.run.EquivalenceRun.counterexample`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pyomo.contrib.solver.solvers.highs import Highs

from ..highs.runtime import HIGHS_THREADS, milp_options, prepare_highs
from ..highs.status import Decision, decide
from ..tolerances import FEASIBILITY_TOLERANCE
from .formulation import linf_objective, set_top1_condition, top1_objective
from .result import EquivalenceResult, EquivalenceStatus
from .run import EquivalenceRun

__all__ = ["Decision", "ObjectiveSolver", "SolveOutcome", "decide", "solve_objectives"]


@dataclass(frozen=True, eq=False)
class SolveOutcome:
    """One solve: the decision, the proven upper bound on ``max phi`` (``inf`` if none; the
    margin already added), the solver's incumbent input (``None`` if none) and its status."""

    decision: Decision
    upper_bound: float
    x: np.ndarray | None
    status: str
    seconds: float


class ObjectiveSolver:
    """A persistent HiGHS instance on one Pyomo model; only the objective changes.

    ``model`` must have a minimised objective component ``obj`` and input variables ``x``
    (indexed ``0..n-1``) whose values at an incumbent are returned as the candidate input.
    It runs on :data:`~exactcomp.highs.runtime.HIGHS_THREADS` threads, like every HiGHS instance of
    the package (HiGHS refuses a run whose thread count differs from its scheduler's).
    """

    def __init__(self, model, x) -> None:
        self.model, self.x = model, x
        prepare_highs()
        self.opt = Highs()
        self.solves = 0

    def _run(self, time_limit: float, options: dict):
        """The raw solver call (a seam for tests that simulate solver failures)."""
        return self.opt.solve(
            self.model,
            time_limit=max(time_limit, 0.01),
            threads=HIGHS_THREADS,
            solver_options=options,
            load_solutions=False,
            raise_exception_on_nonoptimal_result=False,
        )

    def solve(
        self,
        expr,
        tau: float,
        margin: float,
        time_limit: float,
        feasibility: float = FEASIBILITY_TOLERANCE,
    ) -> SolveOutcome:
        """Decide ``max phi <= tau`` for the objective ``min expr`` (``expr = -phi``), with the
        solver's feasibility tolerances at ``feasibility`` (``margin`` must allow for it)."""
        self.model.obj.set_value(expr)
        prove_at, find_at = tau - margin, tau + margin
        options = {
            "output_flag": False,
            "objective_bound": -prove_at,
            "objective_target": -find_at,
            "mip_rel_gap": 0.0,
            **milp_options(feasibility),
        }
        t0 = time.perf_counter()
        res = self._run(time_limit, options)
        self.solves += 1
        decision, bound = decide(
            res.termination_condition,
            res.incumbent_objective,
            res.objective_bound,
            prove_at,
            find_at,
            margin,
        )
        x = None
        if res.incumbent_objective is not None:
            try:
                values = res.solution_loader.get_vars(list(self.x.values()))
                x = np.array([values[v] for v in self.x.values()], dtype=np.float64)
            except Exception:  # noqa: BLE001 - no readable solution is just "no candidate"
                x = None
        return SolveOutcome(
            decision, bound, x, res.termination_condition.name, time.perf_counter() - t0
        )


def solve_objectives(
    run: EquivalenceRun, jm, solver: ObjectiveSolver, margin: float
) -> EquivalenceResult:
    """Phase 4 of ``run``: decide each objective still open in turn on the joint model ``jm``
    (:mod:`exactcomp.verify.formulation`); time-outs get a second pass with the time left."""
    t = time.perf_counter()
    bounds = dict(run.known)  # objective -> best proven upper bound
    pending = [o for o in run.objectives if not bounds.get(o, np.inf) <= run.tol]
    condition = None  # the class i whose "top class of f" constraints are in the model
    statuses: set[str] = set()  # solver statuses of the objectives left undecided
    run.progress.task("milp", len(pending))
    for attempt in range(2):
        undecided = []
        for n, obj in enumerate(pending):
            share = run.left() / (len(pending) - n)
            if share <= 0:
                undecided.append(obj)
                continue
            if run.mode == "linf":
                expr = linf_objective(jm, *obj)
            else:
                if condition != obj[0]:
                    condition = obj[0]
                    set_top1_condition(jm, condition)
                expr = top1_objective(jm, *obj)
            out = solver.solve(expr, run.tol, margin, share)
            bounds[obj] = min(bounds.get(obj, np.inf), out.upper_bound)
            if out.decision is Decision.FOUND and out.x is not None:
                cex = run.counterexample(out.x, "milp")
                if cex is not None:
                    run.timed("milp", t)
                    return run.finish(
                        EquivalenceStatus.NOT_EQUIVALENT,
                        np.inf,
                        cex,
                        milps=solver.solves,
                        proven=sum(b <= run.tol for b in bounds.values()),
                        reason="found by the MILP",
                    )
            if out.decision is Decision.PROVEN:
                run.progress.advance(1, f"{obj}: <= {out.upper_bound:.2g}")
            else:
                undecided.append(obj)
                statuses.add(out.status)
        pending = undecided
        if not pending or run.left() <= 0 or attempt == 1:
            break
    run.timed("milp", t)
    proven = len(run.objectives) - len(pending)
    upper = max(bounds.get(o, np.inf) for o in run.objectives)
    if pending:
        return run.finish(
            EquivalenceStatus.UNKNOWN,
            max(upper, run.lower),
            milps=solver.solves,
            proven=proven,
            reason=f"{len(pending)} objective(s) undecided (solver: "
            f"{', '.join(sorted(statuses)) or 'no time left'})",
        )
    return run.finish(
        EquivalenceStatus.EQUIVALENT,
        upper,
        milps=solver.solves,
        proven=proven,
        reason="every objective proven by the MILP",
    )
