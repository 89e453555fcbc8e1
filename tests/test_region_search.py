"""The LP local search over activation patterns (stability/region_search.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.bounds.interval import interval_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.search import gradient_points
from exactcomp.stability.region_search import region_search
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Verdict


def _value(net, k, j, s, x):
    return s * net.preactivations(np.atleast_2d(x))[k][:, j]


def test_finds_a_point_where_every_feeding_neuron_starts_inactive():
    # z = 2 relu(x1 - .5) + 2 relu(x2 - .5) - 1.1 on [0,1]^2: max 0.9 at (1, 1). From (0, 0)
    # both feeding neurons are off, the gradient is zero, and only toggles reach the maximum.
    net = Network(
        [
            Layer(np.eye(2), np.array([-0.5, -0.5]), True),
            Layer(np.array([[2.0, 2.0]]), np.array([-1.1]), True),
        ]
    )
    box = Box.uniform(0.0, 1.0, 2)
    start = np.zeros(2)
    stuck = gradient_points(net, box, 1, np.array([0]), np.array([1]), start[None, :], 20)
    assert _value(net, 1, 0, 1, stuck).max() < 0  # why the search exists
    found = region_search(net, box, 1, interval_bounds(net, box), None, 0, 1, start, 16)
    assert len(found)
    assert _value(net, 1, 0, 1, found[-1])[0] > 0.8
    np.testing.assert_allclose(found[-1], [1.0, 1.0], atol=1e-9)


def test_respects_proven_verdicts_of_the_feeding_layer():
    # with both feeding neurons *claimed* inactive there is nothing to toggle: no move
    net = Network(
        [
            Layer(np.eye(2), np.array([-0.5, -0.5]), True),
            Layer(np.array([[2.0, 2.0]]), np.array([-1.1]), True),
        ]
    )
    box = Box.uniform(0.0, 1.0, 2)
    verdicts = [np.full(2, Verdict.INACTIVE, dtype=np.int8)]
    found = region_search(net, box, 1, interval_bounds(net, box), verdicts, 0, 1, np.zeros(2), 16)
    assert len(found) == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_points_stay_in_the_box_and_only_improve(seed, data):
    case = random_case(seed, depth=(2, 3), width=(2, 8), inputs=(1, 4))
    net, box = case.network, case.box
    relu = [k for k in net.relu_layers if k >= 1]
    if not relu:
        return
    k = data.draw(st.sampled_from(relu))
    j = data.draw(st.integers(0, net.layers[k].out_features - 1))
    s = data.draw(st.sampled_from([1, -1]))
    rng = np.random.default_rng(seed)
    start = box.sample(1, rng)[0]
    bounds = interval_bounds(net, box)
    found = region_search(net, box, k, bounds, None, j, s, start, 12)
    if not len(found):
        return
    assert box.contains(found).all()
    values = _value(net, k, j, s, found)
    v0 = _value(net, k, j, s, start)[0]
    assert values[0] > v0
    assert np.all(np.diff(values) > 0)
