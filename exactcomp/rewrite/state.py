"""The per-unit facts a rewrite pass carries along with the network it rewrites.

Why verdicts survive rewriting: every pass in :mod:`exactcomp.rewrite` keeps the
pre-activation ``z`` of every surviving unit the *same function of the input on the
domain* (removing an inactive neuron changes nothing the next layer sees; a fold replaces
``h_j`` by an expression equal to it on the domain; merging layer ``k`` into ``k + 1``
leaves ``z_{k+1}`` unchanged). So the verdicts, proofs and sound bounds of the original
report stay true for the survivors, and a pass only has to select them. (The exception:
an output layer whose ReLU is dropped has its INACTIVE rows zeroed; it gets the state of an
affine layer, see :meth:`~exactcomp.rewrite.editor.Editor.drop_relu`.) The state also
carries each unit's original ``(layer, index)`` so records can be composed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidNetworkError
from ..network import Network
from ..verdicts import LayerStability, Proof, StabilityReport, Verdict


def _frozen(a: np.ndarray, dtype: type | np.dtype) -> np.ndarray:
    out = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class LayerState:
    """Facts about the units of one layer of the *current* network.

    ``verdict``/``proof`` are :class:`Verdict`/:class:`Proof` codes (UNDECIDED/NONE for a
    layer without ReLU); ``lower``/``upper`` are sound pre-activation bounds on the domain;
    ``origin[j]`` is the original ``(layer, index)`` of unit ``j``.
    """

    verdict: np.ndarray
    proof: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    origin: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", _frozen(self.verdict, np.int8))
        object.__setattr__(self, "proof", _frozen(self.proof, np.int8))
        object.__setattr__(self, "lower", _frozen(self.lower, np.float64))
        object.__setattr__(self, "upper", _frozen(self.upper, np.float64))
        object.__setattr__(self, "origin", _frozen(self.origin, np.int64).reshape(-1, 2))
        n = self.verdict.size
        if not (self.proof.size == self.lower.size == self.upper.size == n == len(self.origin)):
            raise ValueError("LayerState arrays must all have one entry per unit")

    @property
    def width(self) -> int:
        return int(self.verdict.size)

    def mask(self, verdict: Verdict) -> np.ndarray:
        return self.verdict == verdict

    @property
    def stable(self) -> np.ndarray:
        """True where the unit is proven ACTIVE or INACTIVE."""
        return (self.verdict == Verdict.ACTIVE) | (self.verdict == Verdict.INACTIVE)

    def take(self, keep: np.ndarray) -> LayerState:
        """The facts of the units selected by ``keep`` (boolean mask or indices)."""
        return LayerState(
            self.verdict[keep], self.proof[keep], self.lower[keep], self.upper[keep],
            self.origin[keep],
        )  # fmt: skip

    @classmethod
    def unknown(cls, layer: int, width: int) -> LayerState:
        """Nothing proven about the units of original layer ``layer``."""
        return cls(
            verdict=np.full(width, Verdict.UNDECIDED),
            proof=np.full(width, Proof.NONE),
            lower=np.full(width, -np.inf),
            upper=np.full(width, np.inf),
            origin=np.stack([np.full(width, layer), np.arange(width)], axis=1),
        )


@dataclass(frozen=True, eq=False)
class RewriteState:
    """One :class:`LayerState` per layer of the current network."""

    layers: tuple[LayerState, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))

    def check(self, net: Network) -> None:
        """Raise unless this state describes ``net`` (one entry per unit of every layer)."""
        widths = tuple(la.out_features for la in net.layers)
        have = tuple(ls.width for ls in self.layers)
        if widths != have:
            raise ValueError(f"rewrite state has layer widths {have}, network has {widths}")


def initial_state(net: Network, report: StabilityReport) -> RewriteState:
    """The state of ``net`` before any pass: the report's facts on every ReLU layer.

    ReLU layers absent from the report are UNDECIDED (kept); verdicts for a layer without
    ReLU, or with another width than the network's, mean the report belongs to another
    network and are refused rather than guessed at.
    """
    by_layer: dict[int, LayerStability] = {}
    for ls in report.layers:
        k = ls.layer
        if not (0 <= k < len(net.layers)) or not net.layers[k].relu:
            raise InvalidNetworkError(
                f"the stability report has verdicts for layer {k}, which is not a ReLU layer "
                f"of this network ({net.describe()}); was it computed for another network?"
            )
        if ls.width != net.layers[k].out_features:
            raise InvalidNetworkError(
                f"the stability report has {ls.width} verdicts for layer {k}, which has "
                f"{net.layers[k].out_features} neurons; was it computed for another network?"
            )
        by_layer[k] = ls
    layers = []
    for k, layer in enumerate(net.layers):
        base = LayerState.unknown(k, layer.out_features)
        found = by_layer.get(k)
        if found is not None:
            base = LayerState(found.verdict, found.proof, found.lower, found.upper, base.origin)
        layers.append(base)
    return RewriteState(tuple(layers))
