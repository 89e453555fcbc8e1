"""The claims of one layer's classification, and what every layer of one box shares.

A neuron's state is two *claims* (proven ``max z <= 0`` / proven ``min z >= 0``, each with the
proof kind that settled it) and the witness rows of the shared :class:`WitnessPool`. The
verdict is read off at the end (:meth:`LayerClaims._result`), and a contradiction (a claim and
a float64 witness against it, or both claims) is numerical doubt: UNDECIDED, never stable.
The phases that make the claims are in :mod:`exactcomp.stability.layer` (the driver and the
bound phases) and :mod:`exactcomp.stability.milp_questions` (the MILP phase).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..bounds.interval import Bounds
from ..domain import Box
from ..network import Network
from ..progress import Progress
from ..verdicts import LayerStability, Proof, Verdict
from .milp_phase import Task, Workers
from .phases import PhaseResult
from .witnesses import WitnessPool

if TYPE_CHECKING:
    from .options import Options


@dataclass(frozen=True)
class BoxRun:
    """What every layer of one box's analysis shares: the network and box, the witness pool,
    the options, the MILP workers, the statistics and the progress display (owned by one
    engine call; ``pool``, ``stats`` and ``trees``, the records of the input-split trees,
    accumulate), and what the weights prove of each layer (``classes``,
    :func:`~exactcomp.stability.constants.layer_classes`; empty: nothing)."""

    net: Network
    box: Box
    pool: WitnessPool
    opts: Options
    workers: Workers
    stats: dict[str, float]
    progress: Progress
    trees: list = field(default_factory=list)
    classes: tuple = ()


class LayerClaims:
    """The claims of one layer: its bounds so far, the claim masks and their proof kinds,
    the witnessed signs, and the layer's deadline. Owned by one engine call."""

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
        self.stats, self.progress, self.trees = run.stats, run.progress, run.trees
        self.classes = run.classes
        self.lower, self.upper = np.array(prior[0], dtype=float), np.array(prior[1], dtype=float)
        self.magnitude = np.maximum(np.abs(self.lower), np.abs(self.upper))
        n = self.net.layers[k].out_features
        self.inactive = np.zeros(n, dtype=bool)
        self.active = np.zeros(n, dtype=bool)
        self.proof = np.zeros(n, dtype=np.int8)
        self.hopeless = np.zeros(n, dtype=np.int8)  # SplitResult.hopeless bits

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
        self.trees += res.trees
        if res.hopeless is not None:
            self.hopeless |= res.hopeless
        if not self.net.layers[self.k].relu:
            return
        new_i = res.inactive & ~self.inactive
        new_a = res.active & ~self.active
        self.proof[(new_i | new_a) & ~(self.inactive | self.active)] = proof
        self.inactive |= new_i
        self.active |= new_a

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """Which neurons of this layer a pooled input has shown positive, and negative."""
        return self.pool.pos[self.k] >= 0, self.pool.neg[self.k] >= 0

    def _shown(self) -> int:
        """Signs of this layer witnessed so far (both signs of a neuron count twice)."""
        pos, neg = self.seen()
        return int(pos.sum() + neg.sum())

    def open_neurons(self) -> np.ndarray:
        """Neurons with no claim and not both signs witnessed."""
        pos, neg = self.seen()
        return np.flatnonzero(~(self.inactive | self.active) & ~(pos & neg))

    def _open_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """The open neurons and the claim each can still have: ``+1`` inactive (no positive
        value seen), ``-1`` active, ``0`` either."""
        open_ = self.open_neurons()
        pos, neg = self.seen()
        return open_, np.where(pos[open_], -1, np.where(neg[open_], 1, 0))

    def left(self) -> float:
        """Seconds to this layer's deadline (``inf`` without one)."""
        d = self.deadline
        return np.inf if d is None else d - time.perf_counter()

    def add_seconds(self, phase: str, t0: float) -> None:
        """Add the seconds since ``t0`` (``time.perf_counter()``) to ``seconds_<phase>``."""
        key = f"seconds_{phase}"
        self.stats[key] = self.stats.get(key, 0.0) + time.perf_counter() - t0

    def moot(self, t: Task) -> bool:
        """Whether question ``t`` need not be asked: past the deadline (the neuron stays
        undecided), its neuron claimed, or the sign it asks about already witnessed (never
        for ``method="naive"``, which asks every question)."""
        if self.left() <= 0.0:
            return True
        if self.opts.method == "naive":
            return False
        j = t.neuron
        if self.inactive[j] or self.active[j]:
            return True
        pos, neg = self.seen()
        return bool(pos[j] if t.sign > 0 else neg[j])

    def _result(self) -> LayerStability:
        n = self.inactive.size
        pos, neg = self.seen() if self.k in self.pool.pos else (np.zeros(n, bool),) * 2
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
