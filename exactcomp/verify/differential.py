r"""Differential bounds: prove ``|g - f|`` tiny on a box by back-substituting the difference.

When ``g`` was derived from ``f`` (neurons removed, stably active neurons folded, layers merged,
weights re-rounded), most neurons of ``g`` compute, on the box, the same function as a neuron
of ``f`` up to round-off. Bounding the *difference* of two such neurons directly, rather than
each side, proves it tiny with matrix products and no solver.

Maths
-----
A *target* is a difference :math:`D = z^g_q - z^f_p` of two pre-activations (a matched pair,
or the same output of both networks). Write it as a linear form over the outputs of the layers
below, :math:`D = \sum_\ell c^g_\ell \cdot h^g_\ell + \sum_\ell c^f_\ell \cdot h^f_\ell + d` (the
input :math:`x` is layer :math:`-1` of both), and rewrite it from the highest layer down, one
neuron :math:`r` with coefficient :math:`c \ne 0` at a time, keeping the constant as an interval:

* a proven stably inactive neuron has :math:`h = 0`: its term vanishes;
* a proven stably active neuron (or one of a layer without ReLU) has :math:`h = W_r h' + b_r`:
  its coefficient moves one layer down (*exactly*, nothing is bounded);
* a ReLU neuron :math:`r` of ``g`` linked to a ReLU neuron :math:`p` of ``f`` by a proven
  :math:`\delta = z^g_r - z^f_p \in [a, b]` (computed earlier, as a target of its own) has
  :math:`h^g_r = h^f_p + \varphi` with :math:`\varphi = \mathrm{relu}(z^f_p + \delta) -
  \mathrm{relu}(z^f_p)`. ReLU is monotone and 1-Lipschitz, so :math:`\varphi` lies between
  :math:`\min(0, \delta)` and :math:`\max(0, \delta)` at every input, whatever the (shared)
  activation pattern; hence, for any slope :math:`\alpha \in [0, 1]`,

  .. math::

      \varphi - \alpha\delta \in [\beta_-, \beta_+], \quad
      \beta_- = \min_{t \in \{a, b\}} (\min(0, t) - \alpha t), \quad
      \beta_+ = \max_{t \in \{a, b\}} (\max(0, t) - \alpha t)

  (the lower function is concave, the upper convex, so their extremes over :math:`[a, b]` are
  at the ends). The term :math:`c\,h^g_r` becomes :math:`c\,h^f_p` (it cancels against ``f``'s
  own coefficient on :math:`p`), plus :math:`c\alpha\,\delta` (a linear form: :math:`c\alpha
  W^g_r` one layer down in ``g``, :math:`-c\alpha W^f_p` one layer down in ``f``), plus
  :math:`c \cdot [\beta_-, \beta_+]`. The slope is 1 when either network proves its neuron
  active, 0 when either proves it inactive, :math:`\tfrac12` otherwise (the chord: the
  interval is then :math:`\pm\tfrac12\max(|a|, |b|)` and the difference keeps propagating
  *linearly*, so errors from different neurons can cancel instead of adding up as intervals
  do). A link with :math:`a = b = 0` (the same function) merges with nothing left over; when
  both neurons are proven stable the same way, each side is rewritten exactly instead. (A
  neuron that only *one* network proves stable must be merged: rewriting it alone would leave
  its partner's coefficient to be bounded by :math:`[0, u]`.)
* two neurons of one network that the weights prove the same function (exact duplicates,
  :mod:`exactcomp.stability.constants`) have the same :math:`h` on every input: their
  coefficients are summed onto one of them before the layer is rewritten, so that a neuron
  of ``g`` that merged several of ``f`` cancels against all of them; a neuron the weights
  make :math:`h = 0` (a constant :math:`z = b \le 0`) is inactive, one they bound below by
  0 (:mod:`exactcomp.stability.lattice`) is linear;
* a unit that passes one of the layer below on (:math:`z_j = c\,z_u` with :math:`c > 0`, read
  off the weights: :func:`exactcomp.stability.lattice.passes`) has :math:`h_j = c\,h_u`: its
  coefficient moves onto :math:`u`, exactly;
* two *opposite* units (:math:`z_v = -z_u`, read off the weights) with coefficients of
  opposite signs: :math:`c_u h_u + c_v h_v = t z_u + (c_u - t) h_u + (c_v + t) h_v`, since
  :math:`h_u - h_v = \mathrm{relu}(z_u) - \mathrm{relu}(-z_u) = z_u`; with
  :math:`t = \mathrm{sign}(c_u)\min(|c_u|, |c_v|)` one of the two is left with nothing and
  :math:`t z_u` moves one layer down, exactly (``c_v = -c_u``: nothing is bounded at all);
* a ``g`` neuron with several proven partners in one ``f`` layer (*twins*: copies of one
  function that the weights do not show equal) is linked, for each target, to the twin
  whose coefficient the form holds, so that the two cancel (every link is proven, so every
  choice is sound); twins of ``f`` that one neuron of ``g`` merged are reached one at most,
  so the argument is also run with the roles swapped
  (:func:`exactcomp.verify.coupling.swapped_outputs`);
* any other neuron is bounded by its sound post-activation interval :math:`[0, u]`;
* at the input, :math:`c \cdot x` is bounded over the box.

``g``'s layers are rewritten before the ``f`` layers their links point into, so the
coefficients of matched neurons meet and cancel before ``f``'s are bounded. Links are computed
layer by layer of ``g``; the same computation on the output layers bounds :math:`g_i - f_i`.

Soundness and rounding
----------------------
Nothing is rounded: weights, biases, box and the (already sound, padded) bounds of both
networks are float64 numbers, i.e. dyadic rationals :math:`m 2^e`, and every operation above
(sums, products, halving, min/max) maps dyadic rationals to dyadic rationals. They are carried
*exactly* as Python integers with a shared power of two (:class:`_Vec`), so no floating-point
padding (``Tolerances.bound_*``) is needed; each final bound is rounded once, outwards, to a
float64. This matters: a compressed network's differences are of the order of round-off, and a
padded float64 computation (``1e-9`` relative per bound) would compound through every layer
of a deep network to far more than the differences themselves. The arithmetic costs about
0.3 microseconds per multiply-add, on vectors made sparse by the exact cancellations.
The result is an *exact argument* in the sense of :mod:`exactcomp.verify.equivalence`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..bounds import Bounds
from .diffform import Exact as _Exact
from .diffform import Form as _Form
from .diffform import Side
from .diffform import interval as _interval
from .dyadic import DyadicArray as _Vec
from .dyadic import outward as _outward
from .dyadic import zeros as _zeros

__all__ = ["Differences", "Side", "bound_differences"]


@dataclass(frozen=True)
class _LayerLinks:
    """The proven links of one ReLU layer of ``g``, as arrays over its neurons."""

    zero: np.ndarray  # bool: linked with delta == 0 exactly (the same function)
    relax: np.ndarray  # bool: linked, merged with the relaxation of phi
    f_layer: np.ndarray  # int: the f layer linked to (meaningful where linked)
    f_index: np.ndarray  # int
    alpha2: np.ndarray  # int in {0, 1, 2}: twice the slope alpha of the relaxation
    beta: _Vec  # (2, n): [beta_-, beta_+]

    @classmethod
    def unlinked(cls, n: int) -> _LayerLinks:
        z = np.zeros(n, np.int64)
        return cls(z.astype(bool), z.astype(bool), z, z, z, _Vec.of(np.zeros((2, n))))


@dataclass(frozen=True)
class Differences:
    """What the differential argument proved.

    ``links[(gk, q)] = (fk, p, zlo, zhi, hlo, hhi)``: ``z^g - z^f`` in ``[zlo, zhi]`` and
    ``h^g - h^f`` in ``[hlo, hhi]`` on the box for the matched pair (``gk, q``)/(``fk, p``).
    ``outputs[i] = (lo, hi)``: ``lo <= g_i - f_i <= hi`` on the box. All float64, rounded
    outwards from exact values.
    """

    links: dict[tuple[int, int], tuple[int, int, float, float, float, float]]
    outputs: tuple[tuple[float, float], ...]


class _Argument:
    """The back-substitution of every target, sharing the exact forms and the links found."""

    def __init__(self, f: Side, g: Side, pairs, box_bounds: Bounds) -> None:
        self.ef, self.eg = _Exact(f), _Exact(g)
        self.box = _Vec.of(np.stack(box_bounds))
        self.f_widths = [la.out_features for la in f.net.layers]
        self.links = [_LayerLinks.unlinked(la.out_features) for la in g.net.layers]
        self.twins: list[list[_LayerLinks]] = [[] for _ in g.net.layers]  # other proven partners
        # reach[k]: the highest f layer that g's layers <= k link into. g's layer k is rewritten
        # while f's pending layers are no higher, so matched coefficients meet before f's are
        # bounded (any order is sound; this one makes them cancel).
        reach = [-1] * len(g.net.layers)
        for gk, _q, fk, _p in pairs:
            reach[gk] = max(reach[gk], fk)
        self.reach = np.maximum.accumulate(reach)

    def bound(self, gk: int, q: int, fk: int, p: int) -> tuple[Fraction, Fraction]:
        """Exact ``(lo, hi)`` with ``lo <= z^g[gk][q] - z^f[fk][p] <= hi`` on the box."""
        form = _Form(self.eg.b[gk].value(q) - self.ef.b[fk].value(p))
        form.add("g", gk - 1, self.eg.w[gk].row(q))
        form.add("f", fk - 1, -self.ef.w[fk].row(p))
        while (lg := form.top("g")) >= 0 or form.top("f") >= 0:
            lf = form.top("f")
            if lg >= 0 and self.reach[lg] >= lf:
                self._rewrite_g(form, lg)
            else:
                self._rewrite_f(form, lf)
        n = self.box.ints.shape[1]
        cx = form.coef["f"].pop(-1, _zeros(n)) + form.coef["g"].pop(-1, _zeros(n))
        form.shift(*cx.interval(self.box))
        return form.lo, form.hi

    def _rewrite_f(self, form: _Form, layer: int) -> None:
        e = self.ef
        c = form.pop("f", e, layer)
        inactive, linear = e.status[layer]
        c = form.passthrough("f", e, layer, c, ~inactive)
        c = form.opposites("f", e, layer, c, ~inactive & ~linear)
        if e.multiple[layer] is not None:  # what the pairs left, onto one multiple, again
            c = form.multiples(e, layer, c, ~inactive)
            c = form.opposites("f", e, layer, c, ~inactive & ~linear)
        nz = c.nonzero() & ~inactive
        if (lin := nz & linear).any():
            form.down("f", e, layer, c.where(lin))
        if (rest := nz & ~linear).any():
            form.shift(*_interval(c.where(rest), e.post[layer]))

    def _chosen(self, form: _Form, layer: int) -> _LayerLinks:
        """The links of ``g``'s ``layer`` for this target: a neuron whose partner has no
        coefficient in the form while another proven partner (a twin) has one is linked to
        the twin, so that the two meet and cancel (every link is proven: any choice is
        sound)."""
        links = self.links[layer]
        for alt in self.twins[layer]:
            use = (alt.zero | alt.relax) & ~self._meets(form, links) & self._meets(form, alt)
            if use.any():
                links = _LayerLinks(
                    *(
                        np.where(use, getattr(alt, k), getattr(links, k))
                        for k in ("zero", "relax", "f_layer", "f_index", "alpha2")
                    ),
                    alt.beta.where(use) + links.beta.where(~use),
                )
        return links

    def _meets(self, form: _Form, links: _LayerLinks) -> np.ndarray:
        """Per neuron, whether its partner under ``links`` has a coefficient in the form."""
        out = np.zeros(links.zero.size, bool)
        linked = links.zero | links.relax
        for fl in np.unique(links.f_layer[linked]).tolist():
            c = form.coef["f"].get(fl)
            if c is not None:
                at = linked & (links.f_layer == fl)
                out[at] = c.ints[links.f_index[at]] != 0
        return out

    def _rewrite_g(self, form: _Form, layer: int) -> None:
        e = self.eg
        links = self._chosen(form, layer) if self.twins[layer] else self.links[layer]
        c = form.pop("g", e, layer)
        inactive, linear = e.status[layer]
        c = form.passthrough("g", e, layer, c, ~links.zero & ~inactive)
        c = form.opposites("g", e, layer, c, ~links.zero & ~inactive & ~linear)
        if e.multiple[layer] is not None:  # unlinked multiples onto their unit, as in f
            c = form.multiples(e, layer, c, ~links.zero & ~links.relax & ~inactive)
            c = form.opposites("g", e, layer, c, ~links.zero & ~inactive & ~linear)
        nz = c.nonzero()
        merge = nz & links.zero  # the same function: h^g_r = h^f_p exactly
        relax = nz & links.relax
        rest = nz & ~merge & ~relax & ~inactive
        lin, free = rest & linear, rest & ~linear
        if lin.any():
            form.down("g", e, layer, c.where(lin))
        for fl in np.unique(links.f_layer[merge | relax]).tolist():
            into = (merge | relax) & (links.f_layer == fl)
            form.add("f", fl, self._scatter(fl, links.f_index, c.where(into)))
            part = relax & (links.f_layer == fl) & (links.alpha2 > 0)
            if part.any():  # c alpha delta, delta = z^g_r - z^f_p: one layer down on both sides
                ca = _Vec(np.where(part, c.ints * links.alpha2.astype(object), 0), c.exp - 1)
                form.down("g", e, layer, ca)
                form.down("f", self.ef, fl, -self._scatter(fl, links.f_index, ca))
        if relax.any():
            form.shift(*_interval(c.where(relax), links.beta))
        if free.any():
            form.shift(*_interval(c.where(free), e.post[layer]))

    def _scatter(self, fl: int, index: np.ndarray, c: _Vec) -> _Vec:
        """``c`` (over a layer of ``g``) moved onto the neurons ``index`` of ``f``'s layer."""
        out = np.zeros(self.f_widths[fl], dtype=object)
        nz = c.nonzero()
        np.add.at(out, index[nz], c.ints[nz])
        return _Vec(out, c.exp)

    def add_links(self, gk: int, found: dict, twins: list[dict] = ()) -> None:
        """Record the proven links of ``g``'s layer ``gk`` (``q -> (fk, p, a, b)``) and the
        twins (other proven partners, each a dict of the same form)."""
        self.links[gk] = self._layer_links(gk, found)
        self.twins[gk] = [self._layer_links(gk, t) for t in twins if t]

    def _layer_links(
        self, gk: int, found: dict[int, tuple[int, int, Fraction, Fraction]]
    ) -> _LayerLinks:
        """The proven links ``q -> (fk, p, a, b)`` of ``g``'s layer ``gk`` as arrays."""
        n = len(self.links[gk].zero)
        zero, relax = np.zeros(n, bool), np.zeros(n, bool)
        f_layer, f_index, alpha2 = (np.zeros(n, np.int64) for _ in range(3))
        betas = [Fraction(0)] * (2 * n)
        g_off, g_lin = self.eg.status[gk]
        for q, (fk, p, a, b) in found.items():
            f_off, f_lin = (m[p] for m in self.ef.status[fk])
            f_layer[q], f_index[q] = fk, p
            zero[q] = a == 0 and b == 0
            if zero[q] or (g_off[q] and f_off) or (g_lin[q] and f_lin):
                continue  # exact on both sides: nothing to relax
            relax[q] = True
            on, off = g_lin[q] or f_lin, g_off[q] or f_off
            al = Fraction(1) if on else Fraction(0) if off else Fraction(1, 2)
            alpha2[q] = int(2 * al)
            betas[q] = min(min(0, t) - al * t for t in (a, b))
            betas[n + q] = max(max(0, t) - al * t for t in (a, b))
        beta = _Vec.of_fractions(betas)
        beta = _Vec(beta.ints.reshape(2, n), beta.exp)
        return _LayerLinks(zero, relax, f_layer, f_index, alpha2, beta)


#: A proven partner other than the narrowest is kept as a twin while its link is at most
#: this many times as wide (plus ``2^-40``): tll16's float32 copies, 2e-7 both.
TWIN_WIDTH = 4


def _twins(tried: dict) -> list[dict]:
    """The other proven partners of each neuron, narrow enough (:data:`TWIN_WIDTH`), as one
    dict per rank (``q -> (fk, p, a, b)``)."""
    out: list[dict] = []
    for q, cands in tried.items():
        best = cands[0][3] - cands[0][2]
        near = [t for t in cands[1:] if t[3] - t[2] <= TWIN_WIDTH * best + Fraction(1, 2**40)]
        for i, t in enumerate(near):
            if i == len(out):
                out.append({})
            out[i][q] = t
    return out


def bound_differences(
    f: Side,
    g: Side,
    pairs: list[tuple[int, int, int, int]],
    box_bounds: Bounds,
    deadline: float | None = None,
) -> Differences:
    """Proven bounds on every matched pair (layer by layer of ``g``) and on ``g - f``.

    ``pairs`` are candidate pairs ``(gk, q, fk, p)`` of ReLU neurons
    (:func:`exactcomp.verify.coupling.match_neurons`); a wrong candidate only gives a wide
    link. A ``g`` neuron with several candidates (in order) is linked to the one with the
    narrowest proven link (the first on a tie; the others are not tried after an exact one).
    ``f`` and ``g`` must end in a layer without ReLU (their outputs are pre-activations).
    Once ``time.perf_counter()`` passes ``deadline`` no further link is proven (the neurons
    left are bounded by their intervals), but the outputs are still bounded.
    """
    arg = _Argument(f, g, pairs, box_bounds)
    links: dict[tuple[int, int], tuple[int, int, float, float, float, float]] = {}
    by_layer: dict[int, list[tuple[int, int, int]]] = {}
    for gk, q, fk, p in pairs:
        if g.net.layers[gk].relu and f.net.layers[fk].relu:
            by_layer.setdefault(gk, []).append((q, fk, p))
    for gk in sorted(by_layer):
        tried: dict[int, list[tuple[int, int, Fraction, Fraction]]] = {}
        for q, fk, p in by_layer[gk]:
            if deadline is not None and time.perf_counter() > deadline:
                break
            if q in tried and tried[q][0][3] == tried[q][0][2] and fk != tried[q][0][0]:
                continue  # an alternative layer to an exact link: nothing to gain
            a, b = arg.bound(gk, q, fk, p)
            tried.setdefault(q, []).append((fk, p, a, b))
            tried[q].sort(key=lambda t: t[3] - t[2])  # stable: the first on a tie
        found = {q: t[0] for q, t in tried.items()}
        for q, (fk, p, a, b) in found.items():
            zlo, zhi = _outward(a, b)
            links[(gk, q)] = (fk, p, zlo, zhi, min(zlo, 0.0), max(zhi, 0.0))
        arg.add_links(gk, found, _twins(tried))
    lf, lg = len(f.net.layers) - 1, len(g.net.layers) - 1
    outputs = tuple(_outward(*arg.bound(lg, i, lf, i)) for i in range(f.net.output_size))
    return Differences(links, outputs)
