r"""Input splitting over differential bounds: prove ``max |g - f| <= tol`` for two *different*
networks of the same architecture (quantised, perturbed or fine-tuned copies).

Bounding ``f`` and ``g`` separately and subtracting loses everything: on a deep network each
side's range is wide, and their difference is tiny. Instead, the difference of each pair of
neurons (neuron ``j`` of layer ``k`` in ``f`` with neuron ``j`` of layer ``k`` in ``g``) is
bounded *directly*, by linear functions of the input (the approach of ReluDiff and NeuroDiff,
Paulsen et al. 2020; the maths is in :mod:`exactcomp.verify.symbolic`), and the input box is
split until every piece is proven or a concrete input exceeds the tolerance.

**Splitting.** A box is *proven* when :math:`-\underline{d}_i \le \tau` and
:math:`\overline{d}_i \le \tau` for every compared output ``i``. Open boxes are split in half,
worst bound first, along the dimension ``j`` maximising :math:`w_j \sum_n |c_{nj}| / (u_n -
l_n)` over the neurons ``n`` unstable in ``f`` (or else in ``g``), ``c_n`` the gradient of its
forms and ``w`` the box widths: the share of the neurons' ranges that each input accounts for
(ties, e.g. no unstable neuron, go by the smear :math:`|c_j| w_j` of the worst output bound).
Splitting by the smear of the output bound alone, or along the widest side, did not prove ACAS
Xu 2_2's float16 copy at tol 0.05 within 15,000 to 48,000 boxes (this rule: 4,073): the
difference is loose because neurons are unstable, not because the output depends on an input.
A child box keeps its parent's bound where its own is looser (both hold on it), and its
parent's bounds of every hidden neuron and difference (``DifferenceBounds.inner``). The centre and
the worst corner of each box are evaluated in float64; the caller re-checks the best ones as
counterexamples. Proven upper bound: the largest bound over all leaves, open or proven.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..domain import Box
from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from .pairs import Pair, comparable, paired
from .symbolic import difference_bounds

__all__ = ["SplitOutcome", "comparable", "paired", "split_verify"]

BATCH = 1024  # at most this many boxes are split per step (their children are bounded together)
ELEMENTS = 12_000_000  # ... and fewer on wide networks: about this many floats per work array
INHERITED = 50_000_000  # open leaves keep their hidden bounds while they take fewer floats
GAP_START = 8.0  # tightest: the first phase closes leaves within this factor of the lower bound
GAP_END = 1.05  # ... each next phase within the square root of the last, down to this factor


@dataclass(frozen=True)
class SplitOutcome:
    """What input splitting established on a box.

    ``bounds[(i, s)]`` is a proven upper bound on ``s (f_i - g_i)`` over the whole box (the
    objectives of :mod:`exactcomp.verify.equivalence`); ``proven`` says every one is ``<= tol``.
    ``x`` holds the inputs with the largest float64 difference seen (best first), for the
    caller to re-check as counterexamples; ``lower`` is that difference. ``nodes`` counts the
    boxes bounded, ``splits`` the boxes split, ``open`` the leaves left unproven.
    """

    bounds: dict[tuple[int, float], float]
    proven: bool
    x: np.ndarray
    lower: float
    nodes: int
    splits: int
    open: int
    reason: str


def split_verify(
    f: Network,
    g: Network,
    box: Box,
    outputs: Sequence[int],
    tol: float,
    deadline: float,
    max_nodes: int = 2_000_000,
    tolerances: Tolerances = DEFAULT,
    *,
    tightest: bool = False,
) -> SplitOutcome:
    """Bound ``max_x s (f_i(x) - g_i(x))`` for every ``i`` in ``outputs`` by input splitting.

    Stops when every leaf is proven ``<= tol``, when a float64 difference above ``tol`` is seen
    (the points are returned for re-checking), or at ``deadline`` (``time.perf_counter``) or
    ``max_nodes`` boxes bounded. Requires :func:`comparable` networks.

    ``tightest=True`` asks for the smallest bound instead of a decision about ``tol``: a
    difference above ``tol`` does not stop the search, and a leaf is closed once its bound is
    at most the larger of ``tol`` and the largest float64 difference seen so far (it can no
    longer lower the answer by more than the gap between the two bounds). The others are split
    worst first until none is left (``proven``: the bound is then within that gap) or the
    deadline; the bounds returned are the largest over all leaves, open or closed, finite. With
    ``tol = 0`` this is how a lossy change is charged when no tolerance is given (a search
    aimed at ``0`` stops on the first sampled difference, with nothing proven).
    """
    outputs = list(outputs)
    m = len(outputs)
    pair = Pair.prepare(f, g, box, outputs, tolerances)
    widest = max(layer.out_features for layer in f.layers)
    batch = int(np.clip(ELEMENTS // (4 * widest * (widest + box.dim + 1)), 8, BATCH))
    closed = np.full((m, 2), -np.inf)  # max over proven leaves
    hidden = sum(4 * layer.out_features for layer in f.layers[:-1])
    pool = _Pool(box.dim, m, hidden)  # the open leaves
    # tightest: the closed leaves, kept to be reopened when the closing gap narrows
    shut = _Shelf()
    gap = GAP_START if tightest else 1.0
    best_d, best_x = 0.0, box.center[None, :]
    nodes = splits = 0

    def bound(lo, hi, parent, known):
        b = difference_bounds(pair, lo, hi, known)
        w = np.minimum(np.stack([-b.lo, b.hi], axis=2), parent)  # (N, m, 2)
        flat = w.reshape(len(lo), -1)
        arg = flat.argmax(axis=1)
        rows = np.arange(len(lo))
        i_out, side = np.divmod(arg, 2)
        coef = np.where((side == 1)[:, None], b.hi_e[rows, :-1, i_out], -b.lo_e[rows, :-1, i_out])
        score = b.unstable + 1e-9 * np.abs(coef)  # per input, times the width: the split rule
        return w, flat[rows, arg], coef, score, b.inner

    lo, hi = box.lower[None, :].copy(), box.upper[None, :].copy()
    w, key, coef, score, inner = bound(lo, hi, np.full((1, m, 2), np.inf), None)
    nodes += 1
    while True:
        # concrete points: each centre and the corner maximising the worst bound
        pts = np.concatenate([(lo + hi) / 2, np.where(coef > 0, hi, lo)])
        diff = np.abs(f.forward(pts)[:, outputs] - g.forward(pts)[:, outputs]).max(axis=1)
        if diff.max() > best_d:
            best_d, best_x = float(diff.max()), pts[np.argsort(-diff)[:8]]
        if best_d > tol and not tightest:
            inf = np.full((m, 2), np.inf)
            return _outcome(
                outputs,
                inf,
                False,
                best_x,
                best_d,
                nodes,
                splits,
                pool.size + len(lo),
                "a sampled input exceeds tol",
            )
        done = key <= (max(tol, gap * best_d) if tightest else tol)
        if done.any():
            closed = np.maximum(closed, w[done].max(axis=0))
            if tightest:
                shut.add(lo[done], hi[done], w[done], score[done], key[done], inner[done])
        pool.add(lo[~done], hi[~done], w[~done], score[~done], key[~done], inner[~done])
        while pool.size == 0 and gap > GAP_END and gap * best_d > tol:
            gap = max(GAP_END, float(np.sqrt(gap)))  # the next, tighter phase
            closed = shut.reopen(max(tol, gap * best_d), pool)
        if pool.size == 0:
            why = "every box within tol or the difference seen" if tightest else "every box proven"
            return _outcome(outputs, closed, True, best_x, best_d, nodes, splits, 0, why)
        if time.perf_counter() > deadline or nodes >= max_nodes:
            upper = np.maximum(closed, pool.w.max(axis=0))
            why = "time limit" if nodes < max_nodes else "node limit"
            return _outcome(outputs, upper, False, best_x, best_d, nodes, splits, pool.size, why)
        plo, phi, pw, pscore, pinner = pool.take(batch)
        splits += len(plo)
        width = phi - plo
        dim = (pscore * width + 1e-12 * width).argmax(axis=1)
        lo, hi, parent = _halves(plo, phi, pw, dim)
        known = np.repeat(pinner, 2, axis=0) if pinner.shape[1] else None
        w, key, coef, score, inner = bound(lo, hi, parent, known)
        nodes += len(lo)


def _halves(lo, hi, w, dim):
    """The two halves of each box along its ``dim`` (rows ``2 b`` and ``2 b + 1``), each
    inheriting its parent's bounds ``w``."""
    r = np.arange(len(lo))
    mid = (lo[r, dim] + hi[r, dim]) / 2
    left_hi, right_lo = hi.copy(), lo.copy()
    left_hi[r, dim] = mid
    right_lo[r, dim] = mid
    out_lo = np.stack([lo, right_lo], axis=1).reshape(2 * len(lo), -1)
    out_hi = np.stack([left_hi, hi], axis=1).reshape(2 * len(lo), -1)
    return out_lo, out_hi, np.repeat(w, 2, axis=0)


class _Pool:
    """The open leaves: boxes, their bounds (N, m, 2), worst-bound scoreficients and keys."""

    def __init__(self, d: int, m: int, h: int) -> None:
        self.lo, self.hi = np.zeros((0, d)), np.zeros((0, d))
        self.inner = np.zeros((0, h))
        self.w, self.score, self.key = np.zeros((0, m, 2)), np.zeros((0, d)), np.zeros(0)

    @property
    def size(self) -> int:
        return len(self.key)

    def add(self, lo, hi, w, score, key, inner) -> None:
        if self.inner.shape[1] and (self.size + len(lo)) * self.inner.shape[1] > INHERITED:
            self.inner = np.zeros((self.size, 0))  # too many leaves: children start afresh
        if inner.shape[1] < self.inner.shape[1]:  # reopened leaves that kept none
            self.inner = np.zeros((self.size, 0))
        self.inner = np.concatenate([self.inner, inner[:, : self.inner.shape[1]]])
        self.lo, self.hi = np.concatenate([self.lo, lo]), np.concatenate([self.hi, hi])
        self.w, self.score = np.concatenate([self.w, w]), np.concatenate([self.score, score])
        self.key = np.concatenate([self.key, key])

    def take(self, n: int):
        """Remove and return the ``n`` boxes with the largest keys (all when fewer)."""
        if self.size <= n:
            idx = np.arange(self.size)
        else:
            idx = np.argpartition(-self.key, n)[:n]
        keep = np.ones(self.size, dtype=bool)
        keep[idx] = False
        out = self.lo[idx], self.hi[idx], self.w[idx], self.score[idx], self.inner[idx]
        self.lo, self.hi, self.w = self.lo[keep], self.hi[keep], self.w[keep]
        self.inner = self.inner[keep]
        self.score, self.key = self.score[keep], self.key[keep]
        return out


class _Shelf:
    """The closed leaves of a ``tightest`` search, in chunks (as :meth:`_Pool.add` takes them:
    no copying per step), until a narrower gap reopens those above it."""

    def __init__(self) -> None:
        self.chunks: list[tuple] = []
        self.floats = 0  # held in hidden bounds; past INHERITED, none are kept

    def add(self, lo, hi, w, score, key, inner) -> None:
        self.floats += inner.size
        if self.floats > INHERITED:  # reopened leaves will start afresh (looser, sound)
            self.chunks = [(*c[:5], c[5][:, :0]) for c in self.chunks]
            inner = inner[:, :0]
        self.chunks.append((lo, hi, w, score, key, inner))

    def reopen(self, key: float, pool: _Pool) -> np.ndarray:
        """Move the leaves whose key exceeds ``key`` into ``pool``; the largest bounds (m, 2)
        of those left (``-inf`` when none)."""
        lo, hi, w, score, keys, inner = (np.concatenate(a) for a in zip(*self.chunks, strict=True))
        up = keys > key
        pool.add(lo[up], hi[up], w[up], score[up], keys[up], inner[up])
        self.chunks = [tuple(a[~up] for a in (lo, hi, w, score, keys, inner))]
        return w[~up].max(axis=0, initial=-np.inf)


def _outcome(outputs, upper, proven, x, lower, nodes, splits, open_, reason) -> SplitOutcome:
    bounds = {
        (i, s): float(upper[n, 0 if s > 0 else 1])
        for n, i in enumerate(outputs)
        for s in (1.0, -1.0)
    }
    return SplitOutcome(bounds, proven, x, lower, nodes, splits, open_, reason)
