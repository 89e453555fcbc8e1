r"""Interval gradients of the output differences: where ``g_i - f_i`` is monotone in an input.

NeuroDiff (Paulsen et al. 2020, ``smearBasedRefinement``) replaces a box by two of its faces
when the difference is monotone along one input; :mod:`exactcomp.verify.splitting` does the
same. The gradient is bounded per box by interval back-propagation through each network with
the box's activation patterns, and the two networks' intervals are subtracted.

Maths
-----
On a box :math:`B` where every hidden neuron's pre-activation lies in :math:`[l, u]`, the
(Clarke) derivative of its ReLU lies in :math:`D = \{1\}` if :math:`l \ge 0`, :math:`\{0\}` if
:math:`u \le 0`, else :math:`[0, 1]`. For :math:`h = W_L a_{L-1} + b_L` (output rows ``i``),
every generalised gradient of :math:`h_i` on :math:`B` lies in
:math:`v_0 = (\dots((W_L[i] \odot D_{L-1}) W_{L-1}) \odot D_{L-2} \dots) W_0`, computed in
interval arithmetic (:math:`[v^-, v^+] W = [v^- W^+ + v^+ W^-,\ v^+ W^+ + v^- W^-]`), and the
gradient of :math:`g_i - f_i` in the difference of the two intervals. If, for input ``j``,
that interval excludes neither sign (:math:`\ge 0` or :math:`\le 0` as a whole), then
:math:`g_i - f_i`, continuous and piecewise linear, is monotone along ``j`` on every segment
of :math:`B` parallel to axis ``j``, so :math:`\max_B |g_i - f_i|` is reached on the face
:math:`x_j = \underline x_j` or on the face :math:`x_j = \overline x_j`: proving both faces
proves the box.

Floating point: each interval product is widened by ``bound_abs + bound_rel * (max(|v^-|,
|v^+|) |W|)`` (the rounding of ``n`` products and sums is ``n 2^-53`` relative to that sum),
and the difference by ``bound_abs + bound_rel`` times the sum of the magnitudes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..network import Network
from ..tolerances import Tolerances

Pattern = tuple[np.ndarray, np.ndarray] | None  # (active, unstable) per box (N, n); None: linear


def network_gradient(
    net: Network,
    outputs: Sequence[int],
    patterns: Sequence[Pattern],
    n_box: int,
    tol: Tolerances,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval gradient ``(lo, hi)``, each (N, m, d), of ``net``'s ``outputs`` on each box,
    from the hidden layers' activation ``patterns`` on the boxes (one per hidden layer)."""
    w = net.layers[-1].weight[list(outputs)]
    lo = np.broadcast_to(w, (n_box, *w.shape))
    hi = lo
    for k in range(len(net.layers) - 2, -1, -1):
        pat = patterns[k]
        if pat is not None:
            act, unst = pat[0][:, None, :], pat[1][:, None, :]
            lo = np.where(act, lo, np.where(unst, np.minimum(lo, 0.0), 0.0))
            hi = np.where(act, hi, np.where(unst, np.maximum(hi, 0.0), 0.0))
        wk = net.layers[k].weight
        wp, wn = np.maximum(wk, 0.0), np.minimum(wk, 0.0)
        pad = tol.bound_abs + tol.bound_rel * (np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(wk))
        lo, hi = lo @ wp + hi @ wn - pad, hi @ wp + lo @ wn + pad
    return lo, hi


def difference_gradient(
    f: Network,
    g: Network,
    outputs: Sequence[int],
    patterns_f: Sequence[Pattern],
    patterns_g: Sequence[Pattern],
    n_box: int,
    tol: Tolerances,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval gradient ``(lo, hi)``, each (N, m, d), of ``g_i - f_i`` on each box (see the
    module docstring); unbounded when an output has a ReLU (not handled)."""
    fl, fh = network_gradient(f, outputs, patterns_f, n_box, tol)
    gl, gh = network_gradient(g, outputs, patterns_g, n_box, tol)
    if f.layers[-1].relu or g.layers[-1].relu:
        return np.full(fl.shape, -np.inf), np.full(fl.shape, np.inf)
    pad = tol.bound_abs + tol.bound_rel * (np.abs(fl) + np.abs(fh) + np.abs(gl) + np.abs(gh))
    return gl - fh - pad, gh - fl + pad


def monotone(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N, d): whether every output's difference is monotone along input ``j`` on the box."""
    return ((lo >= 0.0) | (hi <= 0.0)).all(axis=1)
