"""Cheap falsification: look for an input where two networks differ before any MILP.

Most non-equivalent pairs are caught here in milliseconds: a few thousand float64 forward
passes (uniform points, box corners, data points) and a projected gradient ascent on each
objective (the probes of :func:`exactcomp.search.candidate_inputs` and the one ascent,
:func:`exactcomp.search.ascend`). The MILP is only needed to *prove* equivalence, or to find
a difference hiding in a region too small for sampling to hit.

The objectives (``s`` a sign, ``e_i`` a unit vector):

* ``linf``: ``phi_{i,s}(x) = s (f_i(x) - g_i(x))``; the pair differs iff some ``phi > tol``.
* ``top1``: ``psi(x) = max_j g_j(x) - max_{i in argmax f(x)} g_i(x)`` (how far ``g`` prefers
  another class over every top class of ``f``); the gradient ascent works on the smooth
  surrogate ``g_j - g_i - lam * (max_k f_k - f_i)`` for a pair ``(i, j)``.

Gradients are exact for a ReLU network at a point where no pre-activation is 0 (backprop
through the activation masks, in numpy); at a kink it is one of the one-sided gradients,
which is all a heuristic search needs. Every point returned is inside the box.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from .. import search
from ..domain import Box
from ..exact import exact_forward, exact_seconds
from ..network import Network
from ..search import candidate_inputs
from ..tolerances import DEFAULT
from .local_search import local_search, search_rows

CORNER_LIMIT = 10  # enumerate all 2^n corners up to this many inputs, else sample corners
NEAR_CORNER = 0.05  # points near the corners move inwards by up to this fraction of the width


#: :func:`sampled_max_difference` before a deadline: its candidate points are drawn and
#: evaluated in chunks of :data:`SAMPLE_CHUNK` points (the first always: the floor), a chunk
#: started only while the slowest chunk so far still fits in :data:`SAMPLE_SHARE` of the
#: seconds left; each ascent started only while the slowest ascent so far still fits before
#: the deadline (the first always). Measured, it replaces a prediction from a 32-point probe
#: that was 2-3x optimistic on cifar_base_kw (RESULTS.md "lossybudget20": 4,096 points
#: predicted 1.5 s, taken 3.2 s and 1.0 s of ascents; rows cost 0.11 ms each in batches of
#: 97-1,537, 0.23 ms in one of 6,145, whose 150 MB arrays fault their pages in: chunks keep
#: every batch small).
SAMPLE_SHARE = 0.5
SAMPLE_CHUNK = 256
MAX_CORNERS = 4096  # random corners (and as many near them) at most, above CORNER_LIMIT inputs


def candidate_points(
    box: Box, n: int, rng: np.random.Generator, data=None, corners: int | None = None
) -> np.ndarray:
    """The probes of :func:`exactcomp.search.candidate_inputs` sized for falsification: every
    corner up to :data:`CORNER_LIMIT` inputs (else ``min(n, MAX_CORNERS)`` random ones; or
    ``corners`` random ones when given, 0 included) and points near them (a difference
    confined to a corner region is found there), ``n`` uniform points, the centre, and the
    data rows in the box (data of another width is ignored)."""
    d = box.dim
    if data is not None:
        rows = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
        data = rows if rows.shape[1] == d else None
    if corners is None:
        corners = 2**d if d <= CORNER_LIMIT else min(n, MAX_CORNERS)
    elif d <= CORNER_LIMIT and corners < 2**d:
        corners = 0  # candidate_inputs would draw random corners of a small box: none asked
    return candidate_inputs(box, n, rng, data, near=NEAR_CORNER, vertices=corners)


def top1_disagreement(fx: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """``max_j g_j - max_{i in argmax f} g_i`` per row; 0 when ``g`` ranks a top class of ``f``
    first (ties in ``f`` are settled in ``g``'s favour), positive when they disagree."""
    fx, gx = np.atleast_2d(fx), np.atleast_2d(gx)
    top_f = fx == fx.max(axis=1, keepdims=True)
    best_g_on_top_f = np.where(top_f, gx, -np.inf).max(axis=1)
    return gx.max(axis=1) - best_g_on_top_f


def exact_difference(
    f: Network, g: Network, x: np.ndarray, mode: str, outputs: Sequence[int] | None = None
) -> Fraction:
    """The difference :func:`top1_disagreement` (``mode="top1"``) or ``max_i |f_i - g_i|``
    over ``outputs`` (``"linf"``; default all) measures at one input ``x``, in exact rational
    arithmetic: float64 forward
    passes round, and with large cancelling weights that rounding can exceed a tolerance, so
    a counterexample is confirmed here before it is reported."""
    fx, gx = exact_forward(f, x), exact_forward(g, x)
    if mode == "linf":
        keep = range(len(fx)) if outputs is None else outputs
        return max(abs(fx[i] - gx[i]) for i in keep)
    top = max(fx)
    return max(gx) - max(b for a, b in zip(fx, gx, strict=True) if a == top)


def _backprop(net: Network, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. ``x`` of ``sum_i coef[r, i] * net(x_r)_i`` for every row ``r``."""
    masks = [
        z > 0 if layer.relu else None
        for layer, z in zip(net.layers, net.preactivations(x), strict=True)
    ]
    grad = np.array(coef, dtype=np.float64)
    for layer, mask in zip(reversed(net.layers), reversed(masks), strict=True):
        if mask is not None:
            grad = grad * mask
        grad = grad @ layer.weight
    return grad


def ascend(
    f: Network,
    g: Network,
    box: Box,
    starts: np.ndarray,
    coef_fn,
    steps: int = 40,
) -> np.ndarray:
    """The ascent of :func:`exactcomp.search.ascend` on ``cf . f(x) + cg . g(x)``, with steps
    ``(0.25 (1 - t / steps) + 0.01)`` of the box width; returns the final points (in the box).

    ``coef_fn(fx, gx) -> (cf, cg)`` gives, per row, the output weights of the objective to
    climb at the current point (so piecewise objectives such as the top-1 surrogate can switch
    their active pieces as the point moves).
    """

    def objective(x: np.ndarray):
        fx, gx = f.forward(x), g.forward(x)
        cf, cg = coef_fn(fx, gx)
        value = np.einsum("ij,ij->i", cf, fx) + np.einsum("ij,ij->i", cg, gx)
        return value, lambda: _backprop(f, x, cf) + _backprop(g, x, cg)

    sizes = [0.25 * (1.0 - t / steps) + 0.01 for t in range(steps)]
    return search.ascend(box, starts, sizes, objective).last


def linf_coefficients(m: int, i: int, s: float):
    """Coefficient function of ``s (f_i - g_i)`` for :func:`ascend`."""
    e = np.zeros(m)
    e[i] = s

    def coef(fx: np.ndarray, gx: np.ndarray):
        return np.broadcast_to(e, fx.shape), np.broadcast_to(-e, gx.shape)

    return coef


def top1_coefficients(i: int, j: int, lam: float = 1.0):
    """Coefficient function of ``g_j - g_i - lam (max_k f_k - f_i)`` for :func:`ascend`."""

    def coef(fx: np.ndarray, gx: np.ndarray):
        n, m = fx.shape
        cg = np.zeros((n, m))
        cg[:, j] += 1.0
        cg[:, i] -= 1.0
        cf = np.zeros((n, m))
        k = fx.argmax(axis=1)
        behind = fx[np.arange(n), k] > fx[:, i]
        cf[np.arange(n)[behind], k[behind]] -= lam
        cf[behind, i] += lam
        return cf, cg

    return coef


def sampled_max_difference(
    f: Network,
    g: Network,
    boxes: Sequence[Box],
    *,
    points: int = 4096,
    seed: int = 0,
    proven: float | None = None,
    deadline: float | None = None,
) -> float:
    r"""A lower bound of :math:`\max_{x \in D} \|f(x) - g(x)\|_\infty` by sampling, gradient
    ascent from the four worst points and a local search from the ascents' ends
    (:func:`~exactcomp.verify.local_search.local_search`; float64 evaluation): the value of
    :func:`sampled_worst`. Given the ``proven`` bound, a float64 value above it is replaced by the exact rational
    difference at its input: two float64 forward passes round, and put ``f - g`` at 1.4e-14
    where it is exactly 0 and proven 0 (test_small.onnx, RESULTS.md "user15"); the exact
    value is a true lower bound, and above ``proven`` only if the proof is wrong (then
    reported as it is). ``deadline`` (a ``time.perf_counter()`` value): the search keeps to
    it (:func:`sampled_worst`; fewer points never make the value anything but a lower bound),
    and the exact difference is computed only if :func:`exactcomp.exact.exact_seconds` of
    it, times the wall seconds per CPU second the search took (the load), fit before it, or
    the float64 excess over ``proven`` passes the re-check's evaluation tolerance
    (``check_abs + check_rel * max(1, proven)``, :mod:`exactcomp.tolerances`: then a wrong
    proof must show, whatever the time); else the value is capped at ``proven`` (the float64
    value exceeds a sound proof by its rounding alone)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value, where = sampled_worst(f, g, boxes, points=points, seed=seed, deadline=deadline)
    if proven is not None and where is not None and value > proven:
        noise = DEFAULT.check_abs + DEFAULT.check_rel * max(1.0, proven)
        if deadline is not None and value - proven <= noise:
            now = time.perf_counter()
            load = max((now - wall) / max(time.process_time() - cpu, 1e-9), 1.0)
            if now + load * exact_seconds(f, g) > deadline:  # both networks' passes
                return proven
        value = float(exact_difference(f, g, where, "linf"))
    return value


def sampled_worst(
    f: Network,
    g: Network,
    boxes: Sequence[Box],
    *,
    points: int = 4096,
    seed: int = 0,
    deadline: float | None = None,
) -> tuple[float, np.ndarray | None]:
    """:func:`sampled_max_difference`'s search: the largest float64 ``max_i |f_i - g_i|`` it
    meets and the input where it met it (None: no box). Per box (each its share of the time
    left to ``deadline``): the candidates of :func:`candidate_points` for ``points`` spread
    over the boxes, in chunks (:func:`_chunks`, until :data:`SAMPLE_SHARE` of the box's
    time), the ascents from the four worst (until the box's time: the first always), then
    the local search from their ends (its rows as many as the time left allows at the
    chunks' seconds per row)."""
    rng = np.random.default_rng(seed)
    worst, where = 0.0, None
    m = f.output_size
    rows = search_rows(f, g) / len(boxes)
    end = np.inf if deadline is None else deadline

    def consider(x: np.ndarray, diff: np.ndarray | None = None) -> np.ndarray:
        nonlocal worst, where
        diff = f.forward(x) - g.forward(x) if diff is None else diff
        d = np.abs(diff).reshape(len(x), -1).max(axis=1, initial=0.0)
        r = int(np.argmax(d))
        if where is None or d[r] > worst:
            worst, where = float(d[r]), x[r].copy()
        return diff

    for b, box in enumerate(boxes):
        now = time.perf_counter()
        box_end = now + (end - now) / (len(boxes) - b)
        n = max(points // len(boxes), 16)
        starts, per_row = _chunks(box, n, rng, now + SAMPLE_SHARE * (box_end - now), consider)
        ends, sides, slowest = [], [], 0.0
        for x, i, s in starts:
            begun = time.perf_counter()
            if ends and begun + slowest > box_end:
                break
            y = ascend(f, g, box, x[None, :], linf_coefficients(m, i, s))
            consider(y)
            ends.append(y[0])
            sides.append((i, s))
            slowest = max(slowest, time.perf_counter() - begun)
        if ends:  # its rows cut to the time left, at the slowest chunk's seconds per row
            out, sign = np.array(sides).T
            left = max(box_end - time.perf_counter(), 0.0)
            # less a kick's rows (evaluated before its climb checks the count) and the check
            fit = left / per_row - 2 * len(ends) if per_row > 0 else np.inf
            y, _ = local_search(
                f, g, box, np.array(ends), out.astype(int), sign, rng, max_rows=min(rows, fit)
            )
            consider(y)
    return worst, where


def _chunks(box: Box, n: int, rng: np.random.Generator, end: float, consider) -> tuple[list, float]:
    """The candidates of ``candidate_points(box, n)`` drawn and evaluated (``consider(x)``
    returns ``f(x) - g(x)``) in chunks of :data:`SAMPLE_CHUNK` uniform points, as many random
    corners and points near them (every corner of a box of at most :data:`CORNER_LIMIT`
    inputs in the first chunk; at most :data:`MAX_CORNERS` in all), a chunk started only
    while the slowest so far still fits before ``end`` (the first always). Returns the four
    worst rows seen as ``(x, output, sign)``, worst first, and the most seconds a row took
    (a chunk's seconds over its rows)."""
    top: list[tuple[float, np.ndarray, int, float]] = []
    done, corners, slowest, per_row = 0, 0, 0.0, 0.0
    while done < n:
        begun = time.perf_counter()
        if done and begun + slowest > end:
            break
        k = min(SAMPLE_CHUNK, n - done)
        c = (
            (0 if done else 2**box.dim)
            if box.dim <= CORNER_LIMIT
            else min(k, MAX_CORNERS - corners)
        )
        x = candidate_points(box, k, rng, corners=c)
        diff = consider(x)
        flat = np.abs(diff).reshape(len(x), -1)
        for r in np.argsort(-flat.max(axis=1))[:4]:
            i = int(flat[r].argmax())
            top.append((float(flat[r, i]), x[r], i, float(np.sign(diff[r, i])) or 1.0))
        top = sorted(top, key=lambda t: -t[0])[:4]
        done, corners = done + k, corners + c
        slowest = max(slowest, time.perf_counter() - begun)
        per_row = max(per_row, (time.perf_counter() - begun) / len(x))
    return [t[1:] for t in top], per_row
