r"""Low-rank layers: a lossy candidate of ``compress --tol`` that replaces :math:`W_k` by :math:`UV`.

A dense layer :math:`z = W h + b` (``out x in``) becomes two: :math:`t = V h` (``r x in``,
no bias, no ReLU) then :math:`z = U t + b'` (``out x r``, the layer's ReLU). It saves
:math:`\mathit{out} \cdot \mathit{in} - r (\mathit{out} + \mathit{in})` parameters, so only
ranks :math:`r < \mathit{out} \cdot \mathit{in} / (\mathit{out} + \mathit{in})` are tried.

**The factors.** A weighted truncated SVD: with :math:`c_j` the width of input ``j``'s proven
range on the domain and :math:`s_i = \|W_{k+1}[:, i]\|_1` (1 for the last layer),
:math:`\mathrm{diag}(s)\, W \mathrm{diag}(c) \approx A B` (rank ``r``), then
:math:`U = \mathrm{diag}(s)^{-1} A`, :math:`V = B \mathrm{diag}(c)^{-1}`, both rounded to the
model's dtype (float32 for a float32 checkpoint: what the file stores is what is proven). The
weights make the error :math:`E = W - UV` small where the differential proof charges it:
:math:`|E_{ij}|` times input ``j``'s range times what layer ``k+1`` amplifies output ``i``
by (measured on the digits model: the proven bound 6-14 % below the plain SVD's at ranks
30-50 of the middle layer; least squares on 4,000 uniform samples of the layer's input, the
SVD of :math:`W C^{1/2}` with :math:`C` their second moments, samples 25-65 % lower errors
at ranks 10-40 but proves up to 7 % higher ones: 24.6 against 23.0 at rank 40). The bias is
kept: moving the error at the inputs' midpoint into it (centring) made both the proven and the
sampled error larger there (28.23 against 28.16, 1.34 against 1.12 at rank 30).

**The proof.** The proven network is ``g_dense``: the same architecture as ``f`` with
:math:`W_k := \mathrm{fl}(UV)`, the float64 product of the stored factors
(:func:`dense_product`, entry by entry in a fixed order, so zeroing a row of ``U`` or a
column of ``V`` zeroes that row or column of the product and leaves every other entry as it
was). The differential verifier pairs its neurons with ``f``'s
(:class:`~exactcomp.verify.charge.Charger`). The written network computes :math:`UV` in real
arithmetic, within :math:`\Delta_k = ` :func:`~exactcomp.tolerances.product_rounding_delta`
of :math:`\mathrm{fl}(UV)` entry by entry; :func:`rounding_pad` bounds what that changes in
the outputs (:func:`~exactcomp.tolerances.stored_rounding_bound`, the magnitudes of
``g_dense``'s layer inputs by interval bounds) and every bound this module returns is
``Charger.proven(g_dense) + pad``: :math:`|f - g| \le |f - g_\text{dense}| + |g_\text{dense} -
g|`.

**The choice.** Layers by the most parameters they can save first; per layer the smallest
rank whose whole network (the factors chosen before it included) is proven within the
budget, by bisection on the proven bound (cheap symbolic proofs; a rank that fails is never
taken, whatever the bisection assumed about monotonicity, since every accepted rank was
proven). The greedy candidates of :mod:`exactcomp.rewrite.lossy` then run on the result with
the factored layers *frozen* (no weight of :math:`UV` is zeroed: that would not be a product
any more; a neuron of a factored layer or of the one before it may still go, as a row of
``U`` or a column of ``V``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..bounds.interval import input_magnitudes, interval_bounds
from ..domain import Box
from ..network import Layer, Network
from ..tolerances import product_rounding_delta, stored_rounding_bound
from .acceptance import Gate
from .edits import is_float32, relu_ranges
from .lossy import LossyOutcome, search

#: Of ``compress --tol``'s tolerance: at most this share goes to the ranks, the greedy
#: candidates spend the rest (on top of the factored network).
LOWRANK_SHARE = 0.5
#: The column and row weights of the SVD are floored at this share of their largest, so
#: that an input of (nearly) constant value cannot blow up the unscaled factors.
WEIGHT_FLOOR = 1e-3


@dataclass(frozen=True)
class Factor:
    """Layer ``layer`` as ``U V`` (``u``: out x r, ``v``: r x in, numbers of the model's
    dtype held as float64) with bias ``bias`` (the original's); ``charge``: the proven bound
    of the whole when it was chosen."""

    layer: int
    u: np.ndarray
    v: np.ndarray
    bias: np.ndarray
    charge: float = float("nan")

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def full_rank(self) -> int:
        return int(min(self.u.shape[0], self.v.shape[1]))

    @property
    def saved(self) -> int:
        out, inp = self.u.shape[0], self.v.shape[1]
        return out * inp - self.rank * (out + inp)


def dense_product(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``u @ v`` in float64 summed term by term in a fixed order (no BLAS blocking), so each
    entry depends on its own row of ``u`` and column of ``v`` only and its rounding is bounded
    by :func:`~exactcomp.tolerances.product_rounding_delta`."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    out = np.zeros((u.shape[0], v.shape[1]))
    for k in range(u.shape[1]):
        out += np.multiply.outer(u[:, k], v[k])
    return out


def max_rank(out: int, inp: int) -> int:
    """The largest rank that saves at least one parameter (0: none does, e.g. a layer the
    exact pass emptied: the soak's conv-compress cases 16 and 20)."""
    if out == 0 or inp == 0:
        return 0
    return max((out * inp - 1) // (out + inp), 0)


def weighted_svd(
    f: Network, k: int, in_lo: np.ndarray, in_hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The factors of every rank of layer ``k`` of ``f`` at once, by the weighted SVD of the
    module docstring: ``(diag(s)^-1 A, B diag(c)^-1)`` in float64, whose first ``r`` columns
    and rows are rank ``r``'s; ``[in_lo, in_hi]``: a sound range of the layer's input on the
    domain. One decomposition serves every rank of the bisection (on resnet_2b's 2,048 x
    3,072 layers each took seconds, once per rank tried before: RESULTS.md "wide22")."""
    layer = f.layers[k]
    w = layer.weight
    width = np.asarray(in_hi - in_lo, dtype=np.float64)
    col = np.maximum(width, WEIGHT_FLOOR * max(float(width.max(initial=0.0)), 1e-300))
    if k + 1 < len(f.layers):
        row = np.abs(f.layers[k + 1].weight).sum(axis=0)
        row = np.maximum(row, WEIGHT_FLOOR * max(float(row.max(initial=0.0)), 1e-300))
    else:
        row = np.ones(layer.out_features)
    a, s, bt = np.linalg.svd(row[:, None] * w * col[None, :], full_matrices=False)
    return (a * s) / row[:, None], bt / col[None, :]


def factorize(
    f: Network,
    k: int,
    r: int,
    in_lo: np.ndarray,
    in_hi: np.ndarray,
    dtype: type,
    svd: tuple[np.ndarray, np.ndarray] | None = None,
) -> Factor:
    """Layer ``k`` of ``f`` at rank ``r``, rounded to ``dtype``: the first ``r`` columns and
    rows of ``svd`` (:func:`weighted_svd`, computed here when not given)."""
    us, vs = svd if svd is not None else weighted_svd(f, k, in_lo, in_hi)
    u = us[:, :r].astype(dtype).astype(np.float64)
    v = vs[:r].astype(dtype).astype(np.float64)
    return Factor(k, u, v, np.array(f.layers[k].bias))


def with_factors(f: Network, factors: Sequence[Factor]) -> Network:
    """``g_dense``: ``f`` with each factored layer's weight the float64 product of its factors
    and its bias the factor's (the same architecture: the network that is proven)."""
    layers = list(f.layers)
    for fa in factors:
        la = layers[fa.layer]
        layers[fa.layer] = Layer(dense_product(fa.u, fa.v), fa.bias, la.relu)
    return f.replace_layers(layers)


def rounding_pad(g: Network, frozen: dict[int, tuple[np.ndarray, np.ndarray]], boxes) -> float:
    r"""A sound bound of :math:`\max_D \|g - g^*\|_\infty`, ``g^*`` the network ``g`` with each
    layer ``k`` of ``frozen`` (``k -> (U, V)``, ``g``'s weight there being
    :func:`dense_product` of them) computing the real product :math:`UV` instead (module
    docstring); 0 when nothing is frozen."""
    if not frozen:
        return 0.0
    worst = 0.0
    first = min(frozen)  # e_k = 0 before it (no delta there): start at it (no sparse layer)
    for box in boxes:
        mags = input_magnitudes(g, box, interval_bounds(g, box))[first:]
        deltas = []
        for k, la in enumerate(g.layers[first:], start=first):
            dw = product_rounding_delta(*frozen[k]) if k in frozen else np.zeros(la.weight.shape)
            deltas.append((dw, np.zeros(la.out_features)))
        pairs = [(la.weight, la.bias) for la in g.layers[first:]]
        e = stored_rounding_bound(pairs, deltas, mags)
        worst = max(worst, float(np.max(e, initial=0.0)))
    return worst if np.isfinite(worst) else float("inf")


def proven(charger, g: Network, frozen: dict, boxes, **kw) -> float:
    """``charger.proven(g) + rounding_pad``: the bound for the written, factored network."""
    return charger.proven(g, **kw) + rounding_pad(g, frozen, boxes)


def frozen_of(factors: Sequence[Factor]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {fa.layer: (fa.u, fa.v) for fa in factors}


def input_range(boxes: Sequence[Box], ranges, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A sound range of layer ``k``'s input on the union of ``boxes``: the boxes' hull for
    ``k = 0``, else ``ranges[k - 1]`` (``ranges``: sound ranges of every layer's output,
    :func:`exactcomp.rewrite.edits.relu_ranges`)."""
    if k == 0:
        return np.min([b.lower for b in boxes], axis=0), np.max([b.upper for b in boxes], axis=0)
    return ranges[k - 1]


def choose(
    f: Network,
    charger,
    boxes: Sequence[Box],
    budget: float,
    ranges: Sequence[tuple[np.ndarray, np.ndarray]],
    dtype: type,
) -> list[Factor]:
    """Per layer (most parameters saved first) the smallest rank proven within ``budget``
    with the factors chosen before it (module docstring); ``ranges``: sound ranges of every
    layer's output on the domain (:func:`exactcomp.rewrite.edits.relu_ranges`)."""
    order = sorted(
        range(len(f.layers)),
        key=lambda k: -f.layers[k].out_features * f.layers[k].in_features,
    )
    chosen: list[Factor] = []
    per_flop = 0.0  # seconds per multiply-add of the last decomposition (none yet)
    for k in order:
        la = f.layers[k]
        top = max_rank(la.out_features, la.in_features)
        if top < 1 or la.sparse or la.structure is not None:
            continue
        cost = float(la.out_features) * la.in_features * min(la.out_features, la.in_features)
        if not _fits(charger, per_flop * cost):  # nor its SVD, nor a proof after it
            break
        lo_in, hi_in = input_range(boxes, ranges, k)
        t = time.perf_counter()
        svd = weighted_svd(f, k, lo_in, hi_in)
        per_flop = (time.perf_counter() - t) / cost
        best, lo, hi = None, 1, top
        while lo <= hi and _fits(charger, 0.0):  # the smallest proven rank, by bisection
            r = (lo + hi) // 2
            fa = factorize(f, k, r, lo_in, hi_in, dtype, svd)
            trial = [*chosen, fa]
            bound = proven(charger, with_factors(f, trial), frozen_of(trial), boxes)
            if bound <= budget:  # only proven ranks are kept
                best, hi = Factor(k, fa.u, fa.v, fa.bias, bound), r - 1
            else:
                lo = r + 1
        if best is not None:
            chosen.append(best)
    return sorted(chosen, key=lambda fa: fa.layer)


def _fits(charger, seconds: float) -> bool:
    """True when ``seconds`` of work and then one proof end by the end of ``charger``, a
    :class:`~exactcomp.rewrite.acceptance.Gate` (any other charger: always). The rank
    bisection stops there: no SVD or proof is started past its phase's end, where before
    the SVDs went on (each refused proof only moved the bisection on)."""
    if not isinstance(charger, Gate):
        return True
    return time.perf_counter() + seconds + charger.seconds <= charger.end


def rank_proofs(f: Network) -> int:
    """The proofs :func:`choose`'s bisections make at most: per layer it tries,
    ``bit_length(top)`` for ranks ``1..top`` (the greedy search after them not counted)."""
    return sum(
        max_rank(la.out_features, la.in_features).bit_length()
        for la in f.layers
        if not la.sparse and la.structure is None
    )


def expand(g: Network, factors: Sequence[Factor]) -> Network:
    """The written network of ``g`` (a ``g_dense`` after the greedy edits): each factored
    layer as ``Layer(V, 0, relu=False)`` then ``Layer(U, b, relu)``, with the rows of ``U``
    whose row of ``g``'s weight is zero, and the columns of ``V`` whose column is, zeroed.
    Raises ``ValueError`` unless the product of the factors written is ``g``'s weight exactly
    (then the proof of ``g`` plus :func:`rounding_pad` holds for what is written)."""
    by_layer = {fa.layer: fa for fa in factors}
    out: list[Layer] = []
    for k, la in enumerate(g.layers):
        fa = by_layer.get(k)
        if fa is None:
            out.append(la)
            continue
        u, v = np.array(fa.u), np.array(fa.v)
        u[~la.weight.any(axis=1)] = 0.0
        v[:, ~la.weight.any(axis=0)] = 0.0
        if not np.array_equal(dense_product(u, v), la.weight):
            raise ValueError(f"layer {k}: the factors do not reproduce the proven product")
        out.append(Layer(v, np.zeros(v.shape[0]), False))
        out.append(Layer(u, la.bias, la.relu))
    return g.replace_layers(out)


def written_frozen(g: Network, factors: Sequence[Factor]) -> dict:
    """``k -> (U, V)`` of :func:`expand`'s factors for ``g`` (for :func:`rounding_pad`)."""
    net = expand(g, factors)
    frozen, shift = {}, 0
    for k in range(len(g.layers)):
        if any(fa.layer == k for fa in factors):
            frozen[k] = (net.layers[k + shift + 1].weight, net.layers[k + shift].weight)
            shift += 1
    return frozen


def rank_facts(f: Network, factors: Sequence[Factor]) -> list[dict]:
    """Per layer of ``f``: ``rank`` ("r of min(out, in)", or "-") and the proven bound when
    its rank was chosen (``rank_charge``, None when not factored)."""
    by_layer = {fa.layer: fa for fa in factors}
    facts = []
    for k, la in enumerate(f.layers):
        fa = by_layer.get(k)
        full = min(la.out_features, la.in_features)
        facts.append(
            {
                "rank": "-" if fa is None else f"{fa.rank} of {full}",
                "rank_charge": None if fa is None else fa.charge,
            }
        )
    return facts


def search_lowrank(
    f: Network, boxes: Sequence[Box], eps: float, charger, **search_options
) -> LossyOutcome | None:
    """The low-rank strategy of ``compress --tol``: ranks chosen within
    :data:`LOWRANK_SHARE` of ``eps`` (:func:`choose`), then the greedy search
    (:func:`exactcomp.rewrite.lossy.search`, ``search_options``) on the factored network with
    its layers frozen, within ``eps`` less room for the rounding pad. None when no rank saves
    anything within the budget (then it costs a few symbolic proofs) or when the result is not
    proven within ``eps`` with its pad. The outcome's ``proven`` is the proof of the written
    network (the search's proof of ``g_dense`` plus :func:`rounding_pad`), its ``factors``
    those of the written network (:func:`expand`)."""
    ranges = relu_ranges(f, charger)
    dtype = np.float32 if is_float32(f) else np.float64
    factors = choose(f, charger, boxes, LOWRANK_SHARE * eps, ranges, dtype)
    if not factors:
        return None
    start = with_factors(f, factors)
    room = 4.0 * rounding_pad(start, frozen_of(factors), boxes) + 1e-12 * eps
    frozen = frozenset(fa.layer for fa in factors)
    out = search(f=start, boxes=boxes, eps=eps - room, charger=charger, frozen=frozen,
                 **search_options)  # fmt: skip
    try:
        pad = rounding_pad(out.network, written_frozen(out.network, factors), boxes)
    except ValueError:
        return None  # the edits broke the product: never written (cannot happen, see expand)
    if out.proven + pad > eps:
        return None
    facts = [{**row, **rank} for row, rank in zip(out.layers, rank_facts(f, factors), strict=True)]
    return replace(out, proven=out.proven + pad, layers=facts, factors=list(factors))
