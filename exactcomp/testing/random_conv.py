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

from ..conv import ConvSpec, PoolLevel, pool_layers, pool_windows
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


def random_pool_case(seed: int, *, inputs: int | None = None) -> Case:
    """A max-pool between a dense layer and a dense head, on 2-3 inputs (``inputs``): the
    failure modes of bounding a pool by its windows (:mod:`exactcomp.bounds.pool_block`).

    The pool's geometry is drawn wide (kernels 1-3 x 1-3 but not 1 x 1, strides 1-3, padding
    below the kernel on each side, 1-2 channels of 2-4 x 2-4). The layer before is a ReLU layer (a non-negative
    block, as the readers build after a ReLU) or, one seed in three, linear (a signed block);
    one seed in five the block claims a non-negative input after that linear layer (a tag the
    readers never write: its carries then compute ``max(b, -1)``, not ``b``), and one seed in
    four one entry, bias or ReLU of a level differs from the tag. A dense ReLU layer follows
    the pool on odd seeds. Bounds that trust such a tag would be caught by the exact oracle.
    """
    rng = np.random.default_rng(seed)
    n = int(inputs or rng.integers(2, 4))
    while True:
        shape = (int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if kernel == (1, 1):
            continue
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        pads = tuple(int(rng.integers(0, kernel[i % 2])) for i in range(4))
        tag = PoolLevel("max", shape, kernel, strides, pads)
        oh, ow = tag.out_hw
        if oh >= 1 and ow >= 1 and all(pool_windows(tag)):
            break
    linear = seed % 3 == 0
    nonneg = not linear or seed % 5 == 0
    tag = PoolLevel("max", shape, kernel, strides, pads, nonneg=nonneg)
    units = int(np.prod(shape))
    layers = [Layer(rng.normal(size=(units, n)).round(3), rng.normal(size=units).round(3),
                    not linear)]  # fmt: skip
    mats = pool_layers(tag)
    levels = len(mats) - 1
    for level, (w, b) in enumerate(mats):
        t = PoolLevel("max", shape, kernel, strides, pads, level, levels, nonneg)
        layers.append(Layer(w, b, level < levels, t))
    if seed % 4 == 1:
        k = 1 + int(rng.integers(0, levels + 1))
        layers[k] = _mutated(rng, layers[k])
    width = mats[-1][0].shape[0]
    if seed % 2:
        layers.append(Layer(rng.normal(size=(3, width)).round(3), rng.normal(size=3), True))
        width = 3
    layers.append(Layer(rng.normal(size=(2, width)).round(3), rng.normal(size=2), False))
    return Case(Network(tuple(layers), dtype="float64"), random_box(rng, n), seed)


def _mutated(rng: np.random.Generator, la: Layer) -> Layer:
    """``la`` with one entry or its bias moved, or its ReLU flipped; the same tag."""
    w, b, relu = np.array(la.weight), np.array(la.bias), la.relu
    what = int(rng.integers(0, 3))
    if what == 0:
        i, j = np.argwhere(w != 0)[int(rng.integers(0, np.count_nonzero(w)))]
        w[i, j] *= 1.5
    elif what == 1:
        b[int(rng.integers(0, len(b)))] += 0.5
    else:
        relu = not relu
    return Layer(w, b, relu, la.structure)


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
