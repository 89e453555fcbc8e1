"""Classification of one layer: the phases of the chosen method, in order of cost.

A neuron's state is two *claims* (proven ``max z <= 0`` / proven ``min z >= 0``, each with the
proof kind that settled it) and the witness rows of the shared :class:`WitnessPool`. The
verdict is read off at the end, and a contradiction (a claim and a float64 witness against
it, or both claims) is numerical doubt: UNDECIDED, never stable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..bab.relu import relu_splits
from ..bab.split import split_inputs
from ..bounds.interval import Bounds
from ..domain import Box
from ..milp.highs import Answer, Question
from ..milp.layer import WALL_PER_CPU, LayerMilp, layer_milp
from ..network import Network
from ..progress import Progress
from ..search import gradient_points
from ..tolerances import FEASIBILITY_TOLERANCE
from ..verdicts import LayerStability, Proof, Verdict
from .milp_phase import Task, Workers, run_questions
from .phases import (
    PhaseInput,
    PhaseResult,
    from_bounds,
    ideal_cut_phase,
    input_split_phase,
    linear_phase,
    lp_phase,
    relu_split_phase,
)
from .region_search import region_search
from .witnesses import WitnessPool, search_signs

if TYPE_CHECKING:
    from .options import Options

_REGION_LPS = 16
"""LPs of the region search per open neuron. On mnist-net_256x2 (prop_1, layer 1) every
witness it found took at most 14; questions it cannot settle are left to the MILP."""
_REGION_DRY = 32
"""Searches of one layer's region search after which it stops if none has shown a new sign
(of its own neuron or any other open one): on mnist-net_256x6 prop_0_0.03 the searches of
layers 2 and 3 (74 and 191 open neurons) found none, 5 and 17 s of CPU, while on
mnist-net_256x2 prop_1_0.05 (layer 1, 124 searches, 8 finding signs) the first sign came at
the 5th search. Stopping only gives up candidate witnesses: the neurons stay open for the
proof phases, never decided by it."""
_SPLIT_TIME = 3.0
"""Seconds of the input-split phase per layer, in MILP time limits (its node budget aside)."""
_MILP_START = 2.0
"""Seconds to the layer's deadline under which the MILP phase is not started: building the
layer's model alone (mnist-net_256x4 prop_1_0.05, layer 1, at load 8) overran the deadline
by 2.9 s, leaving later layers no time."""
_OTHER_SOLVER_TOLERANCE = 1e-5
"""Feasibility/integrality tolerance assumed for Pyomo solvers other than HiGHS (Gurobi's
default ``IntFeasTol`` is 1e-5, the loosest of the usual defaults)."""


@dataclass(frozen=True)
class BoxRun:
    """What every layer of one box's analysis shares: the network and box, the witness pool,
    the options, the MILP workers, the statistics and the progress display (owned by one
    engine call; ``pool`` and ``stats`` accumulate)."""

    net: Network
    box: Box
    pool: WitnessPool
    opts: Options
    workers: Workers
    stats: dict[str, float]
    progress: Progress


class LayerRun:
    """The claims of one layer's classification, and the short driver over its phases.

    The bound phases are the functions of :mod:`exactcomp.stability.phases` (shared with the
    re-check); the MILP phase is below. Owned by one engine call.
    """

    def __init__(
        self,
        run: BoxRun,
        k: int,
        prior: Bounds,
        bounds: list[Bounds],
        verdicts: list[np.ndarray | None],
        deadline: float | None = None,
        spread: int = 1,
    ) -> None:
        self.net, self.box, self.k = run.net, run.box, k
        self.spread = max(spread, 1)  # ReLU layers from this one to the last
        self.deadline = deadline  # this layer's part of the caller's (engine.layer_deadline)
        self.bounds, self.verdicts = bounds, verdicts
        self.pool, self.opts, self.workers = run.pool, run.opts, run.workers
        self.stats, self.progress = run.stats, run.progress
        self.lower, self.upper = np.array(prior[0], dtype=float), np.array(prior[1], dtype=float)
        self.magnitude = np.maximum(np.abs(self.lower), np.abs(self.upper))
        n = self.net.layers[k].out_features
        self.inactive = np.zeros(n, dtype=bool)
        self.active = np.zeros(n, dtype=bool)
        self.proof = np.zeros(n, dtype=np.int8)
        self._reported = 0
        self._milp_neurons: set[int] = set()
        self._trusted = True
        self._layer: LayerMilp | None = None  # the layer's MILP, built by _milp_phase
        self._precise = False  # questions at PRECISE_FEASIBILITY_TOLERANCE (near ties)
        self._near: list[Task] = []  # unproven questions whose solutions were no witnesses

    # ------------------------------------------------------------------ claims
    def _apply(self, res: PhaseResult, proof: Proof) -> None:
        """Take a phase's result: tighten the bounds, add its claims (each new claim keeps the
        first proof kind that settled the neuron), pool its points."""
        if res.bounds is not None:
            self.lower = np.maximum(self.lower, res.bounds[0])
            self.upper = np.minimum(self.upper, res.bounds[1])
        if res.points is not None:
            self.pool.add(res.points)
        if res.nodes is not None:
            self.stats["bab_nodes"] = self.stats.get("bab_nodes", 0) + res.nodes
        if not self.net.layers[self.k].relu:
            return
        new_i = res.inactive & ~self.inactive
        new_a = res.active & ~self.active
        self.proof[(new_i | new_a) & ~(self.inactive | self.active)] = proof
        self.inactive |= new_i
        self.active |= new_a

    def _seen(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.pos[self.k] >= 0, self.pool.neg[self.k] >= 0

    def _shown(self) -> int:
        """Signs of this layer witnessed so far (both signs of a neuron count twice)."""
        pos, neg = self._seen()
        return int(pos.sum() + neg.sum())

    def open_neurons(self) -> np.ndarray:
        """Neurons with no claim and not both signs witnessed."""
        pos, neg = self._seen()
        return np.flatnonzero(~(self.inactive | self.active) & ~(pos & neg))

    def _open_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """The open neurons and the claim each can still have: ``+1`` inactive (no positive
        value seen), ``-1`` active, ``0`` either."""
        open_ = self.open_neurons()
        pos, neg = self._seen()
        return open_, np.where(pos[open_], -1, np.where(neg[open_], 1, 0))

    def _ask(self, neurons: np.ndarray, sides=None, deadline: float | None = None) -> PhaseInput:
        """The phase question about ``neurons`` on the bounds proven so far."""
        known = [*self.bounds, (self.lower, self.upper)]
        sides = np.zeros(neurons.size, dtype=np.int64) if sides is None else sides
        return PhaseInput(
            self.net, self.box, self.k, known, neurons, sides, self.opts.tol, deadline
        )

    def _left(self) -> float:
        """Seconds to this layer's deadline (``inf`` without one)."""
        d = self.deadline
        return np.inf if d is None else d - time.perf_counter()

    def _time(self, phase: str, t0: float) -> None:
        key = f"seconds_{phase}"
        self.stats[key] = self.stats.get(key, 0.0) + time.perf_counter() - t0

    def _advance(self, info: str) -> None:
        decided = self.inactive.size - self.open_neurons().size
        self.progress.advance(decided - self._reported, info)
        self._reported = decided

    def _phase(self, name: str, info: str, step: Callable[[], None]) -> None:
        """Run one phase, add its seconds to ``seconds_<name>``, report progress as ``info``."""
        t0 = time.perf_counter()
        step()
        self._time(name, t0)
        if info:
            self._advance(info)

    # ------------------------------------------------------------------ driver
    def classify(self) -> LayerStability:
        """The phases of ``opts.method`` in order of cost; each runs only while some neuron
        is open (a later phase never undoes an earlier one's claim)."""
        fast, relu = self.opts.method == "fast", self.net.layers[self.k].relu
        self._apply(from_bounds((self.lower, self.upper)), Proof.INTERVAL)
        if fast:
            every = self._ask(np.arange(self.inactive.size))
            self._phase("linear", "", lambda: self._apply(linear_phase(every), Proof.LINEAR))
        if not relu:
            return self._result()
        self.progress.task(f"layer {self.k}", self.inactive.size)
        self._advance("bounds")
        if fast:
            # gradient search for the sign each open neuron has not shown yet
            settled = self.inactive | self.active
            seed = self.opts.seed
            self._phase(
                "witness", "witnesses", lambda: search_signs(self.pool, self.k, settled, seed)
            )
        if self._left() <= 0.0:  # past this layer's deadline (engine.layer_deadline)
            self.stats["out_of_time"] = 1
            return self._result()
        if fast:
            deep = self.k > 0
            if deep and self.open_neurons().size:
                self._phase("lp", "lp", self._lp)
            if deep and self.open_neurons().size and self.net.input_size <= split_inputs():
                self._phase("bab", "input splits", self._input_splits)
            if deep and self.open_neurons().size:
                self._phase("region", "region search", self._region_search)
            splits = deep and self.net.input_size > split_inputs() and relu_splits()
            if deep and self.open_neurons().size and not (splits and self._last()):
                self._phase("cuts", "ideal cuts", self._ideal_cuts)
            if splits and self.open_neurons().size:
                self._phase("bab", "relu splits", lambda: self._costly(self._relu_splits))
        self._costly(self._milp_phase)
        self._advance("milp")
        deeper = relu and self.k > 0 and not self._last()
        if fast and deeper and self.net.input_size > split_inputs() and relu_splits():
            self._phase("tighten", "", self._tighten)
        if self.open_neurons().size and self._left() <= 0.0:
            self.stats["out_of_time"] = 1  # this layer's time ran out (engine.layer_deadline)
        return self._result()

    def _costly(self, step: Callable[[], None]) -> None:
        """Run a costly phase (ReLU splits, MILPs) within an equal share, with each later
        ReLU layer, of the time left to this layer's deadline: their few decisions per second
        are worth less than the cheap LP phases of later layers. On ERAN mnist_relu_9_200
        (idx 1013, 120 s budget) layers 2-3's splits and MILPs took 35 s of CPU for 16
        neurons, and layers 4-6 (65 open) got only their witness search: 90 undecided in
        all, 69 with the splits' share (load 5)."""
        own = self.deadline
        if own is not None and self.spread > 1:
            now = time.perf_counter()
            self.deadline = now + max(own - now, 0.0) / self.spread
        try:
            step()
        finally:
            self.deadline = own

    def late(self) -> LayerStability:
        """The layer reached past the caller's deadline: nothing is computed, only what its
        interval bounds prove and the signs the pooled inputs already show (witnesses found
        for earlier layers often show later layers' signs too); the rest stays UNDECIDED."""
        self.stats["out_of_time"] = 1
        self._apply(from_bounds((self.lower, self.upper)), Proof.INTERVAL)
        return self._result()

    # ------------------------------------------------------------------ phases
    def _last(self) -> bool:
        """Whether this is the last ReLU layer: its bounds shape no later layer's LP, so only
        its verdicts matter. There the ReLU splits skip the ideal-cut phase, whose questions
        they ask again at their roots (one LP and one round of the same cuts):
        mnist-net_256x2 prop_1_0.05 took 30.1 s of CPU instead of 35.4 (5,432 nodes
        instead of 5,224), mnist-net_256x4 prop_0_0.03 17.7 s instead of 21.2 (1,140
        nodes instead of 966), the same verdicts. Below it the cuts also tighten the bounds
        that later layers build on."""
        return self.k == max(self.net.relu_layers)

    def _lp(self) -> None:
        """LP bounds decide open neurons; below the last ReLU layer they also tighten the
        bounds of unstable ones (both sides), the big-M constants of every later layer's
        MILPs, and the side of :meth:`_first` is solved first (the other only if it proved
        no sign). On the last ReLU layer only the claim each open neuron can still have is
        asked (one LP instead of two where a sign was seen: mnist-net_256x4 prop_0_0.03,
        layer 3)."""
        deadline = self.deadline  # past it, no LP starts (those neurons stay open)
        if not self._last():
            targets = np.flatnonzero(~(self.inactive | self.active))
            q = replace(self._ask(targets, None, deadline), first=self._first(targets))
            self._apply(lp_phase(q), Proof.LP)
        else:
            self._apply(lp_phase(self._ask(*self._open_sides(), deadline)), Proof.LP)

    def _first(self, targets: np.ndarray) -> np.ndarray:
        """The bound the LP phase solves first for each target (``+1`` upper, ``-1`` lower,
        ``0`` both), the lower one only if the upper one did not prove the neuron inactive:
        the claim a neuron can still have (a witnessed sign rules the other out), else the
        one its bounds lean to (upper first when ``u < -l``). Both where both signs were seen
        (unstable: the relaxations of later layers need both). On mnist-net_256x6
        prop_0_0.03, layer 3 (231 targets): 311 LPs instead of 462 (10 more where active
        neurons keep both sides), 11.5 s of CPU instead of 22.9, the same 151 claims."""
        pos, neg = (a[targets] for a in self._seen())
        lean = np.where(self.upper[targets] < -self.lower[targets], 1, -1)
        return np.where(pos & neg, 0, np.where(pos, -1, np.where(neg, 1, lean)))

    def _input_splits(self) -> None:
        """Branch and bound over input splits (:mod:`exactcomp.bab.split`) for the sign each
        open neuron has not shown, within its node budget and the deadline; its float64
        witnesses join the pool."""
        open_, sides = self._open_sides()
        deadline = min(self._left(), _SPLIT_TIME * self.opts.time_limit) + time.perf_counter()
        self._apply(input_split_phase(self._ask(open_, sides, deadline)), Proof.BAB)

    def _relu_splits(self) -> None:
        """Branch and bound over ReLU splits (:mod:`exactcomp.bab.relu`) for the sign each
        open neuron has not shown, within its node budget and the deadline."""
        open_, sides = self._open_sides()
        left = self._left()
        deadline = left + time.perf_counter() if np.isfinite(left) else None
        self._apply(relu_split_phase(self._ask(open_, sides, deadline)), Proof.RELU_SPLIT)

    def _region_search(self) -> None:
        """LP local search over activation patterns for the sign each open neuron has not
        shown (:mod:`exactcomp.stability.region_search`), from its best pooled point; what it
        finds also shows other neurons' signs. Capped at :data:`_REGION_LPS` LPs a neuron, stopped
        after :data:`_REGION_DRY` searches that showed no new sign, and no LP starts past the
        deadline (it only finds witnesses: stopping proves nothing)."""
        open_ = self.open_neurons()
        pos, _ = self._seen()
        signs = np.where(pos[open_], -1, 1)
        starts = self.pool.best(self.k, open_, signs)
        left = self._left()  # as a time.monotonic() instant, that of the LP module
        deadline = time.monotonic() + max(left, 0.0) if np.isfinite(left) else None
        searched, shown = 0, self._shown()
        for j, s, x in zip(open_.tolist(), signs.tolist(), starts, strict=True):
            if searched >= _REGION_DRY and self._shown() == shown:
                self.stats["region_dry_stops"] = self.stats.get("region_dry_stops", 0) + 1
                break  # a dry layer: the rest are left to the proof phases
            if not self._moot(Task(j, s)):  # (moot past the deadline)
                found = region_search(
                    self.net, self.box, self.k, self.bounds, self.verdicts, j, s, x,
                    _REGION_LPS, deadline,
                )  # fmt: skip
                self.pool.add(found)
                searched += 1

    def _ideal_cuts(self) -> None:
        """LP bounds with ideal-formulation cuts (:mod:`exactcomp.bounds.ideal_cuts`) on the
        side each open neuron has not shown: most questions the triangle LP leaves open
        are settled here, for a fraction of a MILP."""
        open_, sides = self._open_sides()
        self._apply(ideal_cut_phase(self._ask(open_, sides, self.deadline)), Proof.LP)

    def _tighten(self) -> None:
        """Ideal-cut LP bounds on both sides of the layer's neurons with no claim (unstable
        or undecided), for the relaxations and big-M constants of every later layer. Below
        the last ReLU layer with ReLU splits only: the LP phase bounded them without cuts,
        the cut phase on one side at most. On mnist-net_256x6 prop_0_0.03 (layer 2, 15
        unstable neurons, 2.4 s of CPU) the widths went from 204.5 to 183.8 in all, and
        layer 3's LP phase left 184 neurons open instead of 191. A claim these bounds
        prove is a claim like any phase's (against a witness: numerical doubt, UNDECIDED).
        It gets the time of one MILP question (``time_limit``) at most: on cifar_base_kw
        img4549 (layer 1 below 3,072 inputs and 2,048 neurons, each cut LP seconds) the
        uncapped step ran for over 15 minutes where the whole analysis took 6 s of CPU
        without it; the neurons it does not reach keep their LP-phase bounds."""
        free = np.flatnonzero(~(self.inactive | self.active))
        if free.size == 0:
            return
        deadline = min(self._left(), self.opts.time_limit) + time.perf_counter()
        self._apply(ideal_cut_phase(self._ask(free, None, deadline), False), Proof.LP)

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
        # fast poses the cut-off as a constraint row ("row"): on the questions measured it
        # decided as many, sooner (mnist 256x2 layer 2, 16 questions: 38.7 s against 42.1 s;
        # the hard digits l1=1e-4 neuron: 6.6 s against 11.4 s). leo keeps the cut-off option.
        # The baselines keep their textbook formulation (no relaxed feeding binaries).
        mode = {"naive": "optimal", "leo": "early"}.get(self.opts.method, "row")
        # time_limit is CPU seconds (verdicts independent of the load); wall-clock: the
        # deadline, and at most WALL_PER_CPU times as long (exactcomp.milp.layer)
        wall = min(WALL_PER_CPU * self.opts.time_limit, max(self._left(), 0.01))
        fast = self.opts.method == "fast"
        assert self._layer is not None
        return self._layer.question(
            self.opts.tol, t.neuron, t.sign, wall, mode=mode, precise=self._precise,
            relax=fast, cpu_limit=self.opts.time_limit,
        )  # fmt: skip

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
        """One MILP question per open (neuron, sign), in the order of :meth:`_tasks`.

        The layer's model and each question come from :mod:`exactcomp.milp.layer`, as in
        the re-check (:func:`exactcomp.verify.recheck._milp_layer`); the drivers differ on
        purpose. Here the questions form one ordered list that workers may answer ahead of
        time (:func:`~exactcomp.stability.milp_phase.run_questions`), an answer's incumbents
        join the shared witness pool and can make later questions moot, and near ties are
        asked again as one batch at the end. The re-check asks only the report's claims, one
        at a time, in this process, each with its share of one deadline and a second pass for
        the ones that timed out, and learns nothing from one claim for another.
        """
        tasks = self._tasks()
        tasks = [t for t in tasks if not self._moot(t)]
        if not tasks or self._left() < _MILP_START:
            return
        t0 = time.perf_counter()
        verdicts = None if self.opts.method == "naive" else self.verdicts
        eps = FEASIBILITY_TOLERANCE if self.opts.solver == "highs" else _OTHER_SOLVER_TOLERANCE
        layer = layer_milp(
            self.net, self.box, self.k, self.bounds, self.magnitude, verdicts, coarse=eps
        )
        self._layer = layer
        solve = None
        if self.opts.solver != "highs":
            from ..milp.solvers import pyomo_solver

            solve = pyomo_solver(layer.model, layer.zk, self.opts.solver)
        self._trusted = layer.trusted()
        if not self._trusted:
            # float64 rounding reaches the solver's own tolerance: no answer is a proof here
            # (its solutions still serve as candidate witnesses, re-checked in float64).
            self.stats["untrusted_milp_layers"] = self.stats.get("untrusted_milp_layers", 0) + 1
            self.progress.note(f"layer {self.k}: values too large for a trustworthy MILP proof")
        extra = {} if solve is None else {"solve": solve}

        def run(batch: list[Task]) -> int:
            calls = {"moot": self._moot, "question": self._question, "consume": self._consume}
            return run_questions(layer.milp, batch, workers=self.workers, **calls, **extra)

        run(tasks)
        near = [t for t in self._near if not self._moot(t)]
        if near and self.opts.method == "fast" and solve is None:
            # Near ties: the solver found points within the margin of 0 but none is a
            # witness. Ask again at a 1000x finer tolerance, whose margin is that much
            # smaller, where float64 rounding allows it.
            self._trusted = layer.trusted(precise=True)
            if self._trusted:
                self._precise = True
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
