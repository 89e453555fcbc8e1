"""Small random convolutional networks for the soak: the failure modes of the channel rewrite.

Each case is a :class:`~exactcomp.testing.random_networks.Case` whose layers carry their
structure (:class:`~exactcomp.conv.ConvSpec`, :class:`~exactcomp.conv.PoolLevel`), built
directly in the IR: one or two convolutions with small kernels, strides, dilations and
zero padding, optionally a max-pool (as ReLUs) or an average pool, then a dense head. On
purpose, some channels are

- *inactive on the box*: a bias far below the kernel's reach, so every position is off
  (the channel rewrite removes them; the pooled units after them must go too);
- *dead*: an all-zero kernel and a bias ``<= 0``;
- *constant*: an all-zero kernel and a positive bias (never removed by the channel pass);
- *tied*: a bias exactly ``-max`` of the pre-activation at one position (``max z = 0``).

Sizes stay small (a few dozen ReLUs) so that the soak's exact oracle can check them. A
case written with ``Case.to_json`` loses the structure (the dense layers remain, the same
function), which is enough to replay a failure of the analysis.
"""

from __future__ import annotations

import numpy as np

from ..conv import ConvSpec, PoolLevel, pool_layers
from ..domain import Box
from ..network import Layer, Network
from .random_networks import Case, random_box


def _conv(rng: np.random.Generator, shape: tuple[int, int, int]) -> ConvSpec | None:
    c, h, w = shape
    for _ in range(8):
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        d = (1, 1) if rng.random() < 0.7 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        p = tuple(int(v) for v in rng.integers(0, 2, size=4))
        m = int(rng.integers(1, 4))
        kernel = rng.normal(size=(m, c, *k)).round(3)
        try:
            spec = ConvSpec(shape, kernel, s, p, d, 1)
        except ValueError:
            continue
        if spec.out_features <= 48:
            return spec
    return None


def _biases(rng: np.random.Generator, spec: ConvSpec, box_lo: np.ndarray, box_hi: np.ndarray):
    """Per channel bias, with inactive, dead, constant and tied channels mixed in."""
    m = spec.out_shape[0]
    dense = spec.dense()
    reach = np.abs(dense) @ np.maximum(np.abs(box_lo), np.abs(box_hi))
    kernel = np.array(spec.kernel)
    bias = rng.normal(size=m).round(3)
    for c in range(m):
        kind = rng.choice(["plain", "inactive", "dead", "constant", "tied"],
                          p=[0.4, 0.2, 0.15, 0.1, 0.15])  # fmt: skip
        rows = slice(c * (spec.out_features // m), (c + 1) * (spec.out_features // m))
        if kind == "inactive":
            bias[c] = -float(reach[rows].max()) - 1.0
        elif kind in ("dead", "constant"):
            kernel[c] = 0.0
            bias[c] = -abs(bias[c]) if kind == "dead" else abs(bias[c]) + 0.1
        elif kind == "tied":  # max over the box of the first position's pre-activation
            row = dense[rows][0]
            bias[c] = -float(np.where(row > 0, row * box_hi, row * box_lo).sum())
    return spec.replace(kernel, spec.in_shape[0]), bias


def random_conv_case(seed: int, *, outputs: int = 2, hidden: int = 0) -> Case:
    """A small convolutional network (with structure) and a box, from ``seed``; ``hidden`` > 0:
    a dense ReLU layer of that width (rows of a few nonzeros, one near-copy of another row)
    between the last convolution or pool and the output layer, for the lossy search to
    edit right after the flatten."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(3, 6))
    n = c * h * w
    box: Box = random_box(rng, n, degenerate_prob=0.1)
    layers: list[Layer] = []
    shape = (c, h, w)
    lo, hi = box.lower, box.upper
    for _ in range(int(rng.integers(1, 3))):
        spec = _conv(rng, shape)
        if spec is None:
            break
        spec, bias = _biases(rng, spec, lo, hi)
        per = spec.out_features // spec.out_shape[0]
        layers.append(Layer(spec.dense(), np.repeat(bias, per), True, spec))
        shape = spec.out_shape
        if rng.random() < 0.4 and min(shape[1:]) >= 2:
            layers += _pool(rng, shape)
            shape = (shape[0], *_pooled_hw(layers[-1]))
        size = int(np.prod(shape))  # a rough reach of the next layer's inputs
        lo, hi = np.zeros(size), np.full(size, 10.0)
    width = int(np.prod(shape))
    if hidden > 0:
        w = rng.normal(size=(hidden, width)).round(3) * (rng.random((hidden, width)) < 0.5)
        b = rng.normal(size=hidden).round(3)
        if hidden > 1:  # a near-parallel pair: a merge candidate
            w[1], b[1] = (1.5 * w[0]).round(3), 1.5 * b[0] + 0.01
        layers.append(Layer(w, b, True))
        width = hidden
    layers.append(Layer(rng.normal(size=(outputs, width)).round(3), rng.normal(size=outputs),
                        False))  # fmt: skip
    return Case(Network(tuple(layers), dtype="float64"), box, seed)


def _pooled_hw(layer: Layer) -> tuple[int, int]:
    tag = layer.structure
    assert isinstance(tag, PoolLevel)
    return tag.out_hw


def _pool(rng: np.random.Generator, shape: tuple[int, int, int]) -> list[Layer]:
    """A max-pool (as ReLUs, non-negative input) or an average pool over ``shape``."""
    s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    kind = "max" if rng.random() < 0.6 else "average"
    tag = PoolLevel(kind, shape, (2, 2), s, (0, 0, 0, 0), nonneg=True)
    mats = pool_layers(tag)
    levels = len(mats) - 1
    out = []
    for level, (w, b) in enumerate(mats):
        t = PoolLevel(kind, shape, (2, 2), s, (0, 0, 0, 0), level, levels, True)
        out.append(Layer(w, b, level < levels, t))
    return out


def as_sparse(net: Network) -> Network:
    """``net`` with every structured layer's matrix held as ``scipy.sparse`` (the same
    entries): what the reader makes of a convolution too large to hold densely, so that
    small cases exercise the cone-by-cone analysis (:mod:`exactcomp.stability.cones`)."""
    from scipy import sparse

    layers = [
        Layer(sparse.csr_array(la.weight), la.bias, la.relu, la.structure)
        if la.structure is not None and not la.sparse
        else la
        for la in net.layers
    ]
    return net.replace_layers(layers)
