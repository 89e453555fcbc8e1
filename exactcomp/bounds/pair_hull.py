r"""The convex hull of two ReLUs over an octagon of their pre-activations (pairwise cuts).

The triangle relaxation (:mod:`exactcomp.bounds.prefix_lp`) bounds each unstable ReLU on its
own. Multi-neuron relaxations (the k-ReLU of Singh et al., NeurIPS 2019; PRIMA, Mueller et
al., POPL 2022) relax groups of ReLUs jointly, over a polytope of their pre-activations that
is tighter than the product of the intervals. Here the group is a pair ``(a, b)`` and the
polytope the octagon

.. math::

    O = \{(z_a, z_b) :\; l_a \le z_a \le u_a,\; l_b \le z_b \le u_b,\;
        s^- \le z_a + z_b \le s^+,\; d^- \le z_a - z_b \le d^+\}.

On each of the four quadrants :math:`Q_{\sigma}` (:math:`\sigma \in \{-, +\}^2`, signs of
``z_a, z_b``) the pair :math:`(\mathrm{relu}(z_a), \mathrm{relu}(z_b))` is affine, so the graph
:math:`G = \{(z_a, z_b, \mathrm{relu}(z_a), \mathrm{relu}(z_b)) : z \in O\}` is the union of
four affine images of the polygons :math:`O \cap Q_\sigma`, and

.. math::

    \mathrm{conv}\, G = \mathrm{conv} \bigcup_\sigma
        \{(v, \mathrm{relu}_\sigma(v)) : v \text{ a vertex of } O \cap Q_\sigma\}.

Every vertex of :math:`O \cap Q_\sigma` is the intersection of two of the ten lines that bound
the pieces (the eight of the octagon and the two axes). A facet :math:`n^\top p \le r` of
this hull (from Qhull, :class:`scipy.spatial.ConvexHull`, on those <= 40 points in 4-D) is a
valid row for every network point whose ``(z_a, z_b)`` lies in ``O``; it is kept only if it
couples the two neurons (it has a non-zero coefficient on each) and involves an ``h``: the
others are the triangle rows, the bounds, or rows of the octagon itself.

Soundness
---------
Qhull's facets are only used as *directions*: each row's constant is recomputed as

.. math::

    r = \max_{v} \mathrm{fl}(n^\top v) + \mathrm{pad}\Bigl(\max_v \sum_i |n_i| |v_i|\Bigr),

over all candidate points ``v``. The line coefficients are in :math:`\{0, \pm 1\}`, so each
intersection is one float64 addition (or none) and a division by 1 or 2 (exact): every
coordinate is within :math:`2^{-53} |v_i|` of the exact vertex of the octagon with the same
float64 bounds, and so is :math:`h = \mathrm{relu}_\sigma(z)`. A candidate is kept when it
violates the octagon or its quadrant by at most :data:`_FEASIBLE` (relative), which accepts
each true vertex's rounded image; extra, slightly infeasible, candidates only loosen the
rows. With the evaluation of ``n^T v`` (error :math:`\le 4 \cdot 2^{-53} \sum |n_i v_i|`), the
total error is far inside the rounding pad (:func:`~exactcomp.bounds.interval.pad`,
``bound_rel = 1e-9``). So every point of :math:`\mathrm{conv}\, G` satisfies each row, for
whatever float64 ``n``. The octagon's bounds must be sound (padded outward) bounds of the
network's ``z_a``, ``z_b``, ``z_a + z_b``, ``z_a - z_b``: on the first hidden layer they are
exact up to that pad (:func:`first_layer_octagons`); deeper, the caller bounds them (the LP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from ..domain import Box
from ..network import Layer
from ..tolerances import DEFAULT, Tolerances
from .interval import pad

__all__ = ["Octagon", "PairRows", "first_layer_octagons", "hull_points", "pair_hull_rows"]

_FEASIBLE = 1e-9
"""Relative violation (of the octagon's bounds' magnitude) up to which a line intersection
counts as a vertex: 10^7 times the rounding of an intersection (:math:`2^{-53}`), so no
true vertex is lost; a near-vertex admitted by it only loosens the rows."""

_ZERO = 1e-9
"""Coefficients below this share of a facet's largest one are set to 0 (the constant is
recomputed after, so this changes tightness only). A facet whose coefficients on one neuron,
or on both ``h``, are all zero is dropped (a triangle row, a bound, an octagon row)."""


@dataclass(frozen=True)
class Octagon:
    """Sound bounds of ``z_a``, ``z_b``, ``z_a + z_b`` and ``z_a - z_b`` (each ``(lo, hi)``)."""

    a: tuple[float, float]
    b: tuple[float, float]
    plus: tuple[float, float]
    minus: tuple[float, float]

    def scale(self) -> float:
        """The largest magnitude of its bounds (at least 1)."""
        return max(1.0, *(abs(v) for side in (self.a, self.b, self.plus, self.minus) for v in side))


@dataclass(frozen=True)
class PairRows:
    """Rows ``coef @ (z_a, z_b, h_a, h_b) <= rhs`` valid on the graph of the pair's ReLUs."""

    coef: np.ndarray  # (m, 4)
    rhs: np.ndarray  # (m,)


def hull_points(o: Octagon) -> np.ndarray:
    """Candidate points ``(z_a, z_b, h_a, h_b)``: the vertices of ``O`` cut by the axes, each
    mapped by the ReLU pair's affine piece of its quadrant (module docstring)."""
    lines = [
        (1.0, 0.0, o.a[0]), (1.0, 0.0, o.a[1]), (0.0, 1.0, o.b[0]), (0.0, 1.0, o.b[1]),
        (1.0, 1.0, o.plus[0]), (1.0, 1.0, o.plus[1]), (1.0, -1.0, o.minus[0]),
        (1.0, -1.0, o.minus[1]), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
    ]  # fmt: skip
    pts = []
    for i, (p1, q1, c1) in enumerate(lines):
        for p2, q2, c2 in lines[i + 1 :]:
            det = p1 * q2 - p2 * q1
            if det == 0.0:
                continue
            # Cramer: coefficients in {0, +-1}, det in {+-1, +-2}: one rounding each
            pts.append(((c1 * q2 - c2 * q1) / det, (p1 * c2 - p2 * c1) / det))
    z = np.array(pts)
    slack = _FEASIBLE * o.scale()
    za, zb = z[:, 0], z[:, 1]
    inside = (
        (za >= o.a[0] - slack) & (za <= o.a[1] + slack)
        & (zb >= o.b[0] - slack) & (zb <= o.b[1] + slack)
        & (za + zb >= o.plus[0] - slack) & (za + zb <= o.plus[1] + slack)
        & (za - zb >= o.minus[0] - slack) & (za - zb <= o.minus[1] + slack)
    )  # fmt: skip
    out = []
    for sa in (-1.0, 1.0):
        for sb in (-1.0, 1.0):
            ok = inside & (sa * za >= -slack) & (sb * zb >= -slack)
            ha = za[ok] if sa > 0 else np.zeros(int(ok.sum()))
            hb = zb[ok] if sb > 0 else np.zeros(int(ok.sum()))
            out.append(np.stack([za[ok], zb[ok], ha, hb], axis=1))
    return np.unique(np.concatenate(out), axis=0)


def pair_hull_rows(o: Octagon, tol: Tolerances = DEFAULT) -> PairRows:
    """The hull's facets that couple the two neurons, each with a sound constant (module
    docstring); no rows when the hull is not full-dimensional (nothing is claimed)."""
    v = hull_points(o)
    none = PairRows(np.zeros((0, 4)), np.zeros(0))
    if v.shape[0] < 5:
        return none
    try:
        eq = ConvexHull(v).equations
    except QhullError:  # flat or degenerate: skip the pair (no row is always sound)
        return none
    n = eq[:, :4] / np.abs(eq[:, :4]).max(axis=1, keepdims=True)
    n = np.where(np.abs(n) < _ZERO, 0.0, n)
    n = np.unique(np.round(n, 12), axis=0)
    couples = (np.abs(n[:, [0, 2]]).max(1) > 0) & (np.abs(n[:, [1, 3]]).max(1) > 0)
    n = n[couples & (np.abs(n[:, 2:]).max(1) > 0)]
    if not n.shape[0]:
        return none
    rhs = (n @ v.T).max(axis=1) + pad(np.abs(n) @ np.abs(v).T, tol).max(axis=1)
    return PairRows(n, rhs)


def first_layer_octagons(
    layer: Layer,
    box: Box,
    a: np.ndarray,
    b: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    tol: Tolerances = DEFAULT,
) -> list[Octagon]:
    r"""The octagons of the pairs ``(a[i], b[i])`` of the first layer ``z = W x + c``.

    ``z_a \pm z_b = (W_a \pm W_b) x + c_a \pm c_b`` is affine in ``x``, so its range over the
    box is the interval sum (exact up to rounding); the pad's scale uses
    ``|W_a| + |W_b|``, which also covers the rounding of ``W_a \pm W_b``. ``bounds`` are the
    layer's sound ``(lower, upper)``.
    """
    w, c = layer.weight, layer.bias
    lo, hi = box.lower, box.upper
    m = np.maximum(np.abs(lo), np.abs(hi))
    scale = (np.abs(w[a]) + np.abs(w[b])) @ m + np.abs(c[a]) + np.abs(c[b])
    slack = pad(scale, tol)
    out = []
    sides = []
    for sign in (1.0, -1.0):
        ws = w[a] + sign * w[b]
        cs = c[a] + sign * c[b]
        smin = np.maximum(ws, 0.0) @ lo + np.minimum(ws, 0.0) @ hi + cs - slack
        smax = np.maximum(ws, 0.0) @ hi + np.minimum(ws, 0.0) @ lo + cs + slack
        sides.append((smin, smax))
    (pl, ph), (ml, mh) = sides
    lower, upper = bounds
    for i in range(len(a)):
        out.append(
            Octagon(
                (float(lower[a[i]]), float(upper[a[i]])),
                (float(lower[b[i]]), float(upper[b[i]])),
                (float(pl[i]), float(ph[i])),
                (float(ml[i]), float(mh[i])),
            )
        )
    return out
