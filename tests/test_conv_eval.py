"""Convolution layers are evaluated as convolutions (exactcomp.conv_eval), with the dense
matrix's results, and the sample re-check still catches a wrong convolutional network.

Ground truth: the dense matrix of the convolution (``ConvSpec.dense``), which the ONNX reader
checks against onnxruntime. With small integer kernels and inputs every sum is exact in
float64, so both paths must agree bit for bit; with random reals they agree within round-off.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.conv import ConvSpec
from exactcomp.conv_eval import conv_apply, matching_spec
from exactcomp.domain import Box
from exactcomp.errors import VerificationError
from exactcomp.network import Layer, Network
from exactcomp.tolerances import DEFAULT

# (in_shape, kernel shape, strides, pads (top, left, bottom, right), dilations, groups)
SPECS = [
    ((3, 8, 8), (4, 3, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1),  # cifar_base_kw's first layer
    ((2, 5, 7), (3, 2, 3, 2), (1, 2), (0, 1, 2, 0), (1, 1), 1),  # uneven padding
    ((4, 7, 6), (6, 2, 3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2),  # groups and dilation
    ((1, 4, 4), (2, 1, 4, 4), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # one output position
]


def _spec(case, kernel):
    in_shape, _, strides, pads, dilations, groups = case
    return ConvSpec(in_shape, kernel, strides, pads, dilations, groups)


@pytest.mark.parametrize("case", SPECS)
def test_convolution_gives_the_dense_product_bit_for_bit_on_integers(case):
    """Small integers: every partial sum is exact, so the order of additions cannot matter."""
    rng = np.random.default_rng(1)
    spec = _spec(case, rng.integers(-3, 4, size=case[1]).astype(np.float64))
    x = rng.integers(-5, 6, size=(7, spec.in_features)).astype(np.float64)
    w = spec.dense()
    assert np.array_equal(conv_apply(spec, x), x @ w.T)
    assert np.array_equal(conv_apply(spec, x, np.abs(spec.kernel)), x @ np.abs(w).T)


@pytest.mark.parametrize("case", SPECS)
def test_convolution_matches_the_dense_product_within_round_off(case, monkeypatch):
    """Random reals, and a batch cut into pieces (PATCH_ENTRIES small)."""
    import exactcomp.conv_eval as ce

    monkeypatch.setattr(ce, "PATCH_ENTRIES", 50)
    rng = np.random.default_rng(2)
    spec = _spec(case, rng.normal(size=case[1]))
    x = rng.uniform(-1, 1, size=(9, spec.in_features))
    w = spec.dense()
    scale = np.abs(x) @ np.abs(w).T
    assert np.all(np.abs(conv_apply(spec, x) - x @ w.T) <= 1e-14 * scale)


def _conv_net(rng, spec):
    """x -> conv (ReLU) -> dense 3 outputs; the conv layer carries its structure."""
    conv = Layer(spec.dense(), np.repeat(rng.normal(size=spec.out_shape[0]),
                                         spec.out_features // spec.out_shape[0]), True, spec)  # fmt: skip
    head = Layer(rng.normal(size=(3, spec.out_features)), rng.normal(size=3), False)
    return Network((conv, head), dtype="float64")


def test_network_forward_uses_the_convolution_and_agrees_with_the_dense_network():
    rng = np.random.default_rng(3)
    spec = _spec(SPECS[0], rng.normal(size=SPECS[0][1]))
    net = _conv_net(rng, spec)
    assert net.layers[0].conv is spec
    dense = net.replace_layers(
        [Layer(la.weight, la.bias, la.relu) for la in net.layers]
    )  # the same matrices, no structure
    assert dense.layers[0].conv is None
    x = rng.uniform(0, 1, size=(20, net.input_size))
    scale = net.term_scale(x)
    assert np.allclose(scale, dense.term_scale(x), rtol=1e-14, atol=0)
    assert np.all(np.abs(net.forward(x) - dense.forward(x)) <= 1e-14 * scale)
    for a, b in zip(net.preactivations(x), dense.preactivations(x), strict=True):
        assert np.allclose(a, b, rtol=1e-13, atol=1e-13)


def test_a_structure_that_does_not_describe_the_matrix_is_not_used():
    """A stale spec (one matrix entry changed, or a tap moved to a zero) is ignored: the
    layer computes with its matrix, which is what every proof reasons about."""
    rng = np.random.default_rng(4)
    spec = _spec(SPECS[1], rng.normal(size=SPECS[1][1]))
    w = spec.dense()
    assert matching_spec(spec, w) is spec
    changed = w.copy()
    rows, cols, _ = spec.taps
    changed[rows[5], cols[5]] += 1.0
    assert matching_spec(spec, changed) is None
    extra = w.copy()
    zero = np.argwhere(w == 0)[0]
    extra[tuple(zero)] = 0.5
    assert matching_spec(spec, extra) is None
    layer = Layer(changed, np.zeros(w.shape[0]), False, spec)
    x = rng.normal(size=(4, w.shape[1]))
    assert layer.conv is None
    assert np.array_equal(layer.apply(x), x @ changed.T)


@pytest.mark.parametrize("stale", [False, True])
def test_sample_check_catches_one_perturbed_conv_weight_after_compression(stale):
    """Compress a tiny conv network, then change one kernel entry of the result (with its
    structure updated, or left stale): the 100-point re-check refuses it."""
    rng = np.random.default_rng(6)
    spec = _spec(SPECS[0], rng.normal(size=SPECS[0][1]))
    net = _conv_net(rng, spec)
    box = Box.uniform(0.0, 1.0, net.input_size)
    result = api.compress(net, box, check=100)
    g = result.network
    k = next(i for i, la in enumerate(g.layers) if la.conv is not None)
    conv = g.layers[k].conv
    kernel = conv.kernel.copy()
    kernel.flat[np.argmax(np.abs(kernel))] *= 1.01
    bad_spec = conv.replace(kernel, conv.in_shape[0])
    new_w = bad_spec.dense()
    layer = Layer(new_w, g.layers[k].bias, g.layers[k].relu, conv if stale else bad_spec)
    assert (layer.conv is None) == stale
    bad = g.replace_layers([*g.layers[:k], layer, *g.layers[k + 1 :]])
    with pytest.raises(VerificationError):
        api.sample_check(net, bad, [box], points=100, tol=DEFAULT)
