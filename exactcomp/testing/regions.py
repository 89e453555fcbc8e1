"""Activation regions of ReLU networks over a box, enumerated depth first with LPs.

The engine of the test oracle (:mod:`exactcomp.testing.oracle`); numpy and HiGHS only
(:func:`lp_argmax` builds each LP itself through ``highspy``), sharing no LP code with the
engine it checks: of :mod:`exactcomp.highs` it takes only the plumbing of a quiet,
single-threaded instance (:func:`~exactcomp.highs.runtime.new_highs`, the banner muted, and
:func:`~exactcomp.highs.runtime.run`, the thread scheduler), never a model, a status rule or a
margin.

How the enumeration works
-------------------------
Depth first, layer by layer, neuron by neuron. A node is a polytope
``P = {x in box : A x <= b}`` (the sign constraints chosen so far) on which every
pre-activation of the current layer is an affine map ``z_j(x) = a_j . x + c_j``. Neuron
``j`` branches into ``P & {z_j >= 0}`` (active) and ``P & {z_j <= 0}`` (inactive); a branch
is kept only when a point of ``P`` puts ``z_j`` strictly on its side (a point already known,
else the optimum of one LP). The closed half-spaces cover ``P``; a branch dropped because
``z_j`` only *touches* 0 there is covered by the other branch, which agrees with it on
``z_j = 0`` (``relu(0) = 0``). If neither side is strict, ``z_j == 0`` on all of ``P`` and
the inactive branch alone is kept. Every node therefore carries a point that lies in it.
The root's points are the box's centre and corners.

The LP tolerance
----------------
HiGHS accepts points that violate a constraint by up to its feasibility tolerance (1e-7);
constraint rows are scaled to unit infinity norm so that this is a distance in input
units, not in units of the weights. LP optima are clipped to the box.

The LP call
-----------
Each LP is passed to HiGHS directly (a fresh instance, as :func:`scipy.optimize.linprog`
passes it: minimise ``-row``, the non-zeros by columns, dual simplex, presolve on). The
oracle solves hundreds of thousands of tiny LPs (at most a dozen columns) per soak case, and
``linprog``'s wrapper (argument checks, the result object) cost 1.6-1.9 ms of each, of which
0.3 ms in HiGHS (RESULTS.md "lead20"); the direct call about 0.6 ms ("ccsoak21"). The optimal
values are the same (``tests/test_oracle_lp.py``: on random LPs, and the oracle's ranges,
stability and ``max |f - g|`` through either route); the optimal *point* of a degenerate LP
may be another vertex of the same face (scipy 1.17 bundles HiGHS 1.12, highspy is 1.16),
so the count of regions, which includes regions thinner than the LP tolerance, may differ
slightly (a conv soak case: 1,099 against 1,128), never an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from ..domain import Box
from ..highs.runtime import new_highs, run
from ..network import Network

MAX_REGIONS = 200_000
#: Branching LPs allowed per region of ``max_regions`` (an enumeration stops with
#: :class:`OracleError` past ``LPS_PER_REGION * max_regions`` of them): a deep network can
#: spend millions of feasibility LPs on few regions (a soak case of ``conv-lossy``, seed
#: 900xx, ran for over an hour inside one enumeration of fewer than 20,000 regions).
LPS_PER_REGION = 20
#: The LPs (branching and maxima) that all the exact ``max |f - g|`` of one case may solve
#: together (the soak's ``Checker.joint_lps``); past them a bound is a note ("oracle skipped"),
#: like any oracle skip. A joint region costs 1-20 LPs: a copy whose hyperplanes nearly
#: coincide with ``f``'s splits every region into slivers found by LP (conv-compress seed 6,
#: ``f`` against its compressed copy, 1,128 -> 13,752 regions by 86,021 LPs; "ccsoak21"; the
#: ``conv`` family's seed 6, 250,000 LPs in three enumerations, 230-280 s at load ~1, past the
#: soak's 300 s at load 6). The region cap alone let a case spend 20 LPs per region. 100,000
#: of the oracle's LPs (0.3-0.6 ms CPU each through highspy): 155 s wall at load 3.4-3.8.
JOINT_LPS = 100_000
#: The LPs of ``f``'s own exact analysis (ranges and branching; the soak's ``Checker``); past them
#: the case is too large for the oracle, as past ``max_regions``. The ``conv`` family's seed
#: 23717 spent 405,000 LPs (405 s at load ~3) on 20,000 regions before the region cap
#: stopped it; 150,000 LPs are 100-150 s.
F_LPS = 150_000


class OracleError(RuntimeError):
    """The oracle could not do its job (an LP failed, or the network is too large)."""


@dataclass
class LpBudget:
    """LPs that one or more enumerations may still solve, all together (a soak case's share:
    the LPs, not the regions, are what an enumeration's time is made of). :meth:`spend`
    raises :class:`OracleError` once ``total`` are spent; the caller then reports the
    question as too large for the oracle, as for too many regions."""

    total: int
    spent: int = 0

    def spend(self) -> None:
        """Count one LP, or raise :class:`OracleError` when it would pass ``total``."""
        if self.spent >= self.total:
            raise OracleError(f"more than {self.total} LPs: too large for the oracle's budget")
        self.spent += 1


# --------------------------------------------------------------------------- LP helpers
@dataclass(frozen=True)
class Polytope:
    """``{x in box : a x <= b}``; rows scaled to unit infinity norm (so the LP tolerance is
    a distance in input units rather than in units of the weights)."""

    a: np.ndarray
    b: np.ndarray

    def add(self, row: np.ndarray, rhs: float) -> Polytope:
        scale = float(np.max(np.abs(row)))
        return Polytope(np.vstack([self.a, row / scale]), np.append(self.b, rhs / scale))


def lp_argmax(row: np.ndarray, poly: Polytope, box: Box) -> np.ndarray | None:
    """A point of the polytope maximising ``row . x`` (clipped to the box), or None if empty.

    HiGHS' model status decides: optimal gives the point, infeasible (or "unbounded or
    infeasible", which on a box, where nothing is unbounded, means infeasible) gives None,
    anything else is an :class:`OracleError`."""
    scale = float(np.max(np.abs(row)))
    m, n = poly.a.shape
    lp = highspy.HighsLp()  # as linprog passes it: minimise -row, by columns, dual simplex
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_ = -np.asarray(row, dtype=np.float64) / scale
    lp.col_lower_, lp.col_upper_ = box.lower, box.upper
    lp.row_lower_, lp.row_upper_ = np.full(m, -highspy.kHighsInf), poly.b
    at = np.asarray(poly.a, dtype=np.float64).T  # the non-zeros, column by column
    nz = at != 0.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int32)
    lp.a_matrix_.index_ = np.nonzero(nz)[1].astype(np.int32)
    lp.a_matrix_.value_ = at[nz]
    h = new_highs()
    h.setOptionValue("simplex_strategy", 1)  # dual
    h.passModel(lp)
    run(h)
    status = h.getModelStatus()
    if status in (
        highspy.HighsModelStatus.kInfeasible,
        highspy.HighsModelStatus.kUnboundedOrInfeasible,
    ):
        return None
    if status != highspy.HighsModelStatus.kOptimal:
        raise OracleError(f"LP failed: HiGHS model status {h.modelStatusToString(status)}")
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return box.clip(x)


def box_max(row: np.ndarray, const: float, box: Box) -> float:
    """Max of ``row . x + const`` over the box (float64; used only to skip LPs)."""
    return float(np.sum(np.maximum(row * box.lower, row * box.upper)) + const)


# --------------------------------------------------------------------------- enumeration
@dataclass(frozen=True)
class Region:
    """One (joint) activation region: a polytope of the box on which every network is affine.

    Attributes
    ----------
    pattern:
        Per network, per ReLU layer, a bool array (True = active).
    a_ub, b_ub:
        The region is ``{x in box : a_ub x <= b_ub}``.
    maps:
        Per network, the affine map ``(A, c)`` of its output on the region.
    points:
        Points of the box known to lie in the region (LP optima: vertices of regions).
    """

    pattern: tuple[tuple[np.ndarray, ...], ...]
    a_ub: np.ndarray
    b_ub: np.ndarray
    maps: tuple[tuple[np.ndarray, np.ndarray], ...]
    points: np.ndarray


NodeHook = Callable[[int, int, np.ndarray, np.ndarray, Polytope, np.ndarray], list[np.ndarray]]
"""``hook(net_index, layer, A, c, polytope, points) -> new points`` at every layer node."""


def enumerate_regions(
    nets: Network | Sequence[Network],
    box: Box,
    *,
    on_node: NodeHook | None = None,
    max_regions: int = MAX_REGIONS,
    budget: LpBudget | None = None,
) -> Iterator[Region]:
    """Yield the joint activation regions of one or more networks over a box.

    Several networks share the input ``x``; their neurons are branched one network after
    the other, so each region is one pattern of *all* neurons (used to compare two
    networks exactly). ``on_node`` is called once per node where a layer's pre-activations
    become affine (before its neurons branch); the points it returns must lie in the node
    and are handed down to the branches. ``budget``: every branching LP is also counted
    there (:class:`LpBudget`, shared with other enumerations; past it, :class:`OracleError`).
    """
    nets = (nets,) if isinstance(nets, Network) else tuple(nets)
    for net in nets:
        box.check_size(net.input_size)
    n = box.dim
    state = {"regions": 0, "lps": 0}

    def count() -> None:
        state["regions"] += 1
        if state["regions"] > max_regions:
            raise OracleError(f"more than {max_regions} regions: the network is too large")

    def layer_node(i, k, ah, ch, poly, pts, patterns, maps):
        layer = nets[i].layers[k]
        az = layer.weight @ ah
        cz = layer.weight @ ch + layer.bias
        if on_node is not None:
            extra = on_node(i, k, az, cz, poly, pts)
            if extra:
                pts = np.vstack([pts, *[np.atleast_2d(p) for p in extra]])
        if layer.relu:
            yield from branch(
                i, k, 0, az, cz, poly, pts, np.zeros(az.shape[0], bool), patterns, maps
            )
        else:
            yield from next_layer(i, k, az, cz, poly, pts, patterns, maps)

    def next_layer(i, k, ah, ch, poly, pts, patterns, maps):
        if k + 1 < len(nets[i].layers):
            yield from layer_node(i, k + 1, ah, ch, poly, pts, patterns, maps)
            return
        maps = (*maps, (ah, ch))
        if i + 1 < len(nets):
            yield from layer_node(i + 1, 0, np.eye(n), np.zeros(n), poly, pts, patterns, maps)
            return
        count()
        yield Region(_split(patterns, nets), poly.a, poly.b, maps, pts)

    def branch(i, k, j, az, cz, poly, pts, mask, patterns, maps):
        if j == az.shape[0]:
            ah, ch = az * mask[:, None], cz * mask
            yield from next_layer(i, k, ah, ch, poly, pts, (*patterns, mask.copy()), maps)
            return
        row, const = az[j], float(cz[j])
        vals = pts @ row + const
        if not row.any():
            pos, neg = const > 0, const < 0
        else:
            pos, neg = bool((vals > 0).any()), bool((vals < 0).any())
            for side in (1.0, -1.0):
                if (pos if side > 0 else neg) or box_max(side * row, side * const, box) <= 0:
                    continue
                state["lps"] += 1
                if state["lps"] > LPS_PER_REGION * max_regions:
                    raise OracleError(
                        f"more than {LPS_PER_REGION * max_regions} LPs: the network is too large"
                    )
                if budget is not None:
                    budget.spend()
                x = lp_argmax(side * row, poly, box)
                if x is not None and side * (x @ row + const) > 0:
                    pts = np.vstack([pts, x])
                    vals = np.append(vals, x @ row + const)
                    pos, neg = (True, neg) if side > 0 else (pos, True)
        if pos:
            m = mask.copy()
            m[j] = True
            sub = poly.add(-row, const) if neg else poly
            yield from branch(i, k, j + 1, az, cz, sub, pts[vals >= 0], m, patterns, maps)
        if neg or not pos:
            sub = poly.add(row, -const) if pos else poly
            yield from branch(i, k, j + 1, az, cz, sub, pts[vals <= 0], mask, patterns, maps)

    start = Polytope(np.zeros((0, n)), np.zeros(0))
    yield from layer_node(0, 0, np.eye(n), np.zeros(n), start, box_corners(box), (), ())


def box_corners(box: Box, limit: int = 10) -> np.ndarray:
    """The box's centre and corners (over its first ``limit`` non-degenerate coordinates)."""
    free = np.flatnonzero(box.upper > box.lower)[:limit]
    corners = np.tile(box.lower, (2**free.size, 1))
    for bit, i in enumerate(free):
        corners[(np.arange(2**free.size) >> bit) & 1 == 1, i] = box.upper[i]
    return np.vstack([box.center, corners])


def _split(patterns: tuple[np.ndarray, ...], nets: tuple[Network, ...]):
    out, pos = [], 0
    for net in nets:
        r = len(net.relu_layers)
        out.append(tuple(patterns[pos : pos + r]))
        pos += r
    return tuple(out)
