"""Near ties: a neuron whose maximum lies within the default solver margin of 0.

z = relu(x1 + x2 - 1) + relu(x1 - x2) - 1 - d on [0,1]^2 has max z = -d, attained on the
whole edge x1 = 1. The triangle LP allows 0.5 - d. With the ideal cuts switched off, only a
MILP can decide it, and for d = 5e-6 the default tolerance's margin (about 2e-5 here) is
too wide: the solver returns points within it, none a witness. Asked again at the precise
tolerance, the neuron is proven inactive; with d = -5e-6 (max z = +5e-6) it never is.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bab import relu, split
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import stable_neurons
from exactcomp.stability.layer import LayerRun
from exactcomp.stability.phases import from_bounds
from exactcomp.verdicts import Proof, Verdict
from exactcomp.verify import recheck, recheck_certificates

BOX = Box.uniform(0.0, 1.0, 2)


def _net(d: float) -> Network:
    return Network(
        [
            Layer(np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([-1.0, 0.0]), True),
            Layer(np.array([[1.0, 1.0]]), np.array([-1.0 - d]), True),
        ]
    )


@pytest.fixture
def no_cuts(monkeypatch):
    """Without the ideal cuts and the input splits, which settle this small case on their own."""
    monkeypatch.setattr(LayerRun, "_ideal_cuts", lambda self: None)
    monkeypatch.setattr(split, "MAX_INPUTS", 0)
    monkeypatch.setattr(relu, "RELU_SPLITS", False)  # nor ReLU splits
    # an ideal-cut phase that tightens nothing
    monkeypatch.setattr(recheck, "ideal_cut_phase", lambda q: from_bounds(q.known[q.k]))


def test_a_near_tie_is_proven_at_the_precise_tolerance_and_rechecked(no_cuts) -> None:
    net = _net(5e-6)
    rep = stable_neurons(net, BOX, jobs=1)
    assert rep.layers[1].verdict[0] == Verdict.INACTIVE
    assert rep.layers[1].proof[0] == Proof.MILP
    assert rep.stats["precise_milps"] == 1
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok, res.failures
    assert res.checked["milp"] == 1


def test_a_positive_near_tie_is_never_called_inactive(no_cuts) -> None:
    rep = stable_neurons(_net(-5e-6), BOX, jobs=1)
    assert rep.layers[1].verdict[0] in (Verdict.UNSTABLE, Verdict.UNDECIDED)
