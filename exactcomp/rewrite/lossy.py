r"""Certified lossy compression: prune beyond exactness while a proof keeps ``max |f - g| <= eps``.

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

**Ranking by a measured rule.** Local charges ignore what the layers after ``k`` amplify. For
each layer the amplification is *measured*: the proven bound of a probe (the cheapest 5% of
that layer's candidates applied alone) divided by the sum of their local charges. A
candidate's score is its local charge times its layer's factor, per parameter saved; the
budget goes where the proven error per parameter is smallest, across layers.

**Acceptance.** Candidates in score order; the longest prefix whose *whole* network is proven
within ``eps`` against the original (:class:`~exactcomp.verify.charge.Charger`) is found by
bisection, then the remaining candidates are tried in shrinking blocks, each kept only if the
whole is still proven within ``eps`` (:mod:`exactcomp.rewrite.acceptance`). Every accepted
state is proven; no charge is summed.
Finally neurons left without effect (zero outgoing column, or zero row and bias) are dropped,
which is exact (no arithmetic: :func:`~exactcomp.rewrite.structural.drop_unused`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..domain import Box
from ..network import Layer, Network, is_sparse
from . import merging, refit
from .acceptance import Gate, affords, attempt, blocks, longest_prefix, spend_proof

PROBE_SHARE = 0.05  # the share of a layer's candidates in its amplification probe
SYMBOLIC_SHARE = 0.5  # with LP proofs: the share of the time of the symbolic greedy first
MERGE_SCREEN = 64  # merges proven alone (two proofs each) before the search
#: ... within this share of the search's time (:class:`~exactcomp.rewrite.acceptance.Gate`):
#: on cifar_base_kw each proof takes 4-10 s, and 13 merges screened took 110 s where the
#: whole search had 1 s (RESULTS.md "lossybudget20"); the digits model's take milliseconds.
MERGE_SHARE = 0.1
#: A step that only orders later proofs (an amplification probe, a merge screened) runs only
#: where its proofs and this many after it fit before its gate's end (``affords``): else it
#: takes the proofs the bisection needs (cifar_base_kw, proofs of 3-10 s: RESULTS.md "span21").
USE_AFTER = 1


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


@dataclass
class LossyOutcome:
    """The search's result: the network (same architecture as ``f``), the one proven bound of
    the whole, the accepted candidates and per-layer facts."""

    network: Network
    proven: float
    accepted: list[Candidate]
    proofs: int
    layers: list[dict] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)  # the LP-slack rounds (spend_proof)
    #: low-rank factors (:class:`~exactcomp.rewrite.lowrank.Factor`) of ``network``'s frozen
    #: layers: the written network is :func:`~exactcomp.rewrite.lowrank.expand` of it
    factors: list = field(default_factory=list)
    #: merges ``(k, j, i, alpha)`` of ``network`` folded when written
    #: (:func:`~exactcomp.rewrite.merging.fold`; ``proven`` includes their rounding pad)
    merges: list = field(default_factory=list)


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


def search(
    f: Network,
    boxes: Sequence[Box],
    eps: float,
    charger,
    *,
    time_limit: float = 60.0,
    lp_seconds: float = 0.0,
    centre: bool = False,
    use_refit: bool = False,
    use_merge: bool = True,
    frozen: frozenset[int] = frozenset(),
) -> LossyOutcome:
    """Greedy certified pruning of ``f`` within ``eps`` (see the module docstring).

    ``charger``: the proof engine, an :class:`exactcomp.verify.charge.Charger` of ``f`` on
    ``boxes`` (passed in: rewrite passes sit below verify). ``lp_seconds`` > 0: the budget of
    one joint-LP proof, and the search spends the slack it shows
    (:func:`~exactcomp.rewrite.acceptance.spend_proof`);
    ``time_limit`` covers everything, the LP proofs included. ``centre``: zeroed weights move
    their input's midpoint into the bias (:func:`candidates`); ``use_refit``: neurons are
    removed with refit (:mod:`exactcomp.rewrite.refit`) instead of set to constants, ranked
    as the constants are; ``use_merge``: a neuron's merge into a near-parallel one replaces
    its constant edit where it is charged less (:func:`with_merges`; not on low-rank
    starts, whose layers differ from the charger's ``f``). ``frozen``: layers of ``f`` that
    are low-rank products (:mod:`exactcomp.rewrite.lowrank`): no weight edits there, weights
    never rounded, and the neurons feeding them are set to constants rather than refitted."""
    t0 = time.perf_counter()
    t_end, m_end = t0 + time_limit, t0 + MERGE_SHARE * time_limit  # m_end: merges' proposals
    ranges = relu_ranges(f, charger)
    cands = plain = candidates(f, ranges, boxes, centre=centre, frozen=frozen)
    if use_merge and not frozen:
        found = merging.merge_candidates(f, ranges, boxes, charger.roots(), end=m_end)
        cands, screen = with_merges(plain, found), Gate(charger, m_end)  # and their screen
        cands = _screen_merges(f, cands, plain, ranges, screen, eps)
    fit = refit.fit_data(f, boxes) if use_refit else None
    base = apply(f, [], ranges, frozen=frozen)
    base_bound = charger.proven(base)
    if base_bound > eps or not cands:
        return LossyOutcome(base, base_bound, [], charger.calls, layer_facts(f, [], {}))
    # measured on the edits without merges: a merge enters where its neuron's constant does
    factors = _amplification(f, plain, ranges, charger, frozen)
    score = np.array([c.local * factors[_layer(c)] / c.saved for c in cands])
    order = [cands[i] for i in np.argsort(score, kind="stable")]
    if use_refit:
        order = [c if c.index[0] + 1 in frozen else as_refit(c) for c in order]

    def build(chosen: Sequence[Candidate]) -> Network:
        return apply(f, chosen, ranges, fit, frozen)

    # the longest proven prefix (each probe one proof of the whole; len + 1 is never probed)
    sym_end = t0 + SYMBOLIC_SHARE * time_limit if lp_seconds > 0 else t_end
    lo, _ = longest_prefix(
        lambda m: attempt(charger, build, order[:m]), eps, 0, len(order) + 1, sym_end
    )
    accepted = list(order[:lo])
    extra, rest = blocks(
        accepted, order[lo + 1 :], lambda c: attempt(charger, build, c), eps, sym_end
    )
    accepted += extra
    rest = order[lo : lo + 1] + rest  # the one the bisection stopped at: retried with slack
    final = build(accepted)
    proven = charger.proven(final)  # the claim: one proof of the original vs the final network
    if proven > eps:  # no proof of it started before a deadline (a Gate): nothing is kept
        return LossyOutcome(base, base_bound, [], charger.calls, layer_facts(f, [], factors))
    rounds: list[dict] = []
    if lp_seconds > 0 and proven > 0:
        accepted, proven, rounds = spend_proof(
            build, accepted, rest, charger, eps, lp_seconds, t_end
        )
        final = build(accepted)
    folds = merging.foldable(final, [(*c.index, c.scale) for c in accepted if c.kind == "merge"])
    pad = merging.fold_pad(final, folds, boxes)
    if proven + pad > eps:  # the merged rows stay in the network, unfolded (and unpadded)
        folds, pad = [], 0.0
    facts = layer_facts(f, accepted, factors, folds)
    return LossyOutcome(final, proven + pad, accepted, charger.calls, facts, rounds, merges=folds)


def with_merges(cands: list[Candidate], merges: dict) -> list[Candidate]:
    """``cands`` with the neuron -> constant edits of ``merging.pick`` made merges."""
    chosen = merging.pick(merges, {c.index: c.local for c in cands if c.kind == "neuron"})

    def merge(c: Candidate, i: int, scale: float, shift: float, local: float) -> Candidate:
        return Candidate("merge", (*c.index, i), local, c.saved, shift, scale)

    return [merge(c, *chosen[c.index]) if c.kind == "neuron" and c.index in chosen else c
            for c in cands]  # fmt: skip


def _screen_merges(f, cands, plain, ranges, charger, eps) -> list[Candidate]:
    """Each merge (at most :data:`MERGE_SCREEN`, cheapest first; the others revert) kept
    only where one proof of it alone is within ``eps`` and below that of its neuron's
    constant edit, else the constant edit is restored. Measured on the digits l1 = 0 model
    at tol 1.0: the 11 merges charged below their constants are proven 2.9 or more alone
    (their constants 4.9 or more) and never accepted; unscreened, each sits ahead of where
    its constant was in the order and costs the greedy failed proofs (RESULTS.md "merge10").
    A merge is screened only where its two proofs fit (:data:`USE_AFTER`), else the screen
    ends: none is built for a proof its gate would refuse."""
    const = {c.index: c for c in plain if c.kind == "neuron"}
    merges = sorted((c for c in cands if c.kind == "merge"), key=lambda c: c.local)
    keep = set()
    for c in merges[:MERGE_SCREEN]:
        if not affords(charger, 2 + USE_AFTER):  # no time: the rest keep their constants
            break
        alone = charger.proven(apply(f, [c], ranges))
        if alone <= eps and alone < charger.proven(apply(f, [const[c.index[:2]]], ranges)):
            keep.add(c.index)
    return [const[c.index[:2]] if c.kind == "merge" and c.index not in keep else c for c in cands]


def _layer(c: Candidate) -> int:
    """The layer whose output the edit changes first: ``k`` (a weight), ``k + 1`` (a neuron)."""
    return c.index[0] if c.kind == "weight" else c.index[0] + 1


def amplification_probes(f: Network, cands) -> dict[int, list[Candidate]]:
    """Per layer with candidates, its probe: the :data:`PROBE_SHARE` cheapest per parameter."""
    probes = {}
    for k in range(len(f.layers)):
        mine = sorted((c for c in cands if _layer(c) == k), key=lambda c: c.local / c.saved)
        if mine:
            probes[k] = mine[: max(1, int(PROBE_SHARE * len(mine)))]
    return probes


def _amplification(f: Network, cands, ranges, charger, frozen=frozenset()) -> dict[int, float]:
    """Per layer, proven error of a probe / sum of its local charges (the measured rule).
    A probe not proven already (the first is, :func:`.magnitude.probe`) runs only where it
    and :data:`USE_AFTER` proofs fit; else it and the later ones are refused (``inf``: their
    layers' candidates go last)."""
    factors: dict[int, float] = {}
    refused = False
    for k, probe in amplification_probes(f, cands).items():
        local = sum(c.local for c in probe)
        g = apply(f, probe, ranges, frozen=frozen)
        refused = refused or not affords(charger, 1 + USE_AFTER, g)
        proven = math.inf if refused else charger.proven(g)
        factors[k] = proven / local if local > 0 else 1.0
        factors[k] = max(factors[k], 1e-12)
    return factors


def layer_facts(
    f: Network, accepted: Sequence[Candidate], factors: dict[int, float], folds: Sequence = ()
) -> list:
    """Per layer: neurons replaced by constants, refitted or merged (``folds``), weights zeroed, the measured factor and the
    sum of the local charges of its accepted edits (an estimate; the claim is the proof)."""
    facts = []
    for k in range(len(f.layers)):
        mine = [c for c in accepted if _layer(c) == k]
        factor = factors.get(k)  # inf where its probe's proof was refused at a deadline
        factor = factor if factor is None or np.isfinite(factor) else None
        kinds = [c.kind for c in accepted if c.index[0] == k]  # a neuron's layer is its own
        facts.append({
            "layer": k,
            "neurons_to_constant": kinds.count("neuron"),
            "neurons_refitted": kinds.count("refit"),
            "neurons_merged": sum(1 for m in folds if m[0] == k),
            "weights_zeroed": sum(1 for c in mine if c.kind == "weight"),
            "amplification": factor,
            "charged": float(sum(c.local * (factor or 1.0) for c in mine)),
        })  # fmt: skip
    return facts
