"""Exact rational evaluation of small networks, for checks that must not trust float64.

Every float64 weight, bias and input is a rational number; :class:`fractions.Fraction`
evaluates the network on it with no rounding at all. The soak (``exactcomp.testing.soak_checks``)
compares an original network and its compression this way at the witness points and region
vertices of the oracle, so that neither float64 noise in the original (terms of ``1e9``
cancelling to ``O(1)``) nor noise in the comparison can hide or fabricate a difference.

The one threshold (:data:`EXACT_SCALE`)
---------------------------------------
A compression computes its new weights in float64 (a fold adds ``a_i v_j`` to a column),
so even a correct one is exact only up to the rounding of those few operations: each new
weight is within a few units in the last place of the terms it was made from. Its exact
output therefore differs from the original's by at most a small multiple of
``2^-53 * S(x)``, with ``S(x)`` the size of the terms the evaluation sums
(:meth:`exactcomp.network.Network.term_scale`, here computed exactly). :data:`EXACT_SCALE`
allows ``2^-40 * S(x)`` (about 8,000 units in the last place of the largest term); a
relative tolerance on weights (``1e-9``) shows up far above it as soon as an outgoing weight
amplifies it, which is the point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..exact import exact_forward, exact_term_scale
from ..network import Network
from ..tolerances import DEFAULT

__all__ = [
    "EXACT_SCALE",
    "ExactComparison",
    "compare_exactly",
    "exact_difference",
    "rational",
    "rational_forward",
    "settled_difference",
]

EXACT_SCALE = Fraction(1, 2**40)
"""Allowed exact ``|f(x) - g(x)|`` per unit of the exact term scale ``S(x)`` (see above)."""

Vector = list[Fraction]


def rational(values: Sequence[float] | np.ndarray) -> Vector:
    """The exact rationals of float64 values (raises on NaN/inf, which have none)."""
    return [Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _layers(net: Network) -> list[tuple[list[Vector], Vector, bool]]:
    return [([rational(row) for row in la.weight], rational(la.bias), la.relu) for la in net.layers]


def _affine(rows: list[Vector], bias: Vector, h: Vector) -> Vector:
    return [
        b + sum((w * v for w, v in zip(row, h, strict=True) if w and v), Fraction(0))
        for row, b in zip(rows, bias, strict=True)
    ]


def rational_forward(net: Network, h: Vector) -> Vector:
    """``net(h)`` in exact rational arithmetic for an input that is already rational."""
    return _forward(_layers(net), list(h))


def _forward(layers, h: Vector) -> Vector:
    for rows, bias, relu in layers:
        h = _affine(rows, bias, h)
        if relu:
            h = [v if v > 0 else Fraction(0) for v in h]
    return h


@dataclass(frozen=True)
class ExactComparison:
    """The worst point of :func:`compare_exactly`: ``diff`` and ``allowed`` there (floats,
    rounded from the exact values), ``excess = diff - allowed`` (> 0: a real difference)."""

    points: int
    diff: float
    allowed: float
    x: list[float] | None

    @property
    def excess(self) -> float:
        return self.diff - self.allowed


def compare_exactly(
    f: Network, g: Network, points: np.ndarray, scale: Fraction = EXACT_SCALE
) -> ExactComparison:
    """Compare ``f`` and ``g`` exactly at each row of ``points``: the point where
    ``max_o |f_o(x) - g_o(x)| - scale * max_o S_o(x)`` is largest (``S`` of ``f``)."""
    worst: tuple[Fraction, Fraction, Fraction, list[float] | None] | None = None
    for row in np.atleast_2d(np.asarray(points, dtype=np.float64)):
        fx, gx = exact_forward(f, row), exact_forward(g, row)
        d = max(abs(a - b) for a, b in zip(fx, gx, strict=True))
        allowed = scale * max(exact_term_scale(f, row))
        if worst is None or d - allowed > worst[0]:
            worst = (d - allowed, d, allowed, row.tolist())
    if worst is None:
        return ExactComparison(0, 0.0, 0.0, None)
    return ExactComparison(len(np.atleast_2d(points)), float(worst[1]), float(worst[2]), worst[3])


def exact_difference(f: Network, g: Network, x: np.ndarray) -> float:
    """``max_o |f(x)_o - g(x)_o|`` in exact rationals, rounded once to float64."""
    fx, gx = exact_forward(f, np.reshape(x, -1)), exact_forward(g, np.reshape(x, -1))
    return float(max(abs(a - b) for a, b in zip(fx, gx, strict=True)))


def settled_difference(
    f: Network, g: Network, x: np.ndarray, value: float, exact_neurons: int
) -> float:
    """A float64 ``|f(x) - g(x)|`` (``value``) settled before it refutes a proof.

    Exactly (:func:`exact_difference`) when ``f`` has at most ``exact_neurons`` neurons;
    otherwise ``value`` less the float64 noise of the terms summed, ``check_scale * S(x)``
    (:class:`~exactcomp.tolerances.Tolerances`). Terms of ``1e8`` cancelling to ``O(1)``
    leave some ``1e-8`` of noise in a float64 forward pass, far above a proven bound of
    ``1e-10`` (soak near-duplicate case 24705: float64 said ``1.6e-10``, exact ``1.7e-17``).
    """
    if f.num_neurons <= exact_neurons:
        return exact_difference(f, g, x)
    noise = max(float(np.max(f.term_scale(x))), float(np.max(g.term_scale(x))))
    return value - DEFAULT.check_scale * noise
