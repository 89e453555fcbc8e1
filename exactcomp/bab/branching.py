"""The branching rule of the batched ReLU-split trees (:mod:`exactcomp.bab.beta_tree`): which
unsplit unstable neuron each popped node is split on.

The default is the largest BaBSR-style score ``a^+ t`` (:data:`FSB` = 1). Filtered smart
branching (De Palma et al. 2021, as in OVAL and alpha,beta-CROWN) is built and tested, and off
by measurement: it bounds both children of each of ``K`` shortlisted candidates and splits the
one whose worse child is lowest. Either way the two children cover the node, so the rule
changes which cover is searched, never a bound's soundness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tolerances import Tolerances
from .beta import BetaModel

__all__ = ["FSB", "FSB_STEPS", "choose_splits"]

FSB = 1
"""Candidates per node of filtered smart branching (:func:`choose_splits`); 1: the largest
score alone, chosen by measurement (benchmarks/RESULTS.md "fsb11"; mnist-net_256x6
prop_0_0.03, the captured questions). Trees of 8,000 nodes, bound of ``-z`` left on layer 5's
158 / 22 and layer 3's 88: K = 1 0.085 / 0.064 / 1.163 (9.2 / 6.9 / 4.2 s of CPU); K = 2
0.090 / 0.073 / 1.205; K = 4 0.097 / 0.079 / 1.161 (9.7 / 8.5 / 5.6 s); K = 8 0.099 / 0.083 /
1.232; K = 16 0.099 / 0.083 / 1.288 (16.2 / 14.0 / 9.3 s). Layer replays, K = 1 against 4:
layer 5 6 of 8 decided in 43.0 s against 51.9 s; layer 3 38 of 40 in 74.9 s against 36 of 40
in 106.8 s (the call's 120,000 nodes spent). The children's bound after the parent's
multipliers predicts their bound after their own 10 steps well, but the trees the worse-child
rule builds are not smaller."""
FSB_STEPS = 0
"""Adam steps on each candidate child before its bound is compared (0: the parent's
multipliers as they are). With K = 4, 1 and 3 steps left the same trees' bounds at 0.097 /
0.079 / 1.217 and 0.097 / 0.080 / 1.219 for 1.8-3.0 times the CPU of K = 1."""


def choose_splits(
    model: BetaModel, popped: Sequence[tuple[Any, tuple]], tol: Tolerances, fsb: int, batch: int
) -> list[int]:
    r"""The neuron to split for each popped node (filtered smart branching when ``fsb > 1``).

    Each node's shortlist is its ``fsb`` unsplit unstable neurons of largest score ``a^+ t``
    (positive scores only; :meth:`~exactcomp.bab.beta.BetaModel.evaluate`). Both children of
    every candidate are bounded in one batch with the parent's multipliers, no step
    (:meth:`~exactcomp.bab.beta.BetaModel.evaluate`: any multipliers give a valid bound, so
    this is an estimate of what the child's own optimisation starts from), and the candidate
    whose worse child bound :math:`\max(top_+, top_-)` is lowest is split (ties: the larger
    score). With ``fsb <= 1``, or one candidate, the largest score. Only the choice of the
    neuron changes: whichever is chosen, the two children cover the node. ``popped``: pairs of
    a question (its ``j`` and ``sign``) and its node item; ``batch``: children bounded at once.
    """
    picks = []
    for _, item in popped:
        score = item[5]
        if fsb <= 1:
            picks.append(np.array([int(np.argmax(score))]))
            continue
        n = min(fsb, score.size)
        top = np.argpartition(-score, n - 1)[:n]
        top = top[score[top] > 0.0]
        picks.append(top[np.argsort(-score[top], kind="stable")])
    sizes = [p.size for p in picks]
    if max(sizes, default=0) <= 1:
        return [int(p[0]) for p in picks]
    rows, signs, splits, alphas, betas = [], [], [], [], []
    for (q, item), cand in zip(popped, picks, strict=True):
        _, _, split, al, be, _ = item
        for i in cand.tolist():
            for s in (1, -1):
                child = split.copy()
                child[i] = s
                rows.append(q.j)
                signs.append(q.sign)
                splits.append(child)
                alphas.append(al)
                betas.append(be)
    tops = np.empty(len(rows))
    for at in range(0, len(rows), batch):
        sl = slice(at, at + batch)
        r, g = np.array(rows[sl], np.int64), np.array(signs[sl], np.float64)
        sp = np.stack(splits[sl])
        al = np.stack(alphas[sl]).astype(np.float64)
        be = np.stack(betas[sl]).astype(np.float64)
        al, be = model.optimise(r, g, sp, al, be, FSB_STEPS)
        tops[sl] = model.evaluate(r, g, sp, al, be, tol)[0]
    out, at = [], 0
    for cand in picks:
        worse = tops[at : at + 2 * cand.size].reshape(-1, 2).max(1)
        out.append(int(cand[int(np.argmin(worse))]))  # argmin: the first of ties, larger score
        at += 2 * cand.size
    return out
