r"""The neurons of ``f`` that ``g`` no longer has, proven stable before the differential argument.

The differential argument (:mod:`exactcomp.verify.differential`) cancels each neuron of ``f``
against its partner in ``g``; a neuron of ``f`` with no partner (the compressor removed it as
stably inactive, or folded it as stably active) cancels only if ``f``'s own analysis proved it
stable. Within ``verify``'s time limit that analysis may stop short of it: on marabou
``cifar10_small`` three of the 24 neurons of layer 2 that ``compress`` removed (proven there
by linear bounds after the LP had tightened layer 1) were left undecided, each then bounded by
its interval ``[0, u]`` (``u`` up to 0.026), and the outputs' bound came to 0.10 where the
tolerance was 0.073.

So before the argument runs, the *unpaired* undecided neurons of ``f`` (no ``g`` neuron is a
candidate partner of them or of an exact copy of them, :func:`~exactcomp.verify.coupling.
match_neurons`) are asked for their sign, lowest layer first: by the engine's input splits
where the network has few inputs (:func:`exactcomp.stability.phases.input_split_phase`:
``tll`` networks, whose removed neurons ``compress`` proved that way), else by one LP each
(:func:`exactcomp.bounds.lp.lp_layer_result`, the triangle relaxation of ``f``'s prefix on the
bounds proven so far) on the side their interval leans to. Both are proofs (linear bounds on
every leaf; a weak-duality bound with the solver's margin); a sampled pairing only chooses
which neurons to ask about. What the LPs do not
decide by the deadline stays as it was: fewer proofs, never a wrong one. ``verify`` asks the
same of ``g``'s neurons that ``f`` has no partner of (the pairs turned round), so that the
compressed network can come first (tll16 against its compression: UNKNOWN, 1.67 after 60 s of MILPs, in that
order before; RESULTS.md "twins26").
"""

from __future__ import annotations

import time

import numpy as np

from ..bab.split import split_inputs
from ..bounds.lp import lp_layer_result
from ..domain import Box
from ..network import Network
from ..stability.constants import layer_classes
from ..stability.phases import PhaseInput, input_split_phase
from ..tolerances import Tolerances
from ..verdicts import Verdict, stable_masks

#: At most this many neurons asked (one LP each); the rest keep their intervals.
MAX_UNPAIRED = 2000
#: No LP over a prefix of more neurons than this (its model alone would take seconds: the
#: wide dense layers of resnet_2b); cifar10_small's layer 2 reads 2,376 (1.2 s for three LPs).
MAX_PREFIX = 10_000


def unpaired(net: Network, encoding, pairs) -> dict[int, np.ndarray]:
    """Per ReLU layer of ``net`` (``f``), the neurons neither proven stable nor shown unstable
    that no candidate pair names, directly or through an exact copy
    (:mod:`exactcomp.stability.constants`)."""
    bounds, verdicts = encoding
    named: dict[int, set[int]] = {}
    for _gk, _q, fk, p in pairs:
        named.setdefault(fk, set()).add(p)
    out = {}
    for k, cls in enumerate(layer_classes(net)):
        if not net.layers[k].relu:
            continue
        off, on = stable_masks(bounds[k][0], bounds[k][1], verdicts[k])
        covered = np.isin(cls.label, cls.label[sorted(named.get(k, ()))])
        shown = verdicts[k] == Verdict.UNSTABLE if verdicts[k] is not None else False
        left = np.flatnonzero(~(off | on | covered | shown | cls.null) & (cls.floor < 0))
        if left.size:
            out[k] = left
    return out


def prove_unpaired(
    net: Network, box: Box, encoding, pairs, tol: Tolerances, deadline: float
) -> tuple[tuple[list, list], int]:
    """``encoding`` with the unpaired neurons the LPs prove stable (bounds and verdicts), and
    how many they proved. Nothing is changed in place."""
    bounds = [(lo.copy(), hi.copy()) for lo, hi in encoding[0]]
    verdicts = [None if v is None else np.array(v) for v in encoding[1]]
    todo = unpaired(net, (bounds, verdicts), pairs)
    proven, asked = 0, 0
    for k in sorted(todo):
        left = deadline - time.perf_counter()
        prefix = sum(la.out_features for la in net.layers[:k])
        if left <= 0 or asked >= MAX_UNPAIRED or prefix > MAX_PREFIX:
            break
        js = todo[k][: MAX_UNPAIRED - asked]
        asked += js.size
        lo, hi = bounds[k]
        if net.input_size <= split_inputs():  # few inputs: the engine's input splits
            q = PhaseInput(net, box, k, bounds[: k + 1], js, np.zeros(js.size), tol, deadline)
            res = input_split_phase(q)
            new_lo = np.where(res.active & ~res.inactive, np.maximum(lo, 0.0), lo)
            new_hi = np.where(res.inactive, np.minimum(hi, 0.0), hi)
        else:
            sides = np.where(hi[js] <= -lo[js], 1, -1)  # +1: prove INACTIVE (the upper bound)
            res = lp_layer_result(
                net, box, k, bounds[: k + 1], neurons=js, tol=tol, time_limit=left, sides=sides
            )
            new_lo, new_hi = np.maximum(lo, res.bounds[0]), np.minimum(hi, res.bounds[1])
        bounds[k] = (new_lo, new_hi)
        v = verdicts[k] if verdicts[k] is not None else np.full(lo.size, Verdict.UNDECIDED)
        off, on = new_hi[js] <= 0.0, (new_lo[js] >= 0.0) & ~(new_hi[js] <= 0.0)
        open_ = v[js] == Verdict.UNDECIDED
        v[js[off & open_]] = Verdict.INACTIVE
        v[js[on & open_]] = Verdict.ACTIVE
        verdicts[k] = v.astype(np.int8)
        proven += int(np.sum((off | on) & open_))
    return (bounds, verdicts), proven
