r"""Lossy merge candidates: neuron ``j`` of a ReLU layer folded into a near-parallel neuron ``i``.

Maths
-----
Layer ``k`` (hidden, ReLU) has pre-activations :math:`z = W_k h_{k-1} + b_k`. For neurons
:math:`j \ne i` and a scale :math:`\alpha > 0` (never :math:`\alpha \le 0`: ReLU is only
*positively* homogeneous, :math:`\alpha\,\mathrm{relu}(z) = \mathrm{relu}(\alpha z)` needs
:math:`\alpha \ge 0`), the edit is made in two steps.

1. **Proven** (``P``, the architecture kept, so the differential verifier compares ``P`` with
   ``f`` neuron by neuron, as for every lossy edit of :mod:`exactcomp.rewrite.lossy`): row and
   bias of ``j`` become :math:`\alpha` times ``i``'s, and :math:`c\, W_{k+1}[:, j]` moves into
   :math:`b_{k+1}`. Neuron ``j`` of ``P`` computes :math:`\mathrm{relu}(\alpha z_i)`; the
   verifier bounds its difference from ``f``'s :math:`\mathrm{relu}(z_j)` through
   :math:`d = z_j - \alpha z_i`, a linear function of :math:`h_{k-1}`, which is what it is
   tight on. (Folding first and proving ``f`` against the folded network does not work: the
   verifier relaxes :math:`\mathrm{relu}(z_j)` and :math:`\mathrm{relu}(z_i)` separately and
   charges both triangles even when :math:`z_j = 2 z_i` exactly.)
2. **Folded** (``G``, written; :func:`fold`): :math:`W_{k+1}[:, i] \mathrel{+}= \alpha
   W_{k+1}[:, j]` and ``j`` dropped. In real arithmetic ``G = P`` on every input, since
   :math:`\mathrm{relu}(\alpha z_i) = \alpha\,\mathrm{relu}(z_i)`; the float rounding of the
   stored row :math:`\alpha w_i` and of the folded column is bounded by :func:`fold_pad`
   (:func:`~exactcomp.tolerances.stored_rounding_bound`), and the claim of ``G`` is one proof
   of the whole ``P`` plus that pad, as for the low-rank factors
   (:func:`~exactcomp.rewrite.lowrank.rounding_pad`). A fold is made only where ``P``'s row
   ``j`` is still exactly the stored multiple of row ``i`` (:func:`foldable`: a later edit of
   ``i`` leaves ``j`` a neuron of its own, unfolded).

**Local charge** (ranking only). With every other neuron as in ``f``, the change of
:math:`z_{k+1}` is :math:`-W_{k+1}[:, j]\,(e - c)`, :math:`e = \mathrm{relu}(z_j) -
\mathrm{relu}(\alpha z_i)`. ReLU is monotone and 1-Lipschitz, so with :math:`d \in [L, U]` on
the domain, :math:`e \in [\min(0, L), \max(0, U)]`; also :math:`e \in [a_j - \alpha b_i, b_j -
\alpha a_i]` from the proven output ranges :math:`[a, b]` of the two neurons. On the
intersection :math:`[E_-, E_+]` the centring :math:`c = (E_- + E_+)/2` gives the charge

.. math::

    \|W_{k+1}[:, j]\|_1\, (E_+ - E_-) / 2

(the unit of the neuron -> constant edit, whose charge is this with :math:`\alpha = 0`).
:math:`[L, U]` is bounded by back-substitution (CROWN,
:func:`exactcomp.bounds.linear.linear_layer_bounds`, its float64 pad included) through ``f``'s
first ``k`` layers with ``f``'s proven bounds of them, on each box (the union over boxes). A
pair whose difference row :math:`w_j - \alpha w_i,\ b_j - \alpha b_i` is zero in exact
(rational) arithmetic is charged 0: the merge is exact.

**Pairs and scales**: the :data:`PARTNERS` rows of layer ``k`` (weights and bias) most
cosine-similar to row ``j`` (cosine > 0), each with the scales fitted by least squares on
:data:`SAMPLES` seeded uniform points of the boxes (of the pre-activations and of the ReLU
outputs, times :data:`SPREAD`) and the ratio of the rows at ``w_i``'s largest entry (exact on
parallel rows); non-positive scales are dropped, the others rounded to float32 (so that
:math:`\alpha w_i` of float32 weights is exact in float64). The pair and scale with the
smallest charge is the candidate of neuron ``j``; the search uses it instead of ``j``'s
neuron -> constant edit where it is charged less (:func:`~exactcomp.rewrite.lossy.with_merges`).

What is kept is decided by one proof of the whole network against the original
(:mod:`exactcomp.rewrite.lossy`), never by a sum of charges.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..bounds.interval import (
    activation_bounds,
    input_magnitudes,
    interval_bounds,
    interval_layer,
)
from ..bounds.linear import linear_layer_bounds
from ..domain import Box
from ..network import Layer, Network
from ..tolerances import stored_rounding_bound

PARTNERS = 4  # most cosine-similar rows tried per neuron
SAMPLES = 2048  # seeded uniform points for the least-squares scales
SPREAD = (0.8, 0.9, 1.0, 1.1, 1.25)  # multiples of each least-squares scale tried
MAX_WIDTH = 4096  # wider layers get no merges (the cosine matrix is quadratic)
#: Bytes of one chunk of the proposals' difference rows (float64, as wide as the widest layer
#: their bounds go through): resnet_2b's 82,210 proposals of a 2,048-wide input were one
#: 1.25 GiB array, several with the bounds' temporaries (out of memory under 8 GB; RESULTS.md
#: "wide22"). Each row's bounds are its own, so the chunks change no bound.
CHUNK_BYTES = 2**26


def merge_candidates(
    f: Network,
    ranges,
    boxes: Sequence[Box],
    roots: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
    frozen: frozenset[int] = frozenset(),
    end: float | None = None,
) -> dict[tuple[int, int], tuple[int, float, float, float]]:
    """Per hidden neuron ``(k, j)``, its best merge ``(i, alpha, c, local)`` (module docstring).

    ``ranges``: the proven ReLU output ranges of every layer
    (:func:`exactcomp.rewrite.edits.relu_ranges`); ``roots``: per box, ``f``'s proven
    pre-activation bounds of every layer. No merge reads into a ``frozen`` layer (a low-rank
    product: its columns may only be zeroed). ``end`` (``time.perf_counter``): no chunk of
    bounds starts past it, and the merges of the layers done by then are all (fewer merges
    are only fewer candidates: each is still proven in the whole)."""
    out: dict[tuple[int, int], tuple[int, float, float, float]] = {}
    last = len(f.layers) - 1
    pre = _sampled_pre_activations(f, boxes)
    for k, layer in enumerate(f.layers[:last]):
        nxt = f.layers[k + 1]
        if not layer.relu or k + 1 in frozen or layer.sparse or nxt.sparse or not layer.in_features:
            continue
        if layer.structure is not None or nxt.structure is not None:
            continue  # the search edits neither (edits.candidates): 39 s on cifar_base_kw
        if not 2 <= layer.out_features <= MAX_WIDTH:
            continue
        pairs, alphas = _proposals(layer, pre[k])
        if not pairs:
            continue
        js, is_ = np.array(pairs).T
        bounds = _pair_bounds(f, k, js, is_, np.array(alphas), boxes, roots, end)
        if bounds is None:
            break
        lo_d, hi_d = bounds
        a_lo, a_hi = ranges[k]
        col = np.abs(nxt.weight).sum(axis=0)
        for t, ((j, i), alpha) in enumerate(zip(pairs, alphas, strict=True)):
            e_lo = max(min(0.0, lo_d[t]), a_lo[j] - alpha * a_hi[i])
            e_hi = min(max(0.0, hi_d[t]), a_hi[j] - alpha * a_lo[i])
            if _exact(layer, j, i, alpha):
                e_lo = e_hi = 0.0
            local = float(col[j] * (e_hi - e_lo) / 2)
            best = out.get((k, j))
            if best is None or local < best[3]:
                out[(k, j)] = (i, float(alpha), float((e_lo + e_hi) / 2), local)
    return out


def pick(merges: dict, constant: dict) -> dict:
    """The merges of :func:`merge_candidates` that replace their neuron's constant edit
    (``constant``: ``(k, j)`` -> its charge): charged less, and no neuron both a source and a
    target (else ``j -> i`` and ``i -> j`` could both be accepted and neither fold); taken by
    charge, cheapest first."""
    out: dict = {}
    targets: set = set()
    for (k, j), m in sorted(merges.items(), key=lambda kv: kv[1][3]):
        if m[3] < constant.get((k, j), -np.inf) and (k, j) not in targets and (k, m[0]) not in out:
            out[(k, j)] = m
            targets.add((k, m[0]))
    return out


def apply_merge(ws: list, bs: list, k: int, j: int, i: int, alpha: float, c: float) -> None:
    """Neuron ``j`` of layer ``k`` made ``alpha`` times neuron ``i`` in the float64 arrays
    ``ws``/``bs`` (in place; the caller's copies), its centring ``c`` moved into the next
    bias: the proven network ``P`` of the module docstring (the fold comes later)."""
    ws[k][j, :] = alpha * ws[k][i, :]
    bs[k][j] = alpha * bs[k][i]
    bs[k + 1] = bs[k + 1] + ws[k + 1][:, j] * c


def foldable(p: Network, merges: Sequence[tuple[int, int, int, float]]) -> list:
    """The merges ``(k, j, i, alpha)`` of ``p`` to fold, in order: row and bias of ``j``
    equal ``alpha`` times ``i``'s as stored (the rounding of that product is padded), ``i``
    not itself folded away and ``j`` no other merge's target (independent folds)."""
    out, sources, targets = [], set(), set()
    for k, j, i, alpha in merges:
        la = p.layers[k]
        if (k, j) in targets or (k, i) in sources or (k, j) in sources:
            continue
        if not np.array_equal(la.weight[j], _stored(alpha * la.weight[i], p.dtype)):
            continue
        if not la.bias[j] == _stored(np.array([alpha * la.bias[i]]), p.dtype)[0]:
            continue
        out.append((k, j, i, alpha))
        sources.add((k, j))
        targets.add((k, i))
    return out


def restore_rows(p: Network, merges: Sequence[tuple[int, int, int, float]]) -> Network:
    """``p`` with row and bias of each merge's ``j`` set again to ``alpha`` times ``i``'s as
    ``p``'s dtype stores them (after ``p`` was rounded to another dtype, which rounds the
    two rows apart); the result is a new network, to be proven again."""
    ws, bs = _arrays(p)
    for k, j, i, alpha in merges:
        ws[k][j] = _stored(alpha * ws[k][i], p.dtype)
        bs[k][j] = _stored(np.array([alpha * bs[k][i]]), p.dtype)[0]
    layers = [
        la if la.sparse else Layer(w, b, la.relu) for w, b, la in zip(ws, bs, p.layers, strict=True)
    ]
    return p.replace_layers(layers)


def _arrays(p: Network) -> tuple[list, list]:
    """Copies of ``p``'s weights and biases to edit; a layer held sparse (never merged, nor
    next to a merge: :func:`merge_candidates`) keeps its matrix, never densified."""
    ws = [la.weight if la.sparse else np.array(la.weight) for la in p.layers]
    return ws, [np.array(la.bias) for la in p.layers]


def fold(p: Network, merges: Sequence[tuple[int, int, int, float]]) -> Network:
    r"""``G``: each merge of :func:`foldable` ``(k, j, i, alpha)`` folded, :math:`W_{k+1}[:,
    i] \mathrel{+}= \alpha W_{k+1}[:, j]` (rounded to ``p``'s dtype) and ``j``'s row, bias
    and column zeroed (:func:`~exactcomp.rewrite.structural.drop_unused` then removes it); layer
    by layer, the last first (a fold of layer ``k`` changes columns of layer ``k + 1``,
    whose folded rows are then zero already)."""
    for k in sorted({m[0] for m in merges}, reverse=True):
        p = _fold_layer(p, [m for m in merges if m[0] == k])
    return p


def fold_pad(p: Network, merges: Sequence[tuple[int, int, int, float]], boxes) -> float:
    r"""A sound bound of :math:`\max_D \|G - P\|_\infty` for ``G = fold(p, merges)``: the
    sum, over the layers :func:`fold` folds (in its order), of each step's bound (the
    triangle inequality). One step, ``P -> G`` for the merges of one layer: in real
    arithmetic ``G`` equals ``G'``, which is ``P`` with row and bias of ``j`` exactly
    :math:`\alpha` times ``i``'s and column ``i`` :math:`V_i - \alpha W_{k+1}[:, j]` (``V_i``
    the folded column as stored), since :math:`\mathrm{relu}(\alpha z) = \alpha\,
    \mathrm{relu}(z)` for :math:`\alpha > 0`. ``G'`` has ``P``'s shape and weights within
    the measured (float64-padded) entry differences of ``P``'s, so
    :func:`~exactcomp.tolerances.stored_rounding_bound` bounds the change on interval bounds
    of ``P``'s layers."""
    total = 0.0
    for k in sorted({m[0] for m in merges}, reverse=True):
        mine = [m for m in merges if m[0] == k]
        total += _layer_pad(p, mine, boxes)
        p = _fold_layer(p, mine)
    return total


def _fold_layer(p: Network, merges) -> Network:
    """:func:`fold` of merges that all sit in one layer."""
    ws, bs = _arrays(p)
    for k, j, i, alpha in merges:
        ws[k + 1][:, i] = ws[k + 1][:, i] + alpha * ws[k + 1][:, j]
        ws[k + 1][:, j] = 0.0
        ws[k][j, :] = 0.0
        bs[k][j] = 0.0
    layers = [
        la if la.sparse else Layer(_stored(w, p.dtype), b, la.relu)
        for w, b, la in zip(ws, bs, p.layers, strict=True)
    ]
    return p.replace_layers(layers)


def _layer_pad(p: Network, merges, boxes) -> float:
    """:func:`fold_pad` of merges that all sit in one layer."""
    g = _fold_layer(p, merges)
    unit = 2.0**-52
    first = min(m[0] for m in merges)  # no delta before it: e = 0 there (sparse layers too)
    deltas = [
        (np.zeros(la.weight.shape), np.zeros(la.out_features)) if k >= first else None
        for k, la in enumerate(p.layers)
    ]
    moved: dict[tuple[int, int], np.ndarray] = {}  # per target column, sum of alpha v_j
    for k, j, i, alpha in merges:
        la, nxt = p.layers[k], p.layers[k + 1]
        for row, ideal, dst in (
            (la.weight[j], alpha * la.weight[i], deltas[k][0][j]),
            (la.bias[j : j + 1], alpha * la.bias[i : i + 1], deltas[k][1][j : j + 1]),
        ):
            dst[:] = np.abs(ideal - row) * (1 + 4 * unit) + 4 * unit * np.abs(ideal)
        prev = moved.get((k, i), (np.zeros(nxt.out_features), np.zeros(nxt.out_features)))
        part = alpha * nxt.weight[:, j]
        moved[(k, i)] = (prev[0] + part, prev[1] + np.abs(part))
    for (k, i), (total, size) in moved.items():
        v, c = g.layers[k + 1].weight[:, i], p.layers[k + 1].weight[:, i]
        n = len(merges) + 3  # terms of the float64 sums
        scale = np.abs(v) + 2 * size + np.abs(c)
        deltas[k + 1][0][:, i] = np.abs(v - total - c) + 2 * n * unit * scale
    worst = 0.0
    for box in boxes:
        mags = input_magnitudes(p, box, interval_bounds(p, box))[first:]
        pairs = [(la.weight, la.bias) for la in p.layers[first:]]
        e = stored_rounding_bound(pairs, deltas[first:], mags)
        worst = max(worst, float(np.max(e, initial=0.0)))
    return worst * (1 + 1e-6) if np.isfinite(worst) else float("inf")


def _stored(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the network's ``dtype`` holds it (float32 values kept in float64)."""
    return a.astype(np.float32).astype(np.float64) if dtype == "float32" else a


def _proposals(layer: Layer, z: np.ndarray) -> tuple[list[tuple[int, int]], list[float]]:
    """``(j, i)`` pairs (the :data:`PARTNERS` most cosine-similar rows) and their scales."""
    rows = np.hstack([layer.weight, layer.bias[:, None]])
    norm = np.linalg.norm(rows, axis=1)
    live = norm > 0
    unit = np.where(live[:, None], rows / np.where(live, norm, 1.0)[:, None], 0.0)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    h = np.maximum(z, 0.0)
    zc, hc = z - z.mean(axis=0), h - h.mean(axis=0)
    pairs, alphas = [], []
    n = layer.out_features
    for j in np.flatnonzero(live):
        for i in np.argsort(-cos[j], kind="stable")[: min(PARTNERS, n - 1)]:
            if not cos[j, i] > 0:
                break
            top = int(np.argmax(np.abs(layer.weight[i])))
            ratio = layer.weight[j, top] / layer.weight[i, top] if layer.weight[i, top] else 0.0
            scales = {float(ratio)}
            for a, b in ((zc[:, j], zc[:, i]), (hc[:, j], hc[:, i])):
                den = float(b @ b)
                if den > 0:
                    scales.update(float(a @ b) / den * m for m in SPREAD)
            for s in sorted({float(np.float32(s)) for s in scales if np.isfinite(s)}):
                if s > 0:  # alpha <= 0 is never proposed
                    pairs.append((int(j), int(i)))
                    alphas.append(s)
    return pairs, alphas


def _pair_bounds(
    f: Network, k: int, js, is_, a, boxes, roots, end: float | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_bounds` of the rows ``W[j] - a W[i]`` (biases likewise) of layer ``k``, built
    and bounded :data:`CHUNK_BYTES` at a time; None when a chunk would start past ``end``."""
    layer = f.layers[k]
    width = max(max(la.in_features for la in f.layers[: k + 1]), 1)
    step = max(CHUNK_BYTES // (8 * width), 1)
    lo, hi = [], []
    for s in range(0, len(js), step):
        if end is not None and time.perf_counter() >= end:
            return None
        j, i, al = js[s : s + step], is_[s : s + step], a[s : s + step]
        rows = layer.weight[j] - al[:, None] * layer.weight[i]
        b_lo, b_hi = _bounds(f, k, rows, layer.bias[j] - al * layer.bias[i], boxes, roots)
        lo.append(b_lo)
        hi.append(b_hi)
    return np.concatenate(lo), np.concatenate(hi)


def _bounds(f: Network, k: int, rows, bias, boxes, roots) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds, over the union of ``boxes``, of ``rows @ h_{k-1} + bias`` (CROWN through
    ``f``'s first ``k`` layers, with ``f``'s proven bounds of them; where one of them is held
    sparse, interval arithmetic on ``f``'s proven bounds of ``h_{k-1}``)."""
    probe = Network((*f.layers[:k], Layer(rows, bias, False)))
    sparse = any(la.sparse for la in f.layers[:k])
    lo, hi = np.full(len(rows), np.inf), np.full(len(rows), -np.inf)
    for box, root in zip(boxes, roots, strict=True):
        if sparse:
            h_lo, h_hi = activation_bounds(f.layers[k - 1], root[k - 1])
            b_lo, b_hi = interval_layer(probe.layers[-1], h_lo, h_hi)
        else:
            b_lo, b_hi = linear_layer_bounds(probe, box, k, list(root[:k]) + [None])
        lo, hi = np.minimum(lo, b_lo), np.maximum(hi, b_hi)
    return lo, hi


def _exact(layer: Layer, j: int, i: int, alpha: float) -> bool:
    """True when row ``j`` (weights and bias) is exactly ``alpha`` times row ``i``."""
    if not np.array_equal(layer.weight[j], alpha * layer.weight[i]):
        return False  # not even in float64 arithmetic
    a = Fraction(alpha)
    return all(
        Fraction(float(x)) == a * Fraction(float(y))
        for x, y in zip(
            (*layer.weight[j], layer.bias[j]), (*layer.weight[i], layer.bias[i]), strict=True
        )
    )


def _sampled_pre_activations(f: Network, boxes: Sequence[Box]) -> list[np.ndarray]:
    """``f``'s pre-activations of every layer on :data:`SAMPLES` seeded uniform points."""
    rng = np.random.default_rng(0)
    each = max(SAMPLES // len(boxes), 2)
    h = np.concatenate([b.lower + (b.upper - b.lower) * rng.random((each, b.dim)) for b in boxes])
    out = []
    for layer in f.layers:
        z = layer.apply(h) + layer.bias
        out.append(z)
        h = np.maximum(z, 0.0) if layer.relu else z
    return out
