"""Opposite units (``z_v = -z_u``, read off the weights) and the identity ``relu(a) - relu(-a)
= a`` in ``verify``'s differential argument (:mod:`exactcomp.stability.constants`,
:mod:`exactcomp.verify.differential`).

A two-level lattice network passes an affine function ``a`` up through its layers as the pair
``relu(a), relu(-a)`` read with weights ``+1, -1``; a compressed copy passes it through fewer
layers. Ground truth: exact rational forward passes (the opposites) and a dense grid of the
2-input box (the differences; every network here is piecewise linear with few pieces).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.stability.constants import layer_classes
from exactcomp.testing.oracle import grid_points
from exactcomp.testing.random_networks import planted_rows_net
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify.coupling import match_neurons
from exactcomp.verify.differential import Side, bound_differences
from exactcomp.verify.formulation import proven_encoding, with_linear_output

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def chain_net() -> Network:
    """``max(a, s)`` with ``a`` passed up two layers as a lattice network passes it.

    ::

        layer 0:  p0 = relu(a)      n0 = relu(-a)      a = x1 - 0.5 x2 + 0.125
                  c0 = relu(s)      d0 = relu(-s)      s = x1 + x2
        layer 1:  p1 = relu(p0 - n0)   n1 = relu(n0 - p0)     (= relu(a), relu(-a))
                  c1 = relu(c0 - d0)   d1 = relu(d0 - c0)     (= relu(s), relu(-s))
        layer 2:  m = relu(p1 - n1 - c1 + d1)                  (= relu(a - s))
                  p2 = relu(p1 - n1)   n2 = relu(n1 - p1)     (= relu(a), relu(-a))
        output:   y = m + p2 - n2                              (= relu(a - s) + a = max(a, s))
    """
    w0 = np.array([[1.0, -0.5], [-1.0, 0.5], [1.0, 1.0], [-1.0, -1.0]])
    b0 = np.array([0.125, -0.125, 0.0, 0.0])
    w1 = np.array([[1.0, -1, 0, 0], [-1.0, 1, 0, 0], [0.0, 0, 1, -1], [0.0, 0, -1, 1]])
    w2 = np.array([[1.0, -1, -1, 1], [1.0, -1, 0, 0], [-1.0, 1, 0, 0]])
    w3 = np.array([[1.0, 1.0, -1.0]])
    return Network.from_arrays(
        [w0, w1, w2, w3], [b0, np.zeros(4), np.zeros(3), np.zeros(1)], dtype="float64"
    )


def folded_net() -> Network:
    """:func:`chain_net` with layers 1 and 2 folded into one (``relu(relu(t) - relu(-t)) =
    relu(t)``): the same function, one layer fewer, as a compressor that knows the identity
    writes it. Its layer 1 equals ``f``'s layer 2 neuron for neuron, and ``p, n`` equal
    neurons of *three* layers of ``f`` on every input.

    ::

        layer 0:  p0, n0, c0, d0 as in chain_net
        layer 1:  m = relu(p0 - n0 - c0 + d0)   p = relu(p0 - n0)   n = relu(n0 - p0)
        output:   y = m + p - n
    """
    f = chain_net()
    w1 = np.array([[1.0, -1, -1, 1], [1.0, -1, 0, 0], [-1.0, 1, 0, 0]])
    return Network.from_arrays(
        [f.layers[0].weight, w1, f.layers[3].weight],
        [f.layers[0].bias, np.zeros(3), np.zeros(1)],
        dtype="float64",
    )


def _sides(f: Network, g: Network, box: Box = BOX):
    fl, gl = with_linear_output(f), with_linear_output(g)
    fs = Side(fl, *proven_encoding(fl, box, DEFAULT, None))
    gs = Side(gl, *proven_encoding(gl, box, DEFAULT, None))
    return fl, gl, fs, gs


def test_the_opposites_of_the_chain_net() -> None:
    """Each ``relu(t), relu(-t)`` pair is opposite (class sums: ``n1`` reads ``n0 - p0``);
    ``m`` has none; the opposites are true at every grid point."""
    net = chain_net()
    cls = layer_classes(net)
    assert cls[0].opposite.tolist() == [1, 0, 3, 2]
    assert cls[1].opposite.tolist() == [1, 0, 3, 2]
    assert cls[2].opposite.tolist() == [-1, 2, 1]
    zs = net.preactivations(grid_points(BOX, 33))
    for k, c in enumerate(cls[:-1]):
        for j, i in enumerate(c.opposite):
            if i >= 0:
                assert np.array_equal(zs[k][:, i], -zs[k][:, j])


def test_the_folded_net_computes_the_chain_net() -> None:
    pts = grid_points(BOX, 65)
    assert np.array_equal(chain_net().forward(pts), folded_net().forward(pts))


def test_links_into_any_of_three_layers_are_exact() -> None:
    """``g``'s ``p`` equals ``p0``, ``p1`` and ``p2`` of ``f``: linked to any of them, the
    identity makes the link exact (before, the first two candidates gave ``|a|``-wide links,
    the pair ``p0, n0`` bounded by its intervals); the outputs are proven equal exactly."""
    f, g = chain_net(), folded_net()
    fl, gl, fs, gs = _sides(f, g)
    for fk, p in ((0, 0), (1, 0), (2, 1)):
        d = bound_differences(fs, gs, [(0, 0, 0, 0), (0, 1, 0, 1), (1, 1, fk, p)], _box())
        assert d.links[(1, 1)][2:4] == (0.0, 0.0)
    pairs = match_neurons(fl, gl, grid_points(BOX, 9), alternatives=1)
    assert (1, 1, 0, 0) in pairs  # the samples cannot tell the layers apart: the earliest
    d = bound_differences(fs, gs, pairs, _box())
    assert d.outputs == ((0.0, 0.0),)


def test_verify_proves_the_folded_net_without_a_milp() -> None:
    """``verify`` of the chain net against its folded copy: EQUIVALENT by the differential
    argument at a tolerance of 1e-12 (fails before the identity: the outputs' bound was
    about 1)."""
    res = verify_equivalence(chain_net(), folded_net(), BOX, tol=1e-12, time_limit=60)
    assert res.status == EquivalenceStatus.EQUIVALENT
    assert "differential" in res.reason and res.milps == 0


def test_a_changed_fold_is_not_proven_equal() -> None:
    """The folded copy with ``a``'s bias changed by 2^-10 in its pass-through pair: the
    identity never hides it. The proven bounds of ``g - f`` enclose every grid difference,
    and ``verify`` at a tolerance below the true gap is not EQUIVALENT."""
    f = chain_net()
    g0 = folded_net()
    w, b = g0.layers[1].weight.copy(), g0.layers[1].bias.copy()
    b[1], b[2] = 2.0**-10, -(2.0**-10)  # p = relu(a + e), n = relu(-a - e): still opposite
    g = g0.replace_layers([g0.layers[0], Layer(w, b, True), g0.layers[2]])
    pts = grid_points(BOX, 129)
    gap = g.forward(pts)[:, 0] - f.forward(pts)[:, 0]
    assert gap.max() > 2.0**-11
    _, _, fs, gs = _sides(f, g)
    fl, gl = fs.net, gs.net
    d = bound_differences(fs, gs, match_neurons(fl, gl, grid_points(BOX, 9), 2), _box())
    lo, hi = d.outputs[0]
    assert lo <= gap.min() and gap.max() <= hi
    res = verify_equivalence(f, g, BOX, tol=2.0**-12, time_limit=60)
    assert res.status != EquivalenceStatus.EQUIVALENT


def _box():
    return (BOX.lower, BOX.upper)


def _random_pair_net(rng: np.random.Generator) -> Network:
    """A random net whose layers hold planted opposite pairs (a row and its negation) and
    rows that read such pairs with opposite weights, dyadic weights throughout."""
    n, widths = int(rng.integers(1, 4)), [int(rng.integers(2, 7)) for _ in range(3)]
    return planted_rows_net(rng, n, widths, share=0.5, sign=-1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_opposites_are_true_in_exact_arithmetic(seed: int) -> None:
    """Every ``opposite[j] = i`` has ``z_i = -z_j`` exactly at sampled inputs, and no unit is
    its own opposite."""
    rng = np.random.default_rng(seed)
    net = _random_pair_net(rng)
    box = Box(-np.ones(net.input_size), np.ones(net.input_size))
    xs = box.sample(4, rng)
    for k, c in enumerate(layer_classes(net)[:-1]):
        cut = net.replace_layers(
            [*net.layers[:k], Layer(net.layers[k].weight, net.layers[k].bias, False)]
        )
        exact = [exact_forward(cut, x) for x in xs]
        for j, i in enumerate(c.opposite):
            assert i != j
            if i >= 0:
                assert all(z[i] == -z[j] for z in exact)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), delta=st.sampled_from([0.0, 2.0**-8, 0.5]))
def test_differential_bounds_enclose_the_exact_differences(seed: int, delta: float) -> None:
    """``f`` a random net with opposite pairs, ``g`` the same with one bias moved by
    ``delta``: the proven bounds on ``g - f`` and on every link enclose the exact values at
    sampled inputs (the identity is sound whatever the pairs' coefficients)."""
    rng = np.random.default_rng(seed)
    f = _random_pair_net(rng)
    k = int(rng.integers(len(f.layers)))
    b = f.layers[k].bias.copy()
    b[int(rng.integers(b.size))] += delta
    g = f.replace_layers(
        [*f.layers[:k], Layer(f.layers[k].weight, b, f.layers[k].relu), *f.layers[k + 1 :]]
    )
    box = Box(-np.ones(f.input_size), np.ones(f.input_size))
    fl, gl, fs, gs = _sides(f, g, box)
    pts = box.sample(40, rng)
    d = bound_differences(fs, gs, match_neurons(fl, gl, pts, 2), (box.lower, box.upper))
    zf = [_exact_layers(fl, x) for x in pts[:20]]
    zg = [_exact_layers(gl, x) for x in pts[:20]]
    lo, hi = d.outputs[0]
    for a, b in zip(zf, zg, strict=True):
        assert lo <= b[-1][0] - a[-1][0] <= hi
        for (gk, q), (fk, p, zlo, zhi, *_) in d.links.items():
            assert zlo <= b[gk][q] - a[fk][p] <= zhi


def _exact_layers(net: Network, x: np.ndarray) -> list:
    """Every layer's pre-activations at ``x`` in exact rational arithmetic."""
    out = []
    for k, la in enumerate(net.layers):
        cut = net.replace_layers([*net.layers[:k], Layer(la.weight, la.bias, False)])
        out.append(exact_forward(cut, x))
    return out


@pytest.mark.parametrize("splits", [True, False])
def test_a_removed_neuron_left_open_is_proven(splits: bool, monkeypatch) -> None:
    """``f`` has ``n = relu(|x| - 1.5)`` (inactive on [-1, 1]: the LP's triangles give ``u + v
    <= 1``, the intervals only ``2``), which ``g`` removed. With ``f``'s interval bounds alone
    the differential argument bounds ``n`` by ``[0, 0.5]``; asked for its sign (by input
    splits, one input; or, splits off, by the LP), it is INACTIVE, and the outputs come out
    equal exactly.

    ::

        f:  u = relu(x)  v = relu(-x);  n = relu(u + v - 1.5)  m = relu(u - v);  y = m + n
        g:  u, v as f;                  m = relu(u - v);                         y = m
    """
    from exactcomp.bounds.interval import interval_bounds
    from exactcomp.verify import seethrough
    from exactcomp.verify.seethrough import prove_unpaired, unpaired

    if not splits:
        monkeypatch.setattr(seethrough, "split_inputs", lambda: 0)
    box = Box(np.array([-1.0]), np.array([1.0]))
    w0, b0 = np.array([[1.0], [-1.0]]), np.zeros(2)
    f = Network.from_arrays(
        [w0, np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 1.0]])],
        [b0, np.array([-1.5, 0.0]), np.zeros(1)],
        dtype="float64",
    )
    g = Network.from_arrays(
        [w0, np.array([[1.0, -1.0]]), np.array([[1.0]])], [b0, np.zeros(1), np.zeros(1)]
    )
    enc_f = (interval_bounds(f, box), [None] * 3)
    gs = Side(g, *proven_encoding(g, box, DEFAULT, None))
    pairs = match_neurons(f, g, grid_points(box, 17), 2)
    assert {k: v.tolist() for k, v in unpaired(f, enc_f, pairs).items()} == {1: [0]}
    bb = (box.lower, box.upper)
    before = bound_differences(Side(f, *enc_f), gs, pairs, bb).outputs[0]
    assert before[0] <= -0.5
    enc, proven = prove_unpaired(f, box, enc_f, pairs, DEFAULT, deadline=float("inf"))
    assert proven == 1 and enc[1][1][0] == Verdict.INACTIVE and enc[0][1][1][0] <= 0
    assert enc_f[1][1] is None  # nothing changed in place
    assert bound_differences(Side(f, *enc), gs, pairs, bb).outputs == ((0.0, 0.0),)


def test_a_target_is_linked_to_the_twin_it_reads() -> None:
    """``f`` holds two near-copies of ``relu(x)`` (``x -+ 2^-30``) and reads only the second;
    ``g``'s ``s = relu(x)`` is proven within ``2^-30`` of both. Linked to the first (the
    sampled tie's first), the output's difference keeps both of ``f``'s neurons, bounded by
    their intervals; with the second as a twin, the output's target links ``s`` to the copy
    it reads and the bound is ``2^-30``, enclosing the exact difference.

    ::

        f:  t2 = relu(x - 2^-30)   t1 = relu(x + 2^-30);   y = t1
        g:  s = relu(x);                                    y = s
    """
    box = Box(np.array([-1.0]), np.array([1.0]))
    e = 2.0**-30
    f = Network.from_arrays(
        [np.array([[1.0], [1.0]]), np.array([[0.0, 1.0]])], [np.array([-e, e]), np.zeros(1)]
    )
    g = Network.from_arrays([np.array([[1.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)])
    fs = Side(f, *proven_encoding(f, box, DEFAULT, None))
    gs = Side(g, *proven_encoding(g, box, DEFAULT, None))
    pts = grid_points(box, 17)
    bb = (box.lower, box.upper)
    alone = match_neurons(f, g, pts, 2)
    assert alone == [(0, 0, 0, 0)]
    lo, hi = bound_differences(fs, gs, alone, bb).outputs[0]
    assert hi - lo > 0.5
    pairs = match_neurons(f, g, pts, 2, twins=3)
    assert pairs == [(0, 0, 0, 0), (0, 0, 0, 1)]
    d = bound_differences(fs, gs, pairs, bb)
    assert d.links[(0, 0)][:4] == (0, 0, e, e)  # the narrowest first: a tie, the first
    lo, hi = d.outputs[0]
    assert -2 * e <= lo <= -e and 0 <= hi <= 2 * e
