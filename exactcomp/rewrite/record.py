"""What a rewrite did: per-pass records and the fate of every original neuron.

A *unit* is ``(layer, index)``: output ``index`` of ``network.layers[layer]``. Each pass
numbers units in the network it received; :class:`PassRecord` maps those units to their
place in the network it returned (or says why they left). The pipeline composes the
records into :class:`NeuronFate` per *original* ReLU neuron, so the final report can say
where each neuron went and which certificate justified removing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from ..network import Network
from ..verdicts import Proof
from .state import RewriteState

Unit = tuple[int, int]
"""``(layer, index)``: one output of one layer of a given network."""


class Reason(str, Enum):
    """Why a unit left the network (or, for ``RELU_DROPPED``, lost its ReLU)."""

    INACTIVE = "inactive"  # proven max z <= 0: h = 0 on the domain
    FOLDED_ACTIVE = "folded-active"  # proven min z >= 0 and linearly dependent on kept ones
    DEAD = "dead"  # all-zero outgoing weights: nothing reads it
    CONSTANT = "constant"  # all-zero incoming weights: h = relu(b), folded into next bias
    DUPLICATE = "duplicate"  # positively proportional to another unit of its layer
    MERGED_LAYER = "merged-layer"  # its layer was affine on the domain and merged into the next
    RELU_DROPPED = "relu-dropped"  # output unit kept, its proven-stable ReLU removed

    def needs_proof(self) -> bool:
        """True when the rewrite relies on a stability verdict (holds only on the domain)."""
        return self in (Reason.INACTIVE, Reason.FOLDED_ACTIVE, Reason.MERGED_LAYER,
                        Reason.RELU_DROPPED)  # fmt: skip


@dataclass(frozen=True)
class Fold:
    """``h_j = sum_i coefficients[i] * h[sources[i]] + offset`` holds on the domain.

    ``sources`` are units of the same layer (in the numbering of the record or fate that
    holds this fold). The identity is proven exact (see :mod:`exactcomp.rewrite.algebra`);
    ``residual`` bounds the true relative residual of the float64 coefficients (their
    rounding, column by column, relative to the terms), at most ``Tolerances.fold_rel``.
    """

    sources: tuple[Unit, ...]
    coefficients: tuple[float, ...]
    offset: float = 0.0
    residual: float = 0.0


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)
class PassRecord:
    """What one pass did to one network.

    Attributes
    ----------
    name:
        The pass (``"remove_inactive"``...).
    kept:
        Old unit -> new unit, for every unit still present (output units included).
    removed:
        Old unit -> why it was removed. ``kept`` and ``removed`` partition the old units.
    certificates:
        Old unit -> the proof kind of the verdict the rewrite relied on; ``Proof.NONE`` for
        algebraic rewrites (dead, constant, duplicate, affine layers) true on every input.
    folds:
        Old unit -> the linear identity used to fold it into the next layer (sources in the
        old numbering).
    relu_dropped:
        Old layer indices whose ReLU was removed (every unit of the layer proven stable).
    zeroed:
        Output units with a ReLU, proven INACTIVE, whose incoming row and bias were set to 0
        (``relu(z) = 0 = relu(0)`` on the domain); they stay, but nothing upstream feeds them.
    widths_before, widths_after:
        ``out_features`` of every layer, so a change of depth shows too.
    max_residual:
        Largest relative residual of the folds (0 when none).
    """

    name: str
    kept: Mapping[Unit, Unit]
    removed: Mapping[Unit, Reason]
    certificates: Mapping[Unit, Proof]
    folds: Mapping[Unit, Fold]
    relu_dropped: tuple[int, ...]
    widths_before: tuple[int, ...]
    widths_after: tuple[int, ...]
    max_residual: float = 0.0
    zeroed: tuple[Unit, ...] = ()

    def __post_init__(self) -> None:
        for name in ("kept", "removed", "certificates", "folds"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "relu_dropped", tuple(self.relu_dropped))
        object.__setattr__(self, "zeroed", tuple(self.zeroed))

    @property
    def changed(self) -> bool:
        """True when the pass removed a unit, a layer or a ReLU."""
        return (
            bool(self.removed)
            or bool(self.relu_dropped)
            or bool(self.zeroed)
            or (self.widths_before != self.widths_after)
        )

    @property
    def neuron_map(self) -> dict[Unit, Unit | None]:
        """Old unit -> new unit, or ``None`` when removed."""
        out: dict[Unit, Unit | None] = dict(self.kept)
        out.update(dict.fromkeys(self.removed))
        return out

    def summary(self) -> dict[str, object]:
        """A JSON-able digest: the pass, how many units each reason removed, the widths."""
        return {
            "pass": self.name,
            "removed": dict(Counter(r.value for r in self.removed.values())),
            "relu_dropped": list(self.relu_dropped),
            "zeroed": len(self.zeroed),
            "widths_before": list(self.widths_before),
            "widths_after": list(self.widths_after),
            "max_residual": self.max_residual,
        }


@dataclass(frozen=True)
class NeuronFate:
    """Where one original ReLU neuron went.

    ``position`` is its unit in the compressed network (``None`` when removed); ``reason`` is
    ``None`` for a neuron kept with its ReLU. ``proof`` is the certificate kind the removal
    relied on (``Proof.NONE`` when it needs none). ``fold`` sources are original neurons.
    """

    position: Unit | None
    reason: Reason | None
    proof: Proof = Proof.NONE
    pass_name: str | None = None
    fold: Fold | None = None

    @property
    def kept(self) -> bool:
        return self.reason is None

    @property
    def label(self) -> str:
        """``"kept"`` or the reason's value (``"inactive"``, ``"relu-dropped"``...)."""
        return "kept" if self.reason is None else self.reason.value


@dataclass(frozen=True, eq=False)
class RewriteResult:
    """The compressed network, the records of the passes that changed it, the fates of the
    original ReLU neurons (keyed by their original unit), and the final state: the verdicts,
    bounds and origins of the compressed network's units (``None`` if not tracked)."""

    network: Network
    records: tuple[PassRecord, ...]
    neuron_map: Mapping[Unit, NeuronFate]
    state: RewriteState | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))
        object.__setattr__(self, "neuron_map", _frozen(self.neuron_map))

    def kept(self, layer: int, index: int) -> bool:
        """True when original neuron ``(layer, index)`` survives as a ReLU neuron."""
        return self.neuron_map[(layer, index)].kept

    def counts(self) -> dict[str, int]:
        """Original neurons per fate: ``"kept"`` or a :class:`Reason` value."""
        return dict(Counter(f.label for f in self.neuron_map.values()))

    def kept_per_layer(self) -> dict[int, int]:
        """Original ReLU layer -> how many of its neurons survive as ReLU neurons."""
        out = {layer: 0 for layer, _ in self.neuron_map}
        for (layer, _), fate in self.neuron_map.items():
            out[layer] += int(fate.kept)
        return out
