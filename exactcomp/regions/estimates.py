r"""Region counts beyond exact reach: a theoretical upper bound, a lower bound, an estimate.

Upper bound (Serra, Tjandraatmadja & Ramalingam, ICML 2018)
------------------------------------------------------------
For a network with ``n_0`` inputs and ReLU layers of widths ``n_1..n_L``, Theorem 1 of the
paper bounds the number of activation regions of the whole input space by

.. math::

    \sum_{(j_1,\dots,j_L)\in J}\;\prod_{l=1}^{L}\binom{n_l}{j_l},\qquad
    J = \{ j \in \mathbb{Z}^L : 0 \le j_l \le \min(n_0,\, n_1 - j_1,\, \dots,\,
    n_{l-1} - j_{l-1},\, n_l) \}.

The argument is dimensional: layer ``l`` is an arrangement of ``n_l`` hyperplanes in the image
of the earlier layers, whose dimension is at most ``n_0`` and at most the number of active
neurons of each earlier layer. The paper refines it with the ranks of the weight matrices:
the pre-activations of layer ``l`` live in an image of dimension at most ``rank W_i`` for every
``i <= l``, so ``rank W_1, ..., rank W_l`` join the ``min`` (:func:`serra_upper_bound`; with full
ranks the bound is Theorem 1's; the rank form is the paper's Theorem 7). ``W_l`` is the map
from the previous ReLU layer (or the input) to layer ``l``'s pre-activations, linear layers in
between composed in. ``tests/test_serra_bound.py`` checks the dynamic programme against the
sum over ``J`` written out, and against hand-worked cases: ``n_0 = 1`` gives
``prod_l (n_l + 1)``; ``n_0 >= n_1`` makes ``n_0`` irrelevant (2 inputs, widths 2, 2: 11, not
16); a rank cap on one layer caps every later one.

Evaluated on the compressed network, the bound shrinks: stable neurons leave the widths and
can lower the ranks. That is the link between compressibility and expressiveness, in numbers.
The bound holds on the whole input space, so on every box.

Lower bound and estimate
------------------------
Every activation pattern met at a random point of the box, or on an interval of positive
length of a random line through it, is (almost surely) the pattern of a region with an
interior, so the number of distinct patterns seen is a lower bound (almost surely). Along a
line the network is piecewise affine in the line's parameter, so its regions there are found
exactly, one breakpoint after the other (:func:`line_patterns`).

The estimate is Chao's bias-corrected species-richness estimator on the uniform samples
(``S + f_1 (f_1 - 1) / (2 (f_2 + 1))``, ``f_k`` the patterns seen exactly ``k`` times) with its
log-normal 95% interval (Chao 1987). Regions differ wildly in volume, so it tends to
*under*-estimate; it is labelled an estimate, never a bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..domain import Box
from ..network import Network

__all__ = ["RegionEstimate", "line_patterns", "relu_maps", "sample_patterns", "serra_upper_bound"]


def relu_maps(net: Network) -> tuple[int, list[np.ndarray]]:
    """``(n_0, [W_1, ..., W_L])``: the input size and, per ReLU layer, the linear map from the
    previous ReLU layer's output (or the input) to its pre-activations."""
    maps, acc = [], None
    for layer in net.layers:
        acc = layer.weight if acc is None else layer.weight @ acc
        if layer.relu:
            maps.append(acc)
            acc = None
    return net.input_size, maps


def serra_upper_bound(n0: int, widths: Sequence[int], ranks: Sequence[int] | None = None) -> int:
    """The bound of Serra et al. (2018) on the number of activation regions (module notes).

    Computed exactly (Python integers) by dynamic programming over ``d = min(n_0, n_1 - j_1,
    ..., n_{l-1} - j_{l-1})``: the states of the sum share everything but ``d``.
    """
    ranks = list(widths) if ranks is None else list(ranks)
    states = {int(n0): 1}  # d -> sum of the products so far
    rank_cap = int(n0)
    for n_l, r_l in zip(widths, ranks, strict=True):
        rank_cap = min(rank_cap, int(r_l))
        nxt: dict[int, int] = {}
        for d, total in states.items():
            for j in range(min(d, rank_cap, n_l) + 1):
                key = min(d, n_l - j)
                nxt[key] = nxt.get(key, 0) + total * math.comb(n_l, j)
        states = nxt
    return sum(states.values())


def network_upper_bound(net: Network) -> int:
    """:func:`serra_upper_bound` of ``net``, with the ranks of its weight matrices."""
    n0, maps = relu_maps(net)
    widths = [m.shape[0] for m in maps]
    ranks = [int(np.linalg.matrix_rank(m)) if m.size else 0 for m in maps]
    return serra_upper_bound(n0, widths, ranks)


def patterns_of(net: Network, x: np.ndarray) -> np.ndarray:
    """Activation patterns (packed bits, one row per point) of the rows of ``x``."""
    zs = net.preactivations(x)
    bits = [z > 0 for z, la in zip(zs, net.layers, strict=True) if la.relu]
    if not bits:
        return np.zeros((len(x), 1), np.uint8)
    return np.packbits(np.concatenate(bits, axis=1), axis=1)


def sample_patterns(net: Network, box: Box, n: int, rng: np.random.Generator) -> np.ndarray:
    """The patterns (packed) of ``n`` uniform points of the box, one row per point."""
    out = []
    for i in range(0, n, 4096):
        out.append(patterns_of(net, box.sample(min(4096, n - i), rng)))
    return np.concatenate(out) if out else np.zeros((0, 1), np.uint8)


def line_patterns(net: Network, p: np.ndarray, d: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """Every pattern along the segment ``p + s d``, ``s0 <= s <= s1``, one row per interval.

    In the interval holding ``s`` the pattern is fixed, so each pre-activation is affine in
    ``s`` (``alpha s + beta``, forward-propagated with the pattern's masks) and the next
    breakpoint is the smallest root beyond ``s``. The pattern of the next interval is read a
    hair (``1e-9`` of the segment) past the breakpoint.
    """
    eps = 1e-9 * (s1 - s0)
    s, out = s0, []
    while s < s1:
        x = p + (s + eps) * d
        alpha, beta, nxt, bits = d.copy(), x.copy(), s1, []
        for layer in net.layers:
            alpha, beta = layer.weight @ alpha, layer.weight @ beta + layer.bias
            if layer.relu:
                on = beta > 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    roots = -beta / alpha  # in units past s + eps
                roots = roots[np.isfinite(roots) & (roots > 0)]
                if roots.size:
                    nxt = min(nxt, s + eps + float(roots.min()))
                bits.append(on)
                alpha, beta = alpha * on, beta * on
        out.append(np.packbits(np.concatenate(bits)) if bits else np.zeros(1, np.uint8))
        s = max(nxt, s + 2 * eps)
    return np.array(out)


def box_segment(box: Box, p: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    """``[s0, s1]`` such that ``p + s d`` stays in the box (``p`` inside it)."""
    s0, s1 = -np.inf, np.inf
    for i in np.flatnonzero(d):
        a, b = (box.lower[i] - p[i]) / d[i], (box.upper[i] - p[i]) / d[i]
        s0, s1 = max(s0, min(a, b)), min(s1, max(a, b))
    return float(s0), float(s1)


@dataclass(frozen=True)
class RegionEstimate:
    """An estimate of the number of regions and its 95% interval, and how it was made."""

    value: float
    low: float
    high: float
    confidence: float = 0.95
    method: str = "chao1 on uniform samples"

    def to_json(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }


def chao1(counts: np.ndarray) -> RegionEstimate:
    """Bias-corrected Chao1 estimate of the number of classes from class frequencies, with the
    log-normal 95% interval (see the module notes)."""
    s_obs = int(counts.size)
    f1, f2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    t = f1 * (f1 - 1) / (2.0 * (f2 + 1))
    if t <= 0:
        return RegionEstimate(float(s_obs), float(s_obs), float(s_obs))
    var = (
        t
        + f1 * (2 * f1 - 1) ** 2 / (4.0 * (f2 + 1) ** 2)
        + f1**2 * f2 * (f1 - 1) ** 2 / (4.0 * (f2 + 1) ** 4)
    )
    c = math.exp(1.96 * math.sqrt(math.log(1.0 + var / t**2)))
    return RegionEstimate(s_obs + t, s_obs + t / c, s_obs + t * c)


@dataclass(frozen=True, eq=False)
class Sampled:
    """What sampling found: distinct patterns (a lower bound, almost surely), the estimate."""

    distinct: int
    on_lines: int
    estimate: RegionEstimate


def sample_bounds(net: Network, box: Box, samples: int, lines: int, seed: int) -> Sampled:
    """Distinct patterns at ``samples`` uniform points and on ``lines`` random lines through
    the box (exact along each line), and the Chao1 estimate from the uniform points."""
    rng = np.random.default_rng(seed)
    pts = sample_patterns(net, box, samples, rng)
    uniq, counts = (
        np.unique(pts, axis=0, return_counts=True) if len(pts) else (pts, np.zeros(0, int))
    )
    seen = {row.tobytes() for row in uniq}
    along = set()
    free = box.upper > box.lower
    for _ in range(lines if free.any() else 0):
        p = box.sample(1, rng)[0]
        d = rng.standard_normal(box.dim) * free
        s0, s1 = box_segment(box, p, d)
        if not s1 > s0:
            continue
        along |= {row.tobytes() for row in line_patterns(net, p, d, s0, s1)}
    seen |= along
    return Sampled(len(seen), len(along), chao1(counts))
