r"""Linear-relaxation (CROWN-style) bounds of one layer on many boxes at once.

The same back-substitution as :func:`exactcomp.bounds.linear.linear_layer_bounds` (the maths,
the relaxation and the rounding pad are documented there), vectorised over a batch of ``N``
boxes: the coefficient matrices get a leading box axis, and each substitution through a layer is
one matrix product of shape ``(N * 2 n_k, n_j) @ (n_j, n_{j-1})``. Used by input splitting
(:mod:`exactcomp.verify.splitting`), which bounds thousands of small boxes per step.

The rounding pad uses ``mag_x``, a bound on ``|x|`` valid on every box of the batch (the root
box's), and the magnitudes of the earlier layers' (padded) bounds, as in the one-box version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..network import Network
from ..tolerances import Tolerances
from .interval import pad
from .linear import relu_relaxation

Batch = tuple[np.ndarray, np.ndarray]  # (lower, upper), each of shape (N, n)


def static_pad(
    net: Network,
    k: int,
    root: Sequence[tuple[np.ndarray, np.ndarray]],
    mag_x: np.ndarray,
    tol: Tolerances,
) -> np.ndarray:
    """The rounding pad of :func:`batched_layer_bounds` for layer ``k``, valid for every box.

    The one-box version accumulates, per step, ``|A|`` times the magnitudes of the variables
    and constants. Here the same sums are bounded independently of the box: ``root[j]`` are
    sound bounds of ``z_j`` on the root box, and each box's bounds are intersected with them
    (the caller's duty), so their magnitudes bound every box's, a neuron inactive on the root
    box has slopes 0 on every box, and the others slopes in ``[0, 1]``; so
    ``|A_j| <= |W_k| D_{k-1} |W_{k-1}| ... D_j |W_j|`` elementwise (``D`` the 0/1 masks), the
    offsets ``|t| = |s l| <= |l|``, and the constant term is a sum of terms already counted.
    Returns the pad of each row of the back-substitution (lower bounds, then upper bounds).
    The sum is ``2 (|W_k| m_{k-1} + |b_k| + sum_j A_j v_j) + A_0 |W_0| m_x`` with
    ``A_j = |W_k| D_{k-1} |W_{k-1}| ... |W_{j+1}| D_j`` and ``v_j = 2 m_j + |W_j| m_{j-1} +
    |b_j|`` (``m`` the magnitudes): evaluated from the input up by Horner's rule,
    ``u_0 = 2 v_0 + |W_0| m_x``, ``u_j = 2 v_j + |W_j| D_{j-1} u_{j-1}``, it is
    ``2 (|W_k| m_{k-1} + |b_k|) + |W_k| D_{k-1} u_{k-1}``: matrix-vector products only (the
    products ``|W_k| ... |W_j|`` of a wide network cost 2.8 s on VNN-COMP resnet_2b).
    """
    mag = [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in root]  # |relu(z)| <= |z|

    def live(j: int, u: np.ndarray) -> np.ndarray:  # D_j u: 0 below 0 on the root box
        return u * (root[j][1] >= 0.0) if net.layers[j].relu else u

    u = mag_x
    for j in range(k):
        lj = net.layers[j]
        below = mag[j - 1] if j > 0 else mag_x
        v = 2 * mag[j] + np.abs(lj.weight) @ below + np.abs(lj.bias)
        u = 2 * v + np.abs(lj.weight) @ (live(j - 1, u) if j > 0 else u)
    w, b = net.layers[k].weight, net.layers[k].bias
    scale = 2 * (np.abs(w) @ mag[k - 1] + np.abs(b)) + np.abs(w) @ live(k - 1, u)
    return np.concatenate([pad(scale, tol), pad(scale, tol)])


def batched_layer_bounds(
    net: Network,
    k: int,
    lo: np.ndarray,
    hi: np.ndarray,
    pre: Sequence[Batch],
    padding: np.ndarray,
    rows: np.ndarray | None = None,
) -> Batch:
    """Sound bounds of ``z_k`` on each box ``[lo[n], hi[n]]`` by back-substitution.

    ``pre[j]`` (``j < k``) are sound pre-activation bounds of layer ``j`` on each box; they fix
    the relaxations. ``padding`` is :func:`static_pad` for this layer (with root bounds that
    every ``pre[j]`` lies within). ``rows``: the neurons to bound (default all). Returns
    ``(lower, upper)`` of shape ``(N, len(rows))``, not intersected with anything.
    """
    n_box = lo.shape[0]
    layer = net.layers[k]
    rows = np.arange(layer.out_features) if rows is None else np.asarray(rows)
    w, b = layer.weight[rows], layer.bias[rows]
    n = len(rows)
    a = np.broadcast_to(np.concatenate([w, -w]), (n_box, 2 * n, w.shape[1]))
    c = np.broadcast_to(np.concatenate([b, -b]), (n_box, 2 * n)).copy()
    for j in range(k - 1, -1, -1):
        lj = net.layers[j]
        pl, ph = pre[j]
        if lj.relu:  # neurons inactive on every box have slope 0: drop their columns
            keep = np.flatnonzero((ph > 0.0).any(axis=0))
            a, pl, ph, wj, bj = (
                a[:, :, keep],
                pl[:, keep],
                ph[:, keep],
                lj.weight[keep],
                lj.bias[keep],
            )
        else:
            wj, bj = lj.weight, lj.bias
        alpha, s, t = relu_relaxation(pl, ph, relu=lj.relu)
        az = a * alpha[:, None, :]
        mid = np.flatnonzero((s != alpha).any(axis=0) | (t != 0.0).any(axis=0))
        if len(mid):  # unstable somewhere: negative coefficients take the upper line s z + t
            neg = np.minimum(a[:, :, mid], 0.0)
            c += np.einsum("nrj,nj->nr", neg, t[:, mid])
            az[:, :, mid] += neg * (s - alpha)[:, None, mid]
        c += az @ bj
        a = (az.reshape(n_box * 2 * n, az.shape[2]) @ wj).reshape(n_box, 2 * n, wj.shape[1])
    value = np.einsum("nrd,nd->nr", np.maximum(a, 0.0), lo)
    value += np.einsum("nrd,nd->nr", np.minimum(a, 0.0), hi) + c
    bound = value - padding[np.concatenate([rows, rows + layer.out_features])]
    return bound[:, :n], -bound[:, n:]
