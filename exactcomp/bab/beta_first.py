"""The batched ReLU-split trees first, then the LP trees on what they leave.

:func:`batched_first` asks a layer's questions of :mod:`exactcomp.bab.beta_tree` (its trees
spread over the engine's processes with :mod:`exactcomp.bab.beta_parts`), then hands the
signs it neither proved nor refuted by a witness to the LP trees of :mod:`exactcomp.bab.relu`
(:data:`~exactcomp.bab.relu.BATCHED_FIRST`); each engine is sound alone, so their claims,
points and tree bounds are merged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..bounds.interval import Bounds
from ..domain import Box
from ..network import Network
from ..search import sign_witnesses
from ..tolerances import Tolerances
from . import beta_tree
from .split import SplitResult, hopeless_bit

__all__ = ["LP_AFTER_HOPELESS", "LP_AFTER_SPENT", "batched_first"]

LP_AFTER_SPENT = True
"""Whether :func:`batched_first` still gives the LP trees a question whose batched tree used
its whole budget (:data:`~exactcomp.bab.beta_tree.MAX_NODES_BETA`). Off, mnist-net_256x6
prop_0_0.03 took 165.3 s of CPU instead of 197.3 s (the same 4 undecided: the LP trees got nowhere on them), but
mnist-net_256x2 prop_1_0.05 left 1 neuron undecided instead of 0: on its first layer the LP
trees with their ideal cuts prove questions that 20,000 batched nodes do not."""
LP_AFTER_HOPELESS = False
"""Whether :func:`batched_first` still gives the LP trees a question whose batched tree was
stopped as hopeless (:mod:`exactcomp.bab.outlook`). Off: on mnist-net_256x6 prop_0_0.03 the
LP trees took 42.0 s of CPU on layer 5's two stopped questions (22, 158) and 3.2 s on layer
3's (88, 177), and proved none (``scripts/relu_split_replay.py replay OUT.pkl 3 5
--profile``). The one measured question that the LP trees prove after a batched tree left it
open, mnist-net_256x2 prop_1_0.05's neuron 29, is not stopped: its worst N* is
9.1 times its budget, under :data:`~exactcomp.bab.outlook.SLACK` (a thin margin: the reason
:data:`~exactcomp.bab.outlook.SLACK` is not lower)."""


def batched_first(
    lp_search,
    net: Network,
    box: Box,
    k: int,
    known: Sequence[Bounds],
    neurons: np.ndarray,
    sides: np.ndarray,
    tol: Tolerances,
    max_nodes: int,
    total_nodes: int,
    deadline: float | None,
    cuts: Sequence[tuple[int, int, np.ndarray, float, float]] = (),
    spread: beta_tree.Spreading | None = None,
) -> SplitResult:
    """:func:`~exactcomp.bab.beta_tree.prove_signs_beta` on the questions (its trees grown in
    other processes too, with ``spread``), then ``lp_search`` (the LP trees of
    :mod:`exactcomp.bab.relu`, same signature) on the signs it neither proved nor refuted by
    a witness; the claims, points and tree bounds of both, merged (each is sound alone)."""
    t0 = time.perf_counter()
    neurons = np.asarray(neurons, dtype=np.int64)
    sides = np.asarray(sides)
    spent: list[tuple[int, int]] = []
    first = beta_tree.prove_signs_beta(  # by name: measurement scripts wrap it
        net, box, k, known, neurons, sides, tol=tol, deadline=deadline, cuts=cuts, spent=spent,
        spread=spread,
    )  # fmt: skip
    seen = sign_witnesses(net, k, first.points, tol)
    pos_open = (np.sign(sides) >= 0) & (seen.pos[neurons] < 0)
    neg_open = (np.sign(sides) <= 0) & (seen.neg[neurons] < 0)
    dropped = False
    if not LP_AFTER_SPENT:  # the batched tree went further than an LP tree would
        for i, sign in spent:
            (pos_open if sign > 0 else neg_open)[i] = False
            dropped = True
    hopeless = first.hopeless if first.hopeless is not None else np.zeros(neurons.size, np.int8)
    if not LP_AFTER_HOPELESS:
        dropped |= bool(hopeless.any())
        pos_open &= (hopeless & hopeless_bit(1)) == 0
        neg_open &= (hopeless & hopeless_bit(-1)) == 0
    rest = ~(first.inactive | first.active) & (pos_open | neg_open)
    sub = np.flatnonzero(rest)
    new_sides = np.where(pos_open & neg_open, 0, np.where(pos_open, 1, -1))[sub]
    second = lp_search(
        net,
        box,
        k,
        known,
        neurons[sub],
        new_sides,
        tol=tol,
        max_nodes=max_nodes,
        total_nodes=total_nodes,
        deadline=deadline,
    )
    inactive, active = first.inactive.copy(), first.active.copy()
    inactive[sub] |= second.inactive
    active[sub] |= second.active
    lower = first.lower.copy() if first.lower is not None else np.full(neurons.size, -np.inf)
    upper = first.upper.copy() if first.upper is not None else np.full(neurons.size, np.inf)
    if second.lower is not None and second.upper is not None:
        lower[sub] = np.maximum(lower[sub], second.lower)
        upper[sub] = np.minimum(upper[sub], second.upper)
    points = np.concatenate([first.points, second.points])
    nodes = first.nodes + second.nodes
    seconds = time.perf_counter() - t0
    complete = second.complete and not dropped
    hopeless = np.where(inactive | active, 0, hopeless).astype(np.int8)
    return SplitResult(
        neurons, inactive, active, points, nodes, complete, seconds, lower, upper, hopeless=hopeless
    )
