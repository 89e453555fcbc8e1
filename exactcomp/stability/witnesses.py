"""Witnesses of instability: concrete inputs, evaluated in float64, that show a neuron's sign.

A neuron seen strictly positive at one input of the box and strictly negative at another is
unstable, and no bound or MILP is needed for it. "Strictly" means beyond the witness margin
``tol.witness * (1 + scale)`` where ``scale = |W_k| |h_{k-1}| + |b_k|`` is the magnitude of
the terms summed (float64 rounding of the forward pass cannot flip such a sign): the rule of
:func:`exactcomp.search.witness_margin`, applied here incrementally.

Every point ever evaluated is kept in one pool, so that a witness is a row index into it; the
pool is compacted to the rows actually cited when the report is written. The points come from
:mod:`exactcomp.search` (candidates, gradient ascent) and from MILP incumbents.
"""

from __future__ import annotations

import time

import numpy as np

from ..domain import Box
from ..network import Network
from ..search import gradient_points, witness_margin
from ..tolerances import Tolerances

#: Relative padding of the cheap upper bound on the witness margin (:meth:`WitnessPool.signs`).
BOUND_PAD = 1e-6
#: Rows evaluated at once by :meth:`WitnessPool.add_until` between looks at the deadline:
#: cifar_base_kw's 3,073 candidates take 1.6 s CPU (RESULTS.md "ccsoak21"), so a chunk is
#: ~0.25 s there, and a few milliseconds on the MLPs (one chunk: their pools are as before).
POOL_CHUNK = 512


class WitnessPool:
    """All inputs evaluated so far, and per ReLU layer the first row showing each sign.

    Mutable on purpose (it accumulates over one analysis); owned by one call of the engine.
    """

    def __init__(self, net: Network, box: Box, tol: Tolerances) -> None:
        self.net, self.box, self.tol = net, box, tol
        self._rows: list[np.ndarray] = []
        self.size = 0
        w = {k: net.layers[k].out_features for k in net.relu_layers}
        self.pos = {k: np.full(n, -1, dtype=np.int64) for k, n in w.items()}
        self.neg = {k: np.full(n, -1, dtype=np.int64) for k, n in w.items()}
        self.zmin = {k: np.full(n, np.inf) for k, n in w.items()}
        self.zmax = {k: np.full(n, -np.inf) for k, n in w.items()}
        self.argmin = {k: np.full(n, -1, dtype=np.int64) for k, n in w.items()}
        self.argmax = {k: np.full(n, -1, dtype=np.int64) for k, n in w.items()}

    def signs(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per layer ``(z, positive, negative)`` for a batch: the margin-checked signs.

        The margin ``tau`` of :func:`~exactcomp.search.witness_margin` needs ``|h| |W|^T``, a
        product as large as the layer's own. Since ``|h| . |W_j| <= max|h| * sum|W_j|``, the
        margin that bound gives (padded by :data:`BOUND_PAD` relative, far above the float64
        rounding of either side) is at least ``tau``: an entry beyond it is beyond ``tau``
        with the same sign, and ``tau`` itself is computed only for the rows and neurons that
        have an entry within it. The signs are exactly those of ``z > tau``, ``z < -tau``
        (cifar_base_kw's pool of 3,073 points: 2.3 -> 1.6 s CPU; RESULTS.md "ccsoak21")."""
        out = []
        h = np.atleast_2d(np.asarray(x, dtype=np.float64))
        for layer in self.net.layers:
            w, b = layer.weight, layer.bias
            z = h @ w.T + b
            rowsum = np.asarray(abs(w).sum(axis=1), dtype=np.float64).ravel()  # also CSR
            scale = np.max(np.abs(h), axis=1, initial=0.0)[:, None] * rowsum
            bound = self.tol.witness * (1.0 + scale * (1.0 + BOUND_PAD) + np.abs(b))
            pos, neg = z > bound, z < -bound
            near = np.abs(z) <= bound
            rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
            if rows.size:
                sub = np.ix_(rows, cols)
                thr = witness_margin(h[rows], w[cols], b[cols], self.tol)
                pos[sub] |= near[sub] & (z[sub] > thr)
                neg[sub] |= near[sub] & (z[sub] < -thr)
            out.append((z, pos, neg))
            h = np.maximum(z, 0.0) if layer.relu else z
        return out

    def add(self, x: np.ndarray, only: tuple[int, int] | None = None) -> np.ndarray:
        """Evaluate points (clipped into the box) and record the signs they show.

        ``only=(k, j)`` restricts what is recorded to neuron ``j`` of layer ``k`` (baselines
        that do not share solutions between neurons). Returns the pool row indices.
        """
        x = self.box.clip(np.atleast_2d(np.asarray(x, dtype=np.float64)))
        idx = np.arange(self.size, self.size + len(x))
        if len(x) == 0:
            return idx
        self._rows.append(x)
        self.size += len(x)
        for k, (z, pos, neg) in enumerate(self.signs(x)):
            if k not in self.pos:
                continue
            if only is None:
                cols = np.arange(self.pos[k].size)
            elif only[0] == k:
                cols = np.array([only[1]])
            else:
                continue
            self._record(k, cols, idx, z, pos, neg)
        return idx

    def add_until(self, x: np.ndarray, deadline: float | None) -> None:
        """:meth:`add` of ``x`` in chunks of :data:`POOL_CHUNK` rows (in order: the pool is
        the one :meth:`add` of all of them makes), none started past ``deadline`` after the
        first. Sound: fewer witnesses only leave neurons open for the later phases, and a
        neuron left undecided is kept."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        for at in range(0, len(x), POOL_CHUNK):
            if at and deadline is not None and time.perf_counter() >= deadline:
                return
            self.add(x[at : at + POOL_CHUNK])

    def _record(self, k, cols, idx, z, pos, neg) -> None:
        for sel, store in ((pos, self.pos[k]), (neg, self.neg[k])):
            s = sel[:, cols]
            hit = s.any(axis=0)
            first = idx[np.argmax(s, axis=0)]
            view = store[cols]
            new = hit & (view < 0)
            view[new] = first[new]
            store[cols] = view
        zc = z[:, cols]
        lo_row, hi_row = np.argmin(zc, axis=0), np.argmax(zc, axis=0)
        lo_val, hi_val = zc[lo_row, np.arange(zc.shape[1])], zc[hi_row, np.arange(zc.shape[1])]
        down, up = lo_val < self.zmin[k][cols], hi_val > self.zmax[k][cols]
        self.zmin[k][cols[down]], self.argmin[k][cols[down]] = lo_val[down], idx[lo_row[down]]
        self.zmax[k][cols[up]], self.argmax[k][cols[up]] = hi_val[up], idx[hi_row[up]]

    def best(self, k: int, neurons: np.ndarray, signs: np.ndarray) -> np.ndarray:
        """Per neuron, the pooled input with the largest ``sign * z_kj`` (pool not empty)."""
        rows = np.where(signs > 0, self.argmax[k][neurons], self.argmin[k][neurons])
        return self.rows()[rows]

    def rows(self) -> np.ndarray:
        if len(self._rows) > 1:
            self._rows = [np.concatenate(self._rows)]
        return self._rows[0] if self._rows else np.empty((0, self.box.dim))


SEARCH_FLOPS = 1e9  # arithmetic budget of the second gradient-search round, per layer
#: Arithmetic (about ``4 x`` the weights up to the layer, per row and step) of one chunk of
#: gradient paths between two looks at a deadline (:func:`search_signs`; without one, one
#: call as before): 0.2-1 s of BLAS. resnet_2b's 2,048-3,072-wide dense layers (4 x 12.6 M
#: multiply-adds a row and step up to layer 1) ran two paths of 26 steps per open neuron in
#: one call, 42 s CPU past the exact pass's 22.5 s (RESULTS.md "rn23").
WITNESS_WORK = 2.0**31
#: ... but never fewer paths than this in a chunk: each step of a chunk reads every weight up
#: to the layer once, whatever its rows, so chunks of a few rows are memory-bound (marabou
#: cifar10_small, 3 rows a chunk: `stability --budget 60` spent 42.6 s in witnesses, not 12,
#: and left 169 neurons undecided, not 78; RESULTS.md "lead23"). 32 rows: one chunk is at most
#: about 1 s (cifar10_small) to 2 s (resnet_2b) of BLAS.
WITNESS_ROWS = 32


def search_signs(
    pool: WitnessPool, k: int, settled: np.ndarray, seed: int, deadline: float | None = None
) -> None:
    """Gradient search for the sign each open neuron of layer ``k`` has not shown yet.

    Open: not ``settled`` (a claim is proven) and not both signs in the pool. A cheap round
    (the best pooled point and one random start per neuron, 25 steps), then, for the few
    neurons still open, restarts from random points as far as a fixed budget of arithmetic
    allows (about :data:`SEARCH_FLOPS`): on small networks a neuron that resists the first
    round usually flips within a few dozen restarts, much sooner than a MILP finds it. What
    is found joins the pool (whose margin rule decides what it witnesses). The paths run in
    chunks of :data:`WITNESS_WORK`, none started past ``deadline`` after the first (the points
    found so far join the pool): sound, since fewer witnesses only leave neurons open for the
    later phases, and a neuron left undecided is kept.
    """
    net, box = pool.net, pool.box
    rng = np.random.default_rng([seed, k])
    for rnd in range(2):
        if rnd and deadline is not None and time.perf_counter() >= deadline:
            return
        pos, neg = pool.pos[k] >= 0, pool.neg[k] >= 0
        open_ = np.flatnonzero(~settled & ~(pos & neg))
        if not open_.size or not pool.size:
            return
        signs = np.where(pos[open_], -1, 1)
        if rnd == 0:
            reps, steps = 2, 25
        else:
            steps = 100
            cost = 4.0 * sum(la.weight.size for la in net.layers[: k + 1])
            if cost == 0:  # no weight reaches layer k (emptied layers): its neurons are constants
                return
            reps = min(16, int(SEARCH_FLOPS / (cost * steps * open_.size)))
            if reps < 2:
                return
        starts = [pool.best(k, open_, signs)]
        starts += [box.sample(open_.size, rng) for _ in range(reps - 1)]
        neurons, signs = np.tile(open_, reps), np.tile(signs, reps)
        points = _paths(net, box, k, neurons, signs, np.concatenate(starts), steps, deadline)
        pool.add_until(points, deadline)


def _paths(net, box, k, neurons, signs, starts, steps, deadline) -> np.ndarray:
    """:func:`~exactcomp.search.gradient_points` of every row (best points, then last
    iterates), in chunks of :data:`WITNESS_WORK` (:data:`WITNESS_ROWS` rows at least), none
    started past ``deadline`` after the first: the rows of the chunks run (each row's path
    is its own); one chunk without a deadline."""
    cost = 4.0 * sum(la.weight.size for la in net.layers[: k + 1]) * (steps + 1)
    rows = max(len(neurons), 1)
    if deadline is not None:
        rows = max(WITNESS_ROWS, int(WITNESS_WORK // max(cost, 1.0)))
    best, last = [], []
    for at in range(0, len(neurons), rows):
        if at and deadline is not None and time.perf_counter() >= deadline:
            break
        part = slice(at, at + rows)
        both = gradient_points(net, box, k, neurons[part], signs[part], starts[part], steps)
        best.append(both[: len(both) // 2])
        last.append(both[len(both) // 2 :])
    return np.concatenate(best + last)
