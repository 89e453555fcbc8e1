"""The classification of one layer: the driver over the phases of the chosen method, in order
of cost, and the bound phases it runs.

The claims the phases make and the verdicts read off them are in
:mod:`exactcomp.stability.claims`; the MILP phase is :mod:`exactcomp.stability.milp_questions`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..bab import relu as relu_bab
from ..bab.relu import relu_splits
from ..bab.split import split_inputs
from ..milp.layer import WALL_PER_CPU
from ..verdicts import LayerStability, Proof
from .claims import LayerClaims
from .milp_phase import Task
from .milp_questions import MilpQuestions
from .phases import (
    PhaseInput,
    constant_phase,
    from_bounds,
    ideal_cut_phase,
    input_split_phase,
    linear_phase,
    lp_phase,
    relu_split_phase,
)
from .region_search import region_search
from .witnesses import search_signs

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
"""CPU seconds of the input-split phase per layer, in MILP time limits (its node budget
aside); wall-clock at most :data:`~exactcomp.milp.layer.WALL_PER_CPU` times as long."""

SPLIT_SHARES = 2
"""Shares of the time left (:meth:`LayerRun._costly`) of one window in which the ReLU splits
run, and then the MILP phase on the questions they leave (before: a share each, the splits
first). Under a budget the MILPs after the split trees decided nothing in the traces
measured, while more split time did: on mnist-net_256x4 prop_1_0.05, layer 1 (120 s budget,
load 2-5) the MILPs took 12.1 s of CPU for 0 of 39 questions, and its split trees, replayed
alone, decided 24 of 65 questions in 30 s of wall time and 35 in 80 s; on mnist-net_256x6
prop_1_0.05, layer 1, 6.7 s of MILPs decided 0 of 61, the trees 3 in 13 s and 13 in 45 s.
Traced side by side with the previous rule at 120 s: 256x4 496 -> 489 undecided, 256x6 952
-> 944, the same CPU seconds (benchmarks/RESULTS.md, "wide11"). Without a budget nothing
changes."""


class LayerRun(LayerClaims):
    """The short driver over one layer's phases, on its claims (:class:`LayerClaims`).

    The bound phases are the functions of :mod:`exactcomp.stability.phases` (shared with the
    re-check); the MILP phase is :class:`~exactcomp.stability.milp_questions.MilpQuestions`.
    Owned by one engine call.
    """

    _reported = 0  # decided neurons reported to the progress display

    def _ask(self, neurons: np.ndarray, sides=None, deadline: float | None = None) -> PhaseInput:
        """The phase question about ``neurons`` on the bounds proven so far."""
        known = [*self.bounds, (self.lower, self.upper)]
        sides = np.zeros(neurons.size, dtype=np.int64) if sides is None else sides
        return PhaseInput(
            self.net, self.box, self.k, known, neurons, sides, self.opts.tol, deadline
        )

    def _advance(self, info: str) -> None:
        decided = self.inactive.size - self.open_neurons().size
        self.progress.advance(decided - self._reported, info)
        self._reported = decided

    def _phase(self, name: str, info: str, step: Callable[[], None]) -> None:
        """Run one phase, add its seconds to ``seconds_<name>``, report progress as ``info``."""
        t0 = time.perf_counter()
        step()
        self.add_seconds(name, t0)
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
            self._constants()
        if not relu:
            return self._result()
        self.progress.task(f"layer {self.k}", self.inactive.size)
        self._advance("bounds")
        if fast:
            # gradient search for the sign each open neuron has not shown yet
            settled = self.inactive | self.active
            seed = self.opts.seed
            self._phase(
                "witness",
                "witnesses",
                lambda: search_signs(self.pool, self.k, settled, seed, self.deadline),
            )
        if self.left() <= 0.0:  # past this layer's deadline (engine.layer_deadline)
            self.stats["out_of_time"] = 1
            return self._result()
        splits = False
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
            self._costly(self._splits_then_milp, SPLIT_SHARES)
        else:
            self._costly(self._milp_phase)
        self._advance("milp")
        deeper = relu and self.k > 0 and not self._last()
        if fast and deeper and self.net.input_size > split_inputs() and relu_splits():
            self._phase("tighten", "", self._tighten)
        if self.open_neurons().size and self.left() <= 0.0:
            self.stats["out_of_time"] = 1  # this layer's time ran out (engine.layer_deadline)
        return self._result()

    def _costly(self, step: Callable[[], None], shares: int = 1) -> None:
        """Run a costly phase (ReLU splits, MILPs) within ``shares`` equal shares, with each
        later ReLU layer, of the time left to this layer's deadline (all of it at most):
        their few decisions per second are worth less than the cheap LP phases of later
        layers. On ERAN mnist_relu_9_200 (idx 1013, 120 s budget) layers 2-3's splits and
        MILPs took 35 s of CPU for 16 neurons, and layers 4-6 (65 open) got only their
        witness search: 90 undecided in all, 69 with the splits' share (load 5)."""
        own = self.deadline
        if own is not None and self.spread > 1:
            now = time.perf_counter()
            self.deadline = now + max(own - now, 0.0) * min(shares / self.spread, 1.0)
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
        self._constants()
        return self._result()

    # ------------------------------------------------------------------ phases
    def _constants(self) -> None:
        """The neurons the weights make constant (:mod:`exactcomp.stability.constants`):
        ``z = b`` on every input, a tie at 0 (``a - a`` in a lattice network) included."""
        if self.classes:
            self._apply(constant_phase(self.net, self.k, self.classes[self.k]), Proof.CONSTANT)

    def _splits_then_milp(self) -> None:
        """The ReLU splits, then the MILP phase on the questions they leave, in one window
        (:data:`SPLIT_SHARES`)."""
        self._phase("bab", "relu splits", self._relu_splits)
        self._milp_phase()

    def _milp_phase(self) -> None:
        """The MILP phase (:class:`~exactcomp.stability.milp_questions.MilpQuestions`): one
        question per open (neuron, sign), within the layer's deadline."""
        MilpQuestions(self).run()

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
        pos, neg = (a[targets] for a in self.seen())
        lean = np.where(self.upper[targets] < -self.lower[targets], 1, -1)
        return np.where(pos & neg, 0, np.where(pos, -1, np.where(neg, 1, lean)))

    def _input_splits(self) -> None:
        """Branch and bound over input splits (:mod:`exactcomp.bab.split`) for the sign each
        open neuron has not shown, within its node budget and the deadline; its float64
        witnesses join the pool."""
        open_, sides = self._open_sides()
        limit = _SPLIT_TIME * self.opts.time_limit
        deadline = min(self.left(), WALL_PER_CPU * limit) + time.perf_counter()
        q = replace(self._ask(open_, sides, deadline), cpu_limit=limit)
        self._apply(input_split_phase(q), Proof.BAB)

    def _relu_splits(self) -> None:
        """Branch and bound over ReLU splits (:mod:`exactcomp.bab.relu`) for the sign each
        open neuron has not shown, within its node budget and the deadline; its batched
        trees grow in the engine's worker processes too (:meth:`Workers.spread`)."""
        open_, sides = self._open_sides()
        left = self.left()
        deadline = left + time.perf_counter() if np.isfinite(left) else None
        # fewer questions: the LP trees alone, here (and beta_parts, torch not imported)
        few = open_.size < relu_bab.BATCHED_MIN_QUESTIONS
        q = replace(
            self._ask(open_, sides, deadline), spread=None if few else self.workers.spread()
        )
        self._apply(relu_split_phase(q), Proof.RELU_SPLIT)

    def _region_search(self) -> None:
        """LP local search over activation patterns for the sign each open neuron has not
        shown (:mod:`exactcomp.stability.region_search`), from its best pooled point; what it
        finds also shows other neurons' signs. Capped at :data:`_REGION_LPS` LPs a neuron, stopped
        after :data:`_REGION_DRY` searches that showed no new sign, and no LP starts past the
        deadline (it only finds witnesses: stopping proves nothing)."""
        open_ = self.open_neurons()
        pos, _ = self.seen()
        signs = np.where(pos[open_], -1, 1)
        starts = self.pool.best(self.k, open_, signs)
        left = self.left()  # as a time.monotonic() instant, that of the LP module
        deadline = time.monotonic() + max(left, 0.0) if np.isfinite(left) else None
        searched, shown = 0, self._shown()
        for j, s, x in zip(open_.tolist(), signs.tolist(), starts, strict=True):
            if searched >= _REGION_DRY and self._shown() == shown:
                self.stats["region_dry_stops"] = self.stats.get("region_dry_stops", 0) + 1
                break  # a dry layer: the rest are left to the proof phases
            if not self.moot(Task(j, s)):  # (moot past the deadline)
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
        It gets the time of one MILP question at most, capped the same way: ``time_limit``
        CPU seconds (no cut LP starts past them), and wall-clock at most
        :data:`~exactcomp.milp.layer.WALL_PER_CPU` times as long and within the layer's
        deadline, so that later layers' bounds, and so the verdicts, do not depend on the
        machine's load. On cifar_base_kw img4549 (layer 1 below 3,072 inputs and 2,048
        neurons, each cut LP seconds) the uncapped step ran for over 15 minutes where the
        whole analysis took 6 s of CPU without it; the neurons it does not reach keep their
        LP-phase bounds."""
        free = np.flatnonzero(~(self.inactive | self.active))
        if free.size == 0:
            return
        limit = self.opts.time_limit
        deadline = min(self.left(), WALL_PER_CPU * limit) + time.perf_counter()
        q = replace(self._ask(free, None, deadline), cpu_limit=limit)
        self._apply(ideal_cut_phase(q, False), Proof.LP)
