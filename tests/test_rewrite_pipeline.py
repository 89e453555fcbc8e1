"""The rewrite pipeline: passes composed to a fixed point, and the fates of original neurons.

Verdicts come from interval bounds (sound) or from the enumeration oracle of
:mod:`exactcomp.testing.oracle` (exact); networks from the shared generator of numerically
nasty cases (:mod:`exactcomp.testing.random_networks`) and tiny named networks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import network_and_box

from exactcomp.bounds import interval_bounds
from exactcomp.domain import Box
from exactcomp.errors import InvalidNetworkError
from exactcomp.network import Layer, Network
from exactcomp.rewrite import DEFAULT_PASSES, Reason, RewriteResult, compress_network
from exactcomp.testing.oracle import exact_stability
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict


def report_from(net: Network, codes: list[np.ndarray], proof: Proof, bounds=None):
    """A report with verdict ``codes`` per ReLU layer (anything but ACTIVE/INACTIVE is
    UNDECIDED), proven by ``proof``."""
    layers = []
    for i, k in enumerate(net.relu_layers):
        v = np.asarray(codes[i]).astype(np.int8)
        v = np.where(np.isin(v, (Verdict.ACTIVE, Verdict.INACTIVE)), v, Verdict.UNDECIDED)
        p = np.where(v != Verdict.UNDECIDED, proof, Proof.NONE).astype(np.int8)
        lo, hi = bounds[k] if bounds else (np.full(v.size, -np.inf), np.full(v.size, np.inf))
        none = np.full(v.size, -1, dtype=np.int64)
        layers.append(LayerStability(k, v.astype(np.int8), p, lo, hi, none, none))
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def interval_report(net: Network, box: Box) -> StabilityReport:
    """Verdicts proven by padded (sound) interval bounds."""
    b = interval_bounds(net, box)
    codes = [
        np.where(b[k][1] <= 0, Verdict.INACTIVE, np.where(b[k][0] >= 0, Verdict.ACTIVE, 0))
        for k in net.relu_layers
    ]
    return report_from(net, codes, Proof.INTERVAL, b)


def magnitude(net: Network, x: np.ndarray) -> np.ndarray:
    """Per output, the size of the terms summed to compute it (rounding scales with it)."""
    a = np.abs(x)
    for la in net.layers:
        a = a @ np.abs(la.weight).T + np.abs(la.bias)
    return a


def check_result(net: Network, box: Box, res: RewriteResult, seed: int = 0) -> None:
    """Everything the pipeline promises, checked on one case."""
    small = res.network
    rng = np.random.default_rng(seed)
    corners = np.where(rng.random((64, box.dim)) < 0.5, box.lower, box.upper)
    x = np.vstack([box.sample(500, rng), corners, box.center])
    scale = np.maximum(magnitude(net, x), magnitude(small, x))
    np.testing.assert_array_less(np.abs(net(x) - small(x)), 1e-10 * scale + 1e-300)
    # never larger, same interface
    assert small.num_neurons <= net.num_neurons
    assert len(small.layers) <= len(net.layers)
    assert (small.input_size, small.output_size) == (net.input_size, net.output_size)
    assert small.dtype == net.dtype and dict(small.meta) == dict(net.meta)
    # no zero-width layer survives
    assert all(la.out_features > 0 for la in small.layers)
    # every original neuron accounted for exactly once
    neurons = {(k, j) for k in net.relu_layers for j in range(net.layers[k].out_features)}
    assert set(res.neuron_map) == neurons
    kept = [f.position for f in res.neuron_map.values() if f.kept]
    relu_units = {(k, j) for k in small.relu_layers for j in range(small.layers[k].out_features)}
    assert len(kept) == len(set(kept)) and set(kept) == relu_units
    for fate in res.neuron_map.values():
        if fate.reason is not None and fate.reason.needs_proof():
            assert fate.proof != Proof.NONE  # a domain-only rewrite always has a certificate
    assert compose(net, res) == {u: f.position for u, f in res.neuron_map.items()}


def compose(net: Network, res: RewriteResult) -> dict:
    """Follow every original neuron through the records' maps, independently of the
    pipeline's own bookkeeping."""
    where = {(k, j): (k, j) for k in net.relu_layers for j in range(net.layers[k].out_features)}
    for rec in res.records:
        assert set(rec.kept).isdisjoint(rec.removed)
        nxt = {}
        for origin, pos in where.items():
            if pos is None or pos in rec.removed:
                nxt[origin] = None
            else:
                nxt[origin] = rec.kept[pos]
        where = nxt
    return where


# ----------------------------------------------------------------------------- properties
@settings(max_examples=40, derandomize=True, deadline=None)
@given(seed=st.integers(0, 10**6), nasty=st.booleans())
def test_pipeline_preserves_function_on_interval_verdicts(seed, nasty):
    case = random_case(seed, nasty=nasty)
    before = [(la.weight.copy(), la.bias.copy()) for la in case.network.layers]
    res = compress_network(case.network, interval_report(case.network, case.box))
    for la, (w, b) in zip(case.network.layers, before, strict=True):
        assert np.array_equal(la.weight, w) and np.array_equal(la.bias, b)
    check_result(case.network, case.box, res, seed)


@settings(max_examples=12, derandomize=True, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_pipeline_preserves_function_on_exact_verdicts(seed):
    """With the oracle's exact verdicts (many more stable neurons than interval bounds
    prove) the compressed network is still the same function."""
    case = random_case(seed, depth=(1, 3), width=(1, 5), inputs=(1, 3), max_neurons=9)
    res = compress_network(case.network, report_from(
        case.network, exact_stability(case.network, case.box), Proof.ENUMERATION
    ))  # fmt: skip
    check_result(case.network, case.box, res, seed)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(case=network_and_box(max_neurons=8), relu_last=st.booleans(), exact=st.booleans())
def test_pipeline_on_shared_strategy_with_output_relu(case, relu_last, exact):
    """The shared hypothesis networks, optionally with a ReLU on the output layer (as ONNX
    graphs can have), with exact (oracle) or interval verdicts."""
    net, box = case
    if relu_last:
        last = net.layers[-1]
        net = net.replace_layers(net.layers[:-1] + (Layer(last.weight, last.bias, True),))
    if exact:
        rep = report_from(net, exact_stability(net, box), Proof.ENUMERATION)
    else:
        rep = interval_report(net, box)
    check_result(net, box, compress_network(net, rep))


# ----------------------------------------------------------------------------- named cases
def test_affine_network_becomes_one_layer():
    """x in [0,1]^2, every neuron stable, ReLU on the output::

        z0 = x1 + 1 (A), z1 = -x2 - 1 (I)     ->  z2 = h0 + 1 (A), z3 = 3 h0 - h1 (A)
        -> y = relu(h2 - h3 + 10) (A, >= 7)

    y = relu((x1 + 2) - 3 (x1 + 1) + 10) = -2 x1 + 9: one affine layer, no neurons.
    """
    net = Network.from_arrays(
        [np.eye(2) * [1, -1], np.array([[1.0, 0.0], [3.0, -1.0]]), np.array([[1.0, -1.0]])],
        [np.array([1.0, -1.0]), np.array([1.0, 0.0]), np.array([10.0])],
        relu_last=True,
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 2)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert res.network.describe() == "2-1"
    np.testing.assert_allclose(res.network.layers[0].weight, [[-2.0, 0.0]])
    np.testing.assert_allclose(res.network.layers[0].bias, [9.0])
    assert res.neuron_map[(2, 0)].reason == Reason.RELU_DROPPED
    assert res.neuron_map[(2, 0)].position == (0, 0)
    assert res.neuron_map[(0, 1)].reason == Reason.INACTIVE
    assert res.neuron_map[(0, 1)].proof == Proof.INTERVAL


def test_all_inactive_layer_makes_the_network_constant():
    """x in [0,1]^3; layer 1 is all INACTIVE, so nothing reaches the output::

        x --W0 (UNSTABLE)--> h0 --(-1) rows, bias -10 (INACTIVE)--> h1 --V--> y = V h1 + c

    The whole network becomes ``y = c``: one layer with zero weights (layer 0's neurons die
    once layer 1 is gone)."""
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=(4, 3))
    net = Network.from_arrays(
        [w0, -np.abs(rng.normal(size=(3, 4))), rng.normal(size=(2, 3))],
        [np.zeros(4), np.full(3, -10.0), np.array([1.5, -2.0])],
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 3)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert res.network.describe() == "3-2"
    assert not res.network.layers[0].weight.any()
    assert res.network.layers[0].bias.tolist() == [1.5, -2.0]
    assert res.counts() == {"inactive": 3, "dead": 4}
    assert [r.name for r in res.records] == [
        "remove_inactive",  # layer 1 emptied
        "merge_linear",  # the empty layer merged: the output now ignores h0
        "drop_dead",  # layer 0's neurons read by nobody
        "merge_linear",  # the empty layer 0 merged
    ]


def test_rank_folding_in_the_pipeline():
    """Five ACTIVE neurons fed by two inputs, next to two UNSTABLE ones (x in [0,1]^2):
    the layer keeps at most two of the five (at most three counting the bias)."""
    rng = np.random.default_rng(7)
    w0 = np.vstack([rng.uniform(-1, 1, size=(5, 2)), [[1.0, 0.0], [0.0, 1.0]]])
    b0 = np.array([5.0] * 5 + [-0.5, -0.5])
    net = Network.from_arrays([w0, rng.normal(size=(2, 7))], [b0, np.zeros(2)])
    box = Box.uniform(0.0, 1.0, 2)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert res.network.hidden_widths[0] <= 2 + 2
    assert res.counts()["folded-active"] >= 3
    assert res.kept(0, 5) and res.kept(0, 6)


def test_duplicates_that_appear_after_removing_an_inactive_neuron():
    """x in [-1,1]: layer 0 has z0 = x (UNSTABLE) and z1 = x - 5 (INACTIVE); layer 1 rows
    [1, 4] and [2, -7] (biases -0.5 and -1) differ only on the inactive neuron, so once it is
    gone they are duplicates (z3 = 2 z2) and merge into one neuron."""
    net = Network.from_arrays(
        [np.array([[1.0], [1.0]]), np.array([[1.0, 4.0], [2.0, -7.0]]), np.array([[1.0, 1.0]])],
        [np.array([0.0, -5.0]), np.array([-0.5, -1.0]), np.zeros(1)],
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 1)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert res.network.hidden_widths == (1, 1)
    assert res.neuron_map[(1, 1)].reason == Reason.DUPLICATE
    assert res.neuron_map[(1, 1)].fold.sources == ((1, 0),)
    assert res.neuron_map[(1, 1)].fold.coefficients == (2.0,)


def test_unstable_output_relu_is_kept():
    """ReLU on the output and an UNSTABLE output neuron: the ReLU stays, its neurons kept."""
    net = Network.from_arrays(
        [np.array([[1.0]]), np.array([[1.0], [-1.0]])], [[0.0], [-0.5, 2.0]], relu_last=True
    )
    box = Box.uniform(0.0, 1.0, 1)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert res.network.layers[-1].relu
    assert res.kept(1, 0) and res.kept(1, 1)


def test_records_name_the_passes_and_never_grow():
    case = random_case(11, depth=3, width=8, inputs=3)
    res = compress_network(case.network, interval_report(case.network, case.box))
    assert res.records
    for rec in res.records:
        assert rec.changed and sum(rec.widths_after) <= sum(rec.widths_before)
        assert len(rec.widths_after) <= len(rec.widths_before)
        assert rec.summary()["pass"] == rec.name
    assert sum(res.counts().values()) == case.network.num_neurons


def test_nothing_proven_only_algebraic_rewrites():
    """An empty report: only dead/constant/duplicate neurons may go, with no certificate."""
    case = random_case(3, depth=2, width=6, inputs=2)
    empty = StabilityReport((), np.zeros((0, case.network.input_size)))
    res = compress_network(case.network, empty)
    check_result(case.network, case.box, res)
    for fate in res.neuron_map.values():
        assert fate.kept or fate.reason in (Reason.DEAD, Reason.CONSTANT, Reason.DUPLICATE)


def test_affine_hidden_layer_and_meta_preserved():
    rng = np.random.default_rng(2)
    layers = (
        Layer(rng.normal(size=(3, 2)), rng.normal(size=3), relu=False),
        Layer(rng.normal(size=(4, 3)), rng.normal(size=4), relu=True),
        Layer(rng.normal(size=(2, 4)), rng.normal(size=2), relu=False),
    )
    net = Network(layers, dtype="float32", meta={"input_name": "x"})
    box = Box.uniform(-1.0, 1.0, 2)
    res = compress_network(net, interval_report(net, box))
    check_result(net, box, res)
    assert len(res.network.layers) == 2 and set(res.neuron_map) == {(1, j) for j in range(4)}


def test_report_for_another_network_is_refused():
    net = Network.from_arrays([np.ones((2, 1)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])
    other = Network.from_arrays([np.ones((3, 1)), np.ones((1, 3))], [np.zeros(3), np.zeros(1)])
    with pytest.raises(InvalidNetworkError):
        compress_network(net, interval_report(other, Box.uniform(0, 1, 1)))


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_result_is_a_fixed_point(seed):
    """No pass finds anything more to do on the result (with the carried state), and the
    state's verdicts are those of the original neurons the survivors came from."""
    case = random_case(seed, depth=3, width=8, inputs=2)
    rep = interval_report(case.network, case.box)
    res = compress_network(case.network, rep)
    for rewrite in DEFAULT_PASSES:
        assert not rewrite(res.network, res.state).record.changed
    for k, ls in enumerate(res.state.layers):
        if res.network.layers[k].relu:
            for j, (ok, oj) in enumerate(ls.origin):
                assert ls.verdict[j] == rep.for_layer(int(ok)).verdict[oj]


def test_overflowing_merge_is_not_done():
    """Merging an all-ACTIVE layer would multiply 1e200 by 1e200: the layer stays."""
    net = Network.from_arrays(
        [np.array([[1e200]]), np.array([[1e200]])], [np.array([1.0]), np.zeros(1)]
    )
    res = compress_network(net, report_from(net, [[Verdict.ACTIVE]], Proof.ENUMERATION))
    assert res.network.describe() == "1-1r-1"


def _rounds(net: Network, report: StabilityReport, passes) -> tuple[Network, int]:
    """The fixed point as it was computed before: whole rounds of every pass until a round
    changes nothing; the network and the passes run."""
    from exactcomp.rewrite.state import initial_state
    from exactcomp.tolerances import DEFAULT

    current, state, runs, changed = net, initial_state(net, report), 0, True
    while changed:
        changed = False
        for rewrite in passes:
            out = rewrite(current, state, DEFAULT)
            runs += 1
            changed |= out.record.changed
            current, state = out.network, out.state
    return current, runs


@settings(max_examples=30, derandomize=True, deadline=None)
@given(case=network_and_box(max_neurons=8), exact=st.booleans())
def test_the_fixed_point_stops_mid_round_with_the_same_network(case, exact):
    """The pipeline stops once every pass has run on the current network without a change
    (possibly mid-round): the network of whole rounds, entry for entry, in fewer pass runs."""
    net, box = case
    if exact:
        rep = report_from(net, exact_stability(net, box), Proof.ENUMERATION)
    else:
        rep = interval_report(net, box)
    runs = []
    counted = []
    for p in DEFAULT_PASSES:

        def run(n, s, t, _p=p):
            runs.append(_p.__name__)
            return _p(n, s, t)

        counted.append(run)
    ours = compress_network(net, rep, passes=tuple(counted))
    ref, ref_runs = _rounds(net, rep, DEFAULT_PASSES)
    assert len(ours.network.layers) == len(ref.layers)
    for a, b in zip(ours.network.layers, ref.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert a.relu == b.relu
    assert len(DEFAULT_PASSES) <= len(runs) <= ref_runs
