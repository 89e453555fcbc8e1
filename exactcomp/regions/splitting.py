r"""Activation regions with nonempty interior in any dimension: depth-first splitting + LPs.

A node of the search is a polytope ``P = {x in box : sigma_r (a_r x + c_r) >= 0}`` (the sign
choices made so far) on which the current layer's pre-activations are affine, together with
a point of ``P``'s interior. Neuron ``j`` (``z_j = a_j x + c_j``) splits ``P`` into its active
and inactive parts; a part is kept only if it has an interior, which one LP decides:

.. math::

    \max\; t \quad \text{s.t.}\quad
    \sigma_r \frac{a_r x + c_r}{\|a_r\|_2} \ge t \;\; (\text{every row of } P
    \text{ and the new one}), \qquad lo \le x \le hi, \qquad 0 \le t \le T,

``t`` being the radius of a ball around ``x`` (within the box's affine hull) on the right side
of every row; the part has an interior iff ``t* > tol``. Three shortcuts keep LPs rare:

* a neuron proven stable (``fixed``, from the stability engine) or whose sign interval
  arithmetic over the whole box settles never splits anything;
* the node's interior point lies strictly on one side of ``z_j = 0``: that part needs no LP;
* a part whose other side is empty needs no row: the row is redundant for the interior.

Rows are added to one HiGHS instance on the way down and deleted on the way back (a stack), so
each LP warm-starts from the last basis. An LP that ends neither optimal nor infeasible
(numerical trouble) drops that part and marks the count inexact (a lower bound).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..domain import Box
from ..highs.lp import Lp
from ..highs.status import Termination
from ..network import Network

OnRegion = Callable[[np.ndarray, np.ndarray], None]
"""``on_region(pattern, interior_point)``; may raise to stop the search."""


@dataclass
class SplitStats:
    """What the search cost: LPs solved, and LPs that ended in numerical doubt."""

    lps: int = 0
    doubtful: int = 0
    regions: int = 0
    depth: int = 0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Node:
    """A node of the search, cut off for another process: where to resume (layer ``k``,
    neuron ``j``, the layer's map ``az, cz``, the pattern so far, an interior point) and the
    rows ``(row, const, sign)`` that define its polytope."""

    k: int
    j: int
    az: np.ndarray
    cz: np.ndarray
    mask: np.ndarray
    point: np.ndarray
    pats: tuple[np.ndarray, ...]
    trail: tuple[tuple[np.ndarray, float, float], ...]


class _Search:
    def __init__(self, net, box, fixed, tol, on_region):
        self.net, self.box, self.fixed, self.tol = net, box, fixed, tol
        self.on_region = on_region
        self.n = box.dim
        self.stats = SplitStats()
        self.rows = 0
        lower = np.append(box.lower, 0.0)
        upper = np.append(box.upper, max(1.0, float(np.max(box.upper - box.lower))))
        # tiny warm-started LPs: presolve only costs
        self.lp = Lp.from_columns(lower, upper, maximize=True, presolve=False)
        self.lp.set_col_cost(self.n, 1.0)
        self.idx = np.arange(self.n + 1, dtype=np.int32)
        self.pats: list[np.ndarray] = []
        self.trail: list[tuple[np.ndarray, float, float]] = []
        self.cut_depth: int | None = None
        self.frontier: list[Node] = []

    # ------------------------------------------------------------------ LP rows
    def push(self, row: np.ndarray, const: float, sign: float) -> None:
        """Add ``sign * (row x + const) / ||row|| >= t`` as ``-sign row/||row|| x + t <= ...``."""
        norm = float(np.linalg.norm(row))
        vals = np.append(-sign * row / norm, 1.0)
        self.lp.add_row(-np.inf, sign * const / norm, self.idx, vals)
        self.rows += 1
        self.trail.append((row, const, sign))

    def pop(self) -> None:
        self.rows -= 1
        self.trail.pop()
        self.lp.delete_rows(self.rows, 1)

    def interior(self, row, const, sign) -> np.ndarray | None:
        """A point deep inside the current node on side ``sign`` of the row, or None."""
        self.push(row, const, sign)
        self.stats.lps += 1
        solved = self.lp.solve()
        point = None
        if solved.values is not None:
            sol = solved.values
            if sol[self.n] > self.tol:
                point = self.box.clip(sol[: self.n])
        elif solved.termination is not Termination.INFEASIBLE:
            self.stats.doubtful += 1
        self.pop()
        return point

    # ------------------------------------------------------------------ search
    def next_relu(self, k, a, c):
        """The first ReLU layer after ``k`` and its pre-activation map, given the map ``h = a x
        + c`` of layer ``k``'s output (layers without ReLU in between are composed in)."""
        for k2 in range(k + 1, len(self.net.layers)):
            layer = self.net.layers[k2]
            a, c = layer.weight @ a, layer.weight @ c + layer.bias
            if layer.relu:
                return k2, a, c
        return None

    def visit(self, k: int, j: int, az, cz, mask, point) -> None:
        box, tol = self.box, self.tol
        while True:
            if j == az.shape[0]:
                nxt = self.next_relu(k, az * mask[:, None], cz * mask)
                if nxt is None:
                    self.stats.regions += 1
                    self.on_region(np.concatenate((*self.pats, mask)), point)
                    return
                self.pats.append(mask)
                try:
                    k2, naz, ncz = nxt
                    self.visit(k2, 0, naz, ncz, np.zeros(naz.shape[0], bool), point)
                finally:
                    self.pats.pop()
                return
            rl = len(self.pats)
            known = self.fixed[rl] if rl < len(self.fixed) else None
            if known is not None and known[j] >= 0:
                mask[j] = bool(known[j])
                j += 1
                continue
            row, const = az[j], float(cz[j])
            norm = float(np.linalg.norm(row))
            if norm == 0.0:
                mask[j] = const > 0
                j += 1
                continue
            radius = float(np.abs(row) @ box.radius)
            mid = float(row @ box.center) + const
            if mid - radius >= tol * norm:
                mask[j] = True
                j += 1
                continue
            if mid + radius <= tol * norm:
                j += 1
                continue
            dist = (float(row @ point) + const) / norm
            here = 1.0 if dist > tol else (-1.0 if dist < -tol else 0.0)
            sides = {}
            for sign in (1.0, -1.0):
                sides[sign] = point if sign == here else self.interior(row, const, sign)
            if sides[1.0] is None or sides[-1.0] is None:
                mask[j] = sides[1.0] is not None
                if sides[1.0] is None and sides[-1.0] is None:
                    return  # the node itself is thinner than tol (only at a doubtful LP)
                point = sides[1.0] if sides[1.0] is not None else sides[-1.0]
                j += 1
                continue
            for sign in (1.0, -1.0):
                m = mask.copy()
                m[j] = sign > 0
                self.push(row, const, sign)
                self.stats.depth = max(self.stats.depth, self.rows)
                try:
                    if self.cut_depth is not None and self.rows >= self.cut_depth:
                        node = Node(k, j + 1, az, cz, m, sides[sign], (*self.pats,), (*self.trail,))
                        self.frontier.append(node)
                        continue
                    self.visit(k, j + 1, az, cz, m, sides[sign])
                finally:
                    self.pop()
            return


def split_regions(
    net: Network,
    box: Box,
    fixed: Sequence[np.ndarray | None],
    tol: float,
    on_region: OnRegion,
    *,
    cut_depth: int | None = None,
    stats: SplitStats | None = None,
) -> tuple[SplitStats, list[Node]]:
    """Visit every activation region of ``net`` over ``box`` with an interior (see the module
    docstring); ``fixed[r][j]`` is 1/0 for a neuron of ReLU layer ``r`` proven active/inactive
    on the box, -1 when free. ``on_region`` may raise to stop the search.

    With ``cut_depth``, nodes ``cut_depth`` splits deep are not searched but returned, to be
    searched by :func:`resume` (in other processes: the subtrees are disjoint). Returns the
    LP statistics (also kept up to date in ``stats``, if given, for a search that is stopped)
    and those nodes.
    """
    search = _Search(net, box, fixed, tol, on_region)
    if stats is not None:
        search.stats = stats
    search.cut_depth = cut_depth
    n = box.dim
    first = search.next_relu(-1, np.eye(n), np.zeros(n))
    if first is None:  # no ReLU at all: one region
        search.stats.regions = 1
        on_region(np.zeros(0, bool), box.center)
        return search.stats, []
    k, az, cz = first
    search.visit(k, 0, az, cz, np.zeros(az.shape[0], bool), box.center.copy())
    return search.stats, search.frontier


def resume(
    net: Network,
    box: Box,
    fixed: Sequence[np.ndarray | None],
    tol: float,
    node: Node,
    on_region: OnRegion,
    stats: SplitStats | None = None,
) -> SplitStats:
    """Search the subtree of one node cut off by :func:`split_regions`."""
    search = _Search(net, box, fixed, tol, on_region)
    if stats is not None:
        search.stats = stats
    for row, const, sign in node.trail:
        search.push(row, const, sign)
    search.pats = list(node.pats)
    search.visit(node.k, node.j, node.az, node.cz, node.mask.copy(), node.point)
    return search.stats
