r"""Differential bounds: bound ``g``'s neurons minus their matched ``f`` neurons, exactly.

When ``g`` was derived from ``f`` (neurons removed, stably active neurons folded, layers
merged), each neuron of ``g`` computes the same function on the box as some neuron of ``f``,
but with other weights. Bounding the *difference* directly, rather than each side, proves it
tiny with a few matrix products and no solver.

Maths
-----
Let neuron :math:`q` of layer :math:`k'` of ``g`` be matched to neuron :math:`p` of layer
:math:`k` of ``f`` (:mod:`exactcomp.verify.coupling` finds candidates by sampling). Then

.. math::

    z^g_q - z^f_p = \sum_r W^g_{qr} h^g_r + b^g_q - \sum_s W^f_{ps} h^f_s - b^f_p .

Every ``g`` input :math:`h^g_r` already matched to :math:`h^f_{\pi(r)}` with a proven
:math:`h^g_r - h^f_{\pi(r)} \in [\lambda_r, \upsilon_r]` is replaced by
:math:`h^f_{\pi(r)} + \delta_r`, the :math:`\delta_r` terms bounded by interval arithmetic
(unmatched ``g`` inputs are bounded by their own sound bounds). What remains is a linear form
:math:`\sum_\ell c_\ell \cdot h^f_\ell + c_0` over the neurons of ``f``, which we
*back-substitute* from the highest layer down:

* a proven stably inactive neuron has :math:`h = 0`: its term vanishes;
* a proven stably active neuron (or one of a layer without ReLU) has
  :math:`h = W_\ell[s] h^f_{\ell-1} + b_\ell[s]`: its coefficient moves one layer down;
* any other neuron is bounded by :math:`h \in [0, u]` (interval arithmetic);
* at the input, :math:`c \cdot x` is bounded over the box.

For a folded network the coefficients cancel up to rounding, so the bound is of the order of
float64 round-off. Every bound is padded by ``bound_abs + bound_rel * scale`` (``scale`` the
sum of the magnitudes of all terms that entered, :mod:`exactcomp.tolerances`), so the result is
a sound bound, an *exact argument* in the sense of :mod:`exactcomp.verify.equivalence`. The
same computation on the output layers bounds :math:`f_i - g_i` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bounds import Bounds
from ..network import Network
from ..tolerances import Tolerances
from ..verdicts import Verdict


@dataclass(frozen=True)
class Side:
    """A network with the sound bounds and proven verdicts it is reasoned about with."""

    net: Network
    bounds: list[Bounds]
    verdicts: list

    def status(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Masks (inactive, linear) of layer ``k``: ``h = 0`` / ``h = z`` on the whole box."""
        layer = self.net.layers[k]
        lo, hi = self.bounds[k]
        if not layer.relu:
            return np.zeros(lo.size, bool), np.ones(lo.size, bool)
        v = self.verdicts[k] if self.verdicts[k] is not None else np.zeros(lo.size, np.int8)
        inactive = (v == Verdict.INACTIVE) | (hi <= 0.0)
        active = ~inactive & ((v == Verdict.ACTIVE) | (lo >= 0.0))
        return inactive, active

    def post_bounds(self, k: int) -> Bounds:
        """Sound bounds on the outputs ``h`` of layer ``k``."""
        lo, hi = self.bounds[k]
        if self.net.layers[k].relu:
            return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        return lo, hi


def _interval(c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float, float]:
    """``min``/``max`` of ``c . v`` over ``lo <= v <= hi``, and its magnitude (for padding)."""
    cp, cn = np.maximum(c, 0.0), np.minimum(c, 0.0)
    mag = float(np.abs(c) @ np.maximum(np.abs(lo), np.abs(hi)))
    return float(cp @ lo + cn @ hi), float(cp @ hi + cn @ lo), mag


def difference_bound(
    f: Side,
    g: Side,
    gk: int,
    q: int,
    fk: int,
    p: int,
    links: dict[tuple[int, int], tuple[int, int, float, float]],
    box_bounds: Bounds,
    tol: Tolerances,
) -> tuple[float, float]:
    """Sound ``(lo, hi)`` with ``lo <= z^g[gk][q] - z^f[fk][p] <= hi`` on the box.

    ``links[(k', r)] = (l, s, lam, ups)`` says ``h^g[k'][r] - h^f[l][s]`` lies in
    ``[lam, ups]`` on the box (proven earlier).
    """
    nf = len(f.net.layers)
    coef: dict[int, np.ndarray] = {}  # layer l -> coefficients on h^f_l (l = -1: the input x)

    def add(layer: int, c: np.ndarray) -> None:
        coef[layer] = coef.get(layer, 0.0) + c

    wg, wf = g.net.layers[gk].weight[q], f.net.layers[fk].weight[p]
    const = float(g.net.layers[gk].bias[q] - f.net.layers[fk].bias[p])
    lo_acc = hi_acc = 0.0
    scale = abs(g.net.layers[gk].bias[q]) + abs(f.net.layers[fk].bias[p])
    add(fk - 1, -wf)
    if gk == 0:
        add(-1, wg)
    else:
        hlo, hhi = g.post_bounds(gk - 1)
        for r in np.flatnonzero(wg):
            w = float(wg[r])
            link = links.get((gk - 1, int(r)))
            if link is not None:
                layer, s, lam, ups = link
                c = np.zeros(f.net.layers[layer].out_features)
                c[s] = w
                add(layer, c)
                a, b = sorted((w * lam, w * ups))
            else:
                a, b = sorted((w * hlo[r], w * hhi[r]))
            lo_acc, hi_acc, scale = lo_acc + a, hi_acc + b, scale + max(abs(a), abs(b))
    for layer in range(nf - 1, -1, -1):
        c = coef.pop(layer, None)
        if c is None or not np.any(c):
            continue
        inactive, linear = f.status(layer)
        down = np.where(linear, c, 0.0)
        rest = np.where(inactive | linear, 0.0, c)
        if np.any(down):
            w, b = f.net.layers[layer].weight, f.net.layers[layer].bias
            add(layer - 1, down @ w)
            const += float(down @ b)
            hprev = box_bounds if layer == 0 else f.post_bounds(layer - 1)
            hmag = np.maximum(np.abs(hprev[0]), np.abs(hprev[1]))
            scale += float(np.abs(down) @ (np.abs(w) @ hmag + np.abs(b)))
        if np.any(rest):
            a, b, mag = _interval(rest, *f.post_bounds(layer))
            lo_acc, hi_acc, scale = lo_acc + a, hi_acc + b, scale + mag
    c = coef.pop(-1, None)
    if c is not None and np.any(c):
        a, b, mag = _interval(c, *box_bounds)
        lo_acc, hi_acc, scale = lo_acc + a, hi_acc + b, scale + mag
    pad = tol.bound_abs + tol.bound_rel * (scale + abs(const))
    return const + lo_acc - pad, const + hi_acc + pad


def propagate_links(
    f: Side,
    g: Side,
    pairs: list[tuple[int, int, int, int]],
    box_bounds: Bounds,
    tol: Tolerances,
) -> dict[tuple[int, int], tuple[int, int, float, float, float, float]]:
    """Proven bounds for every matched pair, layer by layer of ``g``.

    Returns ``{(gk, q): (fk, p, zlo, zhi, hlo, hhi)}``: ``z^g - z^f`` in ``[zlo, zhi]`` and
    ``h^g - h^f`` in ``[hlo, hhi]`` (ReLU is monotone and 1-Lipschitz, so the post-activation
    difference lies in ``[min(zlo, 0), max(zhi, 0)]``; equal to the ``z`` bounds without ReLU).
    """
    post: dict[tuple[int, int], tuple[int, int, float, float]] = {}
    out = {}
    for gk in sorted({pr[0] for pr in pairs}):
        for _, q, fk, p in (pr for pr in pairs if pr[0] == gk):
            zlo, zhi = difference_bound(f, g, gk, q, fk, p, post, box_bounds, tol)
            if g.net.layers[gk].relu and f.net.layers[fk].relu:
                hlo, hhi = min(zlo, 0.0), max(zhi, 0.0)
            elif not g.net.layers[gk].relu and not f.net.layers[fk].relu:
                hlo, hhi = zlo, zhi
            else:
                continue
            out[(gk, q)] = (fk, p, zlo, zhi, hlo, hhi)
        for (k, q), (fk, p, _, _, hlo, hhi) in list(out.items()):
            if k == gk:
                post[(k, q)] = (fk, p, hlo, hhi)
    return out


def inconsistency(f: Side, g: Side, links: dict, points: np.ndarray) -> str | None:
    """A description of the first fact contradicted at a concrete input, or ``None``.

    Every bound, verdict and link used in a proof must hold at every input of the box; checking
    them on the sampled inputs costs a few forward passes and turns a bug upstream (an unsound
    bound, a wrong verdict) into an UNKNOWN instead of a wrong EQUIVALENT.
    """
    zs = {}
    for name, side in (("f", f), ("g", g)):
        zs[name] = side.net.preactivations(points)
        for k, (z, (lo, hi)) in enumerate(zip(zs[name], side.bounds, strict=True)):
            if np.any(z < lo) or np.any(z > hi):
                return f"a bound of layer {k} of {name} does not enclose a sampled value"
            v = side.verdicts[k]
            if v is not None and (
                np.any(z[:, v == Verdict.INACTIVE] > 0) or np.any(z[:, v == Verdict.ACTIVE] < 0)
            ):
                return f"a stability verdict of layer {k} of {name} is contradicted by a sample"
    for (gk, q), (fk, p, zlo, zhi, _, _) in links.items():
        d = zs["g"][gk][:, q] - zs["f"][fk][:, p]
        if np.any(d < zlo) or np.any(d > zhi):
            return f"the link of neuron {q} of layer {gk} of g is contradicted by a sample"
    return None
