r"""One question's tree of the ReLU-split branch and bound (:mod:`exactcomp.bab.relu`).

A :class:`Tree` proves ``sign * z_kj < 0`` (neuron ``j`` of layer ``k``) on the box by node
LPs (:class:`~exactcomp.bab.relu_lp.SplitLP`), one split at a time; the module docstring of
:mod:`exactcomp.bab.relu` gives the maths (the node LP, the branching score, the weak-duality
bound, how an unfinished tree still bounds its neuron). Here: the node and child records, the
depth-first (or best-first) search, and the tree's bound.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import pad
from ..highs.lp import lp_min
from ..highs.margins import solver_margin
from ..network import Network
from ..search import sign_witnesses
from ..tolerances import Tolerances
from .relu_lp import Cuts, SplitLP

__all__ = ["Child", "Node", "Tree"]

ORDER = "depth"
"""Node order: ``"depth"`` (the last child first) or ``"best"`` (the weakest bound first).
A proof visits every leaf either way: with the cuts, neurons 29 and 45 of mnist-net_256x2
prop_1_0.05 took the same 1,843 and 1,125 LPs both ways."""
NODE_BOUNDS = False
"""Whether each node bounds the unstable neurons of the layers after its splits again
(:mod:`exactcomp.bab.node_bounds`) and puts them in its LP as column bounds. Off: on
mnist-net_256x6 prop_0_0.03 (layers 2, 3, 5 replayed) they changed no tree (the same
nodes and claims) and cost 17-25 % more CPU: back-substitution on a node is looser than the
whole-box LP-and-cut bounds of ~94 % of the rows it bounds (see the module)."""


@dataclass(frozen=True, eq=False)
class Node:
    """An open node: its splits, its bound ``sign * z <= top``, the ``x`` of its LP optimum,
    the branching scores read off that optimum, and its node bounds of the unstable
    neurons' ``z`` (:class:`~exactcomp.bab.node_bounds.NodeBounds`), which its children
    start from."""

    split: np.ndarray
    top: float
    x: np.ndarray
    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True, eq=False)
class Child:
    """A node not solved yet: its splits, the bounds it starts from (its parent's, clipped by
    its splits) and the shallowest layer whose bounds that changed (the deeper ones are
    bounded again on the node)."""

    split: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    after: int


class Tree:
    """The search for a proof of ``sign * z_kj <= 0`` (``+1``: inactive, ``-1``: active),
    kept between passes.

    ``open`` holds the solved nodes not yet split, ``pending`` the children of the node
    being split that are not solved yet (a node's two children are solved one after the
    other: they differ by one bound, the best warm start), ``cuts`` the question's cut rows
    while it waits for its next pass. :meth:`run` goes on until ``cap`` LPs in all;
    ``resumable`` is False once the question has its answer.
    """

    def __init__(
        self, net: Network, slp: SplitLP, k: int, j: int, sign: int, index: int, tol: Tolerances
    ) -> None:
        self.net, self.slp, self.k, self.j, self.sign, self.index = net, slp, k, j, sign, index
        self.tol = tol
        lp = slp.lp
        self.w, self.b = net.layers[k].weight[j], float(net.layers[k].bias[j])
        live = lp.out_cols >= 0
        # minimise -sign * (w h): sign * z = sign * (w h + b) <= -min + sign * b
        self.cost = np.zeros(lp.matrix.shape[1])
        self.cost[lp.out_cols[live]] = -sign * self.w[live]
        pre_lo, pre_hi = slp.pre[k][0][j], slp.pre[k][1][j]
        self.margin = solver_margin(tol, max(abs(pre_lo), abs(pre_hi)))
        self.nodes = 0
        self.open: list[tuple[float, int, Node]] = []
        root = np.zeros(slp.size, np.int8)
        nb = slp.nb
        self.pending: list[Child] = [Child(root, nb.box_lo, nb.box_hi, k)]  # the root
        self.parent_top = np.inf  # the bound of the node whose children are pending
        self.count = 0
        self.root_top = np.inf  # the root's bound, once solved
        self.cuts = Cuts()
        self.points: list[np.ndarray] = []
        self.resumable = True

    def run(self, cap: int, deadline: float | None) -> bool | None:
        """Go on until the question is answered or ``cap`` LPs are solved in all: ``True``
        proven, ``False`` refuted by a float64 witness (in ``points``), ``None`` no claim
        (budget, deadline, a failed LP)."""
        self.slp.restore(self.cuts)
        try:
            out = self._search(cap, deadline)
        finally:
            self.cuts = self.slp.drop_cuts()
        if out is not None or not self.resumable:
            self.resumable = False
            self.open, self.pending = [], []
        return out

    def bound(self) -> float:
        """A sound bound ``sign * z_kj <= bound()`` on the box while the tree is intact
        (resumable): its leaves cover the box, a closed leaf proves ``<= 0``, an open one
        its ``top``, and a pending child (not solved yet) its parent's ``top``."""
        if not self.resumable:
            return np.inf
        tops = [node.top for _, _, node in self.open]
        if self.pending:
            tops.append(self.parent_top)
        return max([0.0, *tops])

    def left(self) -> float:
        """The share of the root's bound that the tree has not closed yet (``bound() /
        root top``, 1 before the root is solved): how far the question is from its proof."""
        if not (self.resumable and np.isfinite(self.root_top) and self.root_top > 0.0):
            return 1.0
        return min(self.bound() / self.root_top, 1.0)

    def _search(self, cap: int, deadline: float | None) -> bool | None:
        net, k, j = self.net, self.k, self.j
        while True:
            while self.pending:
                if self.nodes >= cap:
                    return None  # resumable
                got = self._solve(self.pending[0], cap, deadline)
                if got is None:
                    self.resumable = False
                    return None
                self.pending.pop(0)
                if not np.isfinite(self.root_top) and isinstance(got, Node):
                    self.root_top = got.top
                if got is not True:
                    self._push(got)
            if not self.open:
                return True
            _, _, node = self.open.pop() if ORDER == "depth" else heapq.heappop(self.open)
            found = sign_witnesses(net, k, node.x[None], self.tol)
            if (found.pos if self.sign > 0 else found.neg)[j] >= 0:
                self.points.append(node.x[None])
                return False
            i = int(np.argmax(node.score)) if node.score.size else -1
            if i < 0 or node.score[i] <= 0.0:  # nothing left worth splitting here
                self.resumable = False
                return None
            self.parent_top = node.top
            after = int(self.slp.nb.layer_of[i])
            for s in (1, -1):
                split = node.split.copy()
                split[i] = s
                lower, upper = self.slp.nb.clip(split, node.lower, node.upper)
                self.pending.append(Child(split, lower, upper, after))

    def _push(self, node: Node) -> None:
        item = (-node.top, self.count, node)
        self.count += 1
        if ORDER == "depth":
            self.open.append(item)
        else:
            heapq.heappush(self.open, item)

    def _solve(self, child: Child, cap: int, deadline: float | None) -> Node | bool | None:
        """The node's LP: ``True`` closed (proven or empty), ``None`` no claim, else the node.
        One more solve after new cuts (:meth:`~exactcomp.bab.relu_lp.SplitLP.cut`), and
        one after lazy rows its optimum violates joined the LP
        (:meth:`~exactcomp.bab.relu_lp.SplitLP.add_violated`; every solve counts as a node).

        With :data:`NODE_BOUNDS` the unstable neurons deeper than the last split's layer are
        bounded again on the node first; a neuron they prove stable has its phase fixed as a
        split would (the same bound changes), and crossing bounds close the node (no input
        has its splits)."""
        slp, tol, net = self.slp, self.tol, self.net
        split, lower, upper = child.split, child.lower, child.upper
        if NODE_BOUNDS and child.after < self.k:
            lower, upper = slp.nb.tighten(split, lower, upper, child.after)
            if (lower > upper).any():
                return True
        fixed = split.copy()
        fixed[(split == 0) & (lower >= 0.0)] = 1
        fixed[(split == 0) & (upper <= 0.0)] = -1
        again = True
        while True:
            node_lp = slp.bounded(fixed, lower, upper)
            if self.cost.size < node_lp.matrix.shape[1]:
                pad_cols = node_lp.matrix.shape[1] - self.cost.size
                self.cost = np.concatenate([self.cost, np.zeros(pad_cols)])
            got = lp_min(slp.highs, node_lp, self.cost, tol, deadline)
            self.nodes += 1
            if got is None:
                return True if slp.empty(node_lp, tol) else None
            bound, v = got
            slack = float(pad(np.asarray(abs(self.b) + abs(bound)), tol)) + self.margin
            top = -bound + self.sign * self.b + slack  # sign * z_kj <= top on this node
            if top <= 0.0:
                return True
            if slp.add_violated(v):  # lazy rows that cut this optimum: solve it again
                continue
            if not (again and self.nodes < cap and slp.cut(v)):
                break
            again = False
        x = np.clip(
            v[: net.input_size],
            node_lp.col_lower[: net.input_size],
            node_lp.col_upper[: net.input_size],
        )
        return Node(split, top, x, slp.score(v, fixed, lower, upper), lower, upper)
