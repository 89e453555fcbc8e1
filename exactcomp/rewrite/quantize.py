r"""Weight quantisation: per-output-channel symmetric uniform grids, ternary and float16.

Each weight matrix ``W`` (rows = output channels) is replaced by ``Q = q * s`` with ``q`` an
integer matrix and ``s`` one float32 scale per row; biases are kept as they are.

* ``B`` bits (8, 4, 3, 2): :math:`q_{ij} = \mathrm{round}(W_{ij} / s_i)`,
  :math:`s_i = \max_j |W_{ij}| / (2^{B-1} - 1)`, so :math:`q \in [-(2^{B-1}-1), 2^{B-1}-1]`
  (symmetric: zero point 0).
* ternary (``B = 1.5``): :math:`q \in \{-1, 0, 1\}`, weights with :math:`|W_{ij}| \le 0.7\,
  \mathrm{mean}_j |W_{ij}|` go to 0 and the scale :math:`s_i` is the mean magnitude of the
  others (the least-squares scale for that support; Li and Liu's ternary weight networks).
* float16: the weights rounded to float16 (``q`` is then the float16 matrix itself, ``s = 1``).

**Exact dequantisation.** Each scale is rounded to :data:`SCALE_BITS` significant bits, so
that :math:`q_{ij} s_i` (:math:`|q| \le 127`, 7 bits) has at most 24 significant bits and is
*exactly* a float32: onnxruntime's ``DequantizeLinear`` (which computes ``q * s`` in float32)
and a float32 state_dict of the dequantised weights then hold the same numbers as the float64
network the proofs are about. Nothing is rounded after the proof.

The quantised network keeps the architecture, so the differential bounds of
:mod:`exactcomp.verify.symbolic` compare it with the original neuron by neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidOptionError
from ..network import Layer, Network

#: Supported ``bits``: uniform grids, ternary (1.5) and float16 (16).
BITS: tuple[float, ...] = (16, 8, 4, 3, 2, 1.5)
SCALE_BITS = 16  # significant bits of a scale: q * s is exact in float32 for |q| <= 127
TERNARY_THRESHOLD = 0.7  # |w| <= 0.7 mean |w| goes to 0 (ternary weight networks)


def check_bits(bits: float) -> float:
    """``bits`` as a supported value, or :class:`InvalidOptionError` naming the set."""
    try:
        b = float(bits)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"--bits must be a number, got {bits!r}") from None
    if b not in BITS:
        raise InvalidOptionError(
            f"--bits must be one of 8, 4, 3, 2, 1.5 (ternary) or 16 (float16), got {bits}"
        )
    return b


def storage_bits(bits: float) -> int:
    """Bits per stored weight of a ``bits`` grid in the ONNX file: 16 (float16), 8 (8-bit
    grid, INT8), 4 (3- and 4-bit grids, INT4) or 2 (2-bit and ternary grids, whose integers
    are -1, 0, 1: INT2, ONNX opset 25)."""
    return 16 if bits == 16 else (8 if bits > 4 else (4 if bits > 2 else 2))


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One quantised matrix: integers ``q`` (int8; float16 for ``bits == 16``), float32
    ``scale`` per row, and ``bits``. ``dequantized`` is ``q * scale``, exact in float32."""

    q: np.ndarray
    scale: np.ndarray
    bits: float

    @property
    def dequantized(self) -> np.ndarray:
        return self.q.astype(np.float64) * self.scale.astype(np.float64)[:, None]

    @property
    def storage_bits(self) -> int:
        """Bits per stored weight (:func:`storage_bits`)."""
        return storage_bits(self.bits)

    def entropy(self) -> float:
        """Empirical entropy of the stored values, in bits per weight (what Huffman coding of
        the matrix would approach)."""
        if self.q.size == 0:
            return 0.0
        _, counts = np.unique(self.q, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())


def _round_scale(s: np.ndarray) -> np.ndarray:
    """Scales as float32 with at most :data:`SCALE_BITS` significant bits (rounded up, so that
    the grid still reaches ``max |W|``); 0 becomes 1 (an all-zero row)."""
    s = np.where(s > 0, s, 1.0)
    mant, exp = np.frexp(s)
    mant = np.ceil(mant * 2.0**SCALE_BITS) / 2.0**SCALE_BITS
    return np.ldexp(mant, exp).astype(np.float32)


def quantize_weight(w: np.ndarray, bits: float) -> QuantizedWeight:
    """Quantise a matrix per row (see the module docstring)."""
    bits = check_bits(bits)
    w = np.asarray(w, dtype=np.float64)
    if bits == 16:
        return QuantizedWeight(w.astype(np.float16), np.ones(w.shape[0], np.float32), bits)
    mag = np.abs(w)
    if bits == 1.5:
        mean = mag.mean(axis=1, keepdims=True) if w.shape[1] else np.zeros((w.shape[0], 1))
        keep = mag > TERNARY_THRESHOLD * mean
        count = np.maximum(keep.sum(axis=1), 1)
        scale = _round_scale((mag * keep).sum(axis=1) / count)
        q = np.where(keep, np.sign(w), 0.0)
        return QuantizedWeight(q.astype(np.int8), scale, bits)
    top = 2 ** (int(bits) - 1) - 1
    scale = _round_scale(mag.max(axis=1, initial=0.0) / top)
    q = np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -top, top)
    return QuantizedWeight(q.astype(np.int8), scale, bits)


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    """A network whose weights are dequantised grids, and the grids (None: layer kept as is)."""

    network: Network
    weights: tuple[QuantizedWeight | None, ...]

    def bits_per_weight(self) -> float:
        """Stored bits per weight over all layers (32 for a layer kept in float32)."""
        total = sum(la.weight.size for la in self.network.layers)
        stored = sum(
            la.weight.size * (32 if qw is None else qw.storage_bits)
            for la, qw in zip(self.network.layers, self.weights, strict=True)
        )
        return stored / max(total, 1)

    def entropy_bits(self) -> float:
        """Empirical entropy per weight, averaged over all weights (float32 layers count 32)."""
        total = sum(la.weight.size for la in self.network.layers)
        bits = sum(
            la.weight.size * (32.0 if qw is None else qw.entropy())
            for la, qw in zip(self.network.layers, self.weights, strict=True)
        )
        return bits / max(total, 1)


def quantize_network(net: Network, bits: Sequence[float | None]) -> QuantizedNetwork:
    """Quantise layer ``k`` to ``bits[k]`` (None: keep it); biases are rounded to float32,
    and the result is a float32 network (what the written file holds, exactly)."""
    if len(bits) != len(net.layers):
        raise InvalidOptionError(f"{len(bits)} bit widths for {len(net.layers)} layers")
    layers, grids = [], []
    for layer, b in zip(net.layers, bits, strict=True):
        qw = None if b is None else quantize_weight(layer.weight, b)
        w = layer.weight.astype(np.float32) if qw is None else qw.dequantized
        layers.append(Layer(w, layer.bias.astype(np.float32), layer.relu))
        grids.append(qw)
    return QuantizedNetwork(
        Network(tuple(layers), dtype="float32", meta=dict(net.meta)), tuple(grids)
    )
