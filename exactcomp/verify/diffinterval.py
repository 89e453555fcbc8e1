r"""Differential interval bounds: :math:`\max |f - g|` of two paired networks by intervals alone.

The bound the lossy commands prove on a network with a layer too large to hold densely
(:attr:`~exactcomp.network.Layer.sparse`: a large convolution or pool), where the symbolic
forms of :mod:`exactcomp.verify.symbolic` (one dense row of input coefficients per neuron)
would not fit: every step is a product of a (sparse) matrix with a vector.

Maths
-----
As in :mod:`exactcomp.verify.symbolic`, neuron ``j`` of layer ``k`` of ``f`` is paired with
neuron ``j`` of layer ``k`` of ``g``. On a box :math:`B`, let :math:`z^f_k \in [l_k, u_k]` be
``f``'s interval bounds (:func:`~exactcomp.bounds.interval.interval_bounds`), :math:`a^f_k`
its outputs (:math:`a^f_{-1} = x`), :math:`d_k = z^g_k - z^f_k`, :math:`\Delta_k = a^g_k -
a^f_k` (:math:`\Delta_{-1} = 0`), :math:`E_k = W^g_k - W^f_k`, :math:`e_k = b^g_k - b^f_k`.
Then exactly

.. math::

    d_k = W^g_k \Delta_{k-1} + E_k\, a^f_{k-1} + e_k ,

and each of the two products is bounded by interval arithmetic
(:func:`~exactcomp.bounds.interval.interval_layer`) from intervals of :math:`\Delta_{k-1}`
and :math:`a^f_{k-1}`. Without a ReLU :math:`\Delta_k = d_k`. With one,
:math:`\Delta_k = \varphi(z^f_k, d_k)`, :math:`\varphi(z, d) = \mathrm{relu}(z + d) -
\mathrm{relu}(z)`, which is nondecreasing in :math:`d` (ReLU is monotone), nondecreasing in
:math:`z` for :math:`d \ge 0` and nonincreasing in :math:`z` for :math:`d \le 0`. Every pair
:math:`(z^f_k(x), d_k(x))`, :math:`x \in B`, lies in the rectangle :math:`[l, u] \times
[\underline d, \overline d]`, on which the extremes of :math:`\varphi` are, per neuron,

.. math::

    \max \varphi = \varphi(u, \overline d) \text{ if } \overline d \ge 0 \text{ else }
    \varphi(l, \overline d), \qquad
    \min \varphi = \varphi(l, \underline d) \text{ if } \underline d \ge 0 \text{ else }
    \varphi(u, \underline d).

The bound of output ``i`` is :math:`\max(-\underline d_{L,i}, \overline d_{L,i})`. Sound, and
looser than the symbolic bound (no cancellation between neurons): on a dense network the
charger uses that one.

Max-pools
---------
Where ``f`` and ``g`` both hold a checked max-pool block over the same windows
(:mod:`exactcomp.bounds.pool_block`), the difference of its outputs also lies between the
smallest and the largest lower/upper bound of :math:`\Delta` over each window at its input,
and ``f``'s outputs between the maxima of its input bounds (both in that module's docstring):
through a pool's ReLU levels the intervals of :math:`d` double with every level. Measured on
Convnet_maxpool over prop_0_0.004, 8 bits, corrected: the proven bound 0.478 -> 0.151
(sampled 0.095; benchmarks/RESULTS.md, "lead17").

Back-substitution
-----------------
The same intervals of :math:`z^f_k`, :math:`d_k` and :math:`z^g_k = z^f_k + d_k` are all that
the relaxations of :func:`~exactcomp.verify.backward.relu_relaxation` need, so the outputs'
differences are also substituted backward to the input
(:func:`~exactcomp.verify.backward.output_bounds`, CROWN-style: rows only for the outputs,
``2m`` dense rows of a layer's width, and products with the sparse matrices). That keeps the
cancellation between neurons the intervals lose; each output's bound is the smaller of the
two (both sound). Measured at 8 / 4 bits, round to nearest: Convnet_maxpool over its
prop_0_0.004 box 0.561 -> 0.342, Convnet_avgpool over prop_0_0.02 0.278 -> 0.202 and 3.56 ->
2.46, for 0.04-0.07 s more (benchmarks/RESULTS.md, "End-of-stop checks (ninth stop)").

Floating point
--------------
Each interval product is padded by :func:`~exactcomp.bounds.interval.interval_layer`; the sum
of its two bounds and each value of :math:`\varphi` (two roundings, at most
:math:`2^{-52}(|z| + |d|)`) are padded outwards by ``bound_abs + bound_rel * S``, ``S`` the
absolute sum of the terms (``bound_rel`` = 1e-9, far above the rounding).
"""

from __future__ import annotations

import numpy as np

from ..bounds.interval import (
    activation_bounds,
    intersect,
    interval_bounds,
    interval_layer,
    minus,
    pad,
)
from ..bounds.pool_block import max_pool_blocks
from ..domain import Box
from ..network import Layer, Network
from ..tolerances import DEFAULT, Tolerances
from .backward import Relaxation, output_bounds, relu_relaxation


def interval_difference(f: Network, g: Network, box: Box, tol: Tolerances = DEFAULT) -> np.ndarray:
    """Per output ``i``, a sound bound of :math:`\\max_{x \\in B} |f_i(x) - g_i(x)|` (module
    docstring); ``f`` and ``g`` of the same layer shapes and ReLUs."""
    pre = interval_bounds(f, box, tol=tol)
    pools = _shared_pools(f, g)
    lo, hi = box.lower, box.upper  # a^f_{k-1}
    dlo = dhi = None  # Delta_{k-1}; None: 0 (the input)
    deltas = []  # Delta_{k-1} for each layer k
    relax: list[Relaxation] = []  # of the hidden layers, for the back-substitution
    for k, ((lf, lg), (zl, zu)) in enumerate(zip(zip(f.layers, g.layers, strict=True), pre,
                                                 strict=True)):  # fmt: skip
        deltas.append((dlo, dhi))
        el, eu = interval_layer(Layer(minus(lg.weight, lf.weight), lg.bias - lf.bias, False),
                                lo, hi, tol)  # fmt: skip
        if dlo is not None:
            wl, wu = interval_layer(Layer(lg.weight, np.zeros(lg.out_features), False),
                                    dlo, dhi, tol)  # fmt: skip
            p = pad(np.abs(el) + np.abs(eu) + np.abs(wl) + np.abs(wu), tol)
            el, eu = el + wl - p, eu + wu + p
        if k in pools and deltas[pools[k].first][0] is not None:  # a max-pool in both
            el, eu = intersect((el, eu), pools[k].difference(*deltas[pools[k].first]))
        relax.append(_relaxation(lg.relu, zl, zu, el, eu, tol))
        if lg.relu:
            dlo, dhi = _phi_range(zl, zu, el, eu, tol)
        else:
            dlo, dhi = el, eu
        lo, hi = activation_bounds(lf, (zl, zu))
    with np.errstate(invalid="ignore"):
        out = np.maximum(-dlo, dhi)
    out = np.where(np.isnan(out), np.inf, out)
    if len(relax) == 1:  # one affine layer: the intervals are exact
        return out
    mag_x = np.maximum(np.abs(box.lower), np.abs(box.upper))[None]
    with np.errstate(invalid="ignore", over="ignore"):
        low, up = output_bounds(f, g, range(f.output_size), relax[:-1], box.lower[None],
                                box.upper[None], mag_x, tol)  # fmt: skip
        back = np.maximum(-low[0], up[0])
    return np.minimum(out, np.where(np.isnan(back), np.inf, back))


def _shared_pools(f: Network, g: Network) -> dict:
    """The max-pool blocks checked in both ``f`` and ``g``, over the same windows."""
    theirs = max_pool_blocks(g)
    return {
        k: b
        for k, b in max_pool_blocks(f).items()
        if k in theirs
        and theirs[k].first == b.first
        and np.array_equal(theirs[k].windows, b.windows)
    }


def _relaxation(relu: bool, zl, zu, dl, du, tol: Tolerances) -> Relaxation:
    """One box's relaxation of a layer (:mod:`exactcomp.verify.backward`) from the intervals
    of :math:`z^f` and :math:`d`; those of :math:`z^g = z^f + d` padded for the rounding."""
    zl, zu, dl, du = (np.asarray(v, dtype=np.float64)[None] for v in (zl, zu, dl, du))
    if not relu:
        return Relaxation.linear(zl, zu, dl, du)
    with np.errstate(invalid="ignore", over="ignore"):
        p = pad(np.abs(zl) + np.abs(dl) + np.abs(zu) + np.abs(du), tol)
        first = np.zeros(zl.shape, dtype=bool)  # the cases on d: no second route
        return relu_relaxation(zl, zu, dl, du, zl + dl - p, zu + du + p, first, first)


def _phi_range(zl, zu, dl, du, tol: Tolerances) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``relu(z + d) - relu(z)`` over ``[l, u] x [dl, du]``, padded outwards."""

    def phi(z, d):
        with np.errstate(invalid="ignore", over="ignore"):
            v = np.maximum(z + d, 0.0) - np.maximum(z, 0.0)
            return v, pad(np.abs(z) + np.abs(d), tol)

    top, ptop = phi(np.where(du >= 0, zu, zl), du)
    low, plow = phi(np.where(dl >= 0, zl, zu), dl)
    low, top = low - plow, top + ptop
    return np.where(np.isnan(low), -np.inf, low), np.where(np.isnan(top), np.inf, top)
