"""Classification of one layer: the phases of the chosen method, in order of cost.

A neuron's state is two *claims* (proven ``max z <= 0`` / proven ``min z >= 0``, each with the
proof kind that settled it) and the witness rows of the shared :class:`WitnessPool`. The
verdict is read off at the end, and a contradiction (a claim and a float64 witness against
it, or both claims) is numerical doubt: UNDECIDED, never stable.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..bab.relu import prove_signs_relu, relu_splits
from ..bab.split import prove_signs, split_inputs
from ..bounds.interval import Bounds
from ..domain import Box
from ..milp.encoding import (
    build_prefix_model,
    feeding_binaries,
    negligible_contribution,
    tolerance_amplification,
)
from ..milp.highs import (
    FEASIBILITY_TOLERANCE,
    PRECISE_FEASIBILITY_TOLERANCE,
    Answer,
    Question,
    compile_model,
    rounding_doubt,
)
from ..network import Network
from ..progress import Progress
from ..verdicts import LayerStability, Proof, Verdict
from .milp_phase import Task, Workers, run_questions
from .region_search import region_search
from .witnesses import WitnessPool, gradient_points

if TYPE_CHECKING:
    from .engine import Options

_SEARCH_FLOPS = 1e9  # arithmetic budget of the second gradient-search round, per layer
_REGION_LPS = 16
"""LPs of the region search per open neuron. On mnist-net_256x2 (prop_1, layer 1) every
witness it found took at most 14; questions it cannot settle are left to the MILP."""
_SPLIT_TIME = 3.0
"""Seconds of the input-split phase per layer, in MILP time limits (its node budget aside)."""
_OTHER_SOLVER_TOLERANCE = 1e-5
"""Feasibility/integrality tolerance assumed for Pyomo solvers other than HiGHS (Gurobi's
default ``IntFeasTol`` is 1e-5, the loosest of the usual defaults)."""


def _monotonic_deadline(left: float) -> float:
    """``time.monotonic()`` instant ``left`` seconds from now (the LP modules' clock)."""
    return time.monotonic() + max(left, 0.0)


class LayerRun:
    """The mutable state of one layer's classification (owned by one engine call)."""

    def __init__(
        self,
        net: Network,
        box: Box,
        k: int,
        prior: Bounds,
        bounds: list[Bounds],
        verdicts: list[np.ndarray | None],
        pool: WitnessPool,
        opts: Options,
        workers: Workers,
        stats: dict[str, float],
        progress: Progress,
    ) -> None:
        self.net, self.box, self.k = net, box, k
        self.bounds, self.verdicts = bounds, verdicts
        self.pool, self.opts, self.workers = pool, opts, workers
        self.stats, self.progress = stats, progress
        self.lower, self.upper = np.array(prior[0], dtype=float), np.array(prior[1], dtype=float)
        self.magnitude = np.maximum(np.abs(self.lower), np.abs(self.upper))
        n = net.layers[k].out_features
        self.inactive = np.zeros(n, dtype=bool)
        self.active = np.zeros(n, dtype=bool)
        self.proof = np.zeros(n, dtype=np.int8)
        self._reported = 0
        self._milp_neurons: set[int] = set()
        self._trusted = True
        self._doubt = np.zeros(n)
        self._feasibility = FEASIBILITY_TOLERANCE
        self._near: list[Task] = []  # unproven questions whose solutions were no witnesses
        self._feeding = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    # ------------------------------------------------------------------ helpers
    def _time(self, phase: str, t0: float) -> None:
        key = f"seconds_{phase}"
        self.stats[key] = self.stats.get(key, 0.0) + time.perf_counter() - t0

    def _claim_from_bounds(self, proof: Proof) -> None:
        new_i = (self.upper <= 0.0) & ~self.inactive
        new_a = (self.lower >= 0.0) & ~self.active
        self.proof[(new_i | new_a) & ~(self.inactive | self.active)] = proof
        self.inactive |= new_i
        self.active |= new_a

    def _seen(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.pos[self.k] >= 0, self.pool.neg[self.k] >= 0

    def open_neurons(self) -> np.ndarray:
        """Neurons with no claim and not both signs witnessed."""
        pos, neg = self._seen()
        return np.flatnonzero(~(self.inactive | self.active) & ~(pos & neg))

    def _advance(self, info: str) -> None:
        decided = self.inactive.size - self.open_neurons().size
        self.progress.advance(decided - self._reported, info)
        self._reported = decided

    # ------------------------------------------------------------------ phases
    def classify(self) -> LayerStability:
        method, layer = self.opts.method, self.net.layers[self.k]
        self._claim_from_bounds(Proof.INTERVAL)
        if method == "fast":
            t0 = time.perf_counter()
            self._tighten(self._linear(), Proof.LINEAR)
            self._time("linear", t0)
        if not layer.relu:
            return self._result()
        self.progress.task(f"layer {self.k}", self.inactive.size)
        self._advance("bounds")
        if method == "fast":
            t0 = time.perf_counter()
            self._search()
            self._time("witness", t0)
            self._advance("witnesses")
            # LP bounds decide open neurons; below the last ReLU layer they also tighten the
            # bounds of unstable ones, the big-M constants of every later layer's MILPs
            targets = self.open_neurons()
            if self.k < max(self.net.relu_layers):
                targets = np.flatnonzero(~(self.inactive | self.active))
            if self.open_neurons().size and self.k > 0:
                t0 = time.perf_counter()
                self._tighten(self._lp(targets), Proof.LP)
                self._time("lp", t0)
                self._advance("lp")
            if self.open_neurons().size and self.k > 0 and self.net.input_size <= split_inputs():
                t0 = time.perf_counter()
                self._input_splits()
                self._time("bab", t0)
                self._advance("input splits")
            if self.open_neurons().size and self.k > 0:
                t0 = time.perf_counter()
                self._region_search()
                self._time("region", t0)
                self._advance("region search")
            if self.open_neurons().size and self.k > 0:
                t0 = time.perf_counter()
                self._ideal_cuts()
                self._time("cuts", t0)
                self._advance("ideal cuts")
            few = self.net.input_size <= split_inputs()
            if self.open_neurons().size and self.k > 0 and not few and relu_splits():
                t0 = time.perf_counter()
                self._relu_splits()
                self._time("bab", t0)
                self._advance("relu splits")
        self._milp_phase()
        self._advance("milp")
        return self._result()

    def _search(self) -> None:
        """Gradient search for the sign each open neuron has not shown yet (fast only).

        A cheap round (the best pooled point and one random start per neuron, 25 steps),
        then, for the few neurons still open, restarts from random points as far as a fixed
        budget of arithmetic allows (about :data:`_SEARCH_FLOPS`): on small networks a
        neuron that resists the first round usually flips within a few dozen restarts, much
        sooner than a MILP finds it.
        """
        rng = np.random.default_rng([self.opts.seed, self.k])
        for rnd in range(2):
            open_ = self.open_neurons()
            if not open_.size or not self.pool.size:
                return
            pos, _ = self._seen()
            signs = np.where(pos[open_], -1, 1)
            if rnd == 0:
                reps, steps = 2, 25
            else:
                steps = 100
                cost = 4.0 * sum(la.weight.size for la in self.net.layers[: self.k + 1])
                reps = min(16, int(_SEARCH_FLOPS / (cost * steps * open_.size)))
                if reps < 2:
                    return
            starts = [self.pool.best(self.k, open_, signs)]
            starts += [self.box.sample(open_.size, rng) for _ in range(reps - 1)]
            neurons, signs = np.tile(open_, reps), np.tile(signs, reps)
            found = gradient_points(
                self.net, self.box, self.k, neurons, signs, np.concatenate(starts), steps
            )
            self.pool.add(found)

    def _relu_splits(self) -> None:
        """Branch and bound over ReLU splits (:mod:`exactcomp.bab.relu`) for the sign each
        open neuron has not shown, within its node budget and the deadline."""
        self._bab(prove_signs_relu, Proof.RELU_SPLIT)

    def _input_splits(self) -> None:
        """Branch and bound over input splits (:mod:`exactcomp.bab.split`) for the sign each
        open neuron has not shown, within its node budget and the deadline; its float64
        witnesses join the pool."""
        self._bab(prove_signs, Proof.BAB)

    def _bab(self, search, kind: Proof) -> None:
        """Run ``search`` (input or ReLU splits) on the open neurons; the input splits stop
        after :data:`_SPLIT_TIME` MILP time limits, the ReLU splits at their node budget
        (:data:`~exactcomp.bab.relu.TOTAL_NODES_RELU`), both at the caller's deadline."""
        open_ = self.open_neurons()
        pos, neg = self._seen()
        sides = np.where(neg[open_], 1, np.where(pos[open_], -1, 0))
        left = self._left()
        if kind == Proof.BAB:
            left = min(left, _SPLIT_TIME * self.opts.time_limit)
        res = search(
            self.net,
            self.box,
            self.k,
            self._known(),
            open_,
            sides,
            tol=self.opts.tol,
            deadline=None if not np.isfinite(left) else left + time.perf_counter(),
        )
        self.stats["bab_nodes"] = self.stats.get("bab_nodes", 0) + res.nodes
        self.pool.add(res.points)
        for claim, store in ((res.inactive, self.inactive), (res.active, self.active)):
            new = open_[claim & ~(self.inactive[open_] | self.active[open_])]
            self.proof[new] = kind
            store[new] = True

    def _region_search(self) -> None:
        """LP local search over activation patterns for the sign each open neuron has not
        shown (:mod:`exactcomp.stability.region_search`), from its best pooled point; what it
        finds also shows other neurons' signs. Capped at :data:`_REGION_LPS` LPs a neuron."""
        open_ = self.open_neurons()
        pos, _ = self._seen()
        signs = np.where(pos[open_], -1, 1)
        starts = self.pool.best(self.k, open_, signs)
        for j, s, x in zip(open_.tolist(), signs.tolist(), starts, strict=True):
            if not self._moot(Task(j, s)):
                found = region_search(
                    self.net, self.box, self.k, self.bounds, self.verdicts, j, s, x, _REGION_LPS
                )
                self.pool.add(found)

    def _ideal_cuts(self) -> None:
        """LP bounds with ideal-formulation cuts (:mod:`exactcomp.bounds.ideal_cuts`) on the
        side each open neuron has not shown: most questions the triangle LP leaves open
        are settled here, for a fraction of a MILP."""
        from ..bounds.ideal_cuts import ideal_cut_layer_result

        open_ = self.open_neurons()
        pos, neg = self._seen()
        # +1: only an upper bound can help (a positive value was not seen), -1: only a lower
        sides = np.where(pos[open_], -1, np.where(neg[open_], 1, 0))
        deadline = None if self.opts.deadline is None else _monotonic_deadline(self._left())
        res = ideal_cut_layer_result(
            self.net, self.box, self.k, self._known(), open_, sides, self.opts.tol, deadline
        )
        self._tighten(res.bounds, Proof.LP)
        self.pool.add(res.points)

    def _known(self) -> list[Bounds]:
        return [*self.bounds, (self.lower, self.upper)]

    def _linear(self) -> Bounds:
        from ..bounds.linear import linear_layer_bounds

        return linear_layer_bounds(self.net, self.box, self.k, self._known(), self.opts.tol)

    def _lp(self, neurons: np.ndarray) -> Bounds:
        from ..bounds.lp import lp_layer_bounds

        return lp_layer_bounds(
            self.net, self.box, self.k, self._known(), neurons=neurons, tol=self.opts.tol
        )

    def _tighten(self, b: Bounds, proof: Proof) -> None:
        self.lower = np.maximum(self.lower, b[0])
        self.upper = np.minimum(self.upper, b[1])
        if self.net.layers[self.k].relu:
            self._claim_from_bounds(proof)

    # ------------------------------------------------------------------ MILP
    def _tasks(self) -> list[Task]:
        if self.opts.method == "naive":
            return [Task(int(j), s) for j in range(self.inactive.size) for s in (1, -1)]
        open_ = self.open_neurons()
        if self.opts.method == "leo":
            return [Task(int(j), s) for j in open_ for s in (1, -1)]
        # fast: ask only the sign not yet seen; likely flips (sampled extreme near 0 relative
        # to the bound on that side) first, so that their incumbents can settle others.
        pos, neg = self._seen()
        zmin, zmax = self.pool.zmin[self.k], self.pool.zmax[self.k]
        keyed = []
        for j in open_.tolist():
            if pos[j]:
                ratio = zmin[j] / max(zmin[j] - self.lower[j], 1e-300)
                keyed.append((ratio, j, [Task(j, -1)]))
            elif neg[j]:
                ratio = -zmax[j] / max(self.upper[j] - zmax[j], 1e-300)
                keyed.append((ratio, j, [Task(j, 1)]))
            else:
                keyed.append((-np.inf, j, [Task(j, 1), Task(j, -1)]))
        keyed.sort(key=lambda e: (e[0], e[1]))
        return [t for _, _, ts in keyed for t in ts]

    def _left(self) -> float:
        """Seconds to the caller's deadline (``inf`` without one)."""
        d = self.opts.deadline
        return np.inf if d is None else d - time.perf_counter()

    def _moot(self, t: Task) -> bool:
        if self._left() <= 0.0:  # past the deadline: not asked, the neuron stays undecided
            return True
        if self.opts.method == "naive":
            return False
        j = t.neuron
        if self.inactive[j] or self.active[j]:
            return True
        pos, neg = self._seen()
        return bool(pos[j] if t.sign > 0 else neg[j])

    def _question(self, t: Task) -> Question:
        tol = self.opts.tol
        margin = tol.solver_abs + tol.solver_rel * float(self.magnitude[t.neuron])
        margin += float(self._doubt[t.neuron])
        # fast poses the cut-off as a constraint row ("row"): on the questions measured it
        # decided as many, sooner (mnist 256x2 layer 2, 16 questions: 38.7 s against 42.1 s;
        # the hard digits l1=1e-4 neuron: 6.6 s against 11.4 s). leo keeps the cut-off option.
        mode = {"naive": "optimal", "leo": "early"}.get(self.opts.method, "row")
        continuous = None
        if self.opts.method == "fast":  # the baselines keep their textbook formulation
            cols, neurons = self._feeding
            weights = self.net.layers[self.k].weight[t.neuron, neurons]
            continuous = cols[t.sign * weights <= 0.0]
        limit = min(self.opts.time_limit, max(self._left(), 0.01))
        return Question(
            t.neuron,
            t.sign,
            margin,
            mode,
            limit,
            continuous=continuous,
            feasibility=self._feasibility,
        )

    def _consume(self, t: Task, answer: Answer) -> None:
        j = t.neuron
        self.stats["milps"] += 1
        self._milp_neurons.add(j)
        only = None if self.opts.method == "fast" else (self.k, j)
        self.pool.add(answer.points, only=only)
        if only is None and not answer.proven and len(answer.points) and not self._moot(t):
            # the incumbent sits near the extreme but within the margin of 0: a short local
            # search from it often crosses 0 (a near tie that is really unstable)
            starts = answer.points[:1]
            one = np.array([j])
            sign = np.array([t.sign])
            self.pool.add(gradient_points(self.net, self.box, self.k, one, sign, starts, 25))
            if not self._moot(t):
                self._near.append(t)
        if answer.proven and self._trusted and self._contradicted(t):
            # a real input satisfies the question's row, so the solver's "infeasible" is false:
            # nothing it says about this model is trusted any more (a numerical doubt: keep)
            self._trusted = False
            self.stats["contradicted_milps"] = self.stats.get("contradicted_milps", 0) + 1
            self.progress.note(f"layer {self.k}: the MILP solver contradicted a sampled input")
        if answer.proven and self._trusted:
            claimed = self.inactive[j] or self.active[j]
            if t.sign > 0:
                self.inactive[j] = True
            else:
                self.active[j] = True
            if not claimed:
                self.proof[j] = Proof.MILP

    def _contradicted(self, t: Task) -> bool:
        """Whether a sampled input already meets ``sign * z_j >= -margin``, the row a proof
        declares infeasible. The encoding of a real network is feasible at every input, so
        such a proof is a solver error (seen on a badly scaled network, weights ~1e-8, at
        the precise tolerance). A necessary check, not a proof: it only ever refuses one."""
        seen = self.pool.zmax[self.k][t.neuron] if t.sign > 0 else -self.pool.zmin[self.k][t.neuron]
        return bool(seen >= -self._question(t).margin)

    def _milp_phase(self) -> None:
        tasks = self._tasks()
        tasks = [t for t in tasks if not self._moot(t)]
        if not tasks:
            return
        t0 = time.perf_counter()
        verdicts = None if self.opts.method == "naive" else self.verdicts
        model, zk = build_prefix_model(self.net, self.box, self.k, self.bounds, verdicts)
        eps = FEASIBILITY_TOLERANCE if self.opts.solver == "highs" else _OTHER_SOLVER_TOLERANCE
        amp = tolerance_amplification(self.net, self.box, self.k, self.bounds, verdicts)
        negligible = negligible_contribution(self.net, self.box, self.k, self.bounds, verdicts)
        self._doubt = eps * amp + negligible
        solve = None
        if self.opts.solver != "highs":
            from ..milp.solvers import pyomo_solver

            solve = pyomo_solver(model, zk, self.opts.solver)
        milp, columns = compile_model(model, model.x, zk)
        self._feeding = feeding_binaries(model, self.k, columns)
        self._trusted = rounding_doubt(milp, self.magnitude) <= 1.0
        if not self._trusted:
            # float64 rounding reaches the solver's own tolerance: no answer is a proof here
            # (its solutions still serve as candidate witnesses, re-checked in float64).
            self.stats["untrusted_milp_layers"] = self.stats.get("untrusted_milp_layers", 0) + 1
            self.progress.note(f"layer {self.k}: values too large for a trustworthy MILP proof")
        extra = {} if solve is None else {"solve": solve}
        run = partial(
            run_questions,
            milp,
            moot=self._moot,
            question=self._question,
            consume=self._consume,
            workers=self.workers,
            **extra,
        )
        run(tasks)
        near = [t for t in self._near if not self._moot(t)]
        if near and self.opts.method == "fast" and solve is None:
            # Near ties: the solver found points within the margin of 0 but none is a
            # witness. Ask again at a 1000x finer tolerance, whose margin is that much
            # smaller, where float64 rounding allows it.
            tight = PRECISE_FEASIBILITY_TOLERANCE
            self._trusted = rounding_doubt(milp, self.magnitude, row_tolerance=tight) <= 1.0
            if self._trusted:
                self._feasibility, self._doubt = tight, tight * amp + negligible
                self.stats["precise_milps"] = self.stats.get("precise_milps", 0) + run(near)
        self.stats["milp_neurons"] += len(self._milp_neurons)
        self._time("milp", t0)

    # ------------------------------------------------------------------ result
    def _result(self) -> LayerStability:
        n = self.inactive.size
        pos, neg = self._seen() if self.k in self.pool.pos else (np.zeros(n, bool),) * 2
        inactive = self.inactive & ~self.active & ~pos
        active = self.active & ~self.inactive & ~neg
        unstable = pos & neg & ~self.inactive & ~self.active
        verdict = np.full(n, Verdict.UNDECIDED, dtype=np.int8)
        verdict[inactive] = Verdict.INACTIVE
        verdict[active] = Verdict.ACTIVE
        verdict[unstable] = Verdict.UNSTABLE
        proof = np.where(inactive | active, self.proof, Proof.NONE).astype(np.int8)
        proof[unstable] = Proof.WITNESS
        lower = np.where(active, np.maximum(self.lower, 0.0), self.lower)
        upper = np.where(inactive, np.minimum(self.upper, 0.0), self.upper)
        wp = self.pool.pos.get(self.k, np.full(n, -1, dtype=np.int64)).copy()
        wn = self.pool.neg.get(self.k, np.full(n, -1, dtype=np.int64)).copy()
        return LayerStability(self.k, verdict, proof, lower, upper, wp, wn)
