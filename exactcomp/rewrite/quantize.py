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

**Compensation on the domain** (``compensation=`` :class:`Compensation`; the post-training
quantisation recipe aimed at the domain the error is proven on). Layer :math:`k`'s weight
error :math:`E = Q - W` adds :math:`E\,a(x)` to its pre-activation, :math:`a = a_{k-1}` the
original network's input to the layer (:math:`a_{-1} = x`). Over points :math:`x^{(1..N)}`
drawn uniformly from the domain let :math:`\mu` be the mean of :math:`a` and :math:`C` its
covariance.

* *Bias correction*: the float32 bias becomes :math:`b - E \mu`, so the layer adds
  :math:`E\,(a - \mu)`, whose mean over the domain is 0: the shift that every point pays
  is gone, and what is left is the error's spread. (The centre of proven interval bounds of
  :math:`a`, which minimises the row's interval worst case :math:`|E_i c| + |E_i|\, r`, was
  measured too: worse sampled error, the same proven one; benchmarks/RESULTS.md "quant7".)
  Nothing is stored differently: the bias stays float32.
* *Scale search* (grids of at most :data:`SEARCH_MAX_BITS` bits): per row, the scale
  :math:`s_i = \rho \max_j |W_{ij}| / (2^{B-1}-1)` for each clipping ratio :math:`\rho` of
  :data:`CLIP_RATIOS` (1 first), rounded as above, :math:`q = \mathrm{clip}(\mathrm{round}
  (W_i / s_i))`; the row keeps the :math:`\rho` of least cost :math:`E_i C E_i^\top` (the
  variance the row adds over the domain; ties: the larger ratio), so no row costs more than
  round-to-nearest at :math:`\rho = 1`; and only if the row's worst case over the points'
  spread, :math:`\sum_j |E_{ij}| \max_x |a_j - \mu_j|`, is no larger than at :math:`\rho = 1`
  (the guard: the same proven bound, a lower sampled error on 4 of 5 assignments measured;
  "quant7" also records the one assignment, [8, 4, 8], whose sampled error the search
  raises). The interval cost :math:`\sum_j |E_{ij}|\, r_j` (:math:`r` the proven
  half-widths) was measured too: the proven bound about the same, the sampled error larger. At 8 bits half a step is 0.4 % of :math:`\max |W_i|`: clipping
  only re-rounds, and it measured worse, so 8-bit grids keep :math:`\rho = 1`.
* *Rounding direction* (grids of 2-8 bits; AdaRound's floor-or-ceil choice, aimed at the
  outputs): with :math:`J(x) = \partial f / \partial z_k` the original's output Jacobian
  with respect to the layer's pre-activation and :math:`M = \mathrm{mean}_x J^\top J`, the
  output error the layer adds is about :math:`J E (a - \mu)`, of mean square
  :math:`L(E) = \mathrm{tr}(M E C E^\top)` (taking :math:`J` and :math:`a` as uncorrelated).
  Per-row costs are separable, so round-to-nearest already minimises them; :math:`L` is not:
  rows' errors can cancel in the outputs. Greedy: with :math:`G = \partial L / \partial E =
  2 M E C`, moving weight :math:`(i, j)` to its other grid neighbour (:math:`\delta = \pm
  s_i`) changes :math:`L` by :math:`G_{ij} \delta + M_{ii} C_{jj} \delta^2`; the most
  negative move is made and :math:`G` updated by :math:`2 \delta M_{:,i} C_{j,:}`, until no
  move lowers :math:`L` (or :data:`ROUNDING_STEPS` moves, fewer on wide matrices:
  :data:`ROUNDING_WORK`). Only weights within
  :data:`ROUNDING_BAND` of a tie (:math:`|W_{ij}/s_i - q_{ij}| \ge 1/2 -` band) may move:
  each move then raises :math:`|E_{ij}|` by at most 2 band :math:`s_i`, so the per-row
  worst case a proof pays grows little (unrestricted moves lowered the sampled error more
  and raised the proven bound, measured in "quant7").

None of this is a proof: the claim stays the verifier's (:mod:`exactcomp.verify.charge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..conv import PoolLevel
from ..errors import InvalidOptionError
from ..network import Layer, Network
from .compensation import Compensation
from .kernels import channel_shift, conv_layer, conv_spec, stored_weights

#: Supported ``bits``: uniform grids, ternary (1.5) and float16 (16).
BITS: tuple[float, ...] = (16, 8, 4, 3, 2, 1.5)
SCALE_BITS = 16  # significant bits of a scale: q * s is exact in float32 for |q| <= 127
TERNARY_THRESHOLD = 0.7  # |w| <= 0.7 mean |w| goes to 0 (ternary weight networks)
#: Clipping ratios of ``max |w|`` tried per row by the scale search, 1 first (1 down to 0.8).
CLIP_RATIOS: tuple[float, ...] = tuple(1.0 - 0.01 * i for i in range(21))
SEARCH_MAX_BITS = 4  # the scale search runs on grids of at most this many bits
ROUNDING_BAND = 0.1  # a weight may take its other grid neighbour only this close to a tie
ROUNDING_STEPS = 4096  # at most this many greedy moves per matrix
#: Entries the greedy rounding may visit per matrix, all moves together: each move reads and
#: updates every movable entry, so a matrix of many gets fewer moves (``ROUNDING_WORK //
#: movable``; up to 65,536 movable entries keep all ``ROUNDING_STEPS``). Before, a move cost
#: the whole matrix, 15 times over, with no cap: marabou-cifar10's dense first layer
#: (1800 x 3072) kept ``quantize --bits 8`` in this loop past 300 s (audit22).
ROUNDING_WORK = 2**28


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
    """One quantised matrix or convolution kernel: integers ``q`` (int8; float16 for
    ``bits == 16``; a kernel's shape ``(M, C/g, kh, kw)``), float32 ``scale`` per row (output
    channel), and ``bits``. ``dequantized`` is ``q * scale``, exact in float32."""

    q: np.ndarray
    scale: np.ndarray
    bits: float

    @property
    def dequantized(self) -> np.ndarray:
        s = self.scale.astype(np.float64).reshape((-1,) + (1,) * (self.q.ndim - 1))
        return self.q.astype(np.float64) * s

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


FLOAT16_MAX = float(np.finfo(np.float16).max)
"""65504: a weight beyond it is ``inf`` in float16 (degenerate soak seeds 7 and 20: rows
scaled by ``1e-8`` with their outgoing column by ``1e8``, then ``--bits 16``)."""


def fits_float16(w: np.ndarray) -> bool:
    """Every entry of ``w`` within float16's finite range (:data:`FLOAT16_MAX`)."""
    return not w.size or float(np.max(np.abs(w))) <= FLOAT16_MAX


def quantize_weight(
    w: np.ndarray,
    bits: float,
    covariance: np.ndarray | None = None,
    spread: np.ndarray | None = None,
) -> QuantizedWeight:
    """Quantise a matrix per row (see the module docstring); with ``covariance`` (the
    covariance :math:`C` of the layer's input over the domain, or its diagonal), a grid of at
    most :data:`SEARCH_MAX_BITS` bits gets the per-row scale search; with ``spread`` (the
    largest :math:`|a_j - \\mu_j|` seen), a ratio is taken only if it also keeps the row's
    :math:`\\sum_j |E_{ij}|\\, \\mathrm{spread}_j` at most that of ratio 1."""
    bits = check_bits(bits)
    w = np.asarray(w, dtype=np.float64)
    if bits == 16 and not fits_float16(w):
        raise InvalidOptionError(
            f"weights up to {float(np.max(np.abs(w))):.3g} exceed float16's range "
            f"({FLOAT16_MAX:g}); choose --bits 8 or fewer"
        )
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
    peak = mag.max(axis=1, initial=0.0)
    scale = _round_scale(peak / top)
    q = _on_grid(w, scale, top)
    if covariance is not None and bits <= SEARCH_MAX_BITS:
        cov = np.asarray(covariance, dtype=np.float64)
        if cov.shape not in ((w.shape[1],), (w.shape[1], w.shape[1])):
            raise InvalidOptionError(f"an input covariance {cov.shape} for a matrix {w.shape}")
        cost = _row_cost(w, q, scale, cov)
        guard = None if spread is None else np.asarray(spread, dtype=np.float64)
        worst = None if guard is None else _row_worst(w, q, scale, guard)
        for ratio in CLIP_RATIOS[1:]:  # 1 is the start: no row ends worse than at 1
            s = _round_scale(ratio * peak / top)
            qs = _on_grid(w, s, top)
            c = _row_cost(w, qs, s, cov)
            better = c < cost
            if guard is not None:
                better &= _row_worst(w, qs, s, guard) <= worst
            q[better], scale[better], cost[better] = qs[better], s[better], c[better]
    return QuantizedWeight(q.astype(np.int8), scale, bits)


def _on_grid(w: np.ndarray, scale: np.ndarray, top: int) -> np.ndarray:
    """Round to nearest on the grid of each row's ``scale``, clipped to ``[-top, top]``."""
    return np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -top, top)


def _row_worst(w: np.ndarray, q: np.ndarray, scale: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per row, ``sum_j |E_ij| spread_j``: the largest ``|E_i (a - mu)|`` over inputs within
    ``spread`` of the mean."""
    return np.abs(q * scale.astype(np.float64)[:, None] - w) @ spread


def _row_cost(w: np.ndarray, q: np.ndarray, scale: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Per row, the variance ``E_i C E_i^T`` of the error of the grid ``q * scale`` (``cov``
    1-D: its diagonal only)."""
    e = q * scale.astype(np.float64)[:, None] - w
    if cov.ndim == 1:
        return (e * e) @ cov
    return np.einsum("ij,ij->i", e @ cov, e)


def round_jointly(
    w: np.ndarray, qw: QuantizedWeight, moment: np.ndarray, covariance: np.ndarray
) -> QuantizedWeight:
    """``qw`` with weights near a tie moved to their other grid neighbour, greedily, while
    :math:`\\mathrm{tr}(M E C E^\\top)` decreases (``moment`` = :math:`M`, ``covariance`` =
    :math:`C`; module docstring). The scales are kept, so the result is on the same grid."""
    w = np.asarray(w, dtype=np.float64)
    if w.size == 0:  # a layer of width 0 (emptied by a compression): no weight to move
        return qw
    top = 2 ** (int(qw.bits) - 1) - 1
    s = qw.scale.astype(np.float64)[:, None]
    q = qw.q.astype(np.float64)
    r = w / s
    grad = 2 * moment @ (q * s - w) @ covariance
    curvature = np.diag(moment)[:, None] * np.diag(covariance)[None, :]
    # A move changes q at one entry and G by a rank-one term, so only the movable entries
    # (fixed positions: an entry that is not cannot become movable) are kept, as vectors.
    other = np.where(q > r, q - 1, q + 1)
    rows, cols = np.nonzero((np.abs(r - q) >= 0.5 - ROUNDING_BAND) & (np.abs(other) <= top))
    if rows.size == 0:
        return qw
    g = grad[rows, cols]
    d = (other[rows, cols] - q[rows, cols]) * s[rows, 0]
    dd = curvature[rows, cols] * d * d
    for _ in range(min(ROUNDING_STEPS, ROUNDING_WORK // rows.size)):
        change = g * d + dd
        k = int(np.argmin(change))
        if not change[k] < 0:
            break
        i, j, step = rows[k], cols[k], d[k]
        q[i, j] = other[i, j]
        g += 2 * step * (moment[rows, i] * covariance[j, cols])
        other[i, j] = q[i, j] - 1 if q[i, j] > r[i, j] else q[i, j] + 1
        if abs(r[i, j] - q[i, j]) >= 0.5 - ROUNDING_BAND and abs(other[i, j]) <= top:
            d[k] = (other[i, j] - q[i, j]) * s[i, 0]
            dd[k] = curvature[i, j] * d[k] * d[k]
        else:  # no longer movable
            d[k], dd[k] = 0.0, np.inf
    return QuantizedWeight(q.astype(np.int8), qw.scale, qw.bits)


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    """A network whose weights are dequantised grids, and the grids (None: layer kept as is)."""

    network: Network
    weights: tuple[QuantizedWeight | None, ...]

    def bits_per_weight(self) -> float:
        """Stored bits per weight over all stored weights (:func:`~exactcomp.rewrite.kernels.
        stored_weights`: a kernel's entries, a pool's none; 32 for a layer kept in float32)."""
        sizes = [stored_weights(la) for la in self.network.layers]
        stored = sum(n * (32 if qw is None else qw.storage_bits)
                     for n, qw in zip(sizes, self.weights, strict=True))  # fmt: skip
        return stored / max(sum(sizes), 1)

    def entropy_bits(self) -> float:
        """Empirical entropy per weight, averaged over all weights (float32 layers count 32)."""
        sizes = [stored_weights(la) for la in self.network.layers]
        bits = sum(n * (32.0 if qw is None else qw.entropy())
                   for n, qw in zip(sizes, self.weights, strict=True))  # fmt: skip
        return bits / max(sum(sizes), 1)


def _quantize_structured(
    layer: Layer, bits: float | None, centre: np.ndarray | None
) -> tuple[Layer, QuantizedWeight | None]:
    """A pool layer kept exactly; a convolution's *kernel* quantised per output channel
    (round to nearest; with ``centre``, the channel-wise bias correction), or rounded to
    float32, and the layer rebuilt from it in its storage (:mod:`exactcomp.rewrite.kernels`)."""
    if isinstance(layer.structure, PoolLevel):
        return layer, None  # no parameter stored: kept as it is
    spec = conv_spec(layer)
    m = spec.out_shape[0]
    bias = layer.bias.reshape(m, -1)[:, 0]
    if bits is None:
        kernel, qw = spec.kernel.astype(np.float32).astype(np.float64), None
    else:
        qw = quantize_weight(spec.kernel.reshape(m, -1), bits)
        qw = QuantizedWeight(qw.q.reshape(spec.kernel.shape), qw.scale, qw.bits)
        kernel = qw.dequantized
        if centre is not None:
            bias = bias - channel_shift(spec, kernel - spec.kernel, centre)
    new = spec.replace(kernel, spec.in_shape[0])
    return conv_layer(new, bias.astype(np.float32), layer.relu, layer.sparse), qw


def quantize_network(
    net: Network,
    bits: Sequence[float | None],
    compensation: Compensation | None = None,
    cache: dict | None = None,
) -> QuantizedNetwork:
    """Quantise layer ``k`` to ``bits[k]`` (None: keep it); biases are rounded to float32,
    and the result is a float32 network (what the written file holds, exactly).
    ``compensation`` (the moments of each layer's input on the domain): the scale search and
    the bias correction of the module docstring; None: plain round-to-nearest.
    A convolution's kernel is quantised (per output channel, round to nearest, a bias
    correction per channel) and its layer rebuilt from it; a pool layer is kept exactly
    (:mod:`exactcomp.rewrite.kernels`). A layer held sparse without a convolution raises
    :class:`InvalidOptionError`.
    ``cache``: a dict kept by the caller across calls on the same ``net`` and
    ``compensation`` (a bit search: one layer's width changes per trial): each layer's result
    is a function of its own width alone, so it is quantised once per width and reused."""
    if len(bits) != len(net.layers):
        raise InvalidOptionError(f"{len(bits)} bit widths for {len(net.layers)} layers")
    if compensation is not None and len(compensation.centre) != len(net.layers):
        raise InvalidOptionError(
            f"moments of {len(compensation.centre)} layers for {len(net.layers)} layers"
        )
    layers, grids = [], []
    for k, b in enumerate(bits):
        if cache is not None and (k, b) in cache:
            new, qw = cache[k, b]
        else:
            new, qw = _quantize_layer(net, k, b, compensation)
            if cache is not None:
                cache[k, b] = new, qw
        layers.append(new)
        grids.append(qw)
    return QuantizedNetwork(
        Network(tuple(layers), dtype="float32", meta=dict(net.meta)), tuple(grids)
    )


def quantisable(net: Network) -> bool:
    """Whether :func:`quantize_network` can quantise every layer of ``net``: a layer held
    sparse only with its convolution or pool structure (an exact rewrite that removed a
    convolution's positions holds it as a plain sparse matrix)."""
    return all(
        not la.sparse or isinstance(la.structure, PoolLevel) or conv_spec(la) is not None
        for la in net.layers
    )


def _quantize_layer(
    net: Network, k: int, b: float | None, compensation: Compensation | None
) -> tuple[Layer, QuantizedWeight | None]:
    """Layer ``k`` of ``net`` quantised to ``b`` bits (:func:`quantize_network`)."""
    layer = net.layers[k]
    if isinstance(layer.structure, PoolLevel) or conv_spec(layer) is not None:
        centre = None if compensation is None else compensation.centre[k]
        return _quantize_structured(layer, b, centre)
    if layer.sparse:
        raise InvalidOptionError(
            f"quantize: layer {k} is held sparse (too large to hold densely) without a "
            "convolution structure; it cannot be quantised"
        )
    cov = None if compensation is None else compensation.covariance[k]
    spread = None if compensation is None or compensation.spread is None else compensation.spread[k]
    qw = None if b is None else quantize_weight(layer.weight, b, cov, spread)
    moment = None if compensation is None or compensation.moment is None else compensation.moment[k]
    if qw is not None and 2 <= qw.bits <= 8 and moment is not None and cov.ndim == 2:
        qw = round_jointly(layer.weight, qw, moment, cov)
    w = layer.weight.astype(np.float32) if qw is None else qw.dequantized
    bias = layer.bias
    if qw is not None and compensation is not None:
        bias = bias - (w - layer.weight) @ compensation.centre[k]  # b - E c
    return Layer(w, bias.astype(np.float32), layer.relu), qw
