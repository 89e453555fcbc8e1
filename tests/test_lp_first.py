"""The LP phase may solve one side of a neuron first and skip the other once a sign is proven
(``first`` of :func:`exactcomp.bounds.lp.lp_layer_result`, chosen by ``LayerRun._first``;
only a proof of inactivity skips the other side):
the bounds stay within the oracle's exact ranges, every claim the two-sided LP proves is
still proven, fewer LPs are solved, and the engine's verdicts are the oracle's.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bab import split
from exactcomp.bounds.linear import linear_bounds
from exactcomp.bounds.lp import lp_layer_result
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case

SEEDS = list(range(10))


def _deep_case(seed: int):
    return random_case(seed, depth=(3, 4), width=(4, 10), inputs=(2, 4), nasty=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_first_side_keeps_every_claim_and_solves_fewer(seed):
    case = _deep_case(seed)
    net, box = case.network, case.box
    exact = exact_analysis(net, box)
    lin = linear_bounds(net, box)
    for k in range(1, len(net.layers)):
        lo, hi = lin[k]
        both = lp_layer_result(net, box, k, lin[: k + 1])
        lean = np.where(hi < -lo, 1, -1)
        one = lp_layer_result(net, box, k, lin[: k + 1], first=lean)
        elo, ehi = exact.ranges[k]
        assert (one.lower <= elo + 1e-9).all() and (one.upper >= ehi - 1e-9).all()
        # a claim of the two-sided LP is a claim here: the first side is solved the same way
        assert ((both.upper <= 0.0) <= ((one.upper <= 0.0) | (one.lower >= 0.0))).all()
        assert ((both.lower >= 0.0) <= ((one.upper <= 0.0) | (one.lower >= 0.0))).all()
        inactive = both.upper <= 0.0  # proven by the upper bound: its lower one is skipped
        lost = inactive & ~(one.upper <= 0.0)
        assert one.solved + one.failed <= both.solved + both.failed - int((inactive & ~lost).sum())


def test_first_side_skips_the_second_lp_of_a_proven_neuron():
    """Somewhere in these cases a neuron is proven stable by its first LP alone."""
    saved = 0
    for seed in SEEDS:
        case = _deep_case(seed)
        net, box = case.network, case.box
        lin = linear_bounds(net, box)
        for k in range(1, len(net.layers)):
            lo, hi = lin[k]
            both = lp_layer_result(net, box, k, lin[: k + 1])
            one = lp_layer_result(net, box, k, lin[: k + 1], first=np.where(hi < -lo, 1, -1))
            saved += both.solved - one.solved
    assert saved > 0


def test_first_needs_one_entry_per_neuron():
    case = _deep_case(0)
    lin = linear_bounds(case.network, case.box)
    with pytest.raises(ValueError, match="first has"):
        lp_layer_result(case.network, case.box, 1, lin[:2], neurons=[0], first=[1, 1])


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_engine_verdicts_are_the_oracles(monkeypatch, seed):
    monkeypatch.setattr(split, "MAX_INPUTS", 0)  # ReLU splits, as on MNIST
    case = _deep_case(seed)
    exact = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert exact.wrong_verdicts(report) == []
    for ls in report.layers:
        lo, hi = exact.ranges[ls.layer]
        assert (ls.lower <= lo + 1e-9).all() and (ls.upper >= hi - 1e-9).all()
