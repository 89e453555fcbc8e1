"""Hopeless ReLU-split questions stop early (:mod:`exactcomp.bab.outlook`), and stay undecided.

- the extrapolation: a gap that halves per doubling of the nodes (``p = 1``) needs exactly the
  nodes the formula gives; a gap that does not fall is hopeless at any budget; a bound that
  already proves, or no negative best value, is never hopeless;
- on random depth-3-4 networks with the rule made as eager as it gets (a mark every 2 nodes,
  any predicted need stops), every claim of :func:`~exactcomp.bab.beta_tree.prove_signs_beta`
  is true per the exact oracle, every neuron of a stopped question is left unclaimed by that
  question, and the bounds of the stopped trees contain the exact range;
- the ``fast`` engine with that rule, and the MILPs of the hopeless questions skipped, keeps
  the oracle's verdicts (a stopped question is UNDECIDED, never decided).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from exactcomp.bab import outlook
from exactcomp.bab import relu as relu_bab
from exactcomp.bab.beta_tree import prove_signs_beta
from exactcomp.bab.split import hopeless_bit
from exactcomp.bounds import linear_bounds
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis, exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Verdict


def test_the_extrapolation_of_a_power_law(monkeypatch):
    monkeypatch.setattr(outlook, "SLACK", 1.0)
    # best -0.1: the gap must reach 0.1; it is 0.8 at 1,000 and 0.4 at 2,000 nodes (p = 1)
    marks = [(1000, 0.7), (2000, 0.3)]
    assert outlook.needed_nodes(marks, -0.1) == pytest.approx(8000.0)
    assert not outlook.hopeless(marks, -0.1, 8001)
    assert outlook.hopeless(marks, -0.1, 7999)
    assert not outlook.hopeless(marks[:1], -0.1, 1)  # one mark: no rate yet


def test_a_stalled_gap_is_hopeless_and_a_proof_never_is(monkeypatch):
    monkeypatch.setattr(outlook, "SLACK", 1.0)
    assert outlook.needed_nodes([(1000, 0.5), (2000, 0.5)], -0.1) == math.inf
    assert outlook.hopeless([(1000, 0.5), (2000, 0.6)], -0.1, 10**9)
    assert outlook.needed_nodes([(1000, 0.5), (2000, 0.0)], -0.1) == 0.0  # proven
    assert outlook.needed_nodes([(1000, 0.5), (2000, 0.4)], 0.0) == 0.0  # a near witness
    near = outlook.needed_nodes([(1000, 0.5), (2000, 0.05)], -0.1)  # gap 0.6 -> 0.15 -> 0.1
    assert 2000 < near < 2500 and not outlook.hopeless([(1000, 0.5), (2000, 0.05)], -0.1, 2500)


@pytest.fixture
def eager(monkeypatch):
    """The rule at its most eager: a mark every doubling from 2 nodes, and any need stops."""
    monkeypatch.setattr(outlook, "FIRST_MARK", 2)
    monkeypatch.setattr(outlook, "SLACK", 1e-9)
    monkeypatch.setattr(outlook, "STOP_HOPELESS", True)


@pytest.mark.parametrize("seed", range(8))
def test_stopped_questions_claim_nothing_and_keep_sound_bounds(seed, eager):
    case = random_case(40 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 4), max_neurons=14)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    pre = linear_bounds(net, box)
    for k in range(1, len(net.layers)):
        n = net.layers[k].out_features
        log: list = []
        res = prove_signs_beta(net, box, k, pre, np.arange(n), np.zeros(n, int), batch=4, log=log)
        true_lo, true_hi = exact[k]
        assert (true_hi[res.inactive] <= 1e-9).all(), (seed, k)
        assert (true_lo[res.active] >= -1e-9).all(), (seed, k)
        assert (true_lo >= res.lower - 1e-9).all() and (true_hi <= res.upper + 1e-9).all()
        for j, sign, state, _, best, _ in log:
            if state != "hopeless":
                continue
            assert not (res.inactive[j] if sign > 0 else res.active[j])  # that sign unclaimed
            if not (res.inactive[j] or res.active[j]):
                assert res.hopeless[j] & hopeless_bit(sign)
            seen = true_hi[j] if sign > 0 else -true_lo[j]
            assert best <= seen + 1e-9  # a value reached at a point of the box


def test_the_eager_rule_stops_some_question():
    """The fixture above is not vacuous: on these cases it stops trees."""
    stopped = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outlook, "FIRST_MARK", 2)
        mp.setattr(outlook, "SLACK", 1e-9)
        for seed in range(8):
            case = random_case(40 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 4), max_neurons=14)
            net, box = case.network, case.box
            pre = linear_bounds(net, box)
            for k in range(1, len(net.layers)):
                n = net.layers[k].out_features
                log: list = []
                prove_signs_beta(net, box, k, pre, np.arange(n), np.zeros(n, int), batch=4, log=log)
                stopped += sum(state == "hopeless" for _, _, state, *_ in log)
    assert stopped > 0


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_engine_keeps_the_oracles_verdicts_with_the_eager_rule(seed, eager, monkeypatch):
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", True)
    monkeypatch.setattr(relu_bab, "BATCHED_MIN_QUESTIONS", 1)
    monkeypatch.setattr("exactcomp.bab.split.MAX_INPUTS", 0)  # ReLU splits on any input size
    monkeypatch.setattr("exactcomp.bab.beta_first.LP_AFTER_HOPELESS", False)
    case = random_case(100 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 3), max_neurons=12)
    truth = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert truth.wrong_verdicts(report) == []
    decided = sum(int((ls.verdict != Verdict.UNDECIDED).sum()) for ls in report.layers)
    assert decided > 0
