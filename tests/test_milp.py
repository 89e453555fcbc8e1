"""The MILP layer: the Pyomo big-M encoding, its compiled HiGHS form, and the decision rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyomo.environ as pyo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.bounds import interval_bounds
from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError
from exactcomp.milp import add_input, add_network, build_prefix_model, set_point
from exactcomp.milp.highs import Question, column_values, compile_model, solve_question
from exactcomp.milp.solvers import pyomo_solver
from exactcomp.network import Network
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict


def _abs_net() -> Network:
    """``|x| - 1.5`` through two ReLUs; its maximum over ``[-1, 1]`` is ``-0.5``.

    ::

        x --(+1)--> [relu a] --(+1)--\\
          \\                           (+) - 1.5 --> z   (output, no ReLU)
           --(-1)--> [relu b] --(+1)--/
    """
    return Network.from_arrays(
        [np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])], [np.zeros(2), [-1.5]]
    )


def _binaries(model: pyo.Block) -> int:
    return sum(1 for v in model.component_data_objects(pyo.Var) if v.is_binary())


def test_prefix_model_counts_binaries_only_for_unstable_neurons():
    net, box = _abs_net(), Box.uniform(-1.0, 1.0, 1)
    bounds = interval_bounds(net, box)
    model, zk = build_prefix_model(net, box, 1, bounds)
    assert _binaries(model) == 2 and len(zk) == 1
    verdicts = [np.array([Verdict.ACTIVE, Verdict.INACTIVE], dtype=np.int8)]
    model, _ = build_prefix_model(net, box, 1, bounds, verdicts)
    assert _binaries(model) == 0


def test_missing_bound_raises_instead_of_inventing_a_big_m():
    net, box = _abs_net(), Box.uniform(-1.0, 1.0, 1)
    bounds = [
        (np.array([-np.inf, -1.0]), np.array([1.0, 1.0])),
        (np.array([-2.0]), np.array([1.0])),
    ]
    m = pyo.ConcreteModel()
    x = add_input(m, box)
    with pytest.raises(InvalidNetworkError, match="no finite bound"):
        add_network(m, net, x, bounds)
    # a proven-stable neuron needs no bound
    m2 = pyo.ConcreteModel()
    verdicts = [np.array([Verdict.INACTIVE, 0], dtype=np.int8)]
    add_network(m2, net, add_input(m2, box), bounds, verdicts, upto=0)


def test_compiled_model_agrees_with_pyomo_appsi_highs():
    for seed in range(4):
        case = random_case(seed, max_neurons=10, nasty=False)
        net, box = case.network, case.box
        bounds = interval_bounds(net, box)
        k = len(net.layers) - 1
        model, zk = build_prefix_model(net, box, k, bounds)
        milp, _ = compile_model(model, model.x, zk)
        via_pyomo = pyomo_solver(model, zk, "highs")
        for j in range(len(zk)):
            for sign in (1, -1):
                q = Question(j, sign, 1e-6, "optimal", 30.0)
                a, b = solve_question(milp, q), via_pyomo(milp, q)
                za = net.preactivations(box.clip(a.points[:1]))[k][0, j]
                zb = net.preactivations(box.clip(b.points[:1]))[k][0, j]
                assert sign * za == pytest.approx(sign * zb, abs=1e-6)
                assert a.proven == b.proven


@settings(max_examples=15, derandomize=True, deadline=None)
@given(st.integers(0, 10_000))
def test_milp_optimum_equals_exact_range(seed):
    """The MILP's max/min of every pre-activation matches the oracle's exact range."""
    case = random_case(seed, max_neurons=8, width=(1, 4), depth=(1, 2), nasty=False)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    bounds = interval_bounds(net, box)
    for k in range(len(net.layers)):
        model, zk = build_prefix_model(net, box, k, bounds)
        milp, _ = compile_model(model, model.x, zk)
        for j in range(len(zk)):
            for sign in (1, -1):
                ans = solve_question(milp, Question(j, sign, 1e-6, "optimal", 30.0))
                assert ans.status == "Optimal"
                z = net.preactivations(box.clip(ans.points[:1]))[k][0, j]
                target = exact[k][1][j] if sign > 0 else exact[k][0][j]
                # a point of the box cannot beat the exact extreme; HiGHS stops within its
                # relative gap (1e-4) of it
                scale = max(1.0, abs(target))
                assert sign * z <= sign * target + 1e-9 * scale
                assert sign * z >= sign * target - 2e-4 * scale


def test_set_point_satisfies_every_constraint():
    case = random_case(3, max_neurons=12, nasty=False)
    net, box = case.network, case.box
    bounds = interval_bounds(net, box)
    k = len(net.layers) - 1
    model, zk = build_prefix_model(net, box, k, bounds)
    milp, cols = compile_model(model, model.x, zk)
    rng = np.random.default_rng(0)
    for x in box.sample(20, rng):
        set_point(model, net, x)
        v = column_values(cols)
        assert np.isfinite(v).all()
        ax = milp.a @ v
        assert (ax >= milp.row_lower - 1e-9).all() and (ax <= milp.row_upper + 1e-9).all()
        assert (v >= milp.col_lower - 1e-12).all() and (v <= milp.col_upper + 1e-12).all()
        assert np.allclose(v[milp.target_cols], net.preactivations(x[None])[k][0])


def test_early_stop_decisions_on_known_neurons():
    """``|x| - 1.5 <= -0.5``: "can z > 0?" is infeasible under the cut-off (proven), while
    "can z < 0?" reaches the target with a point that really is negative."""
    net, box = _abs_net(), Box.uniform(-1.0, 1.0, 1)
    model, zk = build_prefix_model(net, box, 1, interval_bounds(net, box))
    milp, _ = compile_model(model, model.x, zk)
    up = solve_question(milp, Question(0, 1, 1e-6, "early", 10.0))
    assert up.proven and up.points.shape[0] == 0
    down = solve_question(milp, Question(0, -1, 1e-6, "early", 10.0))
    assert not down.proven
    assert net.preactivations(down.points[:1])[1][0, 0] < -0.4
    opt = solve_question(milp, Question(0, 1, 1e-6, "optimal", 10.0))
    assert opt.proven  # dual bound -(-0.5) = 0.5 >= margin
    # the cut-off as a constraint row decides the same way
    assert solve_question(milp, Question(0, 1, 1e-6, "row", 10.0)).proven
    row_down = solve_question(milp, Question(0, -1, 1e-6, "row", 10.0))
    assert not row_down.proven
    assert net.preactivations(row_down.points[:1])[1][0, 0] < 0.0


def test_a_tie_at_zero_is_never_proven():
    """``z = -x`` on ``[0, 1]``: max z is exactly 0, inside the margin, so not proven."""
    net = Network.from_arrays([np.array([[-1.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)])
    box = Box.uniform(0.0, 1.0, 1)
    model, zk = build_prefix_model(net, box, 0, interval_bounds(net, box))
    milp, _ = compile_model(model, model.x, zk)
    for mode in ("early", "row", "optimal"):
        assert not solve_question(milp, Question(0, 1, 1e-6, mode, 10.0)).proven


@settings(max_examples=25, derandomize=True, deadline=None)
@given(st.integers(0, 10_000))
def test_relaxing_the_feeding_binaries_keeps_the_exact_optimum(seed):
    """Binaries of layer k-1 whose weight works against the question may be continuous.

    The optimum of every question (each target neuron, each sign) with those binaries
    relaxed must equal the oracle's exact extreme: the relaxation may not let the solver
    find a larger value than any input of the box gives (that would be a false "unstable"
    and, with the early mode, it could hide a proof), nor a smaller one (a false proof).
    """
    from exactcomp.milp.encoding import feeding_binaries

    case = random_case(seed, max_neurons=10, width=(2, 5), depth=(2, 3), nasty=False)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    bounds = interval_bounds(net, box)
    relaxed_some = False
    for k in range(1, len(net.layers)):
        model, zk = build_prefix_model(net, box, k, bounds)
        milp, columns = compile_model(model, model.x, zk)
        cols, neurons = feeding_binaries(model, k, columns)
        assert all(milp.integer[cols])
        for j in range(len(zk)):
            for sign in (1, -1):
                weights = net.layers[k].weight[j, neurons]
                continuous = cols[sign * weights <= 0.0]
                relaxed_some |= continuous.size > 0
                q = Question(j, sign, 1e-6, "optimal", 30.0, continuous=continuous)
                ans = solve_question(milp, q)
                assert ans.status == "Optimal"
                target = exact[k][1][j] if sign > 0 else exact[k][0][j]
                scale = max(1.0, abs(target))
                # the solver's point is a real input: evaluate it exactly in float64
                z = net.preactivations(box.clip(ans.points[:1]))[k][0, j]
                assert sign * z <= sign * target + 1e-9 * scale
                assert sign * z >= sign * target - 2e-4 * scale
                # and the relaxed optimum itself is no larger than the exact extreme: the
                # dual bound proves max(sign * z) <= sign * target + 1e-4 * scale
                bound = Question(j, sign, -sign * target - 1e-4 * scale, "optimal", 30.0)
                bound = dataclasses.replace(bound, continuous=continuous)
                assert solve_question(milp, bound).proven
    if not relaxed_some:
        pytest.skip("no binary could be relaxed in this network")


@settings(max_examples=12, derandomize=True, deadline=None)
@given(st.integers(0, 10_000))
def test_a_cpu_limit_claims_nothing_and_a_decision_equals_the_exact_sign(seed):
    """Decision questions ("row" mode) with a CPU-second limit (``cpu_limit``).

    With room to finish, a question is proven exactly when the oracle's exact extreme has
    the other sign with room to spare (``sign * z <= -margin`` everywhere) and never when the
    box has a point of its sign; with a CPU limit too small for any search, a question that
    runs out ends as a time limit and claims nothing.
    """
    case = random_case(seed, max_neurons=10, width=(2, 5), depth=(2, 3), nasty=False)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    bounds = interval_bounds(net, box)
    margin = 1e-6
    for k in range(1, len(net.layers)):
        model, zk = build_prefix_model(net, box, k, bounds)
        milp, _ = compile_model(model, model.x, zk)
        for j in range(len(zk)):
            for sign in (1, -1):
                top = exact[k][1][j] if sign > 0 else -exact[k][0][j]  # max of sign * z
                deep = k >= 2  # reliability branching where two layers may have binaries
                q = Question(j, sign, margin, "row", 30.0, cpu_limit=30.0, deep=deep)
                full = solve_question(milp, q)
                assert not full.timed_out
                if top > 0:
                    assert not full.proven
                if top < -10 * margin * max(1.0, abs(top)):
                    assert full.proven
                cut = solve_question(milp, dataclasses.replace(q, cpu_limit=0.0))
                if cut.timed_out:
                    assert not cut.proven and cut.status == "CPU time limit reached"
                else:  # decided before the first interrupt check: the same decision
                    assert cut.proven == full.proven


def test_a_cpu_limit_stops_a_search_that_needs_nodes():
    """A question whose search needs branch and bound nodes, given no CPU time, ends at its
    CPU limit (long before its 30 s wall-clock limit) as a time-out, proving nothing."""
    from exactcomp.testing.random_networks import gaussian_mlp

    net, box = gaussian_mlp([10, 30, 30, 1], 0), Box.uniform(-1.0, 1.0, 10)
    model, zk = build_prefix_model(net, box, 2, interval_bounds(net, box))
    milp, _ = compile_model(model, model.x, zk)
    ans = solve_question(milp, Question(0, 1, 1e-6, "row", 30.0, cpu_limit=1e-6))
    assert ans.timed_out and not ans.proven
    assert ans.status == "CPU time limit reached"


def test_deep_prefixes_are_marked_for_reliability_branching():
    """``LayerMilp.deep`` (how HiGHS branches) counts the layers that have binaries."""
    from exactcomp.milp.encoding import binary_layers
    from exactcomp.milp.layer import layer_milp
    from exactcomp.testing.random_networks import gaussian_mlp

    net, box = gaussian_mlp([4, 6, 6, 6, 1], 0), Box.uniform(-1.0, 1.0, 4)
    bounds = interval_bounds(net, box)
    for k, layers in ((1, 1), (2, 2), (3, 3)):
        model, _ = build_prefix_model(net, box, k, bounds)
        assert binary_layers(model, k) == layers
        layer = layer_milp(net, box, k, bounds, np.ones(6))
        assert layer.deep == (layers >= 2)
        assert layer.question(DEFAULT, 0, 1, 1.0).deep == layer.deep
