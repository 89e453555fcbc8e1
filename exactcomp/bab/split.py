r"""Stability of one layer's neurons by branch and bound over input splits.

For a network with few inputs, the looseness of linear bounds over a box shrinks quickly
when the box is cut into smaller ones (ReluVal, Neurify). One tree of sub-boxes is shared by
all the open neurons of layer ``k``:

* each node is a sub-box; its bounds (:func:`exactcomp.bab.batch.batch_bounds`, interval then
  CROWN-style on the sub-box, the tightest over four lower ReLU slopes (:data:`SLOPES`),
  then optimised slopes where those leave a neuron open (:data:`OPTIMISE`),
  intersected with the parent's and the whole box's proven bounds, float64-padded) settle,
  per open neuron, ``u <= 0`` or ``l >= 0`` on that node;
* a neuron is **INACTIVE** when ``u <= 0`` was proven on every leaf of the tree that was
  open for it: the two halves of a split cover their parent (``[l, m] \cup [m, u]``, with
  ``m`` a float64 strictly between them), so the leaves cover the box and ``max z <= 0``
  holds on the whole box. **ACTIVE** likewise with ``l >= 0``;
* the centre of every node still open, and per open neuron the corner that extremises its
  linear bound in the batch's loosest box, are evaluated in float64 with the witness rule of
  :func:`exactcomp.search.sign_witnesses`: a positive witness rules INACTIVE out, a negative
  one ACTIVE (a leaf proven ``l >= 0`` does the same for INACTIVE); a neuron with both
  ruled out leaves the tree (both witnesses found: UNSTABLE; else left to the MILPs);
* nodes with some neuron still unknown are cut in two along one input (the split rule, and
  the sub-boxes' bookkeeping: :mod:`exactcomp.bab.split_boxes`), depth first in batches so
  that memory stays bounded;
* a node budget and a deadline stop the search: every neuron with a node still open is
  left undecided (no claim), which is always sound.

Measured alternatives that did not pay (ACAS Xu 1_1, 2_2, 3_3 over prop_1, prop_3, prop_4,
layers 1-5): forward symbolic bounds
(ReluVal/Neurify style, linear functions of the input carried forward) for the intermediate
layers instead of back-substitution: 4-6 times cheaper per node but so much looser on large
boxes that 3-7 times more nodes were needed and the total time was higher on 3 of 4 cases;
both intersected: about 1% fewer nodes for twice the time. Restricting the intermediate
back-substitution to neurons that straddle 0 in some box of the batch: same time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds
from ..domain import Box
from ..network import Network
from ..search import sign_witnesses
from ..tolerances import DEFAULT, Tolerances
from .alpha import tighten_open
from .batch import batch_bounds
from .split_boxes import (
    SPLIT_RULE,
    TIE,
    Chunk,
    box_centres,
    cut_boxes,
    pop_batch,
    true_ties,
    witness_corners,
)
from .split_tree import SplitTree, record_tree

__all__ = [
    "SplitResult",
    "prove_signs",
    "split_inputs",
    "MAX_INPUTS",
    "MAX_NODES",
]

BATCH = 256
"""Sub-boxes bounded together (one numpy batch)."""
MAX_INPUTS = 6
"""Largest input dimension for which the ``fast`` engine and the re-check split inputs.

Measured with ``stable_neurons(time_limit=2)`` on random ``n-40-40-40-40-2`` networks
(:func:`~exactcomp.testing.random_networks.random_network`, ``nasty=False``, box
``[-1, 1]^n``), with and without the phase: n = 4 (2 seeds): 0 undecided in 2 s against
16-17 undecided in 37-39 s; n = 6 (3 seeds): 0 / 8 / 3 undecided in 7-27 s against
10 / 14 / 6 in 16-33 s; n = 8 (4 seeds): one neuron more decided once, otherwise the same
verdicts 2-12 s slower; n = 12, 16: nothing gained, 6-11 s lost."""
MAX_NODES = 50_000
"""Default node budget of one layer's tree (ACAS Xu 1_1, prop_1 to prop_4: at most about
3,000 per layer decide every neuron)."""
RETRY_RULE = "smear"
"""The split rule of the second tree, for the neurons that left the shared tree on a near tie
that was not true; there they are the only rows the smear reads. It was ``"widest"``, for
ACAS Xu 1_6 prop_1's layer-5 neuron 40 (maximum -0.1007; smear alone gave it up after 4,635
nodes, widest proved it in 21,311); with the optimised slopes (:data:`OPTIMISE`) the shared
tree decides that layer in 1,850 nodes with no second tree, and a smear tree proves neuron
40 alone in 415. Widest could not find tiny positive regions: on 4_6 prop_1, layer 5's
neurons 5 and 20 (maxima 0.0011 and 0.0017, found by a smear tree of each alone in 2,375 and
3,315 nodes; sampled maxima -2.4 and -0.03) left the shared tree on loose ties, and the
widest tree spent the remaining 38,105 nodes of the budget without a witness (the run kept
one neuron UNDECIDED); the smear tree settles both in 4,989 nodes."""
SLOPES: tuple[str, ...] = ("adaptive", "zero", "one", "chord")
"""The lower ReLU slopes (:data:`exactcomp.bab.batch.SLOPES`) whose bounds of the asked
neurons are computed on every node, the tightest kept per neuron (each slope in ``[0, 1]`` is
a valid relaxation, so each bound is sound: a cheap stand-in for alpha-CROWN's optimised
slopes; the earlier layers keep CROWN's adaptive slope). The split rule reads the largest
coefficient over the rules (:attr:`~exactcomp.bab.batch.BatchBounds.spread`).

Measured on the layer-5 questions of ACAS Xu prop_1 that CROWN's slope alone left open at
50,000 nodes (the questions captured from ``stable_neurons`` and replayed, CPU seconds, load
about 3): 2_4 decided in 2,743 nodes (1.9 s) against 50,000 (17.7 s) with neuron 40 open;
1_9 in 1,221 (0.9 s) against 50,000 (16.3 s) with neuron 48 open; 3_1's layer 5 30,817
nodes against 31,117. The four rules on the earlier layers' bounds as well (``all_layers``)
did not pay: 2_4 50,000 nodes, 66.7 s, neuron 21 open."""
OPTIMISE = True
"""Whether the (node, neuron, side) pairs that the fixed slopes (:data:`SLOPES`) leave open
get optimised slopes (:func:`exactcomp.bab.alpha.tighten_open`; measured there)."""
OPTIMISE_AFTER = 0
"""Nodes a tree spends before :data:`OPTIMISE` applies (0: from the root)."""


@dataclass(frozen=True, eq=False)
class SplitResult:
    """What the input-split search proved for the neurons it was asked about.

    ``inactive[i]``/``active[i]`` refer to ``neurons[i]``; ``points`` are the float64 inputs
    (inside the box) that showed a sign beyond the witness margin; ``nodes`` counts the
    sub-boxes bounded; ``complete`` is False when the budget or deadline stopped the search.
    ``lower``/``upper`` (``None``: not computed) are sound bounds of each asked neuron that
    the search proved on the way (``-inf``/``inf`` where none): the ReLU-split search returns
    the weakest bound over the leaves of a tree that ran out of nodes. ``trees``: the
    record of each input-split tree grown (:mod:`exactcomp.bab.split_tree`), for a replay.
    ``hopeless`` (``None``: not computed): per asked neuron left undecided, the questions
    whose tree was stopped as unable to reach a proof within its budget
    (:mod:`exactcomp.bab.outlook`), as bits: :data:`HOPELESS_UPPER` for ``max z <= 0``,
    :data:`HOPELESS_LOWER` for ``min z >= 0``.
    """

    neurons: np.ndarray
    inactive: np.ndarray
    active: np.ndarray
    points: np.ndarray
    nodes: int
    complete: bool
    seconds: float
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    trees: tuple[SplitTree, ...] = ()
    hopeless: np.ndarray | None = None


HOPELESS_UPPER = 1
HOPELESS_LOWER = 2


def hopeless_bit(sign: int) -> int:
    """The bit of :attr:`SplitResult.hopeless` of the question ``sign * z <= 0``."""
    return HOPELESS_UPPER if sign > 0 else HOPELESS_LOWER


def split_inputs() -> int:
    """The largest input dimension that input splitting is used for (:data:`MAX_INPUTS`;
    a function so that tests aimed at the phases after it can set it to 0)."""
    return MAX_INPUTS


def prove_signs(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    *,
    tol: Tolerances = DEFAULT,
    max_nodes: int = MAX_NODES,
    deadline: float | None = None,
    cpu_limit: float | None = None,
    rule: str | None = None,
    start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> SplitResult:
    """Prove ``max z_kj <= 0`` or ``min z_kj >= 0`` for each ``j`` in ``neurons`` by input splits.

    Parameters
    ----------
    net, box:
        The network and the input box.
    k:
        The layer of the neurons.
    known:
        Sound bounds of layers ``0..k`` on ``box`` (layer ``k``'s may be infinite); the
        verdicts already proven for earlier layers are expected in them (an inactive neuron
        with ``u <= 0``, an active one with ``l >= 0``).
    neurons:
        Indices of layer ``k``'s neurons to decide.
    sides:
        Per neuron ``+1``: only ``max z <= 0`` is sought (a negative value was seen, so
        ``min z >= 0`` is out), ``-1``: only ``min z >= 0``, ``0``: either.
    tol:
        Tolerances: the bounds' rounding pad and the witness margin.
    max_nodes, deadline, cpu_limit:
        The node budget, a ``time.perf_counter()`` instant after which no batch starts, and
        CPU seconds of this process after which no batch starts (``None``: no cap).
    rule:
        ``None``: the shared tree (:data:`SPLIT_RULE`), then a second tree
        (:data:`RETRY_RULE`) for the neurons it gave up on a near tie that was not true,
        within the nodes and time left; else the split rule of a tree that keeps splitting
        on such ties (and has no second tree).
    start:
        ``(lower[B, n], upper[B, n], open[B, m])``: search only these sub-boxes of ``box``,
        each for the neurons open there (default: the box for all); a claim is then proven
        on their union only, and no tree is recorded (:func:`exactcomp.bab.replay.replay_signs`
        searches the leaves its walk could not settle).
    """
    t0 = time.perf_counter()
    cpu_stop = None if cpu_limit is None else time.process_time() + cpu_limit
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    m = neurons.size
    no_inactive = sides < 0
    no_active = sides > 0
    known = [(np.asarray(lo, np.float64), np.asarray(hi, np.float64)) for lo, hi in known[: k + 1]]
    linear = [
        np.flatnonzero((lo < 0.0) & (hi > 0.0)) for lo, hi in known
    ]  # layers whose relaxation is not exact everywhere
    points: list[np.ndarray] = []
    failed = np.zeros(m, dtype=bool)  # a node could not be split further: no claim
    loose = np.zeros(m, dtype=bool)  # given up on a near tie that was not true ...
    tied = np.zeros(m, dtype=bool)  # ... and never on a true one
    root = (box.lower[None].copy(), box.upper[None].copy(), np.ones((1, m), bool))
    root = root if start is None else tuple(np.asarray(a) for a in start)
    stack = [Chunk(*root, None, np.arange(len(root[0])))]
    links: list = []  # the record of the tree: per split batch, (ids, inputs, left, right)
    nodes, count = 0, len(root[0])
    while stack and m:
        if (
            nodes >= max_nodes
            or (deadline is not None and time.perf_counter() >= deadline)
            or (cpu_stop is not None and time.process_time() >= cpu_stop)
        ):
            break
        chunk = pop_batch(stack, min(BATCH, max_nodes - nodes))
        give_up = no_inactive & no_active | failed
        chunk.open &= ~give_up[None]
        keep = chunk.open.any(1)
        chunk = chunk.select(keep)
        if not len(chunk.lo):
            continue
        cols = np.flatnonzero(chunk.open.any(0))
        bb = batch_bounds(
            net,
            chunk.lo,
            chunk.hi,
            k,
            known,
            tol,
            rows=neurons[cols],
            parent=chunk.parent,
            linear=linear,
            slopes=SLOPES,
        )
        nodes += len(chunk.lo)
        if OPTIMISE and nodes > OPTIMISE_AFTER:
            lc, hc = bb.lower[k][:, neurons[cols]], bb.upper[k][:, neurons[cols]]
            either = chunk.open[:, cols] & (lc < 0.0) & (hc > 0.0)
            want = (either & ~no_active[cols], either & ~no_inactive[cols])
            bb = tighten_open(net, k, chunk.lo, chunk.hi, bb, *want, SLOPES, tol)
        lo_k, hi_k = bb.lower[k][:, neurons], bb.upper[k][:, neurons]
        neg, pos = hi_k <= 0.0, lo_k >= 0.0
        pl, pu = np.split(TIE * bb.pads, 2, axis=1)
        lc, hc = lo_k[:, cols], hi_k[:, cols]
        either = chunk.open[:, cols] & ~neg[:, cols] & ~pos[:, cols]
        near_lo, near_hi = either & (lc < 0.0) & (lc >= -pl), either & (hc > 0.0) & (hc <= pu)
        if near_lo.any() or near_hi.any():
            true, seen = true_ties(net, chunk, bb, k, near_lo, near_hi)
            failed[cols] |= true if rule is not None else seen
            loose[cols] |= seen & ~true
            tied[cols] |= true
        no_active |= (chunk.open & neg & ~pos).any(0)
        no_inactive |= (chunk.open & pos & ~neg).any(0)
        chunk.open &= ~(neg | pos)
        chunk.open &= ~(no_inactive & no_active)[None]
        live = chunk.open.any(1)
        if not live.any():
            continue
        centres = np.concatenate(
            [box_centres(chunk.lo[live], chunk.hi[live]), witness_corners(chunk, bb, cols, live)]
        )
        found = sign_witnesses(net, k, centres, tol)
        wp, wn = found.pos[neurons], found.neg[neurons]
        no_inactive |= wp >= 0
        no_active |= wn >= 0
        rows = np.unique(np.concatenate([wp[wp >= 0], wn[wn >= 0]]))
        if rows.size:
            points.append(centres[rows])
        chunk.open &= ~(no_inactive & no_active)[None]
        live = chunk.open.any(1)
        unknown = chunk.open[live][:, cols]
        coef = (bb.coef if bb.spread is None else bb.spread)[live]
        parent = [(lo[live], hi[live]) for lo, hi in zip(bb.lower, bb.upper, strict=True)]
        kids, stuck = cut_boxes(chunk.lo[live], chunk.hi[live], coef, unknown, rule or SPLIT_RULE)
        failed |= (chunk.open[live] & stuck[:, None]).any(0)
        ok = ~stuck
        if ok.any():
            both = np.concatenate([np.flatnonzero(ok)] * 2)
            ids = count + np.arange(both.size)
            cut = np.argmax(kids[1][ok] < chunk.hi[live][ok], axis=1)  # the one input cut
            links.append((chunk.ids[live][ok], cut, ids[: ok.sum()], ids[ok.sum() :]))
            count += both.size
            stack.append(
                Chunk(
                    np.concatenate([kids[0][ok], kids[2][ok]]),
                    np.concatenate([kids[1][ok], kids[3][ok]]),
                    chunk.open[live][both],
                    [(lo[both], hi[both]) for lo, hi in parent],
                    ids,
                )
            )
    left = np.zeros(m, dtype=bool)
    for ch in stack:
        left |= ch.open.any(0)
    trees = (record_tree(k, box.lower, box.upper, neurons, links, count),) if start is None else ()
    done = ~(left | failed | (no_inactive & no_active))
    inactive = done & ~no_inactive
    active = done & ~no_active & ~inactive
    retry = loose & ~tied & failed & ~left & ~(no_inactive & no_active)
    if rule is None and retry.any() and nodes < max_nodes:
        if deadline is None or time.perf_counter() < deadline:
            cpu_left = None if cpu_stop is None else cpu_stop - time.process_time()
            if cpu_left is None or cpu_left > 0.0:
                again = prove_signs(
                    *(net, box, k, known, neurons[retry]),
                    np.where(no_active, 1, -no_inactive.astype(int))[retry],
                    tol=tol,
                    max_nodes=max_nodes - nodes,
                    deadline=deadline,
                    cpu_limit=cpu_left,
                    rule=RETRY_RULE,
                    start=None if start is None else (*root[:2], root[2][:, retry]),
                )
                inactive[retry], active[retry] = again.inactive, again.active
                nodes += again.nodes
                points.append(again.points)
                left[retry] |= not again.complete
                trees += again.trees
    pts = np.concatenate(points) if points else np.empty((0, box.dim))
    seconds = time.perf_counter() - t0
    return SplitResult(neurons, inactive, active, pts, nodes, not left.any(), seconds, trees=trees)
