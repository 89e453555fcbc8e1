r"""The sub-boxes of an input-split tree (:func:`exactcomp.bab.split.prove_signs`): the batch
waiting to be bounded, where a box is cut, the candidate witnesses of a batch, and near ties.

A box is cut in two at the midpoint of one input, a float64 strictly between its ends, so the
halves cover their parent (``[l, m] \cup [m, u]``); a box with no such input is *stuck* and
its open neurons get no claim.

The split dimension ("smear", after ReluVal, here on the CROWN coefficients): the bound of
an unknown neuron is :math:`\min_{x \in box} a^\top x + c`, whose slack over the box is
:math:`\sum_d |a_d| (u_d - l_d)`; the input with the largest share
:math:`\sum_{\text{unknown rows}} |a_d| (u_d - l_d)` is cut. Measured against cutting the
widest input, on ACAS Xu 1_1, 2_2, 3_3 over prop_1, prop_3, prop_4 (every neuron of layers
0-5 open after linear bounds asked, 50,000 nodes a layer): 119,310 nodes in all against
343,005, and 104 s against 397 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds
from ..network import Network
from .batch import BatchBounds

TIE = 4.0
"""Near ties: a neuron whose bound on some node is within ``TIE`` times that bound's own
rounding pad of 0 (on the wrong side) leaves the tree unclaimed: splitting cannot remove the
pad, and a pre-activation that touches 0 on a face of the box (its maximum exactly 0) would
otherwise spend the whole node budget. Such a tie is *true* when the neuron's float64 value
at the node's bound-extremising corner lies within ``2 TIE`` pads of the bound
(:func:`true_ties`); a neuron that left the tree on a tie that is not true (a loose bound
that happened to land near 0) gets a tree of its own afterwards (see
:data:`exactcomp.bab.split.RETRY_RULE`)."""
SPLIT_RULE = "smear"
"""``"smear"`` (default) or ``"widest"`` (the measured alternative; module docstring)."""


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


@dataclass(eq=False)
class Chunk:
    """Sub-boxes waiting to be bounded: corners, per neuron still open, parent bounds, and
    node ids (the tree's record)."""

    lo: np.ndarray
    hi: np.ndarray
    open: np.ndarray
    parent: list[Bounds] | None
    ids: np.ndarray

    def select(self, mask: np.ndarray) -> Chunk:
        par = None if self.parent is None else [(a[mask], b[mask]) for a, b in self.parent]
        return Chunk(self.lo[mask], self.hi[mask], self.open[mask], par, self.ids[mask])


def pop_batch(stack: list[Chunk], n: int) -> Chunk:
    """The last ``n`` boxes of the stack (depth first)."""
    top = stack[-1]
    if len(top.lo) <= n:
        return stack.pop()
    cut = len(top.lo) - n
    stack[-1] = top.select(np.arange(len(top.lo)) < cut)
    return top.select(np.arange(len(top.lo)) >= cut)


def box_centres(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip(lo + 0.5 * (hi - lo), lo, hi)


def witness_corners(
    chunk: Chunk, bb: BatchBounds, cols: np.ndarray, live: np.ndarray
) -> np.ndarray:
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


def true_ties(
    net: Network, chunk: Chunk, bb: BatchBounds, k: int, near_lo: np.ndarray, near_hi: np.ndarray
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


def cut_boxes(lo: np.ndarray, hi: np.ndarray, coef: np.ndarray, unknown: np.ndarray, rule: str):
    """Cut each box in two at the midpoint of its chosen input (``rule``: ``"smear"`` or
    ``"widest"``); ``stuck`` marks boxes with no input whose midpoint lies strictly inside
    (too thin to split)."""
    idx = np.arange(len(lo))
    d = split_dimension(lo, hi, coef, unknown, rule)
    mid = box_centres(lo, hi)
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
