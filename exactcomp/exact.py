r"""Exact arithmetic on float64 values: a network evaluated with no rounding at all.

Every finite float64 is a dyadic rational :math:`x = M 2^E` with :math:`M` an integer of at
most 53 bits (:func:`dyadic`). An array of them is exactly :math:`\mathbf{M} 2^{E_0}` with
integer entries :math:`M_i 2^{E_i - E_0}` and :math:`E_0 = \min_i E_i` (:func:`scaled_ints`),
so an affine layer :math:`z = W h + b` is computed exactly with Python integers:

.. math::

    W h + b = (\mathbf{W}\mathbf{H}) 2^{E_W + E_h} + \mathbf{B} 2^{E_b}
            = \big((\mathbf{W}\mathbf{H}) 2^{E_W + E_h - E} + \mathbf{B} 2^{E_b - E}\big) 2^{E},
    \qquad E = \min(E_W + E_h, E_b),

and ReLU is :math:`\max(0, \cdot)` on the integers. The result is returned as
:class:`fractions.Fraction`. Used wherever float64 could hide or fabricate a difference: a
counterexample of ``verify`` is confirmed exactly (:mod:`exactcomp.verify.falsify`), merges
and folds are proven exactly (:mod:`exactcomp.rewrite.exact`), and the soak compares
compressions exactly (:mod:`exactcomp.testing.rational`).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .network import Network

__all__ = ["dyadic", "exact_forward", "exact_seconds", "exact_term_scale", "scaled_ints"]

#: CPU seconds per multiply-add of :func:`exact_forward` (:func:`exact_seconds`): on
#: cifar_base_kw (16.8 million for the original and the exact pass's network) the exact
#: difference of :mod:`exactcomp.verify.falsify` took 3.6-3.9 s CPU, 5.3-12 s wall at load
#: 4-6 (RESULTS.md "lossybudget20"); the sampling starts it only where this estimate, times
#: the load it measured, fits before its deadline.
EXACT_MAC_SECONDS = 2.4e-7


def dyadic(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integers ``(M, E)`` with ``a = M * 2**E`` exactly (``|M| < 2^53``; ``M = 0`` for 0).

    ``a`` must be finite (callers check with :func:`np.isfinite` first)."""
    mant, exp = np.frexp(np.asarray(a, dtype=np.float64))
    return np.ldexp(mant, 53).astype(np.int64), exp.astype(np.int64) - 53


def scaled_ints(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(M, E0)`` with ``a = M * 2**E0`` exactly: ``M`` an object array of Python integers
    of ``a``'s shape, ``E0`` one exponent for all of it (0 for an all-zero array)."""
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("a non-finite value has no exact rational value")
    m, e = dyadic(a)
    nonzero = m != 0
    if not nonzero.any():
        return np.zeros(a.shape, dtype=object), 0
    e0 = int(e[nonzero].min())
    shift = np.where(nonzero, e - e0, 0)
    ints = [int(mi) << int(si) for mi, si in zip(m.ravel(), shift.ravel(), strict=True)]
    out = np.empty(a.size, dtype=object)
    out[:] = ints
    return out.reshape(a.shape), e0


def _align(v: np.ndarray, e: int, target: int) -> np.ndarray:
    """``v * 2**(e - target)`` for ``e >= target`` (exact: a left shift)."""
    k = e - target
    return v if k == 0 else np.array([x << k for x in v], dtype=object)


def _affine(w: tuple[np.ndarray, int], b: tuple[np.ndarray, int], h: tuple[np.ndarray, int]):
    (wm, ew), (hm, eh) = w, h
    prod = wm.dot(hm) if wm.size else np.zeros(wm.shape[0], dtype=object)
    return _plus(prod, ew + eh, b)


def _sparse_affine(weight, b: tuple[np.ndarray, int], h: tuple[np.ndarray, int], absolute: bool):
    """:func:`_affine` for a ``scipy.sparse`` CSR matrix: its stored numbers only (a dense
    copy of a large convolution's matrix in Python integers would not fit)."""
    dm, ew = scaled_ints(weight.data)
    if absolute:
        dm = np.abs(dm)
    terms = dm * h[0][weight.indices] if dm.size else dm
    ptr = weight.indptr
    prod = np.empty(weight.shape[0], dtype=object)
    prod[:] = [sum(terms[s:e], 0) for s, e in zip(ptr[:-1], ptr[1:], strict=True)]
    return _plus(prod, ew + h[1], b)


def _plus(prod: np.ndarray, ep: int, b: tuple[np.ndarray, int]):
    """``prod * 2**ep + b`` exactly, with one exponent."""
    bm, eb = b
    e = min(ep, eb)
    return _align(prod, ep, e) + _align(bm, eb, e), e


def _fractions(v: tuple[np.ndarray, int]) -> list[Fraction]:
    m, e = v
    scale = Fraction(2) ** e
    return [Fraction(int(x)) * scale for x in m]


def _run(net: Network, x: np.ndarray, absolute: bool) -> list[Fraction]:
    h = scaled_ints(np.asarray(x, dtype=np.float64).reshape(-1))
    if absolute:
        h = (np.abs(h[0]), h[1])
    for layer in net.layers:
        b = scaled_ints(layer.bias)
        if absolute:
            b = (np.abs(b[0]), b[1])
        if layer.sparse:
            h = _sparse_affine(layer.weight, b, h, absolute)
        else:
            w = scaled_ints(layer.weight)
            h = _affine((np.abs(w[0]), w[1]) if absolute else w, b, h)
        if layer.relu and not absolute:
            h = (np.array([v if v > 0 else 0 for v in h[0]], dtype=object), h[1])
    return _fractions(h)


def exact_forward(net: Network, x: np.ndarray) -> list[Fraction]:
    """``net(x)`` in exact rational arithmetic, for one input ``x`` of float64 values."""
    return _run(net, x, absolute=False)


def exact_seconds(*nets: Network) -> float:
    """The CPU seconds :func:`exact_forward` of each of ``nets`` is expected to take in all:
    :data:`EXACT_MAC_SECONDS` per multiply-add (a matrix held sparse: its stored entries)."""
    macs = sum(
        la.weight.nnz if la.sparse else la.in_features * la.out_features
        for net in nets
        for la in net.layers
    )
    return EXACT_MAC_SECONDS * macs


def exact_term_scale(net: Network, x: np.ndarray) -> list[Fraction]:
    """The exact size of the terms ``net(x)`` sums, per output: ``s_0 = |x|``,
    ``s_k = |W_k| s_{k-1} + |b_k|`` (an upper bound on every partial sum's magnitude)."""
    return _run(net, x, absolute=True)
