"""The node LP of the ReLU-split search (:mod:`exactcomp.bab.relu`): one HiGHS model for all
the nodes of a layer's questions, each node a change of bounds.

The prefix LP of layers ``0..k-1`` (:func:`exactcomp.bounds.lp.build_prefix_lp`) gains, per
unstable ReLU, a free row ``h - z`` that a split ``z >= 0`` closes to ``h - z <= 0`` (the
split ``z <= 0`` is the column bounds ``z <= 0, h = 0``), and the phase column ``a`` and big-M rows of :mod:`exactcomp.bounds.ideal_cuts` when asked (``cuts``; a
split fixes ``a``).
Rows of deeper stably inactive neurons wait outside the model until a node's optimum violates
one (:class:`~exactcomp.bounds.lazy.LazyRows`, :meth:`SplitLP.add_violated`; the node is then
solved again): on mnist-net_256x6 prop_0_0.03 they are 888 of layer 5's 1,644 rows, and a
node LP of layers 3 and 5 took 6.8 and 7.0 ms of CPU instead of 10.5 and 12.3 (the captured
questions replayed; the node budget, scaled by the LP's size, grew with it: 8,307 and 6,881
LPs instead of 5,540 and 3,790, and layer 3 proved 33 of its 40 questions instead of 31).
A question's ideal cuts are rows added on top (:meth:`SplitLP.cut`) and removed after it
(:meth:`SplitLP.drop_cuts`); :meth:`SplitLP.restore` puts them back when the question's
tree is resumed in a later pass, so that its open nodes are bounded by the same LP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ..bounds.ideal_cuts import add_cut_rows, separate, with_phases
from ..bounds.interval import Bounds
from ..bounds.lp import LAZY_ROWS, PrefixLP, add_lazy_rows, build_prefix_lp
from ..domain import Box
from ..highs.lp import Lp, dual_bound
from ..network import Network
from ..tolerances import Tolerances
from .node_bounds import NodeBounds

__all__ = ["CUT_SEPARATIONS", "NODE_LP_OPTIONS", "Cuts", "SplitLP"]

CUT_SEPARATIONS = 1
"""Cut separations per question, at the first nodes whose bound does not settle it (the root
first); each adds at most one cut per unstable ReLU and is followed by one more solve of that
node. One, not more: each cut row is dense (up to the width of the previous layer), and on
mnist-net_256x2 prop_1_0.05 neurons 29 and 45 took 17.1 s of CPU with one separation, 24.1 s
with two (fewer LPs, 1,630 and 900, each slower)."""

NODE_LP_OPTIONS: dict[str, object] = {"simplex_scale_strategy": 0}
"""HiGHS options of the node LP. Without scaling (HiGHS scales by equilibration by default)
the dual simplex took fewer iterations per node: mnist-net_256x2 prop_1_0.05, layer 1, the
same 5,224 LPs and verdicts, 143,660 -> 96,015 iterations, 27.1 -> 23.0 s of CPU (load 8).
Speed only: every bound is re-derived from the duals by weak duality
(:func:`~exactcomp.highs.lp.lp_min`), and a solve that fails proves nothing."""


@dataclass(frozen=True, eq=False)
class Cuts:
    """The cut rows one question added (``coef . v <= rhs``, as
    :func:`~exactcomp.bounds.ideal_cuts.separate` returns them) and its separations so far."""

    cols: tuple[np.ndarray, ...] = ()
    coefs: tuple[np.ndarray, ...] = ()
    rhss: tuple[float, ...] = ()
    separations: int = 0


class SplitLP:
    """The prefix LP of layers ``0..k-1`` with, per unstable ReLU, a free row ``h - z`` that a
    split ``z >= 0`` closes to ``h - z <= 0``; and the bound changes of any set of splits."""

    def __init__(
        self,
        net: Network,
        box: Box,
        k: int,
        pre: Sequence[Bounds],
        tol: Tolerances,
        cuts: bool = True,
    ) -> None:
        base = build_prefix_lp(net, box, k, pre, tol, lazy=LAZY_ROWS)
        self.pre = pre
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
        if cuts and n:
            self.lp, phases = with_phases(self.lp)
            self.phases = np.concatenate(phases)
        self.base = self.lp
        self.highs = Lp.from_model(self.lp)
        for name, value in NODE_LP_OPTIONS.items():
            self.highs.h.setOptionValue(name, value)
        self.applied = np.zeros(n, dtype=np.int8)  # the splits the HiGHS model holds now
        # the column bounds the HiGHS model holds now (the node bounds of the last node)
        self.held_lower, self.held_upper = self.lp.col_lower.copy(), self.lp.col_upper.copy()
        self.nb = NodeBounds(net, box, pre, [(r.layer, r.neurons) for r in base.relus], tol)
        self._net, self._tol = net, tol
        self.cuts = Cuts()
        self._upper: sp.csr_matrix | None = None

    def cut(self, v: np.ndarray) -> bool:
        """Add the most violated ideal cut of each unstable ReLU at the LP point ``v``
        (:func:`~exactcomp.bounds.ideal_cuts.separate`), at most :data:`CUT_SEPARATIONS`
        times per question; True when rows were added. A cut holds on the whole box (every
        network point satisfies it with its own phase), so it is valid on every node."""
        if not self.phases.size or self.cuts.separations >= CUT_SEPARATIONS:
            return False
        c = self.cuts
        self.cuts = replace(c, separations=c.separations + 1)
        cols, coefs, rhss = separate(self._net, self.lp, self._phase_list(), v, self._tol)
        if not cols:
            return False
        self.lp = add_cut_rows(self.highs, self.lp, cols, coefs, rhss)
        added = (c.cols + tuple(cols), c.coefs + tuple(coefs), c.rhss + tuple(rhss))
        self.cuts = Cuts(*added, separations=c.separations + 1)
        self._upper = None
        return True

    def add_violated(self, v: np.ndarray) -> bool:
        """Move the lazy rows (:class:`~exactcomp.bounds.lp.LazyRows`: deeper stably inactive
        neurons) that the LP point ``v`` violates into the model, for every later node too;
        True when there were any (the node is then solved again). The question's cut rows
        stay after them."""
        lazy = self.base.lazy
        rows = lazy.violated(v) if lazy is not None else np.zeros(0, dtype=np.int64)
        if not rows.size:
            return False
        held = self.drop_cuts()
        self.base = self.lp = add_lazy_rows(self.highs, self.base, rows)
        self.restore(held)
        return True

    def drop_cuts(self) -> Cuts:
        """Remove the cut rows (each question separates its own); returns them, for
        :meth:`restore`."""
        extra = self.lp.matrix.shape[0] - self.base.matrix.shape[0]
        if extra:
            self.highs.delete_rows(self.base.matrix.shape[0], extra)
        out = self.cuts
        self.lp, self.cuts, self._upper = self.base, Cuts(), None
        return out

    def restore(self, cuts: Cuts) -> None:
        """Put back the cuts :meth:`drop_cuts` returned (after it, with no cuts held)."""
        if cuts.cols:
            self.lp = add_cut_rows(
                self.highs, self.lp, list(cuts.cols), list(cuts.coefs), list(cuts.rhss)
            )
            self._upper = None
        self.cuts = cuts

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

    def score(
        self,
        v: np.ndarray,
        split: np.ndarray,
        lower: np.ndarray | None = None,
        upper: np.ndarray | None = None,
    ) -> np.ndarray:
        """Branching score of each unstable neuron at the last LP optimum ``v``: the dual
        weight holding its ``h`` down (the chord row's dual; with the phase columns, the duals of
        every row bounding ``h`` from above, each times ``h``'s coefficient) times the
        chord's intercept at 0, ``-l u / (u - l)`` (what that relaxation can add to the
        bound; the BaBSR idea read off the LP), ties broken by how far the optimum sits
        above ``relu(z)``; ``-1`` for the neurons already split. ``lower, upper``: the node
        bounds (the chord's intercept then uses them: what a split there can still gain)."""
        y = self.highs.row_duals()
        intercept = self.intercept
        if lower is not None and upper is not None:
            lo, hi = np.minimum(lower, 0.0), np.maximum(upper, 0.0)
            width = np.where(hi > lo, hi - lo, 1.0)
            intercept = np.minimum(intercept, -lo * hi / width)
        gap = v[self.h] - np.maximum(v[self.z], 0.0)
        if self.phases.size:
            out = (np.abs(y) @ self._upper_rows()) * intercept
        else:
            out = np.abs(y[self.chord]) * intercept
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

    def bounded(
        self, split: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None
    ) -> PrefixLP:
        """The LP of a node (``split[i]``: ``+1`` for ``z_i >= 0``, ``-1`` for ``z_i <= 0``)
        with its bounds set in the HiGHS model too (only the changed ones are sent).

        ``lower, upper``: the node bounds of the unstable neurons' ``z``
        (:class:`~exactcomp.bab.node_bounds.NodeBounds`; ``None``: the whole box's), put in
        as column bounds of ``z`` and of ``h`` (``h <= max(u', 0)``). Only bound changes: the
        chord and big-M rows keep the whole box's bounds (still valid on the node)."""
        lp = self.lp
        cl, cu = lp.col_lower.copy(), lp.col_upper.copy()
        ru = lp.row_upper.copy()
        if lower is not None and upper is not None:
            cl[self.z] = np.maximum(cl[self.z], lower)
            cu[self.z] = np.minimum(cu[self.z], upper)
            cu[self.h] = np.minimum(cu[self.h], np.maximum(upper, 0.0))
        pos, neg = split > 0, split < 0
        cl[self.z[pos]] = np.maximum(cl[self.z[pos]], 0.0)
        cu[self.z[neg]] = np.minimum(cu[self.z[neg]], 0.0)
        cu[self.h[neg]] = 0.0
        ru[self.rows[pos]] = 0.0
        if self.phases.size:  # the phase of a split neuron is fixed: a = 1 on z >= 0, 0 else
            cl[self.phases[pos]] = 1.0
            cu[self.phases[neg]] = 0.0
        parts = [self.z, self.h] + ([self.phases] if self.phases.size else [])
        cols = np.concatenate(parts)
        moved = (cl[cols] != self.held_lower[cols]) | (cu[cols] != self.held_upper[cols])
        if moved.any():
            cols = np.unique(cols[moved]).astype(np.int32)
            self.highs.change_col_bounds(cols, cl[cols], cu[cols])
            self.held_lower[cols], self.held_upper[cols] = cl[cols], cu[cols]
        changed = np.flatnonzero(split != self.applied)
        if changed.size:
            rows = self.rows[changed].astype(np.int32)
            rl = np.full(rows.size, -np.inf)
            self.highs.change_row_bounds(rows, rl, ru[rows])
            self.applied = split.copy()
        return replace(lp, col_lower=cl, col_upper=cu, row_upper=ru)
