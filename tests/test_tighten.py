"""Below the last ReLU layer, with ReLU splits, the engine tightens the bounds of each layer's
unstable neurons with ideal-cut LPs on both sides (``LayerRun._tighten``): the bounds stay
sound against the brute-force oracle (:mod:`exactcomp.testing.oracle`), the step narrows
some unstable neuron's range, and every verdict is still the oracle's. (A later layer's bounds
can come out looser from tighter bounds below it: the slopes of the linear bounds are chosen
from those bounds, so only soundness is asserted there.)
"""

from __future__ import annotations

import pytest

from exactcomp.bab import split
from exactcomp.stability import layer as stability_layer
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Verdict

SEEDS = list(range(8))


def _check(report, exact) -> None:
    assert exact.wrong_verdicts(report) == []
    for ls in report.layers:
        lo, hi = exact.ranges[ls.layer]
        assert (ls.lower <= lo + 1e-9).all() and (ls.upper >= hi - 1e-9).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_tightened_bounds_are_sound(monkeypatch, seed):
    monkeypatch.setattr(split, "MAX_INPUTS", 0)  # ReLU splits, as on MNIST
    case = random_case(seed, max_neurons=12, nasty=False)
    exact = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    _check(report, exact)


def test_tightening_narrows_some_unstable_neuron(monkeypatch):
    """On these cases the step runs and narrows at least one unstable neuron's range."""
    monkeypatch.setattr(split, "MAX_INPUTS", 0)
    narrowed = ran = 0
    for seed in SEEDS:
        case = random_case(seed, max_neurons=12, nasty=False)
        report = stable_neurons(case.network, case.box, jobs=1)
        ran += "seconds_tighten" in report.stats
        with monkeypatch.context() as m:
            m.setattr(stability_layer.LayerRun, "_tighten", lambda self: None)
            plain = stable_neurons(case.network, case.box, jobs=1)
        for ls, ps in zip(report.layers, plain.layers, strict=True):
            unstable = ls.verdict == Verdict.UNSTABLE
            width = (ls.upper - ls.lower)[unstable]
            narrowed += int((width < (ps.upper - ps.lower)[unstable] - 1e-9).sum())
    assert ran > 0 and narrowed > 0, (ran, narrowed)


def test_tightening_gets_the_time_of_one_milp_question_at_most(monkeypatch):
    """The step is capped like one MILP question: ``time_limit`` CPU seconds (checked between
    its cut LPs, so that later layers' bounds do not depend on the machine's load), and a
    wall-clock deadline at most ``WALL_PER_CPU`` times as far, with or without the caller's
    deadline (uncapped, it ran for over 15 minutes on cifar_base_kw)."""
    import time

    from exactcomp.milp.layer import WALL_PER_CPU

    monkeypatch.setattr(split, "MAX_INPUTS", 0)
    asked = []
    real = stability_layer.ideal_cut_phase

    def spy(q, probe=True):
        if not probe:  # the tighten step asks every question
            asked.append((q.deadline - time.perf_counter(), q.cpu_limit))
        return real(q, probe)

    monkeypatch.setattr(stability_layer, "ideal_cut_phase", spy)
    for seed in SEEDS:
        case = random_case(seed, max_neurons=12, nasty=False)
        stable_neurons(case.network, case.box, jobs=1, time_limit=0.5)
    assert asked and all(left <= WALL_PER_CPU * 0.5 and cpu == 0.5 for left, cpu in asked)
