"""Each rewrite pass alone, on tiny named networks with known verdicts and on random ones.

Verdicts come either from the construction (stated in each docstring) or from interval
bounds, which are sound; no stability engine is needed. The pipeline as a whole is tested
in ``test_rewrite_pipeline.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.bounds import interval_bounds
from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError
from exactcomp.network import Layer, Network
from exactcomp.rewrite import (
    Reason,
    drop_dead,
    fold_active,
    initial_state,
    merge_duplicates,
    merge_linear,
    remove_inactive,
)
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict

A, I, U, D = Verdict.ACTIVE, Verdict.INACTIVE, Verdict.UNSTABLE, Verdict.UNDECIDED  # noqa: E741
PASSES = (remove_inactive, fold_active, merge_linear, drop_dead, merge_duplicates)


# ----------------------------------------------------------------------------- helpers
def report_of(net: Network, verdicts: dict[int, list[int]]) -> StabilityReport:
    """A report with the given verdict codes per ReLU layer (proof: ENUMERATION)."""
    layers = []
    for k, codes in verdicts.items():
        v = np.asarray(codes, dtype=np.int8)
        proof = np.where(np.isin(v, (A, I)), Proof.ENUMERATION, Proof.NONE).astype(np.int8)
        w = v.size
        none = np.full(w, -1, dtype=np.int64)
        layers.append(
            LayerStability(k, v, proof, np.full(w, -np.inf), np.full(w, np.inf), none, none)
        )
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def interval_report(net: Network, box: Box) -> StabilityReport:
    """Verdicts proven by (padded, so sound) interval bounds; the rest UNDECIDED."""
    bounds = interval_bounds(net, box)
    layers = []
    for k in net.relu_layers:
        lo, hi = bounds[k]
        v = np.where(hi <= 0, I, np.where(lo >= 0, A, D)).astype(np.int8)
        proof = np.where(v != D, Proof.INTERVAL, Proof.NONE).astype(np.int8)
        none = np.full(v.size, -1, dtype=np.int64)
        layers.append(LayerStability(k, v, proof, lo, hi, none, none))
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def magnitudes(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Per layer, the size of the terms summed into each pre-activation (rounding scales
    with it, not with the pre-activation's value)."""
    a, out = np.abs(x), []
    for la in net.layers:
        a = a @ np.abs(la.weight).T + np.abs(la.bias)
        out.append(a)
    return out


def magnitude(net: Network, x: np.ndarray) -> np.ndarray:
    return magnitudes(net, x)[-1]


def assert_same_function(f: Network, g: Network, box: Box, n: int = 400, seed: int = 0):
    """``f == g`` on random points, the box's corners and its centre, up to float64 rounding."""
    rng = np.random.default_rng(seed)
    corners = np.where(rng.random((32, box.dim)) < 0.5, box.lower, box.upper)
    x = np.vstack([box.sample(n, rng), corners, box.center])
    scale = np.maximum(magnitude(f, x), magnitude(g, x))
    np.testing.assert_array_less(np.abs(f(x) - g(x)), 1e-10 * scale + 1e-300)


def snapshot(net: Network) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    return [(la.weight.copy(), la.bias.copy(), la.relu) for la in net.layers]


def assert_unchanged(net: Network, snap) -> None:
    for la, (w, b, relu) in zip(net.layers, snap, strict=True):
        assert np.array_equal(la.weight, w) and np.array_equal(la.bias, b) and la.relu == relu


def assert_record_consistent(net: Network, out) -> None:
    """``kept`` and ``removed`` partition the old units; ``kept`` is a bijection onto the new
    units; surviving units compute the same pre-activation function as before."""
    rec = out.record
    old = {(k, j) for k, la in enumerate(net.layers) for j in range(la.out_features)}
    new = {(k, j) for k, la in enumerate(out.network.layers) for j in range(la.out_features)}
    assert set(rec.kept) | set(rec.removed) == old
    assert not set(rec.kept) & set(rec.removed)
    assert sorted(rec.kept.values()) == sorted(new)
    assert rec.widths_before == tuple(la.out_features for la in net.layers)
    assert rec.widths_after == tuple(la.out_features for la in out.network.layers)
    out.state.check(out.network)
    for unit, reason in rec.removed.items():
        assert (rec.certificates[unit] != Proof.NONE) == reason.needs_proof() or (
            reason == Reason.MERGED_LAYER and not net.layers[unit[0]].relu
        )


def assert_preactivations_kept(net: Network, out, box: Box) -> None:
    """Every surviving unit's pre-activation is the same function of the input (why
    verdicts carry over), and its state entry is the one of the unit it came from."""
    x = box.sample(200, np.random.default_rng(1))
    z_old, z_new = net.preactivations(x), out.network.preactivations(x)
    m_old, m_new = magnitudes(net, x), magnitudes(out.network, x)
    state0 = initial_state(net, report_of(net, {}))
    for (k, j), (nk, nj) in out.record.kept.items():
        old = z_old[k][:, j]
        if k in out.record.relu_dropped or (k, j) in out.record.zeroed:  # INACTIVE output
            old = np.maximum(old, 0.0)
        scale = np.maximum(m_old[k][:, j], m_new[nk][:, nj])
        assert np.all(np.abs(old - z_new[nk][:, nj]) <= 1e-10 * scale + 1e-300)
        assert tuple(out.state.layers[nk].origin[nj]) == tuple(state0.layers[k].origin[j])


def run_pass(p, net: Network, report: StabilityReport, box: Box):
    snap = snapshot(net)
    out = p(net, initial_state(net, report))
    assert_unchanged(net, snap)
    assert_same_function(net, out.network, box)
    assert_record_consistent(net, out)
    assert_preactivations_kept(net, out, box)
    assert out.network.num_neurons <= net.num_neurons
    assert len(out.network.layers) <= len(net.layers)
    assert out.network.dtype == net.dtype and dict(out.network.meta) == dict(net.meta)
    return out


# ----------------------------------------------------------------------------- named cases
UNIT2 = Box.uniform(0.0, 1.0, 2)
SYM2 = Box.uniform(-1.0, 1.0, 2)


def test_all_inactive_layer_becomes_constant():
    """x in [0,1]^2::

        x1 --(-1)--> z0 = -x1 - x2 - 1  (<= -1: INACTIVE) --3--+
        x2 --(-1)--> z1 = -2 x1 - 3     (<= -3: INACTIVE) --2--+--> y = 3 h0 + 2 h1 + 5

    Both neurons go; the layer of width 0 is merged away: y = 5, one affine layer.
    """
    net = Network.from_arrays(
        [np.array([[-1.0, -1.0], [-2.0, 0.0]]), np.array([[3.0, 2.0]])],
        [np.array([-1.0, -3.0]), np.array([5.0])],
        dtype="float64",
    )
    rep = report_of(net, {0: [I, I]})
    out = run_pass(remove_inactive, net, rep, UNIT2)
    assert out.network.describe() == "2-0r-1"
    out2 = run_pass(merge_linear, out.network, report_of(out.network, {0: []}), UNIT2)
    assert out2.network.describe() == "2-1"
    assert np.all(out2.network.layers[0].weight == 0) and out2.network.layers[0].bias[0] == 5


def test_all_active_layer_is_merged():
    """x in [0,1]^2::

        z0 = x1 + 1  (>= 1: ACTIVE)      y = h0 - 2 h1 + 1
        z1 = x2 + 2  (>= 2: ACTIVE)

    so y = x1 - 2 x2 - 2 exactly: one affine layer, no neurons left.
    """
    net = Network.from_arrays(
        [np.eye(2), np.array([[1.0, -2.0]])], [np.array([1.0, 2.0]), np.array([1.0])]
    )
    out = run_pass(merge_linear, net, report_of(net, {0: [A, A]}), UNIT2)
    assert out.network.describe() == "2-1"
    np.testing.assert_array_equal(out.network.layers[0].weight, [[1.0, -2.0]])
    np.testing.assert_array_equal(out.network.layers[0].bias, [-2.0])
    assert set(out.record.removed.values()) == {Reason.MERGED_LAYER}


def test_mixed_stable_layer_merged_and_unstable_layer_kept():
    """x in [-1,1]^2::

        layer 0:  z = x1 + 2 (ACTIVE),  z = x2 - 5 (INACTIVE)
        layer 1:  z = h0 - 2.5 (UNSTABLE: h0 in [1, 3])
        output:   y = 2 h

    Layer 0 is all stable: merged (D = diag(1, 0)); layer 1 keeps its ReLU.
    """
    net = Network.from_arrays(
        [np.eye(2), np.array([[1.0, 0.0]]), np.array([[2.0]])],
        [np.array([2.0, -5.0]), np.array([-2.5]), np.zeros(1)],
    )
    out = run_pass(merge_linear, net, report_of(net, {0: [A, I], 1: [U]}), SYM2)
    assert out.network.describe() == "2-1r-1"
    assert out.record.removed == {(0, 0): Reason.MERGED_LAYER, (0, 1): Reason.INACTIVE}


def test_rank_folding_keeps_at_most_the_input_rank():
    """Five ACTIVE neurons fed by two inputs span at most two directions, so at most two
    stay (three with the bias, counting rows [w|b]); an UNSTABLE sixth keeps the layer::

        x in [0,1]^2,  z_j = a_j x1 + c_j x2 + 10  (>= 10 - 6: ACTIVE),  j < 5
                       z_5 = x1 - 0.5               (UNSTABLE)
        y = V h  (3 outputs)
    """
    rng = np.random.default_rng(3)
    w0 = np.vstack([rng.uniform(-3, 3, size=(5, 2)), [[1.0, 0.0]]])
    b0 = np.array([10.0] * 5 + [-0.5])
    net = Network.from_arrays([w0, rng.normal(size=(3, 6))], [b0, rng.normal(size=3)])
    out = run_pass(fold_active, net, report_of(net, {0: [A] * 5 + [U]}), UNIT2)
    assert out.network.hidden_widths == (3,)  # two active + the unstable one
    folded = [u for u, r in out.record.removed.items() if r == Reason.FOLDED_ACTIVE]
    assert len(folded) == 3
    for u in folded:
        fold = out.record.folds[u]
        assert fold.residual <= 1e-9 and len(fold.sources) == 2
        recon = sum(c * w0[s[1]] for s, c in zip(fold.sources, fold.coefficients, strict=True))
        np.testing.assert_allclose(recon, w0[u[1]], rtol=1e-12, atol=1e-12)
        assert out.record.certificates[u] == Proof.ENUMERATION
    assert (0, 5) in out.record.kept


def test_duplicates_are_merged_but_not_negated_copies():
    """x in [-1,1]^2 (all UNSTABLE)::

    z0 = x1 - x2         y = h0 + 3 h1 - h2 + h3
    z1 = 2 x1 - 2 x2     (= 2 z0: h1 = 2 h0, folded into h0)
    z2 = -x1 + x2        (= -z0: NOT a duplicate, relu(-z) != c relu(z))
    z3 = x1 - x2 + 0.1   (bias differs: not a duplicate)
    """
    w0 = np.array([[1.0, -1.0], [2.0, -2.0], [-1.0, 1.0], [1.0, -1.0]])
    b0 = np.array([0.0, 0.0, 0.0, 0.1])
    net = Network.from_arrays([w0, np.array([[1.0, 3.0, -1.0, 1.0]])], [b0, np.zeros(1)])
    out = run_pass(merge_duplicates, net, report_of(net, {0: [U] * 4}), SYM2)
    assert out.record.removed == {(0, 1): Reason.DUPLICATE}
    assert out.record.folds[(0, 1)].coefficients == (2.0,)
    np.testing.assert_array_equal(out.network.layers[1].weight, [[7.0, -1.0, 1.0]])


def test_duplicate_group_is_kept_on_its_stable_member():
    """z0 = x1 + x2 - 5 is UNDECIDED (say), z1 = 2 z0 is proven INACTIVE on [0,1]^2: the
    group keeps z1, whose verdict covers both (same sign), so both can then go."""
    w0 = np.array([[1.0, 1.0], [2.0, 2.0]])
    net = Network.from_arrays([w0, np.array([[1.0, 1.0]])], [np.array([-5.0, -10.0]), [0.0]])
    out = run_pass(merge_duplicates, net, report_of(net, {0: [D, I]}), UNIT2)
    assert out.record.removed == {(0, 0): Reason.DUPLICATE}
    assert out.state.layers[0].verdict.tolist() == [I]


def test_dead_and_constant_neurons_are_dropped():
    """x in [-1,1]^2, nothing proven (all UNDECIDED)::

    z0 = x1 + x2      -> y reads it: kept
    z1 = x1 - x2      -> outgoing column 0: DEAD
    z2 = 0 x + 2      -> h2 = 2 always: CONSTANT, y bias += 2 * 4
    z3 = 0 x - 1      -> h3 = 0 always: CONSTANT, y bias += 0
    y = h0 + 0 h1 + 4 h2 + 7 h3 + 1
    """
    w0 = np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [0.0, 0.0]])
    b0 = np.array([0.0, 0.0, 2.0, -1.0])
    net = Network.from_arrays([w0, np.array([[1.0, 0.0, 4.0, 7.0]])], [b0, np.array([1.0])])
    out = run_pass(drop_dead, net, report_of(net, {}), SYM2)
    assert out.record.removed == {
        (0, 1): Reason.DEAD,
        (0, 2): Reason.CONSTANT,
        (0, 3): Reason.CONSTANT,
    }
    assert out.network.layers[1].bias.tolist() == [9.0]
    assert out.record.folds[(0, 2)].offset == 2.0 and out.record.folds[(0, 3)].offset == 0.0


def test_dead_chain_found_in_one_pass():
    """A neuron read only by a dead neuron is dead too: 1-1r-1r-1 with a zero output weight."""
    net = Network.from_arrays(
        [np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 1))], [np.zeros(1), np.zeros(1), [3.0]]
    )
    out = run_pass(drop_dead, net, report_of(net, {}), Box.uniform(-1, 1, 1))
    assert out.network.hidden_widths == (0, 0)


@pytest.mark.parametrize(
    ("codes", "relu_after"),
    [([A, A], False), ([A, I], False), ([A, U], True), ([A, D], True)],
)
def test_output_relu_dropped_only_when_every_output_is_stable(codes, relu_after):
    """x in [0,1]::

        hidden: z = x - 0.5 (UNSTABLE)         outputs (with ReLU): y0 = h + 1 (ACTIVE)
                                                                    y1 = s h + c (given)
    An INACTIVE output gets a zero row (relu(z) = 0 there); a ReLU that may see a
    negative input stays.
    """
    box = Box.uniform(0.0, 1.0, 1)
    second = {A: (1.0, 2.0), I: (-1.0, -3.0), U: (1.0, -0.25), D: (1.0, -0.25)}[codes[1]]
    net = Network(
        (
            Layer([[1.0]], [-0.5], relu=True),
            Layer([[1.0], [second[0]]], [1.0, second[1]], relu=True),
        ),
        dtype="float64",
    )
    out = run_pass(merge_linear, net, report_of(net, {0: [U], 1: codes}), box)
    assert out.network.layers[-1].relu == relu_after
    assert out.record.relu_dropped == (() if relu_after else (1,))


def test_inactive_output_is_zeroed_and_its_only_input_dies():
    """ReLU outputs, x in [0,1]::

        z0 = x - 0.5 (UNSTABLE) --1--> y0 = relu(h0 - 0.2)      (UNSTABLE: ReLU stays)
        z1 = x       (UNSTABLE) --1--> y1 = relu(-h1 - 1)       (INACTIVE: row zeroed)

    After zeroing y1's row nothing reads h1: drop_dead removes it.
    """
    net = Network(
        (
            Layer([[1.0], [1.0]], [-0.5, 0.0], relu=True),
            Layer([[1.0, 0.0], [0.0, -1.0]], [-0.2, -1.0], relu=True),
        ),
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 1)
    out = run_pass(remove_inactive, net, report_of(net, {0: [U, U], 1: [U, I]}), box)
    assert out.record.zeroed == ((1, 1),) and out.record.changed
    assert out.network.layers[1].relu and not out.record.removed
    out2 = run_pass(drop_dead, out.network, report_of(out.network, {}), box)
    assert out2.record.removed == {(0, 1): Reason.DEAD}


def test_zero_width_layer_makes_next_layer_constant():
    """2-0r-2r-1: the next layer's pre-activation is its bias; merging leaves 2-2r-1 with
    zero weights, and drop_dead then folds both (constant) neurons into the output bias."""
    net = Network.from_arrays(
        [np.zeros((0, 2)), np.zeros((2, 0)), np.array([[1.0, 2.0]])],
        [np.zeros(0), np.array([3.0, -1.0]), np.array([0.5])],
    )
    out = run_pass(merge_linear, net, report_of(net, {0: [], 1: [U, U]}), SYM2)
    assert out.network.describe() == "2-2r-1"
    out2 = run_pass(drop_dead, out.network, report_of(out.network, {}), SYM2)
    assert out2.network.describe() == "2-0r-1"
    assert out2.network.layers[-1].bias.tolist() == [3.5]


def test_unstable_and_undecided_neurons_are_never_touched_by_stability_passes():
    rng = np.random.default_rng(0)
    net = Network.from_arrays(
        [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))], [np.zeros(4), [0, 0]]
    )
    rep = report_of(net, {0: [U, D, U, D]})
    for p in (remove_inactive, fold_active, merge_linear):
        out = run_pass(p, net, rep, Box.uniform(-1, 1, 3))
        assert not out.record.changed and out.network.describe() == net.describe()


def test_report_for_another_network_is_refused():
    net = Network.from_arrays([np.ones((2, 1)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])
    with pytest.raises(InvalidNetworkError, match="another network"):
        initial_state(net, report_of(net, {0: [A, A, A]}))
    with pytest.raises(InvalidNetworkError, match="not a ReLU layer"):
        initial_state(net, report_of(net, {1: [A]}))


def test_affine_hidden_layer_is_merged_without_proof():
    """2-3-2r-1 where layer 0 has no ReLU (an ONNX graph with two Gemms in a row)."""
    rng = np.random.default_rng(5)
    layers = (
        Layer(rng.normal(size=(3, 2)), rng.normal(size=3), relu=False),
        Layer(rng.normal(size=(2, 3)), rng.normal(size=2), relu=True),
        Layer(rng.normal(size=(1, 2)), rng.normal(size=1), relu=False),
    )
    net = Network(layers, dtype="float64", meta={"source": "onnx"})
    out = run_pass(merge_linear, net, report_of(net, {1: [U, U]}), SYM2)
    assert out.network.describe() == "2-2r-1"
    assert all(out.record.certificates[(0, j)] == Proof.NONE for j in range(3))


# ----------------------------------------------------------------------------- random nets
@st.composite
def nets_with_boxes(draw):
    """Small MLPs whose weights include exact zeros, duplicated and scaled rows, and biases
    large enough that interval bounds prove a fair share of neurons stable."""
    n = draw(st.integers(1, 4))
    widths = [n] + [draw(st.integers(0, 6)) for _ in range(draw(st.integers(1, 3)))]
    widths.append(draw(st.integers(1, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights, biases = [], []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        w = rng.normal(size=(fan_out, fan_in)) * (rng.random((fan_out, fan_in)) > 0.2)
        for j in range(1, fan_out):
            if rng.random() < 0.25:  # a positively (or negatively) scaled copy
                w[j] = w[rng.integers(j)] * rng.choice([2.0, 0.5, 1.0, -1.0])
        weights.append(w)
        biases.append(rng.normal(size=fan_out) * rng.choice([0.1, 1.0, 4.0]))
    net = Network.from_arrays(weights, biases, relu_last=draw(st.booleans()), dtype="float64")
    lo = rng.uniform(-1, 1, size=n)
    box = Box(lo, lo + rng.uniform(0, 1, size=n) * draw(st.sampled_from([0.0, 0.1, 1.0])))
    return net, box


@settings(max_examples=60, derandomize=True, deadline=None)
@given(case=nets_with_boxes(), which=st.sampled_from(PASSES))
def test_each_pass_alone_preserves_the_function(case, which):
    net, box = case
    run_pass(which, net, interval_report(net, box), box)
