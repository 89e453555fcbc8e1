"""The solver layer (exactcomp.highs): the status table, the margins, the LP and its dual bound.

Tiny models with answers known by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import highspy
import numpy as np
import pytest
import scipy.sparse as sp
from pyomo.contrib.solver.common.results import TerminationCondition as TC
from pyomo.opt import TerminationCondition as LegacyTC

from exactcomp.highs.lp import Lp, dual_bound, dual_bounds, lp_min
from exactcomp.highs.margins import milp_doubt, milp_margin, solver_margin
from exactcomp.highs.milp import run_milp
from exactcomp.highs.runtime import milp_options
from exactcomp.highs.status import (
    Decision,
    Termination,
    bound_proves,
    cutoff_empty,
    decide,
    from_highs,
    from_pyomo,
)
from exactcomp.tolerances import DEFAULT

T = Termination


# ----------------------------------------------------------------------------- status table
def test_only_infeasibility_empties_a_cutoff() -> None:
    assert [t for t in T if cutoff_empty(t)] == [T.INFEASIBLE, T.INFEASIBLE_OR_UNBOUNDED]


def test_only_an_optimal_run_with_a_dual_bound_above_the_margin_proves_it() -> None:
    assert bound_proves(T.OPTIMAL, 2.0, 1.0)
    assert bound_proves(T.OPTIMAL, 1.0, 1.0)
    assert not bound_proves(T.OPTIMAL, 0.5, 1.0)
    assert not bound_proves(T.OPTIMAL, None, 1.0)
    assert not bound_proves(T.OPTIMAL, np.nan, -1.0)
    for t in T:
        if t is not T.OPTIMAL:
            assert not bound_proves(t, 2.0, 1.0), t


def test_highs_statuses_map_to_the_table() -> None:
    m = highspy.HighsModelStatus
    assert from_highs(m.kOptimal) is T.OPTIMAL
    assert from_highs(m.kInfeasible) is T.INFEASIBLE
    assert from_highs(m.kUnboundedOrInfeasible) is T.INFEASIBLE_OR_UNBOUNDED
    assert from_highs(m.kObjectiveBound) is T.OBJECTIVE_LIMIT
    assert from_highs(m.kObjectiveTarget) is T.OBJECTIVE_LIMIT
    assert from_highs(m.kTimeLimit) is T.TIME_LIMIT
    for other in (m.kNotset, m.kSolveError, m.kUnbounded, m.kInterrupt, m.kUnknown):
        assert from_highs(other) is T.OTHER
    # a run that itself failed proves nothing, whatever the model status says
    assert from_highs(m.kInfeasible, run_failed=True) is T.OTHER


def test_every_pyomo_condition_maps_to_the_table() -> None:
    proving = {
        TC.convergenceCriteriaSatisfied: T.OPTIMAL,
        TC.provenInfeasible: T.INFEASIBLE,
        TC.infeasibleOrUnbounded: T.INFEASIBLE_OR_UNBOUNDED,
        TC.objectiveLimit: T.OBJECTIVE_LIMIT,
        TC.maxTimeLimit: T.TIME_LIMIT,
        LegacyTC.optimal: T.OPTIMAL,
        LegacyTC.infeasibleOrUnbounded: T.INFEASIBLE_OR_UNBOUNDED,
        LegacyTC.maxTimeLimit: T.TIME_LIMIT,
    }
    for cond in [*TC, *LegacyTC]:
        assert from_pyomo(cond) is proving.get(cond, T.OTHER), cond
    assert from_pyomo(TC.locallyInfeasible) is T.OTHER  # local: no proof


def test_decide_accepts_the_table_and_pyomo_alike() -> None:
    p, t, mu = 1.0, 2.0, 0.1
    assert decide(T.INFEASIBLE, None, None, p, t, mu) == (Decision.PROVEN, p + mu)
    assert decide(TC.provenInfeasible, None, None, p, t, mu) == (Decision.PROVEN, p + mu)
    both = (T.OPTIMAL, TC.convergenceCriteriaSatisfied)
    assert decide(both[0], -0.5, -0.5, p, t, mu) == decide(both[1], -0.5, -0.5, p, t, mu)
    assert decide(T.TIME_LIMIT, None, -0.5, p, t, mu) == (Decision.UNDECIDED, np.inf)


# ----------------------------------------------------------------------------- margins
def test_solver_margin_floors_the_magnitude_at_one() -> None:
    """The re-check floored M at 1, the engine did not; the larger (floored) margin is kept."""
    tol = DEFAULT
    small = solver_margin(tol, 0.25)
    assert small == tol.solver_abs + tol.solver_rel * 1.0
    assert small > tol.solver_abs + tol.solver_rel * 0.25  # the engine's old, smaller margin
    assert solver_margin(tol, 40.0) == tol.solver_abs + tol.solver_rel * 40.0
    assert solver_margin(tol, -40.0) == solver_margin(tol, 40.0)
    arr = solver_margin(tol, np.array([0.0, 3.0]))
    np.testing.assert_array_equal(arr, tol.solver_abs + tol.solver_rel * np.array([1.0, 3.0]))


def test_milp_margin_adds_the_encoding_doubt() -> None:
    tol = replace(DEFAULT, solver_abs=1e-6, solver_rel=1e-7)
    amp, neg = np.array([10.0, 0.0]), np.array([0.0, 1e-5])
    doubt = milp_doubt(1e-6, amp, neg)
    np.testing.assert_allclose(doubt, [1e-5, 1e-5], rtol=1e-12)
    got = milp_margin(tol, np.array([2.0, 0.5]), 1e-6, amp, neg)
    np.testing.assert_allclose(got, [1e-6 + 2e-7 + 1e-5, 1e-6 + 1e-7 + 1e-5], rtol=1e-15)


# ----------------------------------------------------------------------------- LP
@dataclass(frozen=True)
class _Model:
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray


def _triangle() -> _Model:
    """``x + y >= 1``, ``x - y <= 0.5`` on ``[0, 2]^2``::

    min x + 2 y  ->  y = 0.25, x = 0.75, value 1.25 (the two rows meet)
    """
    a = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, -1.0]]))
    return _Model(a, np.array([1.0, -np.inf]), np.array([np.inf, 0.5]), np.zeros(2), np.full(2, 2))


def test_lp_min_gives_a_rigorous_bound_at_the_known_optimum() -> None:
    model = _triangle()
    got = lp_min(Lp.from_model(model), model, np.array([1.0, 2.0]), DEFAULT, None)
    assert got is not None
    bound, values = got
    assert bound <= 1.25 <= bound + 1e-6  # rigorous, and tight up to the rounding pad
    np.testing.assert_allclose(values, [0.75, 0.25], atol=1e-9)


def test_dual_bound_holds_for_any_multipliers() -> None:
    """Weak duality: every multiplier vector gives a lower bound, however poor."""
    model = _triangle()
    cost = np.array([1.0, 2.0])
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert dual_bound(model, cost, rng.normal(size=2) * 3, DEFAULT) <= 1.25


def test_dual_bounds_is_dual_bound_per_column() -> None:
    """The batched bound (both sign conventions in one pass, ``|A|^T`` given or not) equals
    :func:`dual_bound` column by column, up to float64 summation order, and stays below the
    optimum 1.25 for any multipliers."""
    model = _triangle()
    cost = np.array([1.0, 2.0])
    rng = np.random.default_rng(1)
    ys = rng.normal(size=(2, 40)) * 3
    one = np.array([dual_bound(model, cost, ys[:, q], DEFAULT) for q in range(40)])
    np.testing.assert_allclose(dual_bounds(model, cost, ys, DEFAULT), one, rtol=1e-12)
    kept = Lp.from_model(model).abs_transpose(model)
    np.testing.assert_allclose(dual_bounds(model, cost, ys, DEFAULT, kept), one, rtol=1e-12)
    assert (one <= 1.25).all()


def test_a_cost_is_sent_again_after_one_coefficient_changed() -> None:
    """``set_cost`` skips a cost equal to the last one it sent, but not after
    ``set_col_cost`` changed a coefficient behind it: ``min x + 2 y`` is 1.25 again."""
    model = _triangle()
    lp = Lp.from_model(model)
    cost = np.array([1.0, 2.0])
    assert lp_min(lp, model, cost, DEFAULT, None)[0] == pytest.approx(1.25, abs=1e-6)
    lp.set_col_cost(1, -5.0)
    assert lp_min(lp, model, cost, DEFAULT, None)[0] == pytest.approx(1.25, abs=1e-6)


def test_lp_from_columns_maximises_and_reports_infeasible() -> None:
    lp = Lp.from_columns(np.zeros(2), np.ones(2), maximize=True, presolve=False)
    lp.add_row(-np.inf, 1.5, np.array([0, 1]), np.array([1.0, 1.0]))
    lp.set_cost(np.array([1.0, 1.0]))
    sol = lp.solve()
    assert sol.termination is T.OPTIMAL
    assert sol.values is not None and abs(sol.values.sum() - 1.5) < 1e-9
    lp.add_row(2.0, np.inf, np.array([0, 1]), np.array([1.0, 1.0]))
    assert lp.solve().termination is T.INFEASIBLE
    lp.delete_rows(1, 1)
    assert lp.solve().termination is T.OPTIMAL


def test_lp_past_its_deadline_is_not_solved() -> None:
    model = _triangle()
    assert lp_min(Lp.from_model(model), model, np.array([1.0, 2.0]), DEFAULT, 0.0) is None


# ----------------------------------------------------------------------------- MILP
def test_milp_cutoff_question_on_a_known_integer_program() -> None:
    """``max x + y`` with ``2x + 2y <= 3``, ``x, y`` binary: the optimum is 1.

    "Is there a point with ``x + y >= 1.5``?" (cut-off row) is infeasible: proven. "... >= 0.5"
    is not."""
    a = sp.csc_array(np.array([[2.0, 2.0], [1.0, 1.0]]))
    cost = np.array([-1.0, -1.0])
    for p, empty in ((1.5, True), (0.5, False)):
        model = _Model(a, np.array([-np.inf, p]), np.array([3.0, np.inf]), np.zeros(2), np.ones(2))
        out = run_milp(
            model, cost, np.ones(2, bool), time_limit=10.0, options=milp_options(), cutoff=-p
        )
        assert cutoff_empty(out.termination) is empty, out.text


@pytest.mark.parametrize("margin, proven", [(-1.0, True), (-0.5, False)])
def test_milp_optimal_question_reads_the_dual_bound(margin: float, proven: bool) -> None:
    a = sp.csc_array(np.array([[2.0, 2.0]]))
    model = _Model(a, np.array([-np.inf]), np.array([3.0]), np.zeros(2), np.ones(2))
    out = run_milp(
        model, np.array([-1.0, -1.0]), np.ones(2, bool), time_limit=10.0, options=milp_options()
    )
    assert out.termination is T.OPTIMAL
    assert abs(out.dual - -1.0) < 1e-9
    assert bound_proves(out.termination, out.dual, margin) is proven
