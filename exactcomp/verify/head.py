r"""Two networks that share every hidden layer: their difference is one network's output.

Maths
-----
Let ``f`` and ``g`` have the same hidden layers, exactly (the same weights, biases and ReLUs),
and last layers ``(W, b)`` and ``(W', b')`` without ReLU: a quantised or pruned output layer,
a classifier head fine-tuned on a frozen body. With ``h(x)`` the common last hidden layer,

.. math::

    s\,(f_i(x) - g_i(x)) = s\,(W_i - W'_i)\, h(x) + s\,(b_i - b'_i), \qquad s = \pm 1,

an affine function of ``h``: each side of each compared output is one row on the shared
body, and :math:`\max_{x \in B} s (f_i - g_i) \le t` for every side is the claim that every
neuron of the **head network** :math:`\mathrm{relu}(R\, h(x) + r - t)` (rows ``R``, biases
``r``: the sides) is stably inactive on ``B``. That is a question of one network, which the
stability engine (:func:`exactcomp.stability.engine.stable_neurons`: bounds, LP, ideal cuts,
ReLU splits, MILP, each with its margins) answers far more tightly than a differential bound,
which relaxes ``h`` in ``f`` and ``g`` apart: on the digits model with l1 = 0 over
[0,1]^64 and its output layer at 8 bits, 0.39 where the differential bounds and the MILP of
:mod:`exactcomp.verify.equivalence` end at 0.86 (benchmarks/RESULTS.md "head14").

A row the engine leaves undecided keeps its best proven upper bound ``u``: its side is at
most ``t + u``; a row shown positive by a witness gives an input to re-check as a
counterexample (the caller does, in float64 then exactly).

Floating point: each entry of ``R`` and ``r - t`` is rounded once in float64, within
:math:`u_{64} |a - b|` of the exact difference (:math:`u_{64} = 2^{-53}`), so the head
network's rows differ from the exact sides by at most
:math:`e = u_{64} ((|W_i| + |W'_i|) \bar h + |b_i| + |b'_i| + |t|)` on inputs
:math:`|h| \le \bar h` (interval bounds of the body); :func:`rows_rounding` doubles it for the
float64 evaluation of the sum, and every claim adds it. The same argument covers the class
margins of :mod:`exactcomp.verify.margin`, whose rows are differences of one layer's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..bounds import interval_bounds
from ..domain import Box
from ..network import Layer, Network
from ..stability.engine import stable_neurons
from ..tolerances import DEFAULT, Tolerances
from ..verdicts import Verdict
from .prefix import shared_prefix

__all__ = ["HeadBounds", "head_bounds", "rows_rounding", "shared_body"]


def shared_body(f: Network, g: Network) -> bool:
    """True when ``f`` and ``g`` have the same hidden layers exactly
    (:func:`~exactcomp.verify.prefix.shared_prefix`: all but the last), none held sparse, and
    last layers of the same shape without ReLU (dense), so that their difference is affine in
    the body's output."""
    if len(f.layers) != len(g.layers) or len(f.layers) < 2:
        return False
    a, b = f.layers[-1], g.layers[-1]
    if a.relu or b.relu or a.sparse or b.sparse or a.weight.shape != b.weight.shape:
        return False
    dense = not any(la.sparse for la in (*f.layers[:-1], *g.layers[:-1]))
    return dense and shared_prefix(f, g) >= len(f.layers) - 1


def rows_rounding(
    wa: np.ndarray, ba: np.ndarray, wb: np.ndarray, bb: np.ndarray, mag: np.ndarray, t: float = 0.0
) -> np.ndarray:
    """Per row, twice :math:`u_{64} ((|w_a| + |w_b|) \\bar h + |b_a| + |b_b| + |t|)`: how far
    float64 rows ``wa - wb`` with biases ``ba - bb - t`` may put their value from the exact one,
    for inputs ``|h| <= mag`` (module docstring)."""
    u = np.finfo(np.float64).eps / 2.0
    e = (np.abs(wa) + np.abs(wb)) @ np.asarray(mag, dtype=np.float64)
    return 2.0 * u * (e + np.abs(ba) + np.abs(bb) + abs(t))


@dataclass(frozen=True)
class HeadBounds:
    """Per side ``(output, sign)``, a proven upper bound of ``max s (f_i - g_i)`` on the box
    (``inf`` when nothing was proven), and the witness inputs at which a side's row was seen
    above ``t`` (rows of ``points``; candidates for a counterexample, not yet checked)."""

    bounds: dict[tuple[int, float], float]
    points: np.ndarray


def head_bounds(
    f: Network,
    g: Network,
    box: Box,
    sides: Sequence[tuple[int, float]],
    t: float,
    *,
    deadline: float | None = None,
    time_limit: float = 10.0,
    tol: Tolerances = DEFAULT,
) -> HeadBounds:
    """The stability engine asked whether every side of ``sides`` stays within ``t`` on
    ``box`` (module docstring), ``f`` and ``g`` sharing their body (:func:`shared_body`): the
    head's rows are offset by ``t`` less twice their rounding, so a side proven within its
    row's bound is within ``t`` with the rounding added.
    ``deadline`` (``time.perf_counter()``) and ``time_limit`` (per MILP) bound the engine.
    A side whose row is unchanged (``W_i = W'_i``) is the constant ``s (b_i - b'_i)``, bounded
    exactly without the engine (an identical copy asks nothing of it)."""
    last, other = f.layers[-1], g.layers[-1]
    bounds, points = {}, [np.empty((0, box.dim))]
    moved = []  # the sides whose rows differ; the others are constants
    for i, s in sides:
        if np.array_equal(last.weight[i], other.weight[i]):
            c = s * (Fraction(float(last.bias[i])) - Fraction(float(other.bias[i])))
            bounds[(i, s)] = _ceil(c)
            if c > t:
                points.append(box.center[None, :])
        else:
            moved.append((i, s))
    if moved:
        got, seen = _engine(f, g, box, moved, t, deadline, time_limit, tol)
        bounds.update(got)
        points.append(seen)
    return HeadBounds({side: bounds[side] for side in sides}, np.vstack(points))


def _engine(f, g, box, sides, t, deadline, time_limit, tol) -> tuple[dict, np.ndarray]:
    """:func:`head_bounds` for sides whose rows differ: the head network's rows offset by
    ``t`` less twice their rounding, asked of the stability engine; per side its bound, and
    the witnesses of rows seen above the offset."""
    last, other = f.layers[-1], g.layers[-1]
    idx = np.array([i for i, _ in sides], dtype=np.int64)
    sign = np.array([s for _, s in sides], dtype=np.float64)[:, None]
    wa, wb, ba, bb = last.weight[idx], other.weight[idx], last.bias[idx], other.bias[idx]
    rows = sign * (wa - wb)
    body = f.layers[:-1]
    mag = np.maximum(interval_bounds(f, box, tol=tol)[-2][1], 0.0)  # h = relu(z) of the body
    first = float(rows_rounding(wa, ba, wb, bb, mag, t).max(initial=0.0))
    ask = t - 2.0 * first - 4.0 * float(np.spacing(abs(t)))
    err = rows_rounding(wa, ba, wb, bb, mag, max(abs(t), abs(ask)))  # the offset rounded too
    head = Network((*body, Layer(rows, sign[:, 0] * (ba - bb) - ask, relu=True)))
    report = stable_neurons(head, box, jobs=1, tol=tol, deadline=deadline, time_limit=time_limit)
    got = report.for_layer(len(body))
    bounds = {}
    for r, side in enumerate(sides):
        u = float(got.upper[r])
        if got.verdict[r] == Verdict.INACTIVE:
            u = min(u, 0.0)
        bounds[side] = _up(_up(ask + u) + float(err[r]))
    seen = got.witness_pos[got.witness_pos >= 0]
    return bounds, report.witnesses[seen]


def _ceil(c: Fraction) -> float:
    """The least float64 at or above the rational ``c``."""
    x = float(c)
    return x if Fraction(x) >= c else _up(x)


def _up(x: float) -> float:
    """``x`` moved one float64 step up: a sum rounded to nearest is then an upper bound."""
    return float(np.nextafter(x, np.inf))
