r"""Optimised lower ReLU slopes (alpha-CROWN style) for the open nodes of an input-split tree.

A CROWN-style lower bound of a linear function :math:`w^\top h_{k-1} + b` over a box relaxes
each unstable ReLU :math:`h = \max(z, 0)`, :math:`l < 0 < u`, from below by
:math:`h \ge \alpha z` and from above by the chord :math:`h \le s z + t`. *Every*
:math:`\alpha \in [0, 1]` gives a valid relaxation, so every choice of slopes gives a sound
bound (:func:`exactcomp.bab.batch.back_substitute` pads it in float64 as it does for the
fixed rules). alpha-CROWN (Xu et al., 2021) maximises the bound over the slopes, one slope
per neuron *and per bounded row*; here a few projected ascent steps do so, in numpy, batched
over the nodes of a batch.

The gradient. With the signs of the back-substitution's coefficients fixed, the bound is
linear in the slopes, and its derivative is read from the *primal* point of the relaxation:
the input corner :math:`x^*` that attains the minimum (``xlo`` where the input's coefficient
is positive, else ``xhi``), pushed forward through the same relaxations (a neuron whose
output coefficient :math:`a_{in}` is positive takes its lower line :math:`\alpha z`, a
negative one the chord), giving pre-activations :math:`\hat z_i`. Then

.. math::

    \frac{\partial\, \text{bound}}{\partial \alpha_{in}} = \max(a_{in}, 0)\, \hat z_{in}

(the reverse-mode derivative of the back-substitution; the pad is left out of the direction,
never out of the bound). A step moves each row's slopes by ``STEP`` times its gradient over
the row's largest absolute gradient entry, clipped to ``[0, 1]`` (projected gradient with a
scale-free step, halved each step); the best bound met per row is kept with its coefficients
and pad, so the result is never worse than the start: the best of the fixed rules
(:attr:`exactcomp.bab.batch.BatchBounds.winner`). One back-substitution row per (node,
neuron, side) left open, each with its node's bounds: a dense node x row batch wasted two
thirds of its rows (already proven, or a side not asked).

Measured (:data:`exactcomp.bab.split.OPTIMISE`): the layer-3-5 questions of ACAS Xu 4_6,
3_8, 3_6, 2_9, 4_9 prop_1, captured from ``compress`` and replayed with ``prove_signs``
(the same smear retry both ways, CPU s at load about 3, before the :data:`NEAR` gate):
94,534 nodes / 60.5 s without, 52,518 nodes / 58.2 s with 6 steps from a first step of 1
(first step 0.5: 57,631 / 57.7 s; 4 steps: 59,310 / 51.4 s); with the gate see :data:`NEAR`. On the rows it was applied to in 3_8's layer 5, 1, 2, 3, 6,
12 steps proved 794, 1,259, 1,549, 1,925, 2,013 of 18,080 open rows (first step 0.5).
Optimised slopes on the earlier layers' bounds as well were not tried (the four fixed rules
there did not pay: :data:`exactcomp.bab.split.SLOPES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..bounds.interval import Bounds
from ..bounds.linear import relu_relaxation
from ..network import Network
from ..tolerances import Tolerances
from .batch import BatchBounds, back_substitute

__all__ = ["STEPS", "STEP", "SlopeBounds", "optimise_slopes", "tighten_open"]

STEPS = 6
"""Ascent steps per open node (each one back-substitution and one forward pass)."""
NEAR = 0.05
"""Only pairs whose bound misses 0 by less than ``NEAR`` times the neuron's bound width on
the node (``-l / (u - l)`` for ``l >= 0`` sought, ``u / (u - l)`` for ``u <= 0``) are
optimised (a cost rule, not a soundness one): on 3_6 and 4_9 prop_1's layer 5 (first 6,000
nodes each) those were 26 % of the open pairs and held 80 % of the 10,590 that the ascent
proved (0.1: 46 % and 97 %). Replayed as in the module docstring (load about 2): 0.05
62,477 nodes / 45.3 s, 0.1 55,022 / 48.6 s, no gate 52,518 / 56.5 s, no optimisation
94,534 / 51.8 s."""
SPREAD = "max"
"""What the split rule reads for a pair whose bound the ascent improved: ``"max"``, the largest
``|coefficient|`` over the fixed rules and the optimised one, or ``"opt"``, the optimised one
alone (measured on the replay of :data:`NEAR`'s docstring before the gate: 56,129 nodes
against 57,631, no clear difference; ``"max"`` kept, as for the fixed rules)."""
STEP = 1.0
"""The first step's largest slope change per row (halved after each step)."""


@dataclass(frozen=True, eq=False)
class SlopeBounds:
    """The best padded lower bounds met (``bound[B, r]``), with their input coefficients
    (``coef[B, r, n_0]``) and pads (``pads[B, r]``)."""

    bound: np.ndarray
    coef: np.ndarray
    pads: np.ndarray


def _rule_slopes(lo: np.ndarray, hi: np.ndarray, rule: str) -> np.ndarray:
    alpha, s, _ = relu_relaxation(lo, hi)
    return {"adaptive": alpha, "zero": np.zeros_like(s), "one": np.ones_like(s), "chord": s}[rule]


def _start(pre: Sequence[Bounds], k: int, start: np.ndarray, rules: Sequence[str]):
    """Per layer ``i < k``, ``[B, r, n_i]`` slopes of rule ``rules[start[b, r]]``."""
    out = []
    for lo, hi in pre[:k]:
        each = np.stack([_rule_slopes(lo, hi, rule) for rule in rules])  # [R, B, n]
        out.append(each[start, np.arange(lo.shape[0])[:, None]])
    return out


def _gradients(net: Network, k: int, xlo, xhi, pre, alphas, coef, trace) -> list[np.ndarray]:
    """Per layer ``i < k``, the derivative of each row's bound by its slopes (zero where the
    neuron is stable or its output coefficient is not positive); see the module docstring."""
    h = np.where(coef > 0.0, xlo[:, None, :], xhi[:, None, :])  # the primal corner
    grads = []
    for i in range(k):
        layer = net.layers[i]
        z = np.matmul(h, np.asarray(layer.weight, np.float64).T) + layer.bias
        a = trace[k - 1 - i]
        if not layer.relu:
            grads.append(np.zeros_like(z))
            h = z
            continue
        lo, hi = pre[i]
        _, s, t = relu_relaxation(lo, hi)
        unstable = ((lo < 0.0) & (hi > 0.0))[:, None, :]
        alpha = np.where(unstable, alphas[i], np.where(lo >= 0.0, 1.0, 0.0)[:, None, :])
        grads.append(np.where(unstable & (a > 0.0), a * z, 0.0))
        h = np.where(a >= 0.0, alpha * z, s[:, None, :] * z + t[:, None, :])
    return grads


def optimise_slopes(
    net: Network,
    k: int,
    w: np.ndarray,
    b: np.ndarray,
    xlo: np.ndarray,
    xhi: np.ndarray,
    pre: Sequence[Bounds],
    start: np.ndarray,
    rules: Sequence[str],
    tol: Tolerances,
    steps: int | None = None,
) -> SlopeBounds:
    """The best padded lower bounds of ``w h_{k-1} + b`` (rows ``w[r, n]``) on each box met by
    ``steps`` projected ascent steps on the lower slopes of layers ``0..k-1``, started per box
    and row from rule ``rules[start[b, r]]``; ``pre``: finite bounds of layers ``0..k-1`` on
    each box ``[xlo[b], xhi[b]]``."""
    steps = STEPS if steps is None else steps
    pre = list(pre[:k])
    alphas = _start(pre, k, start, rules)
    best: SlopeBounds | None = None
    step = STEP
    for n in range(steps + 1):
        trace: list[np.ndarray] = []
        bound, coef, pads = back_substitute(
            net, k, w, b, xlo, xhi, pre, tol, alphas=alphas, trace=trace
        )
        bound = np.where(np.isfinite(bound), bound, -np.inf)
        if best is None:
            best = SlopeBounds(bound, coef, pads)
        else:
            up = bound > best.bound
            best = SlopeBounds(
                np.where(up, bound, best.bound),
                np.where(up[:, :, None], coef, best.coef),
                np.where(up, pads, best.pads),
            )
        if n == steps:
            break
        grads = _gradients(net, k, xlo, xhi, pre, alphas, coef, trace)
        # [B, r]; a layer of width 0 (emptied by a compression) has no slope to move
        top = np.max([np.abs(g).max(axis=2, initial=0.0) for g in grads], axis=0)
        scale = np.where(top > 0.0, step / np.where(top > 0.0, top, 1.0), 0.0)[:, :, None]
        alphas = [np.clip(a + scale * g, 0.0, 1.0) for a, g in zip(alphas, grads, strict=True)]
        step *= 0.5
    assert best is not None
    return best


def tighten_open(
    net: Network,
    k: int,
    xlo: np.ndarray,
    xhi: np.ndarray,
    bb: BatchBounds,
    want_lo: np.ndarray,
    want_hi: np.ndarray,
    rules: Sequence[str],
    tol: Tolerances,
    steps: int | None = None,
) -> BatchBounds:
    """``bb`` with the bounds of its rows (``bb.rows``) tightened by :func:`optimise_slopes`
    on the boxes and sides asked: ``want_lo[B, m]`` (a lower bound still below 0 that could
    prove ``l >= 0``) and ``want_hi`` (an upper bound above 0). Boxes whose earlier bounds
    are not all finite are left as they are. Each new bound is intersected with the old."""
    m = bb.rows.size
    if k == 0:  # no ReLU below: nothing to optimise
        return bb
    ok = np.ones(len(xlo), dtype=bool)
    for lo, hi in zip(bb.lower[:k], bb.upper[:k], strict=True):
        ok &= np.isfinite(lo).all(1) & np.isfinite(hi).all(1) & np.isfinite(hi - lo).all(1)
    lo, hi = bb.lower[k][:, bb.rows], bb.upper[k][:, bb.rows]
    with np.errstate(over="ignore", invalid="ignore"):
        width = np.where(hi > lo, hi - lo, np.inf)
        want_lo = want_lo & ok[:, None] & (-lo < NEAR * width)
        want_hi = want_hi & ok[:, None] & (hi < NEAR * width)
    if not (want_lo.any() or want_hi.any()) or steps == 0 or (steps is None and STEPS == 0):
        return bb
    # one back-substitution row per (box, neuron, side) asked, each with its box's bounds
    b_lo, c_lo = np.nonzero(want_lo)
    b_hi, c_hi = np.nonzero(want_hi)
    box = np.concatenate([b_lo, b_hi])
    row = np.concatenate([c_lo, m + c_hi])
    neuron = bb.rows[row % m]
    sign = np.where(row < m, 1.0, -1.0)
    layer = net.layers[k]
    w = (sign[:, None] * np.asarray(layer.weight, np.float64)[neuron])[:, None, :]
    b = (sign * np.asarray(layer.bias, np.float64)[neuron])[:, None]
    pre = [(lo[box], hi[box]) for lo, hi in zip(bb.lower[:k], bb.upper[:k], strict=True)]
    start = np.zeros((box.size, 1), np.int64) if bb.winner is None else bb.winner[box, row][:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        got = optimise_slopes(net, k, w, b, xlo[box], xhi[box], pre, start, rules, tol, steps)
    bound, new_coef, new_pads = got.bound[:, 0], got.coef[:, 0], got.pads[:, 0]
    lower, upper = bb.lower[k].copy(), bb.upper[k].copy()
    coef, pads = bb.coef.copy(), bb.pads.copy()
    spread = None if bb.spread is None else bb.spread.copy()
    low = row < m
    old = np.where(low, lower[box, neuron], -upper[box, neuron])
    up = bound > old
    box, row, neuron, low, bound = box[up], row[up], neuron[up], low[up], bound[up]
    lower[box[low], neuron[low]] = bound[low]
    upper[box[~low], neuron[~low]] = -bound[~low]
    coef[box, row] = new_coef[up]
    pads[box, row] = new_pads[up]
    if spread is not None and SPREAD == "max":
        spread[box, row] = np.maximum(spread[box, row], np.abs(new_coef[up]))
    elif spread is not None:
        spread[box, row] = np.abs(new_coef[up])
    return replace(
        bb,
        lower=(*bb.lower[:k], lower, *bb.lower[k + 1 :]),
        upper=(*bb.upper[:k], upper, *bb.upper[k + 1 :]),
        coef=coef,
        pads=pads,
        spread=spread,
    )
