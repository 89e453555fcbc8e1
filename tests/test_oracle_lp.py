"""The oracle's LP (:func:`exactcomp.testing.regions.lp_argmax`, HiGHS driven directly) against
:func:`scipy.optimize.linprog`, its former route: the same optima on random LPs, and the same
answers of the oracle itself (exact ranges, stability, ``max |f - g|``) on small networks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

import exactcomp.testing.oracle as oracle
import exactcomp.testing.regions as regions
from exactcomp.domain import Box
from exactcomp.testing.random_networks import random_case
from exactcomp.testing.regions import OracleError, Polytope, lp_argmax


def _linprog_argmax(row: np.ndarray, poly: Polytope, box: Box) -> np.ndarray | None:
    """The oracle's LP as it was solved before: through ``linprog``."""
    scale = float(np.max(np.abs(row)))
    res = linprog(
        -row / scale,
        A_ub=poly.a if poly.a.size else None,
        b_ub=poly.b if poly.a.size else None,
        bounds=list(zip(box.lower, box.upper, strict=True)),
        method="highs",
    )
    if res.status == 2:
        return None
    if res.status != 0 or res.x is None:
        raise OracleError(f"LP failed: status {res.status} ({res.message})")
    return box.clip(np.asarray(res.x, dtype=np.float64))


def _random_lp(rng: np.random.Generator):
    n = int(rng.integers(1, 7))
    m = int(rng.integers(0, 25))
    lo = rng.uniform(-2, 1, n)
    hi = lo + rng.choice([0.0, 0.5, 3.0], n)  # some fixed columns
    box = Box(lo, hi)
    a = rng.normal(size=(m, n))
    a /= np.maximum(np.max(np.abs(a), axis=1, keepdims=True), 1e-300)
    b = a @ box.center + rng.normal(scale=0.7, size=m)  # about half the LPs infeasible
    return rng.normal(size=n), Polytope(a, b), box


def test_lp_argmax_finds_linprogs_optimum_and_infeasibility() -> None:
    rng = np.random.default_rng(0)
    infeasible = optimal = 0
    for _ in range(400):
        row, poly, box = _random_lp(rng)
        ours, ref = lp_argmax(row, poly, box), _linprog_argmax(row, poly, box)
        assert (ours is None) == (ref is None)
        if ours is None:
            infeasible += 1
            continue
        optimal += 1
        assert np.all(box.lower <= ours) and np.all(ours <= box.upper)
        assert np.all(poly.a @ ours <= poly.b + 1e-7 * (1 + np.abs(poly.b)))
        assert abs(row @ ours - row @ ref) <= 1e-9 * (1 + abs(row @ ref)) * np.abs(row).max()
    assert infeasible > 50 and optimal > 50  # both kinds of answer were compared


def test_lp_argmax_without_rows_is_the_box_corner() -> None:
    box = Box(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.0, 5.0]))
    x = lp_argmax(np.array([1.0, 3.0, -2.0]), Polytope(np.zeros((0, 3)), np.zeros(0)), box)
    assert np.array_equal(x, [1.0, 0.0, 2.0])


@pytest.mark.parametrize("seed", range(8))
def test_the_oracle_answers_the_same_through_either_lp(seed, monkeypatch) -> None:
    case = random_case(seed, inputs=(1, 4), depth=(1, 3), width=(2, 5), max_neurons=10)
    f, box = case.network, case.box
    rng = np.random.default_rng(seed)
    g = f.replace_layers(
        [
            type(la)(la.weight * (1 + 0.05 * rng.normal(size=la.weight.shape)), la.bias, la.relu)
            for la in f.layers
        ]
    )
    ours = oracle.exact_analysis(f, box)
    ours_diff = oracle.max_output_difference(f, g, box).value
    monkeypatch.setattr(regions, "lp_argmax", _linprog_argmax)
    monkeypatch.setattr(oracle, "lp_argmax", _linprog_argmax)
    ref = oracle.exact_analysis(f, box)
    ref_diff = oracle.max_output_difference(f, g, box).value
    for (lo, hi), (rlo, rhi) in zip(ours.ranges, ref.ranges, strict=True):
        scale = 1.0 + np.maximum(np.abs(rlo), np.abs(rhi))
        assert np.all(np.abs(lo - rlo) <= 1e-9 * scale)
        assert np.all(np.abs(hi - rhi) <= 1e-9 * scale)
    for a, b in zip(ours.stability, ref.stability, strict=True):
        assert np.array_equal(a, b)
    assert abs(ours_diff - ref_diff) <= 1e-9 * (1.0 + abs(ref_diff))


def counting_lps(monkeypatch) -> list:
    """A list that grows by one with each LP the oracle solves (its ``lp_argmax`` wrapped)."""
    solved = []

    def counted(row, poly, box):
        solved.append(1)
        return lp_argmax(row, poly, box)

    monkeypatch.setattr(regions, "lp_argmax", counted)
    monkeypatch.setattr(oracle, "lp_argmax", counted)
    return solved


def test_an_lp_budget_counts_every_lp_of_the_enumerations_and_stops_them(monkeypatch) -> None:
    """:class:`LpBudget` counts each LP that ``max_output_difference`` solves (the
    enumeration's branching LPs and the maxima), shared across calls; with fewer LPs than a
    call needs, the call raises :class:`OracleError` after spending exactly the budget."""
    case = random_case(3, inputs=(2, 3), depth=(2, 3), width=(3, 5), max_neurons=10)
    f, box = case.network, case.box
    g = f.replace_layers([type(la)(la.weight * 1.01, la.bias, la.relu) for la in f.layers])
    solved = counting_lps(monkeypatch)
    free = oracle.max_output_difference(f, g, box)
    needed = len(solved)
    assert needed > 10
    budget = regions.LpBudget(10 * needed)
    for _ in range(2):  # shared: two calls spend twice
        again = oracle.max_output_difference(f, g, box, budget=budget)
        assert again.value == free.value and again.regions == free.regions
    assert budget.spent == 2 * needed
    short = regions.LpBudget(needed - 1)
    with pytest.raises(OracleError, match="LPs"):
        oracle.max_output_difference(f, g, box, budget=short)
    assert short.spent == needed - 1


def test_an_lp_budget_counts_every_lp_of_the_exact_analysis_and_stops_it(monkeypatch) -> None:
    """``exact_analysis`` counts its range LPs and its branching LPs in one budget: with
    enough, the same ranges and verdicts as without; one LP short, :class:`OracleError`
    after spending exactly the budget (the soak's ``F_LPS``: a case too large)."""
    case = random_case(5, inputs=(2, 3), depth=(2, 3), width=(3, 5), max_neurons=10)
    f, box = case.network, case.box
    solved = counting_lps(monkeypatch)
    free = oracle.exact_analysis(f, box)
    needed = len(solved)
    assert needed > 10
    budget = regions.LpBudget(needed)
    again = oracle.exact_analysis(f, box, budget=budget)
    assert budget.spent == needed and again.regions == free.regions
    for (lo, hi), (rlo, rhi) in zip(again.ranges, free.ranges, strict=True):
        assert np.array_equal(lo, rlo) and np.array_equal(hi, rhi)
    short = regions.LpBudget(needed - 1)
    with pytest.raises(OracleError, match="LPs"):
        oracle.exact_analysis(f, box, budget=short)
    assert short.spent == needed - 1
