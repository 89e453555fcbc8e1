"""Concrete-input search: candidates stay in the box, gradient search climbs, witnesses are real."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import network_and_box

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.search import (
    ascend,
    candidate_inputs,
    gradient_points,
    observe_signs,
    sign_witnesses,
    witness_margin,
)
from exactcomp.tolerances import DEFAULT

SETTINGS = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def networks_and_boxes(draw: st.DrawFn):
    """A random MLP (depth 1-4, width 1-12, 1-6 inputs), mixed weight scales, a box with some
    flat coordinates."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in = draw(st.integers(1, 6))
    widths = [n_in] + [draw(st.integers(1, 12)) for _ in range(draw(st.integers(1, 4)))]
    style = draw(st.sampled_from(["plain", "sparse", "mixed"]))
    ws, bs = [], []
    for i in range(len(widths) - 1):
        w = rng.normal(size=(widths[i + 1], widths[i]))
        b = rng.normal(size=widths[i + 1])
        if style != "plain":
            w[rng.random(w.shape) < 0.4] = 0.0
        if style == "mixed":
            w = w * 10.0 ** rng.choice([-8.0, 0.0, 6.0], size=w.shape)
        ws.append(w)
        bs.append(b)
    net = Network.from_arrays(ws, bs, relu_last=draw(st.booleans()), dtype="float64")
    lo = rng.uniform(-2.0, 1.0, n_in)
    hi = lo + rng.uniform(0.0, 2.0, n_in)
    flat = rng.random(n_in) < 0.3
    hi[flat] = lo[flat]
    return net, Box(lo, hi)


def margin_sign(net: Network, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent re-evaluation: z and its witness threshold at the rows of x."""
    h = np.atleast_2d(x)
    for j, layer in enumerate(net.layers):
        z = (
            np.array(
                [
                    [sum(w * v for w, v in zip(row, hh, strict=True)) for row in layer.weight]
                    for hh in h
                ]
            )
            + layer.bias
        )
        if j == k:
            scale = np.abs(h) @ np.abs(layer.weight.T) + np.abs(layer.bias)
            return z, DEFAULT.witness * (1.0 + scale)
        h = np.maximum(z, 0.0) if layer.relu else z
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- candidates
def test_candidates_cover_centre_vertices_and_data() -> None:
    box = Box(np.array([0.0, -1.0, 2.0]), np.array([1.0, 1.0, 2.0]))  # last coordinate flat
    data = np.array([[0.5, 0.0, 2.0], [5.0, 0.0, 2.0], [0.1, 0.9, 2.0]])
    x = candidate_inputs(box, 16, np.random.default_rng(0), data=data)
    assert x.dtype == np.float64
    assert box.contains(x).all()
    np.testing.assert_array_equal(x[0], box.center)
    for v in itertools.product(*zip(box.lower, box.upper, strict=True)):
        assert (x == np.array(v)).all(axis=1).any(), f"vertex {v} missing"
    assert (x == data[0]).all(axis=1).any() and (x == data[2]).all(axis=1).any()
    assert not (x == data[1]).all(axis=1).any()  # outside the box: dropped


def test_candidates_many_dims_use_random_vertices() -> None:
    box = Box.uniform(0.0, 1.0, 40)
    x = candidate_inputs(box, 10, np.random.default_rng(1))
    assert x.shape == (1 + 10 + 10 + 10, 40)
    assert box.contains(x).all()
    verts = x[1:11]
    assert np.isin(verts, [0.0, 1.0]).all()
    nearv = x[11:21]
    assert np.abs(nearv - verts).max() <= 1e-3


def test_candidates_reject_bad_data() -> None:
    with pytest.raises(ValueError, match="features"):
        candidate_inputs(Box.uniform(0, 1, 3), 4, np.random.default_rng(0), data=np.ones((2, 4)))


# ------------------------------------------------------------------------ gradient ascent
def _climb(net, box, k, neurons, sign, starts, steps):
    """The best point of each path of :func:`gradient_points` (the first half of its rows)."""
    neurons = np.asarray(neurons)
    signs = np.broadcast_to(np.asarray(sign, dtype=float), neurons.shape)
    return gradient_points(net, box, k, neurons, signs, starts, steps)[: len(neurons)]


def test_gradient_ascent_reaches_the_maximising_vertex_of_an_affine_neuron() -> None:
    """z = 2 x0 - 3 x1 + 0 x2 + 1 over [-1, 2] x [0, 1] x [5, 5]: max at (2, 0, 5) = 5,
    min at (-1, 1, 5) = -4."""
    net = Network.from_arrays([np.array([[2.0, -3.0, 0.0]])], [np.array([1.0])], dtype="float64")
    box = Box(np.array([-1.0, 0.0, 5.0]), np.array([2.0, 1.0, 5.0]))
    up = _climb(net, box, 0, [0], +1, box.center[None, :], steps=40)
    np.testing.assert_allclose(up[0], [2.0, 0.0, 5.0])
    down = _climb(net, box, 0, [0], -1, box.center[None, :], steps=40)
    np.testing.assert_allclose(down[0], [-1.0, 1.0, 5.0])


def test_gradient_ascent_finds_a_small_positive_corner() -> None:
    r"""A second-layer neuron positive only near the corner (1, 1) of [0, 1]^2::

        a = relu(x0 + x1 - 1.9),  y = 10 a - 0.05      (y > 0 iff x0 + x1 > 1.905)

    Only ~0.5% of the square; gradient ascent from the centre must get there."""
    net = Network.from_arrays(
        [np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[10.0, 0.0]])],
        [np.array([-1.9, 0.0]), np.array([-0.05])],
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 2)
    # from the centre a is 0 (flat): start near the diagonal so the gradient is informative
    x = _climb(net, box, 1, [0], +1, np.array([[0.96, 0.96]]), steps=30)
    assert net.preactivations(x)[1][0, 0] > 0.0
    pos, _ = sign_witnesses(net, 1, x)
    assert pos[0] == 0


@SETTINGS
@given(networks_and_boxes(), st.integers(0, 2**16), st.sampled_from([1, -1]))
def test_gradient_ascent_never_worse_and_stays_in_box(case, seed, sign) -> None:
    net, box = case
    rng = np.random.default_rng(seed)
    k = int(rng.integers(len(net.layers)))
    n = net.layers[k].out_features
    neurons = np.tile(rng.permutation(n)[: min(n, 3)], 2)
    starts = box.sample(neurons.size, rng)
    both = gradient_points(net, box, k, neurons, np.full(neurons.size, sign), starts, 10)
    assert both.shape == (2 * len(starts), starts.shape[1]) and box.contains(both).all()
    x = both[: len(starts)]
    rows = np.arange(len(x))
    before = sign * net.preactivations(starts)[k][rows, neurons]
    after = sign * net.preactivations(x)[k][rows, neurons]
    assert np.all(after >= before - 1e-9 * (1.0 + np.abs(before)))


def test_gradient_points_rejects_mismatched_starts() -> None:
    net = Network.from_arrays([np.ones((3, 2))], [np.zeros(3)], dtype="float64")
    box = Box.uniform(0.0, 1.0, 2)
    with pytest.raises(ValueError, match="one row, neuron and sign"):
        gradient_points(net, box, 0, np.array([0, 1]), np.ones(2), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="signs"):
        gradient_points(net, box, 0, np.array([0]), np.zeros(1), np.zeros((1, 2)))
    assert gradient_points(net, box, 0, np.array([]), np.array([]), np.zeros((0, 2))).shape == (
        0,
        2,
    )


def test_ascend_climbs_any_objective_and_keeps_the_best_point() -> None:
    """phi(x) = -(x - 0.3)^2 on [0, 1]: the signed steps overshoot 0.3, the best point is kept
    (never worse than the start), the last iterate is another point."""
    box = Box.uniform(0.0, 1.0, 1)

    def objective(x):
        return -((x[:, 0] - 0.3) ** 2), lambda: -2.0 * (x - 0.3)

    best, last = ascend(box, np.array([[1.0]]), [0.25, 0.25, 0.25, 0.25], objective)
    assert best[0, 0] == pytest.approx(0.25)  # 1.0 -> 0.75 -> 0.5 -> 0.25 -> 0.5
    assert last[0, 0] == pytest.approx(0.5)


def test_witness_margin_is_the_rule_of_the_engine_pool_and_the_recheck() -> None:
    """The three users of the witness rule agree on a value just inside and just outside the
    margin: z = 1e9 x - 1e9 (x0 = 1 + d) has scale 2e9 + ..., margin 1e-9 (1 + scale)."""
    from exactcomp.stability.witnesses import WitnessPool

    net = Network.from_arrays(
        [np.array([[1e9]])], [np.array([-1e9])], relu_last=True, dtype="float64"
    )
    box = Box.uniform(0.0, 2.0, 1)
    x = np.array([[1.0 + 1e-9], [1.0 + 1e-8]])  # z = 1 and z = 10: margin about 2.0
    thr = witness_margin(x, net.layers[0].weight, net.layers[0].bias, DEFAULT)
    z = net.preactivations(x)[0]
    assert list((z > thr)[:, 0]) == [False, True]
    pos, _ = sign_witnesses(net, 0, x)
    assert pos[0] == 1
    pool = WitnessPool(net, box, DEFAULT)
    pool.add(x)
    assert pool.pos[0][0] == 1


def test_the_sign_search_skips_constant_neurons_of_an_emptied_network() -> None:
    """A compression that removes whole layers leaves later neurons with no weight reaching
    them (``weight`` of shape ``(m, 0)``): constants, whose missing sign no search can find.
    The second search round used to divide its arithmetic budget by a cost of 0 (found by the
    conv soak, seed 30057)."""
    from exactcomp.stability.witnesses import WitnessPool, search_signs

    net = Network(
        (
            Layer(np.zeros((0, 2)), np.zeros(0), relu=True),
            Layer(np.zeros((2, 0)), np.array([1.0, -1.0]), relu=True),
            Layer(np.ones((1, 2)), np.zeros(1), relu=False),
        )
    )
    pool = WitnessPool(net, Box.uniform(0.0, 1.0, 2), DEFAULT)
    pool.add(np.array([[0.5, 0.5]]))
    search_signs(pool, 1, np.zeros(2, dtype=bool), seed=0)
    assert list(pool.pos[1] >= 0) == [True, False] and list(pool.neg[1] >= 0) == [False, True]


# ------------------------------------------------------------------------------ witnesses
@SETTINGS
@given(networks_and_boxes(), st.integers(0, 2**16))
def test_witnesses_are_genuine(case, seed) -> None:
    net, box = case
    x = candidate_inputs(box, 20, np.random.default_rng(seed))
    observed = observe_signs(net, x)
    assert len(observed) == len(net.relu_layers)
    for k in range(len(net.layers)):
        pos, neg = sign_witnesses(net, k, x)
        if net.layers[k].relu:
            got = observed[net.relu_layers.index(k)]
            np.testing.assert_array_equal(got.pos, pos)
            np.testing.assert_array_equal(got.neg, neg)
        for j in range(net.layers[k].out_features):
            if pos[j] >= 0:
                z, thr = margin_sign(net, k, x[pos[j]])
                assert z[0, j] > thr[0, j]
            if neg[j] >= 0:
                z, thr = margin_sign(net, k, x[neg[j]])
                assert z[0, j] < -thr[0, j]
        # no row was missed: every row beyond the margin would have been found
        z = net.preactivations(x)[k]
        h = x if k == 0 else net.preactivations(x)[k - 1]
        if k > 0 and net.layers[k - 1].relu:
            h = np.maximum(h, 0.0)
        thr = DEFAULT.witness * (
            1 + np.abs(h) @ np.abs(net.layers[k].weight.T) + np.abs(net.layers[k].bias)
        )
        assert np.array_equal(pos >= 0, (z > thr).any(axis=0))
        assert np.array_equal(neg >= 0, (z < -thr).any(axis=0))


def test_zero_within_margin_is_no_witness() -> None:
    """z = 1e6 x0 - 1e6 x1 on the diagonal x0 = x1 is 0 up to rounding: no sign is proven."""
    net = Network.from_arrays([np.array([[1e6, -1e6], [1.0, 0.0]])], [np.zeros(2)], dtype="float64")
    x = np.array([[0.3, 0.3], [0.7, 0.7], [0.1 + 0.2, 0.3]])
    pos, neg = sign_witnesses(net, 0, x)
    assert pos[0] == -1 and neg[0] == -1
    assert pos[1] == 1 and neg[1] == -1  # the row with the largest margin


def test_empty_inputs_give_no_witnesses() -> None:
    net = Network.from_arrays([np.ones((2, 3)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])
    (w,) = observe_signs(net, np.empty((0, 3)))
    assert (w.pos == -1).all() and (w.neg == -1).all()


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    case=network_and_box(max_neurons=10, inputs=(1, 4)),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-12, 1e-3, 1.0, 1e6]),
)
def test_the_pool_signs_are_the_witness_rule_exactly(case, seed, scale) -> None:
    """``WitnessPool.signs`` computes the margin only where its cheap bound leaves an entry
    undecided; every sign is still exactly ``z > tau`` / ``z < -tau`` of
    :func:`witness_margin`, on inputs in and around the box (near-zero pre-activations and
    points at the margin included: inputs shrunk towards a zero of the first neuron)."""
    from exactcomp.stability.witnesses import WitnessPool

    net, box = case
    rng = np.random.default_rng(seed)
    x = box.sample(24, rng) * scale
    w0, b0 = net.layers[0].weight[0], net.layers[0].bias[0]
    if np.any(w0):  # points on the first neuron's hyperplane, and just off it
        on = x - ((x @ w0 + b0) / (w0 @ w0))[:, None] * w0
        x = np.vstack([x, on, on + 1e-9 * w0, on - 1e-12 * w0])
    pool = WitnessPool(net, box, DEFAULT)
    h = x
    for layer, (z, pos, neg) in zip(net.layers, pool.signs(x), strict=True):
        ref_z = h @ layer.weight.T + layer.bias
        thr = witness_margin(h, layer.weight, layer.bias, DEFAULT)
        assert np.array_equal(z, ref_z)
        assert np.array_equal(pos, ref_z > thr) and np.array_equal(neg, ref_z < -thr)
        h = np.maximum(ref_z, 0.0) if layer.relu else ref_z
