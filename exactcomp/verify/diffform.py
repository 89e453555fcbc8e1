r"""The exact forms of the differential argument (:mod:`exactcomp.verify.differential`).

:class:`Side` is a network with the bounds and verdicts it is reasoned about with,
:class:`Exact` its weights, biases, masks and the facts its weights prove
(:mod:`exactcomp.stability.constants`) in exact dyadic form, and :class:`Form` the linear
form being rewritten, with the exact moves the argument makes on it (the maths is in
:mod:`exactcomp.verify.differential`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..bounds import Bounds
from ..network import Network
from ..stability.constants import layer_classes
from ..verdicts import stable_masks
from .dyadic import DyadicArray as _Vec
from .dyadic import DyadicMatrix as _Matrix
from .dyadic import outward

__all__ = ["Exact", "Form", "Side", "interval"]


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
        return stable_masks(lo, hi, self.verdicts[k])

    def post_bounds(self, k: int) -> Bounds:
        """Sound bounds on the outputs ``h`` of layer ``k``."""
        lo, hi = self.bounds[k]
        if self.net.layers[k].relu:
            return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        return lo, hi


class Exact:
    """One network's weights, biases, masks and post-activation bounds in exact form."""

    def __init__(self, side: Side) -> None:
        layers = side.net.layers
        self.w = [_Matrix(la.weight) for la in layers]  # as their non-zero entries
        self.b = [_Vec.of(la.bias) for la in layers]
        self.status = [side.status(k) for k in range(len(layers))]
        self.rep: list[np.ndarray | None] = []  # each unit's class representative, or None
        self.opp: list[np.ndarray | None] = []  # the representative of z = -z_j's class, or -1
        self.through: list = []  # (u, c): h_j = c_j h_u of the layer below (u = -1: none)
        # (i, c, r): h_j = (c_j + r_j) h_i of the same layer (i = -1: none), c_j the nearest
        # float64 to the exact ratio, r_j = ratio - c_j its rest (only the non-zero, by j)
        self.multiple: list = []
        for k, cls in enumerate(layer_classes(side.net)):
            if layers[k].relu:  # a null unit's h is 0 on every input: inactive; z >= 0: h = z
                off, lin = self.status[k]
                off = off | cls.null
                self.status[k] = (off, (lin | (cls.floor >= 0.0)) & ~off)
            first = {}
            rep = np.array([first.setdefault(int(c), i) for i, c in enumerate(cls.label)])
            self.rep.append(rep if np.any(rep != np.arange(rep.size)) else None)
            opp = np.where(cls.opposite >= 0, rep[np.maximum(cls.opposite, 0)], -1)
            self.opp.append(opp if layers[k].relu and np.any(opp >= 0) else None)
            passes = cls.through is not None and np.any(cls.through >= 0)
            self.through.append((cls.through, _Vec.of(cls.factor)) if passes else None)
            scaled = cls.multiple is not None and layers[k].relu
            self.multiple.append(_split(cls.multiple, cls.ratio) if scaled else None)
        self.post: list[_Vec | None] = []
        for k in range(len(layers)):
            lo, hi = side.post_bounds(k)
            finite = np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
            self.post.append(_Vec.of(np.stack([lo, hi])) if finite else None)


class Form:
    """The difference being rewritten: coefficients on the outputs of each layer of ``f`` and
    of ``g`` (layer ``-1`` is the shared input) and the interval ``[lo, hi]`` of the rest."""

    def __init__(self, lo: Fraction) -> None:
        self.coef: dict[str, dict[int, _Vec]] = {"f": {}, "g": {}}
        self.lo = self.hi = lo

    def add(self, side: str, layer: int, v: _Vec) -> None:
        c = self.coef[side]
        c[layer] = c[layer] + v if layer in c else v

    def pop(self, side: str, e: Exact, layer: int) -> _Vec:
        """The coefficients on ``h_layer``, those of exact duplicates summed onto their
        class's first unit (:mod:`exactcomp.stability.constants`: the same function)."""
        c, rep = self.coef[side].pop(layer), e.rep[layer]
        if rep is None:
            return c
        out = np.zeros(c.ints.size, dtype=object)
        nz = c.nonzero()
        np.add.at(out, rep[nz], c.ints[nz])
        return _Vec(out, c.exp)

    def multiples(self, e: Exact, layer: int, c: _Vec, mask: np.ndarray) -> _Vec:
        """``c`` with its entries under ``mask`` on exact positive multiples (``h_j =
        rho_j h_i``, :mod:`exactcomp.stability.constants`) moved onto ``i``.

        With ``rho_j = c_j + r_j`` (``c_j`` its nearest float64, ``r_j`` the rest, 0 unless
        ``rho_j`` is not dyadic, as ``1/3``): ``a_j h_j = a_j c_j h_i + a_j r_j h_i``; the
        first part moves onto ``i`` exactly, the second is bounded over ``i``'s
        post-activation bounds, rounded outwards to float64 (a unit without finite bounds
        keeps its coefficient).
        """
        if e.multiple[layer] is None:
            return c
        target, near, rest = e.multiple[layer]
        post = e.post[layer]
        mask = mask.copy()
        for j, r in rest.items():
            if not mask[j] or c.ints[j] == 0:
                continue
            if post is None:
                mask[j] = False
                continue
            t, i = c.value(j) * r, int(target[j])
            ends = (t * post.value((0, i)), t * post.value((1, i)))
            lo, hi = outward(min(ends), max(ends))  # dyadic again, as every other term
            self.shift(Fraction(lo), Fraction(hi))
        moved, left = _moved(c, mask, target, near, c.ints.size)
        return c if moved is None else left + moved

    def shift(self, lo: Fraction, hi: Fraction) -> None:
        self.lo, self.hi = self.lo + lo, self.hi + hi

    def passthrough(self, side: str, e: Exact, layer: int, c: _Vec, mask: np.ndarray) -> _Vec:
        """``c`` less its entries under ``mask`` on units that pass a unit of the layer below
        on (``h_j = c_j h_u``, :func:`exactcomp.stability.lattice.passes`), moved onto it."""
        if e.through[layer] is None:
            return c
        moved, rest = _moved(c, mask, *e.through[layer], self.width(e, layer - 1))
        if moved is None:
            return c
        self.add(side, layer - 1, moved)
        return rest

    @staticmethod
    def width(e: Exact, layer: int) -> int:
        return e.b[layer].ints.size

    def opposites(self, side: str, e: Exact, layer: int, c: _Vec, free: np.ndarray) -> _Vec:
        """``c`` less the part of it on pairs of opposite units (``z_v = -z_u``, both in
        ``free``) that the identity ``h_u - h_v = z_u`` moves one layer down exactly.

        With coefficients of opposite signs, ``c_u h_u + c_v h_v = t z_u + (c_u - t) h_u
        + (c_v + t) h_v`` for ``t = sign(c_u) min(|c_u|, |c_v|)``: one of the two is left
        with nothing to bound, the other with less, and ``t z_u`` is linear (``c_v = -c_u``,
        a lattice network's ``relu(a) - relu(-a) = a``, leaves no interval at all).
        """
        opp = e.opp[layer]
        if opp is None:
            return c
        u = np.flatnonzero(free & c.nonzero() & (opp >= 0))
        v = opp[u]
        keep = (u < v) & free[v]
        u, v = u[keep], v[keep]
        if u.size == 0:
            return c
        cu, cv = c.ints[u], c.ints[v]
        t = np.array(
            [
                (1 if a > 0 else -1) * min(abs(a), abs(b)) if a * b < 0 else 0
                for a, b in zip(cu, cv, strict=True)
            ],
            dtype=object,
        )
        if not np.any(t != 0):
            return c
        moved = np.zeros(c.ints.size, dtype=object)
        moved[u] = t
        self.down(side, e, layer, _Vec(moved, c.exp))
        rest = c.ints.copy()
        rest[u] = cu - t
        rest[v] = cv + t
        return _Vec(rest, c.exp)

    def down(self, side: str, e: Exact, layer: int, c: _Vec) -> None:
        """``c . h_layer`` with ``h = W h' + b`` exactly: move it to ``layer - 1``."""
        self.add(side, layer - 1, e.w[layer].rmatmul(c))
        const = c.dot(e.b[layer])
        self.shift(const, const)

    def top(self, side: str) -> int:
        return max(self.coef[side], default=-1)


def interval(c: _Vec, bounds: _Vec | None) -> tuple[Fraction, Fraction]:
    """``min``/``max`` of ``c . v`` over ``bounds[0] <= v <= bounds[1]`` (unbounded if None)."""
    if bounds is None:
        return -np.inf, np.inf  # type: ignore[return-value]
    return c.interval(bounds)


def _split(target: np.ndarray, ratio: np.ndarray) -> tuple:
    """``(target, c, r)`` for :meth:`Form.multiples`: the exact ratios as their nearest
    float64 ``c`` (a dyadic vector) and the non-zero rests ``r = ratio - c`` by unit."""
    near = np.array([float(q) for q in ratio])
    rest = {j: q - Fraction(near[j]) for j, q in enumerate(ratio) if q != Fraction(near[j])}
    return target, _Vec.of(near), rest


def _moved(c: _Vec, mask: np.ndarray, target: np.ndarray, factor: _Vec, width: int):
    """``c``'s entries ``j`` under ``mask`` with ``target[j] >= 0``, moved onto ``target[j]``
    times ``factor[j]`` (a vector of ``width`` entries), and ``c`` less them; ``(None, c)``
    where there are none."""
    idx = np.flatnonzero(c.nonzero() & mask & (target >= 0))
    if idx.size == 0:
        return None, c
    moved = np.zeros(width, dtype=object)
    np.add.at(moved, target[idx], c.ints[idx] * factor.ints[idx])
    rest = c.ints.copy()
    rest[idx] = 0
    return _Vec(moved, c.exp + factor.exp), _Vec(rest, c.exp)
