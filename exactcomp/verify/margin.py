r"""The proven class margin of one network on a box: what ``compress --tol-mode top1`` keeps.

Maths
-----
Let ``f: B -> R^m`` and ``s = +1`` (the class is the argmax, the default) or ``s = -1`` (the
class is the argmin, ACAS Xu's advisory). The class ``c`` is read at the centre of ``B``,
``c = argmax_i s f_i(x_0)``, and the *margin network* ``f^c`` has the same hidden layers as
``f`` and, in place of its last layer ``(W, b)``, the ``m - 1`` rows

.. math::

    f^c_j(x) = s (W_c - W_j) h(x) + s (b_c - b_j) = s (f_c(x) - f_j(x)), \qquad j \ne c.

A sound lower bound :math:`\underline{m}_j \le \min_{x \in B} f^c_j(x)` (back-substitution,
:func:`exactcomp.bounds.linear_bounds`; on a deep network the hidden layers LP-tightened as
the lossy charger does, :func:`exactcomp.verify.tighten.tightened_pair`, then the last layer
by the triangle LP, :func:`exactcomp.bounds.lp.lp_layer_bounds`; the larger of the two holds)
gives the proven margin :math:`\underline{m} = \min_j \underline{m}_j`. If
:math:`\underline{m} > 0`, ``c`` is the class of ``f`` everywhere on ``B``.

The LP relaxes every unstable ReLU; where it leaves the margin loose (MNIST 256x2 on
prop_0_0.03: 0.19 against 0.99 sampled) or below 0, the stability engine
(:func:`exactcomp.stability.engine.stable_neurons`: bounds, LP, MILP and ReLU splits, each
with its margins) is asked, for thresholds ``t`` below the least sampled margin, whether every
neuron of ``relu(f^c(x) - t)`` is stably ACTIVE, i.e. :math:`\min_{x \in B} f^c_j(x) \ge t`
for all ``j``; the largest ``t`` so proven replaces :math:`\underline{m}` (UNDECIDED, a
time-out, proves nothing).

Then any ``g`` with :math:`\max_{x \in B} \|f(x) - g(x)\|_\infty \le d < \underline{m} / 2`
keeps the class: :math:`s (g_c - g_j) \ge s (f_c - f_j) - 2d \ge \underline{m} - 2d > 0` for
every ``j != c`` and ``x in B``. So a top1 compression is a ``linf`` one at
``tol = (1 - TOP1_SLACK) * m / 2`` (:data:`exactcomp.tolerances.TOP1_SLACK` makes the
inequality strict).

Floating point: the rows ``s (W_c - W_j)`` and ``s (b_c - b_j)`` are rounded once in float64,
each entry within ``u |a - b| <= u (|a| + |b|)`` (``u = 2^-53``) of the exact difference, so
the network bounded differs from the exact margin by at most
:math:`e_j = u ((|W_c| + |W_j|) \bar h + |b_c| + |b_j| + |t|)` with :math:`\bar h` a bound of
:math:`|h(x)|` on the box (the root bounds of the last hidden layer, or the box itself) and
``t`` the threshold subtracted from the biases; the proven margin is the bound found minus
:math:`\max_j e_j`, doubled for the float64 evaluation of that bound (:func:`_rounding_of_rows`,
the argument of :mod:`exactcomp.verify.head`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bounds.lp import lp_layer_bounds
from ..domain import Box
from ..errors import InvalidOptionError
from ..network import Layer, Network
from ..stability.engine import stable_neurons
from ..tolerances import DEFAULT, TOP1_SLACK, Tolerances
from ..verdicts import Verdict
from .head import rows_rounding
from .pairs import Pair
from .tighten import tightened_pair

#: Shares of the least sampled margin that :func:`_engine_margin` asks the stability engine to
#: prove, in order (MNIST 256x2 prop_0_0.03, class 8: sampled 0.99, LP 0.19; the engine
#: proves 0.5 in 4 s and shows a point below 0.8).
PROBE_SHARES: tuple[float, ...] = (0.5, 0.7, 0.85)
PROBE_POINTS = 4096
#: ``argmax``: the class is the largest output; ``argmin``: the smallest (ACAS Xu's advisory).
CLASS_RULES: tuple[str, ...] = ("argmax", "argmin")


@dataclass(frozen=True)
class ClassMargin:
    """The class ``label`` of ``f`` at the box centre and the proven lower bound ``margin``
    of ``s (f_label - f_j)`` over the box, the least over ``j != label`` (``inf`` for one
    output); ``margin > 0`` proves the class constant on the box."""

    label: int
    margin: float

    @property
    def proven(self) -> bool:
        return self.margin > 0.0


def margin_network(f: Network, label: int, sign: float = 1.0) -> Network:
    """``f`` with its last layer replaced by the rows ``sign (f_label - f_j)``, ``j != label``."""
    last = f.layers[-1]
    w = np.asarray(last.weight.todense() if last.sparse else last.weight)
    others = [j for j in range(f.output_size) if j != label]
    rows = sign * (w[label][None, :] - w[others])
    bias = sign * (last.bias[label] - last.bias[others])
    return f.replace_layers([*f.layers[:-1], Layer(rows, bias, relu=last.relu)])


def class_margin(
    f: Network,
    box: Box,
    *,
    seconds: float = 10.0,
    rule: str = "argmax",
    milp_seconds: float = 0.0,
    tol: Tolerances = DEFAULT,
) -> ClassMargin:
    """The class of ``f`` at the centre of ``box`` and its proven margin (module docstring),
    within about ``seconds`` of LP tightening (0: back-substitution only), then, with
    ``milp_seconds`` > 0, a larger margin the stability engine proves (:func:`_engine_margin`)."""
    if rule not in CLASS_RULES:
        raise InvalidOptionError(f"--top1-class must be argmax or argmin, got {rule!r}")
    if f.layers[-1].relu:  # f_c - f_j would be relu(z_c) - relu(z_j), not a linear row
        raise InvalidOptionError("top1 needs a network whose last layer has no ReLU")
    sign = 1.0 if rule == "argmax" else -1.0
    centre = (box.lower + box.upper) / 2.0
    label = int(np.argmax(sign * f.forward(centre[None])[0]))
    if f.output_size == 1:
        return ClassMargin(label, float("inf"))
    fm = margin_network(f, label, sign)
    deadline = time.monotonic() + max(float(seconds), 0.0)
    pair = Pair.prepare(fm, fm, box, range(fm.output_size), tol)
    last = len(fm.layers) - 1
    lower = pair.root[last][0]
    if last > 0 and seconds > 0:
        pair = tightened_pair(pair, box, 0.75 * seconds)
        left = max(deadline - time.monotonic(), 0.1 * seconds)
        lo, _ = lp_layer_bounds(fm, box, last, list(pair.root), tol=tol, time_limit=left)
        lower = np.maximum(lower, lo)
    margin = float(lower.min())
    if milp_seconds > 0:
        margin = _engine_margin(fm, box, margin, time.perf_counter() + milp_seconds, tol)
    if last > 0:
        mag = np.maximum(pair.root[last - 1][1], 0.0)  # h = relu(z) of the last hidden layer
    else:
        mag = np.maximum(np.abs(box.lower), np.abs(box.upper))
    return ClassMargin(label, margin - _rounding_of_rows(f, label, mag, margin))


def _rounding_of_rows(f: Network, label: int, mag: np.ndarray, t: float) -> float:
    """The largest rounding of the rows of :func:`margin_network` offset by ``t``
    (:func:`exactcomp.verify.head.rows_rounding`: the same argument, for rows that are
    differences of one layer's rows), for inputs ``|h| <= mag`` of the last layer."""
    last = f.layers[-1]
    w = np.asarray(last.weight.todense() if last.sparse else last.weight)
    b = np.asarray(last.bias, dtype=np.float64)
    others = [j for j in range(f.output_size) if j != label]
    e = rows_rounding(w[label][None, :], b[label], w[others], b[others], mag, t)
    return float(e.max(initial=0.0))


def _engine_margin(fm: Network, box: Box, proven: float, deadline: float, tol: Tolerances):
    r"""``proven``, or a larger threshold ``t`` that the stability engine proves: the rows of
    ``relu(f^c(x) - t)`` all stably ACTIVE on ``box`` mean :math:`\min_x f^c_j(x) \ge t` for
    every ``j`` (the engine's proofs: bounds, LP, MILP, ReLU splits, with its margins; a
    time-out leaves a row UNDECIDED, which proves nothing). The thresholds tried are
    :data:`PROBE_SHARES` of the least margin seen on :data:`PROBE_POINTS` seeded points (an
    upper estimate; a row shown UNSTABLE by a witness, or not proven by ``deadline``, ends
    the probing)."""
    rng = np.random.default_rng(0)
    x = box.lower + (box.upper - box.lower) * rng.random((PROBE_POINTS, box.dim))
    seen = float(fm.forward(np.vstack([x, (box.lower + box.upper)[None] / 2])).min())
    last = fm.layers[-1]
    for share in PROBE_SHARES:
        t = share * seen
        if t <= proven or time.perf_counter() >= deadline:
            continue
        probe = fm.replace_layers([*fm.layers[:-1], Layer(last.weight, last.bias - t, relu=True)])
        got = stable_neurons(probe, box, jobs=1, tol=tol, deadline=deadline)
        if not (got.for_layer(len(probe.layers) - 1).verdict == Verdict.ACTIVE).all():
            break
        proven = t
    return proven


def top1_tolerance(
    f: Network,
    boxes: Sequence[Box],
    tol: float | None,
    *,
    rule: str = "argmax",
    seconds: float = 10.0,
    milp_seconds: float = 0.0,
) -> tuple[float, dict]:
    """The ``linf`` tolerance of a top1 compression: ``(1 - TOP1_SLACK) * min_i m_i / 2`` over
    the boxes' proven margins ``m_i``, capped by the user's ``tol`` if given; and the report's
    keys (``tol_mode``, ``top1_class``, ``classes``, ``margin_proven`` per box,
    ``margin_proven_min``, ``tol_requested``, ``margin_seconds``). Raises
    :class:`InvalidOptionError` naming the first box on which the class of ``f`` is not
    proven constant (``seconds`` of LP and ``milp_seconds`` of the stability engine's proofs
    of larger margins, all boxes together)."""
    t0, n = time.perf_counter(), max(len(boxes), 1)
    got = [
        class_margin(f, b, seconds=seconds / n, rule=rule, milp_seconds=milp_seconds / n)
        for b in boxes
    ]
    for i, cm in enumerate(got):
        if not cm.proven:
            raise InvalidOptionError(
                f"the original's class is not proven constant on box {i} (proven margin "
                f"{cm.margin:.4g}): top1 needs a box where it is; use --tol-mode linf"
            )
    least = min(cm.margin for cm in got)
    limit = (1.0 - TOP1_SLACK) * least / 2.0
    facts = {
        "tol_mode": "top1",
        "top1_class": rule,
        "classes": [cm.label for cm in got],
        "margin_proven": [cm.margin for cm in got],
        "margin_proven_min": least,
        "tol_requested": tol,
        "margin_seconds": round(time.perf_counter() - t0, 3),
    }
    if tol is None and not np.isfinite(limit):
        raise InvalidOptionError("one output: every network keeps its class; give --tol")
    return (limit if tol is None else min(limit, tol)), facts


__all__ = ["CLASS_RULES", "ClassMargin", "class_margin", "margin_network", "top1_tolerance"]
