"""The ``linf`` tolerance of an equivalence check: the default, derived from a proven bound
on the rounding of weights stored in float32 (or float16), and the one to suggest after an
UNKNOWN verdict."""

from __future__ import annotations

import numpy as np

from ..io.binding import DomainLike, ModelLike, as_domain, load
from ..network import Network
from ..tolerances import DEFAULT, Tolerances, rounding_deltas, stored_rounding_bound
from ..verify import EquivalenceResult


def _stored_dtype(net: Network) -> np.dtype | None:
    """The narrower dtype ``net``'s weights are stored in exactly, or None (float64 or an
    analysed network whose folded weights are not representable in its checkpoint's dtype)."""
    if net.dtype not in ("float16", "float32"):
        return None
    dt = np.dtype(net.dtype)
    for la in net.layers:
        for arr in (la.weight, la.bias):
            with np.errstate(over="ignore"):
                if not np.array_equal(arr.astype(dt).astype(np.float64), arr):
                    return None
    return dt


def rounding_bound(net: Network, domain: DomainLike, exact: Network | None = None) -> float:
    """Proven bound on ``max |exact - net|`` over the domain, where ``net`` holds weights
    stored in a narrower dtype than float64 (a float32 file) and ``exact`` is the float64
    network that was rounded to write it (:func:`~exactcomp.tolerances.stored_rounding_bound`).

    Without ``exact``, any network whose weights round to ``net``'s is allowed (a looser
    bound, from :func:`~exactcomp.tolerances.rounding_deltas`). 0.0 when ``net`` is not stored
    in a narrower dtype."""
    from ..bounds.interval import input_magnitudes
    from ..bounds.linear import linear_bounds

    dt = _stored_dtype(net)
    if dt is None:
        return 0.0
    layers = [(la.weight, la.bias) for la in net.layers]
    if exact is not None and exact.describe() == net.describe():
        deltas = [
            (np.abs(x.weight - la.weight), np.abs(x.bias - la.bias))
            for x, la in zip(exact.layers, net.layers, strict=True)
        ]
    else:
        deltas = [rounding_deltas(la.weight, la.bias, dt.name) for la in net.layers]
    worst = 0.0
    for box in as_domain(domain, net.input_size):
        mags = input_magnitudes(net, box, linear_bounds(net, box))
        worst = max(worst, float(np.max(stored_rounding_bound(layers, deltas, mags))))
    return worst


def default_tolerance(
    g: ModelLike, domain: DomainLike, exact: Network | None = None, tol: Tolerances = DEFAULT
) -> float:
    """The ``linf`` tolerance :func:`verify_equivalence` uses when none is given.

    ``max(tol.equivalence, tol.rounding_factor * E)`` with ``E`` = :func:`rounding_bound` of
    ``g`` (the second, compressed network; ``exact``: the float64 network it was rounded
    from, if known). An exact compression written in float32 then passes, because rounding
    its weights moves its outputs by at most ``E`` (proven), while a difference above
    ``rounding_factor * E`` is still found. For a float64 ``g`` it is ``tol.equivalence``."""
    g = load(g)
    if any(la.sparse for la in g.layers):  # proven exactly or not at all (verify.sparse)
        return tol.equivalence
    e = rounding_bound(g, domain, exact)
    if not np.isfinite(e):
        return tol.equivalence
    return max(tol.equivalence, tol.rounding_factor * e)


def suggest_tolerance(result: EquivalenceResult) -> float | None:
    """A tolerance with which the same comparison would be proven, or None if none is known.

    Above the proven upper bound reached (the differential bound, when that is what was
    reached) and above the solver margin, with 50% room, rounded up to one significant digit.
    None for NOT_EQUIVALENT (a real difference above ``tol`` was found) or without a finite
    upper bound (give more time instead)."""
    if result.status.name != "UNKNOWN" or not np.isfinite(result.upper_bound):
        return None
    need = max(result.upper_bound, result.margin if np.isfinite(result.margin) else 0.0)
    need = 1.5 * max(need, result.tol)
    exponent = np.floor(np.log10(need))
    return float(np.ceil(need / 10**exponent) * 10**exponent)
