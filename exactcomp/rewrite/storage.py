r"""The dtype ``compress --tol`` writes: the final network rounded to the model's, then proven again.

The lossy search runs on ``f_exact``, the exact pass's network, whose folds multiply float32
weights: its numbers, and those of the search's final network :math:`g`, are float64 in
general, and a file holding :math:`g` as it is would take twice the bytes of a float32
model. What the written file holds is what is proven, so :math:`g` is not written in float32
under :math:`g`'s claim. Instead :math:`g_r = \mathrm{round}(g)` (every weight and bias to the
model's dtype, float32 or float16) gets a claim of its own, by the same proof on
:math:`g_r` (:class:`~exactcomp.verify.charge.Charger`, passed in). It is kept when that
claim is within ``tol``; otherwise :math:`g` and its float64 claim stay, and the report says
why (``stored_dtype``, ``stored_dtype_reason``). A second claim of :math:`g_r` needs no solver:
by the triangle inequality :math:`\max|f - g_r| \le \max|f - g| + \max|g - g_r|`, the
search's claim plus :math:`E`, the proven bound of
:func:`~exactcomp.tolerances.stored_rounding_bound` on what the actual rounding errors move
the outputs (a few ``1e-6`` where the rounded network's own proof, a looser pass than the
search's joint LP, came out 0.2024 against a claim of 0.1401 at ``tol`` 0.2: VNN-COMP's
dubinsrejoin, written in float64 at twice the bytes); the smaller claim is kept (dense layers
without factors or merges, whose pads are their own; not for a claim of 0, an unedited
result, whose float64 network stays the input's function: ``LossyResult.save``). The search itself stays in float64: only the
final network and its claim change.

A low-rank outcome (:mod:`exactcomp.rewrite.lowrank`) stores factors: they are rounded,
the proven layer becomes the float64 product :math:`\mathrm{fl}(U_r V_r)` of the rounded
factors (with the rows of ``U`` and columns of ``V`` the greedy zeroed zeroed again), and the
claim is the proof of that network plus its
:func:`~exactcomp.rewrite.lowrank.rounding_pad`, as for any low-rank outcome. Merges
(:mod:`exactcomp.rewrite.merging`): each merged row is set again to its multiple as the dtype
stores it (:func:`~exactcomp.rewrite.merging.restore_rows`) before that proof, and the claim
adds their :func:`~exactcomp.rewrite.merging.fold_pad`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ..bounds.interval import input_magnitudes, interval_bounds
from ..domain import Box
from ..network import Layer, Network
from ..tolerances import stored_rounding_bound
from . import merging
from .lossy import LossyOutcome
from .lowrank import dense_product, expand, rounding_pad, written_frozen

#: The model dtypes the final network is rounded to (a float64 model keeps float64).
ROUNDED_DTYPES: tuple[str, ...] = ("float32", "float16")


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a``'s numbers rounded to ``dtype`` (to nearest), held as float64."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def holds(net: Network, dtype: str, skip: frozenset[int] = frozenset()) -> bool:
    """True when every weight and bias of ``net`` (biases only in the layers of ``skip``)
    is a number of ``dtype``."""
    return all(
        np.array_equal(rounded(a, dtype), a)
        for k, la in enumerate(net.layers)
        for a in (
            (la.bias,) if k in skip else (la.weight.data if la.sparse else la.weight, la.bias)
        )
    )


def round_outcome(out: LossyOutcome, dtype: str) -> LossyOutcome:
    """``out`` with its network (and low-rank factors) rounded to ``dtype``; ``proven`` is
    left as it was (not a claim of the result: :func:`store` proves it again). Raises
    ``ValueError`` when a number overflows ``dtype`` or the rounded factors do not
    reproduce the proven product."""
    by_layer = {fa.layer: fa for fa in out.factors}
    layers, factors = [], []
    for k, la in enumerate(out.network.layers):
        fa = by_layer.get(k)
        if la.sparse:  # never edited (the original's numbers): kept, or not rounded at all
            if not np.array_equal(rounded(la.weight.data, dtype), la.weight.data):
                raise ValueError(f"layer {k} is held sparse and its numbers are not {dtype}")
            layers.append(Layer(la.weight, rounded(la.bias, dtype), la.relu, la.structure))
            continue
        if fa is None:
            w = rounded(la.weight, dtype)
        else:
            u, v = rounded(fa.u, dtype), rounded(fa.v, dtype)
            factors.append(replace(fa, u=u, v=v, bias=rounded(fa.bias, dtype)))
            u, v = u.copy(), v.copy()
            u[~la.weight.any(axis=1)] = 0.0  # the rows and columns the greedy zeroed
            v[:, ~la.weight.any(axis=0)] = 0.0
            w = dense_product(u, v)
        b = rounded(la.bias, dtype)
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {k}: a number overflows {dtype}")
        layers.append(Layer(w, b, la.relu))
    net = Network(tuple(layers), dtype=dtype, meta=dict(out.network.meta))
    if factors:
        expand(net, factors)  # raises ValueError unless the factors reproduce the product
    return replace(out, network=net, factors=factors)


def store(
    out: LossyOutcome,
    dtype: str,
    tol: float,
    prove: Callable[[Network], float],
    boxes: Sequence[Box],
    prove_harder: Callable[[Network], float] | None = None,
    harder_above: float | None = None,
) -> tuple[LossyOutcome, dict]:
    """The outcome to write and the report's ``stored_dtype`` keys (module docstring).

    ``dtype``: the model's; ``prove(g)``: a sound bound of ``max |f - g|`` on the domain
    (the claim's proof); ``prove_harder``: a tighter, costlier one, run when ``prove`` does
    exceed ``harder_above`` (default ``out.proven``: the joint LP where the search's claim used
    it; ``tol`` where a tighter claim of the result follows anyway). The rounded
    outcome's ``proven`` is its own proof (plus the rounding pad of its factors, if any);
    when that exceeds ``tol``, or rounding fails, ``out`` is returned unchanged with a
    ``stored_dtype_reason``."""
    frozen = frozenset(fa.layer for fa in out.factors)
    same = out.network.dtype == dtype and holds(out.network, dtype, frozen)
    same = same and all(np.array_equal(rounded(a, dtype), a) for fa in out.factors
                        for a in (fa.u, fa.v))  # fmt: skip
    if dtype not in ROUNDED_DTYPES or same:
        return out, {"stored_dtype": out.network.dtype}
    try:
        r = round_outcome(out, dtype)
    except ValueError as exc:
        return _kept(out, f"not rounded to {dtype}: {exc}")
    pad = 0.0
    if r.factors:
        pad = rounding_pad(r.network, written_frozen(r.network, r.factors), boxes)
    if r.merges:  # merged rows made exact multiples again in dtype (proven below), their pad
        r = replace(r, network=merging.restore_rows(r.network, r.merges))
        r = replace(r, merges=merging.foldable(r.network, r.merges))
        pad += merging.fold_pad(r.network, r.merges, boxes)
    bound = prove(r.network) + pad
    limit = out.proven if harder_above is None else harder_above
    if bound > limit and prove_harder is not None:
        bound = min(bound, prove_harder(r.network) + pad)
    if not bound <= tol and out.proven > 0 and not (r.factors or r.merges):
        bound = min(bound, out.proven + rounding_moves(out.network, r.network, boxes))
    if not bound <= tol:
        return _kept(out, f"the {dtype} network is proven within {bound:.6g} > tol {tol:g}")
    return replace(r, proven=bound), {"stored_dtype": dtype}


def rounding_moves(g: Network, g_r: Network, boxes: Sequence[Box]) -> float:
    """A proven bound of ``max |g - g_r|`` over ``boxes``, ``g_r`` the layer-by-layer rounding
    of ``g`` (:func:`~exactcomp.tolerances.stored_rounding_bound` with the actual errors);
    ``inf`` for a layer held sparse or a bound that is not finite."""
    if any(la.sparse for la in g_r.layers):
        return float("inf")
    pairs = [(la.weight, la.bias) for la in g_r.layers]
    deltas = [
        (np.abs(a.weight - b.weight), np.abs(a.bias - b.bias))
        for a, b in zip(g.layers, g_r.layers, strict=True)
    ]
    worst = 0.0
    for box in boxes:
        mags = input_magnitudes(g_r, box, interval_bounds(g_r, box))
        worst = max(worst, float(np.max(stored_rounding_bound(pairs, deltas, mags), initial=0.0)))
    return worst if np.isfinite(worst) else float("inf")


def _kept(out: LossyOutcome, reason: str) -> tuple[LossyOutcome, dict]:
    """``out`` kept unrounded, labelled float64 (a writer stores a network in its label's
    dtype: a float32 label would round the numbers whose claim this is; the exact pass's
    network, merged copies included, carries the model's label: red28), and the report's keys."""
    if out.network.dtype in ROUNDED_DTYPES:
        net = out.network
        out = replace(out, network=Network(net.layers, dtype="float64", meta=dict(net.meta)))
    return out, {"stored_dtype": out.network.dtype, "stored_dtype_reason": reason}
