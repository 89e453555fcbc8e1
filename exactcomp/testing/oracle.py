"""A brute-force test oracle: exact ranges, stability and output differences of tiny networks.

A ReLU network is affine on each *activation region* (the inputs that share one on/off
pattern of every neuron), and each region is a polytope. Enumerating the regions of a tiny
network (a dozen neurons; :mod:`exactcomp.testing.regions`) and solving one LP per
question in each region gives the exact answer to every question the engine answers with
bounds and MILPs, by a route that shares no LP code with it: numpy and HiGHS only
(:func:`~exactcomp.testing.regions.lp_argmax` builds each LP itself).

What "exact" means here (the LP tolerance, honestly)
----------------------------------------------------
HiGHS accepts points that violate a constraint by up to its feasibility tolerance
(1e-7 on rows that we scale to unit infinity norm) and returns optima in float64.
Every value this module reports is the float64 forward pass of the network at a point
*inside the box* (the LP optimum, clipped), so reported maxima are *achieved*: the true
maximum is at least the reported one, up to float64 rounding of one forward pass. It may
exceed it by what a region thinner than the LP tolerance could hide (in practice, vertex
optima are accurate to ~1e-15 relative). Hence :func:`exact_stability` reports
``AMBIGUOUS`` for a pre-activation whose extreme lies within ``margin`` (relative to the
neuron's magnitude) of 0, unless exact rational interval arithmetic settles it: the first
layer's ranges are computed exactly with :class:`fractions.Fraction`, so ties there (a
maximum of exactly 0) are always decided.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..domain import Box
from ..network import Network
from ..verdicts import Verdict
from .regions import (
    MAX_REGIONS,
    LpBudget,
    OracleError,
    Polytope,
    Region,
    box_corners,
    box_max,
    enumerate_regions,
    lp_argmax,
)

__all__ = [
    "AMBIGUOUS",
    "Bounds",
    "ExactAnalysis",
    "GridCheck",
    "LpBudget",
    "MaxDifference",
    "OracleError",
    "Region",
    "box_corners",
    "enumerate_regions",
    "exact_analysis",
    "exact_preactivation_ranges",
    "exact_stability",
    "grid_check",
    "grid_points",
    "max_output_difference",
    "probe_points",
    "rational_interval_bounds",
]

Bounds = tuple[np.ndarray, np.ndarray]

AMBIGUOUS = Verdict.UNDECIDED
"""The code :func:`exact_stability` gives a neuron whose sign the oracle cannot settle."""


# --------------------------------------------------------------------------- ranges
@dataclass(frozen=True, eq=False)
class ExactAnalysis:
    """Everything one enumeration of a network's regions tells: see :func:`exact_analysis`.

    Attributes
    ----------
    ranges:
        Per layer, the exact ``(min, max)`` of each pre-activation (achieved values).
    stability:
        Per ReLU layer, :class:`Verdict` codes (``AMBIGUOUS`` where undecidable).
    points:
        Every input evaluated (box corners, LP optima = region vertices); all in the box.
    regions:
        How many activation regions the box holds.
    """

    ranges: list[Bounds]
    stability: list[np.ndarray]
    points: np.ndarray
    regions: int

    def wrong_verdicts(self, report) -> list[str]:
        """The claims of a stability ``report`` that contradict this analysis, one line each.

        UNDECIDED is always sound, and so is any claim on an ``AMBIGUOUS`` neuron. ACTIVE
        where the oracle says INACTIVE holds when the exact minimum is ``>= 0`` (``z = 0`` on
        the whole box: both claims are true)."""
        wrong = []
        for ls, truth in zip(report.layers, self.stability, strict=True):
            lo = self.ranges[ls.layer][0]
            for j, v in enumerate(ls.verdict):
                if v == Verdict.UNDECIDED or truth[j] in (AMBIGUOUS, v):
                    continue
                if v == Verdict.ACTIVE and truth[j] == Verdict.INACTIVE and lo[j] >= 0:
                    continue
                wrong.append(
                    f"layer {ls.layer} neuron {j}: {Verdict(v).name}, oracle {Verdict(truth[j]).name}"
                )
        return wrong


def exact_analysis(
    net: Network,
    box: Box,
    margin: float = 1e-7,
    *,
    max_regions: int = MAX_REGIONS,
    budget: LpBudget | None = None,
) -> ExactAnalysis:
    """Exact pre-activation ranges and stability of every neuron, in one enumeration.

    Ranges are, per layer, the min and max over every node's polytope of an affine map:
    one LP per neuron and side, skipped when the map's maximum over the whole box cannot
    beat the extreme already found. Every value is a forward pass at an input of the box.
    The first layer's range is exact rational arithmetic (no LP). See
    :func:`exact_stability` for the verdicts and ``margin``. ``budget``: every LP, range
    and branching alike, is counted there (past it, :class:`OracleError`).
    """
    first_lo, first_hi = _exact_first_layer(net, box)
    lo = [np.full(la.out_features, np.inf) for la in net.layers]
    hi = [np.full(la.out_features, -np.inf) for la in net.layers]
    lo[0] = np.array([float(v) for v in first_lo])
    hi[0] = np.array([float(v) for v in first_hi])
    seen: list[np.ndarray] = []

    def record(points: np.ndarray) -> None:
        seen.append(points)
        for k, z in enumerate(net.preactivations(points)):
            if k:
                lo[k] = np.minimum(lo[k], z.min(axis=0))
                hi[k] = np.maximum(hi[k], z.max(axis=0))

    def on_node(i, k, az, cz, poly, pts):
        record(pts)
        new = []
        for j in range(az.shape[0] if k else 0):
            row, const = az[j], float(cz[j])
            if not row.any():
                continue
            for side, best in ((1.0, hi[k][j]), (-1.0, -lo[k][j])):
                if box_max(side * row, side * const, box) <= best:
                    continue  # this node cannot beat the extreme already found
                if budget is not None:
                    budget.spend()
                x = lp_argmax(side * row, poly, box)
                if x is not None:
                    new.append(x)
                    record(np.atleast_2d(x))
        return new

    regions = 0
    regions_of = enumerate_regions(
        net, box, on_node=on_node, max_regions=max_regions, budget=budget
    )
    for region in regions_of:
        regions += 1
        record(region.points)
    ranges = [(lo[k], hi[k]) for k in range(len(net.layers))]
    points = np.unique(np.vstack(seen), axis=0)
    return ExactAnalysis(ranges, _verdicts(net, box, ranges, margin), points, regions)


def exact_preactivation_ranges(net: Network, box: Box) -> list[Bounds]:
    """Exact min/max of every pre-activation of every layer over the box (see module notes).

    One ``(lower, upper)`` pair per layer, like :func:`exactcomp.bounds.interval_bounds`,
    but achieved values rather than bounds: each is the forward pass at an input of the box.
    """
    return exact_analysis(net, box).ranges


def _exact_first_layer(net: Network, box: Box) -> tuple[list[Fraction], list[Fraction]]:
    """Exact range of the first layer (an affine map of the box), in rational arithmetic."""
    lo = [Fraction(float(v)) for v in box.lower]
    hi = [Fraction(float(v)) for v in box.upper]
    return _rational_interval(net.layers[0].weight, net.layers[0].bias, lo, hi)


def _rational_interval(w, b, lo, hi) -> tuple[list[Fraction], list[Fraction]]:
    """Interval arithmetic in exact rationals: a sound enclosure with no rounding at all."""
    out_lo, out_hi = [], []
    for row, bias in zip(w, b, strict=True):
        s_lo = s_hi = Fraction(float(bias))
        for wi, li, ui in zip(row, lo, hi, strict=True):
            if wi == 0.0:
                continue
            f = Fraction(float(wi))
            a, c = f * li, f * ui
            s_lo += min(a, c)
            s_hi += max(a, c)
        out_lo.append(s_lo)
        out_hi.append(s_hi)
    return out_lo, out_hi


def rational_interval_bounds(
    net: Network, box: Box, zero: Sequence[np.ndarray | None] | None = None
) -> list[tuple[list[Fraction], list[Fraction]]]:
    """Interval bounds of every layer in exact rational arithmetic (sound, never rounded).

    Exact for the first layer; an enclosure for the others. ``zero[k]``, if given, marks
    neurons of layer ``k`` known to output 0 everywhere (stably inactive), whose output
    interval is then ``[0, 0]``. Settles ties such as a row with only non-positive weights
    and zero bias on ReLU outputs (``max z <= 0`` exactly).
    """
    lo = [Fraction(float(v)) for v in box.lower]
    hi = [Fraction(float(v)) for v in box.upper]
    out = []
    for k, layer in enumerate(net.layers):
        zl, zh = _rational_interval(layer.weight, layer.bias, lo, hi)
        out.append((zl, zh))
        if layer.relu:
            zl, zh = [max(v, Fraction(0)) for v in zl], [max(v, Fraction(0)) for v in zh]
            if zero is not None and k < len(zero) and zero[k] is not None:
                zl = [Fraction(0) if zero[k][j] else v for j, v in enumerate(zl)]
                zh = [Fraction(0) if zero[k][j] else v for j, v in enumerate(zh)]
        lo, hi = zl, zh
    return out


# --------------------------------------------------------------------------- stability
def exact_stability(net: Network, box: Box, margin: float = 1e-7) -> list[np.ndarray]:
    """The true verdict of every ReLU neuron, one int8 array of :class:`Verdict` codes per
    ReLU layer (in ``net.relu_layers`` order).

    ``INACTIVE`` iff ``max z <= 0``, ``ACTIVE`` iff ``min z >= 0``, else ``UNSTABLE``; a tie
    at 0 is decided exactly when rational interval arithmetic proves the sign (always in the
    first layer; deeper, using the inactive neurons already found as exact zeros).
    Otherwise an extreme within ``margin * max(1, max |z|)`` of 0 cannot be told from 0
    through an LP, and the neuron is :data:`AMBIGUOUS`: tests must skip it.
    """
    return exact_analysis(net, box, margin).stability


def _verdicts(net: Network, box: Box, ranges: list[Bounds], margin: float) -> list[np.ndarray]:
    zero: list[np.ndarray | None] = [None] * len(net.layers)
    out = []
    for k in net.relu_layers:
        rlo, rhi = rational_interval_bounds(net, box, zero)[k]
        lo, hi = ranges[k]
        tol = margin * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
        codes = np.full(lo.size, AMBIGUOUS, dtype=np.int8)
        for j in range(lo.size):
            if rhi[j] <= 0:
                codes[j] = Verdict.INACTIVE
            elif rlo[j] >= 0:
                codes[j] = Verdict.ACTIVE
            elif k == 0 or (hi[j] > tol[j] and lo[j] < -tol[j]):
                codes[j] = Verdict.UNSTABLE  # layer 0: the rational range is the exact range
            elif hi[j] < -tol[j]:
                codes[j] = Verdict.INACTIVE
            elif lo[j] > tol[j]:
                codes[j] = Verdict.ACTIVE
        zero[k] = codes == Verdict.INACTIVE
        out.append(codes)
    return out


def probe_points(net: Network, box: Box) -> np.ndarray:
    """Inputs where another network is most likely to differ from ``net`` if it differs at
    all: the box's centre and corners and every LP optimum met while enumerating ``net``'s
    regions (vertices of its regions). All rows lie in the box."""
    return exact_analysis(net, box).points


# --------------------------------------------------------------------------- differences
@dataclass(frozen=True)
class MaxDifference:
    """The largest ``||f(x) - g(x)||_inf`` over the box and an input ``x`` achieving it.

    ``value`` is the float64 forward difference at ``x`` (achieved, so a true lower bound of
    the maximum up to rounding; exact up to the LP tolerance). Unpacks as ``(value, x)``.
    """

    value: float
    x: np.ndarray
    regions: int

    def __iter__(self) -> Iterator[object]:
        return iter((self.value, self.x))


def max_output_difference(
    f: Network,
    g: Network,
    box: Box,
    *,
    floor: float = 0.0,
    max_regions: int = MAX_REGIONS,
    budget: LpBudget | None = None,
) -> MaxDifference:
    """Exact ``max_{x in box} ||f(x) - g(x)||_inf`` by enumerating the joint regions of both
    networks (one LP per output and sign per region; tiny networks only).

    ``floor`` skips every LP that cannot find a difference above it: the value is then
    exact when it exceeds ``floor``, and otherwise only known to be ``<= floor`` (set it
    to a fraction of the tolerance in question to save time on equal networks).
    ``budget``: every LP, the enumeration's and the maxima's, is counted there
    (:class:`~exactcomp.testing.regions.LpBudget`; past it, :class:`OracleError`).
    """
    if f.output_size != g.output_size:
        raise OracleError(f"output sizes differ: {f.output_size} vs {g.output_size}")
    best = {"value": -1.0, "x": box.center}

    def consider(points: np.ndarray) -> None:
        diff = np.max(np.abs(f.forward(points) - g.forward(points)), axis=1)
        i = int(np.argmax(diff))
        if diff[i] > best["value"]:
            best["value"], best["x"] = float(diff[i]), points[i].copy()

    consider(box_corners(box))
    regions = 0
    for region in enumerate_regions((f, g), box, max_regions=max_regions, budget=budget):
        regions += 1
        consider(region.points)
        (af, cf), (ag, cg) = region.maps
        dmat, dvec = af - ag, cf - cg
        poly = Polytope(region.a_ub, region.b_ub)
        for o in range(dmat.shape[0]):
            if not dmat[o].any():
                continue
            for side in (1.0, -1.0):
                if box_max(side * dmat[o], side * dvec[o], box) <= max(best["value"], floor):
                    continue
                if budget is not None:
                    budget.spend()
                x = lp_argmax(side * dmat[o], poly, box)
                if x is not None:
                    consider(np.atleast_2d(x))
    return MaxDifference(best["value"], best["x"], regions)


# --------------------------------------------------------------------------- dense grids
@dataclass(frozen=True)
class GridCheck:
    """A dense grid over a 1-2 input box and what the networks do on it.

    ``ranges`` are the observed min/max of every pre-activation of ``f`` (one pair per
    layer); ``max_difference``/``argmax`` compare ``f`` with ``g`` (0 and the centre when no
    ``g`` was given).
    """

    points: np.ndarray
    ranges: list[Bounds]
    max_difference: float
    argmax: np.ndarray


def grid_points(box: Box, per_dim: int = 257) -> np.ndarray:
    """A regular grid with ``per_dim`` values per coordinate (ends included)."""
    if box.dim > 2:
        raise OracleError(f"dense grids are for 1-2 inputs, not {box.dim}")
    axes = [np.linspace(lo, hi, per_dim) for lo, hi in zip(box.lower, box.upper, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return box.clip(np.stack([m.reshape(-1) for m in mesh], axis=1))


def grid_check(f: Network, box: Box, *, g: Network | None = None, per_dim: int = 257) -> GridCheck:
    """Evaluate ``f`` (and ``g``) on a dense grid of a 1-2 input box (an independent check
    of the region enumeration: grid ranges lie inside the exact ones, and close to them)."""
    pts = grid_points(box, per_dim)
    zs = f.preactivations(pts)
    ranges = [(z.min(axis=0), z.max(axis=0)) for z in zs]
    if g is None:
        return GridCheck(pts, ranges, 0.0, box.center)
    diff = np.max(np.abs(f.forward(pts) - g.forward(pts)), axis=1)
    i = int(np.argmax(diff))
    return GridCheck(pts, ranges, float(diff[i]), pts[i].copy())
