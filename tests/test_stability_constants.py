"""Constant pre-activations and exact duplicates read off the weights
(:mod:`exactcomp.stability.constants`): decided exactly by the engine, re-proven by the
re-check, and seen through by the differential argument of ``verify``.

Ground truth: a dense grid of the 2-input box (the pre-activation is exactly ``b`` at every
point, in float64 and in exact rational arithmetic) and, for the class facts, exact rational
forward passes of the truncated network at sampled inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import exactcomp
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.stability.constants import layer_classes
from exactcomp.testing.oracle import grid_points
from exactcomp.testing.random_networks import planted_rows_net
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import LayerStability, Proof, StabilityReport, Verdict
from exactcomp.verify import EquivalenceStatus, recheck_certificates, verify_equivalence

ROOT = Path(__file__).resolve().parents[1]
BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def lattice_net() -> Network:
    """A min/max bank as a two-level lattice network builds it (``min(a, b) = a - relu(a -
    b)``), with the copies that make ties: ``a1`` is an exact copy of ``a0``, ``o`` a zero row.

    ::

        layer 0:  a0 = relu(x1 - x2)   a1 = relu(x1 - x2)   c = relu(x1 + x2)   o = relu(0)
        layer 1:  t = relu(a0 - a1)              constant 0 (a tie): INACTIVE
                  s = relu(2 a0 - 2 a1 + 0.25)   constant 0.25: ACTIVE
                  m = relu(c - a0 + 3 o)         unstable
                  u = relu(a0 - a1 + o - 0.5)    constant -0.5: INACTIVE
        layer 2:  v = relu(t + u)                reads null units only: constant 0, INACTIVE
                  p = relu(m + 0.5 s)            ACTIVE (m >= 0, s = 0.25)
        output:   y = v + p
    """
    w0 = np.array([[1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    w1 = np.array([[1.0, -1, 0, 0], [2.0, -2, 0, 0], [-1.0, 0, 1, 3], [1.0, -1, 0, 1]])
    w2 = np.array([[1.0, 0, 0, 1], [0.0, 0.5, 1, 0]])
    return Network(
        (
            Layer(w0, np.zeros(4), True),
            Layer(w1, np.array([0.0, 0.25, 0.0, -0.5]), True),
            Layer(w2, np.zeros(2), True),
            Layer(np.ones((1, 2)), np.zeros(1), False),
        ),
        dtype="float64",
    )


def _preactivation(net: Network, k: int, x: np.ndarray):
    """``z_k(x)`` in exact rational arithmetic (the network cut after layer ``k``)."""
    top = net.layers[k]
    return exact_forward(
        net.replace_layers([*net.layers[:k], Layer(top.weight, top.bias, False)]), x
    )


def test_the_classes_of_the_lattice_net() -> None:
    """Duplicates, constants and null units exactly as drawn in :func:`lattice_net`."""
    cls = layer_classes(lattice_net())
    assert cls[0].label[0] == cls[0].label[1] != cls[0].label[2]
    assert cls[0].constant.tolist() == [False, False, False, True]
    assert cls[0].null.tolist() == [False, False, False, True]
    assert cls[1].constant.tolist() == [True, True, False, True]
    assert cls[1].null.tolist() == [True, False, False, True]
    assert cls[2].constant.tolist() == [True, False]
    assert cls[2].null.tolist() == [True, False]


def test_constants_hold_on_a_dense_grid_and_in_exact_arithmetic() -> None:
    net = lattice_net()
    pts = grid_points(BOX, 65)
    zs = net.preactivations(pts)
    for k, cls in enumerate(layer_classes(net)):
        for j in np.flatnonzero(cls.constant):
            b = net.layers[k].bias[j]
            assert np.all(zs[k][:, j] == b)
            for x in pts[::97]:
                assert _preactivation(net, k, x)[j] == b


def test_the_engine_decides_the_ties_exactly() -> None:
    """Every constant gets its exact verdict; the ties at 0 (``a0 - a1``, the zero row) are
    INACTIVE with the proof ``constant``; the grid shows the one unstable neuron both ways."""
    net = lattice_net()
    rep = stable_neurons(net, BOX, jobs=1)
    by = {ls.layer: ls for ls in rep.layers}
    assert by[0].verdict[3] == Verdict.INACTIVE and by[0].proof[3] == Proof.CONSTANT
    off, on, both = Verdict.INACTIVE, Verdict.ACTIVE, Verdict.UNSTABLE
    assert by[1].verdict.tolist() == [off, on, both, off]
    assert by[1].proof[0] == Proof.CONSTANT
    assert by[2].verdict.tolist() == [off, on]
    assert by[2].proof[0] == Proof.CONSTANT
    assert rep.stats["undecided"] == 0
    z = net.preactivations(grid_points(BOX, 65))[1][:, 2]
    assert z.max() > 0 > z.min()


def test_an_inexact_class_sum_is_no_constant() -> None:
    """Duplicate inputs read with weights ``1`` and ``-(1 + 2^-52)``: the sum ``-2^-52`` is
    exact, not zero; with ``1`` and ``2^-60`` it is not a float64 (no fact); ``1, -1`` is 0."""
    w0 = np.array([[1.0, 0.5], [1.0, 0.5]])
    w1 = np.array([[1.0, -(1.0 + 2.0**-52)], [1.0, 2.0**-60], [1.0, -1.0], [3.0, 2.0**-60]])
    net = Network.from_arrays([w0, w1, np.ones((1, 4))], [np.zeros(2), np.zeros(4), np.zeros(1)])
    cls = layer_classes(net)[1]
    assert cls.constant.tolist() == [False, False, True, False]
    assert len(set(cls.label.tolist())) == 4  # the inexact rows are classes of their own


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_classes_are_true_in_exact_arithmetic(seed: int) -> None:
    """Random networks with planted copies, zero rows and rows reading copies with opposite
    small dyadic weights: units of one class have equal exact pre-activations and constant
    ones equal their bias, at sampled inputs."""
    rng = np.random.default_rng(seed)
    widths, n = [int(rng.integers(2, 6)) for _ in range(3)], int(rng.integers(1, 4))
    net = planted_rows_net(rng, n, widths, share=0.4, zero_rows=0.3)
    box = Box(-np.ones(n), np.ones(n))
    xs = box.sample(4, rng)
    for k, cls in enumerate(layer_classes(net)[:-1]):
        exact = [_preactivation(net, k, x) for x in xs]
        for j in range(len(cls.label)):
            same = np.flatnonzero(cls.label == cls.label[j])
            for z in exact:
                assert all(z[i] == z[j] for i in same)
                if cls.constant[j]:
                    assert z[j] == net.layers[k].bias[j]


def _claims(net: Network, verdicts: dict[int, list[int]]) -> StabilityReport:
    layers = []
    for k in net.relu_layers:
        v = np.array(verdicts.get(k, [0] * net.layers[k].out_features), dtype=np.int8)
        none = np.full(v.size, -1, dtype=np.int64)
        inf = np.full(v.size, np.inf)
        layers.append(LayerStability(k, v, np.zeros(v.size, np.int8), -inf, inf, none, none))
    return StabilityReport(tuple(layers), np.zeros((0, net.input_size)))


def test_the_recheck_reproves_the_ties_and_refutes_a_false_constant_claim() -> None:
    net = lattice_net()
    off, on = int(Verdict.INACTIVE), int(Verdict.ACTIVE)
    good = _claims(net, {0: [0, 0, 0, off], 1: [off, on, 0, off], 2: [off, on]})
    res = recheck_certificates(net, good, BOX, time_limit=30)
    assert res.ok and res.checked["constant"] >= 2
    bad = _claims(net, {1: [on, off, 0, 0]})  # z = 0 is ACTIVE too (min z >= 0); s is not
    res = recheck_certificates(net, bad, BOX, time_limit=5)
    assert [(f.layer, f.neuron) for f in res.failures] == [(1, 1)]


def test_verify_proves_a_compressed_lattice_net_without_a_milp() -> None:
    """The compressor merges ``a0`` and ``a1``: the differential argument sums ``f``'s
    coefficients on the copies and proves the pair equal exactly."""
    net = lattice_net()
    small = compress_network(net, stable_neurons(net, BOX, jobs=1)).network
    assert sum(la.out_features for la in small.layers) < sum(la.out_features for la in net.layers)
    res = verify_equivalence(net, small, BOX, tol=1e-9, time_limit=60)
    assert res.status == EquivalenceStatus.EQUIVALENT
    assert "differential" in res.reason and res.milps == 0


def test_the_tll_file_has_its_ties_read_off_the_weights() -> None:
    """The VNN-COMP 2022 TLL network: 34 exactly zero rows of layer 0, and 16 rows of layer 1
    that read two copies with opposite weights (``a - a``)."""
    net = exactcomp.load(ROOT / "models/real/small/tll_n2_N8_0_0.onnx")
    cls = layer_classes(net)
    assert [int(c.constant.sum()) for c in cls] == [34, 16, 0, 0, 0, 0, 0]
    assert [int(np.sum(net.layers[k].bias[c.constant] <= 0)) for k, c in enumerate(cls)][:2] == [
        34,
        16,
    ]
    assert [len(set(c.label.tolist())) for c in cls] == [43, 35, 32, 16, 8, 4, 1]


def test_a_neuron_equal_to_neurons_of_two_layers_is_linked_to_the_exact_one() -> None:
    """``m = relu(a0 - a1 + 5)`` of layer 1 equals ``e = relu(x1 - x2 + 5)`` of layer 0 on the
    box (``relu(t) - relu(-t) = t``): the samples cannot tell them apart and the earlier layer
    comes first; its link is exact too, since ``a0, a1`` are opposite units read with
    opposite weights (verify24; before, ``a0`` and ``a1`` were bounded by their intervals and
    only the second candidate, ``m`` itself, gave the exact link).

    ::

        layer 0:  a0 = relu(x1 - x2)   a1 = relu(x2 - x1)   e = relu(x1 - x2 + 5)
        layer 1:  m = relu(a0 - a1 + 5)
        output:   y = m + e
    """
    from exactcomp.verify.coupling import match_neurons
    from exactcomp.verify.differential import Side, bound_differences
    from exactcomp.verify.formulation import proven_encoding, with_linear_output

    w0 = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
    f = Network.from_arrays(
        [w0, np.array([[1.0, -1.0, 0.0]]), np.array([[1.0]])],
        [np.array([0.0, 0.0, 5.0]), np.array([5.0]), np.zeros(1)],
        dtype="float64",
    )
    fl = with_linear_output(f)
    side = Side(fl, *proven_encoding(fl, BOX, DEFAULT, None))
    pts = grid_points(BOX, 9)
    widths = []
    for alternatives in (1, 2):
        pairs = match_neurons(fl, fl, pts, alternatives)
        links = bound_differences(side, side, pairs, (BOX.lower, BOX.upper)).links
        fk, p, lo, hi, *_ = links[(1, 0)]
        widths.append((fk, hi - lo))
    assert widths[0] == (0, 0.0)
    assert widths[1] == (0, 0.0)  # an exact first link: the alternative is not tried
