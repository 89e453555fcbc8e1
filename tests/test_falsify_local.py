"""The local search of the lower bound ``sampled_max_difference`` (issue 15, truth15).

The named case, a needle at a corner behind a downhill gradient::

    x_1 ... x_d in [0, 1]          d = 24
      |   \\
      |    relu(x_i - 1/2)         2d hidden ReLUs: relu(x_i) = x_i, relu(x_i - 1/2)
      |   /
    f(x) = sum_i h(x_i),  h(t) = -t + 4 relu(t - 1/2)      g = 0 (every weight zeroed)

``h(0) = 0``, ``h(1/2) = -1/2``, ``h(1) = 1``: ``f - g`` is separable, so its maximum over the
box is the sum of the per-coordinate maxima of ``h`` (each found by brute force on a dense
grid), ``d`` at the all-ones corner. From any point with ``x_i < 1/2`` the gradient pushes
``x_i`` down to 0, so sign-gradient ascent stays at the sampled corners (at most ~21 ones of
24 among 4,096 random corners); one coordinate move to 1 at a time climbs to the top.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing import max_output_difference
from exactcomp.verify import falsify, local_search
from exactcomp.verify.charge import sampled_max_difference

D = 24
BOX = Box(np.zeros(D), np.ones(D))


def _needle() -> tuple[Network, Network]:
    w0 = np.vstack([np.eye(D), np.eye(D)])
    b0 = np.concatenate([np.zeros(D), np.full(D, -0.5)])
    w1 = np.concatenate([-np.ones(D), 4.0 * np.ones(D)])[None, :]
    f = Network.from_arrays([w0, w1], [b0, np.zeros(1)])
    g = Network.from_arrays([np.zeros_like(w0), np.zeros_like(w1)], [np.zeros(2 * D), np.zeros(1)])
    return f, g


def _brute_force_max() -> float:
    t = np.linspace(0.0, 1.0, 10_001)
    h = -t + 4.0 * np.maximum(t - 0.5, 0.0)
    return D * float(h.max())


def test_the_needle_is_reached_where_probes_and_ascent_stop_short():
    f, g = _needle()
    exact = _brute_force_max()
    assert exact == pytest.approx(24.0)
    probes = falsify.candidate_points(BOX, 4096, np.random.default_rng(0))
    seen = float(np.abs(f.forward(probes) - g.forward(probes)).max())
    best = probes[np.argmax(f.forward(probes)[:, 0])][None, :]
    ascended = falsify.ascend(f, g, BOX, best, falsify.linf_coefficients(1, 0, 1.0))
    assert max(seen, float(f.forward(ascended)[0, 0])) < exact - 1.0  # probes and ascent: short
    got = sampled_max_difference(f, g, [BOX])
    assert got == pytest.approx(exact, abs=1e-9)  # reached, and never above the exact max


def test_local_search_climbs_from_the_origin_and_stays_in_the_box():
    f, g = _needle()
    rng = np.random.default_rng(3)
    starts = np.vstack([np.zeros(D), rng.random(D) * 0.4])
    x, v = local_search.local_search(f, g, BOX, starts, np.zeros(2, int), np.ones(2), rng)
    assert v == pytest.approx([24.0, 24.0])
    assert BOX.contains(x).all()
    assert np.allclose(v, local_search.side_values(f, g, x, [0, 0], [1.0, 1.0]))


def test_local_search_spends_no_rows_past_its_budget():
    f, g = _needle()
    start = np.zeros((1, D))
    x, v = local_search.local_search(
        f, g, BOX, start, [0], [1.0], np.random.default_rng(0), max_rows=0
    )
    assert np.array_equal(x, start) and v[0] == 0.0
    assert local_search.search_rows(f, g, macs=2 * D * D * 2 + 2 * D * 2) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_the_lower_bound_never_passes_the_exact_max_on_tiny_pairs(seed):
    """A 3-5r-4r-2 network and its copy with every weight perturbed by up to 0.3: the oracle's
    exact ``max |f - g|`` (joint regions, one LP each) bounds the search from above."""
    rng = np.random.default_rng(seed)
    widths = (3, 5, 4, 2)
    ws = [rng.normal(size=(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    bs = [rng.normal(size=b) * 0.3 for b in widths[1:]]
    f = Network.from_arrays(ws, bs)
    g = Network.from_arrays([w + rng.uniform(-0.3, 0.3, w.shape) for w in ws], bs)
    box = Box(-np.ones(3), np.ones(3))
    exact = max_output_difference(f, g, box).value
    got = sampled_max_difference(f, g, [box])
    assert got <= exact + 1e-9
    assert got >= 0.9 * exact  # and, on these, close to it


def test_a_float_difference_above_the_proven_bound_is_replaced_by_the_exact_one():
    """``f(x) = relu(x + 1) - 1`` and ``g(x) = x`` are equal on [0, 1] exactly, but float64
    evaluates ``(x + 1) - 1`` with rounding: the sampled value was then above a proven 0
    (user15: test_small.onnx, "proven 0, sampled 1.4e-14"). Given the proof, the sample's
    value is the exact difference at its input."""
    f = Network(
        (Layer(np.ones((1, 1)), np.ones(1), True), Layer(np.ones((1, 1)), -np.ones(1), False))
    )
    g = Network((Layer(np.ones((1, 1)), np.zeros(1), False),))
    box = Box(np.zeros(1), np.ones(1))
    assert sampled_max_difference(f, g, [box]) > 0.0  # float64 rounding alone
    assert sampled_max_difference(f, g, [box], proven=0.0) == 0.0
