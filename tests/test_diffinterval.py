"""The differential bound on networks held sparse (:mod:`exactcomp.verify.diffinterval`):
intervals, and the outputs' differences substituted backward through the same intervals."""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.verify.diffinterval import interval_difference


def test_back_substitution_keeps_the_cancellation_intervals_lose():
    """``f(x) = h_1 - h_2`` with ``h_1 = h_2 = x`` on [0, 1]; ``g`` moves both first-layer
    weights by ``e``: ``g - f = e x - e x = 0``. Intervals charge ``2 e``; substituted
    backward the two differences cancel (no ReLU: each relaxation is exact)."""
    e = 0.01
    f = Network((Layer(np.array([[1.0], [1.0]]), np.zeros(2), False),
                 Layer(np.array([[1.0, -1.0]]), np.zeros(1), False)))  # fmt: skip
    g = Network((Layer(np.array([[1.0 + e], [1.0 + e]]), np.zeros(2), False), f.layers[1]))
    bound = interval_difference(f, g, Box(np.zeros(1), np.ones(1)))
    assert 0.0 <= bound[0] < 1e-6  # the rounding pad only; intervals alone: 2 e = 0.02


@pytest.mark.parametrize("seed", range(12))
def test_the_bound_is_the_same_held_sparse(seed):
    """Random small convolutional networks quantised to 2 bits: the same bound whether the
    layers are held dense or sparse."""
    case = random_conv_case(7000 + seed)
    f = case.network
    g = quantize_network(f, [2] * len(f.layers)).network
    dense = interval_difference(f, g, case.box)
    held = interval_difference(as_sparse(f), as_sparse(g), case.box)
    np.testing.assert_allclose(held, dense, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_the_bound_contains_the_exact_maximum(seed):
    """2-input pairs whose middle layer is linear (an average pool's kind) or a ReLU layer:
    the bound is at least the exact maximum of the oracle."""
    rng = np.random.default_rng(seed)
    shapes, relus = [(5, 2), (4, 5), (3, 4), (2, 3)], [True, bool(seed % 2), True, False]
    f = Network(tuple(Layer(rng.normal(size=s), rng.normal(size=s[0]) * 0.3, r)
                      for s, r in zip(shapes, relus, strict=True)))  # fmt: skip
    g = quantize_network(f, [3] * len(shapes)).network
    box = Box(-rng.random(2), rng.random(2))
    exact = max_output_difference(f, g, box).value
    assert exact <= interval_difference(f, g, box).max() + 1e-12


def test_a_layer_emptied_by_the_exact_pass_held_sparse():
    """A hidden layer of width 0 held sparse (what the exact pass leaves when it removes a
    whole layer's units): the bound is the output layer's constant difference, no crash
    (conv-compress soak case 4 raised in the backward products' reshape)."""
    from scipy import sparse

    f = Network((Layer(sparse.csr_array(np.zeros((0, 2))), np.zeros(0), True),
                 Layer(np.zeros((1, 0)), np.array([0.5]), False)))  # fmt: skip
    g = Network((f.layers[0], Layer(np.zeros((1, 0)), np.array([0.75]), False)))
    bound = interval_difference(f, g, Box(np.zeros(2), np.ones(2)))
    assert 0.25 <= bound[0] < 0.25 + 1e-6
