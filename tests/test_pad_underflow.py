"""The absolute rounding pad covers underflow only (``Tolerances.bound_abs``), so rows of tiny
weights are decided by interval and linear bounds:

    x in [0,1]^2 --[W1 = I, b1 = 0, ReLU]--> h >= 0 --[row -1e-20 * (1, 1), bias -1e-26]--> z

``z = -1e-20 (h1 + h2) - 1e-26 <= -1e-26 < 0``: inactive everywhere in exact arithmetic. A zero
row with bias 0 (``z = 0``) is left to the ``constant`` proof: no pad may prove it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.bounds.interval import interval_bounds
from exactcomp.bounds.linear import linear_bounds
from exactcomp.domain import Box
from exactcomp.network import Network


def _tiny_net(row: list[float], bias: float) -> Network:
    w1, b1 = np.eye(2), np.zeros(2)
    w2, b2 = np.array([row]), np.array([bias])
    return Network.from_arrays([w1, w2, np.ones((1, 1))], [b1, b2, np.zeros(1)], dtype="float64")


BOX = Box(np.zeros(2), np.ones(2))


def test_tiny_negative_row_is_proven_inactive() -> None:
    net = _tiny_net([-1e-20, -1e-20], -1e-26)
    for bounds in (interval_bounds(net, BOX), linear_bounds(net, BOX)):
        assert bounds[1][1][0] <= 0.0


def test_subnormal_row_is_proven_inactive() -> None:
    net = _tiny_net([-1e-310, -1e-310], -1e-190)
    assert interval_bounds(net, BOX)[1][1][0] <= 0.0


def test_zero_row_is_not_proven_by_the_pad() -> None:
    net = _tiny_net([0.0, 0.0], 0.0)
    for bounds in (interval_bounds(net, BOX), linear_bounds(net, BOX)):
        lo, hi = bounds[1]
        assert hi[0] > 0.0 and lo[0] < 0.0


def _exact_extremes(row, bias, lo, hi):
    terms = [
        (Fraction(w) * Fraction(a), Fraction(w) * Fraction(b))
        for w, a, b in zip(row, lo, hi, strict=True)
    ]
    low = sum(min(t) for t in terms) + Fraction(bias)
    high = sum(max(t) for t in terms) + Fraction(bias)
    return low, high


MAGS = st.sampled_from([0.0, 1e-30, 3e-25, 1e-20, 7e-9, 1e-3, 1.0, 1e3])
SIGN = st.sampled_from([-1.0, 1.0])
VAL = st.builds(lambda m, s: m * s, MAGS, SIGN)


@settings(max_examples=200, deadline=None)
@given(st.lists(VAL, min_size=3, max_size=3), VAL, st.lists(VAL, min_size=3, max_size=3))
def test_mixed_scale_rows_enclose_exact_extremes(row, bias, corner) -> None:
    lo = np.minimum(np.array(corner), 0.0) - 1e-30
    hi = np.maximum(np.array(corner), 0.0) + 1e-30
    net = Network.from_arrays([np.array([row])], [np.array([bias])], dtype="float64")
    box = Box(lo, hi)
    want_lo, want_hi = _exact_extremes(row, bias, lo, hi)
    for bounds in (interval_bounds(net, box), linear_bounds(net, box)):
        got_lo, got_hi = bounds[0]
        assert Fraction(float(got_lo[0])) <= want_lo
        assert Fraction(float(got_hi[0])) >= want_hi
