r"""Stability of one layer's neurons by branch and bound over ReLU splits (many inputs).

Input splitting (:mod:`exactcomp.bab.split`) pays only for a handful of inputs. With 784
inputs (MNIST) the looseness of a neuron's bound comes from the *unstable ReLUs* of the
earlier layers, so those are split instead (the idea of BaBSR, beta-CROWN, OVAL):

* a node is a set of splits :math:`z_{ji} \ge 0` or :math:`z_{ji} \le 0` on unstable neurons
  of layers :math:`j < k`; the two children of a node cover it (every input satisfies one of
  the two signs), so the leaves of the tree cover the box;
* the bound of a node is the triangle-relaxation LP of :mod:`exactcomp.bounds.lp` with the
  split rows added: :math:`z \ge 0,\ h = z` (``h - z <= 0`` joins the existing ``h - z >= 0``)
  or :math:`z \le 0,\ h = 0` (column bounds). This is the bound beta-CROWN's optimised
  multipliers converge to, solved exactly. Every split is a change of bounds, so one HiGHS
  model serves the whole search and each node warm-starts from the last basis;
* with :data:`CUTS` (the default) the LP also carries, per unstable ReLU, the phase column
  :math:`a \in [0, 1]` and big-M rows of :mod:`exactcomp.bounds.ideal_cuts`, a split fixes
  :math:`a` (1 on :math:`z \ge 0`, 0 on :math:`z \le 0`), and each question separates the
  most violated ideal cut of every unstable ReLU once, at its root
  (:data:`CUT_SEPARATIONS`). Every cut holds at every network point with its own phase, so
  it holds on every node, and the node LP is still a relaxation of the network on the
  node's inputs. The cuts removed what the triangle left to splitting: on mnist-net_256x2
  prop_1_0.05, layer 1, all 46 questions the ideal-cut phase left were proven or witnessed
  in 29.8 s of CPU, against 44.8 s for 44 of them without the cuts (neurons 29 and 45 not
  proven within 2,500 LPs each, nor before within 6,190); neuron 72 took 266 LPs instead of
  1,471;
* the bound is rigorous: weak duality with the solver's row duals evaluated in float64 and
  padded (:func:`exactcomp.highs.lp.lp_min`), plus the solver margin
  :func:`~exactcomp.highs.margins.solver_margin`, as :func:`~exactcomp.bounds.lp.lp_layer_result` adds;
* per question (neuron ``j``, the sign not yet seen) each open node is split on the unstable,
  not yet split neuron with the largest score ``|y_chord| * (-l u / (u - l))`` (the dual of
  its chord row at the node's optimum times the chord's intercept: BaBSR's estimate of what
  the relaxation adds, read off the LP; with the cuts, the duals of every row bounding ``h``
  from above). Without the cuts, on
  mnist-net_256x2 prop_1_0.05 (layer 1, neuron 72) it took the bound from 2.15 to 0.37 in 200
  nodes, against 1.45 with the "most infeasible" rule (largest ``h - relu(z)`` at the optimum);
  the question is **proven** when every leaf proves the sign. Nodes are taken depth first
  (:data:`ORDER`): the tree a proof needs does not depend on the order, and a child differs
  from the node solved just before by one bound, the best warm start (on 3 questions of that
  layer, 4,000 nodes each: 23.5 s of CPU against 29.5 s best-first, weakest bound first);
* the questions of a layer are asked in passes with growing node budgets (:func:`_budgets`),
  so that the many that end within a few dozen nodes are not kept waiting by the hard ones,
  under one node budget for the call (:data:`TOTAL_NODES_RELU`, nodes rather than seconds so
  that the verdicts do not depend on the machine's load);
* a node whose LP HiGHS finds infeasible is closed only if its dual ray certifies that, in
  float64 with the same padded weak-duality bound (cost 0: a positive bound means no input
  satisfies the node's splits);
* the ``x`` part of every LP optimum is evaluated in float64 with the witness rule of
  :func:`exactcomp.search.sign_witnesses`: a witness of the other sign ends the question
  (the neuron is unstable) and joins the pool;
* a node whose LP is not solved to optimality (time, numerical trouble, an infeasibility
  without a certificate) ends the question without a claim, and so do the node
  budget and the deadline: the neuron goes on to the MILP or stays UNDECIDED, which is sound.

The intermediate bounds of layers ``1..k-1`` (the triangles) are those proven on the whole
box; they are not re-computed per node (sound, only looser on deep networks). One LP per node
costs about 3.5 ms of CPU on mnist-net_256x2 (70 unstable ReLUs, 784 inputs) without the cuts
and about 5-7 ms with them (dense cut rows), most of it in HiGHS' dual simplex. Strong
branching (solving both children of the 3 best-scored splits and keeping the best pair) was
tried on neuron 72 and did worse than the score alone (not proven in 3,000 LPs against 1,471).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ..bounds.ideal_cuts import add_cut_rows, separate, with_phases
from ..bounds.interval import Bounds, pad
from ..bounds.linear import all_finite, finite_prefix_bounds
from ..bounds.lp import PrefixLP, build_prefix_lp
from ..domain import Box
from ..highs.lp import Lp, dual_bound, lp_min
from ..highs.margins import solver_margin
from ..network import Network
from ..search import sign_witnesses
from ..tolerances import DEFAULT, Tolerances
from .split import SplitResult

__all__ = ["prove_signs_relu", "relu_splits", "node_budget", "MAX_NODES_RELU", "RELU_SPLITS"]

RELU_SPLITS = True
"""Whether the ``fast`` engine and the re-check split ReLUs (networks with more than
:data:`~exactcomp.bab.split.MAX_INPUTS` inputs)."""

ORDER = "depth"
"""Node order: ``"depth"`` (the last child first) or ``"best"`` (the weakest bound first).
A proof visits every leaf either way: with the cuts, neurons 29 and 45 of mnist-net_256x2
prop_1_0.05 took the same 1,843 and 1,125 LPs both ways."""
MAX_NODES_RELU = 3000
"""Node budget (LP solves) of one question's tree in its last pass (:func:`_budgets`). On
mnist-net_256x2 prop_1_0.05 (layer 1, 46 questions left after the ideal cuts, both witnessed
or proven) the hardest, neurons 29 and 45 (active), took 2,092 and 1,244 LPs with the cuts;
without them they were not proven within 6,190 (nor by a 10 s MILP)."""
TOTAL_NODES_RELU = 10_000
"""Node budget of one call (all its questions together): about 35 s of one core at the
3.5 ms per node measured on mnist-net_256x2, scaled down for larger LPs (:func:`node_budget`).
A budget of nodes rather than seconds keeps the verdicts independent of the machine's load."""
REFERENCE_LP_SIZE = 1_414
"""Rows plus columns of the node LP on which :data:`TOTAL_NODES_RELU` was measured
(mnist-net_256x2 prop_1_0.05, layer 1, on its linear bounds: 420 rows, 994 columns with the
phase columns and big-M rows of the cuts; 280 and 924 without them). A larger LP costs more per
node: a call's node budget is scaled by ``REFERENCE_LP_SIZE / (rows + columns)`` (never up;
:func:`node_budget`), so that the phase keeps to about the same CPU time. On a CIFAR-10-sized
convolutional network (``python -m benchmarks.cifar``, layer 2: 2,738 rows, 5,288 columns)
a node took 25 ms, and the 10,000 nodes 254 s for one neuron proven of 5."""
CUTS = True
"""Whether the node LP carries a phase column per unstable ReLU and the question's ideal cuts
(:mod:`exactcomp.bounds.ideal_cuts`); a split then also fixes the phase. Off: the triangle LP
with split rows of the first version (kept for comparison and for the tests)."""
CUT_SEPARATIONS = 1
"""Cut separations per question, at the first nodes whose bound does not settle it (the root
first); each adds at most one cut per unstable ReLU and is followed by one more solve of that
node. One, not more: each cut row is dense (up to the width of the previous layer), and on
mnist-net_256x2 prop_1_0.05 neurons 29 and 45 took 17.1 s of CPU with one separation, 24.1 s
with two (fewer LPs, 1,630 and 900, each slower)."""
FIRST = 30
"""Node budget of the first pass."""
GROWTH = 10
"""Factor between the budgets of successive passes (30, 300, 3,000). With 8 (30, 240,
1,920, 3,000) neuron 29 of mnist-net_256x2 prop_1_0.05 (2,092 LPs) re-ran 2,190 LPs from
its root before its last pass; with 10, 330."""


class _SplitLP:
    """The prefix LP of layers ``0..k-1`` with, per unstable ReLU, a free row ``h - z`` that a
    split ``z >= 0`` closes to ``h - z <= 0``; and the bound changes of any set of splits."""

    def __init__(self, net: Network, box: Box, k: int, pre: Sequence[Bounds], tol: Tolerances):
        base = build_prefix_lp(net, box, k, pre, tol)
        z = np.concatenate([r.z for r in base.relus]) if base.relus else np.zeros(0, int)
        h = np.concatenate([r.h for r in base.relus]) if base.relus else np.zeros(0, int)
        n = z.size
        ncol, nrow = base.matrix.shape[1], base.matrix.shape[0]
        extra = sp.csr_matrix(
            (
                np.concatenate([np.ones(n), -np.ones(n)]),
                (np.concatenate([np.arange(n)] * 2), np.concatenate([h, z])),
            ),
            shape=(n, ncol),
        )
        self.lp = replace(
            base,
            matrix=sp.vstack([base.matrix, extra]).tocsr(),
            row_lower=np.concatenate([base.row_lower, np.full(n, -np.inf)]),
            row_upper=np.concatenate([base.row_upper, np.full(n, np.inf)]),
        )
        self.z, self.h, self.rows = z, h, nrow + np.arange(n)
        # the chord rows are the only rows of the base LP with no lower side, one per
        # unstable neuron, in the same order as the ``relus`` (build_prefix_lp)
        self.chord = np.flatnonzero(np.isneginf(base.row_lower))
        lo = np.concatenate([r.lower for r in base.relus]) if n else np.zeros(0)
        hi = np.concatenate([r.upper for r in base.relus]) if n else np.zeros(0)
        self.intercept = -lo * hi / (hi - lo) if n else np.zeros(0)
        if self.chord.size != n:  # pragma: no cover - the layout of build_prefix_lp changed
            raise RuntimeError("unexpected prefix LP layout")
        self.phases = np.zeros(0, dtype=np.int64)
        if CUTS and n:
            self.lp, phases = with_phases(self.lp)
            self.phases = np.concatenate(phases)
        self.base = self.lp
        self.highs = Lp.from_model(self.lp)
        self.applied = np.zeros(n, dtype=np.int8)  # the splits the HiGHS model holds now
        self._net, self._tol = net, tol
        self.separations = 0
        self._upper: sp.csr_matrix | None = None

    def cut(self, v: np.ndarray) -> bool:
        """Add the most violated ideal cut of each unstable ReLU at the LP point ``v``
        (:func:`~exactcomp.bounds.ideal_cuts.separate`), at most :data:`CUT_SEPARATIONS`
        times per question; True when rows were added. A cut holds on the whole box (every
        network point satisfies it with its own phase), so it is valid on every node."""
        if not self.phases.size or self.separations >= CUT_SEPARATIONS:
            return False
        self.separations += 1
        cols, coefs, rhss = separate(self._net, self.lp, self._phase_list(), v, self._tol)
        if not cols:
            return False
        self.lp = add_cut_rows(self.highs, self.lp, cols, coefs, rhss)
        self._upper = None
        return True

    def drop_cuts(self) -> None:
        """Remove the cut rows: each question separates its own."""
        extra = self.lp.matrix.shape[0] - self.base.matrix.shape[0]
        if extra:
            self.highs.delete_rows(self.base.matrix.shape[0], extra)
        self.lp, self.separations, self._upper = self.base, 0, None

    def _phase_list(self) -> list[np.ndarray]:
        """The phase columns, one array per layer of unstable ReLUs."""
        out, at = [], 0
        for r in self.lp.relus:
            out.append(self.phases[at : at + r.neurons.size])
            at += r.neurons.size
        return out

    @property
    def size(self) -> int:
        return self.z.size

    def score(self, v: np.ndarray, split: np.ndarray) -> np.ndarray:
        """Branching score of each unstable neuron at the last LP optimum ``v``: the dual
        weight holding its ``h`` down (the chord row's dual; with :data:`CUTS`, the duals of
        every row bounding ``h`` from above, each times ``h``'s coefficient) times the
        chord's intercept at 0, ``-l u / (u - l)`` (what that relaxation can add to the
        bound; the BaBSR idea read off the LP), ties broken by how far the optimum sits
        above ``relu(z)``; ``-1`` for the neurons already split."""
        y = self.highs.row_duals()
        gap = v[self.h] - np.maximum(v[self.z], 0.0)
        if self.phases.size:
            out = (np.abs(y) @ self._upper_rows()) * self.intercept
        else:
            out = np.abs(y[self.chord]) * self.intercept
        out = out + 1e-9 * np.maximum(gap, 0.0)
        out[split != 0] = -1.0
        return out

    def _upper_rows(self) -> sp.csr_matrix:
        """Rows x unstable neurons: the coefficient of ``h_i`` in each row that bounds it
        from above (a ``<=`` row with a positive coefficient; the chord, the phase rows and
        the cuts), so that ``|y| @ this`` is the dual weight holding each ``h_i`` down."""
        if self._upper is None:
            a = self.lp.matrix.tocsc()[:, self.h].tocsr()
            a.data[a.data < 0.0] = 0.0
            keep = np.isneginf(self.lp.row_lower).astype(float)
            keep[self.rows] = 0.0  # the split rows: only closed on split neurons
            self._upper = sp.diags(keep) @ a
        return self._upper

    def empty(self, lp: PrefixLP, tol: Tolerances) -> bool:
        """True when HiGHS found the node's LP infeasible *and* its dual ray certifies it:
        with cost 0, the weak-duality bound of :func:`~exactcomp.highs.lp.dual_bound`
        (float64, padded) is a lower bound of ``0`` over the feasible set; above 0, the set is
        empty. Anything else is no proof."""
        ray = self.highs.dual_ray()
        if ray is None or ray.size != lp.matrix.shape[0]:
            return False
        zero = np.zeros(lp.matrix.shape[1])
        return max(dual_bound(lp, zero, ray, tol), dual_bound(lp, zero, -ray, tol)) > 0.0

    def bounded(self, split: np.ndarray) -> PrefixLP:
        """The LP of a node (``split[i]``: ``+1`` for ``z_i >= 0``, ``-1`` for ``z_i <= 0``)
        with its bounds set in the HiGHS model too (only the changed ones are sent)."""
        lp = self.lp
        cl, cu = lp.col_lower.copy(), lp.col_upper.copy()
        ru = lp.row_upper.copy()
        pos, neg = split > 0, split < 0
        cl[self.z[pos]] = np.maximum(cl[self.z[pos]], 0.0)
        cu[self.z[neg]] = np.minimum(cu[self.z[neg]], 0.0)
        cu[self.h[neg]] = 0.0
        ru[self.rows[pos]] = 0.0
        if self.phases.size:  # the phase of a split neuron is fixed: a = 1 on z >= 0, 0 else
            cl[self.phases[pos]] = 1.0
            cu[self.phases[neg]] = 0.0
        changed = np.flatnonzero(split != self.applied)
        if changed.size:
            parts = [self.z[changed], self.h[changed]]
            if self.phases.size:
                parts.append(self.phases[changed])
            cols = np.unique(np.concatenate(parts)).astype(np.int32)
            self.highs.change_col_bounds(cols, cl[cols], cu[cols])
            rows = self.rows[changed].astype(np.int32)
            rl = np.full(rows.size, -np.inf)
            self.highs.change_row_bounds(rows, rl, ru[rows])
            self.applied = split.copy()
        return replace(lp, col_lower=cl, col_upper=cu, row_upper=ru)


def prove_signs_relu(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    *,
    tol: Tolerances = DEFAULT,
    max_nodes: int = MAX_NODES_RELU,
    total_nodes: int = TOTAL_NODES_RELU,
    deadline: float | None = None,
) -> SplitResult:
    """Prove ``max z_kj <= 0`` or ``min z_kj >= 0`` for each ``j`` in ``neurons`` by ReLU splits.

    The parameters and the result are those of :func:`exactcomp.bab.prove_signs` (``sides``:
    ``+1`` seeks only ``max z <= 0``, ``-1`` only ``min z >= 0``, ``0`` both); ``max_nodes``
    is the budget of LP solves per question, ``total_nodes`` that of the call, ``deadline`` a ``time.perf_counter()`` instant
    after which no LP starts. ``nodes`` counts the LPs solved.
    """
    t0 = time.perf_counter()
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    m = neurons.size
    inactive = np.zeros(m, dtype=bool)
    active = np.zeros(m, dtype=bool)
    none = np.empty((0, box.dim))
    if m == 0 or k == 0:
        return SplitResult(neurons, inactive, active, none, 0, True, 0.0)
    pre = finite_prefix_bounds(net, box, k, known, tol)
    if not all_finite(pre[:k]):
        return SplitResult(neurons, inactive, active, none, 0, False, 0.0)
    slp = _SplitLP(net, box, k, pre, tol)
    total_nodes = node_budget(total_nodes, slp.lp.matrix.shape)
    points: list[np.ndarray] = []
    nodes = 0
    lim = None if deadline is None else deadline + time.monotonic() - time.perf_counter()
    todo = [
        (i, j, sign)
        for i, j in enumerate(neurons.tolist())
        for sign in {0: (1, -1), 1: (1,), -1: (-1,)}[int(np.sign(sides[i]))]
    ]
    for budget in _budgets(max_nodes):
        again = []
        for i, j, sign in todo:
            if inactive[i] or active[i]:
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                again.append((i, j, sign))
                continue
            mag = max(abs(pre[k][0][j]), abs(pre[k][1][j]))
            margin = solver_margin(tol, mag)
            cap = min(budget, total_nodes - nodes)
            if cap <= 0:
                again.append((i, j, sign))
                continue
            res, used, pts = _question(net, slp, k, j, sign, margin, tol, cap, lim)
            slp.drop_cuts()
            nodes += used
            points += pts
            if res is True:
                (inactive if sign > 0 else active)[i] = True
            elif res is None and used >= cap:  # out of nodes: a larger budget may do
                again.append((i, j, sign))
        todo = again
    complete = not todo
    both = inactive & active
    inactive &= ~both
    active &= ~both
    pts = np.concatenate(points) if points else none
    return SplitResult(neurons, inactive, active, pts, nodes, complete, time.perf_counter() - t0)


def relu_splits() -> bool:
    """:data:`RELU_SPLITS` (a function so that tests aimed at the phases after it can switch
    it off, as :func:`exactcomp.bab.split.split_inputs` does for input splits)."""
    return RELU_SPLITS


def node_budget(total_nodes: int, shape: tuple[int, int]) -> int:
    """The node budget of a call on a prefix LP of ``shape`` (rows, columns): ``total_nodes``
    scaled down by the LP's size against :data:`REFERENCE_LP_SIZE` (a count of nodes, not
    of seconds, so the verdicts still do not depend on the machine's load)."""
    size = int(shape[0]) + int(shape[1])
    if size <= REFERENCE_LP_SIZE:
        return int(total_nodes)
    return max(int(total_nodes * REFERENCE_LP_SIZE // size), 1)


def _budgets(max_nodes: int) -> list[int]:
    """The node budgets of the successive passes over the questions still open: most
    questions end at the root (a witness, or the LP alone), a few need hundreds of nodes, so
    each pass gives the survivors :data:`GROWTH` times more, up to ``max_nodes``. A question
    that fails in a pass is re-run from its root in the next (at most ``1 / (GROWTH - 1)`` of
    the nodes wasted)."""
    out = [FIRST]
    while out[-1] < max_nodes:
        out.append(min(out[-1] * GROWTH, max_nodes))
    return [b for b in out if b <= max_nodes] or [max_nodes]


def _question(
    net: Network,
    slp: _SplitLP,
    k: int,
    j: int,
    sign: int,
    margin: float,
    tol: Tolerances,
    max_nodes: int,
    deadline: float | None,
) -> tuple[bool | None, int, list[np.ndarray]]:
    """Search for a proof of ``sign * z_kj <= 0`` (``+1``: inactive, ``-1``: active).

    Returns ``(proven, nodes, witness points)``: ``True`` proven, ``False`` refuted by a
    float64 witness, ``None`` no claim (budget, deadline, a failed LP).
    """
    lp = slp.lp
    w, b = net.layers[k].weight[j], float(net.layers[k].bias[j])
    live = lp.out_cols >= 0
    # minimise -sign * (w h): sign * z = sign * (w h + b) <= -min + sign * b
    cost = np.zeros(lp.matrix.shape[1])
    cost[lp.out_cols[live]] = -sign * w[live]
    nodes = 0

    def solve(split: np.ndarray) -> _Node | bool | None:
        """The node's LP: ``True`` closed (proven or empty), ``None`` no claim, else the node."""
        nonlocal nodes, cost
        for again in (True, False):  # a second solve only after new cuts
            node_lp = slp.bounded(split)
            if cost.size < node_lp.matrix.shape[1]:
                cost = np.concatenate([cost, np.zeros(node_lp.matrix.shape[1] - cost.size)])
            got = lp_min(slp.highs, node_lp, cost, tol, deadline)
            nodes += 1
            if got is None:
                return True if slp.empty(node_lp, tol) else None
            bound, v = got
            slack = float(pad(np.asarray(abs(b) + abs(bound)), tol)) + margin
            top = -bound + sign * b + slack  # sign * z_kj <= top on this node
            if top <= 0.0:
                return True
            if not (again and nodes < max_nodes and slp.cut(v)):
                break
        x = np.clip(
            v[: net.input_size],
            node_lp.col_lower[: net.input_size],
            node_lp.col_upper[: net.input_size],
        )
        return _Node(split, top, x, slp.score(v, split))

    root = solve(np.zeros(slp.size, np.int8))
    if root is True or root is None:
        return root, nodes, []
    stack: list[tuple[float, int, _Node]] = [(-root.top, 0, root)]
    count = 1
    while stack:
        _, _, node = stack.pop() if ORDER == "depth" else heapq.heappop(stack)
        found = sign_witnesses(net, k, node.x[None], tol)
        if (found.pos if sign > 0 else found.neg)[j] >= 0:
            return False, nodes, [node.x[None]]
        i = int(np.argmax(node.score)) if node.score.size else -1
        if i < 0 or node.score[i] <= 0.0:  # nothing left worth splitting here
            return None, nodes, []
        for s in (1, -1):
            if nodes >= max_nodes:
                return None, nodes, []
            split = node.split.copy()
            split[i] = s
            child = solve(split)
            if child is None:
                return None, nodes, []
            if child is True:
                continue
            if ORDER == "depth":
                stack.append((-child.top, count, child))
            else:
                heapq.heappush(stack, (-child.top, count, child))
            count += 1
    return True, nodes, []


@dataclass(frozen=True, eq=False)
class _Node:
    """An open node: its splits, its bound ``sign * z <= top``, the ``x`` of its LP optimum
    and the branching scores read off that optimum."""

    split: np.ndarray
    top: float
    x: np.ndarray
    score: np.ndarray
