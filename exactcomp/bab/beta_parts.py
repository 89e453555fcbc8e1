r"""The batched ReLU-split trees of one layer grown in several processes at once.

A layer's hard questions (:mod:`exactcomp.bab.beta_tree`) take tens of thousands of nodes each,
in one process: on mnist-net_256x6 prop_0_0.03 the ReLU-split phase is most of the run while
the second core waits. The trees are split between processes by their *leaves*, not by
their questions: one hard question can be most of a layer (layer 5's neuron 22 takes 70,000
of its 79,000 nodes with a budget of 90,000 per question), and dealing each question's
leaves to every part balances the hard questions themselves, with no estimate of which are
hard.

**The deal.** The trees first grow in this process for :data:`SPREAD_AFTER` nodes (most
questions of a layer end within a few hundred nodes, and a layer whose questions all end
there never starts a process). Then the open leaves :math:`L_q` of every question :math:`q`
still growing, sorted by bound (the worst first), are dealt to :math:`P` parts (``parts``,
the engine's ``jobs``): part :math:`p` gets the leaves at positions :math:`p, p + P, \ldots`
of each. Part 0 grows in this process, the others in worker processes (the engine's pool,
:class:`exactcomp.stability.milp_phase.Workers`), each with the same rule as one process
(:func:`~exactcomp.bab.beta_tree.grow`) on its leaves alone.

**Soundness.** The leaves :math:`L_q` and the closed leaves cover the box, so the parts'
leaves do too. Question :math:`q` is **proven** only if every part closed all of its
leaves; a witness from any part refutes it (it is an input evaluated in float64, as in one
process); otherwise its tree's bound is the largest of the parts' bounds, each a bound over
its part's leaves. A part whose worker fails is grown again in this process with the same
inputs, so it gives the same answer.

**Budgets, in nodes** (so that the verdicts depend on ``parts``, never on the load or on
which process ran a part). The call's budget :math:`T`
(:data:`~exactcomp.bab.beta_tree.TOTAL_NODES_BETA`) is shared equally: every node a part
bounds counts :math:`P` towards it, so each part gets :math:`(T - N_0) / P` of the
:math:`T - N_0` left after the first stage's :math:`N_0`, and the parts together bound at
most the nodes one process would. A question's budget :math:`M`
(:data:`~exactcomp.bab.beta_tree.MAX_NODES_BETA`) is not divided: each part may grow its
leaves of the question up to :math:`M` nodes counted from the deal (the question's nodes so
far plus the part's own), since the halves of a tree need not be equal (a first version that
divided it, with 90,000 nodes per question, left open one of layer 3's questions of
mnist-net_256x6 prop_0_0.03 that one process proves: 88 takes 81,921 nodes alone). So a
question that one process proves within :math:`M` nodes is not lost to its budget by the
deal: each part's leaves need at most the whole tree's nodes. The early stop of hopeless questions (:mod:`exactcomp.bab.outlook`) reads
each part's bound at the nodes the whole tree would have, :math:`N_q + P n` after the part's
own :math:`n` (:math:`N_q`: the question's nodes at the deal): a part's half of the leaves
falls about as the whole tree does at twice its nodes. Counted unscaled, layer 5's neuron 158
(which one process stops at its third mark, 4,165 nodes) was not stopped in either part and
grew to the budget in both: the trace took 476,798 nodes instead of about 297,000. With
``parts = 1`` nothing changes: the call is the one-process search.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from .beta import BetaModel
from .beta_tree import Grown, Question, grow, live

__all__ = [
    "MAX_NODES_SPREAD",
    "SLACK_SPREAD",
    "SPREAD_AFTER",
    "Spread",
    "TOTAL_NODES_SPREAD",
    "grow_part",
]

SPREAD_AFTER = 5_000
"""Nodes the trees of one call grow in this process before the rest is dealt to the parts:
a call that ends before (mnist-net_256x4 prop_0_0.03: 1,045 nodes in all; the digits models
ask the LP trees alone) starts no process. About 4 s of one core per call at the 1,300 nodes
per second of mnist-net_256x6. With 2,000 instead, mnist-net_256x6 prop_0_0.03 with
``jobs=2`` and 90,000 nodes per question (``scripts/stability_trace.py ... --jobs 2
--spread-budget 90000 400000 500``, load 2-4) took 121.9 s of CPU in this process instead of
116.9 s (72.5 s in the worker both times), 301,080 nodes instead of 297,158, the same one
neuron undecided: the halves of layer 3's trees were less even."""
MAX_NODES_SPREAD: int | None = None
TOTAL_NODES_SPREAD: int | None = None
SLACK_SPREAD: float | None = None
"""The node budgets (per question, per call) and the early stop's slack of the engine's calls
whose trees may be spread over two or more processes (:meth:`Workers.spread`, ``jobs >= 2``;
``None``: those of one process, :data:`~exactcomp.bab.beta_tree.MAX_NODES_BETA`,
:data:`~exactcomp.bab.beta_tree.TOTAL_NODES_BETA`, :data:`~exactcomp.bab.outlook.SLACK`).
Measured with the values of benchmarks/RESULTS.md "tail12" table 3 (90,000, 400,000, 500:
one process then decides mnist-net_256x6 prop_0_0.03's layer 3 neurons 88 and 177 and layer
5's 22, 57,000-82,000 nodes each, and stops only 158, in about 228 s of CPU): spread over 2
processes on this 2-core machine the trace (``scripts/stability_trace.py ... --jobs 2
--spread-budget 90000 400000 500``) left 1 neuron undecided in **117.2, 126.3 and 127.5 s of
wall time** (three runs, load 0.5-1.8; 111-126 s of CPU here, 67-76 s in the worker; the
same 297,158 nodes each time and under load), against 4 undecided in 53.0 s with the
one-process budgets; mnist-net_256x2 prop_1_0.05 took 11.7 s instead of 19.7 s with
``jobs=1``; the wide boxes under 120 s left 469 and 917 undecided against 486 and 926 with
``jobs=1`` (benchmarks/RESULTS.md "par13"). Not the default: the 1-undecided run does not
keep to 120 s (two runs of three over by 5-6 %); setting the three values makes it so."""


@dataclass(frozen=True)
class Spread:
    """``parts`` processes (this one included) to grow the trees in; ``submit(fn, *args)``
    runs ``fn(*args)`` in a worker process and returns its future (``None``: no worker, run
    it here); ``after``: :data:`SPREAD_AFTER`; the node budgets and the early stop's slack of
    the call when it is spread (``None``: those of one process)."""

    parts: int
    submit: Callable[..., Future | None]
    after: int = SPREAD_AFTER
    max_nodes: int | None = None
    total_nodes: int | None = None
    slack: float | None = None

    def resume(self, setup: tuple, model: BetaModel, qs: list, grown: Grown, *args) -> None:
        """Deal the open leaves of the questions of ``qs`` still growing to :attr:`parts`
        parts, grow them (``args``: ``tol, steps, batch, fsb, max_nodes, total_nodes,
        deadline, slack`` of :func:`~exactcomp.bab.beta_tree.grow`) and merge the parts'
        answers into ``qs`` and ``grown`` (module docstring). Part 0 grows here, on
        ``model``; the others are sent to workers, and grown here if a worker fails."""
        dealt = [q for q in live(qs, grown) if q.open]
        tol, steps, batch, fsb, max_nodes, total_nodes, deadline, slack = args
        left = None if deadline is None else deadline - time.perf_counter()
        jobs = []
        for p in range(self.parts):
            part = [
                Question(q.index, q.j, q.sign, _heap(sorted(q.open)[p :: self.parts]), q.nodes,
                         best=q.best, marks=list(q.marks), dealt=q.nodes)
                for q in dealt
            ]  # fmt: skip
            budgets = (max_nodes, total_nodes, grown.nodes, self.parts, left, slack)
            jobs.append((setup, part, grown.inactive.size, tol, steps, batch, fsb, budgets))
        futures = [self.submit(grow_part, *job) for job in jobs[1:]]
        answers = [grow_part(*jobs[0], model=model)]
        for job, fut in zip(jobs[1:], futures, strict=True):
            answers.append(_answer(fut, job))
        _merge(dealt, answers, grown)


def _heap(items: list) -> list:
    heapq.heapify(items)
    return items


def _answer(fut: Future | None, job: tuple) -> tuple:
    """The answer of a part sent to a worker, or the same part grown here if it failed."""
    if fut is not None:
        try:
            return fut.result()
        except Exception:  # a broken pool, a worker that died: the same part, here
            pass
    return grow_part(*job)


def grow_part(
    setup: tuple,
    qs: list[Question],
    m: int,
    tol,
    steps: int,
    batch: int,
    fsb: int,
    budgets: tuple,
    model: BetaModel | None = None,
) -> tuple:
    """Grow one part's leaves (:func:`~exactcomp.bab.beta_tree.grow`, each node counted
    ``parts`` times towards the call's budget); its answer per question ``(state, nodes
    bounded, best, marks, bound)``, its witness points and the nodes it bounded. ``budgets``:
    ``(max_nodes, total_nodes, nodes so far, parts, seconds to the deadline or None,
    slack)``. Runs in a worker process: the model is built from ``setup = (net, box, k, pre,
    cuts)`` unless given."""
    max_nodes, total_nodes, nodes0, parts, left, slack = budgets
    if model is None:
        net, box, k, pre, cuts = setup
        model = BetaModel(net, box, k, pre)
        if cuts:
            model.with_cuts(cuts)
    deadline = None if left is None else time.perf_counter() + left
    grown = Grown(np.zeros(m, bool), np.zeros(m, bool), nodes=nodes0, final=False)
    before = [q.nodes for q in qs]
    args = (tol, steps, batch, fsb, max_nodes, total_nodes, deadline, parts, slack)
    grow(model, qs, [], grown, *args)
    per = [
        (q.state, q.nodes - n, q.best, q.marks, q.bound()) for q, n in zip(qs, before, strict=True)
    ]
    points = np.concatenate(grown.points) if grown.points else np.empty((0, setup[1].dim))
    return per, points, (grown.nodes - nodes0) // parts


def _merge(dealt: list[Question], answers: list[tuple], grown: Grown) -> None:
    """The parts' answers as one tree per question: refuted by any part, proven by all, else
    the largest of the parts' bounds (``far``) and the first part's marks."""
    for i, q in enumerate(dealt):
        got = [per[i] for per, _, _ in answers]
        states = [g[0] for g in got]
        if "refuted" in states:
            q.state = "refuted"
        elif all(s == "proven" for s in states):
            q.state = "proven"
            (grown.inactive if q.sign > 0 else grown.active)[q.index] = True
        else:
            q.state = next((s for s in ("hopeless", "stuck") if s in states), "open")
        q.nodes += sum(g[1] for g in got)
        q.best = max(g[2] for g in got)
        q.marks = got[0][3]
        q.far = max(g[4] for g in got)
        q.open = []
    for _, points, nodes in answers:
        if len(points):
            grown.points.append(points)
        grown.nodes += nodes
