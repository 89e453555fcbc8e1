r"""Optimised linear bounds (alpha/beta-CROWN style) over a batch of ReLU-split nodes.

A question is neuron ``j`` of layer ``k`` and a sign ``s``: prove :math:`s z_{kj} \le 0` on
the box, or find an input where ``s z_kj > 0`` beyond the witness margin. A node fixes the
phase of some unstable ReLUs of layers ``< k`` (``split[i] = +1``: :math:`z_i \ge 0, h_i =
z_i`; ``-1``: :math:`z_i \le 0, h_i = 0`); its region is the inputs of the box whose
neurons have those signs. The whole-box bounds ``l <= z <= u`` the tree starts from
(``known``: LP and ideal cuts) hold on every node.

Maths
-----
On a node, every ReLU of layer ``i < k`` satisfies, with its whole-box bounds:

* stable (``l >= 0``: ``h = z``; ``u <= 0``: ``h = 0``) or split: exact;
* unstable and not split: :math:`\alpha z \le h \le \sigma z + t` with the chord
  :math:`\sigma = u / (u - l),\ t = -\sigma l` and any :math:`\alpha \in [0, 1]`.

An upper bound of :math:`g = a_k^\top h_{k-1} + c` (start: :math:`a = s W_{k,j},\ c = s b_{kj}`)
goes one layer down by replacing each :math:`a_n h_n` by :math:`a_n^+ (\sigma_n z_n + t_n) +
a_n^- \alpha_n z_n` (the exact slope where the ReLU is exact), and then
:math:`z_i = W_i h_{i-1} + b_i`. Split constraints enter with multipliers
:math:`\beta_n \ge 0`: on the node :math:`s_n z_n \ge 0`, so
:math:`g \le g + \sum_n \beta_n s_n z_n` there, and the term joins the coefficient of
:math:`z_n`. At the input :math:`\max_{x \in [lo, hi]} a^\top x + c = a^{+\top} hi +
a^{-\top} lo + c`, reached at :math:`x^* = hi` where ``a > 0`` and ``lo`` elsewhere. So for
**every** :math:`\alpha \in [0,1]^n, \beta \ge 0` the result bounds ``s z_kj`` on the node
(the maximum over an empty region is :math:`-\infty`, any number bounds it).

The multipliers are chosen per node by projected Adam on the sum of the bounds of a batch
(torch on the CPU, imported only when this engine runs, float32: speed only). The bound
*claimed* is evaluated once more in float64 numpy at the chosen (clipped) multipliers, padded
as :mod:`exactcomp.bounds.linear` pads: per row a ``scale`` over-approximates the sum of
the absolute values of every term (``|a| (|z| + |t|)`` and ``beta |z|`` at each ReLU layer,
``|a_z| (|W| |h| + |b|)`` at each affine map, ``|a| |x| + |c|`` at the input) and the bound
gains :func:`~exactcomp.bounds.interval.pad` of it. A node is closed when the padded bound
is ``<= 0``; its ``x*`` is evaluated in float64 with the witness rule of
:func:`exactcomp.search.sign_witnesses`, and a witness ends the question (unstable).

Branch and bound: per question best-first (the worst bound first); each chosen node is split
on the unsplit unstable neuron with the largest ``a^+ t`` (the chord intercept the bound pays
for it, the BaBSR estimate read off the back-substitution), its children start from its
multipliers (a new split's ``beta`` at 0) and are bounded in the next batch together with
those of the other questions. A question not proven within its node budget stays open (its
tree's bound is reported) and goes on to the LP trees of :mod:`exactcomp.bab.relu`.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds, pad
from ..domain import Box
from ..network import Network
from ..search import sign_witnesses
from ..tolerances import DEFAULT, Tolerances
from .split import SplitResult

__all__ = ["BetaModel", "prove_signs_beta", "BATCH", "STEPS", "MAX_NODES_BETA"]

BATCH = 512
"""Nodes bounded together (children of the worst open nodes of every open question)."""
STEPS = 10
"""Projected Adam steps per batch (children start from their parent's multipliers)."""
LR_ALPHA = 0.1
LR_BETA = 0.03
"""Adam step sizes of ``alpha`` and ``beta`` (speed only: any value gives valid bounds)."""
MAX_NODES_BETA = 4000
"""Node budget of one question's tree."""
TOTAL_NODES_BETA = 40_000
"""Node budget of one call (all its questions together)."""
THREADS = 1
"""torch threads while the multipliers are optimised (restored after). On mnist-net_256x6
layer 3 (2 cores, load 3), B = 512 nodes x 20 steps took 0.43 s of CPU on one thread
against 11.9 s on two (the small products of a batch do not pay for a second thread)."""


@dataclass(frozen=True, eq=False)
class _Layer:
    """One layer ``i < k`` of the backward pass: weights, whole-box bounds, masks and the chord
    of its unstable ReLUs (``idx``: their positions, ``off``: where they start in a node's
    split vector, ``doff``: where the layer starts in ``beta``)."""

    w: np.ndarray
    b: np.ndarray
    relu: bool
    lo: np.ndarray
    hi: np.ndarray
    active: np.ndarray  # float mask of the neurons with h = z (stably active, or no ReLU)
    idx: np.ndarray
    off: int
    doff: int
    slope: np.ndarray
    icpt: np.ndarray
    init: np.ndarray  # CROWN's adaptive lower slope, the start of alpha
    mag_z: np.ndarray
    below: np.ndarray  # |W| max|h_{i-1}| + |b|: the magnitude of the affine map's terms


class BetaModel:
    """The backward pass of layer ``k``'s questions over nodes (see the module docstring)."""

    def __init__(self, net: Network, box: Box, k: int, pre: Sequence[Bounds]) -> None:
        self.net, self.k = net, k
        self.xlo = np.asarray(box.lower, np.float64)
        self.xhi = np.asarray(box.upper, np.float64)
        mag_x = np.maximum(np.abs(self.xlo), np.abs(self.xhi))
        layers, off, doff, prev = [], 0, 0, mag_x
        for i in range(k):
            la = net.layers[i]
            lo, hi = (np.asarray(v, np.float64) for v in pre[i])
            w, b = np.asarray(la.weight, np.float64), np.asarray(la.bias, np.float64)
            below = np.abs(w) @ prev + np.abs(b)
            mag_z = np.maximum(np.abs(lo), np.abs(hi))
            if la.relu:
                idx = np.flatnonzero((lo < 0.0) & (hi > 0.0))
                active = (lo >= 0.0).astype(np.float64)
                l_, u_ = lo[idx], hi[idx]
                slope = u_ / (u_ - l_)
                icpt = -slope * l_
                init = (u_ > -l_).astype(np.float64)
                prev = np.maximum(hi, 0.0)
            else:
                idx = np.zeros(0, np.int64)
                active = np.ones_like(lo)
                slope = icpt = init = np.zeros(0)
                prev = mag_z
            layers.append(
                _Layer(
                    w, b, la.relu, lo, hi, active, idx, off, doff, slope, icpt, init, mag_z, below
                )
            )
            off += idx.size
            doff += lo.size
        self.layers, self.size, self.width = layers, off, doff
        self.top_mag = prev  # max |h_{k-1}|
        self.wk = np.asarray(net.layers[k].weight, np.float64)
        self.bk = np.asarray(net.layers[k].bias, np.float64)
        self.init_alpha = (
            np.concatenate([la.init for la in layers]) if off else np.zeros(0, np.float64)
        )
        self._t: list | None = None

    def evaluate(
        self,
        rows: np.ndarray,
        signs: np.ndarray,
        split: np.ndarray,
        alpha: np.ndarray,
        beta: np.ndarray,
        tol: Tolerances,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded float64 bounds ``signs * z_k[rows] <= top`` on each node (``split[B, U]``),
        the inputs ``x*`` that reach the unpadded bound, and the branching scores ``[B, U]``
        (``-1`` where split). ``alpha`` is clipped to ``[0, 1]`` first; ``beta`` (``[B, N]``,
        one per neuron of layers ``< k``) may take any value: every such choice gives a
        sound bound."""
        alpha = np.clip(alpha, 0.0, 1.0)
        beta = np.maximum(beta, 0.0)
        a = signs[:, None] * self.wk[rows]
        c = signs * self.bk[rows]
        scale = np.abs(a) @ self.top_mag + np.abs(c)
        score = np.full(split.shape, -1.0)
        for la in reversed(self.layers):
            dp = beta[:, la.doff : la.doff + la.lo.size]
            dn = beta[:, self.width + la.doff : self.width + la.doff + la.lo.size]
            d = dp - dn
            lo = np.broadcast_to(la.lo, d.shape).copy()
            hi = np.broadcast_to(la.hi, d.shape).copy()
            az = a * la.active
            if la.idx.size:
                sl = slice(la.off, la.off + la.idx.size)
                s, al = split[:, sl], alpha[:, sl]
                au = a[:, la.idx]
                ap, an = np.maximum(au, 0.0), np.minimum(au, 0.0)
                free = s == 0
                up = np.where(s > 0, 1.0, np.where(s < 0, 0.0, la.slope))
                low = np.where(s > 0, 1.0, np.where(s < 0, 0.0, al))
                t = np.where(free, la.icpt, 0.0)
                az[:, la.idx] = ap * up + an * low
                c = c + (ap * t).sum(1)
                scale = scale + (ap * t).sum(1)
                score[:, sl] = np.where(free, ap * la.icpt + 1e-6 * np.abs(au), -1.0)
                lo[:, la.idx] = np.where(s > 0, 0.0, lo[:, la.idx])
                hi[:, la.idx] = np.where(s < 0, 0.0, hi[:, la.idx])
            # the bound rows, on the node: dp (z - l) >= 0 and dn (u - z) >= 0
            az = az + d
            c = c - (dp * lo).sum(1) + (dn * hi).sum(1)
            scale = scale + np.abs(a) @ la.mag_z + 2.0 * ((dp + dn) @ la.mag_z)
            scale = scale + np.abs(az) @ la.below
            c = c + az @ la.b
            a = az @ la.w
        value = np.maximum(a, 0.0) @ self.xhi + np.minimum(a, 0.0) @ self.xlo + c
        scale = scale + np.abs(a) @ np.maximum(np.abs(self.xlo), np.abs(self.xhi)) + np.abs(c)
        x = np.where(a > 0.0, self.xhi, self.xlo)
        top = value + pad(scale, tol)
        return np.where(np.isfinite(top), top, np.inf), x, score

    def optimise(
        self,
        rows: np.ndarray,
        signs: np.ndarray,
        split: np.ndarray,
        alpha: np.ndarray,
        beta: np.ndarray,
        steps: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``alpha, beta`` after ``steps`` of projected Adam on the sum of the nodes' bounds
        (float32 torch; the best multipliers seen per node are returned)."""
        if steps <= 0:
            return alpha, beta
        import torch  # only when this engine runs

        threads = torch.get_num_threads()
        torch.set_num_threads(THREADS)
        try:
            return self._optimise(torch, rows, signs, split, alpha, beta, steps)
        finally:
            torch.set_num_threads(threads)

    def _optimise(self, torch, rows, signs, split, alpha, beta, steps):

        f = torch.float32
        if self._t is None:
            self._t = [
                tuple(
                    torch.tensor(v, dtype=f)
                    for v in (la.w, la.b, la.active, la.slope, la.icpt, la.lo, la.hi)
                )
                + (torch.as_tensor(la.idx),)
                for la in self.layers
            ]
            self._tx = (torch.tensor(self.xlo, dtype=f), torch.tensor(self.xhi, dtype=f))
        sp = torch.as_tensor(split, dtype=f)
        al = torch.tensor(alpha, dtype=f, requires_grad=True)
        be = torch.tensor(beta, dtype=f, requires_grad=True)
        opt = torch.optim.Adam([{"params": [al], "lr": LR_ALPHA}, {"params": [be], "lr": LR_BETA}])
        a0 = torch.as_tensor(signs[:, None] * self.wk[rows], dtype=f)
        c0 = torch.as_tensor(signs * self.bk[rows], dtype=f)
        best = torch.full((split.shape[0],), float("inf"))
        best_al, best_be = al.detach().clone(), be.detach().clone()
        for step in range(steps + 1):
            a, c = a0, c0
            for la, (w, b, act, slope, icpt, lo, hi, idx) in zip(
                reversed(self.layers), reversed(self._t), strict=True
            ):
                dp = be[:, la.doff : la.doff + la.lo.size]
                dn = be[:, self.width + la.doff : self.width + la.doff + la.lo.size]
                c = c - dp @ lo + dn @ hi
                az = a * act + dp - dn
                if la.idx.size:
                    sl = slice(la.off, la.off + la.idx.size)
                    s = sp[:, sl]
                    au = a[:, idx]
                    ap, an = au.clamp(min=0.0), au.clamp(max=0.0)
                    free = (s == 0).to(f)
                    pos, neg = (s > 0).to(f), (s < 0).to(f)
                    c = c + (ap * free * icpt).sum(1)
                    # the split clips the node bounds: l = 0 on z >= 0, u = 0 on z <= 0
                    c = (
                        c
                        + (dp[:, idx] * lo[idx] * pos).sum(1)
                        - (dn[:, idx] * hi[idx] * neg).sum(1)
                    )
                    azu = ap * (pos + free * slope) + an * (pos + free * al[:, sl])
                    az = az.index_add(1, idx, azu)
                c = c + az @ b
                a = az @ w
            xlo, xhi = self._tx
            val = a.clamp(min=0.0) @ xhi + a.clamp(max=0.0) @ xlo + c
            with torch.no_grad():
                better = val < best
                best = torch.where(better, val, best)
                best_al[better] = al[better]
                best_be[better] = be[better]
            if step == steps:
                break
            opt.zero_grad()
            val.sum().backward()
            opt.step()
            with torch.no_grad():
                al.clamp_(0.0, 1.0)
                be.clamp_(min=0.0)
        return best_al.double().numpy(), best_be.double().numpy()


@dataclass(eq=False)
class _Question:
    """One question's tree: open nodes ``(-top, id, split, alpha, beta, score)`` in a heap."""

    index: int
    j: int
    sign: int
    open: list
    nodes: int = 0
    state: str = "open"  # "open", "proven", "refuted", "stuck"

    def bound(self) -> float:
        return max([0.0, *(-item[0] for item in self.open)])


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
) -> SplitResult:
    """Prove ``max z_kj <= 0`` / ``min z_kj >= 0`` for each ``j`` in ``neurons`` by branch and
    bound over ReLU splits with optimised linear bounds (module docstring).

    Same parameters and result as :func:`exactcomp.bab.relu.prove_signs_relu` (``sides``:
    ``+1`` only ``max z <= 0``, ``-1`` only ``min z >= 0``, ``0`` both); ``nodes`` counts the
    nodes bounded; ``lower``/``upper`` are the bounds of the trees left open. ``None``:
    :data:`MAX_NODES_BETA`, :data:`TOTAL_NODES_BETA`, :data:`BATCH`, :data:`STEPS`.
    """
    from ..bounds.linear import all_finite, finite_prefix_bounds

    max_nodes = MAX_NODES_BETA if max_nodes is None else max_nodes
    total_nodes = TOTAL_NODES_BETA if total_nodes is None else total_nodes
    batch = BATCH if batch is None else batch
    steps = STEPS if steps is None else steps

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
    qs = [
        _Question(i, j, s, [])
        for i, j in enumerate(neurons.tolist())
        for s in {0: (1, -1), 1: (1,), -1: (-1,)}[int(np.sign(sides[i]))]
    ]
    u = model.size
    root = (np.zeros(u, np.int8), model.init_alpha.copy(), np.zeros(2 * model.width))
    work: list[tuple[_Question, tuple]] = [(q, root) for q in qs]
    points: list[np.ndarray] = []
    nodes, count = 0, 0
    while work:
        for at in range(0, len(work), batch):
            chunk = work[at : at + batch]
            got = _bound(model, chunk, tol, steps)
            nodes += len(chunk)
            found = sign_witnesses(net, k, got[1], tol)
            for (q, (split, _, _)), top, _x, score, al, be in zip(chunk, *got, strict=True):
                q.nodes += 1
                if q.state != "open":
                    continue
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
                (inactive if q.sign > 0 else active)[q.index] = True
        done = inactive | active
        work = []
        live = [q for q in qs if q.state == "open" and not done[q.index]]
        if not live or nodes >= total_nodes:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            break
        share = max(1, (batch // 2) // len(live))
        for q in live:
            for _ in range(min(share, len(q.open))):
                if q.nodes + 2 > max_nodes or nodes + 2 * (len(work) // 2 + 1) > total_nodes:
                    break
                item = heapq.heappop(q.open)
                _, _, split, al, be, score = item
                i = int(np.argmax(score)) if score.size else -1
                if i < 0 or score[i] <= 0.0:
                    heapq.heappush(q.open, item)
                    q.state = "stuck"
                    break
                for s in (1, -1):
                    child = split.copy()
                    child[i] = s
                    work.append((q, (child, al, be)))
        if not work:
            break
    for q in qs:
        if q.state in ("open", "stuck"):
            if q.sign > 0:
                upper[q.index] = min(upper[q.index], q.bound())
            else:
                lower[q.index] = max(lower[q.index], -q.bound())
    both = inactive & active
    inactive &= ~both
    active &= ~both
    complete = all(q.state in ("proven", "refuted") for q in qs)
    pts = np.concatenate(points) if points else none
    seconds = time.perf_counter() - t0
    return SplitResult(neurons, inactive, active, pts, nodes, complete, seconds, lower, upper)


def _bound(model: BetaModel, chunk, tol: Tolerances, steps: int):
    """Optimise and evaluate (float64, padded) one batch of ``(question, node)`` pairs."""
    rows = np.array([q.j for q, _ in chunk], np.int64)
    signs = np.array([q.sign for q, _ in chunk], np.float64)
    split = np.stack([n[0] for _, n in chunk])
    alpha = np.stack([n[1] for _, n in chunk])
    beta = np.stack([n[2] for _, n in chunk])
    alpha, beta = model.optimise(rows, signs, split, alpha, beta, steps)
    top, x, score = model.evaluate(rows, signs, split, alpha, beta, tol)
    return top, x, score, alpha, beta


def batched_first(
    lp_search,
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    tol: Tolerances,
    max_nodes: int,
    total_nodes: int,
    deadline: float | None,
) -> SplitResult:
    """:func:`prove_signs_beta` on the questions, then ``lp_search`` (the LP trees of
    :mod:`exactcomp.bab.relu`, same signature) on the signs it neither proved nor refuted
    by a witness; the claims, points and tree bounds of both, merged (each is sound alone)."""
    t0 = time.perf_counter()
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    first = prove_signs_beta(net, box, k, known, neurons, sides, tol=tol, deadline=deadline)
    seen = sign_witnesses(net, k, first.points, tol)
    pos_open = (np.sign(sides) >= 0) & (seen.pos[neurons] < 0)
    neg_open = (np.sign(sides) <= 0) & (seen.neg[neurons] < 0)
    rest = ~(first.inactive | first.active) & (pos_open | neg_open)
    sub = np.flatnonzero(rest)
    new_sides = np.where(pos_open & neg_open, 0, np.where(pos_open, 1, -1))[sub]
    second = lp_search(
        net,
        box,
        k,
        known,
        neurons[sub],
        new_sides,
        tol=tol,
        max_nodes=max_nodes,
        total_nodes=total_nodes,
        deadline=deadline,
    )
    inactive, active = first.inactive.copy(), first.active.copy()
    inactive[sub] |= second.inactive
    active[sub] |= second.active
    lower = first.lower.copy() if first.lower is not None else np.full(neurons.size, -np.inf)
    upper = first.upper.copy() if first.upper is not None else np.full(neurons.size, np.inf)
    if second.lower is not None and second.upper is not None:
        lower[sub] = np.maximum(lower[sub], second.lower)
        upper[sub] = np.minimum(upper[sub], second.upper)
    points = np.concatenate([first.points, second.points])
    nodes = first.nodes + second.nodes
    seconds = time.perf_counter() - t0
    complete = second.complete
    return SplitResult(neurons, inactive, active, points, nodes, complete, seconds, lower, upper)
