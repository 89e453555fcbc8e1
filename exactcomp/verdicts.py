"""The result types of stability analysis: one verdict and one proof kind per neuron.

Kept apart from :mod:`exactcomp.stability` (which computes them) so that rewrites,
verification and reports can read verdicts without pulling in bounds or solvers.
Arrays rather than per-neuron objects: networks have thousands of neurons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

#: The stability engines (``stable_neurons(method=...)``), fastest first: they differ in the
#: order and kind of the proofs they try, never in what a verdict means. Defined here, beside
#: the verdicts, so that the command line can offer them without importing the engine.
METHODS = ("fast", "leo", "naive")
#: The MILP solvers the stability engine can drive (``solver=...``).
SOLVERS = ("highs", "gurobi", "cplex", "scip", "cbc")


class Verdict(IntEnum):
    """What we proved about one neuron's sign over the whole domain."""

    UNDECIDED = 0  # nothing proven (time-out, solver doubt, budget): the neuron is kept
    INACTIVE = 1  # max z <= 0: outputs 0 everywhere, removable
    ACTIVE = 2  # min z >= 0: linear everywhere, foldable
    UNSTABLE = 3  # both signs shown by concrete inputs (or an exact bound): kept


class Proof(IntEnum):
    """How a verdict was proven (its certificate kind)."""

    NONE = 0
    INTERVAL = 1  # interval arithmetic bound
    LINEAR = 2  # linear-relaxation (CROWN-style) bound
    LP = 3  # LP relaxation bound
    MILP = 4  # MILP dual bound (or infeasibility) with margin
    WITNESS = 5  # concrete inputs of both signs, re-checked in float64
    ENUMERATION = 6  # exact enumeration of activation regions (test oracle)
    BAB = 7  # linear bounds on every leaf of an input-split tree (exactcomp.bab)
    RELU_SPLIT = 8  # LP bounds on every leaf of a ReLU-split tree (exactcomp.bab.relu)
    CONSTANT = 9  # the weights make z a constant b (exactcomp.stability.constants)


class SignMasks(NamedTuple):
    """Per neuron of one layer: proven ``h = 0`` (inactive) and proven ``h = z`` (active)."""

    inactive: np.ndarray
    active: np.ndarray


def stable_masks(
    lower: np.ndarray,
    upper: np.ndarray,
    verdict: np.ndarray | None = None,
    *,
    exclusive: bool = True,
) -> SignMasks:
    r"""The proven states of a ReLU layer, from sound bounds on ``z`` and proven verdicts.

    The one place where bounds and verdicts become masks:

    .. math::

        \text{inactive}_j = (u_j \le 0) \lor (v_j = \text{INACTIVE}), \qquad
        \text{active}_j = (l_j \ge 0) \lor (v_j = \text{ACTIVE}),

    and, with ``exclusive`` (for readers that encode the layer), ``active`` excludes
    ``inactive`` (a neuron with :math:`l = u = 0` is encoded as 0). Without it the two are the
    independent *claims* of the engine and the re-check, where both at once is a doubt.
    ``verdict`` may be ``None`` (bounds alone).
    """
    lower, upper = np.asarray(lower), np.asarray(upper)
    inactive, active = upper <= 0.0, lower >= 0.0
    if verdict is not None:
        v = np.asarray(verdict)
        inactive = inactive | (v == Verdict.INACTIVE)
        active = active | (v == Verdict.ACTIVE)
    return SignMasks(inactive, active & ~inactive if exclusive else active)


@dataclass(frozen=True, eq=False)
class LayerStability:
    """Verdicts for the neurons of one ReLU layer.

    ``lower``/``upper`` are *sound* bounds on the pre-activation over the domain (the best
    proven; ``-inf``/``inf`` when unknown). ``witness_pos[j]``/``witness_neg[j]`` index rows
    of :attr:`StabilityReport.witnesses` at which neuron ``j`` was seen positive/negative
    (``-1`` when none): the certificate of an UNSTABLE verdict.
    """

    layer: int
    verdict: np.ndarray
    proof: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    witness_pos: np.ndarray
    witness_neg: np.ndarray

    @property
    def width(self) -> int:
        return int(self.verdict.size)

    def count(self, verdict: Verdict) -> int:
        return int(np.count_nonzero(self.verdict == verdict))

    def indices(self, verdict: Verdict) -> np.ndarray:
        return np.flatnonzero(self.verdict == verdict)

    def proof_counts(self) -> dict[str, int]:
        """How many neurons of this layer each proof kind settled."""
        return {p.name.lower(): int(np.count_nonzero(self.proof == p)) for p in Proof if p}

    def summary(self) -> dict[str, object]:
        """The counts, proof counts and verdicts of this layer, as the JSON documents list
        them (the stability and the compression reports share them)."""
        return {
            "stably_active": self.count(Verdict.ACTIVE),
            "stably_inactive": self.count(Verdict.INACTIVE),
            "unstable": self.count(Verdict.UNSTABLE),
            "undecided": self.count(Verdict.UNDECIDED),
            "proofs": self.proof_counts(),
            "verdicts": [Verdict(int(v)).name.lower() for v in self.verdict],
        }

    @classmethod
    def undecided(cls, layer: int, width: int) -> LayerStability:
        return cls(
            layer=layer,
            verdict=np.zeros(width, dtype=np.int8),
            proof=np.zeros(width, dtype=np.int8),
            lower=np.full(width, -np.inf),
            upper=np.full(width, np.inf),
            witness_pos=np.full(width, -1, dtype=np.int64),
            witness_neg=np.full(width, -1, dtype=np.int64),
        )


@dataclass(frozen=True, eq=False)
class StabilityReport:
    """Per-ReLU-layer verdicts for a network over a domain, with run statistics.

    ``layers[i]`` describes ``network.layers[layers[i].layer]``. ``witnesses`` holds the
    concrete inputs (rows) that certify instability. ``stats`` records counts and timings
    (``milps``, ``seconds``, per-phase seconds) for reports and benchmarks. ``trees``: the
    records of the input-split trees the analysis grew (``exactcomp.bab.split_tree.SplitTree``),
    in memory only (never written), a hint for the re-check of the claims to replay.
    """

    layers: tuple[LayerStability, ...]
    witnesses: np.ndarray
    stats: Mapping[str, float] = field(default_factory=dict)
    trees: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "trees", tuple(self.trees))
        object.__setattr__(self, "stats", MappingProxyType(dict(self.stats)))

    def for_layer(self, k: int) -> LayerStability:
        """The verdicts of ``network.layers[k]``."""
        for ls in self.layers:
            if ls.layer == k:
                return ls
        raise KeyError(f"layer {k} has no ReLU, so no verdicts")

    def count(self, verdict: Verdict) -> int:
        return sum(ls.count(verdict) for ls in self.layers)

    @property
    def num_neurons(self) -> int:
        return sum(ls.width for ls in self.layers)

    @property
    def complete(self) -> bool:
        """True when no neuron is UNDECIDED."""
        return self.count(Verdict.UNDECIDED) == 0

    def stable_mask(self) -> list[np.ndarray]:
        """Per layer, True where the neuron is proven stable (ACTIVE or INACTIVE)."""
        return [np.isin(ls.verdict, (Verdict.ACTIVE, Verdict.INACTIVE)) for ls in self.layers]
