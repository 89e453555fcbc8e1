r"""Activation regions with nonempty interior in any dimension: depth-first splitting + LPs.

A node of the search is a polytope ``P = {x in box : sigma_r (a_r x + c_r) >= 0}`` (the sign
choices made so far) on which the current layer's pre-activations are affine, together with
a point of ``P``'s interior. Neuron ``j`` (``z_j = a_j x + c_j``) splits ``P`` into its active
and inactive parts; a part is kept only if it has an interior, which one LP decides:

.. math::

    \max\; t \quad \text{s.t.}\quad
    m_r(x) = \sigma_r \frac{a_r x + c_r}{\|a_r\|_2} \ge t \;\; (\text{every row of } P
    \text{ and the new one}), \qquad lo \le x \le hi, \qquad t \le T,

``t`` being the radius of a ball around ``x`` (within the box's affine hull) on the right side
of every row; the part has an interior iff ``t* > tol``. ``t`` is free below, so every LP has
an optimum (and duals). Shortcuts that change the LP count, never the decisions:

* a neuron proven stable (``fixed``, from the stability engine) or settled by interval
  arithmetic over the box never splits anything;
* the node's point lies strictly on one side of ``z_j = 0``: that part needs no LP;
* **witnesses**: each node keeps a pool of points of the box beyond each of its rows by more
  than ``tol`` (random points at the root, filtered at each split, plus every LP's point);
  one beyond the new row by more than ``tol`` shows ``t* > tol`` without an LP;
* **dual certificates**: an LP that finds a part empty leaves its row duals ``lambda``;
  for any ``lambda >= 0``, ``t* <= max_{x in box} sum_r lambda_r m_r(x) / sum_r lambda_r``
  (a linear function over a box: closed form), so the same weights on the same rows (by
  neuron and sign) prove the part empty elsewhere in the search, checked in numpy
  (:mod:`exactcomp.regions.certificates`); a bound above ``tol`` just means the LP runs;
* **settling at the layer's root**: on entering a ReLU layer (a region of the layers before),
  each free neuron is tested there once; a side empty there is empty in every node below.

Rows are added to one HiGHS instance on the way down and deleted on the way back (a stack).
An LP that does not end optimal drops that part and marks the count inexact (a lower bound).

Why depth-first splitting rather than traversing the adjacency graph: traversal solves one LP
per candidate facet of every region (each free neuron is a candidate: about ``k`` LPs per
region for ``k`` free neurons, 15-20 on the digits boxes), while splitting needs one LP per
split (a point on the new side) plus the empty parts the shortcuts do not catch: 1.1-1.4 LPs
per region on the digits boxes (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..domain import Box
from ..highs.lp import Lp
from ..network import Network
from .certificates import Certificates

OnRegion = Callable[[np.ndarray, np.ndarray], None]
"""``on_region(pattern, interior_point)``; may raise to stop the search."""

SEEDS = 64
"""Random points of the box that start the witness pool (they only save LPs)."""


@dataclass
class SplitStats:
    """What the search cost: LPs solved, and LPs that ended in numerical doubt."""

    lps: int = 0
    doubtful: int = 0
    regions: int = 0
    depth: int = 0
    witnesses: int = 0
    refuted: int = 0  # empty parts proven by a kept dual certificate, without an LP
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Node:
    """A node of the search, cut off for another process: where to resume (layer ``k``,
    neuron ``j``, the layer's map ``az, cz``, the pattern so far, an interior point, the
    signs settled at the layer's root) and the rows ``(row, const, sign)`` that define its
    polytope."""

    k: int
    j: int
    az: np.ndarray
    cz: np.ndarray
    mask: np.ndarray
    point: np.ndarray
    pats: tuple[np.ndarray, ...]
    trail: tuple[tuple[np.ndarray, float, float], ...]
    known: np.ndarray | None = None


class _Search:
    def __init__(self, net, box, fixed, tol, on_region, settle=True, seeds=SEEDS):
        self.net, self.box, self.fixed, self.tol = net, box, fixed, tol
        self.on_region = on_region
        self.settle = settle
        self.n = box.dim
        self.stats = SplitStats()
        self.rows = 0
        lower = np.append(box.lower, -np.inf)  # t free: every LP optimal
        upper = np.append(box.upper, max(1.0, float(np.max(box.upper - box.lower))))
        # tiny warm-started LPs: presolve only costs
        self.lp = Lp.from_columns(lower, upper, maximize=True, presolve=False)
        self.lp.set_col_cost(self.n, 1.0)
        self.idx = np.arange(self.n + 1, dtype=np.int32)
        self.pats: list[np.ndarray] = []
        self.trail: list[tuple[np.ndarray, float, float]] = []
        self.cut_depth: int | None = None
        self.frontier: list[Node] = []
        self.mid, self.rad = box.center, box.radius
        # the rows of the stack, normalised and signed: G x + g > tol on the node's interior
        self.G = np.zeros((16, self.n))
        self.g = np.zeros(16)
        rng = np.random.default_rng(0)
        self.pools: list[np.ndarray] = [box.sample(seeds, rng)]
        self.keys: list[tuple] = []  # per stack row: (ReLU layer, neuron, sign) it splits
        self.where: dict[tuple, int] = {}  # and back: the row of a key on the stack
        self.certs = Certificates()  # (layer, neuron, sign) -> dual multipliers
        self.norms = np.zeros(0)  # the 2-norms of the current layer's rows

    # ------------------------------------------------------------------ LP rows
    def push(self, row: np.ndarray, const: float, sign: float, norm: float) -> None:
        """Add ``sign * (row x + const) / norm >= t`` as ``-sign row/norm x + t <= ...``
        (``norm``: the row's 2-norm)."""
        vals = np.append(-sign * row / norm, 1.0)
        self.lp.add_row(-np.inf, sign * const / norm, self.idx, vals)
        if self.rows == len(self.g):
            self.G = np.vstack((self.G, np.zeros_like(self.G)))
            self.g = np.append(self.g, np.zeros_like(self.g))
        self.G[self.rows] = -vals[: self.n]
        self.g[self.rows] = sign * const / norm
        self.rows += 1
        self.trail.append((row, const, sign))
        self.keys.append(())

    def pop(self) -> None:
        self.rows -= 1
        self.trail.pop()
        self.where.pop(self.keys.pop(), None)
        self.lp.delete_rows(self.rows, 1)

    def split_push(self, j: int, row: np.ndarray, const: float, sign: float) -> None:
        """:meth:`push` the row of a split of neuron ``j`` of the current layer (-1: a row of
        a node resumed from another process); the pool keeps its points beyond it."""
        self.push(row, const, sign, self.norms[j] if j >= 0 else np.linalg.norm(row))
        key = (len(self.pats), j, sign) if j >= 0 else ("resumed", self.rows, sign)
        self.keys[-1] = key
        self.where[key] = self.rows - 1
        pool = self.pools[-1]
        self.pools.append(pool[pool @ self.G[self.rows - 1] + self.g[self.rows - 1] > self.tol])

    def split_pop(self) -> None:
        self.pools.pop()
        self.pop()

    def interior(self, j, row, const, sign, norm) -> np.ndarray | None:
        """A point deep inside the current node on side ``sign`` of the row, or None.

        When the part is empty (``t* <= tol``), the LP's row duals are kept as multipliers
        for :meth:`refuted`.
        """
        self.push(row, const, sign, norm)
        self.stats.lps += 1
        solved = self.lp.solve()
        point = None
        if solved.values is not None:
            sol = solved.values
            if sol[self.n] > self.tol:
                point = self.box.clip(sol[: self.n])
            else:
                duals = np.abs(solved.duals[: self.rows])
                on = np.flatnonzero(duals[:-1] > 0)
                side = (len(self.pats), j, sign)
                self.certs.keep(
                    side, [self.keys[p] for p in on], duals[on].tolist(), float(duals[-1])
                )
        else:
            self.stats.doubtful += 1
        self.pop()
        if point is not None and np.all(
            self.G[: self.rows] @ point + self.g[: self.rows] > self.tol
        ):
            self.pools[-1] = np.vstack((self.pools[-1], point))  # a witness for later tests
        return point

    def sides(self, j, row, const, point) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Interior points of the node's active and inactive parts (None: empty): the node's
        point, else a witness of the pool, else an LP."""
        tol = self.tol
        norm = float(self.norms[j])
        dist = (float(row @ point) + const) / norm
        here = 1.0 if dist > tol else (-1.0 if dist < -tol else 0.0)
        pool = self.pools[-1]
        m = (pool @ row + const) / norm if len(pool) else None
        out: list[np.ndarray | None] = []
        for sign in (1.0, -1.0):
            if sign == here:
                out.append(point)
                continue
            if m is not None:
                best = int(np.argmax(sign * m))
                if sign * m[best] > tol:
                    self.stats.witnesses += 1
                    out.append(pool[best])
                    continue
            if self.refuted(j, row, const, sign, norm):
                self.stats.refuted += 1
                out.append(None)
                continue
            out.append(self.interior(j, row, const, sign, norm))
        return out[0], out[1]

    def refuted(self, j: int, row, const: float, sign: float, norm: float) -> bool:
        """Whether a dual certificate kept from an LP that found side ``sign`` of neuron ``j``
        of this layer empty (elsewhere in the search) proves it empty here, without an LP."""
        side, new_a, new_b = (len(self.pats), j, sign), sign * row / norm, sign * const / norm
        return self.certs.refute(
            side, new_a, new_b, self.where, self.G, self.g, self.mid, self.rad, self.tol
        )

    def box_signs(self, az: np.ndarray, cz: np.ndarray) -> np.ndarray:
        """Per neuron of the ReLU layer entered (``z = az x + cz``): 1/0 when it is active/
        inactive on the whole box (proven stable, a zero row, or interval arithmetic), else
        -1 (free)."""
        rl = len(self.pats)
        known = self.fixed[rl] if rl < len(self.fixed) else None
        norms = self.norms
        radius = np.abs(az) @ self.rad
        mid = az @ self.mid + cz
        out = np.where(
            mid - radius >= self.tol * norms, 1, np.where(mid + radius <= self.tol * norms, 0, -1)
        )
        out = np.where(norms == 0.0, (cz > 0).astype(int), out)
        if known is not None:
            out = np.where(known >= 0, known, out)
        return out.astype(np.int8)

    def layer_signs(self, az, cz, point) -> np.ndarray | None:
        """Per neuron of the layer just entered: 1/0 when its sign is the same on the whole
        node (box proofs; with ``settle``, also a test at this node), -1 when it may split.
        None when the node has no interior (only after a doubtful LP)."""
        known = self.box_signs(az, cz)
        if not self.settle:
            return known
        for j in np.flatnonzero(known < 0):
            act, ina = self.sides(int(j), az[j], float(cz[j]), point)
            if act is None and ina is None:
                return None
            if act is None or ina is None:
                known[j] = int(act is not None)
        return known

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

    def enter(self, k: int, az, cz, point) -> None:
        """Search the node ``point`` is in, at the start of ReLU layer ``k``."""
        outer, self.norms = self.norms, np.linalg.norm(az, axis=1)
        try:
            known = self.layer_signs(az, cz, point)
            if known is not None:
                self.visit(k, 0, az, cz, np.zeros(az.shape[0], bool), point, known)
        finally:
            self.norms = outer

    def visit(self, k: int, j: int, az, cz, mask, point, known) -> None:
        while True:
            if j == az.shape[0]:
                nxt = self.next_relu(k, az * mask[:, None], cz * mask)
                if nxt is None:
                    self.stats.regions += 1
                    self.on_region(np.concatenate((*self.pats, mask)), point)
                    return
                self.pats.append(mask)
                try:
                    self.enter(*nxt, point)
                finally:
                    self.pats.pop()
                return
            if known[j] >= 0:
                mask[j] = bool(known[j])
                j += 1
                continue
            row, const = az[j], float(cz[j])
            act, ina = self.sides(j, row, const, point)
            if act is None or ina is None:
                if act is None and ina is None:
                    return  # the node itself is thinner than tol (only at a doubtful LP)
                mask[j] = act is not None
                point = act if act is not None else ina
                j += 1
                continue
            for sign, part in ((1.0, act), (-1.0, ina)):
                m = mask.copy()
                m[j] = sign > 0
                self.split_push(j, row, const, sign)
                self.stats.depth = max(self.stats.depth, self.rows)
                try:
                    if self.cut_depth is not None and self.rows >= self.cut_depth:
                        trail = (*self.trail,)
                        node = Node(k, j + 1, az, cz, m, part, (*self.pats,), trail, known)
                        self.frontier.append(node)
                        continue
                    self.visit(k, j + 1, az, cz, m, part, known)
                finally:
                    self.split_pop()
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
    settle: bool = True,
    seeds: int = SEEDS,
) -> tuple[SplitStats, list[Node]]:
    """Visit every activation region of ``net`` over ``box`` with an interior (see the module
    docstring); ``fixed[r][j]`` is 1/0 for a neuron of ReLU layer ``r`` proven active/inactive
    on the box, -1 when free. ``on_region`` may raise to stop the search.

    With ``cut_depth``, nodes ``cut_depth`` splits deep are not searched but returned, to be
    searched by :func:`resume` (in other processes: the subtrees are disjoint). Returns the
    LP statistics (also kept up to date in ``stats``, if given, for a search that is stopped)
    and those nodes. ``settle`` and ``seeds`` (the witness pool's random start) only change
    how many LPs the search solves, never the regions it finds.
    """
    search = _Search(net, box, fixed, tol, on_region, settle, seeds)
    if stats is not None:
        search.stats = stats
    search.cut_depth = cut_depth
    n = box.dim
    first = search.next_relu(-1, np.eye(n), np.zeros(n))
    if first is None:  # no ReLU at all: one region
        search.stats.regions = 1
        on_region(np.zeros(0, bool), box.center)
        return search.stats, []
    search.enter(*first, box.center.copy())
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
        search.split_push(-1, row, const, sign)
    search.norms = np.linalg.norm(node.az, axis=1)
    if np.all(search.G[: search.rows] @ node.point + search.g[: search.rows] > tol):
        search.pools[-1] = np.vstack((search.pools[-1], node.point))
    search.pats = list(node.pats)
    known = node.known
    if known is None:
        known = np.full(node.az.shape[0], -1, np.int8)
    search.visit(node.k, node.j, node.az, node.cz, node.mask.copy(), node.point, known)
    return search.stats
