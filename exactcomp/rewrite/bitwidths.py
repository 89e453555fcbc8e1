"""Per-layer bit widths for ``quantize --tol``: the fewest bits that stay proven within ``tol``.

:func:`choose_bits` is a greedy rule measured by the proofs themselves (bits saved per unit of
proven bound added); :func:`narrow_with_lp` then narrows further where the joint LP, tighter
than the symbolic bound the greedy used, still proves the whole within ``tol``. The proof
engine (``charger``, an :class:`exactcomp.verify.charge.Charger` of the reference network) is
passed in: rewrite passes sit below verify. Every width is only *chosen* here; the claim is
the caller's one proof of the final network.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..network import Network
from .quantize import Compensation, quantize_network, storage_bits

#: A narrowing is tried with the LP only if its symbolic bound is at most this many times
#: ``tol`` (measured: the LP bound is 1.5-3x below the symbolic one).
LP_GAIN = 4.0

__all__ = ["LP_GAIN", "choose_bits", "narrow_with_lp"]


def choose_bits(
    f: Network, charger: Any, tol: float, ladder: list, comp: Compensation | None
) -> list:
    """Per layer bits by a measured greedy rule: start from the widest width that is proven
    (else float32), then repeatedly take the one-step narrowing of a layer that saves the most
    bits per unit of *proven* bound added, while the whole stays proven within ``tol``."""
    n = len(f.layers)
    top = len(ladder) - 1
    level: list[int | None] = [top] * n  # index into the ladder; None = float32

    def bits_of(lv):
        return [None if i is None else ladder[i] for i in lv]

    current = charger.proven(quantize_network(f, bits_of(level), comp).network)
    if current > tol:
        level, current = (
            [None] * n,
            charger.proven(quantize_network(f, bits_of([None] * n), comp).network),
        )
    while True:
        best = None
        for k in range(n):
            i = level[k]
            nxt = top if i is None else i - 1
            if nxt < 0:
                continue
            trial = list(level)
            trial[k] = nxt
            bound = charger.proven(quantize_network(f, bits_of(trial), comp).network)
            if bound > tol:
                continue
            old = 32 if i is None else storage_bits(ladder[i])
            gain = f.layers[k].weight.size * (old - storage_bits(ladder[nxt]))
            value = gain / max(bound - current, 1e-12)
            if best is None or value > best[0]:
                best = (value, trial, bound)
        if best is None:
            return bits_of(level)
        _, level, current = best


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
    within ``tol``, until ``end`` (``time.perf_counter``). Only a narrowing whose symbolic
    bound is within :data:`LP_GAIN` times ``tol`` is tried. Returns the bits and the LP
    proof of the last narrowing (``inf`` when none was made)."""
    proof = np.inf
    order = sorted(range(len(f.layers)), key=lambda k: -f.layers[k].weight.size)
    progress = True
    while progress:
        progress = False
        for k in order:
            left = end - time.perf_counter()
            if left <= 0:
                return bits, proof
            i = None if bits[k] is None else ladder.index(bits[k])
            if i == 0 or not ladder:
                continue
            trial = list(bits)
            trial[k] = ladder[-1] if i is None else ladder[i - 1]
            g = quantize_network(f, trial, comp).network
            if charger.proven(g) > LP_GAIN * tol:
                continue
            bound = charger.proven(g, target=tol, lp_seconds=left)
            if bound <= tol:
                bits, proof, progress = trial, bound, True
                break
    return bits, proof
