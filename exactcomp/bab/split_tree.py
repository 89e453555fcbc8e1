r"""The record of one input-split tree: its split sequence, so that the tree can be replayed.

:func:`exactcomp.bab.split.prove_signs` records every tree it grows as a :class:`SplitTree`:
the layer, the box, the neurons it was asked about, and per node in depth-first (pre-)order
the input it was cut along (``-1``: a leaf). No sub-box is stored. A node ``[l, u]`` cut
along input ``d`` has the two children ``[l, u']`` and ``[l', u]`` that differ from it only
in input ``d``, where :math:`u'_d = l'_d = m_d` is the midpoint :func:`midpoint` computes
(the same float64 expression as the search's). Whoever replays the record computes the
midpoints itself, so the leaves it reaches cover the box by construction
(:math:`[l_d, m_d] \cup [m_d, u_d] = [l_d, u_d]` for any :math:`m_d \in [l_d, u_d]`, and the
clip keeps :math:`m_d` there), whatever the record says: a record is a hint about *where* to
cut, never a proof (:mod:`exactcomp.bab.replay`).

Cost: one byte per node (``int8``); ACAS Xu's largest layer trees have about 100,000 nodes.
The record lives in memory, from the analysis to the re-check of one ``compress --verify``
process (:attr:`exactcomp.verdicts.StabilityReport.trees`); it is not written to the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_RECORD", "SplitTree", "TreeShape", "midpoint", "record_tree"]

MAX_RECORD = 2_000_000
"""The most nodes a record may have to be replayed (a larger one is ignored as not fitting)."""


def midpoint(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The float64 point where a node is cut, inside ``[lo, hi]``: the search's and the
    replay's one expression."""
    return np.clip(lo + 0.5 * (hi - lo), lo, hi)


@dataclass(frozen=True, eq=False)
class TreeShape:
    """A decoded record: per node (pre-order index) its split input (``-1``: leaf) and its
    children's indices (``-1`` for a leaf)."""

    dims: np.ndarray
    left: np.ndarray
    right: np.ndarray


@dataclass(frozen=True, eq=False)
class SplitTree:
    """One recorded input-split tree: ``layer``, the box ``[lower, upper]``, the ``neurons``
    it was grown for, and the split input of each node in pre-order (``dims``, ``-1``: leaf)."""

    layer: int
    lower: np.ndarray
    upper: np.ndarray
    neurons: np.ndarray
    dims: np.ndarray

    @property
    def nodes(self) -> int:
        """Nodes in the tree (leaves included)."""
        return int(self.dims.size)

    def fits(self, lower: np.ndarray, upper: np.ndarray, layer: int) -> bool:
        """Whether the record is about this layer and exactly this box."""
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return (
            self.layer == layer
            and lo.shape == np.shape(lower)
            and hi.shape == np.shape(upper)
            and bool(np.array_equal(lo, lower) and np.array_equal(hi, upper))
        )

    def shape(self) -> TreeShape | None:
        """The decoded tree, or ``None`` when the record is not one whole binary tree over
        the box's inputs (truncated, with extra nodes, an input out of range, too large)."""
        dims = np.asarray(self.dims)
        n = dims.size
        if dims.ndim != 1 or n == 0 or n > MAX_RECORD or not np.issubdtype(dims.dtype, np.integer):
            return None
        if dims.min() < -1 or dims.max() >= np.size(self.lower):
            return None
        left, right = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        expect: list[tuple[int, int]] = [(-1, 0)]  # (parent, 0 left / 1 right) to fill next
        for i, d in enumerate(dims.tolist()):
            if not expect:
                return None  # nodes after the tree is complete
            p, side = expect.pop()
            if p >= 0:
                (left if side == 0 else right)[p] = i
            if d >= 0:
                expect += [(i, 1), (i, 0)]
        if expect:
            return None  # truncated
        return TreeShape(dims.astype(np.int64), left, right)


def record_tree(
    layer: int,
    lower: np.ndarray,
    upper: np.ndarray,
    neurons: np.ndarray,
    links: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    count: int,
) -> SplitTree:
    """The record of a tree grown as ``links``: per split batch, the node ids cut, the input
    each was cut along, and the ids of their two children (node ``0`` the root, ``count``
    ids in all)."""
    dim = np.full(count, -1, np.int64)
    kid = np.full((count, 2), -1, np.int64)
    for ids, d, a, b in links:
        dim[ids], kid[ids, 0], kid[ids, 1] = d, a, b
    order: list[int] = []
    stack = [0]
    while stack:
        i = stack.pop()
        order.append(i)
        if dim[i] >= 0:
            stack += [int(kid[i, 1]), int(kid[i, 0])]
    small = np.size(lower) < 128
    dims = dim[np.asarray(order, np.int64)].astype(np.int8 if small else np.int32)
    return SplitTree(layer, np.array(lower), np.array(upper), np.array(neurons), dims)
