"""Interval, linear (CROWN-style) and LP bounds: soundness, ordering and progressive tightening.

Soundness is checked against the float64 forward pass at sampled inputs and at box vertices
(every vertex for up to 6 inputs), on hypothesis-built networks with nasty weights: exact
zeros, magnitudes 1e6 and 1e-8 side by side, and boxes flat in some coordinates.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exactcomp.bounds import interval_bounds
from exactcomp.bounds.interval import input_magnitudes
from exactcomp.bounds.linear import linear_bounds, linear_layer_bounds, relu_relaxation
from exactcomp.bounds.lp import build_prefix_lp, lp_layer_bounds, lp_layer_result
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.testing import exact_preactivation_ranges

SETTINGS = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def networks_and_boxes(draw: st.DrawFn, max_depth: int = 4, max_width: int = 12):
    """A random MLP (depth 1-4, width 1-12, 1-6 inputs) with mixed-scale weights, and a box."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_in = draw(st.integers(1, 6))
    depth = draw(st.integers(1, max_depth))
    widths = [n_in] + [draw(st.integers(1, max_width)) for _ in range(depth)]
    style = draw(st.sampled_from(["plain", "sparse", "mixed", "tiny", "huge"]))
    ws, bs = [], []
    for i in range(depth):
        w = rng.normal(size=(widths[i + 1], widths[i]))
        b = rng.normal(size=widths[i + 1])
        if style in ("sparse", "mixed"):
            w[rng.random(w.shape) < 0.5] = 0.0
            b[rng.random(b.shape) < 0.3] = 0.0
        if style == "mixed":
            mags = 10.0 ** rng.choice([-8.0, 0.0, 6.0], size=w.shape)
            w = w * mags
        elif style == "tiny":
            w, b = w * 1e-8, b * 1e-8
        elif style == "huge":
            w, b = w * 1e6, b * 1e3
        ws.append(w)
        bs.append(b)
    relu_last = draw(st.booleans())
    net = Network.from_arrays(ws, bs, relu_last=relu_last, dtype="float64")
    lo = rng.uniform(-2.0, 1.0, n_in)
    hi = lo + rng.uniform(0.0, 2.0, n_in)
    flat = rng.random(n_in) < 0.3
    hi[flat] = lo[flat]
    return net, Box(lo, hi)


def probe(box: Box, rng: np.random.Generator, n: int = 300) -> np.ndarray:
    """Random points plus every vertex of the box (at most 2^6 of them)."""
    verts = np.array(list(itertools.product(*zip(box.lower, box.upper, strict=True))))
    return np.vstack([box.sample(n, rng), verts, box.center[None, :]])


def assert_encloses(bounds, zs) -> None:
    for k, ((lo, hi), z) in enumerate(zip(bounds, zs, strict=True)):
        assert np.all(lo <= z.min(axis=0)), f"layer {k}: lower bound above a sampled value"
        assert np.all(hi >= z.max(axis=0)), f"layer {k}: upper bound below a sampled value"


def assert_within(inner, outer, what: str) -> None:
    for k, (a, b) in enumerate(zip(inner, outer, strict=True)):
        assert np.all(a[0] >= b[0]) and np.all(a[1] <= b[1]), f"layer {k}: {what}"


# ----------------------------------------------------------------------------- soundness
@SETTINGS
@given(networks_and_boxes())
def test_interval_and_linear_enclose_samples_and_vertices(case) -> None:
    net, box = case
    zs = net.preactivations(probe(box, np.random.default_rng(0)))
    ib = interval_bounds(net, box)
    lb = linear_bounds(net, box)
    assert_encloses(ib, zs)
    assert_encloses(lb, zs)
    assert_within(lb, ib, "linear looser than interval")


@SETTINGS
@given(networks_and_boxes())
def test_input_magnitudes_enclose_every_layer_input(case) -> None:
    """``input_magnitudes[k]`` bounds ``|h_{k-1}|`` (the box for ``k = 0``) at every probe,
    from interval and from linear bounds; one entry per layer."""
    net, box = case
    xs = probe(box, np.random.default_rng(2))
    zs = net.preactivations(xs)
    hs = [xs] + [np.maximum(z, 0.0) if la.relu else z for la, z in zip(net.layers, zs, strict=True)]
    for pre in (interval_bounds(net, box), linear_bounds(net, box)):
        mags = input_magnitudes(net, box, pre)
        assert len(mags) == len(net.layers)
        for k, mag in enumerate(mags):
            assert np.all(np.abs(hs[k]) <= mag), f"layer {k}: an input above its magnitude"


@SETTINGS
@given(networks_and_boxes(max_depth=3, max_width=8))
def test_lp_encloses_samples_and_is_never_looser_than_given(case) -> None:
    net, box = case
    zs = net.preactivations(probe(box, np.random.default_rng(1)))
    lb = linear_bounds(net, box)
    for k in range(len(net.layers)):
        out = lp_layer_bounds(net, box, k, lb)
        assert_encloses([out], [zs[k]])
        assert_within([out], [lb[k]], "LP looser than the bounds it was given")


@SETTINGS
@given(networks_and_boxes(max_depth=3, max_width=8), st.integers(0, 2**16))
def test_lp_subset_of_neurons_keeps_the_others(case, pick) -> None:
    net, box = case
    k = len(net.layers) - 1
    lb = linear_bounds(net, box)
    n = net.layers[k].out_features
    neurons = np.random.default_rng(pick).permutation(n)[: max(1, n // 2)]
    out = lp_layer_bounds(net, box, k, lb, neurons=neurons)
    others = np.setdiff1d(np.arange(n), neurons)
    np.testing.assert_array_equal(out[0][others], lb[k][0][others])
    np.testing.assert_array_equal(out[1][others], lb[k][1][others])


@settings(max_examples=15, derandomize=True, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(2, 3))
def test_linear_and_lp_enclose_exact_ranges(seed, n_in, depth) -> None:
    """Against the region-enumeration oracle (exact extremes, achieved at inputs of the box) on
    networks of at most 9 neurons, and with the LP at least as tight as linear bounds."""
    rng = np.random.default_rng(seed)
    widths = [n_in] + [int(rng.integers(1, 4)) for _ in range(depth)]
    ws = [rng.normal(size=(widths[i + 1], widths[i])) for i in range(depth)]
    bs = [rng.normal(size=widths[i + 1]) for i in range(depth)]
    net = Network.from_arrays(ws, bs, dtype="float64")
    box = Box.uniform(-1.0, 1.0, n_in)
    exact = exact_preactivation_ranges(net, box)
    lb = linear_bounds(net, box)
    for k in range(depth):
        lp = lp_layer_bounds(net, box, k, lb)
        for b in (lb[k], lp):
            assert np.all(b[0] <= exact[k][0]) and np.all(b[1] >= exact[k][1])


def test_lp_sides_tighten_only_the_side_asked() -> None:
    rng = np.random.default_rng(3)
    net = Network.from_arrays(
        [rng.normal(size=(6, 3)), rng.normal(size=(4, 6))], [rng.normal(size=6), rng.normal(size=4)]
    )
    box = Box.uniform(-1.0, 1.0, 3)
    known = interval_bounds(net, box)
    both = lp_layer_bounds(net, box, 1, known)
    up = lp_layer_bounds(net, box, 1, known, neurons=[0, 1, 2], sides=[1, -1, 0])
    same = pytest.approx  # the LP is warm-started differently: equal up to solver noise
    assert up[1][0] == same(both[1][0], rel=1e-8) and up[0][0] == known[1][0][0]
    assert up[0][1] == same(both[0][1], rel=1e-8) and up[1][1] == known[1][1][1]
    assert up[0][2] == same(both[0][2], rel=1e-8) and up[1][2] == same(both[1][2], rel=1e-8)
    assert np.any(both[1] < known[1][1]) or np.any(both[0] > known[1][0])  # LP did something
    empty = lp_layer_bounds(net, box, 1, known, neurons=[])
    np.testing.assert_array_equal(empty[0], known[1][0])
    with pytest.raises(ValueError, match="sides"):
        lp_layer_bounds(net, box, 1, known, neurons=[0], sides=[1, 1])


def test_lp_result_points_are_inputs_in_the_box_near_the_extreme() -> None:
    r"""The LP optimum's x is a concrete input; on a net whose hidden layer is stably active
    the LP is exact, so its points attain the extremes::

        x in [0, 1]^2 -> a = relu(x0 + 1), b = relu(x1 + 1) -> y = a - 2 b
        max y = 2 - 2 = 0 at (1, 0);  min y = 1 - 4 = -3 at (0, 1)
    """
    net = Network.from_arrays(
        [np.eye(2), np.array([[1.0, -2.0]])], [np.ones(2), np.zeros(1)], dtype="float64"
    )
    box = Box.uniform(0.0, 1.0, 2)
    res = lp_layer_result(net, box, 1, interval_bounds(net, box))
    assert res.solved == 2 and res.failed == 0 and res.points.shape == (2, 2)
    assert box.contains(res.points).all()
    z = net.preactivations(res.points)[1][:, 0]
    assert z.min() == pytest.approx(-3.0) and z.max() == pytest.approx(0.0)
    assert res.lower[0] == pytest.approx(-3.0, abs=1e-5) and res.upper[0] >= 0.0


# ------------------------------------------------------------------ progressive tightening
@SETTINGS
@given(networks_and_boxes(max_depth=4, max_width=10))
def test_tighter_known_bounds_never_loosen(case) -> None:
    """Interval and LP bounds are monotone in the bounds they are given (the LP's feasible set
    shrinks). Back-substitution alone is not (CROWN's adaptive slopes and the sign pattern of
    the coefficients change with the bounds: seen on ~2% of random layers), so the contract is
    that ``known[k]``, the previous bounds of layer ``k``, are intersected in: passing them
    makes progressive tightening monotone."""
    net, box = case
    ib = interval_bounds(net, box)
    lb = linear_bounds(net, box)
    for k in range(1, len(net.layers)):
        iv_tight = interval_bounds(net, box, prior=lb[:k])[k]
        assert_within([iv_tight], [ib[k]], "interval")
        loose = linear_layer_bounds(net, box, k, ib[:k])
        tight = linear_layer_bounds(net, box, k, lb[:k] + [loose])
        assert_within([tight], [loose], "linear with known[k]")
        assert_within([linear_layer_bounds(net, box, k, lb[:k])], [iv_tight], "linear")
        # LP from tighter known vs LP from interval known (slack: solver margins only)
        a = lp_layer_bounds(net, box, k, lb[:k])
        b = lp_layer_bounds(net, box, k, ib[:k])
        scale = np.maximum(np.abs(b[0]), np.abs(b[1])) + 1.0
        assert np.all(a[0] >= b[0] - 1e-5 * scale) and np.all(a[1] <= b[1] + 1e-5 * scale)


def test_linear_prior_is_intersected_in() -> None:
    net = Network.from_arrays(
        [np.array([[1.0, -1.0], [2.0, 1.0]]), np.array([[1.0, 1.0]])],
        [np.zeros(2), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 2)
    prior = [(np.array([-0.5, -3.0]), np.array([0.5, 3.0])), None]
    out = linear_bounds(net, box, prior=prior)
    np.testing.assert_array_equal(out[0][0], prior[0][0])
    np.testing.assert_array_equal(out[0][1], prior[0][1])
    # with z0 in [-0.5, 0.5] and z1 in [-3, 3], the output z = relu(z0) + relu(z1) <= 0.5 + 3
    assert out[1][1][0] <= 3.5 + 1e-6


def test_linear_and_lp_exact_on_named_net() -> None:
    r"""Two inputs, a hidden layer that cancels exactly, and a readout::

        x1 --(+1)--> a = relu(x1 + x2)
        x2 --(+1)-->
        a --(+1)--> y ;  b = relu(-x1 - x2) --(-1)--> y      (y = x1 + x2 on the box)

    Over [0,1]^2, a is active and b inactive (b's maximum is exactly 0, at x = 0, so after
    padding it sits just across the kink): linear and LP bounds are [0, 2] up to the pads.
    """
    net = Network.from_arrays(
        [np.array([[1.0, 1.0], [-1.0, -1.0]]), np.array([[1.0, -1.0]])],
        [np.zeros(2), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 2)
    lb = linear_bounds(net, box)
    assert lb[1][0][0] <= 0.0 and lb[1][0][0] == pytest.approx(0.0, abs=1e-7)
    assert lb[1][1][0] >= 2.0 and lb[1][1][0] == pytest.approx(2.0, abs=1e-7)
    lp = lp_layer_bounds(net, box, 1, lb)
    assert lp[0][0] == pytest.approx(0.0, abs=1e-5) and lp[1][0] == pytest.approx(2.0, abs=1e-5)


def test_linear_beats_interval_on_a_cancelling_net() -> None:
    r"""Two identical, stably active neurons whose difference is read out::

        x in [0.5, 1] --> a = relu(x), b = relu(x) --> y = a - b   (= 0 everywhere)

    Interval arithmetic forgets that a and b are the same and says y in [-0.5, 0.5];
    back-substitution through the active neurons sees the cancellation exactly.
    """
    net = Network.from_arrays(
        [np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
        [np.zeros(2), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(0.5, 1.0, 1)
    ib = interval_bounds(net, box)
    lb = linear_bounds(net, box)
    assert ib[1][1][0] >= 0.5
    assert abs(lb[1][0][0]) < 1e-7 and abs(lb[1][1][0]) < 1e-7  # the rounding pad only


def test_sparse_random_net_linear_clearly_tighter_than_interval() -> None:
    rng = np.random.default_rng(0)
    sizes = [10, 100, 100]
    ws, bs = [], []
    for i in range(2):
        w = rng.normal(0.0, 1.0 / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i]))
        w[rng.random(w.shape) < 0.7] = 0.0
        ws.append(w)
        bs.append(rng.normal(0.0, 0.1, sizes[i + 1]))
    net = Network.from_arrays(ws, bs, relu_last=True, dtype="float64")
    box = Box.uniform(0.0, 1.0, 10)
    ib, lb = interval_bounds(net, box), linear_bounds(net, box)
    zs = net.preactivations(box.sample(2000, rng))
    assert_encloses(lb, zs)
    assert np.mean(lb[1][1] - lb[1][0]) < 0.8 * np.mean(ib[1][1] - ib[1][0])


# ------------------------------------------------------------------------ building blocks
def test_relu_relaxation_cases() -> None:
    lo = np.array([-2.0, 1.0, -1.0, -3.0, 0.0])
    hi = np.array([-1.0, 2.0, 3.0, 1.0, 0.0])
    alpha, s, t = relu_relaxation(lo, hi)
    np.testing.assert_array_equal(alpha, [0.0, 1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(s[:2], [0.0, 1.0])
    assert s[2] == pytest.approx(0.75) and t[2] == pytest.approx(0.75)
    z = np.linspace(lo, hi, 50)
    assert np.all(alpha * z <= np.maximum(z, 0) + 1e-12)
    assert np.all(np.maximum(z, 0) <= s * z + t + 1e-12)


def test_prefix_lp_shape_counts_rows() -> None:
    """One definition row per kept neuron, two more per unstable neuron."""
    net = Network.from_arrays(
        [np.array([[1.0], [1.0], [-1.0]]), np.ones((1, 3))],
        [np.array([2.0, 0.0, -5.0]), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 1)
    lp = build_prefix_lp(net, box, 1, interval_bounds(net, box))
    # neurons: active (z in [1,3]), unstable ([-1,1]), inactive ([-6,-4]); the inactive
    # neuron of layer 0 needs no column and no row, the active one shares h with z
    assert lp.matrix.shape == (2 + 2, 1 + 2 + 1)
    np.testing.assert_array_equal(lp.out_cols, [1, 3, -1])


def test_bad_layer_index_raises() -> None:
    net = Network.from_arrays([np.ones((2, 2))], [np.zeros(2)], dtype="float64")
    with pytest.raises(IndexError):
        linear_layer_bounds(net, Box.uniform(0, 1, 2), 3, [])


def test_overflowing_weights_give_no_nan_and_stay_sound() -> None:
    """Weights near the float64 limit overflow the bounds (interval arithmetic itself yields
    NaN from ``0 * inf``); linear and LP bounds must stay NaN-free and enclose real values."""
    net = Network.from_arrays(
        [np.array([[1e300, -1e300], [1e300, 1e300]]), np.array([[1e300, -1e300]]), np.ones((1, 1))],
        [np.zeros(2), np.zeros(1), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 2)
    with np.errstate(over="ignore", invalid="ignore"):
        lb = linear_bounds(net, box)
        lp = lp_layer_bounds(net, box, 2, lb)
        zs = net.preactivations(probe(box, np.random.default_rng(0), 50))
    for lo, hi in [*lb, lp]:
        assert not np.isnan(lo).any() and not np.isnan(hi).any()
    assert_encloses(lb, zs)
    assert_encloses([lp], [zs[2]])


def test_overflow_inside_back_substitution_is_silent_and_falls_back() -> None:
    """Finite earlier bounds whose back-substitution overflows (1e200 * 1e200): no warning
    escapes (``filterwarnings = error``) and the layer keeps its interval bounds."""
    net = Network.from_arrays(
        [np.array([[1e200, -1e200], [1e200, 1e200]]), np.array([[1e200, -1e200]])],
        [np.zeros(2), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 2)
    known = interval_bounds(net, box)
    assert np.isfinite(known[0][0]).all() and np.isfinite(known[0][1]).all()
    lo, hi = linear_layer_bounds(net, box, 1, known[:1])
    assert not np.isnan(lo).any() and not np.isnan(hi).any()
    np.testing.assert_array_equal(lo, known[1][0])
    np.testing.assert_array_equal(hi, known[1][1])
