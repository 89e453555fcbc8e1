r"""Sound bounds of one network over a *batch* of sub-boxes at once (numpy, no torch).

The maths and the float64 padding are those of :mod:`exactcomp.bounds.interval` and
:mod:`exactcomp.bounds.linear`, applied per sub-box: arrays gain a leading batch axis ``B``
(``lo[B, n]``, ``hi[B, n]``) and the back-substitution matrices become ``A[B, rows, n_j]``.
Nothing is weakened; per box:

* interval: :math:`z = W^+ l + W^- u + b` (and the upper twin), padded by
  ``pad(|W| max(|l|, |u|) + |b|)`` (:func:`exactcomp.bounds.interval.pad`);
* linear (CROWN-style): the relaxation of :func:`exactcomp.bounds.linear.relu_relaxation`
  on the box's own bounds of the earlier layers, the same per-row ``scale`` accumulation
  (``|A|`` times the magnitudes of the variables and of the relaxation offsets at every
  step, then ``|A| max(|lo|, |hi|) + |c|`` at the input) and the same pad. A box whose
  earlier bounds are not all finite, or whose result is not finite, keeps its interval
  bounds (as :func:`~exactcomp.bounds.linear.linear_layer_bounds` does for the whole box);
* every result is intersected with bounds already proven on a larger box (the whole box's
  ``known`` bounds, the parent box's bounds): both hold on the sub-box.

Already-proven verdicts of earlier layers enter through ``known``: a stably inactive neuron
has ``u <= 0`` there, so its relaxation is ``h = 0`` in every sub-box, an active one ``h = z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.interval import Bounds, interval_rows, pad
from ..bounds.linear import relu_relaxation
from ..network import Network
from ..tolerances import Tolerances

__all__ = ["BatchBounds", "batch_bounds"]


@dataclass(frozen=True, eq=False)
class BatchBounds:
    """Per sub-box bounds of layers ``0..k`` and the input coefficients of layer ``k``'s rows.

    ``lower[j]``/``upper[j]`` have shape ``[B, n_j]``. ``coef`` has shape ``[B, 2 m, n_0]``:
    the linear functions of the input whose minima gave the lower (first ``m`` rows) and the
    negated upper bounds of the ``m`` neurons ``rows`` of layer ``k`` (zeros where a box kept
    its interval bounds); the split heuristic reads them. ``pads`` (``[B, 2 m]``, same rows)
    are the rounding pads subtracted from those linear bounds (``inf`` where none);
    ``winner`` (``[B, 2 m]``, same rows) the index in ``slopes`` of the rule that gave each.
    ``spread`` (same shape as ``coef``): per input, the largest ``|coefficient|`` over the
    slope rules tried, which the split heuristic reads. With the winning rule's alone, a
    slope-0 bound that does not depend on an input hid that input from the smear: on ACAS
    Xu 5_9 prop_1 the re-check's layer 2 left neuron 4 open after 50,000 nodes (CROWN's
    slopes alone: 661), and with CROWN's alone 3_1 prop_1 layer 5 left 2 open.
    """

    lower: tuple[np.ndarray, ...]
    upper: tuple[np.ndarray, ...]
    rows: np.ndarray
    coef: np.ndarray
    pads: np.ndarray
    spread: np.ndarray | None = None
    winner: np.ndarray | None = None


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _bmv(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched matrix-vector product: ``a[B, r, n] . v[B, n] -> [B, r]``."""
    return np.matmul(a, v[:, :, None])[:, :, 0]


def _post(net: Network, j: int, lo: np.ndarray, hi: np.ndarray) -> Bounds:
    if net.layers[j].relu:
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    return lo, hi


def _linear_rows(
    net: Network,
    j: int,
    rows: np.ndarray,
    xlo: np.ndarray,
    xhi: np.ndarray,
    pre: list[Bounds],
    tol: Tolerances,
    slope: str = "adaptive",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CROWN-style bounds of neurons ``rows`` of layer ``j >= 1`` in every box (see the
    module docstring); returns ``(lower[B, m], upper[B, m], coef[B, 2m, n_0], pads[B, 2m])``,
    not yet checked for finiteness."""
    m = rows.size
    w, b = _f64(net.layers[j].weight)[rows], _f64(net.layers[j].bias)[rows]
    bound, a, pads = back_substitute(
        net, j, np.concatenate([w, -w]), np.concatenate([b, -b]), xlo, xhi, pre, tol, slope
    )
    return bound[:, :m], -bound[:, m:], a, pads


def back_substitute(
    net: Network,
    j: int,
    w: np.ndarray,
    b: np.ndarray,
    xlo: np.ndarray,
    xhi: np.ndarray,
    pre: list[Bounds],
    tol: Tolerances,
    slope: str = "adaptive",
    alphas: Sequence[np.ndarray] | None = None,
    trace: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded lower bounds of the ``r`` linear functions ``w h_{j-1} + b`` of layer ``j``'s
    input (``w[r, n]``, ``b[r]``, or per box ``w[B, r, n]``, ``b[B, r]``; a neuron's upper
    bound is the negated lower bound of its negated row) in every box, by back-substitution through the relaxations of layers ``j-1..0`` on the
    boxes' bounds ``pre``; returns ``(bound[B, r], coef[B, r, n_0], pads[B, r])``.

    The lower ReLU slopes of the unstable neurons are those of rule ``slope``, or with
    ``alphas`` (per layer ``i < j``, ``[B, r, n_i]``, values in ``[0, 1]``) one slope per box,
    row and neuron (alpha-CROWN's form; :mod:`exactcomp.bab.alpha`); every slope in
    ``[0, 1]`` is a valid relaxation and the pad sums the magnitudes of the terms it scales,
    so each choice gives a sound bound. ``trace``: a list that receives, per layer ``j-1..0``,
    the coefficients ``[B, r, n_i]`` of its ReLU outputs (the gradient of the slopes reads
    their signs)."""
    bsz, r = xlo.shape[0], w.shape[0]
    post = [_post(net, i, lo, hi) for i, (lo, hi) in enumerate(pre[:j])]
    mag_h = [np.maximum(np.abs(lo), np.abs(hi)) for lo, hi in post]
    mag_x = np.maximum(np.abs(xlo), np.abs(xhi))
    if w.ndim == 3:  # rows of their own per box
        r = w.shape[1]
        a, c = w, b
        scale = _bmv(np.abs(w), mag_h[j - 1]) + np.abs(b)
    else:
        a = np.broadcast_to(w[None], (bsz, r, w.shape[1]))
        c = np.broadcast_to(b[None], (bsz, r))
        scale = mag_h[j - 1] @ np.abs(w).T + np.abs(b)
    for i in range(j - 1, -1, -1):
        li = net.layers[i]
        lo_i, hi_i = pre[i]
        alpha, s, t = relu_relaxation(lo_i, hi_i, relu=li.relu)
        if slope != "adaptive" and li.relu:
            alpha = _slope(alpha, s, lo_i, hi_i, slope)
        alpha = alpha[:, None, :]
        if alphas is not None and li.relu:
            unstable = ((lo_i < 0.0) & (hi_i > 0.0))[:, None, :]
            alpha = np.where(unstable, np.clip(alphas[i], 0.0, 1.0), alpha)
        if trace is not None:
            trace.append(a)
        ap = np.maximum(a, 0.0)
        an = np.subtract(a, ap)  # min(a, 0), exactly
        mag = np.maximum(np.abs(lo_i), np.abs(hi_i)) + np.abs(t)
        scale = scale + _bmv(ap, mag) - _bmv(an, mag)  # |a| (|z_i| + |t|)
        c = c + _bmv(an, t)
        wi, bi = _f64(li.weight), _f64(li.bias)
        below = mag_h[i - 1] if i > 0 else mag_x
        v = below @ np.abs(wi).T + np.abs(bi)
        np.multiply(ap, alpha, out=ap)
        np.multiply(an, s[:, None, :], out=an)
        scale = scale + _bmv(ap, v) - _bmv(an, v)  # |az| v (alpha, s >= 0)
        az = np.add(ap, an, out=ap)
        c = c + _bmv(az, np.broadcast_to(bi, s.shape))
        a = (az.reshape(bsz * r, -1) @ wi).reshape(bsz, r, wi.shape[1])
    value = _bmv(np.maximum(a, 0.0), xlo) + _bmv(np.minimum(a, 0.0), xhi) + c
    scale = scale + _bmv(np.abs(a), mag_x) + np.abs(c)
    pads = pad(scale, tol)
    return value - pads, a, pads


SLOPES = ("adaptive", "zero", "one", "chord")
"""The lower ReLU slopes :func:`batch_bounds` can try (``slopes``), each in ``[0, 1]`` on
every unstable neuron, so each gives a sound bound: ``"adaptive"`` (CROWN's: 1 where
``u > -l``, else 0), ``"zero"``, ``"one"``, ``"chord"`` (the upper line's ``u / (u - l)``)."""


def _slope(alpha: np.ndarray, s: np.ndarray, lo: np.ndarray, hi: np.ndarray, slope: str):
    """The lower slopes of the unstable neurons replaced by those of rule ``slope``."""
    unstable = (lo < 0.0) & (hi > 0.0)
    new = {"zero": 0.0, "one": 1.0, "chord": s}[slope]
    return np.where(unstable, new, alpha)


def batch_bounds(
    net: Network,
    xlo: np.ndarray,
    xhi: np.ndarray,
    k: int,
    known: Sequence[Bounds],
    tol: Tolerances,
    *,
    rows: np.ndarray,
    parent: Sequence[Bounds] | None = None,
    linear: Sequence[np.ndarray] | None = None,
    slopes: Sequence[str] = ("adaptive",),
    all_layers: bool = False,
) -> BatchBounds:
    """Sound pre-activation bounds of layers ``0..k`` on each sub-box ``[xlo[b], xhi[b]]``.

    Parameters
    ----------
    net:
        The network.
    xlo, xhi:
        ``[B, n_0]`` corners of the sub-boxes (each inside the box ``known`` holds on).
    k:
        The last layer bounded.
    known:
        Sound bounds of layers ``0..k`` on the whole box (1-D arrays), intersected in.
    tol:
        Tolerances (the rounding pad).
    rows:
        The neurons of layer ``k`` that get linear bounds (the others: interval).
    parent:
        Optional ``[B, n_j]`` bounds of layers ``0..k`` proven on a box containing each
        sub-box (its parent in the split tree), intersected in.
    linear:
        Per layer ``1..k-1`` (index ``j``), the neurons that get linear bounds; default: those
        whose ``known`` bounds straddle 0 (the others' relaxation is exact anyway).
    slopes:
        The lower-slope rules (:data:`SLOPES`) whose linear bounds of layer ``k``'s rows are
        all computed; per box and row the tightest is kept (each is sound, so their
        intersection is), with its coefficients and pad. ``all_layers``: the same for the
        linear bounds of layers ``1..k-1``.
    """
    xlo, xhi = _f64(xlo), _f64(xhi)
    bsz = xlo.shape[0]
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    pre: list[Bounds] = []
    coef = np.zeros((bsz, 2 * rows.size, xlo.shape[1]))
    spread = np.zeros_like(coef)
    pads = np.full((bsz, 2 * rows.size), np.inf)
    winner = np.zeros((bsz, 2 * rows.size), dtype=np.int64)
    plo, phi = xlo, xhi
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(k + 1):
            layer = net.layers[j]
            lo, hi = interval_rows(_f64(layer.weight), _f64(layer.bias), plo, phi, tol)
            lo, hi = np.maximum(lo, known[j][0]), np.minimum(hi, known[j][1])
            if parent is not None:
                lo, hi = np.maximum(lo, parent[j][0]), np.minimum(hi, parent[j][1])
            if j > 0:
                if j == k:
                    sel = rows
                elif linear is not None:
                    sel = linear[j]
                else:
                    sel = np.flatnonzero((known[j][0] < 0.0) & (known[j][1] > 0.0))
                if sel.size:
                    modes = slopes if (j == k or all_layers) else ("adaptive",)
                    lo, hi = _tighten(
                        net,
                        j,
                        sel,
                        xlo,
                        xhi,
                        pre,
                        lo,
                        hi,
                        tol,
                        coef,
                        pads,
                        spread,
                        winner,
                        j == k,
                        modes,
                    )
            lower.append(lo)
            upper.append(hi)
            pre.append((lo, hi))
            plo, phi = _post(net, j, lo, hi)
    return BatchBounds(tuple(lower), tuple(upper), rows, coef, pads, spread, winner)


def _tighten(
    net, j, sel, xlo, xhi, pre, lo, hi, tol, coef, pads, spread, winner, last, modes
) -> Bounds:
    """Intersect the linear bounds of neurons ``sel`` of layer ``j`` into ``(lo, hi)``, per
    box where they are valid (every earlier bound finite, the result finite), the tightest
    over the slope rules ``modes``."""
    ok = np.ones(xlo.shape[0], dtype=bool)
    for plo_, phi_ in pre:
        ok &= np.isfinite(plo_).all(1) & np.isfinite(phi_).all(1)
        ok &= np.isfinite(phi_ - plo_).all(1)
    if not ok.any():
        return lo, hi
    safe = [(np.where(ok[:, None], a, 0.0), np.where(ok[:, None], b, 0.0)) for a, b in pre]
    llo, lhi, a, p = _linear_rows(net, j, sel, xlo, xhi, safe, tol, modes[0])
    spread_j = np.abs(a)
    win = np.zeros(p.shape, dtype=np.int64)
    for n, mode in enumerate(modes[1:], start=1):
        olo, ohi, oa, op = _linear_rows(net, j, sel, xlo, xhi, safe, tol, mode)
        better = np.concatenate([olo > llo, ohi < lhi], axis=1)  # [B, 2m]
        llo, lhi = np.maximum(llo, olo), np.minimum(lhi, ohi)
        spread_j = np.maximum(spread_j, np.abs(oa))
        a = np.where(better[:, :, None], oa, a)
        p = np.where(better, op, p)
        win = np.where(better, n, win)
    ok &= np.isfinite(llo).all(1) & np.isfinite(lhi).all(1)
    lo, hi = lo.copy(), hi.copy()
    lo[:, sel] = np.where(ok[:, None], np.maximum(lo[:, sel], llo), lo[:, sel])
    hi[:, sel] = np.where(ok[:, None], np.minimum(hi[:, sel], lhi), hi[:, sel])
    if last:
        coef[ok] = a[ok]
        pads[ok] = p[ok]
        spread[ok] = spread_j[ok]
        winner[ok] = win[ok]
    return lo, hi
