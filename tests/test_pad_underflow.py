"""The absolute rounding pad covers underflow only (``Tolerances.bound_abs``), so rows of tiny
weights are decided by interval and linear bounds:

    x in [0,1]^2 --[W1 = I, b1 = 0, ReLU]--> h >= 0 --[row -1e-20 * (1, 1), bias -1e-26]--> z

``z = -1e-20 (h1 + h2) - 1e-26 <= -1e-26 < 0``: inactive everywhere in exact arithmetic. A zero
row with bias 0 (``z = 0``) is left to the ``constant`` proof: no pad may prove it.
"""

from __future__ import annotations

import glob
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exactcomp
from exactcomp.bounds.interval import interval_bounds
from exactcomp.bounds.linear import linear_bounds
from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError
from exactcomp.network import Network
from exactcomp.stability.engine import stable_neurons
from exactcomp.tolerances import DEFAULT, amplification, underflow_tolerances
from exactcomp.verdicts import Verdict

MODELS = Path(__file__).resolve().parent.parent / "models"


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


# --- the amplification the absolute pad assumes is checked, per network -----------------------
#
#   x in [1,2] --1e80--> --1e80--> --1e80--> (all ReLUs active: h = 1e240 x)
#              --1.7e-160--> --7e-161, bias b--> z --1--> out
#
# Back-substitution multiplies the last two weights first: 7e-161 * 1.7e-160 = 1.19e-320 is
# subnormal and rounds up by 1.7e-4 of itself (an absolute 2e-324, underflow), and that
# coefficient is then multiplied by 1e240 * x: an error of 2e-84 in the bound, against a pad of
# 1e-200 + 1e-9 * 1e-80. With ``b`` halfway between the exact and the rounded product, the
# exact ``min z`` is -1.02e-84 while the 1e-200 pad alone bounds it below by +1.02e-84: a false
# stably active neuron. ``underflow_tolerances`` bounds the amplification (2^799) and raises
# the pad to 2^-1035 * 2^799 = 1.1e-71.

W_MID, W_TOP, BIG = 1.7e-160, 7e-161, 1e80


def _amplified_net() -> tuple[Network, Fraction]:
    exact = Fraction(W_TOP) * Fraction(W_MID) * Fraction(BIG) ** 3  # z - b at x = 1
    rounded = Fraction(float(np.float64(W_TOP) * np.float64(W_MID)) * BIG * BIG * BIG)
    bias = -float((exact + rounded) / 2)
    ws = [np.array([[BIG]])] * 3 + [np.array([[W_MID]]), np.array([[W_TOP]]), np.ones((1, 1))]
    bs = [np.zeros(1)] * 4 + [np.array([bias]), np.zeros(1)]
    return Network.from_arrays(ws, bs, dtype="float64"), exact + Fraction(bias)


def _exact_preactivations(net: Network, x: float) -> list[Fraction]:
    h, out = Fraction(x), []
    for layer in net.layers:
        z = Fraction(float(layer.weight[0, 0])) * h + Fraction(float(layer.bias[0]))
        out.append(z)
        h = max(z, Fraction(0)) if layer.relu else z
    return out


def test_amplified_underflow_is_padded() -> None:
    net, exact_min = _amplified_net()
    box = Box(np.array([1.0]), np.array([2.0]))
    assert _exact_preactivations(net, 1.0)[4] == exact_min < 0
    assert _exact_preactivations(net, 2.0)[4] > 0  # z is unstable: neither removable nor foldable
    # the hazard: the 1e-200 pad alone proves z >= 0
    assert linear_bounds(net, box, tol=DEFAULT)[4][0][0] > 0
    tol = underflow_tolerances(DEFAULT, [net], [box])
    assert 1e-72 < tol.bound_abs < 1e-70
    for x in (1.0, 2.0):
        exact = _exact_preactivations(net, x)
        for bounds in (interval_bounds(net, box, tol=tol), linear_bounds(net, box, tol=tol)):
            for k, z in enumerate(exact):
                assert Fraction(float(bounds[k][0][0])) <= z <= Fraction(float(bounds[k][1][0]))
    report = stable_neurons(net, box, jobs=1)
    assert report.layers[4].verdict[0] in (Verdict.UNDECIDED, Verdict.UNSTABLE)


def test_overflowing_amplification_is_refused() -> None:
    """``x -> 1e300 x -> x -> 1e300 x -> x -> 1e300 x -> x -> -x - 1``: exact and finite in
    float64, but the weights' norms multiply to 1e900 and the pad ``2^-1035 * 1e900`` would be
    2.7e588: refused by name, by the analysis and by ``verify`` alike."""
    big, small = np.array([[1e300]]), np.array([[1e-300]])
    ws = [big, small] * 3 + [np.array([[-1.0]]), np.ones((1, 1))]
    bs = [np.zeros(1)] * 6 + [np.array([-1.0]), np.zeros(1)]
    net = Network.from_arrays(ws, bs, dtype="float64")
    box = Box(np.array([0.0]), np.array([1.0]))
    with pytest.raises(InvalidNetworkError, match="amplify float64 underflow by 2\\^2992"):
        stable_neurons(net, box, jobs=1)
    with pytest.raises(InvalidNetworkError, match="amplify float64 underflow"):
        exactcomp.verify_equivalence(net, net, box)


@pytest.mark.parametrize("path", sorted(glob.glob(str(MODELS / "*.pt"))))
def test_shipped_models_keep_the_default_pad(path: str) -> None:
    """The same verdicts as before on ordinary networks: the tolerances are ``DEFAULT`` itself."""
    net = exactcomp.load(path)
    box = Box(-np.ones(net.input_size), np.ones(net.input_size))
    assert amplification([net], [box]) < 20.0
    assert underflow_tolerances(DEFAULT, [net], [box]) is DEFAULT


LOG_MAGS = st.integers(-40, 40)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(LOG_MAGS, LOG_MAGS), min_size=1, max_size=5), st.integers(0, 2**31))
def test_amplification_bounds_every_magnitude(scales, seed) -> None:
    """``2^amplification`` is at least every interval bound's magnitude (the variables) and
    every entry of the products of weights (the coefficients)."""
    rng = np.random.default_rng(seed)
    ws, bs, width = [], [], 3
    for wexp, bexp in scales:
        ws.append(rng.standard_normal((3, width)) * 10.0**wexp)
        bs.append(rng.standard_normal(3) * 10.0**bexp)
    net = Network.from_arrays(ws, bs, dtype="float64")
    box = Box(-np.ones(width), np.ones(width) * 2.0)
    log2 = amplification([net], [box])
    for lo, hi in interval_bounds(net, box, tol=underflow_tolerances(DEFAULT, [net], [box])):
        assert np.log2(np.max(np.maximum(np.abs(lo), np.abs(hi)))) <= log2
    prod = np.eye(width)
    for w in ws:
        prod = np.abs(w) @ prod
        assert np.log2(np.max(prod)) <= log2
