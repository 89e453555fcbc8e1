r"""Bounds of the unstable neurons of earlier layers on one node of a ReLU-split tree.

A node of :mod:`exactcomp.bab.relu` is the part of the box where its split neurons have the
signs it fixed. Its LP starts from the bounds proven on the whole box; a split on a neuron of
layer :math:`j` changes what the neurons of layers :math:`j+1, \dots, k-1` can reach, and
this module bounds them again on the node, by back-substitution (the maths, relaxation and
rounding pad of :func:`exactcomp.bounds.linear.linear_layer_bounds`), with

* each unstable neuron's interval :math:`[l', u']` that of the node: the whole-box bounds,
  intersected with what the node's parent proved, and clipped by the node's own splits
  (:math:`z \ge 0`: :math:`l' = \max(l', 0)`; :math:`z \le 0`: :math:`u' = \min(u', 0)`), so
  that the relaxation of a split neuron is exact (:math:`h = z` or :math:`h = 0`) and that of
  the others the triangle of their node bounds;
* the bound concretised at **every** layer on the way down, not only at the input: the
  linear function of :math:`h_j` reached after substituting layers :math:`m-1..j+1` is
  minimised over the node's interval of :math:`h_j` (:math:`[\mathrm{relu}(l'),
  \mathrm{relu}(u')]`), which keeps the split constraints :math:`z_j \ge 0` /
  :math:`z_j \le 0` that the substitution further down forgets; the tightest of these
  bounds (each sound) is kept;
* the layers in order, each using the node bounds just computed for the earlier ones, and
  the result intersected with the node's interval (never looser).

Soundness: every bound holds for every input of the box whose split neurons have the node's
signs, since each relaxation and each interval used holds there; the float64 rounding is
padded as in :func:`~exactcomp.bounds.linear.linear_layer_bounds`, with the magnitudes of
the whole-box bounds (which enclose the node's). A node whose bounds cross (:math:`l' > u'`
for some neuron) has no input: the caller may close it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..bounds.interval import Bounds, pad
from ..bounds.linear import relu_relaxation
from ..domain import Box
from ..network import Network
from ..tolerances import Tolerances

__all__ = ["NodeBounds"]


class NodeBounds:
    """Node bounds of the unstable ReLUs of layers ``< k`` listed per layer in ``relus``
    (``(layer, neurons)`` pairs, the order of the split vector of
    :class:`~exactcomp.bab.relu_lp.SplitLP`), on the whole-box bounds ``pre`` of layers
    ``0..k-1``."""

    def __init__(
        self,
        net: Network,
        box: Box,
        pre: Sequence[Bounds],
        relus: Sequence[tuple[int, np.ndarray]],
        tol: Tolerances,
    ) -> None:
        self.net, self.tol = net, tol
        self.lo_x = np.asarray(box.lower, dtype=np.float64)
        self.hi_x = np.asarray(box.upper, dtype=np.float64)
        self.mag_x = np.maximum(np.abs(self.lo_x), np.abs(self.hi_x))
        self.layers = [int(j) for j, _ in relus]
        self.neurons = [np.asarray(n, dtype=np.int64) for _, n in relus]
        sizes = [n.size for n in self.neurons]
        self.start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        depth = max(self.layers, default=-1) + 1
        self.pre = [(np.asarray(lo, float), np.asarray(hi, float)) for lo, hi in pre[:depth]]
        self.layer_of = np.repeat(np.asarray(self.layers, dtype=np.int64), sizes)
        self.mag = [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in self.pre]
        self.mag_h = [
            np.maximum(m, 0.0) if net.layers[j].relu else m for j, m in enumerate(self.mag)
        ]
        # |W_j| |h_{j-1}| + |b_j| per neuron of layer j: the magnitude of its affine step
        self.step = [
            np.abs(net.layers[j].weight) @ (self.mag_h[j - 1] if j > 0 else self.mag_x)
            + np.abs(net.layers[j].bias)
            for j in range(depth)
        ]
        self.box_lo = np.concatenate([self.pre[j][0][n] for j, n in relus]) if relus else []
        self.box_hi = np.concatenate([self.pre[j][1][n] for j, n in relus]) if relus else []
        self.box_lo = np.asarray(self.box_lo, dtype=np.float64)
        self.box_hi = np.asarray(self.box_hi, dtype=np.float64)

    def clip(self, split: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """``lo, hi`` (copies) clipped by the splits: ``z >= 0`` raises ``l'`` to 0, ``z <= 0``
        lowers ``u'`` to 0."""
        lo, hi = lo.copy(), hi.copy()
        lo[split > 0] = np.maximum(lo[split > 0], 0.0)
        hi[split < 0] = np.minimum(hi[split < 0], 0.0)
        return lo, hi

    def tighten(
        self, split: np.ndarray, lo: np.ndarray, hi: np.ndarray, after: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The node bounds of the unstable neurons of the layers deeper than ``after`` (the
        shallowest layer whose bounds changed), from ``lo, hi`` (the parent's node bounds,
        already :meth:`clip` -ped by the node's splits); the earlier layers' are kept."""
        lo, hi = lo.copy(), hi.copy()
        for at, m in enumerate(self.layers):
            if m <= after:
                continue
            sl = slice(int(self.start[at]), int(self.start[at + 1]))
            todo = np.flatnonzero((split[sl] == 0) & (lo[sl] < 0.0) & (hi[sl] > 0.0))
            if not todo.size:
                continue
            new_lo, new_hi = self._layer(m, self.neurons[at][todo], lo, hi)
            idx = sl.start + todo
            lo[idx] = np.maximum(lo[idx], new_lo)
            hi[idx] = np.minimum(hi[idx], new_hi)
        return lo, hi

    def _node_pre(self, j: int, lo: np.ndarray, hi: np.ndarray) -> Bounds:
        """Layer ``j``'s pre-activation bounds on the node: the whole-box ones with the
        unstable neurons' node bounds put in."""
        plo, phi = self.pre[j][0].copy(), self.pre[j][1].copy()
        if j in self.layers:
            at = self.layers.index(j)
            sl = slice(int(self.start[at]), int(self.start[at + 1]))
            n = self.neurons[at]
            plo[n], phi[n] = lo[sl], hi[sl]
        return plo, phi

    def _layer(self, m: int, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Bounds:
        """Sound bounds of ``z_m[rows]`` on the node: back-substitution concretised at every
        layer (see the module docstring), padded for rounding."""
        net, tol = self.net, self.tol
        w, b = net.layers[m].weight[rows], net.layers[m].bias[rows]
        a = np.concatenate([w, -w])  # lower bounds of z_m, then of -z_m
        c = np.concatenate([b, -b])
        top = np.abs(w) @ self.mag_h[m - 1] + np.abs(b)
        scale = np.concatenate([top, top])
        best = np.full(a.shape[0], -np.inf)
        with np.errstate(over="ignore", invalid="ignore"):
            for j in range(m - 1, -1, -1):
                lj = net.layers[j]
                plo, phi = self._node_pre(j, lo, hi)
                hlo, hhi = (np.maximum(plo, 0.0), np.maximum(phi, 0.0)) if lj.relu else (plo, phi)
                # concretised on h_j's node interval
                value = np.maximum(a, 0.0) @ hlo + np.minimum(a, 0.0) @ hhi + c
                here = scale + np.abs(a) @ self.mag_h[j] + np.abs(c)
                best = np.maximum(best, value - pad(here, tol))
                alpha, s, t = relu_relaxation(plo, phi, relu=lj.relu)
                ap, an = np.maximum(a, 0.0), np.minimum(a, 0.0)
                scale = scale + np.abs(a) @ (self.mag[j] + np.abs(t))
                c = c + an @ t
                az = ap * alpha + an * s
                scale = scale + np.abs(az) @ self.step[j]
                c = c + az @ lj.bias
                a = az @ lj.weight
            value = np.maximum(a, 0.0) @ self.lo_x + np.minimum(a, 0.0) @ self.hi_x + c
            scale = scale + np.abs(a) @ self.mag_x + np.abs(c)
            best = np.maximum(best, value - pad(scale, tol))
        best = np.where(np.isfinite(best), best, -np.inf)  # overflow: no claim
        n = rows.size
        return best[:n], -best[n:]
