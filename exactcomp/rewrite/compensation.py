r"""What the corrected quantiser knows of the domain: moments of each layer's input over points.

For a network ``f`` and points :math:`x^{(1..N)}` drawn from the domain, layer :math:`k`'s input
:math:`a = a_{k-1}(x)` (:math:`a_{-1} = x`) has, over the points, the mean :math:`\mu_k`, the
covariance :math:`C_k` (the variances only for inputs wider than :data:`COVARIANCE_MAX`), the
spread :math:`\max_x |a - \mu_k|` per input, and the output Jacobian moment :math:`M_k =
\mathrm{mean}_x J^\top J` (:math:`J = \partial f / \partial z_k`) over the first
:data:`JACOBIAN_POINTS` points. :mod:`exactcomp.rewrite.quantize` says how each is used (bias
correction, scale search, rounding direction); none of it is a proof.

Memory. The points go through the network in chunks of :data:`JACOBIAN_POINTS` rows, so at
most one chunk's activations are held (a convolution's output of 23,328 values for 8,192 points
would be 1.5 GB per copy). The chunks' moments are combined exactly as one pass would give
them, up to rounding, by the pairwise update of Chan, Golub and LeVeque: for parts :math:`A`
and :math:`B` with counts :math:`n_A, n_B`, means :math:`\mu_A, \mu_B` and centred sums of
products :math:`S_A, S_B`, with :math:`\delta = \mu_B - \mu_A` and :math:`n = n_A + n_B`,

.. math::

    \mu = \mu_A + \delta\, n_B / n, \qquad
    S = S_A + S_B + \delta \delta^\top n_A n_B / n ,

and :math:`C = S / (n - 1)`; the spread is :math:`\max(\max_x a - \mu, \mu - \min_x a)` from
running extremes.

Work. A layer's share of the pass costs, per point, the products of its input (:math:`w^2`
multiply-adds for an input of width :math:`w` with a covariance, :math:`w` without) and its
forward product (:math:`w \cdot w'` for a dense :math:`w' \times w` matrix). Layer :math:`k`
takes the first :math:`n_k = \min(n_{k-1}, \max(\text{MOMENTS\_MIN\_POINTS}, \lfloor
\text{MOMENTS\_WORK} / c_k \rfloor))` points (:math:`n_{-1}` all of them, :math:`c_k` its
cost per point; a convolution or pool costs nothing here, as before), so that no layer costs
more than :data:`MOMENTS_WORK` multiply-adds and a chunk goes only as deep as a layer still
wants points: every layer up to 1,024 wide keeps all 8,192 points; resnet_2b's dense layers
2,048-3,072 wide take 1,365-1,638 (102.8 s CPU before, RESULTS.md "wide22"). The Jacobian
moment of layer :math:`k` is averaged over the first rows that keep its products
(:math:`m w'' w + m w^2` per row, :math:`m` outputs, :math:`w''` the next layer's width)
within :data:`MOMENTS_WORK`, at least :data:`MOMENTS_MIN_POINTS` (else none, as past
:data:`JACOBIAN_MAX`), and the rows only shrink downwards. Past the ``deadline`` no further
chunk is added (the first always is) and no further Jacobian is carried down. Fewer points
only make the moments rougher estimates; they are never a proof (the charger proves whatever
network the quantiser builds from them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidOptionError
from ..network import Network

COVARIANCE_MAX = 4096  # wider inputs keep only the variances (the diagonal of C)
JACOBIAN_POINTS = 1024  # domain points (the first of the moments' points) averaged into M;
# also the rows per chunk of the moments' pass
JACOBIAN_MAX = 2**25  # entries of the Jacobians held at once; above it no rounding search
MOMENTS_WORK = 2**34  # multiply-adds one layer's moments (or Jacobian moment) may cost; keeps
# every layer up to 1,024 wide at all COMPENSATION_POINTS (2**34 = 8,192 x 1,024 x 2,048)
MOMENTS_MIN_POINTS = 64  # the fewest points a layer's moments take, whatever their cost


#: Uniform domain points (all boxes together, seeded) whose moments ``corrected`` uses.
COMPENSATION_POINTS = 8192


@dataclass(frozen=True, eq=False)
class Compensation:
    """Per layer ``k``: the mean ``centre[k]`` of its input over domain points, its covariance
    ``covariance[k]`` (1-D: the variances only, for inputs wider than :data:`COVARIANCE_MAX`),
    ``moment[k]`` (:math:`M_k`; None: no rounding search for that layer) and ``spread[k]``, the
    largest :math:`|a - \\mu|` seen per input. See the module docstring. A layer with a
    structure (a convolution's kernel is corrected by its mean alone, a pool is kept) has None
    for its covariance and spread: they are not computed (on Convnet_maxpool its pool levels'
    covariances were 43 GFLOP, most of ``quantize``'s time)."""

    centre: tuple[np.ndarray, ...]
    covariance: tuple[np.ndarray | None, ...]
    moment: tuple[np.ndarray | None, ...] | None = None
    spread: tuple[np.ndarray | None, ...] | None = None

    @classmethod
    def of_points(cls, net: Network, x: np.ndarray, deadline: float | None = None) -> Compensation:
        """The moments of each layer's input in ``net`` (float64) over the points ``x``
        (rows; at least 2), in chunks of :data:`JACOBIAN_POINTS` rows, each layer over the
        first :func:`point_counts` of them; no chunk after the first is added past
        ``deadline`` (a ``time.perf_counter()`` value)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if len(x) < 2:
            raise InvalidOptionError("compensation needs at least 2 domain points")
        moments = [_Moments(second=la.structure is None) for la in net.layers]
        wanted = point_counts(net, len(x))
        pre: list[np.ndarray] = []
        for start in range(0, wanted[0], JACOBIAN_POINTS):
            if start > 0 and deadline is not None and time.perf_counter() >= deadline:
                break
            a = x[start : start + JACOBIAN_POINTS]
            for k, layer in enumerate(net.layers):
                a = a[: max(wanted[k] - start, 0)]  # counts only shrink with depth
                if len(a) == 0:
                    break
                moments[k].add(a)
                a = layer.apply(a) + layer.bias
                if start == 0:
                    pre.append(a)
                if layer.relu:
                    a = np.maximum(a, 0.0)
        return cls(
            tuple(m.mean for m in moments),
            tuple(m.sums / max(m.count - 1, 1) if m.second else None for m in moments),
            _jacobian_moments(net, pre, deadline),
            tuple(
                np.maximum(m.high - m.mean, m.mean - m.low) if m.second else None for m in moments
            ),  # fmt: skip
        )


def point_counts(net: Network, points: int) -> list[int]:
    """How many of ``points`` each layer's moments take (the module docstring's :math:`n_k`):
    at most :data:`MOMENTS_WORK` multiply-adds a layer, never more than the layer above."""
    counts, n = [], points
    for layer in net.layers:
        cost = 0
        if layer.structure is None:  # a convolution or pool: its mean alone, as before
            w = layer.in_features
            forward = layer.weight.nnz if layer.sparse else w * layer.out_features
            cost = (w * w if w <= COVARIANCE_MAX else w) + forward
        if cost > 0:
            n = min(n, max(MOMENTS_MIN_POINTS, MOMENTS_WORK // cost))
        counts.append(min(n, points))
    return counts


class _Moments:
    """Running count, mean and (``second``) centred sums of products (or squares) and extremes
    of rows."""

    def __init__(self, second: bool) -> None:
        self.count, self.second = 0, second

    def add(self, a: np.ndarray) -> None:
        """Combine the rows ``a`` into the moments (the update of the module docstring)."""
        n_b, mu_b = len(a), a.mean(axis=0)
        if not self.second:
            n = self.count + n_b
            self.mean = mu_b if self.count == 0 else self.mean + (mu_b - self.mean) * (n_b / n)
            self.count = n
            return
        d = a - mu_b
        s_b = (d * d).sum(axis=0) if a.shape[1] > COVARIANCE_MAX else d.T @ d
        if self.count == 0:
            self.count, self.mean, self.sums = n_b, mu_b, s_b
            self.low, self.high = a.min(axis=0), a.max(axis=0)
            return
        n = self.count + n_b
        delta = mu_b - self.mean
        outer = delta * delta if s_b.ndim == 1 else np.outer(delta, delta)
        self.sums = self.sums + s_b + outer * (self.count * n_b / n)
        self.mean = self.mean + delta * (n_b / n)
        self.count = n
        self.low, self.high = (
            np.minimum(self.low, a.min(axis=0)),
            np.maximum(self.high, a.max(axis=0)),
        )


def _jacobian_moments(
    net: Network, pre: list[np.ndarray], deadline: float | None = None
) -> tuple[np.ndarray | None, ...]:
    """Per layer ``k``, the mean over the points of :math:`J^\\top J`, :math:`J` the output
    Jacobian with respect to the layer's pre-activations ``pre[k]`` (None where a later layer
    is sparse or the Jacobians would exceed :data:`JACOBIAN_MAX` entries, and for a layer with
    a structure: its kernel or pool is not rounded jointly).

    The Jacobians are carried down only to the lowest layer without a structure: below it
    every entry would be None, and the products were half the moments' time on cifar_base_kw
    (two convolutions at the bottom: 3.0 of 6.8 s CPU, ``1024 x 10 x 1024 x 2048``
    multiply-adds for layer 0 alone; RESULTS.md "qbudget19b"). The moments are the same.
    Each step keeps only the first rows whose products stay within :data:`MOMENTS_WORK`
    (at least :data:`MOMENTS_MIN_POINTS`, else it stops), and none starts past ``deadline``."""
    n = len(net.layers)
    out: list[np.ndarray | None] = [None] * n
    m = net.layers[-1].out_features
    jac = np.broadcast_to(np.eye(m), (len(pre[-1]), m, m))
    out[-1] = np.eye(m)
    lowest = min((k for k in range(n - 1) if net.layers[k].structure is None), default=n - 1)
    for k in range(n - 2, lowest - 1, -1):
        after, layer = net.layers[k + 1], net.layers[k]
        if after.sparse or len(pre[k]) * m * layer.out_features > JACOBIAN_MAX:
            break
        width = layer.out_features
        rows = min(len(jac), MOMENTS_WORK // max(m * (after.out_features + width) * width, 1))
        if rows < MOMENTS_MIN_POINTS or (deadline is not None and time.perf_counter() >= deadline):
            break
        jac = jac[:rows] @ np.asarray(after.weight, dtype=np.float64)
        if layer.relu:
            jac = jac * (pre[k][:rows] > 0)[:, None, :]
        if layer.structure is None:  # a convolution or pool has no rounding search
            flat = jac.reshape(len(jac) * m, width)
            out[k] = flat.T @ flat / rows
    return tuple(out)


def domain_compensation(net: Network, boxes, deadline: float | None = None) -> Compensation:
    """The moments of ``net``'s layer inputs over :data:`COMPENSATION_POINTS` uniform points
    of the boxes (seeded: the same network every run), no later chunk past ``deadline``."""
    rng = np.random.default_rng(0)
    each = max(COMPENSATION_POINTS // len(boxes), 2)
    x = np.concatenate([b.lower + (b.upper - b.lower) * rng.random((each, b.dim)) for b in boxes])
    return Compensation.of_points(net, x, deadline)
