r"""Certified lossy compression: prune beyond exactness while a proof keeps ``max |f - g| <= eps``.

The candidate edits and how one is applied are :mod:`exactcomp.rewrite.edits`'s (each
keeps the architecture; their *local charges* bound the change of the next pre-activation).

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
from dataclasses import dataclass, field

import numpy as np

from ..domain import Box
from ..network import Network
from . import merging, refit
from .acceptance import Gate, affords, attempt, blocks, longest_prefix, spend_proof
from .edits import Candidate, apply, as_refit, candidates, relu_ranges

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
    their input's midpoint into the bias (:func:`~exactcomp.rewrite.edits.candidates`);
    ``use_refit``: neurons are removed with refit (:mod:`exactcomp.rewrite.refit`) instead of set to constants, ranked
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
