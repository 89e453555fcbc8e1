"""A ReLU-split tree that runs out of nodes still bounds its neuron: the weakest bound over
its leaves (:meth:`exactcomp.bab.relu_tree.Tree.bound`), which the engine keeps as the neuron's
bound for the later layers. The bounds enclose the oracle's exact ranges, tighten as the
tree grows, and the engine's verdicts stay the oracle's.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bab import prove_signs_relu, split
from exactcomp.bab import relu as relu_bab
from exactcomp.bounds import linear_bounds, lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import stable_neurons
from exactcomp.stability.phases import PhaseInput, relu_split_phase
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case, random_network
from exactcomp.tolerances import DEFAULT

BOX = Box.uniform(-1.0, 1.0, 8)


@pytest.fixture(autouse=True)
def _lp_trees_alone(monkeypatch):
    """These tests are about the LP trees: the batched engine that asks first by default
    (:data:`~exactcomp.bab.relu.BATCHED_FIRST`, tested in ``test_beta_bounds.py``) is off."""
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", False)


def vee_net() -> Network:
    r"""``z = relu(x0 + x1) + relu(x0 - x1) - 2.5`` on ``[-1, 1]^8`` (six inputs unused):
    ``max z = -0.5``, the triangle LP reaches ``0.5``, two levels of splits prove it::

        x0 ──┬── relu(x0 + x1) ──┐
        x1 ──┴── relu(x0 - x1) ──┴── z = . - 2.5
    """
    w0 = np.zeros((2, 8))
    w0[0, :2], w0[1, :2] = [1.0, 1.0], [1.0, -1.0]
    layers = (
        Layer(w0, np.zeros(2), relu=True),
        Layer(np.array([[1.0, 1.0]]), np.array([-2.5]), relu=True),
        Layer(np.array([[1.0]]), np.zeros(1), relu=False),
    )
    return Network(layers, dtype="float64")


def test_an_unfinished_tree_bounds_the_vee(monkeypatch):
    monkeypatch.setattr(relu_bab, "CUTS", False)
    net = vee_net()
    lin = linear_bounds(net, BOX)
    lp_hi = lp_layer_bounds(net, BOX, 1, lin)[1][0]
    tops = []
    for nodes in (1, 3):  # the root; then its two children too
        res = prove_signs_relu(net, BOX, 1, lin, [0], [1], max_nodes=nodes)
        assert not res.inactive[0] and not res.complete
        assert res.upper is not None and res.lower is not None and res.lower[0] == -np.inf
        tops.append(float(res.upper[0]))
    assert -0.5 <= tops[1] <= tops[0] <= lp_hi + 1e-5  # one level of splits: 0.5 still


def test_an_answered_question_gives_no_tree_bound():
    net = vee_net()
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [1])
    assert res.inactive[0] and res.upper is not None and res.upper[0] == np.inf


def _case(seed: int) -> tuple[Network, Box]:
    rng = np.random.default_rng(2000 + seed)
    box = Box.uniform(-1.0, 1.0, int(rng.integers(8, 16)))
    net = random_network(rng, depth=(3, 5), width=(2, 4), box=box, max_neurons=13, nasty=False)
    return net, box


@pytest.mark.parametrize("nodes", [1, 2, 5])
def test_tree_bounds_enclose_the_exact_ranges(nodes):
    """Small node budgets, so that most trees stop unfinished: every bound they return
    encloses the oracle's range, and some are tighter than the linear bounds."""
    tighter = 0
    for seed in range(12):
        net, box = _case(seed)
        exact = exact_analysis(net, box).ranges
        known = linear_bounds(net, box)
        for k in net.relu_layers[1:]:
            lo, hi = known[k]
            open_ = np.flatnonzero((lo < 0) & (hi > 0))
            res = prove_signs_relu(
                net, box, k, known, open_, np.zeros(open_.size, int), max_nodes=nodes
            )
            assert (res.lower <= exact[k][0][open_] + 1e-9).all(), (seed, k)
            assert (res.upper >= exact[k][1][open_] - 1e-9).all(), (seed, k)
            tighter += int(
                (res.upper < hi[open_] - 1e-6).sum() + (res.lower > lo[open_] + 1e-6).sum()
            )
            # the phase's bounds say what its claims do (the re-check reads bounds first)
            q = PhaseInput(net, box, k, known[: k + 1], open_, np.zeros(open_.size, int), DEFAULT)
            got = relu_split_phase(q)
            if got.bounds is not None:  # (None: no unstable ReLU before layer k)
                assert (got.bounds[1][got.inactive] <= 0.0).all()
                assert (got.bounds[0][got.active] >= 0.0).all()
    assert tighter > 0


@pytest.mark.parametrize("seed", range(6))
def test_engine_with_tree_bounds_agrees_with_the_oracle(monkeypatch, seed):
    monkeypatch.setattr(split, "MAX_INPUTS", 0)  # ReLU splits, as on MNIST
    monkeypatch.setattr(relu_bab, "MAX_NODES_RELU", 3)  # unfinished trees
    case = random_case(seed, depth=(3, 4), width=(4, 10), inputs=(2, 4), nasty=False)
    exact = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert exact.wrong_verdicts(report) == []
    for ls in report.layers:
        lo, hi = exact.ranges[ls.layer]
        assert (ls.lower <= lo + 1e-9).all() and (ls.upper >= hi - 1e-9).all()


def test_a_stalled_question_gives_up_and_keeps_its_tree_bound(monkeypatch):
    """With the give-up rule made strict (any open share after the first pass), the vee's
    question stops after its first pass: no claim, not complete, its tree's bound kept (and
    as sound as when it runs on); with the rule off the same call proves it."""
    monkeypatch.setattr(relu_bab, "CUTS", False)
    net = vee_net()
    lin = linear_bounds(net, BOX)
    monkeypatch.setattr(relu_bab, "FIRST", 1)
    monkeypatch.setattr(relu_bab, "GIVE_UP_NODES", 1)
    monkeypatch.setattr(relu_bab, "GIVE_UP_LEFT", 0.0)
    res = prove_signs_relu(net, BOX, 1, lin, [0], [1])
    assert not res.inactive[0] and not res.complete and res.nodes == 1
    assert res.upper is not None and -0.5 <= res.upper[0] < np.inf
    monkeypatch.setattr(relu_bab, "GIVE_UP_LEFT", 1.0)
    assert prove_signs_relu(net, BOX, 1, lin, [0], [1]).inactive[0]
