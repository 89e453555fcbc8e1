"""Interval arithmetic bounds: the cheapest sound bound, and the fallback of every other.

For ``z = W h + b`` with ``h`` in ``[l, u]``: ``min z = W+ l + W- u + b`` and
``max z = W+ u + W- l + b`` (``W+ = max(W, 0)``, ``W- = min(W, 0)``). Each bound is padded by
``bound_abs + bound_rel * (|W| max(|l|,|u|) + |b|)`` so that float64 rounding cannot make it
too tight (the relative part covers rounding of normal numbers, the absolute part underflow:
see :class:`~exactcomp.tolerances.Tolerances`).

One exact refinement: a row whose every non-zero weight is positive and reads an input with
``l >= 0``, and whose bias is ``>= 0``, has ``z >= 0`` exactly (a sum of non-negative products
is non-negative in real arithmetic, and in floating point too), so its lower bound is raised
to ``0`` without a pad. Such rows are the carry neurons of a skip connection
(:mod:`exactcomp.io.onnx_skip`: ``relu(h) = h`` for a ReLU output ``h``), whose minimum is often
exactly ``0``: a padded bound could never prove them active.
"""

from __future__ import annotations

import numpy as np

from ..domain import Box
from ..network import Layer, Network, is_sparse
from ..tolerances import DEFAULT, Tolerances
from .pool_block import max_pool_blocks

Bounds = tuple[np.ndarray, np.ndarray]


def pad(scale: np.ndarray, tol: Tolerances) -> np.ndarray:
    """The rounding pad for bounds whose terms have absolute sum ``scale``."""
    return tol.bound_abs + tol.bound_rel * scale


def interval_layer(
    layer: Layer, lo: np.ndarray, hi: np.ndarray, tol: Tolerances = DEFAULT
) -> Bounds:
    """Sound bounds on ``z = W h + b`` for ``h`` in ``[lo, hi]`` (the layer's input)."""
    wp, wn = signed_parts(layer)
    with np.errstate(over="ignore", invalid="ignore"):
        zlo = wp @ lo + wn @ hi + layer.bias
        zhi = wp @ hi + wn @ lo + layer.bias
    with np.errstate(over="ignore", invalid="ignore"):
        mag = layer.abs_weight() @ np.maximum(np.abs(lo), np.abs(hi))
        p = pad(mag + np.abs(layer.bias), tol)
        zlo, zhi = zlo - p, zhi + p
    # Overflow (weights near 1e300) gives inf or NaN (inf - inf): widen to the trivial bound.
    zlo = np.where(np.isnan(zlo), -np.inf, zlo)
    zlo = np.where(nonneg_rows(layer, lo, hi), np.maximum(zlo, 0.0), zlo)
    return zlo, np.where(np.isnan(zhi), np.inf, zhi)


def interval_rows(w: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: Tolerances):
    """:func:`interval_layer` for a dense ``W`` on many inputs at once: each row of ``lo, hi``
    (shape (N, n)) is one box of ``h``; returns bounds of shape (N, m), padded the same way."""
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        zlo = lo @ wp.T + hi @ wn.T + b
        zhi = hi @ wp.T + lo @ wn.T + b
        p = pad(np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(w).T + np.abs(b), tol)
        zlo, zhi = zlo - p, zhi + p
    return np.where(np.isnan(zlo), -np.inf, zlo), np.where(np.isnan(zhi), np.inf, zhi)


def minus(a, b):
    """``a - b`` for two matrices of one shape, dense or ``scipy.sparse`` (kept sparse when
    either is)."""
    if is_sparse(a) != is_sparse(b):
        from scipy import sparse

        a, b = sparse.csr_array(a), sparse.csr_array(b)
    return a - b


def signed_parts(layer: Layer):  # two ndarrays, or two scipy.sparse matrices
    """``(W+, W-)`` = ``(max(W, 0), min(W, 0))`` entry by entry, in ``W``'s storage (a sparse
    layer, :attr:`~exactcomp.network.Layer.sparse`, stays sparse)."""
    w = layer.weight
    if layer.sparse:
        return w.maximum(0.0), w.minimum(0.0)
    return np.maximum(w, 0.0), np.minimum(w, 0.0)


def nonneg_rows(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows ``j`` with ``z_j >= 0`` exactly for every input in ``[lo, hi]``: ``b_j >= 0`` and
    each non-zero ``w_ji`` positive with ``lo_i >= 0`` (see the module docstring). Rows that
    may be identically ``0`` (``b_j = 0`` and no positive weight on an input with ``hi_i > 0``)
    are left out: ``z = 0`` is INACTIVE by convention, and a bound proving both signs is a doubt
    (:func:`~exactcomp.verdicts.stable_masks`)."""
    w = layer.weight
    pos = (w > 0).astype(np.float64)
    negative = np.asarray((w < 0).astype(np.float64) @ np.ones(w.shape[1]))
    below = np.asarray(pos @ (~(lo >= 0)).astype(np.float64))
    lively = np.asarray(pos @ (hi > 0).astype(np.float64))
    b = layer.bias
    return (negative == 0) & (below == 0) & (b >= 0) & ((b > 0) | (lively > 0))


def activation_bounds(layer: Layer, zb: Bounds) -> Bounds:
    """Bounds on the layer's output ``h`` given bounds on its pre-activation ``z``."""
    lo, hi = zb
    if layer.relu:
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    return lo, hi


def input_magnitudes(network: Network, box: Box, pre: list[Bounds]) -> list[np.ndarray]:
    """``max |h_k|`` on ``box`` for the input (``k = 0``) and each hidden layer's output, from
    sound pre-activation bounds ``pre`` (one per layer; the last one unused): the input
    magnitudes of every layer that :func:`~exactcomp.tolerances.stored_rounding_bound` takes."""
    mags = [np.maximum(np.abs(box.lower), np.abs(box.upper))]
    for layer, zb in zip(network.layers[:-1], pre, strict=False):
        lo, hi = activation_bounds(layer, zb)
        mags.append(np.maximum(np.abs(lo), np.abs(hi)))
    return mags


def intersect(a: Bounds, b: Bounds | None) -> Bounds:
    """The tighter of two sound bounds (both hold, so their intersection holds)."""
    if b is None:
        return a
    return np.maximum(a[0], b[0]), np.minimum(a[1], b[1])


def interval_bounds(
    network: Network,
    box: Box,
    prior: list[Bounds | None] | None = None,
    tol: Tolerances = DEFAULT,
) -> list[Bounds]:
    """Pre-activation bounds of every layer; ``prior[k]``, if given, are already-proven bounds
    of layer ``k`` that are intersected in before propagating further (progressive tightening).
    A checked max-pool block's outputs also get the maxima of its windows' input bounds
    (:mod:`exactcomp.bounds.pool_block`)."""
    box.check_size(network.input_size)
    blocks = max_pool_blocks(network)
    lo, hi = box.lower, box.upper
    inputs: list[Bounds] = []
    out: list[Bounds] = []
    for k, layer in enumerate(network.layers):
        inputs.append((lo, hi))
        zb = interval_layer(layer, lo, hi, tol)
        if k in blocks:  # a max-pool's outputs: the maxima of its windows' bounds
            zb = intersect(zb, blocks[k].bounds(*inputs[blocks[k].first]))
        if prior is not None and k < len(prior):
            zb = intersect(zb, prior[k])
        out.append(zb)
        lo, hi = activation_bounds(layer, zb)
    return out
