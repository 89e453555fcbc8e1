"""Per-box back-substitution (:mod:`exactcomp.verify.ragged`).

Each (box, neuron) pair is bounded with its own box's relaxations: the bounds equal, row for
row, those of :func:`exactcomp.bounds.batched.batched_layer_bounds` on the same boxes (which
bounds every neuron on every box), and they enclose the pre-activations at sampled points of
each box. The network (random, 3 inputs, widths 6-5-4-2) and the boxes are tiny::

    x (3) -> [6] relu -> [5] relu -> [4] relu -> [2]
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bounds.batched import batched_layer_bounds, static_pad
from exactcomp.bounds.linear import linear_bounds, relu_relaxation
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.tolerances import DEFAULT
from exactcomp.verify import ragged
from exactcomp.verify.ragged import ragged_layer_bounds


def _net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [3, 6, 5, 4, 2]
    ws = [rng.normal(size=(b, a)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [rng.normal(size=b) * 0.5 for b in sizes[1:]]
    return Network.from_arrays(ws, bs, dtype="float64")


def _boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random sub-boxes of ``[-1, 1]^3``."""
    a, b = rng.uniform(-1, 1, size=(n, 3)), rng.uniform(-1, 1, size=(n, 3))
    return np.minimum(a, b), np.maximum(a, b)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk", [3, 1024])
def test_ragged_bounds_equal_batched_and_enclose_samples(seed, chunk, monkeypatch) -> None:
    monkeypatch.setattr(ragged, "CHUNK", chunk)  # 3: pairs substituted in several chunks
    net = _net(seed)
    rng = np.random.default_rng(100 + seed)
    root_box = Box(-np.ones(3), np.ones(3))
    root = linear_bounds(net, root_box, tol=DEFAULT)
    lo, hi = _boxes(rng, 7)
    mag = np.ones(3)
    pre: list[tuple[np.ndarray, np.ndarray]] = []
    relax = []
    for k in range(len(net.layers) - 1):
        if k == 0:
            w, b = net.layers[0].weight, net.layers[0].bias
            c, r = (lo + hi) / 2, (hi - lo) / 2
            zl = c @ w.T + b - r @ np.abs(w).T - 1e-9
            zu = c @ w.T + b + r @ np.abs(w).T + 1e-9
        else:
            pad = static_pad(net, k, root, mag, DEFAULT)
            bl, bu = batched_layer_bounds(net, k, lo, hi, pre, pad)
            # every pair, in a shuffled order, some boxes absent and some repeated
            box = rng.integers(0, len(lo), size=20)
            neuron = rng.integers(0, net.layers[k].out_features, size=20)
            rl, ru = ragged_layer_bounds(net, k, lo, hi, relax, box, neuron, pad)
            np.testing.assert_allclose(rl, bl[box, neuron], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(ru, bu[box, neuron], rtol=1e-12, atol=1e-12)
            zl, zu = bl, bu
        zl, zu = np.maximum(zl, root[k][0]), np.minimum(zu, root[k][1])
        pre.append((zl, zu))
        relax.append(relu_relaxation(zl, zu, relu=net.layers[k].relu))
        # the bounds enclose sampled pre-activations of each box
        for n in range(len(lo)):
            x = rng.uniform(lo[n], hi[n], size=(200, 3))
            zs = net.preactivations(x)[k]
            assert (zs >= zl[n] - 1e-12).all() and (zs <= zu[n] + 1e-12).all()


def _pad_by_products(net, k, root, mag_x):
    """``static_pad``'s sum as it reads, through the products ``|W_k| D_{k-1} ... |W_j|``."""
    mag = [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in root]
    a = np.abs(net.layers[k].weight)
    scale = a @ mag[k - 1] + np.abs(net.layers[k].bias)
    for j in range(k - 1, -1, -1):
        lj = net.layers[j]
        if lj.relu:
            a = a * (root[j][1] >= 0.0)
        below = mag[j - 1] if j > 0 else mag_x
        scale = scale + a @ (2 * mag[j]) + a @ (np.abs(lj.weight) @ below + np.abs(lj.bias))
        a = a @ np.abs(lj.weight)
    return 2 * scale + a @ mag_x


@pytest.mark.parametrize("seed", range(6))
def test_static_pad_is_the_sum_through_the_products(seed) -> None:
    """Horner's rule (matrix-vector products) gives the sum of the products' form."""
    net = _net(seed)
    box = Box(-np.ones(3), np.ones(3))
    root = linear_bounds(net, box, tol=DEFAULT)
    mag = np.ones(3) * (1 + seed)
    for k in range(1, len(net.layers)):
        want = _pad_by_products(net, k, root, mag)
        got = static_pad(net, k, root, mag, DEFAULT)[: len(want)] - DEFAULT.bound_abs
        np.testing.assert_allclose(got / DEFAULT.bound_rel, want, rtol=1e-12)
