"""Per-layer bit widths for ``quantize --tol``: the fewest bits that stay proven within ``tol``.

:func:`choose_bits` is a greedy rule measured by the proofs themselves (bits saved per unit of
proven bound added); :func:`narrow_with_lp` then narrows further where the joint LP, tighter
than the symbolic bound the greedy used, still proves the whole within ``tol``. On few inputs
:func:`narrow_with_split` comes between them: input splitting proves within 1.05-2.5x of the
sampled error where the symbolic bound is 10^3-10^4 times above it (ACAS Xu, RESULTS.md
"acasq8"), so the greedy's float32 layers are narrowed again under that proof. The proof
engine (``charger``, an :class:`exactcomp.verify.charge.Charger` of the reference network) is
passed in: rewrite passes sit below verify. Every width is only *chosen* here; the claim is
the caller's one proof of the final network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..network import Network
from .compensation import Compensation
from .kernels import stored_weights
from .quantize import quantize_network, storage_bits

#: ``quantize --tol`` on at most :data:`~exactcomp.verify.charge.SPLIT_MAX_INPUTS` inputs:
#: seconds of input splitting per proof of a narrowing
#: (:func:`~exactcomp.rewrite.bitwidths.narrow_with_split`), and of that search in all
#: (wall; ``split_seconds`` = 0 turns it off). Measured on ACAS Xu 1_1 prop_1 (RESULTS.md
#: "lowdim8"): a narrowing within ``tol`` is proven in well under a second.
SPLIT_PROOF_SECONDS = 3.0
SPLIT_SEARCH_SECONDS = 40.0
#: Uniform points (plus gradient ascents) of the sampled difference that orders those trials.
SPLIT_SAMPLE_POINTS = 1024
#: A narrowing is tried with the LP only if its symbolic bound is at most this many times
#: ``tol`` (measured: the LP bound is 1.5-3x below the symbolic one).
LP_GAIN = 4.0


__all__ = [
    "LP_GAIN",
    "choose_bits",
    "narrow_with_lp",
    "narrow_with_split",
    "narrower",
    "slack_floor",
]


def narrower(ladder: list, i: int | None) -> int | None:
    """The index in ``ladder`` (narrowest first) of the next width below ``ladder[i]``
    (``None``: float32) that stores fewer bits per weight, or ``None`` when there is none.

    A width that stores as many bits as the current one saves no byte and only moves the
    outputs more: the 3-bit grid is stored as INT4 like the 4-bit one, ternary as INT2 like
    the 2-bit one (:func:`~exactcomp.rewrite.quantize.storage_bits`). A one-step greedy that
    tried them would pay a proof for a gain of 0 and, taking it only when nothing else is
    proven, would rarely reach the width after it."""
    old = 32 if i is None else storage_bits(ladder[i])
    j = len(ladder) - 1 if i is None else i - 1
    while j >= 0 and storage_bits(ladder[j]) >= old:
        j -= 1
    return j if j >= 0 else None


def slack_floor(slack: float, seconds_left: float, trials: int, proof_seconds: float) -> float:
    r"""The least bound increase a trial of :func:`choose_bits` is charged when ``trials``
    proofs of ``proof_seconds`` make a round and ``seconds_left`` remain; 0 with no deadline
    (or proofs that take no measured time): the measured greedy as before.

    The rounds when the time, not the tolerance, is what runs out: with slack
    :math:`s = \mathrm{tol} - b` left over the current bound :math:`b`, :math:`L` trials a
    round and proofs of :math:`p` seconds, :math:`R = T / (L p)` full rounds fit in the
    :math:`T` seconds left. A narrowing that adds :math:`\delta < s / R` to the bound uses
    less slack than the rounds left can spend: the search will end by time, not by slack,
    and what the narrowing costs is the round it takes. So a trial's value is
    :math:`\mathit{gain} / \max(\delta, s / R)`. Since a value is then at most
    :math:`\mathit{gain} / (s / R)`, a round (largest gain first) ends at the first trial
    whose :math:`\mathit{gain} / (s / R)` is below the best value proven: no later trial
    could win it, and no proof is started for it. On cifar_base_kw (layer 2: 102,400 of
    105,832 weights, proofs of 4-17 s) a round cost four proofs, three of them on layers
    holding 3 % of the weights, and whether round 2's first trial (layer 2 to 4 bits) still
    fitted made 3.81x or 7.06x; with the floor each round is one proof while layer 2 leads,
    and the small layers come after it: 7.29-8.15x (RESULTS.md "cifartol21")."""
    if trials <= 0 or proof_seconds <= 0 or not np.isfinite(seconds_left):
        return 0.0
    rounds = max(seconds_left, 0.0) / (trials * proof_seconds)
    return max(slack, 0.0) / rounds if rounds > 0 else np.inf


def choose_bits(
    f: Network,
    charger: Any,
    tol: float,
    ladder: list,
    comp: Compensation | None,
    *,
    end: float = np.inf,
) -> list:
    """Per layer bits by a measured greedy rule: start from the widest width that is proven
    (else float32), then repeatedly take the one-step narrowing of a layer (:func:`narrower`)
    that saves the most bits per unit of *proven* bound added, while the whole stays proven
    within ``tol``.

    Until ``end`` (``time.perf_counter``): a trial is started only while the last proof's
    seconds still fit before it. A round's trials are proven largest saving first (stored
    weights times bits saved), so a round cut short at ``end`` has tried the narrowings worth
    the most; the best proven of those is taken and the search ends there (every level it
    returns was proven within ``tol``; the claim is still the caller's final proof). The
    choice of a finished round does not depend on the order (largest value, then the lowest
    layer). Where fewer rounds fit than the slack could pay for, a trial is charged at least
    :func:`slack_floor`, and a round ends where no later trial could win it."""
    n = len(f.layers)
    top = len(ladder) - 1
    level: list[int | None] = [top] * n  # index into the ladder; None = float32
    cache: dict = {}  # each layer quantised once per width (quantize_network)
    last = 0.0  # seconds of the last proof: a trial is started only if as many still fit

    def bits_of(lv):
        return [None if i is None else ladder[i] for i in lv]

    def proof(lv) -> float:
        nonlocal last
        begun = time.perf_counter()
        bound = charger.proven(quantize_network(f, bits_of(lv), comp, cache).network)
        last = time.perf_counter() - begun
        return bound

    current = proof(level)
    if current > tol:
        level, current = [None] * n, proof([None] * n)
    while True:
        trials = []
        for k in range(n):
            i = level[k]
            nxt = narrower(ladder, i)
            if nxt is None or not stored_weights(f.layers[k]):  # a pool: nothing to narrow
                continue
            old = 32 if i is None else storage_bits(ladder[i])
            gain = stored_weights(f.layers[k]) * (old - storage_bits(ladder[nxt]))
            trials.append((gain, k, nxt))
        best = None
        floor = slack_floor(tol - current, end - time.perf_counter(), len(trials), last)
        for gain, k, nxt in sorted(trials, key=lambda t: (-t[0], t[1])):
            if best is not None and floor > 0 and gain / floor < best[0][0]:
                break  # no trial left in the round can be worth more (slack_floor)
            if time.perf_counter() + last > end:
                return bits_of(level if best is None else best[2])
            trial = list(level)
            trial[k] = nxt
            bound = proof(trial)
            if bound > tol:
                continue
            value = (gain / max(bound - current, floor, 1e-12), -k)
            if best is None or value > best[0]:
                best = (value, bound, trial)
        if best is None:
            return bits_of(level)
        _, current, level = best


def narrow_with_lp(
    f: Network,
    charger: Any,
    tol: float,
    ladder: list,
    bits: list,
    end: float,
    comp: Compensation | None,
) -> tuple[list, float]:
    """After :func:`choose_bits`: narrow one layer one step at a time, largest layer first,
    while the joint LP (tighter than the symbolic bound the greedy used) proves the whole
    within ``tol``, until ``end`` (``time.perf_counter``; a trial is started only while the
    charger's last symbolic proof, ``charger.seconds``, still fits). Only a narrowing whose
    symbolic bound is within :data:`LP_GAIN` times ``tol`` is tried. Returns the bits and the LP
    proof of the last narrowing (``inf`` when none was made)."""
    proof, cache = np.inf, {}  # each layer quantised once per width (quantize_network)
    order = sorted((k for k, la in enumerate(f.layers) if stored_weights(la)),
                   key=lambda k: -stored_weights(f.layers[k]))  # fmt: skip
    progress = True
    while progress:
        progress = False
        for k in order:
            # a trial starts only if the charger's last symbolic proof still fits (on
            # cifar_base_kw one took 30 s wall at load 2.5 and ended 17 s past ``end``)
            if time.perf_counter() + charger.seconds >= end:
                return bits, proof
            i = None if bits[k] is None else ladder.index(bits[k])
            nxt = narrower(ladder, i) if ladder else None
            if nxt is None:
                continue
            trial = list(bits)
            trial[k] = ladder[nxt]
            g = quantize_network(f, trial, comp, cache).network
            if charger.proven(g) > LP_GAIN * tol:
                continue
            left = max(end - time.perf_counter(), 0.0)
            bound = charger.proven(g, target=tol, lp_seconds=left)
            if bound <= tol:
                bits, proof, progress = trial, bound, True
                break
    return bits, proof


def narrow_with_split(
    f: Network,
    charger: Any,
    tol: float,
    ladder: list,
    bits: list,
    comp: Compensation | None,
    *,
    sampled: Callable[[Network], float],
    proof_seconds: float,
    end: float,
) -> list:
    """After :func:`choose_bits`, on few inputs: narrow layers while input splitting (asked
    to decide ``tol``: leaves within it are not split, ``proof_seconds`` per proof) proves
    the whole within ``tol``, until ``end`` (``time.perf_counter``).

    Each round ranks every narrower width of every layer (any width, not only the next: the
    corrected 2-bit grid can move the outputs less than the 4-bit one) by bits saved per unit
    of *sampled* difference added (``sampled``: a lower bound of ``max |f - g|``, so a trial
    above ``tol`` cannot be proven and is never tried), then proves them best first and takes
    the first proven within ``tol``; a trial not proven is not tried again. The sampled value
    only orders the trials: a width is kept only with a proof, and the caller's final claim
    is one proof of the chosen network."""
    bits = list(bits)
    rank = {b: i for i, b in enumerate(ladder)}
    failed: set[tuple[int, float]] = set()
    cache: dict = {}  # each layer quantised once per width (quantize_network)
    current = sampled(quantize_network(f, bits, comp, cache).network)
    while time.perf_counter() < end:
        trials = []
        for k, layer in enumerate(f.layers):
            top = len(ladder) if bits[k] is None else rank[bits[k]]
            old = 32 if bits[k] is None else storage_bits(bits[k])
            for b in ladder[:top]:
                gain = stored_weights(layer) * (old - storage_bits(b))
                if (k, b) in failed or gain <= 0 or time.perf_counter() >= end:
                    continue
                trial = list(bits)
                trial[k] = b
                s = sampled(quantize_network(f, trial, comp, cache).network)
                if s <= tol:
                    trials.append((-gain / max(s - current, 1e-12), k, b, trial, s))
        trials.sort(key=lambda t: t[:3])
        for _, k, b, trial, s in trials:
            left = min(proof_seconds, end - time.perf_counter())
            if left <= 0:
                return bits
            g = quantize_network(f, trial, comp, cache).network
            if charger.proven(g, split_seconds=left, target=tol) <= tol:
                bits, current = trial, s
                break
            failed.add((k, b))
        else:
            return bits
    return bits
