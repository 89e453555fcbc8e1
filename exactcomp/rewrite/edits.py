r"""The lossy search's candidate edits: what each changes, its local charge, and how a set of
them is applied to a network.

Candidates (each keeps the architecture, so the differential bounds of
:mod:`exactcomp.verify.symbolic` compare the result with the original neuron by neuron):

* **neuron -> constant** ``(k, j)``: ReLU neuron ``j`` of layer ``k``, whose output lies in
  :math:`[a, b] = [\mathrm{relu}(l), \mathrm{relu}(u)]` (``l, u`` sound bounds of ``f``'s
  pre-activation on the domain), is replaced by :math:`c = (a + b) / 2`: its row and bias are
  zeroed and :math:`W_{k+1}[:, j]\, c` moves into :math:`b_{k+1}`. A nearly inactive neuron
  (``u`` small) is the case ``c ~ 0``. The change of layer ``k+1``'s pre-activation is at most
  :math:`\|W_{k+1}[:, j]\|_1 (b - a)/2` before propagation: the candidate's *local charge*.
* **small weight -> 0** ``(k, i, j)``: local charge :math:`|W_{k,ij}|\, \max_D |h_{k-1,j}|`;
  *centred* (``centre=True``), the input's midpoint :math:`m_j` moves into the bias
  (:math:`b_{k,i} \mathrel{+}= W_{k,ij} m_j`) and the charge is :math:`|W_{k,ij}| (u_j - l_j)/2`.
* **neuron merged** ``(k, j, i)`` (``use_merge=True``, :mod:`exactcomp.rewrite.merging`):
  in the searched network row and bias of ``j`` become ``alpha > 0`` times those of a
  near-parallel neuron ``i`` of its layer and a centring constant moves into the next bias
  (the architecture kept, so the verifier pairs ``j`` with ``j``); the written network folds
  ``j`` into ``i`` (``alpha`` times its column added to ``i``'s), exact in real arithmetic,
  and the claim adds a proven pad for that rounding (``LossyOutcome.merges``). Local charge
  :math:`\|W_{k+1}[:, j]\|_1` times the half-width of a proven range of
  :math:`\mathrm{relu}(z_j) - \alpha\,\mathrm{relu}(z_i)`; it replaces neuron ``j``'s
  constant candidate where its charge is smaller (the same parameters saved), ranked by the
  constants' measured layer factor.
* **neuron removed with refit** ``(k, j)`` (``use_refit=True``): the neuron -> constant edit
  with the least-squares fit of :mod:`exactcomp.rewrite.refit` instead of the midpoint, ranked
  as the constant (measured on the digits model: the sampled error drops 7-8x, the proof grows).

A set of edits is applied to a copy (:func:`apply`); the search that ranks and accepts them,
each acceptance a proof of the whole, is :mod:`exactcomp.rewrite.lossy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..domain import Box
from ..network import Layer, Network, is_sparse
from . import merging, refit


@dataclass(frozen=True)
class Candidate:
    """One lossy edit: ``kind`` "neuron" or "refit" (``index = (k, j)``), "weight"
    (``(k, i, j)``) or "merge" (``(k, j, i)``: ``j`` into ``i``, ``scale`` alpha, ``shift`` c)."""

    kind: str
    index: tuple[int, ...]
    local: float  # proven change of the next pre-activation (neuron) or of z_k (weight)
    saved: int  # parameters it sets to zero
    shift: float = 0.0  # weight: the input value whose contribution moves into the bias
    scale: float = 0.0  # merge: alpha > 0, the multiple of j's outgoing column added to i's


def relu_ranges(f: Network, charger) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sound ranges ``[relu(l), relu(u)]`` of every layer's output over the domain (the
    union of the charger's boxes: the widest over boxes)."""
    out = []
    roots = charger.roots()
    for k in range(len(f.layers)):
        lo = np.min([r[k][0] for r in roots], axis=0)
        hi = np.max([r[k][1] for r in roots], axis=0)
        if f.layers[k].relu:
            lo, hi = np.maximum(lo, 0.0), np.maximum(hi, 0.0)
        out.append((lo, hi))
    return out


def candidates(
    f: Network,
    ranges,
    boxes: Sequence[Box],
    *,
    centre: bool = False,
    frozen: frozenset[int] = frozenset(),
) -> list[Candidate]:
    """Every neuron -> constant and every nonzero weight -> 0 edit, with its local charge.
    ``centre``: a zeroed weight's input is replaced by the midpoint ``m_j`` of its proven
    range ``[l_j, u_j]`` (``b_i += w_ij m_j``): the charge is ``|w_ij| (u_j - l_j) / 2``
    instead of ``|w_ij| max(|l_j|, |u_j|)``. Layers in ``frozen`` (low-rank products,
    :mod:`exactcomp.rewrite.lowrank`) get no weight edits. A layer with a structure (a
    convolution or pool) or held sparse gets no edit at all, nor does a neuron feeding one
    (a sparse layer is never densified; the proof of a network edited only after its last
    sparse layer is :mod:`exactcomp.verify.prefix`'s): an edited entry
    of its matrix would unmake the convolution, which is then written as a dense matrix,
    larger than the input (marabou_conv_mp1: 18,784 -> 255,840 bytes, RESULTS.md "convq15")."""
    out: list[Candidate] = []
    last = len(f.layers) - 1
    x_lo = np.min([b.lower for b in boxes], axis=0)
    x_hi = np.max([b.upper for b in boxes], axis=0)
    for k, layer in enumerate(f.layers):
        lo, hi = (x_lo, x_hi) if k == 0 else ranges[k - 1]
        mid = (lo + hi) / 2 if centre else np.zeros_like(lo)
        h_mag = np.maximum(np.abs(lo - mid), np.abs(hi - mid))
        w = layer.weight
        if layer.structure is not None or layer.sparse:
            continue
        nonzero = () if k in frozen else zip(*np.nonzero(w), strict=True)
        for i, j in nonzero:
            local = float(abs(w[i, j]) * h_mag[j])
            out.append(Candidate("weight", (k, int(i), int(j)), local, 1, float(mid[j])))
        if layer.relu and k < last and _plain(f.layers[k + 1]):
            nxt = f.layers[k + 1].weight
            lo, hi = ranges[k]
            for j in range(layer.out_features):
                saved = int(np.count_nonzero(w[j]) + (layer.bias[j] != 0))
                saved += int(np.count_nonzero(nxt[:, j]))
                if saved == 0:
                    continue
                local = float(np.abs(nxt[:, j]).sum() * (hi[j] - lo[j]) / 2)
                out.append(Candidate("neuron", (k, j), local, saved))
    return out


def _plain(layer: Layer) -> bool:
    """True for a layer the search may edit: dense, without a structure."""
    return layer.structure is None and not layer.sparse


def apply(
    f: Network,
    chosen: Sequence[Candidate],
    ranges,
    fit=None,
    frozen: frozenset[int] = frozenset(),
) -> Network:
    """``f`` with the edits applied (refits first, then weights, then neurons; see the module
    docstring). ``fit``: the :class:`~exactcomp.rewrite.refit.FitData` of "refit" edits.
    ``frozen``: layers whose weights (float64 products of low-rank factors) are kept as they
    are, never rounded to the file's dtype; their rows and columns may only be zeroed."""
    ws = [la.weight if la.sparse else np.array(la.weight) for la in f.layers]
    bs = [np.array(la.bias) for la in f.layers]
    removed: dict[int, list[int]] = {}
    for c in chosen:
        if c.kind == "refit":
            removed.setdefault(c.index[0], []).append(c.index[1])
    for k, js in removed.items():
        ws[k + 1], bs[k + 1] = refit.fold(ws[k + 1], bs[k + 1], fit, k, js)
        ws[k][js, :] = 0.0
        bs[k][js] = 0.0
    for c in chosen:
        if c.kind == "weight":
            k, i, j = c.index
            bs[k][i] = bs[k][i] + ws[k][i, j] * c.shift
            ws[k][i, j] = 0.0
    for c in chosen:  # merges before constants: a constant of i then carries j's share too
        if c.kind == "merge":
            merging.apply_merge(ws, bs, *c.index, c.scale, c.shift)
    for c in chosen:
        if c.kind == "neuron":
            k, j = c.index
            const = (ranges[k][0][j] + ranges[k][1][j]) / 2
            bs[k + 1] = bs[k + 1] + ws[k + 1][:, j] * const
            ws[k + 1][:, j] = 0.0
            ws[k][j, :] = 0.0
            bs[k][j] = 0.0
    # what the written file holds is what is proven: float32 when f's weights are float32
    # numbers (then the file stays float32), else float64
    dt = np.float32 if is_float32(f, frozen) else np.float64
    layers = [
        la  # held sparse: no edit reaches it (candidates), kept as it is, never densified
        if la.sparse
        else Layer(w if k in frozen else w.astype(dt), b.astype(dt), la.relu)
        for k, (w, b, la) in enumerate(zip(ws, bs, f.layers, strict=True))
    ]
    return Network(tuple(layers), dtype=np.dtype(dt).name, meta=dict(f.meta))


def as_refit(c: Candidate) -> Candidate:
    """A neuron -> constant edit as a removal with refit (the same neuron, rank and saving)."""
    return replace(c, kind="refit") if c.kind == "neuron" else c


def is_float32(f: Network, frozen: frozenset[int] = frozenset()) -> bool:
    """True when every weight and bias of ``f`` (biases only in ``frozen`` layers) is a
    float32 number: then the edited network is written, and proven, in float32."""
    return all(
        np.array_equal(a.astype(np.float32).astype(np.float64), a)
        for k, la in enumerate(f.layers)
        for a in ((la.bias,) if k in frozen else (_numbers(la.weight), la.bias))
    )


def _numbers(weight) -> np.ndarray:
    """A matrix's stored numbers: its entries, or a ``scipy.sparse`` matrix's nonzeros."""
    return weight.data if is_sparse(weight) else weight
