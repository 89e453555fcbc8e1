"""Generators aimed at one unsound shortcut each: near-duplicate and near-dependent neurons.

:func:`random_case` (:mod:`.random_networks`) makes duplicates that are *exact* (a row
times ``s``); a rewrite that merges rows agreeing only to a relative tolerance passes on
them. These generators plant the rows such a tolerance wrongly merges (issue 18), with
outgoing weights that turn a ``1e-10`` disagreement into an output change of ``0.1``:

* :func:`near_duplicate_case`: a pair ``A``, ``B`` whose augmented rows ``[w | b]`` agree to
  ``1e-12 .. 1e-8`` relative. In the first layer ``A``'s bias is set by :func:`tie_bias`
  (``max z_A = 0`` exactly, or ``min z_A = 0``), and ``B``'s bias is nudged so that ``B`` is
  positive on a slab of the box thinner than ``1e-9`` where ``A`` never is (or the reverse).
  ``B``'s outgoing weight is ``1e6 .. 1e9``; usually ``A``'s column cancels it
  (``v_A = -c v_B``), so the exact output stays small and only the slab shows.
* :func:`near_dependent_case`: stably active first-layer neurons (bias past
  :func:`tie_bias` by a margin) and one more whose row is a linear combination of them plus
  a perturbation of ``1e-13 .. 1e-9`` relative; the next layer reads it with weight
  ``V = 1e6 .. 1e9`` and the sources with ``-a_i V`` (bias compensated), so the exact
  function is ``V`` times the perturbation: what a numerical-rank fold drops.

Boxes are dyadic (multiples of 1/4) so that :func:`tie_bias` is exact. Everything is drawn
from ``numpy.random.default_rng(seed)``: same seed, same case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from ..domain import Box
from ..network import Layer, Network
from ..verdicts import StabilityReport, Verdict
from .random_networks import Case, IntRange, draw, random_network, tie_bias

__all__ = ["dyadic_box", "near_dependent_case", "near_duplicate_case"]


def dyadic_box(rng: np.random.Generator, n: int) -> Box:
    """A box with bounds that are multiples of 1/4 in ``[-2, 2]``, every side non-empty."""
    lower = rng.integers(-8, 7, size=n) / 4
    upper = lower + rng.integers(1, 9, size=n) / 4
    return Box(lower, np.minimum(upper, 2.0))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10.0 ** rng.uniform(np.log10(lo), np.log10(hi)))


def _dyadic_row(rng: np.random.Generator, n: int) -> np.ndarray:
    row = rng.integers(-4, 5, size=n) / 4
    if not row.any():
        row[int(rng.integers(n))] = 1.0
    return row


def _append(
    net: Network,
    k: int,
    rows: np.ndarray,
    biases: np.ndarray,
    cols: np.ndarray,
    shift: np.ndarray,
    rng: np.random.Generator,
) -> Network:
    """Add neurons (``rows``, ``biases``) to ReLU layer ``k``, read by the next layer through
    ``cols`` (next bias ``+= shift``); then shuffle layer ``k``'s neurons."""
    layers = list(net.layers)
    la, nx = layers[k], layers[k + 1]
    w = np.vstack([la.weight, rows])
    b = np.concatenate([la.bias, biases])
    v = np.hstack([nx.weight, cols])
    perm = rng.permutation(w.shape[0])
    layers[k] = Layer(w[perm], b[perm], la.relu)
    layers[k + 1] = Layer(v[:, perm], nx.bias + shift, nx.relu)
    return net.replace_layers(tuple(layers))


def _base(rng, n: int, box: Box, depth: IntRange, neurons: int) -> Network:
    return random_network(
        rng,
        depth=depth,
        width=(1, max(1, neurons)),
        inputs=n,
        max_neurons=max(1, neurons),
        box=box,
        nasty=bool(rng.random() < 0.5),
    )


def near_duplicate_case(
    seed: int, inputs: IntRange = (1, 4), max_neurons: int = 10, depth: IntRange = (1, 2)
) -> Case:
    """A random network plus one or two near-duplicate pairs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = draw(rng, inputs)
    box = dyadic_box(rng, n)
    pairs = 1 if max_neurons < 6 else int(rng.integers(1, 3))
    net = _base(rng, n, box, depth, max_neurons - 2 * pairs)
    for _ in range(pairs):
        hidden = len(net.layers) - 1
        k = 0 if hidden == 1 or rng.random() < 0.6 else hidden - 1
        net = _add_pair(rng, net, box, k)
    return Case(net, box, seed)


def _add_pair(rng: np.random.Generator, net: Network, box: Box, k: int) -> Network:
    la = net.layers[k]
    eps = _log_uniform(rng, 1e-12, 1e-8)
    c = float(rng.choice([1.0, 1.0, 2.0, 0.5, 3.0, 1e-3]))
    row_a, bias_a = _dyadic_row(rng, la.in_features), None
    if k == 0:
        bias_a = tie_bias(row_a, box, "max" if rng.random() < 0.6 else "min")
    if bias_a is None or bias_a == 0.0 or k > 0:
        j = int(rng.integers(la.out_features))
        row_a, bias_a = la.weight[j].copy(), float(la.bias[j])
        if bias_a == 0.0:
            bias_a = float(rng.choice([-1.0, 1.0])) * 0.5
    row_b, bias_b = c * row_a, c * bias_a
    if rng.random() < 0.7 or not row_b.any():  # nudge the bias: B's kink moves eps * |b|
        bias_b += float(rng.choice([1.0, -1.0])) * eps * abs(bias_b)
    else:  # or one weight
        i = int(np.flatnonzero(row_b)[rng.integers(np.count_nonzero(row_b))])
        row_b[i] *= 1.0 + float(rng.choice([1.0, -1.0])) * eps
    nxt = net.layers[k + 1]
    big = float(rng.choice([1.0, -1.0])) * _log_uniform(rng, 1e6, 1e9)
    col_b = np.zeros(nxt.out_features)
    col_b[int(rng.integers(nxt.out_features))] = big
    col_a = -c * col_b if rng.random() < 0.7 else rng.normal(size=nxt.out_features)
    cols = np.stack([col_a, col_b], axis=1)
    rows, biases = np.stack([row_a, row_b]), np.array([bias_a, bias_b])
    return _append(net, k, rows, biases, cols, np.zeros(nxt.out_features), rng)


def near_dependent_case(
    seed: int, inputs: IntRange = (2, 4), max_neurons: int = 10, depth: IntRange = (1, 2)
) -> Case:
    """A random network plus stably active first-layer neurons, one of them a combination of
    the others up to a tiny perturbation, amplified (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = draw(rng, inputs)
    box = dyadic_box(rng, n)
    m = int(rng.integers(1, min(n, 3) + 1))  # sources
    net = _base(rng, n, box, depth, max_neurons - m - 1)
    rows, biases = [], []
    for _ in range(m):
        row = _dyadic_row(rng, n)
        rows.append(row)
        biases.append(_active_bias(rng, row, box))
    a = rng.integers(-4, 5, size=m) / 2
    a[a == 0] = 1.0
    dep = a @ np.array(rows)
    eps = _log_uniform(rng, 1e-13, 1e-9)
    scale = np.abs(dep) + np.abs(a) @ np.abs(np.array(rows))
    dep = dep + eps * scale * rng.choice([-1.0, 1.0], size=n) * (rng.random(n) < 0.7)
    rows.append(dep)
    biases.append(_active_bias(rng, dep, box))
    nxt = net.layers[1]
    big = float(rng.choice([1.0, -1.0])) * _log_uniform(rng, 1e6, 1e9)
    col = np.zeros(nxt.out_features)
    col[int(rng.integers(nxt.out_features))] = big
    cols = np.hstack([-np.outer(col, a), col[:, None]])
    offset = biases[-1] - float(a @ np.array(biases[:-1]))
    return Case(
        _append(net, 0, np.array(rows), np.array(biases), cols, -col * offset, rng), box, seed
    )


def _active_bias(rng: np.random.Generator, row: np.ndarray, box: Box) -> float:
    """A bias putting ``min z`` over the box at a margin of 1/4 .. 2 above 0 (exact when
    dyadic), so the neuron is clearly stably active."""
    lo = float(np.sum(np.minimum(row * box.lower, row * box.upper)))
    return -lo + float(rng.integers(1, 9)) / 4


def false_claim(
    report: StabilityReport, layer: int, neuron: int, verdict: Verdict
) -> StabilityReport:
    """``report`` with the verdict of one neuron replaced: a tampered certificate, for tests
    that the re-check refuses a claim it cannot prove."""
    ls = report.for_layer(layer)
    verdicts = ls.verdict.copy()
    verdicts[neuron] = verdict
    layers = tuple(
        dataclasses.replace(ls, verdict=verdicts) if x is ls else x for x in report.layers
    )
    return StabilityReport(layers, report.witnesses, report.stats)


def planted_claims(
    net: Network, report: StabilityReport, exact: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Iterator[tuple[int, int, StabilityReport]]:
    """``(layer, neuron, tampered report)`` for each ReLU neuron whose ``exact`` pre-activation
    range (per layer, e.g. :func:`~exactcomp.testing.exact_preactivation_ranges`) crosses 0 by
    more than 1e-3 on both sides, claimed INACTIVE and then ACTIVE (:func:`false_claim`): the
    claims a re-check must refuse."""
    for k in net.relu_layers:
        lo, hi = exact[k]
        for j in np.flatnonzero((lo < -1e-3) & (hi > 1e-3)):
            for v in (Verdict.INACTIVE, Verdict.ACTIVE):
                yield k, int(j), false_claim(report, k, int(j), v)
