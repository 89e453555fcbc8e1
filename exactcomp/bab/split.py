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
* nodes with some neuron still unknown are cut in two along one input (see
  :func:`split_dimension`), depth first in batches so that memory stays bounded;
* a node budget and a deadline stop the search: every neuron with a node still open is
  left undecided (no claim), which is always sound.

The split dimension ("smear", after ReluVal, here on the CROWN coefficients): the bound of
an unknown neuron is :math:`\min_{x \in box} a^\top x + c`, whose slack over the box is
:math:`\sum_d |a_d| (u_d - l_d)`; the input with the largest share
:math:`\sum_{\text{unknown rows}} |a_d| (u_d - l_d)` is cut. Measured against cutting the
widest input, on ACAS Xu 1_1, 2_2, 3_3 over prop_1, prop_3, prop_4 (every neuron of layers
0-5 open after linear bounds asked, 50,000 nodes a layer): 119,310 nodes in all against
343,005, and 104 s against 397 s.

Measured alternatives that did not pay (same cases, layers 1-5): forward symbolic bounds
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
from .batch import BatchBounds, batch_bounds
from .split_tree import SplitTree, record_tree

__all__ = [
    "SplitResult",
    "prove_signs",
    "split_dimension",
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
TIE = 4.0
"""Near ties: a neuron whose bound on some node is within ``TIE`` times that bound's own
rounding pad of 0 (on the wrong side) leaves the tree unclaimed: splitting cannot remove the
pad, and a pre-activation that touches 0 on a face of the box (its maximum exactly 0) would
otherwise spend the whole node budget. Such a tie is *true* when the neuron's float64 value
at the node's bound-extremising corner lies within ``2 TIE`` pads of the bound
(:func:`_true_ties`); a neuron that left the tree on a tie that is not true (a loose bound
that happened to land near 0) gets a tree of its own afterwards (see :data:`RETRY_RULE`)."""
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
SPLIT_RULE = "smear"
"""``"smear"`` (default) or ``"widest"`` (the measured alternative; module docstring)."""


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


def split_dimension(
    xlo: np.ndarray, xhi: np.ndarray, coef: np.ndarray, unknown: np.ndarray, rule: str = ""
) -> np.ndarray:
    """Per box, the input to cut: the largest smear ``sum |a_d| (u_d - l_d)`` over the rows
    of the neurons still unknown there (``unknown[B, m]``; ``coef[B, 2m, n]``), or the widest
    input where those coefficients are all zero."""
    width = xhi - xlo
    rows = np.concatenate([unknown, unknown], axis=1).astype(np.float64)
    smear = np.matmul(rows[:, None, :], np.abs(coef))[:, 0, :] * width
    if (rule or SPLIT_RULE) == "widest":
        smear = np.zeros_like(smear)
    widest = np.argmax(width, axis=1)
    best = np.argmax(smear, axis=1)
    has = smear[np.arange(len(best)), best] > 0.0
    return np.where(has, best, widest)


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
    stack = [_Chunk(*root, None, np.arange(len(root[0])))]
    links: list = []  # the record of the tree: per split batch, (ids, inputs, left, right)
    nodes, count = 0, len(root[0])
    while stack and m:
        if (
            nodes >= max_nodes
            or (deadline is not None and time.perf_counter() >= deadline)
            or (cpu_stop is not None and time.process_time() >= cpu_stop)
        ):
            break
        chunk = _pop(stack, min(BATCH, max_nodes - nodes))
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
            true, seen = _true_ties(net, chunk, bb, k, near_lo, near_hi)
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
            [_centres(chunk.lo[live], chunk.hi[live]), _corners(chunk, bb, cols, live)]
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
        kids, stuck = _split(chunk.lo[live], chunk.hi[live], coef, unknown, rule or SPLIT_RULE)
        failed |= (chunk.open[live] & stuck[:, None]).any(0)
        ok = ~stuck
        if ok.any():
            both = np.concatenate([np.flatnonzero(ok)] * 2)
            ids = count + np.arange(both.size)
            cut = np.argmax(kids[1][ok] < chunk.hi[live][ok], axis=1)  # the one input cut
            links.append((chunk.ids[live][ok], cut, ids[: ok.sum()], ids[ok.sum() :]))
            count += both.size
            stack.append(
                _Chunk(
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


@dataclass(eq=False)
class _Chunk:
    """Sub-boxes waiting to be bounded: corners, per neuron still open, parent bounds, and
    node ids (the tree's record)."""

    lo: np.ndarray
    hi: np.ndarray
    open: np.ndarray
    parent: list[Bounds] | None
    ids: np.ndarray

    def select(self, mask: np.ndarray) -> _Chunk:
        par = None if self.parent is None else [(a[mask], b[mask]) for a, b in self.parent]
        return _Chunk(self.lo[mask], self.hi[mask], self.open[mask], par, self.ids[mask])


def _pop(stack: list[_Chunk], n: int) -> _Chunk:
    """The last ``n`` boxes of the stack (depth first)."""
    top = stack[-1]
    if len(top.lo) <= n:
        return stack.pop()
    cut = len(top.lo) - n
    stack[-1] = top.select(np.arange(len(top.lo)) < cut)
    return top.select(np.arange(len(top.lo)) >= cut)


def _centres(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip(lo + 0.5 * (hi - lo), lo, hi)


def _corners(chunk: _Chunk, bb: BatchBounds, cols: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Candidate witnesses: per neuron ``cols[i]`` open in some live box, the input corner
    that minimises the linear lower bound of the box with the lowest lower bound, and the
    one that maximises the linear upper bound of the box with the highest upper bound."""
    lo, hi, opn = chunk.lo[live], chunk.hi[live], chunk.open[live][:, cols]
    m = cols.size
    z_lo = np.where(opn, bb.lower[-1][live][:, bb.rows], np.inf)
    z_hi = np.where(opn, bb.upper[-1][live][:, bb.rows], -np.inf)
    has = opn.any(0)
    out = []
    for rowoff, best in ((0, np.argmin(z_lo, axis=0)), (m, np.argmax(z_hi, axis=0))):
        b = best[has]
        a = bb.coef[live][b, rowoff + np.flatnonzero(has)]
        out.append(np.where(a > 0.0, lo[b], hi[b]))
    return np.concatenate(out)


def _true_ties(
    net: Network, chunk: _Chunk, bb: BatchBounds, k: int, near_lo: np.ndarray, near_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``bb.rows``: whether some node's near tie (``near_lo``/``near_hi``,
    ``[B, len(rows)]``: the bound within ``TIE`` pads of 0) is true, and whether it had any.

    True: the neuron's float64 value at the corner that extremises that bound's linear
    function is within ``2 TIE`` pads of the bound, so the bound is about a value the neuron
    takes and no split can move it out of the band. Decides only when to stop splitting,
    never a claim."""
    m = bb.rows.size
    true, seen = np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)
    for near, off, sign in ((near_lo, 0, 1.0), (near_hi, m, -1.0)):
        b, c = np.nonzero(near)
        if not b.size:
            continue
        h = np.where(bb.coef[b, off + c] > 0.0, chunk.lo[b], chunk.hi[b])
        for layer in net.layers[:k]:
            h = layer.apply(h) + layer.bias
            h = np.maximum(h, 0.0) if layer.relu else h
        j = bb.rows[c]
        z = (net.layers[k].apply(h) + net.layers[k].bias)[np.arange(b.size), j]
        bound = (bb.lower if off == 0 else bb.upper)[k][b, j]
        seen[c] = True
        np.logical_or.at(true, c, sign * (z - bound) <= 2.0 * TIE * bb.pads[b, off + c])
    return true, seen


def _split(lo: np.ndarray, hi: np.ndarray, coef: np.ndarray, unknown: np.ndarray, rule: str):
    """Cut each box in two at the midpoint of its chosen input (``rule``: ``"smear"`` or
    ``"widest"``); ``stuck`` marks boxes with no input whose midpoint lies strictly inside
    (too thin to split)."""
    idx = np.arange(len(lo))
    d = split_dimension(lo, hi, coef, unknown, rule)
    mid = _centres(lo, hi)
    inside = (mid > lo) & (mid < hi)
    bad = ~inside[idx, d]
    if bad.any():  # the chosen input is too thin: the widest one that can still be cut
        width = np.where(inside, hi - lo, -1.0)
        d = np.where(bad, np.argmax(width, axis=1), d)
    stuck = ~inside[idx, d]
    hi1, lo2 = hi.copy(), lo.copy()
    hi1[idx, d] = mid[idx, d]
    lo2[idx, d] = mid[idx, d]
    return (lo, hi1, lo2, hi), stuck
