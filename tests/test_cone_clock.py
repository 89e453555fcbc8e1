"""The cone-by-cone analysis keeps the caller's deadline: no cone is started after it.

audit24 (benchmarks/RESULTS.md) found ``stability --budget 60`` on metaroom ``4cnn`` taking
79-90 s: each of ~1,630 cones reached past the deadline still cost its set-up and interval
pass. Here each cone's analysis lets one second pass on a fake clock
(:class:`exactcomp.testing.clock.FakeClock`), so "the deadline passes after N cones" is exact
on any machine; nothing is timed. Ground truth: the brute-force oracle
(:func:`exactcomp.testing.oracle.exact_analysis`) on each decided neuron's own prefix cone
(the same function of the same inputs, see :mod:`exactcomp.stability.cones`).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_conv_sparse import BOX, _model, _sparse_load

from exactcomp.stability import stable_neurons
from exactcomp.stability.cones import _pattern, cone_network, prefix_cone, stable_by_cones
from exactcomp.testing.clock import FakeClock
from exactcomp.testing.oracle import exact_analysis
from exactcomp.verdicts import Verdict

START = 1000.0


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    return FakeClock(START).install(monkeypatch)


def _slow(clock: FakeClock, calls: list[float], deadline: float):
    """The engine's dense analysis, each cone taking one (fake) second."""

    def analyse(sub, boxes, data):
        calls.append(clock.perf_counter())
        rep = stable_neurons(sub, boxes[0], jobs=1, data=data, deadline=deadline)
        clock.advance(1.0)
        return rep

    return analyse


@pytest.mark.parametrize("n_cones", [0, 1, 3])
def test_cones_past_the_deadline_stay_undecided_and_verdicts_are_right(
    tmp_path, monkeypatch, clock, n_cones
):
    path = tmp_path / "m.onnx"
    onnx.save(_model(2), path)
    net = _sparse_load(path, monkeypatch)
    deadline = START + n_cones - 0.5
    calls: list[float] = []
    rep = stable_by_cones(net, [BOX], _slow(clock, calls, deadline), deadline=deadline, target=4)
    assert len(calls) == n_cones  # every cone started before the deadline, none after
    assert all(t < deadline for t in calls)
    assert rep.stats["out_of_time"] == 1 and rep.stats["neurons_past_deadline"] > 0
    assert rep.count(Verdict.UNDECIDED) >= 1
    assert rep.count(Verdict.INACTIVE) >= 1  # channel 1 (bias -20), by intervals if late
    patterns = [_pattern(la) for la in net.layers]
    for ls in rep.layers:
        for j in np.flatnonzero(ls.verdict != Verdict.UNDECIDED):
            sets = prefix_cone(patterns, ls.layer, np.array([j]))
            sub = cone_network(net, sets)
            box = type(BOX)(BOX.lower[sets[0]], BOX.upper[sets[0]])
            truth = exact_analysis(sub, box).stability[-1][0]
            if ls.verdict[j] == Verdict.UNSTABLE:
                assert truth == Verdict.UNSTABLE
            else:
                assert truth == ls.verdict[j], (ls.layer, j)


def test_without_a_deadline_every_cone_is_analysed(tmp_path, monkeypatch, clock):
    path = tmp_path / "m.onnx"
    onnx.save(_model(2), path)
    net = _sparse_load(path, monkeypatch)
    calls: list[float] = []
    rep = stable_by_cones(net, [BOX], _slow(clock, calls, None), target=4)
    assert rep.stats["neurons_past_deadline"] == 0 and "out_of_time" not in rep.stats
    assert len(calls) == rep.stats["cones"] > 3
