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
  that the verdicts do not depend on the machine's load); a question's tree is kept between
  passes and resumed from its open nodes (on mnist-net_256x2 prop_1_0.05, layer 1: 5,224
  LPs instead of 6,634 re-running each tree from its root);
* a node whose LP HiGHS finds infeasible is closed only if its dual ray certifies that, in
  float64 with the same padded weak-duality bound (cost 0: a positive bound means no input
  satisfies the node's splits);
* the ``x`` part of every LP optimum is evaluated in float64 with the witness rule of
  :func:`exactcomp.search.sign_witnesses`: a witness of the other sign ends the question
  (the neuron is unstable) and joins the pool;
* a node whose LP is not solved to optimality (time, numerical trouble, an infeasibility
  without a certificate) ends the question without a claim, and so do the node
  budget and the deadline: the neuron goes on to the MILP or stays UNDECIDED, which is sound;
* a tree stopped by the node budget or the deadline still bounds its neuron: its leaves
  cover the box, so ``sign * z_kj`` is at most the largest ``top`` of its open nodes (a
  pending child counts its parent's, a closed leaf 0) (:meth:`Tree.bound`). The result
  carries these bounds (``lower``/``upper``), which the engine keeps for the relaxations
  and big-M constants of the later layers.

The intermediate bounds of layers ``1..k-1`` (the triangles) are those proven on the whole
box. With :data:`NODE_BOUNDS` a node first bounds the unstable neurons of the layers after
its last split again on the node (back-substitution with the split neurons exact,
:mod:`exactcomp.bab.node_bounds`) and puts them in as column bounds of ``z`` and ``h``; a
neuron they prove stable has its phase fixed as a split would. Off by default: on
mnist-net_256x6 prop_0_0.03 (the captured questions of layers 2, 3 and 5 replayed with
``scripts/relu_split_replay.py``) no tree changed (the same 7,307 / 5,510 / 3,762 LPs and
claims) for 17-25 % more CPU, since the back-substituted node bounds were tighter than the
whole-box LP-and-cut bounds for only 6 % (layer 2) and 39 % (layer 5) of the rows, by
little, and proved 9 and 22 neurons stable in all.

Between passes the open questions are ordered closest to their proof first
(:data:`CLOSEST_FIRST`, :meth:`Tree.left`), and a question whose tree still leaves more than
:data:`GIVE_UP_LEFT` of its root's bound open after :data:`GIVE_UP_NODES` LPs gets no further
pass (its tree's bound is kept). On the same replays (CPU s, questions left open):
layer 2 39.0 s, 2 -> 41.3 s, 1 (closest first) -> 26.5 s, 2 (and give-up); layer 3 57.9 s,
11 -> 56.8 s, 9 -> 56.6 s, 9; layer 5 49.1 s, 3 -> 47.7 s, 2 -> 21.9 s, 2. Neither changed a
claim of mnist-net_256x2 prop_1_0.05 (layer 1: 5,432 LPs, the same 114 claims). One LP per node
costs about 3.5 ms of CPU on mnist-net_256x2 (70 unstable ReLUs, 784 inputs) without the cuts
and about 5-7 ms with them (dense cut rows), most of it in HiGHS' dual simplex. Strong
branching (solving both children of the 3 best-scored splits and keeping the best pair) was
tried on neuron 72 and did worse than the score alone (not proven in 3,000 LPs against 1,471).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..bounds.interval import Bounds
from ..bounds.linear import all_finite, finite_prefix_bounds
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .relu_lp import SplitLP
from .relu_tree import Tree
from .split import SplitResult

if TYPE_CHECKING:
    from .beta_tree import Spreading

__all__ = [
    "prove_signs_relu",
    "relu_splits",
    "root_cuts",
    "node_budget",
    "MAX_NODES_RELU",
    "RELU_SPLITS",
]

RELU_SPLITS = True
"""Whether the ``fast`` engine and the re-check split ReLUs (networks with more than
:data:`~exactcomp.bab.split.MAX_INPUTS` inputs)."""

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
CLOSEST_FIRST = True
"""Whether each pass (:func:`_budgets`) resumes the open questions closest to their proof
first (:meth:`Tree.left`), so that the call's node budget goes to those before the ones
whose trees barely moved."""
GIVE_UP_NODES = 300
GIVE_UP_LEFT = 0.8
"""A question whose tree has solved at least :data:`GIVE_UP_NODES` LPs and still leaves more
than this share of its root's bound open (:meth:`Tree.left`) gets no further pass: its
nodes go to the others, and its tree's bound is kept."""
CUTS = True
"""Whether the node LP carries a phase column per unstable ReLU and the question's ideal cuts
(:mod:`exactcomp.bounds.ideal_cuts`); a split then also fixes the phase. Off: the triangle LP
with split rows of the first version (kept for comparison and for the tests)."""
BATCHED_FIRST = True
"""Whether the batched optimised linear bounds of :mod:`exactcomp.bab.beta` ask the questions
first (:func:`exactcomp.bab.beta_first.batched_first`), the LP trees getting those they leave.
On mnist-net_256x6 prop_0_0.03 the whole trace went from 9 undecided neurons in 266.7 s of
CPU to 4 in 197.3 s: it bounds 8-15 times more nodes per CPU second than the node LP, each
about 1.3 times looser, and the hard questions need the nodes (:mod:`exactcomp.bab.beta_tree`)."""
BATCHED_MIN_QUESTIONS = 4
"""Fewer neurons than this in a call: the LP trees alone, even with :data:`BATCHED_FIRST`. The
batched engine's first call in a process imports torch (about 3 s of CPU on this machine),
which a layer with a question or two does not repay: on the digits models over [0,1]^64
(``python -m benchmarks stability --suite digits --methods fast``) the one ReLU-split question
of l1 = 1e-4 and of l1 = 5e-4 took 2.7 and 2.4 s of CPU with it, against 0.64 and 0.07 s
before the batched engine (LP trees alone, the same verdicts; benchmarks/RESULTS.md "End-of-stop
checks (2026-12-06, fourth stop)"). Layers of the MNIST networks that need the batched trees
ask it tens of questions (31, 40 and 11 on mnist-net_256x6 prop_0_0.03)."""
FIRST = 30
"""Node budget of the first pass."""
GROWTH = 10
"""Factor between the budgets of successive passes (30, 300, 3,000). Trees are resumed
between passes, so the factor only sets how long the easy questions wait for the hard ones."""


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
    spread: Spreading | None = None,
) -> SplitResult:
    """Prove ``max z_kj <= 0`` or ``min z_kj >= 0`` for each ``j`` in ``neurons`` by ReLU splits.

    The parameters and the result are those of :func:`exactcomp.bab.prove_signs` (``sides``:
    ``+1`` seeks only ``max z <= 0``, ``-1`` only ``min z >= 0``, ``0`` both); ``max_nodes``
    is the budget of LP solves per question, ``total_nodes`` that of the call, ``deadline`` a
    ``time.perf_counter()`` instant after which no LP starts. ``nodes`` counts the LPs solved
    (and, with :data:`BATCHED_FIRST`, the nodes of the batched engine before them).
    ``spread``: other processes for the batched trees (:mod:`exactcomp.bab.beta_parts`).
    """
    if BATCHED_FIRST and len(neurons) >= BATCHED_MIN_QUESTIONS:
        from . import beta_tree

        cuts = (
            root_cuts(net, box, k, known, neurons, sides, tol, beta_tree.CUTS_PER_NEURON)
            if beta_tree.CUTS
            else ()
        )
        from .beta_first import batched_first

        return batched_first(
            _prove_signs_lp,
            net,
            box,
            k,
            known,
            neurons,
            sides,
            tol,
            max_nodes,
            total_nodes,
            deadline,
            cuts,
            spread,
        )
    return _prove_signs_lp(
        net,
        box,
        k,
        known,
        neurons,
        sides,
        tol=tol,
        max_nodes=max_nodes,
        total_nodes=total_nodes,
        deadline=deadline,
    )


def _prove_signs_lp(
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
    """:func:`prove_signs_relu` with the LP trees alone."""
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
    slp = SplitLP(net, box, k, pre, tol, cuts=CUTS)
    total_nodes = node_budget(total_nodes, slp.lp.matrix.shape)
    points: list[np.ndarray] = []
    nodes = 0
    lim = None if deadline is None else deadline + time.monotonic() - time.perf_counter()
    todo = [
        Tree(net, slp, k, j, sign, i, tol)
        for i, j in enumerate(neurons.tolist())
        for sign in {0: (1, -1), 1: (1,), -1: (-1,)}[int(np.sign(sides[i]))]
    ]
    dropped: list[Tree] = []  # stalled (GIVE_UP_LEFT): no more nodes, their bounds kept
    for budget in _budgets(max_nodes):
        again = []
        for tree in todo:
            if inactive[tree.index] or active[tree.index]:
                continue
            if deadline is not None and time.perf_counter() >= deadline:
                again.append(tree)
                continue
            cap = min(budget, tree.nodes + total_nodes - nodes)
            if cap <= tree.nodes:
                again.append(tree)
                continue
            before = tree.nodes
            res = tree.run(cap, lim)
            nodes += tree.nodes - before
            points += tree.points
            tree.points = []
            if res is True:
                (inactive if tree.sign > 0 else active)[tree.index] = True
            elif res is None and tree.resumable:  # out of nodes: a larger budget may do
                again.append(tree)
        if CLOSEST_FIRST:
            again.sort(key=Tree.left)  # stable: ties keep the order of the questions
        stalled = [t for t in again if t.nodes >= GIVE_UP_NODES and t.left() > GIVE_UP_LEFT]
        dropped += stalled
        todo = [t for t in again if t not in stalled]
    complete = not todo and not dropped
    todo += dropped
    both = inactive & active
    inactive &= ~both
    active &= ~both
    pts = np.concatenate(points) if points else none
    lower, upper = np.full(m, -np.inf), np.full(m, np.inf)
    for tree in todo:  # out of nodes or time, its leaves intact: their weakest bound holds
        top = tree.bound()
        if tree.sign > 0:
            upper[tree.index] = min(upper[tree.index], top)
        else:
            lower[tree.index] = max(lower[tree.index], -top)
    seconds = time.perf_counter() - t0
    return SplitResult(neurons, inactive, active, pts, nodes, complete, seconds, lower, upper)


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
    each pass lets the survivors grow their trees to :data:`GROWTH` times more nodes, up to
    ``max_nodes``. A question's tree is kept between passes and resumed from its open
    nodes, so no LP is solved twice."""
    out = [FIRST]
    while out[-1] < max_nodes:
        out.append(min(out[-1] * GROWTH, max_nodes))
    return [b for b in out if b <= max_nodes] or [max_nodes]


def root_cuts(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    tol: Tolerances,
    per_neuron: int,
) -> list[tuple[int, int, np.ndarray, float, float]]:
    """The ideal cuts the LP trees separate at the root of each question
    (:class:`~exactcomp.bab.relu_lp.SplitLP`), at most :data:`~exactcomp.bab.beta_tree.CUTS_PER_NEURON` per unstable
    neuron, as :meth:`~exactcomp.bab.beta.BetaModel.with_cuts` takes them. Every cut holds at
    every network point of the box with its own phase, whatever question separated it."""
    pre = finite_prefix_bounds(net, box, k, known, tol)
    if not all_finite(pre[:k]):
        return []
    slp = SplitLP(net, box, k, pre, tol, cuts=True)
    if not slp.phases.size:
        return []
    where = {}  # LP column -> (layer, neuron) of h and a; input columns per layer
    inputs = {}
    for r in slp.lp.relus:
        for i, n in enumerate(r.neurons):
            where[int(r.h[i])] = (int(r.layer), int(n))
        inputs[int(r.layer)] = {int(col): t for t, col in enumerate(r.inputs) if col >= 0}
    out: dict[int, list] = {}
    signs = {0: (1, -1), 1: (1,), -1: (-1,)}
    for i, j in enumerate(np.asarray(neurons).tolist()):
        for s in signs[int(np.sign(sides[i]))]:
            tree = Tree(net, slp, k, j, s, 0, tol)
            slp.restore(tree.cuts)
            tree._solve(tree.pending[0], 2, None)
            held = slp.drop_cuts()
            for cols, coefs, rhs in zip(held.cols, held.coefs, held.rhss, strict=True):
                layer, n = where[int(cols[0])]
                w = np.zeros(net.layers[layer].weight.shape[1])
                t = np.array([inputs[layer][int(col)] for col in cols[2:]], dtype=np.int64)
                np.add.at(w, t, -np.asarray(coefs[2:], np.float64))
                kept = out.setdefault(int(cols[0]), [])
                if len(kept) < per_neuron:
                    kept.append((layer, n, w, -float(coefs[1]), float(rhs)))
    return [cut for kept in out.values() for cut in kept]
