"""Signs read off the weights through the lattice identity (:mod:`exactcomp.stability.lattice`):
``|t|/2 + t/2 = relu(t) >= 0`` with ``z = 0`` on a whole region, a tie no margin decides.

Ground truth: a dense grid of the 2-input box and exact rational forward passes.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.stability.constants import layer_classes
from exactcomp.testing.oracle import grid_points
from exactcomp.verdicts import Proof, Verdict
from exactcomp.verify import EquivalenceStatus, recheck_certificates, verify_equivalence

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def max_net(shift: float = 0.0) -> Network:
    """``relu(a - b)`` written as a lattice network writes ``max(a, b) - b``.

    ::

        layer 0:  pa = relu(a)  na = relu(-a)    a = x1 - 0.5 x2 + 0.25
                  pb = relu(b)  nb = relu(-b)    b = 0.5 x1 + x2
                  pd = relu(d)  nd = relu(-d)    d = a - b (+ shift)
        layer 1:  up = relu(a/2 - b/2 + |d|/2)   = relu(a - b) >= 0: ACTIVE (z = 0 where a <= b)
                  dn = relu(b/2 - a/2 - |d|/2)   = -relu(a - b) <= 0: INACTIVE
                  e  = relu(a - b)             unstable
        output:   y = up + dn + e

    (``a/2 = pa/2 - na/2``, ``|d|/2 = pd/2 + nd/2``.) With ``shift != 0``, ``d`` is not
    ``a - b`` and neither sign holds everywhere.
    """
    wa, wb = np.array([1.0, -0.5]), np.array([0.5, 1.0])
    ba, bb = 0.25, 0.0
    w0 = np.array([wa, -wa, wb, -wb, wa - wb, wb - wa])
    b0 = np.array([ba, -ba, bb, -bb, ba - bb + shift, bb - ba - shift])
    up = np.array([0.5, -0.5, -0.5, 0.5, 0.5, 0.5])
    e = np.array([1.0, -1.0, -1.0, 1.0, 0.0, 0.0])
    w1 = np.array([up, -up, e])
    return Network.from_arrays(
        [w0, w1, np.ones((1, 3))], [b0, np.zeros(3), np.zeros(1)], dtype="float64"
    )


def test_the_grid_shows_the_ties() -> None:
    """``up >= 0`` with ``up = 0`` on a region (the tie), ``dn`` the mirror, ``e`` both signs;
    exact at a few points."""
    net = max_net()
    pts = grid_points(BOX, 65)
    z = net.preactivations(pts)[1]
    assert z[:, 0].min() >= -1e-15 and np.mean(z[:, 0] <= 1e-15) > 0.2
    assert z[:, 1].max() <= 1e-15
    for x in pts[::211]:
        cut = net.replace_layers([net.layers[0], Layer(net.layers[1].weight, np.zeros(3), False)])
        zx = exact_forward(cut, x)
        assert zx[0] >= 0 and zx[1] <= 0 and zx[0] == -zx[1]


def test_the_weights_prove_the_signs() -> None:
    cls = layer_classes(max_net())[1]
    assert cls.floor.tolist()[:2] == [0.0, -np.inf] and cls.ceiling.tolist()[:2] == [np.inf, 0.0]
    assert cls.null.tolist() == [False, True, False]
    assert cls.floor[2] == -np.inf and cls.ceiling[2] == np.inf


def test_a_shifted_difference_proves_nothing() -> None:
    """``d = a - b + 2^-20``: ``up`` dips to ``-2^-21`` where ``a < b``; the rule proves
    that bound exactly, and no sign."""
    net = max_net(2.0**-20)
    cls = layer_classes(net)[1]
    assert cls.floor[0] == -(2.0**-21) and cls.ceiling[1] == 2.0**-21
    assert not np.any(cls.floor >= 0) and not np.any(cls.ceiling <= 0) and not cls.null.any()
    z = net.preactivations(grid_points(BOX, 65))[1]
    assert z[:, 0].min() == -(2.0**-21)


def test_the_engine_and_the_recheck_decide_the_ties() -> None:
    """``up`` ACTIVE and ``dn`` INACTIVE with the proof ``constant`` (no margin-based phase
    decides a tie over a region); the re-check re-proves both from the weights; the
    compressed network is verified equal."""
    net = max_net()
    rep = stable_neurons(net, BOX, jobs=1)
    layer = {ls.layer: ls for ls in rep.layers}[1]
    assert layer.verdict[0] == Verdict.ACTIVE and layer.proof[0] == Proof.CONSTANT
    assert layer.verdict[1] == Verdict.INACTIVE and layer.proof[1] == Proof.CONSTANT
    assert layer.verdict[2] == Verdict.UNSTABLE
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok and res.checked["constant"] >= 2
    small = compress_network(net, rep).network
    assert small.layers[1].out_features < 3
    out = verify_equivalence(net, small, BOX, tol=1e-9, time_limit=60)
    assert out.status == EquivalenceStatus.EQUIVALENT


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_proven_signs_hold_in_exact_arithmetic(seed: int) -> None:
    """Random lattice-like nets (affine functions, their negations and differences, rows
    reading them with weights ``+-1/2``): every proven floor and ceiling holds exactly at
    sampled inputs."""
    rng = np.random.default_rng(seed)
    n = 2
    base = rng.integers(-4, 5, size=(3, n)) / 4
    bias = rng.integers(-2, 3, size=3) / 4
    rows, bs = [], []
    for i in range(3):
        for j in range(3):
            if i <= j:
                w, b = base[i] - (base[j] if i < j else 0), bias[i] - (bias[j] if i < j else 0)
                rows += [w, -w]
                bs += [b, -b]
    w0, b0 = np.array(rows), np.array(bs)
    w1 = rng.choice([-0.5, 0.0, 0.5], size=(8, w0.shape[0]))
    b1 = rng.integers(-1, 2, size=8) / 4
    net = Network.from_arrays([w0, w1, np.ones((1, 8))], [b0, b1, np.zeros(1)], dtype="float64")
    cls = layer_classes(net)[1]
    cut = net.replace_layers([net.layers[0], Layer(w1, b1, False)])
    for x in Box(-np.ones(n), np.ones(n)).sample(8, rng):
        z = exact_forward(cut, x)
        for j in range(8):
            assert cls.floor[j] <= z[j] <= cls.ceiling[j]


def abs_net(bias: float, sign: float = 1.0, off: float = 0.0) -> Network:
    """``z = sign (relu(a) + relu(-a - off)) + t - t + bias``: with ``off = 0``,
    ``sign |a| + bias``, the ``t`` written twice as a lattice network passes it on.

    ::

        layer 0:  p = relu(a)   n = relu(-a - off)      a = x1 - x2/2 + 1/8
                  q = relu(t)   m = relu(-t)            t = x1/4 + x2 - 1/2
                  q2 = relu(2t) m2 = relu(-2t)
        layer 1:  z = relu(sign (p + n) + (q - m) - (q2 - m2)/2 + bias)
        output:   y = z

    ``sign = 1``: ``z >= bias``, ACTIVE on every input iff ``bias >= 0`` (``a = 0`` is
    reached, so ``bias < 0`` is unstable); ``sign = -1``: ``z <= bias``, INACTIVE iff
    ``bias <= 0``. No margin-based bound decides the tie ``z = bias`` on ``a = 0``, nor sees
    ``t - t`` cancel. ``off != 0``: ``n`` is not ``a``'s opposite.
    """
    wa, wt = np.array([1.0, -0.5]), np.array([0.25, 1.0])
    w0 = np.array([wa, -wa, wt, -wt, 2 * wt, -2 * wt])
    b0 = np.array([0.125, -0.125 - off, -0.5, 0.5, -1.0, 1.0])
    w1 = np.array([[sign, sign, 1.0, -1.0, -0.5, 0.5]])
    return Network.from_arrays(
        [w0, w1, np.ones((1, 1))], [b0, np.array([bias]), np.zeros(1)], dtype="float64"
    )


WIDE = Box(np.array([-1000.0, -1000.0]), np.array([1000.0, 1000.0]))


def _exact_range(net: Network, box: Box) -> tuple:
    """``min``/``max`` of layer 1's ``z`` over ``box`` exactly: at the grid points and on the
    line ``a = 0`` (the only kink), where ``x2 = 2 x1 + 1/4``."""
    cut = net.replace_layers(
        [net.layers[0], Layer(net.layers[1].weight, net.layers[1].bias, False)]
    )
    pts = list(grid_points(box, 9)) + [np.array([t, 2 * t + 0.25]) for t in (-1.0, 0.0, 0.5)]
    zs = [exact_forward(cut, x)[0] for x in pts]
    return min(zs), max(zs)


@pytest.mark.parametrize("bias", [0.0, 2.0**-60, -(2.0**-60)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_abs_of_a_pair_is_read_off_the_weights(bias: float, sign: float) -> None:
    """``relu(a) + relu(-a) = |a| >= 0`` (the signs' choice ``sigma = 0``): the floor (or
    ceiling) is the bias exactly; ACTIVE (INACTIVE) by the ``constant`` proof on a wide box
    where the bias allows it, and nothing claimed where it does not (the exact range at the
    tie ``a = 0`` crosses 0)."""
    net = abs_net(bias, sign)
    cls = layer_classes(net)[1]
    if sign > 0:
        assert cls.floor[0] == bias and cls.ceiling[0] == np.inf
    else:
        assert cls.ceiling[0] == bias and cls.floor[0] == -np.inf
    lo, hi = _exact_range(net, WIDE)
    assert (lo if sign > 0 else hi) == bias  # the tie is reached: the bound is the truth
    layer = {ls.layer: ls for ls in stable_neurons(net, WIDE, jobs=1).layers}[1]
    want = Verdict.ACTIVE if sign > 0 else Verdict.INACTIVE
    if sign * bias >= 0:
        assert layer.verdict[0] == want and layer.proof[0] == Proof.CONSTANT
    else:
        assert layer.verdict[0] != want
        assert lo < 0 < hi


@pytest.mark.parametrize("off", [2.0**-55, -(2.0**-55), 2.0**-20])
def test_abs_of_an_ulp_off_opposite_claims_no_more_than_the_truth(off: float) -> None:
    """``n = relu(-a - off)`` is not ``a``'s opposite: no pair is read, ``p`` and ``n`` are
    singles (``z >= 0`` from ``h >= 0``, true: ``0`` on ``[-off, 0]`` for ``off > 0``,
    ``|off|`` for ``off < 0``), and nothing claims more than the exact range."""
    net = abs_net(0.0, 1.0, off)
    assert layer_classes(net)[0].opposite[:2].tolist() == [-1, -1]
    cls = layer_classes(net)[1]
    lo, hi = _exact_range(net, WIDE)
    assert cls.floor[0] <= lo and cls.ceiling[0] >= hi
    assert lo == max(0, -Fraction(off))
