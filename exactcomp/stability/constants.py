r"""Neurons whose pre-activation is a constant, and exact duplicates, read off the weights.

A structural fact, true on every input (so on every box), proven with no bound and no
tolerance. Layer by layer, the units of ``h_{k-1}`` (the inputs for ``k = 0``) are split into
*classes* of units known to compute the same function, and *null* units known to be
``0`` everywhere. Neuron ``j`` of layer ``k`` then computes

.. math::

    z_{kj} = \sum_{c} \Big( \sum_{i \in c} W_{k,ji} \Big) h_c + b_{kj},

the null units' columns left out (they add ``w \cdot 0``). With ``s_{jc}`` the class sums:

* **constant**: every ``s_{jc} = 0`` exactly: ``z_{kj} = b_{kj}`` on every input, so the
  neuron is INACTIVE if ``b_{kj} \le 0`` (a tie at 0 included: ``relu(0) = 0``) and ACTIVE if
  ``b_{kj} > 0``. Its output is null when it is ``0`` (``b \le 0`` after a ReLU, ``b = 0``
  without one).
* **duplicate**: two neurons with the same sums ``s_{j\cdot}`` and the same bias, equal as
  float64 numbers (``-0.0 = 0.0``), compute the same ``z``, so the same ``h``: one class.
* **multiple**: neuron ``j`` whose sums and bias are those of ``i`` times ``c > 0`` exactly
  (``c`` a rational, not always a float64: ``1/3`` for rows ``3 w`` then ``w``; rows compared
  entry by entry in rational arithmetic) computes ``z_j = c z_i``, so ``h_j = c h_i`` after a
  ReLU (a compressor merges such neurons, with ``c`` rounded to float64).
* **opposite**: neuron ``i`` with the sums and bias of ``j`` negated (``s_{i\cdot} = -s_{j\cdot}``,
  ``b_i = -b_j``; float64 negation is exact) computes ``z_i = -z_j`` on every input. After a
  ReLU, ``h_j - h_i = relu(z_j) - relu(-z_j) = z_j``: the pair passes ``z_j`` on *linearly*
  (a lattice network's identity), which :mod:`exactcomp.verify.differential` uses.

A sum ``s_{jc}`` of two or more weights is used only when float64 computes it exactly, in any
order: with ``2^e`` the smallest unit in the last place among its terms (each term is an
integer multiple of it: its lowest set bit) and ``\sum |w| \le 2^{e+52}`` (the float64 ``\sum |w|`` padded by
``\gamma_n``), every partial sum is an integer multiple of ``2^e`` below ``2^{e+53}`` in
magnitude, which float64 holds exactly. A row with an inexact sum gets a class of its own
and is not constant: fewer facts, never a wrong one. Rows with a non-finite entry, and
sparse layers, are left alone the same way.

Why: a two-level lattice network (VNN-COMP 2022 ``tll``) builds ``min(a, b)`` as
``a - relu(a - b)`` from banks of copies, so some rows are exactly ``a - a``: their
pre-activation is the constant 0, a tie that no bound with a margin proves inactive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..network import Network
from .lattice import Below, passes, signs

__all__ = ["LayerClasses", "constant_bounds", "layer_classes"]

_UNIT = 2.0**-52


@dataclass(frozen=True, eq=False)
class LayerClasses:
    """What the weights prove about layer ``k``'s units: ``label`` (units with equal labels
    compute the same ``z``, so the same ``h``), ``constant`` (``z_j = b_j`` on every input),
    ``null`` (``h_j = 0`` on every input) and ``opposite`` (``opposite[j] = i >= 0``: unit
    ``i`` computes ``z_i = -z_j`` on every input, the first such unit; ``-1``: none known),
    ``floor <= z_j <= ceiling`` on every input (:mod:`exactcomp.stability.lattice`; infinite
    where nothing is known; a unit with ``ceiling <= 0`` after a ReLU is null),
    ``h_j = factor_j h_u`` for ``u = through[j] >= 0`` of the layer below (``None``: none),
    and ``z_j = ratio_j z_i`` (``ratio_j > 0`` a :class:`~fractions.Fraction`, exact) for
    ``i = multiple[j] >= 0`` of the same layer, the first unit of another class (``None``:
    none)."""

    label: np.ndarray
    constant: np.ndarray
    null: np.ndarray
    opposite: np.ndarray
    floor: np.ndarray
    ceiling: np.ndarray
    through: np.ndarray | None = None
    factor: np.ndarray | None = None
    multiple: np.ndarray | None = None
    ratio: np.ndarray | None = None


def layer_classes(net: Network) -> list[LayerClasses]:
    """:class:`LayerClasses` of every layer of ``net``, first to last (module docstring)."""
    n = net.input_size
    label, null = np.arange(n), np.zeros(n, dtype=bool)
    out, below = [], None
    for layer in net.layers:
        m = layer.out_features
        if layer.sparse:
            none, inf = np.full(m, -1), np.full(m, np.inf)
            cls = LayerClasses(np.arange(m), np.zeros(m, bool), np.zeros(m, bool), none, -inf, inf)
            below = None
        else:
            w, b = np.asarray(layer.weight), layer.bias
            sums, exact, units = _class_sums(w, label, null)
            cls, ok = _classes(sums, exact, b, layer.relu)
            if layer.relu and below is not None:
                floor, ceiling = signs(sums, ok, b, units, below)
                cls = replace(cls, floor=floor, ceiling=ceiling, null=cls.null | (ceiling <= 0.0))
                through, factor = passes(sums, ok, b, units, below)
                cls = replace(cls, through=through, factor=factor)
            below = None
            if layer.relu:  # the lattice identity reads h = relu(z) of this layer
                keys = np.hstack([sums, b[:, None]])
                below = Below(keys, ok, cls.opposite, cls.constant, b)
                multiple, ratio = _multiples(keys, ok, cls.label)
                if np.any(multiple >= 0):
                    cls = replace(cls, multiple=multiple, ratio=ratio)
        out.append(cls)
        label, null = cls.label, cls.null
    return out


def constant_bounds(net: Network, k: int, classes: LayerClasses):
    """Exact bounds ``[b, b]`` on the constant pre-activations of layer ``k``, the lattice
    identity's ``[floor, ceiling]`` on others (:mod:`exactcomp.stability.lattice`), infinite
    elsewhere."""
    b = net.layers[k].bias
    c = classes.constant
    return np.where(c, b, classes.floor), np.where(c, b, classes.ceiling)


def _classes(sums, exact, b, relu) -> tuple[LayerClasses, np.ndarray]:
    """The classes, constants, null units and opposites of one layer from its class sums;
    and which rows are exact (``ok``)."""
    m = sums.shape[0]
    ok = exact & np.isfinite(sums).all(axis=1) & np.isfinite(b)
    constant = ok & ~np.any(sums != 0.0, axis=1)
    keys = np.ascontiguousarray(np.hstack([sums, b[:, None]]) + 0.0)  # -0.0 -> 0.0
    rows = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, label_ok = np.unique(rows, return_inverse=True)
    label_out = np.where(ok, label_ok.ravel(), m + np.arange(m))  # inexact rows: on their own
    null_out = constant & ((b <= 0.0) if relu else (b == 0.0))
    inf = np.full(m, np.inf)
    opposite = _opposites(keys, label_out, ok)
    return LayerClasses(label_out, constant, null_out, opposite, -inf, inf), ok


def _opposites(keys: np.ndarray, label: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per unit ``j``, the first unit ``i`` whose key is ``j``'s negated (``z_i = -z_j``),
    or ``-1``; only between rows with exact sums, and never ``j``'s own class (``z = 0``).

    Candidates come from one random projection ``h = keys r`` (a negated row projects to
    ``-h`` up to the round-off of the product, allowed ``1e-9`` of ``|keys| |r|``); each is
    then compared entry for entry, so a projection never makes a pair, it only finds it
    (resnet_2b's 3,072-wide layers: a sort, not a second ``unique`` of every row).
    """
    out = np.full(keys.shape[0], -1)
    live = np.flatnonzero(ok)
    if live.size < 2:
        return out
    r = np.random.default_rng(0).standard_normal(keys.shape[1])
    h, scale = keys[live] @ r, np.abs(keys[live]) @ np.abs(r)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    first = {}
    for i in live:
        first.setdefault(int(label[i]), int(i))
    reach = 1e-9 * scale + 1e-300
    lo = np.searchsorted(hs, -h - reach, side="left")
    hi = np.searchsorted(hs, -h + reach, side="right")
    for pos in np.flatnonzero(hi > lo):
        j = live[pos]
        for c in order[lo[pos] : hi[pos]]:
            i = live[c]
            if label[i] != label[j] and np.array_equal(keys[i], -keys[j]):
                out[j] = first[int(label[i])]
                break
    return out


#: The largest float64: a ratio above it has no finite nearest float64 (:func:`_multiples`).
_LARGEST = Fraction(np.finfo(np.float64).max)


def _multiples(keys: np.ndarray, ok: np.ndarray, label: np.ndarray):
    """``(multiple, ratio)``: per unit ``j``, the first unit ``i`` of another class whose
    key times ``ratio_j > 0`` is ``j``'s exactly (a :class:`~fractions.Fraction`), or ``-1``.

    Candidates come from one random projection of each key divided by the magnitude of its
    first non-zero entry, ``h = k r / |k_lead|``: for ``k_j = c k_i`` exactly both are one
    real number, computed with an error below ``1e-9 |k| |r| / |k_lead|`` (``|k r| <= |k|_2
    |r|_2``, the sum off by ``gamma_n`` of it); each candidate is then compared in fractions,
    so a projection never makes a fact, it only finds it (no copy of the layer is made).
    A ratio whose nearest float64 overflows (keys of ``2^-600`` and ``2^511``: ``2^1111``)
    makes no fact: the differential argument moves that float64 (red28: ``verify`` raised
    ``OverflowError``); the units are then read as two.
    """
    m = keys.shape[0]
    multiple, ratio = np.full(m, -1), np.full(m, Fraction(0), dtype=object)
    nz = keys != 0.0
    live = ok & nz.any(axis=1)
    if np.count_nonzero(live) < 2:
        return multiple, ratio
    lead = np.argmax(nz, axis=1)
    r = np.random.default_rng(1).standard_normal(keys.shape[1])
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        a = np.abs(keys[np.arange(m), lead])
        h = (keys @ r) / a
        reach = 1e-9 * np.sqrt(np.einsum("ij,ij->i", keys, keys)) * np.linalg.norm(r) / a
    live &= np.isfinite(h) & np.isfinite(reach)
    idx = np.flatnonzero(live)
    order = idx[np.argsort(h[idx], kind="stable")]
    hs = h[order]
    lo = np.searchsorted(hs, h[idx] - reach[idx] - 1e-300, side="left")
    hi = np.searchsorted(hs, h[idx] + reach[idx] + 1e-300, side="right")
    first = {}
    for i in idx.tolist():
        first.setdefault(int(label[i]), i)
    for pos, j in enumerate(idx.tolist()):
        cands = sorted(int(i) for i in order[lo[pos] : hi[pos]] if i < j)
        for i in cands[:16]:
            if first[int(label[i])] != i or multiple[i] >= 0 or label[i] == label[j]:
                continue
            c = Fraction(float(keys[j, lead[i]])) / Fraction(float(keys[i, lead[i]]))
            if 0 < c <= _LARGEST and all(
                Fraction(float(v)) == c * Fraction(float(w))
                for v, w in zip(keys[j], keys[i], strict=True)
            ):
                multiple[j], ratio[j] = i, c
                break
    return multiple, ratio


def _class_sums(w: np.ndarray, label: np.ndarray, null: np.ndarray):
    """The class sums ``s`` (one column per class of the live units), per row whether every
    sum is exact (module docstring), and per column the first unit of its class."""
    live = np.flatnonzero(~null)
    classes, inverse = np.unique(label[live], return_inverse=True)
    m = w.shape[0]
    order = np.argsort(inverse, kind="stable")  # the columns class by class
    if classes.size == live.size:  # no two live units share a class: no sum to form
        return w[:, live[order]], np.ones(m, dtype=bool), live[order]
    starts = np.searchsorted(inverse[order], np.arange(classes.size))
    wl = w[:, live[order]]  # no dense membership matrix: a layer's own size at most
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite sum: not ok (caller)
        sums = np.add.reduceat(wl, starts, axis=1)
        total = np.add.reduceat(np.abs(wl), starts, axis=1)
        ulp = _quantum(np.where(np.isfinite(wl), wl, 0.0))
        smallest = np.minimum.reduceat(ulp, starts, axis=1)
        count = np.diff(np.append(starts, live.size)).astype(np.float64)
        fits = total * (1.0 + count * _UNIT) <= np.ldexp(smallest, 52)
    exact = fits | (count <= 1.0) | (total == 0.0)
    return sums, exact.all(axis=1), live[order][starts]


def _quantum(w: np.ndarray) -> np.ndarray:
    """The largest power of two ``2^e`` that each entry is an integer multiple of (the
    value of the lowest set bit of its significand; ``+inf`` for zeros): ``1`` for ``3.0``,
    ``2^-1`` for ``0.5``, ``2^-1074`` at least."""
    mant, ex = np.frexp(w)
    sig = np.abs(np.ldexp(mant, 53)).astype(np.int64)  # the 53-bit significand, exactly
    low = sig & -sig  # its lowest set bit, a power of two (0 for zeros)
    _, bit = np.frexp(low.astype(np.float64))
    e = np.maximum(ex - 53 + bit - 1, -1074)
    return np.where(w != 0.0, np.ldexp(1.0, e), np.inf)
