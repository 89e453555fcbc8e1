"""The shared-prefix proof of :mod:`exactcomp.verify.prefix` and ``compress --tol`` on networks
held sparse (issue 15).

Cases: :func:`~exactcomp.testing.random_conv.random_conv_case` with a dense ReLU head
(``hidden``), its convolutions and pools held sparse (:func:`~exactcomp.testing.random_conv.as_sparse`)::

    x -> Conv (sparse) -> Relu [-> pool levels (sparse)] -> Flatten -> Gemm h -> Relu -> Gemm 2
                                                                    ^ cut: the dense tail

Ground truth: the exact ``max |f - g|`` over the box (joint regions, one LP each:
:func:`~exactcomp.testing.oracle.max_output_difference`) must lie within every proven bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.verify.charge import Charger
from exactcomp.verify.diffinterval import interval_difference
from exactcomp.verify.prefix import cut, shared_prefix, tail, tail_box

SEEDS = (0, 1, 2, 3, 5)


def _case(seed: int):
    case = random_conv_case(seed, hidden=4)
    return Network(case.network.layers, dtype="float32"), case.box


def _perturbed(f: Network, first: int, seed: int, size: float = 0.05) -> Network:
    """``f`` with every dense layer from ``first`` on perturbed (weights and biases)."""
    rng = np.random.default_rng(seed)
    layers = list(f.layers)
    for k in range(first, len(layers)):
        la = layers[k]
        w = np.array(la.weight) + size * rng.normal(size=la.weight.shape)
        layers[k] = Layer(w, la.bias + size * rng.normal(size=la.out_features), la.relu)
    return f.replace_layers(layers)


def test_shared_prefix_compares_numbers_dense_or_sparse():
    f, _ = _case(1)
    s = as_sparse(f)
    assert shared_prefix(f, s) == len(f.layers)  # the same numbers, held otherwise
    assert cut(s) == 1 + max(k for k, la in enumerate(s.layers) if la.sparse) and cut(f) == 0
    bias = f.layers[1].bias.copy()
    bias[0] += 2.0**-30
    g = f.replace_layers([*f.layers[:1], Layer(f.layers[1].weight, bias, f.layers[1].relu),
                          *f.layers[2:]])  # fmt: skip
    assert shared_prefix(s, g) == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_tail_box_encloses_the_prefix_outputs(seed):
    f, box = _case(seed)
    s = as_sparse(f)
    k = cut(s)
    a = tail_box(s, k, box)
    x = box.lower + (box.upper - box.lower) * np.random.default_rng(seed).random((2000, box.dim))
    x = np.vstack([x, box.lower, box.upper])
    h = x
    for la in f.layers[:k]:
        h = h @ np.array(la.weight).T + la.bias
        h = np.maximum(h, 0.0) if la.relu else h
    assert (h >= a.lower - 1e-9).all() and (h <= a.upper + 1e-9).all()
    assert np.array_equal(tail(s, k).layers[0].weight, s.layers[k].weight)


@pytest.mark.parametrize("seed", SEEDS)
def test_tail_proof_contains_the_exact_max_and_is_no_looser(seed):
    """g differs from f in the dense head only: the charger's bound (the smaller of the
    differential interval bound and the tails' on the box A) is >= the exact max and <=
    the interval bound; the tails' charger is what gives it."""
    f, box = _case(seed)
    s = as_sparse(f)
    charger = Charger(s, [box])
    assert charger._tail is not None
    for first in range(charger.cut, len(f.layers)):
        g = _perturbed(s, first, seed + 10 * first)
        proven = charger.proven(g)
        exact = max_output_difference(f, g, box).value
        loose = float(interval_difference(s, g, box).max())
        assert exact <= proven + 1e-9 * (1.0 + exact)
        assert proven <= loose


@pytest.mark.parametrize("seed", (0, 2))
def test_an_edit_before_the_cut_gets_the_interval_bound(seed):
    """A sparse layer's bias changed: no shared prefix up to the cut, so the bound is the
    differential interval bound alone, and still >= the exact max."""
    f, box = _case(seed)
    s = as_sparse(f)
    la = s.layers[0]
    g = s.replace_layers([Layer(la.weight, la.bias + 0.01, la.relu, la.structure),
                          *s.layers[1:]])  # fmt: skip
    proven = Charger(s, [box]).proven(g)
    assert proven == float(interval_difference(s, g, box).max())
    assert max_output_difference(f, g, box).value <= proven + 1e-9


@pytest.mark.parametrize("seed", (1, 5))
def test_compress_tol_on_a_sparse_network_is_sound_and_keeps_it_sparse(seed):
    """``compress --tol`` (issue 15): the dense head is pruned, every sparse layer is
    written as the exact pass left it (its matrix and structure: never densified), and the
    claim holds against the exact max."""
    f, box = _case(seed)
    s = as_sparse(f)
    span = float(np.ptp(f.forward(np.vstack([box.lower, box.center, box.upper]))))
    res = api.compress_lossy(s, box, 0.1 * max(span, 0.1), time_limit=6.0, lp_seconds=1.0)
    assert res.proven <= 0.1 * max(span, 0.1)
    assert max_output_difference(f, res.network, box).value <= res.proven + 1e-9
    ref = res.reference
    assert any(la.sparse for la in ref.layers)
    for a, b in zip(ref.layers, res.network.layers, strict=False):
        if not a.sparse:
            break
        assert b.sparse and b.structure is a.structure
        assert not abs(a.weight - b.weight).sum() and np.array_equal(a.bias, b.bias)
    assert res.report["parameters_after"] < res.report["parameters_before"]
