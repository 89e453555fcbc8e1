r"""Re-prove sign claims by replaying recorded input-split trees, with the replayer's own bounds.

The re-check of a compression (:mod:`exactcomp.verify.recheck`) must prove each claim
``max z_kj <= 0`` (INACTIVE) or ``min z_kj >= 0`` (ACTIVE) again, independently. Searching
from scratch (:func:`exactcomp.bab.split.prove_signs`) repeats the analysis's search node for
node. Here the analysis's trees (:class:`~exactcomp.bab.split_tree.SplitTree`) say only
*where* to cut; everything that proves comes from the caller:

* the walk starts at the box and cuts each node where the record says, at the midpoint it
  computes itself (:func:`~exactcomp.bab.split_tree.midpoint`), so the nodes it reaches that
  have no recorded children (with the nodes it never had to enter) cover the box whatever the
  record holds;
* at the nodes it bounds (every recorded leaf, and the internal nodes of every
  :data:`STRIDE`-th level) it computes its own bounds (:func:`~exactcomp.bab.batch.batch_bounds`
  on the caller's ``known`` bounds and those of its nearest bounded ancestor, the search's
  bound and pad), and a claim holds on the node when its side is proven there (``u <= 0``
  INACTIVE, ``l >= 0`` ACTIVE): the walk stops descending where all the node's claims hold,
  and does no witness search;
* a claim holds on the box when it holds on every node the walk ends at. A recorded leaf
  where some claim does not hold is *failed* for that claim; after every recorded tree of
  the layer has been walked, a claim still failed is searched for (``prove_signs``, the path
  without a record, started from its failed leaves of the walk where it failed least: one
  search per walk), or on the whole box when those are more than :data:`LEAVES`; it holds
  if the search proves it.

A record that does not fit (another layer or box, a truncated or corrupt sequence, too large)
is not walked: its claims are searched for from scratch. So a record can only change how much
work a proof costs, never whether a false claim is accepted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds
from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from . import split
from .alpha import tighten_open
from .batch import batch_bounds
from .split import BATCH, MAX_NODES, SLOPES, SplitResult, prove_signs
from .split_tree import SplitTree, TreeShape, midpoint

__all__ = ["LEAVES", "STRIDE", "replay_signs"]

STRIDE = 3
"""The walk bounds the recorded leaves and the internal nodes of every ``STRIDE``-th level
(the root's, then every third); the nodes between are cut without bounds, and a node's parent
bounds are those of its nearest bounded ancestor (sound: proven on a larger box). The bounds
of an internal node serve the nodes below it (parent bounds; the earlier layers' linear rows
of a batch are computed only for neurons that straddle 0 in some parent bounds of the batch)
and stop the walk where every claim holds; bounding each node costs as much as the search.

Measured on the re-check of ACAS Xu 3_6 and 2_9 over prop_1 (layer trees of 15,663 and 14,603
nodes; CPU s of the whole re-check, load 3-4): the search 10.2-10.6 s and 8.2-9.5 s; the walk
with ``STRIDE`` 1: 8.6 and 8.5 s (every node bounded again, 2-7 leaves left to the search);
2: 6.1 and 5.7 s; 3: 5.8-7.4 and 5.7 s (10,412 + 791 searched and 9,792 + 481 nodes); 4:
6.9 and 5.5 s; 6: 8.1 and 6.3 s; leaves only: 6.8-7.1 s (391 leaves left to the search). The
restriction of the earlier layers' rows alone (``STRIDE`` 1): 10.1 -> 8.6 s on 3_6."""

LEAVES = 4096
"""The most failed leaves of one claim that a search starts from; a claim failed on more is
searched for on the whole box (a walk whose record does not suit the re-check's bounds)."""


@dataclass(frozen=True, eq=False)
class _Walk:
    """One tree walked for the claims asked: which held on every node the walk ended at,
    the failed leaves (corners and, per leaf, the claims that failed there), nodes bounded."""

    held: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    failed: np.ndarray
    nodes: int


def replay_signs(
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    *,
    trees: Sequence[SplitTree] = (),
    tol: Tolerances = DEFAULT,
    max_nodes: int = MAX_NODES,
    deadline: float | None = None,
    cpu_limit: float | None = None,
) -> SplitResult:
    """Prove the claims (``sides``: ``+1`` ``max z <= 0``, ``-1`` ``min z >= 0``) of layer
    ``k``'s ``neurons`` by walking the recorded ``trees`` that fit this layer and box, then
    searching on what they leave (module docstring). Where some side is ``0`` (either claim)
    there is nothing to replay for: :func:`~exactcomp.bab.split.prove_signs` alone.

    The parameters and the result are those of :func:`~exactcomp.bab.split.prove_signs`
    (``max_nodes``: the budget of the walks and of the searches after them, each).
    ``points`` holds only the searches' witnesses; ``trees`` is empty."""
    t0 = time.perf_counter()
    cpu_stop = None if cpu_limit is None else time.process_time() + cpu_limit
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    m = neurons.size
    known = [(np.asarray(lo, np.float64), np.asarray(hi, np.float64)) for lo, hi in known[: k + 1]]
    if (sides == 0).any():
        return prove_signs(net, box, k, known, neurons, sides, tol=tol, max_nodes=max_nodes,
                           deadline=deadline, cpu_limit=cpu_limit)  # fmt: skip
    fit = [t for t in trees if isinstance(t, SplitTree) and t.fits(box.lower, box.upper, k)]
    shapes = [t.shape() for t in fit]
    held = np.zeros(m, dtype=bool)
    walks: list[_Walk] = []
    nodes = 0
    for shape in shapes:
        if shape is None or held.all():
            continue
        ask = ~held
        w = _walk(net, box, k, known, neurons[ask], sides[ask], shape, tol, max_nodes,
                  deadline, cpu_stop, STRIDE)  # fmt: skip
        nodes += w.nodes
        held[ask] |= w.held
        failed = np.zeros((len(w.lo), m), dtype=bool)
        failed[:, ask] = w.failed
        walks.append(_Walk(w.held, w.lo, w.hi, failed, w.nodes))
    out = SplitResult(neurons, held & (sides > 0), held & (sides < 0), np.empty((0, box.dim)),
                      nodes, True, 0.0)  # fmt: skip
    if not held.all():
        out = _search(net, box, k, known, neurons, sides, held, walks, tol, max_nodes,
                      deadline, cpu_stop, out)  # fmt: skip
    inactive = out.inactive | (held & (sides > 0))
    active = (out.active | (held & (sides < 0))) & ~inactive
    return SplitResult(neurons, inactive, active, out.points, out.nodes, out.complete,
                       time.perf_counter() - t0)  # fmt: skip


def _stopped(nodes: int, max_nodes: int, deadline: float | None, cpu_stop: float | None) -> bool:
    return (
        nodes >= max_nodes
        or (deadline is not None and time.perf_counter() >= deadline)
        or (cpu_stop is not None and time.process_time() >= cpu_stop)
    )


def _walk(net, box, k, known, neurons, sides, shape: TreeShape, tol, max_nodes, deadline,
          cpu_stop, stride: int = 1) -> _Walk:  # fmt: skip
    """Walk one recorded tree, depth first in batches, for the claims of ``neurons``."""
    m = neurons.size
    linear = [np.flatnonzero((lo < 0.0) & (hi > 0.0)) for lo, hi in known]
    whole = [(np.full((1, a.size), -np.inf), np.full((1, a.size), np.inf)) for a, _ in known]
    # a stack of batches: node ids, depths, corners, claims still open, parent bounds
    stack = [(np.zeros(1, np.int64), np.zeros(1, np.int64), box.lower[None].copy(),
              box.upper[None].copy(), np.ones((1, m), bool), whole)]  # fmt: skip
    fails: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    nodes = 0
    while stack:
        if _stopped(nodes, max_nodes, deadline, cpu_stop):  # the rest fail where they are
            fails += [(lo, hi, opn) for _, _, lo, hi, opn, _ in stack]
            break
        # the nodes between bounded levels are cut at once, without bounds, and pass their
        # parent bounds down: every node of the batch is then a leaf or on a bounded level
        ids, depth, lo, hi, opn, parent = _expand(_pop(stack, BATCH // 4), shape, stride)
        cols = np.flatnonzero(opn.any(0))
        # the earlier layers' linear rows: only neurons straddling 0 in some parent here
        lin = [idx[((a[:, idx] < 0.0) & (b[:, idx] > 0.0)).any(0)]
               for idx, (a, b) in zip(linear, parent, strict=True)]  # fmt: skip
        bb = batch_bounds(net, lo, hi, k, known, tol, rows=neurons[cols], parent=parent,
                          linear=lin, slopes=SLOPES)  # fmt: skip
        nodes += len(lo)
        if split.OPTIMISE:  # the search's optimised slopes, on the claims still open here
            lc, hc = bb.lower[k][:, neurons[cols]], bb.upper[k][:, neurons[cols]]
            still, side = opn[:, cols] & (lc < 0.0) & (hc > 0.0), sides[cols][None]
            bb = tighten_open(
                net, k, lo, hi, bb, still & (side < 0), still & (side > 0), SLOPES, tol
            )
        lo_k, hi_k = bb.lower[k][:, neurons], bb.upper[k][:, neurons]
        opn = opn & ~np.where(sides > 0, hi_k <= 0.0, lo_k >= 0.0)
        live = opn.any(1)
        dims = shape.dims[ids]
        leaf = live & (dims < 0)
        if leaf.any():
            fails.append((lo[leaf], hi[leaf], opn[leaf]))
        cut = np.flatnonzero(live & (dims >= 0))
        if cut.size:
            par = [(a[cut], b[cut]) for a, b in zip(bb.lower, bb.upper, strict=True)]
            stack.append(_children(shape, (ids, depth, lo, hi, opn, par), cut))
    n = box.dim
    flo = np.concatenate([f[0] for f in fails]) if fails else np.empty((0, n))
    fhi = np.concatenate([f[1] for f in fails]) if fails else np.empty((0, n))
    failed = np.concatenate([f[2] for f in fails]) if fails else np.empty((0, m), bool)
    return _Walk(~failed.any(0), flo, fhi, failed, nodes)


def _children(shape: TreeShape, entry: tuple, cut: np.ndarray) -> tuple:
    """The two children of the nodes ``cut`` of a batch (whose parent bounds, ``entry[5]``,
    are already those of ``cut``'s rows), cut where the record says at their midpoints."""
    ids, depth, lo, hi, opn, par = entry
    rows, d = np.arange(cut.size), shape.dims[ids[cut]]
    mid = midpoint(lo[cut], hi[cut])[rows, d]
    hi1, lo2 = hi[cut].copy(), lo[cut].copy()
    hi1[rows, d], lo2[rows, d] = mid, mid
    both = np.concatenate([cut, cut])
    twice = np.concatenate([rows, rows])
    kids = np.concatenate([shape.left[ids[cut]], shape.right[ids[cut]]])
    return (kids, depth[both] + 1, np.concatenate([lo[cut], lo2]), np.concatenate([hi1, hi[cut]]),
            opn[both], [(a[twice], b[twice]) for a, b in par])  # fmt: skip


def _expand(entry: tuple, shape: TreeShape, stride: int) -> tuple:
    """Replace the batch's internal nodes off the bounded levels (every ``stride``-th) by
    their children, until none is left; the children keep their parent's parent bounds."""
    while True:
        ids, depth, lo, hi, opn, par = entry
        skip = (shape.dims[ids] >= 0) & (depth % stride != 0)
        if not skip.any():
            return entry
        keep, cut = np.flatnonzero(~skip), np.flatnonzero(skip)
        kids = _children(shape, (ids, depth, lo, hi, opn, [(a[cut], b[cut]) for a, b in par]), cut)
        entry = tuple(
            [np.concatenate([x[keep], y]) for x, y in zip(entry[:5], kids[:5], strict=True)]
            + [[(np.concatenate([a[keep], ka]), np.concatenate([b[keep], kb]))
                for (a, b), (ka, kb) in zip(par, kids[5], strict=True)]]
        )  # fmt: skip


def _pop(stack: list, n: int) -> tuple:
    """The last ``n`` nodes of the stack (depth first)."""
    top = stack[-1]
    if len(top[0]) <= n:
        return stack.pop()
    cut = len(top[0]) - n
    stack[-1] = _rows(top, slice(0, cut))
    return _rows(top, slice(cut, None))


def _rows(entry: tuple, sel: slice) -> tuple:
    ids, depth, lo, hi, opn, parent = entry
    return ids[sel], depth[sel], lo[sel], hi[sel], opn[sel], [(a[sel], b[sel]) for a, b in parent]


def _search(net, box, k, known, neurons, sides, held, walks, tol, max_nodes, deadline,
            cpu_stop, out: SplitResult) -> SplitResult:  # fmt: skip
    """The searches for the claims the walks leave: per claim, on its failed leaves of the
    walk where it failed least (at most :data:`LEAVES`; one search per walk, started from
    those leaves), else on the whole box."""
    m = neurons.size
    proven = held.copy()
    points: list[np.ndarray] = []
    nodes = out.nodes
    counts = np.array([w.failed.sum(0) for w in walks], dtype=np.int64).reshape(len(walks), m)
    best, fewest = np.zeros(m, np.int64), np.zeros(m, np.int64)  # no walk: the whole box
    if walks:
        best = np.where(counts > 0, counts, np.iinfo(np.int64).max).argmin(0)
        fewest = counts[best, np.arange(m)]
    whole = ~held & ((fewest == 0) | (fewest > LEAVES))
    complete = True
    for w_i, w in enumerate(walks):
        cols = np.flatnonzero(~held & ~whole & (best == w_i))
        rows = np.flatnonzero(w.failed[:, cols].any(1))
        if not cols.size or _stopped(nodes - out.nodes, max_nodes, deadline, cpu_stop):
            complete &= not cols.size
            continue
        res = prove_signs(net, box, k, known, neurons[cols], sides[cols], tol=tol,
                          max_nodes=max_nodes - (nodes - out.nodes), deadline=deadline,
                          cpu_limit=_cpu_left(cpu_stop),
                          start=(w.lo[rows], w.hi[rows], w.failed[rows][:, cols]))  # fmt: skip
        nodes += res.nodes
        points.append(res.points)
        proven[cols[_claims_held(res, sides[cols])]] = True
        complete &= res.complete
    if whole.any() and not _stopped(nodes - out.nodes, max_nodes, deadline, cpu_stop):
        res = prove_signs(net, box, k, known, neurons[whole], sides[whole], tol=tol,
                          max_nodes=max_nodes, deadline=deadline,
                          cpu_limit=_cpu_left(cpu_stop))  # fmt: skip
        nodes += res.nodes
        points.append(res.points)
        proven[np.flatnonzero(whole)[_claims_held(res, sides[whole])]] = True
        complete &= res.complete
    pts = np.concatenate(points) if points else np.empty((0, box.dim))
    return SplitResult(neurons, proven & (sides > 0), proven & (sides < 0), pts, nodes,
                       complete, 0.0)  # fmt: skip


def _claims_held(res: SplitResult, sides: np.ndarray) -> np.ndarray:
    """Per asked neuron, whether the search proved the side it was asked for."""
    return np.where(sides > 0, res.inactive, res.active)


def _cpu_left(cpu_stop: float | None) -> float | None:
    return None if cpu_stop is None else max(cpu_stop - time.process_time(), 0.0)
