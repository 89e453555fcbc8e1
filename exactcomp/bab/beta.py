r"""Optimised linear bounds (alpha/beta-CROWN style) of ReLU-split nodes, a batch at once.

A question is neuron ``j`` of layer ``k`` and a sign ``s``: prove :math:`s z_{kj} \le 0` on
the box, or find an input where ``s z_kj > 0`` beyond the witness margin. A node fixes the
phase of some unstable ReLUs of layers ``< k`` (``split[i] = +1``: :math:`z_i \ge 0, h_i =
z_i`; ``-1``: :math:`z_i \le 0, h_i = 0`); its region is the inputs of the box whose
neurons have those signs. The whole-box bounds ``l <= z <= u`` the tree starts from
(``known``: LP and ideal cuts) hold on every node, and on a node they are clipped by its
splits (``l = 0`` on ``z >= 0``, ``u = 0`` on ``z <= 0``). The tree is
:mod:`exactcomp.bab.beta_tree`.

Maths
-----
On a node, every ReLU of layer ``i < k`` satisfies, with those bounds:

* stable (``l >= 0``: ``h = z``; ``u <= 0``: ``h = 0``) or split: exact;
* unstable and not split: :math:`\alpha z \le h \le \sigma z + t` with the chord
  :math:`\sigma = u / (u - l),\ t = -\sigma l` and any :math:`\alpha \in [0, 1]`;
* every neuron of every layer ``i < k``: :math:`\mu_n (z_n - l_n) \ge 0` and
  :math:`\nu_n (u_n - z_n) \ge 0` for any :math:`\mu_n, \nu_n \ge 0` (``beta``, ``[B, 2N]``:
  the ``mu`` of the ``N`` neurons, then the ``nu``). With the clipped bounds of a split
  neuron, :math:`\mu_n z_n \ge 0` on ``z >= 0`` (``\nu_n (-z_n) \ge 0`` on ``z <= 0``) is
  beta-CROWN's split multiplier; on the other neurons these are the multipliers of the LP's
  column bounds, without which optimised back-substitution stays far above the triangle LP
  (on mnist-net_256x6 layer 3, the roots of the 40 questions: median 1.83 times the LP's
  bound with CROWN's slopes, 1.62 with ``alpha`` optimised alone, 1.00 with both);
* an ideal cut of an unstable neuron ``n`` of layer ``j`` (:mod:`exactcomp.bounds.ideal_cuts`,
  as the LP trees separate them), :math:`h_n \le w^\top h_{j-1} + C a_n + d` with the phase
  :math:`a_n \in \{0, 1\}` of the network point, gets a multiplier :math:`\lambda \ge 0`
  (:meth:`BetaModel.with_cuts`, at the end of ``beta``): :math:`-\lambda` joins the coefficient
  of :math:`h_n`, :math:`\lambda w` that of :math:`h_{j-1}`, and :math:`\lambda (C a_n + d)`
  the constant with :math:`a_n` maximised over :math:`[0, 1]` (1 on a node with
  :math:`z_n \ge 0`, 0 with :math:`z_n \le 0`).

An upper bound of :math:`g = a^\top h_{k-1} + c` (start: :math:`a = s W_{k,j},\ c = s b_{kj}`)
goes one layer down by replacing each :math:`a_n h_n` by :math:`a_n^+ (\sigma_n z_n + t_n) +
a_n^- \alpha_n z_n` (the exact slope where the ReLU is exact) and adding
:math:`\mu_n (z_n - l_n) + \nu_n (u_n - z_n)` (non-negative on the node), then
:math:`z_i = W_i h_{i-1} + b_i`. At the input :math:`\max_{x \in [lo, hi]} a^\top x + c =
a^{+\top} hi + a^{-\top} lo + c`, reached at :math:`x^* = hi` where ``a > 0`` and ``lo``
elsewhere. So for **every** :math:`\alpha \in [0,1], \mu, \nu \ge 0` the result bounds
``s z_kj`` on the node (the maximum over an empty region is :math:`-\infty`, any number
bounds it); the best choice is the dual optimum of the node's triangle LP.

The multipliers are chosen per node by projected Adam on the sum of the bounds of a batch
(torch on the CPU, imported only when this engine runs, float32, one thread: speed only;
the best multipliers seen per node are kept). The bound *claimed* is evaluated once more in
float64 numpy at the chosen multipliers (clipped to their ranges), padded as
:mod:`exactcomp.bounds.linear` pads: per row a ``scale`` over-approximates the sum of the
absolute values of every term (``|a| (|z| + |t|)`` and ``2 (mu + nu) |z|`` at each ReLU
layer, ``2 lambda (|h_n| + |w| |h_{j-1}| + |C| + |d|)`` per cut, ``|a_z| (|W| |h| + |b|)`` at each affine map, ``|a| |x| + |c|`` at the input) and the
bound gains :func:`~exactcomp.bounds.interval.pad` of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds, pad
from ..domain import Box
from ..network import Network
from ..tolerances import Tolerances

__all__ = ["BetaModel", "LR_ALPHA", "LR_BETA", "THREADS"]

LR_ALPHA = 0.1
LR_BETA = 0.03
"""Adam step sizes of ``alpha`` and ``beta`` (speed only: any value gives valid bounds)."""
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
        self.cuts: dict[int, tuple[np.ndarray, ...]] = {}
        self.ncuts = 0

    @property
    def nbeta(self) -> int:
        """Length of a node's ``beta``: ``mu`` and ``nu`` of every neuron, then one
        multiplier per cut (:meth:`with_cuts`)."""
        return 2 * self.width + self.ncuts

    def with_cuts(self, cuts: Sequence[tuple[int, int, np.ndarray, float, float]]) -> None:
        """Take the ideal cuts ``h_{j,n} <= w . h_{j-1} + big a_n + const`` (``(j, n, w, big,
        const)``, ``w`` dense over layer ``j``'s inputs, ``a_n`` the phase of the unstable
        neuron ``n``), each with a multiplier ``>= 0`` at the end of ``beta``."""
        by: dict[int, list] = {}
        for cut in cuts:
            by.setdefault(int(cut[0]), []).append(cut)
        at = 2 * self.width
        for j, rows in sorted(by.items()):
            la = self.layers[j]
            where = {int(n): i for i, n in enumerate(la.idx)}
            target = np.array([int(r[1]) for r in rows])
            pos = np.array([la.off + where[int(r[1])] for r in rows])
            one = np.zeros((len(rows), la.lo.size))
            one[np.arange(len(rows)), target] = 1.0
            w = np.stack([np.asarray(r[2], np.float64) for r in rows])
            big = np.array([float(r[3]) for r in rows])
            const = np.array([float(r[4]) for r in rows])
            mag_in = self._mag_in(j)
            scale = 2.0 * (la.mag_z[target] + np.abs(w) @ mag_in + np.abs(big) + np.abs(const))
            self.cuts[j] = (one, pos, w, big, const, scale, np.array([at, at + len(rows)]))
            at += len(rows)
        self.ncuts = at - 2 * self.width
        self._t = None

    def _mag_in(self, j: int) -> np.ndarray:
        """``max |h_{j-1}|`` (the box's ``max |x|`` for ``j = 0``)."""
        if j == 0:
            return np.maximum(np.abs(self.xlo), np.abs(self.xhi))
        la = self.layers[j - 1]
        return np.maximum(la.hi, 0.0) if la.relu else la.mag_z

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
        for j in range(len(self.layers) - 1, -1, -1):
            la = self.layers[j]
            cut = self.cuts.get(j)
            if cut is not None:  # mu (w . h_{j-1} + big a + const - h_n) >= 0, a maximised
                one, pos, cw, big, const, cscale, span = cut
                mu = beta[:, span[0] : span[1]]
                a = a - mu @ one
                s_c = split[:, pos]
                term = mu * big
                c = (
                    c
                    + mu @ const
                    + np.where(s_c > 0, term, np.where(s_c < 0, 0.0, np.maximum(term, 0.0))).sum(1)
                )
                scale = scale + mu @ cscale
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
            if cut is not None:
                a = a + mu @ cw
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
            self._tc = {
                j: tuple(torch.tensor(v, dtype=f) for v in (one, cw, big, const))
                + (torch.as_tensor(pos), span)
                for j, (one, pos, cw, big, const, _, span) in self.cuts.items()
            }
            self._tx = (torch.tensor(self.xlo, dtype=f), torch.tensor(self.xhi, dtype=f))
        sp = torch.as_tensor(split, dtype=f)
        al = torch.tensor(alpha, dtype=f, requires_grad=True)
        be = torch.tensor(beta, dtype=f, requires_grad=True)
        adam = _Adam(torch, ((al, LR_ALPHA), (be, LR_BETA)))
        a0 = torch.as_tensor(signs[:, None] * self.wk[rows], dtype=f)
        c0 = torch.as_tensor(signs * self.bk[rows], dtype=f)
        best = torch.full((split.shape[0],), float("inf"))
        best_al, best_be = al.detach().clone(), be.detach().clone()
        for step in range(steps + 1):
            a, c = a0, c0
            for j in range(len(self.layers) - 1, -1, -1):
                la = self.layers[j]
                w, b, act, slope, icpt, lo, hi, idx = self._t[j]
                cut = self._tc.get(j)
                if cut is not None:
                    one, cw, big, const, cpos, span = cut
                    mu = be[:, span[0] : span[1]]
                    a = a - mu @ one
                    s_c = sp[:, cpos]
                    term = mu * big
                    term = (s_c > 0).to(f) * term + (s_c == 0).to(f) * term.clamp(min=0.0)
                    c = c + mu @ const + term.sum(1)
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
                if cut is not None:
                    a = a + mu @ cw
            xlo, xhi = self._tx
            val = a.clamp(min=0.0) @ xhi + a.clamp(max=0.0) @ xlo + c
            with torch.no_grad():
                better = val < best
                best = torch.where(better, val, best)
                best_al[better] = al[better]
                best_be[better] = be[better]
            if step == steps:
                break
            val.sum().backward()
            adam.step()
            with torch.no_grad():
                al.clamp_(0.0, 1.0)
                be.clamp_(min=0.0)
        return best_al.double().numpy(), best_be.double().numpy()


class _Adam:
    """``torch.optim.Adam``'s update (betas 0.9 and 0.999, eps 1e-8, the same operations in the
    same order as its single-tensor path on the CPU), written out because importing
    ``torch.optim`` imports ``torch._dynamo``: 1.5 s of CPU per process on this machine."""

    def __init__(self, torch, groups):
        self.torch, self.groups, self.t = torch, groups, 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in groups]

    def step(self) -> None:
        """One update from the gradients in ``.grad``, which it then clears."""
        self.t += 1
        b1, b2 = 1 - 0.9**self.t, (1 - 0.999**self.t) ** 0.5
        with self.torch.no_grad():
            for (p, lr), (m, v) in zip(self.groups, self.moments, strict=True):
                g = p.grad
                if g is None:  # no path to the bound: torch's Adam skips it too
                    continue
                m.lerp_(g, 1 - 0.9)
                v.mul_(0.999).addcmul_(g, g, value=1 - 0.999)
                p.addcdiv_(m, (v.sqrt() / b2).add_(1e-8), value=-lr / b1)
                p.grad = None
