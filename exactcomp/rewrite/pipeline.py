"""Compose the passes to a fixed point and say where every original neuron went.

Order of one round, and why:

1. :func:`drop_dead` first: constant and unread neurons go without any proof.
2. :func:`merge_duplicates` before the stability passes: a group of duplicates collapses
   onto a proven-stable member when it has one, so an UNDECIDED copy of an INACTIVE neuron
   is removed with it instead of being kept.
3. :func:`remove_inactive`, then :func:`fold_active` (rank folding among what is left).
4. :func:`merge_linear` last: by then a layer may hold only ACTIVE neurons (or none).

Rounds repeat until one changes nothing, because each pass can expose work for the
others (a merged layer can have constant or duplicated neurons; a removed neuron can
leave a dead one behind). Every pass that changes something strictly lowers
``units + layers + ReLU layers + non-zero output rows``, so the loop ends; no pass ever adds
a unit or a layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..network import Network
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import Proof, StabilityReport
from .editor import PassResult
from .record import Fold, NeuronFate, PassRecord, Reason, RewriteResult, Unit
from .stable import fold_active, merge_linear, remove_inactive
from .state import RewriteState, initial_state
from .structural import drop_dead, merge_duplicates

Pass = Callable[[Network, RewriteState, Tolerances], PassResult]

DEFAULT_PASSES: tuple[Pass, ...] = (
    drop_dead,
    merge_duplicates,
    remove_inactive,
    fold_active,
    merge_linear,
)


def compress_network(
    net: Network,
    report: StabilityReport,
    tol: Tolerances = DEFAULT,
    *,
    passes: Sequence[Pass] = DEFAULT_PASSES,
    deadline: float | None = None,
    late_passes: Sequence[Pass] = (remove_inactive,),
) -> RewriteResult:
    """Rewrite ``net`` into a network with the same function on the report's domain.

    Parameters
    ----------
    net:
        The network the report was computed for (it is not modified).
    report:
        Its stability verdicts; only INACTIVE/ACTIVE verdicts are used, and a ReLU layer
        absent from the report is treated as all UNDECIDED.
    tol:
        ``tol.fold_rel`` bounds the float64 rounding of every (proven exact) fold.
    passes:
        The passes of one round, in order (default :data:`DEFAULT_PASSES`).
    deadline:
        A ``time.perf_counter()`` instant past which the fixed point stops between two
        passes: the passes of ``late_passes`` among ``passes`` then run once more on the
        network so far, and it is returned. Each pass is exact on its own, so a fixed point
        cut short computes the original function too, only with fewer neurons removed
        (``compress --tol``'s exact pass under load: the rewrite took 1.9-2.2 s CPU of
        cifar_base_kw at wall/CPU ~4, RESULTS.md "ccsoak21").
    late_passes:
        What still runs past ``deadline`` (default :func:`remove_inactive`: it spends the
        analysis's proofs, and on cifar_base_kw it is the one pass that changes anything,
        0.03 s of the 2.2 s CPU; ``merge_duplicates`` takes 1.2 s and ``fold_active`` 0.6 s
        there for nothing: RESULTS.md "clock22").

    Returns
    -------
    RewriteResult
        The compressed network (same ``dtype`` and ``meta``), the records of the passes
        that changed something, and the fate of every original ReLU neuron.
    """
    current, state = net, initial_state(net, report)
    neurons = {(k, j) for k in net.relu_layers for j in range(net.layers[k].out_features)}
    fates: dict[Unit, NeuronFate] = {}
    dropped: dict[Unit, tuple[Proof, str]] = {}
    records: list[PassRecord] = []
    # the passes in turn until none changes anything: a pass is pure, so once every pass has
    # run on the current network without a change (the last ``len(passes)`` in a row), another
    # round would change nothing either; stopping there, mid-round, gives the network that
    # finishing the round gives (on cifar_base_kw it skips the last round's fold_active: 0.55
    # of 2.6 s; RESULTS.md "ccsoak21")
    unchanged, turn, late = 0, 0, ()
    while passes and unchanged < len(passes):
        if deadline is not None and time.perf_counter() >= deadline:
            late = tuple(p for p in late_passes if p in passes)  # then stop
            break
        step = passes[turn % len(passes)]
        turn += 1
        unchanged += 1
        out = step(current, state, tol)
        if out.record.changed:
            unchanged = 0
            records.append(out.record)
            _note_removals(out.record, state, neurons, fates, dropped)
        current, state = out.network, out.state
    for step in late:  # past the deadline: each late pass once more on the network so far
        out = step(current, state, tol)
        if out.record.changed:
            records.append(out.record)
            _note_removals(out.record, state, neurons, fates, dropped)
        current, state = out.network, out.state
    _note_survivors(state, neurons, fates, dropped)
    return RewriteResult(current, tuple(records), dict(sorted(fates.items())), state)


def _note_survivors(
    state: RewriteState,
    neurons: set[Unit],
    fates: dict[Unit, NeuronFate],
    dropped: dict[Unit, tuple[Proof, str]],
) -> None:
    """Fates of the original neurons still present: kept, or kept without their ReLU."""
    for k, ls in enumerate(state.layers):
        for j, origin in enumerate(ls.origin):
            unit = (int(origin[0]), int(origin[1]))
            if unit not in neurons:
                continue
            if unit in dropped:
                proof, name = dropped[unit]
                fates[unit] = NeuronFate((k, j), Reason.RELU_DROPPED, proof, name)
            else:
                fates[unit] = NeuronFate((k, j), None)


def _origin(state: RewriteState, unit: Unit) -> Unit:
    k, j = unit
    o = state.layers[k].origin[j]
    return int(o[0]), int(o[1])


def _note_removals(
    record: PassRecord,
    before: RewriteState,
    neurons: set[Unit],
    fates: dict[Unit, NeuronFate],
    dropped: dict[Unit, tuple[Proof, str]],
) -> None:
    """Turn one record's removals (in the pass's numbering) into fates of original neurons."""
    for unit, reason in record.removed.items():
        origin = _origin(before, unit)
        if origin not in neurons:
            continue  # a unit of a layer without ReLU: not a neuron
        fold = record.folds.get(unit)
        if fold is not None:
            fold = Fold(
                tuple(_origin(before, s) for s in fold.sources),
                fold.coefficients,
                fold.offset,
                fold.residual,
            )
        fates[origin] = NeuronFate(None, reason, record.certificates[unit], record.name, fold)
    for k in record.relu_dropped:
        for j in range(before.layers[k].width):
            origin = _origin(before, (k, j))
            if origin in neurons:
                dropped[origin] = (record.certificates[(k, j)], record.name)
