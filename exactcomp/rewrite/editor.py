"""A scratch copy of a network that one pass edits, then turns into a new network + record.

Every pass needs the same bookkeeping: copy the weights (never touch the input), mark
units removed with a reason and a certificate, maybe merge a layer into the next, then
build the smaller network, select the surviving units' facts, and map every old unit to
its new place. Doing it once here keeps the passes to their algebra.

Indexing rule while editing: removals are only *marked*; rows and columns keep their old
indices until :meth:`Editor.finish`. A layer merged into the next is marked deleted and the
next layer's weight then indexes the outputs of the layer before the deleted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network import Layer, Network
from ..verdicts import Proof, Verdict
from .record import Fold, PassRecord, Reason, Unit
from .state import LayerState, RewriteState


@dataclass(frozen=True, eq=False)
class PassResult:
    """The output of a pass: the new network, its state, and the record of what changed."""

    network: Network
    state: RewriteState
    record: PassRecord


def finite(*arrays: np.ndarray) -> bool:
    """True when every entry is finite: a fold that overflows float64 is not done."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


class Editor:
    """Mutable working copy of ``net``/``state``; local to one pass call."""

    def __init__(self, name: str, net: Network, state: RewriteState) -> None:
        state.check(net)
        self.name = name
        self.net = net
        self.state = state
        self.weights = [
            la.weight.copy() if la.sparse else np.array(la.weight, dtype=np.float64)
            for la in net.layers
        ]
        self.biases = [np.array(la.bias, dtype=np.float64) for la in net.layers]
        self.relu = [la.relu for la in net.layers]
        self.keep = [np.ones(la.out_features, dtype=bool) for la in net.layers]
        self.deleted = [False] * len(net.layers)
        self.removed: dict[Unit, Reason] = {}
        self.certificates: dict[Unit, Proof] = {}
        self.folds: dict[Unit, Fold] = {}
        self.relu_dropped: list[int] = []
        self.zeroed: list[Unit] = []
        self.replaced_states: dict[int, LayerState] = {}

    @property
    def depth(self) -> int:
        return len(self.weights)

    def is_hidden(self, k: int) -> bool:
        """True for every layer but the last (whose units are the network's outputs)."""
        return k < self.depth - 1

    def input_keep(self, k: int) -> np.ndarray:
        """Mask of the columns of ``weights[k]`` that survive: the kept outputs of the nearest
        non-deleted layer before ``k`` (all columns when ``k`` reads the network input)."""
        p = k - 1
        while p >= 0 and self.deleted[p]:
            p -= 1
        if p < 0:
            return np.ones(self.weights[k].shape[1], dtype=bool)
        return self.keep[p]

    def rows(self, k: int) -> np.ndarray:
        """The effective incoming weights of layer ``k``: surviving columns only (a copy)."""
        return self.weights[k][:, self.input_keep(k)]

    def proof_of(self, k: int, j: int) -> Proof:
        return Proof(int(self.state.layers[k].proof[j]))

    def remove(
        self, k: int, j: int, reason: Reason, proof: Proof = Proof.NONE, fold: Fold | None = None
    ) -> None:
        """Mark unit ``j`` of layer ``k`` removed; the caller has already made the next
        layer independent of it (or it contributes nothing there)."""
        if not self.is_hidden(k):
            raise ValueError("output units are never removed")
        self.keep[k][j] = False
        self.removed[(k, int(j))] = reason
        self.certificates[(k, int(j))] = proof
        if fold is not None:
            self.folds[(k, int(j))] = fold

    def delete_layer(self, k: int, reasons: dict[int, tuple[Reason, Proof]]) -> None:
        """Mark layer ``k`` merged into ``k + 1``: the caller has rewritten ``k + 1`` to read
        the input of ``k``; ``reasons`` gives each unit of ``k`` its reason and proof."""
        self.deleted[k] = True
        for j in range(self.weights[k].shape[0]):
            reason, proof = reasons[j]
            self.remove(k, j, reason, proof)

    def drop_relu(self, k: int, zeroed: np.ndarray) -> None:
        """Mark layer ``k`` (all units proven stable) as no longer followed by a ReLU, after
        the caller zeroed the rows ``zeroed`` (its INACTIVE units). The layer's state becomes
        that of an affine layer: no verdicts, and ``z = 0`` exactly on the zeroed rows."""
        self.relu[k] = False
        self.relu_dropped.append(k)
        for j in range(self.weights[k].shape[0]):
            self.certificates[(k, j)] = self.proof_of(k, j)
        old = self.state.layers[k]
        self.replaced_states[k] = LayerState(
            verdict=np.full(old.width, Verdict.UNDECIDED),
            proof=np.full(old.width, Proof.NONE),
            lower=np.where(zeroed, 0.0, old.lower),
            upper=np.where(zeroed, 0.0, old.upper),
            origin=old.origin,
        )

    def zero_output(self, j: int) -> None:
        """Set the incoming row and bias of output unit ``j`` (ReLU, proven INACTIVE) to 0:
        it then outputs ``relu(0) = 0``, as before on the domain, and reads nothing."""
        k = self.depth - 1
        self.weights[k][j] = 0.0
        self.biases[k][j] = 0.0
        self.zeroed.append((k, int(j)))
        self.certificates[(k, int(j))] = self.proof_of(k, j)
        old = self.replaced_states.get(k, self.state.layers[k])
        lower, upper = old.lower.copy(), old.upper.copy()
        lower[j] = upper[j] = 0.0
        self.replaced_states[k] = LayerState(old.verdict, old.proof, lower, upper, old.origin)

    def finish(self) -> PassResult:
        """Build the edited network, its state and the record of this pass."""
        layers: list[Layer] = []
        states: list[LayerState] = []
        kept: dict[Unit, Unit] = {}
        prev_keep: np.ndarray | None = None  # None: the previous output is the input
        for k in range(self.depth):
            if self.deleted[k]:
                continue  # layer k+1 now reads what layer k read
            rows = self.keep[k]
            w = self.weights[k][rows]
            if prev_keep is not None:
                w = w[:, prev_keep]
            new_k = len(layers)
            layers.append(Layer(w, self.biases[k][rows], self.relu[k]))
            states.append(self.replaced_states.get(k, self.state.layers[k]).take(rows))
            for new_j, j in enumerate(np.flatnonzero(rows)):
                kept[(k, int(j))] = (new_k, new_j)
            prev_keep = rows
        net = self.net.replace_layers(layers)
        state = RewriteState(tuple(states))
        old_units = sum(int(w.shape[0]) for w in self.weights)
        if len(kept) + len(self.removed) != old_units or kept.keys() & self.removed.keys():
            raise AssertionError(f"{self.name}: units not accounted for exactly once")
        record = PassRecord(
            name=self.name,
            kept=kept,
            removed=self.removed,
            certificates=self.certificates,
            folds=self.folds,
            relu_dropped=tuple(self.relu_dropped),
            zeroed=tuple(self.zeroed),
            widths_before=tuple(la.out_features for la in self.net.layers),
            widths_after=tuple(la.out_features for la in net.layers),
            max_residual=max((f.residual for f in self.folds.values()), default=0.0),
        )
        return PassResult(net, state, record)
