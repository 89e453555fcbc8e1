r"""Branch and bound over ReLU splits with the batched optimised bounds of
:mod:`exactcomp.bab.beta`, for many questions of one layer at once.

* Per question (neuron ``j`` of layer ``k``, sign ``s``) a tree of nodes (splits of unstable
  ReLUs of layers ``< k``), searched best-first: the open node with the largest bound first.
  The two children of a node cover it, so the leaves cover the box; a question is
  **proven** when every leaf's padded float64 bound is ``<= 0``.
* Each round takes the worst open nodes of every open question (an equal share of
  :data:`BATCH` / 2 each), splits each on the unsplit unstable neuron with the largest
  ``a^+ t`` (the chord intercept its bound pays for that neuron: BaBSR's estimate, read off
  the back-substitution; :func:`~exactcomp.bab.branching.choose_splits`, which can pick by
  filtered smart branching instead, :data:`~exactcomp.bab.branching.FSB`, off by measurement), and bounds all the children in batches of
  :data:`BATCH`, each child starting from its parent's multipliers (:data:`STEPS` Adam
  steps). A question left without a neuron worth splitting keeps the nodes it popped in
  that round as open leaves (so its tree's bound stays the largest over leaves covering
  the box).
* The ``x*`` of every bound is evaluated in float64 with the witness rule of
  :func:`exactcomp.search.sign_witnesses`: a witness of the other sign, from any node of the
  batch, ends the question (unstable) and joins the points.
* A question out of nodes (:data:`MAX_NODES_BETA`, :data:`TOTAL_NODES_BETA` for the call),
  time or neurons worth splitting, or whose gap to its best ``x*`` closes too slowly to reach a
  proof within its budget (:mod:`exactcomp.bab.outlook`, "hopeless"), claims nothing; its tree's bound (the largest of its open
  leaves) is returned. :func:`batched_first` then hands it to the LP trees of
  :mod:`exactcomp.bab.relu` (:data:`~exactcomp.bab.relu.BATCHED_FIRST`).

Measured (mnist-net_256x6 prop_0_0.03, the captured ReLU-split questions of layers 2, 3 and
5 replayed with ``scripts/relu_split_replay.py``, ``scripts/beta_node_compare.py``; CPU
seconds, 2 cores at load 2-4; benchmarks/RESULTS.md "beta8"): the batched bounds cost
1,000-2,000 nodes per CPU second at B = 32-512 (10 steps), 8-15 times the 127 LPs per second
of the node LP in its depth-first trees, each about 1.3 times looser than the LP with ideal
cuts (median over 300 random layer-3 nodes). With 1,000 nodes per question that was a draw;
the hard questions need many nodes, and there the batched trees win: alone, with 20,000 per
question, they decided 31 / 38 / 9 of the 31 / 40 / 11 questions of layers 2 / 3 / 5 in
10.5 / 52.4 / 28.3 s, where the LP trees decide 29 / 33 / 9 in 29.7 / 65.5 / 53.8 s. The whole
trace: 4 undecided in 197.3 s of CPU, against 9 in 266.7 s with the LP trees alone
(:data:`~exactcomp.bab.relu.BATCHED_FIRST`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..bounds.interval import Bounds
from ..bounds.linear import all_finite, finite_prefix_bounds
from ..domain import Box
from ..network import Network
from ..search import layer_signs
from ..tolerances import DEFAULT, Tolerances
from . import branching, outlook
from .beta import BetaModel
from .branching import choose_splits
from .split import SplitResult, hopeless_bit

__all__ = [
    "BATCH",
    "MAX_NODES_BETA",
    "STEPS",
    "TOTAL_NODES_BETA",
    "prove_signs_beta",
]

BATCH = 512
"""Nodes bounded together (children of the worst open nodes of every open question)."""
STEPS = 10
"""Projected Adam steps per batch (children start from their parent's multipliers)."""
MAX_NODES_BETA = 20_000
"""Node budget of one question's tree. The hard questions need many nodes, and the bound
keeps falling: on mnist-net_256x6 layer 5 (neurons 22 and 158, ``min z >= 0`` sought) the
trees' bounds were -0.21 / -0.22 after 1,000 nodes each, -0.11 / -0.12 after 4,000, -0.06 /
-0.08 after 16,000 (23.8 s of CPU for both), where the LP trees' 3,000 LPs each (36.3 s)
reach -0.27 / -0.24. With 1,000 nodes per question, before the LP trees, the batched engine
was a draw (see the module docstring)."""
CUTS = False
"""Whether :func:`~exactcomp.bab.beta_first.batched_first` gives the batched bounds the ideal
cuts that the LP trees separate at each question's root
(:func:`exactcomp.bab.relu.root_cuts`). Off: 77 cuts on layer 3 brought the median node bound from 1.40 to 1.34 times the LP's (10 steps) for 25 % more CPU per node,
and the same decisions in the trees."""
CUTS_PER_NEURON = 2
"""Cuts kept per unstable neuron (from different questions), each with its multiplier."""
TOTAL_NODES_BETA = 120_000
"""Node budget of one call (all its questions together): about 90 s of CPU at the 1,300
nodes per second of a deep layer of mnist-net_256x6. Nodes, not seconds, so that the
verdicts do not depend on the machine's load."""


class Spreading(Protocol):
    """Where :func:`prove_signs_beta` may grow its trees after the first ``after`` nodes
    (:class:`exactcomp.bab.beta_parts.Spread`)."""

    parts: int
    after: int
    max_nodes: int | None
    total_nodes: int | None
    slack: float | None

    def resume(self, setup: tuple, model: BetaModel, qs: list, grown: Grown, *args) -> None:
        """Grow the trees of ``qs`` on, in ``parts`` parts (``args``: :func:`grow`'s)."""


@dataclass(eq=False)
class Question:
    """One question's tree: open nodes ``(-top, id, split, alpha, beta, score)`` in a heap;
    ``far``: the largest bound of its leaves grown elsewhere (:mod:`exactcomp.bab.beta_parts`)."""

    index: int
    j: int
    sign: int
    open: list
    nodes: int = 0
    state: str = "open"  # "open", "proven", "refuted", "stuck", "hopeless"
    best: float = -np.inf  # the largest sign * z at its nodes' x* (outlook's A)
    marks: list = field(default_factory=list)  # (nodes, bound) at outlook's marks
    far: float = 0.0
    dealt: int = 0  # its nodes when its leaves were dealt to parts (beta_parts)

    def bound(self) -> float:
        return max([0.0, self.far, *(-item[0] for item in self.open)])


def prove_signs_beta(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    *,
    tol: Tolerances = DEFAULT,
    max_nodes: int | None = None,
    total_nodes: int | None = None,
    batch: int | None = None,
    steps: int | None = None,
    deadline: float | None = None,
    cuts: Sequence[tuple[int, int, np.ndarray, float, float]] = (),
    spent: list[tuple[int, int]] | None = None,
    fsb: int | None = None,
    log: list | None = None,
    spread: Spreading | None = None,
) -> SplitResult:
    """Prove ``max z_kj <= 0`` / ``min z_kj >= 0`` for each ``j`` in ``neurons`` by branch and
    bound over ReLU splits with optimised linear bounds (module docstring).

    Same parameters and result as :func:`exactcomp.bab.relu.prove_signs_relu` (``sides``:
    ``+1`` only ``max z <= 0``, ``-1`` only ``min z >= 0``, ``0`` both); ``nodes`` counts the
    nodes bounded; ``lower``/``upper`` are the bounds of the trees left open. ``None``:
    :data:`MAX_NODES_BETA`, :data:`TOTAL_NODES_BETA`, :data:`BATCH`, :data:`STEPS`.
    ``cuts``: ideal cuts valid on the box (:meth:`~exactcomp.bab.beta.BetaModel.with_cuts`).
    ``spent``: if given, gets ``(i, sign)`` of every question left open with its whole node
    budget ``max_nodes`` used (not cut off by the call's budget, the deadline or a dead end).
    ``fsb``: candidates per node of :func:`~exactcomp.bab.branching.choose_splits` (``None``:
    :data:`~exactcomp.bab.branching.FSB`).
    ``log``: if given, gets ``(j, sign, state, nodes, best, marks)`` of every question at the
    end (:mod:`exactcomp.bab.outlook`; measurement only).
    ``spread``: other processes to grow the trees in (:class:`exactcomp.bab.beta_parts.Spread`;
    ``None`` or one part: all here). The trees grow here for the first ``spread.after`` nodes;
    the open leaves of those still growing are then dealt to ``spread.parts`` parts. Its
    ``max_nodes``, ``total_nodes`` and ``slack`` (of :mod:`~exactcomp.bab.outlook`) replace
    the one-process ones where not ``None`` (and ``max_nodes``/``total_nodes`` not given).
    """
    slack = None
    if spread is not None and spread.parts > 1:  # the budgets of several processes
        max_nodes = spread.max_nodes if max_nodes is None else max_nodes
        total_nodes = spread.total_nodes if total_nodes is None else total_nodes
        slack = spread.slack
    max_nodes = MAX_NODES_BETA if max_nodes is None else max_nodes
    total_nodes = TOTAL_NODES_BETA if total_nodes is None else total_nodes
    batch = BATCH if batch is None else batch
    steps = STEPS if steps is None else steps
    fsb = branching.FSB if fsb is None else fsb

    t0 = time.perf_counter()
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    m = neurons.size
    inactive, active = np.zeros(m, bool), np.zeros(m, bool)
    lower, upper = np.full(m, -np.inf), np.full(m, np.inf)
    none = np.empty((0, box.dim))
    if m == 0 or k == 0 or any(net.layers[i].sparse for i in range(k + 1)):
        return SplitResult(neurons, inactive, active, none, 0, m == 0, 0.0, lower, upper)
    pre = finite_prefix_bounds(net, box, k, known, tol)
    if not all_finite(pre[:k]):
        return SplitResult(neurons, inactive, active, none, 0, False, 0.0, lower, upper)
    model = BetaModel(net, box, k, pre)
    if cuts:
        model.with_cuts(cuts)
    qs = [
        Question(i, j, s, [])
        for i, j in enumerate(neurons.tolist())
        for s in {0: (1, -1), 1: (1,), -1: (-1,)}[int(np.sign(sides[i]))]
    ]
    u = model.size
    root = (np.zeros(u, np.int8), model.init_alpha.copy(), np.zeros(model.nbeta))
    work: list[tuple[Question, tuple]] = [(q, root) for q in qs]
    cap = total_nodes if spread is None or spread.parts < 2 else min(total_nodes, spread.after)
    grown = Grown(inactive, active)
    grow(model, qs, work, grown, tol, steps, batch, fsb, max_nodes, cap, deadline, 1, slack)
    if cap < total_nodes and any(q.nodes + 2 <= max_nodes for q in live(qs, grown)):
        setup = (net, box, k, pre, tuple(cuts))
        args = (tol, steps, batch, fsb, max_nodes, total_nodes, deadline, slack)
        spread.resume(setup, model, qs, grown, *args)
    points, nodes = grown.points, grown.nodes
    for q in qs:
        decided = inactive[q.index] or active[q.index]
        if spent is not None and q.state == "open" and not decided and q.nodes + 2 > max_nodes:
            spent.append((q.index, q.sign))
        if log is not None:
            log.append((q.j, q.sign, q.state, q.nodes, q.best, list(q.marks)))
        if q.state in ("open", "stuck", "hopeless"):
            if q.sign > 0:
                upper[q.index] = min(upper[q.index], q.bound())
            else:
                lower[q.index] = max(lower[q.index], -q.bound())
    both = inactive & active
    inactive &= ~both
    active &= ~both
    hopeless = np.zeros(m, np.int8)
    for q in qs:
        if q.state == "hopeless" and not (inactive[q.index] or active[q.index]):
            hopeless[q.index] |= hopeless_bit(q.sign)
    complete = all(q.state in ("proven", "refuted") for q in qs)
    pts = np.concatenate(points) if points else none
    seconds = time.perf_counter() - t0
    return SplitResult(
        neurons, inactive, active, pts, nodes, complete, seconds, lower, upper, hopeless=hopeless
    )


@dataclass(eq=False)
class Grown:
    """What :func:`grow` has found so far, over all its questions: per asked neuron the proven
    claims (``inactive``/``active``), the witness points and the nodes bounded (each counted
    ``weight`` times)."""

    inactive: np.ndarray
    active: np.ndarray
    points: list = field(default_factory=list)
    nodes: int = 0
    final: bool = True  # False in a part: a closed part of a tree proves nothing alone


def live(qs: Sequence[Question], grown: Grown) -> list[Question]:
    """The questions still growing: open, and their neuron not decided."""
    done = grown.inactive | grown.active
    return [q for q in qs if q.state == "open" and not done[q.index]]


def grow(
    model: BetaModel,
    qs: Sequence[Question],
    work: list,
    grown: Grown,
    tol: Tolerances,
    steps: int,
    batch: int,
    fsb: int,
    max_nodes: int,
    total_nodes: int,
    deadline: float | None,
    weight: int = 1,
    slack: float | None = None,
) -> None:
    """Bound ``work`` (``(question, node)`` pairs), then grow the trees of ``qs`` in rounds
    (module docstring) until each question ends or the budgets or the deadline stop them;
    ``qs`` and ``grown`` are updated in place. Each node bounded counts ``weight`` nodes
    towards the call's budget ``total_nodes`` (a part of the trees dealt to one of ``weight``
    processes, :mod:`exactcomp.bab.beta_parts`, gets its share of the budget) and one towards
    its question's ``max_nodes``; the early stop (:func:`~exactcomp.bab.outlook.mark`, with
    ``slack``) reads a question's nodes since the deal ``weight`` times, as the whole tree's."""
    inactive, active, points = grown.inactive, grown.active, grown.points
    nodes = grown.nodes
    count = 1 + max((item[1] for q in qs for item in q.open), default=-1)
    while True:
        for at in range(0, len(work), batch):
            chunk = work[at : at + batch]
            got = _bound(model, chunk, tol, steps)
            nodes += len(chunk) * weight
            found, zk = layer_signs(model.net, model.k, got[1], tol)
            for (q, (split, _, _)), top, zx, score, al, be in zip(
                chunk, got[0], zk, *got[2:], strict=True
            ):
                q.nodes += 1
                if q.state != "open":
                    continue
                q.best = max(q.best, q.sign * float(zx[q.j]))
                hit = (found.pos if q.sign > 0 else found.neg)[q.j]
                if hit >= 0:
                    q.state = "refuted"
                    points.append(got[1][hit][None])
                elif top > 0.0:
                    heapq.heappush(q.open, (-top, count, split, al, be, score))
                    count += 1
        for q in qs:
            if q.state == "open" and not q.open:
                q.state = "proven"
                if grown.final:
                    (inactive if q.sign > 0 else active)[q.index] = True
        done = inactive | active
        work = []
        for q in qs:
            if q.state == "open" and not done[q.index]:
                outlook.mark(q, max_nodes, slack, q.dealt + weight * (q.nodes - q.dealt))
        growing = [q for q in qs if q.state == "open" and not done[q.index]]
        if not growing or nodes >= total_nodes:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            break
        share = max(1, (batch // 2) // len(growing))
        popped: list[tuple[Question, tuple]] = []
        for q in growing:
            for _ in range(min(share, len(q.open))):
                if q.nodes + 2 > max_nodes or nodes + 2 * weight * (len(popped) + 1) > total_nodes:
                    break
                item = heapq.heappop(q.open)
                if not item[5].size or item[5].max() <= 0.0:
                    heapq.heappush(q.open, item)
                    q.state = "stuck"
                    break
                popped.append((q, item))
        for q, item in popped:  # a stuck question keeps its popped nodes as leaves
            if q.state == "stuck":
                heapq.heappush(q.open, item)
        popped = [(q, item) for q, item in popped if q.state == "open"]
        for (q, (_, _, split, al, be, _)), i in zip(
            popped, choose_splits(model, popped, tol, fsb, BATCH), strict=True
        ):
            for s in (1, -1):
                child = split.copy()
                child[i] = s
                work.append((q, (child, al, be)))
        if not work:
            break
    grown.nodes = nodes


def _bound(model: BetaModel, chunk, tol: Tolerances, steps: int):
    """Optimise and evaluate (float64, padded) one batch of ``(question, node)`` pairs."""
    rows = np.array([q.j for q, _ in chunk], np.int64)
    signs = np.array([q.sign for q, _ in chunk], np.float64)
    split = np.stack([n[0] for _, n in chunk])
    alpha = np.stack([n[1] for _, n in chunk])
    beta = np.stack([n[2] for _, n in chunk])
    alpha, beta = model.optimise(rows, signs, split, alpha, beta, steps)
    top, x, score = model.evaluate(rows, signs, split, alpha, beta, tol)
    # kept in float32 (the optimiser's own precision): a tree holds thousands of nodes
    return top, x, score, alpha.astype(np.float32), beta.astype(np.float32)
