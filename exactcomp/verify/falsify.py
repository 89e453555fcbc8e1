"""Cheap falsification: look for an input where two networks differ before any MILP.

Most non-equivalent pairs are caught here in milliseconds: a few thousand float64 forward
passes (uniform points, box corners, data points) and a projected gradient ascent on each
objective (the probes of :func:`exactcomp.search.candidate_inputs` and the one ascent,
:func:`exactcomp.search.ascend`). The MILP is only needed to *prove* equivalence, or to find
a difference hiding in a region too small for sampling to hit.

The objectives (``s`` a sign, ``e_i`` a unit vector):

* ``linf``: ``phi_{i,s}(x) = s (f_i(x) - g_i(x))``; the pair differs iff some ``phi > tol``.
* ``top1``: ``psi(x) = max_j g_j(x) - max_{i in argmax f(x)} g_i(x)`` (how far ``g`` prefers
  another class over every top class of ``f``); the gradient ascent works on the smooth
  surrogate ``g_j - g_i - lam * (max_k f_k - f_i)`` for a pair ``(i, j)``.

Gradients are exact for a ReLU network at a point where no pre-activation is 0 (backprop
through the activation masks, in numpy); at a kink it is one of the one-sided gradients,
which is all a heuristic search needs. Every point returned is inside the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from .. import search
from ..domain import Box
from ..exact import exact_forward
from ..network import Network
from ..search import candidate_inputs

CORNER_LIMIT = 10  # enumerate all 2^n corners up to this many inputs, else sample corners
NEAR_CORNER = 0.05  # points near the corners move inwards by up to this fraction of the width


def candidate_points(box: Box, n: int, rng: np.random.Generator, data=None) -> np.ndarray:
    """The probes of :func:`exactcomp.search.candidate_inputs` sized for falsification: every
    corner up to :data:`CORNER_LIMIT` inputs (else ``min(n, 4096)`` random ones) and points
    near them (a difference confined to a corner region is found there), ``n`` uniform
    points, the centre, and the data rows in the box (data of another width is ignored)."""
    d = box.dim
    if data is not None:
        rows = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        data = rows if rows.shape[1] == d else None
    corners = 2**d if d <= CORNER_LIMIT else min(n, 4096)
    return candidate_inputs(box, n, rng, data, near=NEAR_CORNER, vertices=corners)


def top1_disagreement(fx: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """``max_j g_j - max_{i in argmax f} g_i`` per row; 0 when ``g`` ranks a top class of ``f``
    first (ties in ``f`` are settled in ``g``'s favour), positive when they disagree."""
    fx, gx = np.atleast_2d(fx), np.atleast_2d(gx)
    top_f = fx == fx.max(axis=1, keepdims=True)
    best_g_on_top_f = np.where(top_f, gx, -np.inf).max(axis=1)
    return gx.max(axis=1) - best_g_on_top_f


def exact_difference(
    f: Network, g: Network, x: np.ndarray, mode: str, outputs: Sequence[int] | None = None
) -> Fraction:
    """The difference :func:`top1_disagreement` (``mode="top1"``) or ``max_i |f_i - g_i|``
    over ``outputs`` (``"linf"``; default all) measures at one input ``x``, in exact rational
    arithmetic: float64 forward
    passes round, and with large cancelling weights that rounding can exceed a tolerance, so
    a counterexample is confirmed here before it is reported."""
    fx, gx = exact_forward(f, x), exact_forward(g, x)
    if mode == "linf":
        keep = range(len(fx)) if outputs is None else outputs
        return max(abs(fx[i] - gx[i]) for i in keep)
    top = max(fx)
    return max(gx) - max(b for a, b in zip(fx, gx, strict=True) if a == top)


def _backprop(net: Network, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. ``x`` of ``sum_i coef[r, i] * net(x_r)_i`` for every row ``r``."""
    masks = [
        z > 0 if layer.relu else None
        for layer, z in zip(net.layers, net.preactivations(x), strict=True)
    ]
    grad = np.array(coef, dtype=np.float64)
    for layer, mask in zip(reversed(net.layers), reversed(masks), strict=True):
        if mask is not None:
            grad = grad * mask
        grad = grad @ layer.weight
    return grad


def ascend(
    f: Network,
    g: Network,
    box: Box,
    starts: np.ndarray,
    coef_fn,
    steps: int = 40,
) -> np.ndarray:
    """The ascent of :func:`exactcomp.search.ascend` on ``cf . f(x) + cg . g(x)``, with steps
    ``(0.25 (1 - t / steps) + 0.01)`` of the box width; returns the final points (in the box).

    ``coef_fn(fx, gx) -> (cf, cg)`` gives, per row, the output weights of the objective to
    climb at the current point (so piecewise objectives such as the top-1 surrogate can switch
    their active pieces as the point moves).
    """

    def objective(x: np.ndarray):
        fx, gx = f.forward(x), g.forward(x)
        cf, cg = coef_fn(fx, gx)
        value = np.einsum("ij,ij->i", cf, fx) + np.einsum("ij,ij->i", cg, gx)
        return value, lambda: _backprop(f, x, cf) + _backprop(g, x, cg)

    sizes = [0.25 * (1.0 - t / steps) + 0.01 for t in range(steps)]
    return search.ascend(box, starts, sizes, objective).last


def linf_coefficients(m: int, i: int, s: float):
    """Coefficient function of ``s (f_i - g_i)`` for :func:`ascend`."""
    e = np.zeros(m)
    e[i] = s

    def coef(fx: np.ndarray, gx: np.ndarray):
        return np.broadcast_to(e, fx.shape), np.broadcast_to(-e, gx.shape)

    return coef


def top1_coefficients(i: int, j: int, lam: float = 1.0):
    """Coefficient function of ``g_j - g_i - lam (max_k f_k - f_i)`` for :func:`ascend`."""

    def coef(fx: np.ndarray, gx: np.ndarray):
        n, m = fx.shape
        cg = np.zeros((n, m))
        cg[:, j] += 1.0
        cg[:, i] -= 1.0
        cf = np.zeros((n, m))
        k = fx.argmax(axis=1)
        behind = fx[np.arange(n), k] > fx[:, i]
        cf[np.arange(n)[behind], k[behind]] -= lam
        cf[behind, i] += lam
        return cf, cg

    return coef
