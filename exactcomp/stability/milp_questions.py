"""The MILP phase of one layer: its questions, their order, and what each answer adds.

One question per open (neuron, sign) asks whether ``sign * z_j >= -margin`` is feasible on
the layer's MILP (:mod:`exactcomp.milp.layer`); "infeasible", proven, is a claim. The
questions form one ordered list that workers may answer ahead of time
(:func:`~exactcomp.stability.milp_phase.run_questions`); an answer's incumbents join the
shared witness pool and can make later questions moot; near ties are asked again as one batch
at the end. A proof that a sampled input contradicts makes the layer's MILP untrusted.
"""

from __future__ import annotations

import time

import numpy as np

from ..bab.split import hopeless_bit
from ..milp.highs import Answer, Question
from ..milp.layer import WALL_PER_CPU, LayerMilp, layer_milp
from ..search import gradient_points
from ..tolerances import FEASIBILITY_TOLERANCE
from ..verdicts import Proof
from .claims import LayerClaims
from .milp_phase import Task, run_questions

MILP_START = 2.0
"""Seconds to the layer's deadline under which the MILP phase is not started: building the
layer's model alone (mnist-net_256x4 prop_1_0.05, layer 1, at load 8) overran the deadline
by 2.9 s, leaving later layers no time."""
SKIP_HOPELESS = True
"""Whether ``fast`` skips the questions a ReLU-split tree judged hopeless
(:mod:`exactcomp.bab.outlook`): they stay UNDECIDED. On mnist-net_256x6 prop_0_0.03 the
MILPs of its four undecided neurons took 41 s of CPU and decided none (10 s each; a 60 s
MILP of layer 3's neuron 88 on bounds tightened again by ideal cuts left its bound at 3.1,
benchmarks/RESULTS.md "tail12"); no other MNIST network of the benchmarks asks a MILP after
its split trees."""
_OTHER_SOLVER_TOLERANCE = 1e-5
"""Feasibility/integrality tolerance assumed for Pyomo solvers other than HiGHS (Gurobi's
default ``IntFeasTol`` is 1e-5, the loosest of the usual defaults)."""


class MilpQuestions:
    """The MILP questions of one layer's claims (:class:`LayerClaims`), asked by :meth:`run`;
    the claims they prove are added to ``claims``. One per MILP phase."""

    def __init__(self, claims: LayerClaims) -> None:
        self.c = claims
        self.opts = claims.opts
        self._neurons: set[int] = set()  # neurons asked about
        self._trusted = True
        self._layer: LayerMilp | None = None  # the layer's MILP, built by run
        self._precise = False  # questions at PRECISE_FEASIBILITY_TOLERANCE (near ties)
        self._near: list[Task] = []  # unproven questions whose solutions were no witnesses

    def _tasks(self) -> list[Task]:
        c = self.c
        if self.opts.method == "naive":
            return [Task(int(j), s) for j in range(c.inactive.size) for s in (1, -1)]
        open_ = c.open_neurons()
        if self.opts.method == "leo":
            return [Task(int(j), s) for j in open_ for s in (1, -1)]
        # fast: ask only the sign not yet seen; likely flips (sampled extreme near 0 relative
        # to the bound on that side) first, so that their incumbents can settle others.
        pos, neg = c.seen()
        zmin, zmax = c.pool.zmin[c.k], c.pool.zmax[c.k]
        keyed = []
        for j in open_.tolist():
            if pos[j]:
                ratio = zmin[j] / max(zmin[j] - c.lower[j], 1e-300)
                keyed.append((ratio, j, [Task(j, -1)]))
            elif neg[j]:
                ratio = -zmax[j] / max(c.upper[j] - zmax[j], 1e-300)
                keyed.append((ratio, j, [Task(j, 1)]))
            else:
                keyed.append((-np.inf, j, [Task(j, 1), Task(j, -1)]))
        keyed.sort(key=lambda e: (e[0], e[1]))
        tasks = [t for _, _, ts in keyed for t in ts]
        if SKIP_HOPELESS:
            tasks = [t for t in tasks if not c.hopeless[t.neuron] & hopeless_bit(t.sign)]
        return tasks

    def _question(self, t: Task) -> Question:
        # fast poses the cut-off as a constraint row ("row"): on the questions measured it
        # decided as many, sooner (mnist 256x2 layer 2, 16 questions: 38.7 s against 42.1 s;
        # the hard digits l1=1e-4 neuron: 6.6 s against 11.4 s). leo keeps the cut-off option.
        # The baselines keep their textbook formulation (no relaxed feeding binaries).
        mode = {"naive": "optimal", "leo": "early"}.get(self.opts.method, "row")
        # time_limit is CPU seconds (verdicts independent of the load); wall-clock: the
        # deadline, and at most WALL_PER_CPU times as long (exactcomp.milp.layer)
        wall = min(WALL_PER_CPU * self.opts.time_limit, max(self.c.left(), 0.01))
        fast = self.opts.method == "fast"
        assert self._layer is not None
        return self._layer.question(
            self.opts.tol, t.neuron, t.sign, wall, mode=mode, precise=self._precise,
            relax=fast, cpu_limit=self.opts.time_limit,
        )  # fmt: skip

    def _consume(self, t: Task, answer: Answer) -> None:
        c, j = self.c, t.neuron
        c.stats["milps"] += 1
        self._neurons.add(j)
        only = None if self.opts.method == "fast" else (c.k, j)
        c.pool.add(answer.points, only=only)
        if only is None and not answer.proven and len(answer.points) and not c.moot(t):
            # the incumbent sits near the extreme but within the margin of 0: a short local
            # search from it often crosses 0 (a near tie that is really unstable)
            starts = answer.points[:1]
            one = np.array([j])
            sign = np.array([t.sign])
            c.pool.add(gradient_points(c.net, c.box, c.k, one, sign, starts, 25))
            if not c.moot(t) and not answer.timed_out:
                # (a question that ran out of time is no near tie: its extreme is unknown,
                # and at the finer tolerance it is no easier. tll_n2_N8_0_0, layer 5: its
                # two ties over a region took 10 s of CPU each, then 10 s more each there)
                self._near.append(t)
        if answer.proven and self._trusted and self._contradicted(t):
            # a real input satisfies the question's row, so the solver's "infeasible" is false:
            # nothing it says about this model is trusted any more (a numerical doubt: keep)
            self._trusted = False
            c.stats["contradicted_milps"] = c.stats.get("contradicted_milps", 0) + 1
            c.progress.note(f"layer {c.k}: the MILP solver contradicted a sampled input")
        if answer.proven and self._trusted:
            claimed = c.inactive[j] or c.active[j]
            if t.sign > 0:
                c.inactive[j] = True
            else:
                c.active[j] = True
            if not claimed:
                c.proof[j] = Proof.MILP

    def _contradicted(self, t: Task) -> bool:
        """Whether a sampled input already meets ``sign * z_j >= -margin``, the row a proof
        declares infeasible. The encoding of a real network is feasible at every input, so
        such a proof is a solver error (seen on a badly scaled network, weights ~1e-8, at
        the precise tolerance). A necessary check, not a proof: it only ever refuses one."""
        c = self.c
        seen = c.pool.zmax[c.k][t.neuron] if t.sign > 0 else -c.pool.zmin[c.k][t.neuron]
        return bool(seen >= -self._question(t).margin)

    def run(self) -> None:
        """One MILP question per open (neuron, sign), in the order of :meth:`_tasks`; none
        where the layer's deadline is under :data:`MILP_START` seconds away.

        The layer's model and each question come from :mod:`exactcomp.milp.layer`, as in
        the re-check (:func:`exactcomp.verify.recheck._milp_layer`); the drivers differ on
        purpose. Here the questions form one ordered list that workers may answer ahead of
        time (:func:`~exactcomp.stability.milp_phase.run_questions`), an answer's incumbents
        join the shared witness pool and can make later questions moot, and near ties are
        asked again as one batch at the end. The re-check asks only the report's claims, one
        at a time, in this process, each with its share of one deadline and a second pass for
        the ones that timed out, and learns nothing from one claim for another.
        """
        c = self.c
        tasks = [t for t in self._tasks() if not c.moot(t)]
        if not tasks or c.left() < MILP_START:
            return
        t0 = time.perf_counter()
        verdicts = None if self.opts.method == "naive" else c.verdicts
        eps = FEASIBILITY_TOLERANCE if self.opts.solver == "highs" else _OTHER_SOLVER_TOLERANCE
        layer = layer_milp(c.net, c.box, c.k, c.bounds, c.magnitude, verdicts, coarse=eps)
        self._layer = layer
        solve = None
        if self.opts.solver != "highs":
            from ..milp.solvers import pyomo_solver

            solve = pyomo_solver(layer.model, layer.zk, self.opts.solver)
        self._trusted = layer.trusted()
        if not self._trusted:
            # float64 rounding reaches the solver's own tolerance: no answer is a proof here
            # (its solutions still serve as candidate witnesses, re-checked in float64).
            c.stats["untrusted_milp_layers"] = c.stats.get("untrusted_milp_layers", 0) + 1
            c.progress.note(f"layer {c.k}: values too large for a trustworthy MILP proof")
        extra = {} if solve is None else {"solve": solve}

        def ask(batch: list[Task]) -> int:
            calls = {"moot": c.moot, "question": self._question, "consume": self._consume}
            return run_questions(layer.milp, batch, workers=c.workers, **calls, **extra)

        ask(tasks)
        near = [t for t in self._near if not c.moot(t)]
        if near and self.opts.method == "fast" and solve is None:
            # Near ties: the solver found points within the margin of 0 but none is a
            # witness. Ask again at a 1000x finer tolerance, whose margin is that much
            # smaller, where float64 rounding allows it.
            self._trusted = layer.trusted(precise=True)
            if self._trusted:
                self._precise = True
                c.stats["precise_milps"] = c.stats.get("precise_milps", 0) + ask(near)
        c.stats["milp_neurons"] += len(self._neurons)
        c.add_seconds("milp", t0)
