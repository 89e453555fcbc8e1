"""LP bounds with ideal-formulation cuts (bounds/ideal_cuts.py): sound on every tiny network
(against exact ranges), never looser than the triangle LP, and strictly tighter where the
triangle relaxation is known to be weak."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.bounds.ideal_cuts import ideal_cut_layer_result
from exactcomp.bounds.interval import interval_bounds
from exactcomp.bounds.lp import lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), side=st.sampled_from([-1, 0, 1]))
def test_bounds_contain_the_exact_range_and_beat_the_triangle_lp(seed, side):
    case = random_case(seed, depth=(2, 3), width=(2, 6), inputs=(1, 3))
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    known = interval_bounds(net, box)
    for k in range(1, len(net.layers)):
        known[k] = lp_layer_bounds(net, box, k, known)
        n = net.layers[k].out_features
        res = ideal_cut_layer_result(net, box, k, known, np.arange(n), np.full(n, side))
        lo, hi = exact[k]
        assert np.all(res.lower <= lo + 1e-12 * (1 + np.abs(lo)))
        assert np.all(res.upper >= hi - 1e-12 * (1 + np.abs(hi)))
        # never looser than the bounds it started from (the triangle LP's)
        assert np.all(res.lower >= known[k][0]) and np.all(res.upper <= known[k][1])
        if side == 1:  # only the upper side was asked for
            np.testing.assert_array_equal(res.lower, known[k][0])
        known[k] = res.bounds


def test_cuts_close_the_gap_of_the_triangle_relaxation():
    # z = relu(x1 - x2) - 0.75 relu(x1) on [0,1]^2 has max 0.25, at (1, 0). The triangle of
    # relu(x1 - x2) (pre-activation in [-1, 1]) allows h = 0.5 at x = (0, 0), so the
    # triangle LP gives 0.5; the ideal cuts h <= x1 and h <= 1 - x2 give the true maximum.
    net = Network(
        [
            Layer(np.array([[1.0, -1.0], [1.0, 0.0]]), np.array([0.0, 0.0]), True),
            Layer(np.array([[1.0, -0.75]]), np.array([0.0]), True),
        ]
    )
    box = Box.uniform(0.0, 1.0, 2)
    known = interval_bounds(net, box)
    triangle = lp_layer_bounds(net, box, 1, known)[1][0]
    cut = ideal_cut_layer_result(net, box, 1, known, [0], [1]).upper[0]
    assert abs(triangle - 0.5) < 1e-5
    assert 0.25 <= cut <= 0.25 + 1e-5


def test_a_spent_cpu_limit_starts_no_lp():
    """``cpu_limit`` (CPU seconds of this process) stops the cut LPs as ``deadline`` does:
    at 0 none starts and the neuron keeps the bounds it came with (here the interval ones);
    a generous one changes nothing (the network of the test above)."""
    net = Network(
        [
            Layer(np.array([[1.0, -1.0], [1.0, 0.0]]), np.array([0.0, 0.0]), True),
            Layer(np.array([[1.0, -0.75]]), np.array([0.0]), True),
        ]
    )
    box = Box.uniform(0.0, 1.0, 2)
    known = interval_bounds(net, box)
    spent = ideal_cut_layer_result(net, box, 1, known, [0], [1], cpu_limit=0.0)
    assert spent.upper[0] == known[1][1][0] >= 1.0 and spent.solved == 0
    ample = ideal_cut_layer_result(net, box, 1, known, [0], [1], cpu_limit=60.0).upper[0]
    assert 0.25 <= ample <= 0.25 + 1e-5
