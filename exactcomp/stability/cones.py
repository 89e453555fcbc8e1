"""Stability of a network too large to analyse whole, one small prefix cone at a time.

A convolution or max-pool layer stored sparse (:attr:`~exactcomp.network.Layer.sparse`) has
tens of thousands of neurons, each reading a few entries of the layer before. Neuron ``j``
of layer ``k`` depends on the input only through its *prefix cone*: with ``P_i`` the
non-zero pattern of ``W_i``,

.. math::

    S_k = G, \\qquad S_{i-1} = \\{\\, c : P_i[r, c] \\ne 0 \\text{ for some } r \\in S_i \\,\\},

down to ``S_{-1}``, a set of input coordinates, for a group ``G`` of neurons of layer ``k``.
The *cone network* has layers ``W_i[S_i][:, S_{i-1}]``, ``b_i[S_i]`` with the same ReLUs;
every row of ``W_i`` restricted to ``S_i`` is zero outside ``S_{i-1}``, so each neuron of the
cone computes exactly the same function of ``x[S_{-1}]`` as in the whole network. The box's
projection on ``S_{-1}`` is the set of values ``x[S_{-1}]`` takes on the box, so every verdict
on the cone network over the projected box is the verdict on the whole network over the box:
a proof of stability carries over unchanged, and a witness ``x[S_{-1}]`` extends to a point
of the box (any values elsewhere; we take the box's centre). Nothing is approximated.

Groups are consecutive neurons of one layer (channel by channel, row by row: spatially
close, so their cones overlap) whose cone has about ``target`` units; two groups with the
same cone network over the same projected box (background windows of an image, often) are
analysed once. A neuron whose own cone is larger (a dense layer after the convolutions)
stays UNDECIDED, which keeps it. Layers are covered in order: before layer ``k`` is grouped,
its neurons that read only proven-inactive neurons are settled exactly (:func:`_constants`:
the max of a dead pool window is a tie at 0 that no bound with margin proves), and the
proven-inactive neurons of earlier layers are left out of every cone (their output is
exactly 0, so dropping their columns changes no sum).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..bounds import interval_layer
from ..domain import Box
from ..network import Layer, Network
from ..progress import SILENT, Progress
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import LayerStability, Proof, StabilityReport, Verdict

#: Units (ReLU and linear together) a group's cone aims at: a max-pool window of a small
#: convolution; the dense analysis of 32 such windows at once took 4x longer than of each.
CONE_TARGET = 64

#: Largest single neuron's cone analysed as one dense network; larger ones stay UNDECIDED.
MAX_CONE = 1500

Analyse = Callable[[Network, list[Box], np.ndarray | None], StabilityReport]


def _pattern(layer: Layer):  # scipy.sparse.csr_array of bools
    from scipy import sparse

    w = layer.weight if layer.sparse else sparse.csr_array(layer.weight)
    p = sparse.csr_array(w != 0)
    p.sort_indices()
    return p


def prefix_cone(
    patterns: Sequence, k: int, group: np.ndarray, dead: dict[int, np.ndarray] | None = None
) -> list[np.ndarray]:
    """``[S_{-1}, S_0, ..., S_k]`` (sorted indices) for ``group`` of layer ``k``.

    ``dead[i]``: units of ReLU layer ``i`` proven INACTIVE, left out of ``S_i``: their output
    is exactly 0 on the box, so dropping their columns changes no sum (``w * 0 = 0``)."""
    dead = dead or {}
    sets = [np.unique(np.asarray(group, dtype=np.int64))]
    for i in range(k, -1, -1):
        rows = patterns[i][sets[0]]
        below = np.unique(rows.indices) if rows.nnz else np.zeros(0, np.int64)
        if i - 1 in dead and len(below):
            below = below[~dead[i - 1][below]]
        sets.insert(0, below if len(below) else np.zeros(1, np.int64))  # never width 0
    return sets


def cone_network(net: Network, sets: list[np.ndarray]) -> Network:
    """The cone network of :func:`prefix_cone`'s ``sets`` (dense; see the module docstring)."""
    layers = []
    for i, (cols, rows) in enumerate(zip(sets[:-1], sets[1:], strict=True)):
        la = net.layers[i]
        w = la.weight[rows][:, cols]
        w = w.toarray() if la.sparse else np.asarray(w)
        layers.append(Layer(w, la.bias[rows], la.relu))
    return Network(tuple(layers), dtype=net.dtype)


def _groups(
    patterns: Sequence,
    k: int,
    todo: np.ndarray,
    target: int,
    max_cone: int,
    dead: dict[int, np.ndarray],
):
    """Consecutive runs of ``todo`` whose cones have about ``target`` units (a single
    neuron's cone up to ``max_cone``); a neuron whose own cone is larger is yielded with
    ``None`` (left UNDECIDED). Small cones are analysed fastest: the dense analysis grows
    faster than linearly with the network, and equal cones are analysed once."""
    start, size = 0, 1
    while start < len(todo):
        g = todo[start : start + size]
        sets = prefix_cone(patterns, k, g, dead)
        units = sum(len(s) for s in sets[1:])
        if units <= target or (len(g) == 1 and units <= max_cone):
            yield g, sets
            start += len(g)
            size = min(size * 2, 4096) if 2 * units <= target else size
        elif len(g) == 1:
            yield g, None
            start += 1
        else:
            size = max(len(g) // 2, 1)


def _better(old: int, new: int) -> bool:
    rank = {Verdict.UNDECIDED: 0, Verdict.UNSTABLE: 1, Verdict.ACTIVE: 2, Verdict.INACTIVE: 2}
    return rank[Verdict(new)] > rank[Verdict(old)]


def stable_by_cones(
    net: Network,
    boxes: Sequence[Box],
    analyse: Analyse,
    *,
    data: np.ndarray | None = None,
    progress: Progress = SILENT,
    target: int = CONE_TARGET,
    max_cone: int = MAX_CONE,
    deadline: float | None = None,
    tol: Tolerances = DEFAULT,
) -> StabilityReport:
    """Classify every ReLU neuron of ``net`` over the union of ``boxes``, cone by cone.

    ``analyse(cone_net, projected_boxes, projected_data)`` is the dense analysis (the
    engine's ``stable_neurons`` with the caller's options); see the module docstring for why
    its verdicts are those of ``net``.

    ``deadline`` (a ``time.perf_counter()`` instant): no cone is started after it; the
    neurons of the cones not analysed stay UNDECIDED (kept) unless two proofs that need no
    solver and are bounded in work settle them: :func:`_late_intervals` (one interval pass
    over the whole network, a sparse product per layer, ``tol``'s pads) and
    :func:`_constants` (an integer product of each layer's weight pattern with its dead
    inputs). Both cost O(non-zero weights), once, whatever the number of cones left.
    Without this, each late cone still cost its set-up and interval pass (about 10 ms;
    1,630 of them on metaroom ``4cnn`` ran 16-24 s past a 60 s budget).
    """
    t0 = time.perf_counter()
    patterns = [_pattern(la) for la in net.layers]
    relu = net.relu_layers
    width = {k: net.layers[k].out_features for k in relu}
    verdict = {k: np.zeros(width[k], np.int8) for k in relu}
    proof = {k: np.zeros(width[k], np.int8) for k in relu}
    lower = {k: np.full(width[k], -np.inf) for k in relu}
    upper = {k: np.full(width[k], np.inf) for k in relu}
    wpos = {k: np.full(width[k], -1, np.int64) for k in relu}
    wneg = {k: np.full(width[k], -1, np.int64) for k in relu}
    seen = {k: np.zeros(width[k], bool) for k in relu}
    witnesses: list[np.ndarray] = []
    stats: dict[str, float] = {}
    centre = [(b.lower + b.upper) / 2 for b in boxes]
    progress.task("stability, cone by cone", sum(width.values()))
    cones = reused = too_large = 0
    cache: dict[bytes, StabilityReport] = {}
    settled = skipped = 0
    for k in relu:  # in order: the dead units of earlier layers leave every later cone
        settled += _constants(net, patterns, verdict, proof, lower, upper, [k])
        if _past(deadline):
            skipped += int(np.count_nonzero(~seen[k]))
            progress.advance(int(np.count_nonzero(~seen[k])))
            continue  # only the exact constants past the deadline
        dead = {i: verdict[i] == Verdict.INACTIVE for i in relu if i < k}
        todo = np.flatnonzero((verdict[k] == Verdict.UNDECIDED) & ~seen[k])
        for group, sets in _groups(patterns, k, todo, target, max_cone, dead):
            if _past(deadline):  # this group and the rest of the layer stay UNDECIDED
                skipped += int(np.count_nonzero(~seen[k]))
                progress.advance(int(np.count_nonzero(~seen[k])))
                break
            if sets is None:
                seen[k][group] = True
                too_large += 1
                progress.advance(1)
                continue
            inputs = sets[0]
            sub = cone_network(net, sets)
            sub_boxes = [Box(b.lower[inputs], b.upper[inputs]) for b in boxes]
            sub_data = None if data is None else data[:, inputs]
            key = _key(sub, sub_boxes, sub_data)
            if key not in cache:  # the same cone on the same box: the same report
                cache[key] = analyse(sub, sub_boxes, sub_data)
                cones += 1
                for name, v in cache[key].stats.items():
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        stats[name] = stats.get(name, 0) + v
            else:
                reused += 1
            rep = cache[key]
            base = len(witnesses)
            full = []
            for w in np.asarray(rep.witnesses).reshape(-1, len(inputs)):
                x = _extend(w, inputs, boxes, centre)
                full.append(x)
            witnesses.extend(x for x in full if x is not None)
            index = np.full(len(full), -1, np.int64)
            ok = [i for i, x in enumerate(full) if x is not None]
            index[ok] = base + np.arange(len(ok))
            done = 0
            for ls in rep.layers:
                rows = sets[ls.layer + 1]
                k2 = ls.layer
                for s, j in enumerate(rows):
                    v = int(ls.verdict[s])
                    if v == Verdict.UNSTABLE and (
                        index[ls.witness_pos[s]] < 0 or index[ls.witness_neg[s]] < 0
                    ):
                        v = Verdict.UNDECIDED  # a witness that did not extend: prove nothing
                    lower[k2][j] = max(lower[k2][j], ls.lower[s])
                    upper[k2][j] = min(upper[k2][j], ls.upper[s])
                    if not seen[k2][j]:
                        done += 1
                    seen[k2][j] = True
                    if not _better(verdict[k2][j], v):
                        continue
                    verdict[k2][j], proof[k2][j] = v, ls.proof[s] if v != Verdict.UNDECIDED else 0
                    if v == Verdict.UNSTABLE:
                        wpos[k2][j] = index[ls.witness_pos[s]]
                        wneg[k2][j] = index[ls.witness_neg[s]]
            progress.advance(done)
    if skipped:
        settled += _late_intervals(net, boxes, verdict, proof, lower, upper, tol)
    settled += _constants(net, patterns, verdict, proof, lower, upper, relu)
    layers = [
        LayerStability(k, verdict[k], proof[k], lower[k], upper[k], wpos[k], wneg[k]) for k in relu
    ]
    stats.update(
        cones=cones,
        cones_reused=reused,
        cones_too_large=too_large,
        constants=settled,
        neurons_past_deadline=skipped,
        seconds=time.perf_counter() - t0,
    )
    if skipped:
        stats["out_of_time"] = 1
    wit = np.array(witnesses) if witnesses else np.zeros((0, net.input_size))
    return StabilityReport(tuple(layers), wit, stats)


def _late_intervals(net: Network, boxes: Sequence[Box], verdict, proof, lower, upper, tol) -> int:
    """Interval bounds of every layer over the hull of ``boxes``, intersected with the bounds
    the cones proved, settling UNDECIDED neurons with ``u <= 0`` (INACTIVE) or ``l >= 0``
    (ACTIVE; both at once is a doubt: left UNDECIDED). Sound: each layer's input bounds are
    sound bounds of the previous layer's output (intervals, or cone bounds, both sound, so
    their intersection is too), and the hull contains the union of the boxes. Returns how
    many it settled."""
    lo = np.min([b.lower for b in boxes], axis=0)
    hi = np.max([b.upper for b in boxes], axis=0)
    settled = 0
    for k, layer in enumerate(net.layers):
        zlo, zhi = interval_layer(layer, lo, hi, tol)
        if layer.relu:
            zlo = lower[k] = np.maximum(zlo, lower[k])
            zhi = upper[k] = np.minimum(zhi, upper[k])
            open_ = verdict[k] == Verdict.UNDECIDED
            off = open_ & (zhi <= 0.0) & ~(zlo >= 0.0)
            on = open_ & (zlo >= 0.0) & ~(zhi <= 0.0)
            verdict[k][off], verdict[k][on] = Verdict.INACTIVE, Verdict.ACTIVE
            proof[k][off | on] = Proof.INTERVAL
            settled += int(np.count_nonzero(off | on))
            zlo, zhi = np.maximum(zlo, 0.0), np.maximum(zhi, 0.0)
        lo, hi = zlo, zhi
    return settled


def _past(deadline: float | None) -> bool:
    """Whether the caller's ``deadline`` (``time.perf_counter()``) has passed."""
    return deadline is not None and time.perf_counter() >= deadline


def _constants(
    net: Network, patterns: Sequence, verdict, proof, lower, upper, layers: Sequence[int]
) -> int:
    """Settle, in exact arithmetic, the neurons that read only proven-INACTIVE neurons.

    If every non-zero weight of row ``j`` of ``W_k`` reads a unit ``i`` of ReLU layer
    ``k - 1`` with ``max z_i <= 0``, then ``h_i = relu(z_i) = 0`` exactly and
    ``z_j = sum_i w_ji * 0 + b_j = b_j`` exactly (in floating point too: ``w * 0 = 0`` for
    finite ``w``). So ``z_j`` is the constant ``b_j``: INACTIVE if ``b_j <= 0`` (a tie at
    0 is inactive), else ACTIVE. A bound with margin cannot prove the tie ``z_j = 0``
    (``max(a, b) - b`` of two dead units in a max-pool): this does. Layers in order, so
    settled units feed the next layer's test. Returns how many it settled.
    """
    settled = 0
    for k in layers:
        if k == 0 or not net.layers[k - 1].relu:
            continue
        dead = verdict[k - 1] == Verdict.INACTIVE
        live = patterns[k].astype(np.int64) @ (~dead).astype(np.int64)
        b = net.layers[k].bias
        for j in np.flatnonzero((live == 0) & (verdict[k] == Verdict.UNDECIDED)):
            verdict[k][j] = Verdict.INACTIVE if b[j] <= 0.0 else Verdict.ACTIVE
            proof[k][j] = Proof.INTERVAL
            lower[k][j] = upper[k][j] = b[j]
            settled += 1
    return settled


def _key(sub: Network, boxes: list[Box], data: np.ndarray | None) -> bytes:
    """A digest of everything a cone's analysis reads: its layers, boxes and data."""
    h = hashlib.sha256()
    for la in sub.layers:
        h.update(repr((la.weight.shape, la.relu)).encode())
        h.update(la.weight.tobytes())
        h.update(la.bias.tobytes())
    for b in boxes:
        h.update(b.lower.tobytes())
        h.update(b.upper.tobytes())
    if data is not None:
        h.update(np.ascontiguousarray(data).tobytes())
    return h.digest()


def sparsity_patterns(net: Network) -> list:
    """Each layer's non-zero pattern (``scipy.sparse.csr_array`` of bools, sorted indices):
    the ``patterns`` :func:`prefix_cone` and :func:`cone_groups` read."""
    return [_pattern(la) for la in net.layers]


def cone_groups(
    patterns: Sequence,
    k: int,
    todo: np.ndarray,
    dead: dict[int, np.ndarray],
    *,
    target: int = CONE_TARGET,
    max_cone: int = MAX_CONE,
):
    """The groups of ``todo`` (neurons of layer ``k``) that :func:`stable_by_cones` analyses
    together, with their :func:`prefix_cone` sets (``None`` for a neuron whose own cone has
    more than ``max_cone`` units); also what the re-check of claims walks
    (:mod:`exactcomp.verify.sparse`)."""
    yield from _groups(patterns, k, todo, target, max_cone, dead)


def _extend(
    w: np.ndarray, inputs: np.ndarray, boxes: Sequence[Box], centre: list[np.ndarray]
) -> np.ndarray | None:
    """A point of one of ``boxes`` whose ``inputs`` coordinates are ``w``, or ``None``."""
    for b, c in zip(boxes, centre, strict=True):
        if np.all(b.lower[inputs] <= w) and np.all(w <= b.upper[inputs]):
            x = c.copy()
            x[inputs] = w
            return x
    return None


__all__ = [
    "CONE_TARGET",
    "MAX_CONE",
    "Proof",
    "cone_groups",
    "cone_network",
    "prefix_cone",
    "sparsity_patterns",
    "stable_by_cones",
]
