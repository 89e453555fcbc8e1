"""The local search of the sampled lower bound: iterated greedy coordinate ascent of one side
of ``f - g`` over the vertices and midpoints of a box.

:func:`exactcomp.verify.falsify.sampled_worst` starts it from the ends of its gradient
ascents: the maximum of a piecewise-linear function over a box often sits at a vertex, which
sign-gradient ascent with shrinking steps reaches only when every step keeps its sign
(:func:`local_search` below says how the climb and its kicks go).
"""

from __future__ import annotations

import numpy as np

from ..domain import Box
from ..network import Network

#: The values (fractions of the box width from its lower end) a coordinate may take in one move
#: of :func:`local_search`: the two faces and the midpoint (on the digits model over [0,1]^64
#: 81-91 % of the coordinates of the best points found end on a face).
COORDINATE_VALUES = (0.0, 0.5, 1.0)
KICK_SHARE = 0.125  # of the coordinates re-drawn by one kick of :func:`local_search`
#: Kicks of :func:`local_search` in :func:`exactcomp.verify.charge.sampled_max_difference`;
#: and the multiply-adds it may spend there per box (:func:`search_rows`). Measured on the
#: digits 64-100-100-10 model over [0,1]^64 from the four ascent ends (benchmarks/RESULTS.md
#: "truth15"): 0 / 5 / 20 kicks lift the 8-bit copy's lower bound 0.198 -> 0.206 / 0.231 /
#: 0.272 for 0.03 / 0.09 / 0.23 s of CPU more. The 20 kicks evaluate ~138,000 rows there
#: (34,800 multiply-adds each): 5e9 multiply-adds (143,000 rows) leave them whole. On wider
#: networks it does less or nothing (MNIST 784-256-256-10: 9,300 rows, less than one round
#: of 4 x 2,352 moves): the local search adds at most about a second of CPU anywhere.
KICKS = 20
LOCAL_SEARCH_MACS = 5e9


def side_values(f: Network, g: Network, x: np.ndarray, outputs, signs) -> np.ndarray:
    """Per row ``r`` of ``x``, ``signs[r] * (f_{outputs[r]}(x_r) - g_{outputs[r]}(x_r))`` (float64)."""
    rows = np.arange(len(x))
    return np.asarray(signs) * (f.forward(x)[rows, outputs] - g.forward(x)[rows, outputs])


def local_search(
    f: Network,
    g: Network,
    box: Box,
    starts: np.ndarray,
    outputs: np.ndarray,
    signs: np.ndarray,
    rng: np.random.Generator,
    *,
    kicks: int = KICKS,
    max_rows: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Iterated greedy coordinate ascent of :math:`\phi_r(x) = s_r (f_{o_r}(x) - g_{o_r}(x))`
    from each row of ``starts`` (:func:`side_values`); returns the best points and values.

    *Climb*: a round tries, for every row, each coordinate set to each of
    :data:`COORDINATE_VALUES` (fractions of the box width from its lower end) and makes the
    single best change if it raises :math:`\phi_r`; a row that no change improves stops.
    The maximum of a piecewise-linear function over a box often sits at a vertex of the box
    (for layer 0's rounding error :math:`E x` always), which sign-gradient ascent, whose steps
    shrink, reaches only when every step keeps the same sign; the climb moves to, and between,
    vertices one coordinate at a time (the midpoint lets a coordinate leave a vertex).
    *Kicks*: then ``kicks`` times, each row's best point with a random
    :data:`KICK_SHARE` of its coordinates re-drawn from the same values climbs again, and
    the better point is kept (iterated local search). Every forward pass of both networks
    over one trial point counts one row; a round runs only if its rows fit within
    ``max_rows`` in all (which also bounds its memory: rows x dim floats).
    """
    outputs, signs = np.asarray(outputs), np.asarray(signs, dtype=np.float64)
    lo, width = box.lower, box.upper - box.lower
    best = box.clip(np.array(starts, dtype=np.float64))
    best_v = side_values(f, g, best, outputs, signs)
    spent = [float(len(best))]
    best, best_v = _climb(f, g, best, best_v, outputs, signs, box, spent, max_rows)
    for _ in range(kicks):
        if spent[0] >= max_rows:
            break
        x = best.copy()
        flip = rng.random(x.shape) < KICK_SHARE
        pick = lo + rng.choice(COORDINATE_VALUES, size=x.shape) * width
        x[flip] = pick[flip]
        v = side_values(f, g, x, outputs, signs)
        spent[0] += len(x)
        x, v = _climb(f, g, x, v, outputs, signs, box, spent, max_rows)
        better = v > best_v
        best[better], best_v[better] = x[better], v[better]
    return best, best_v


def _climb(f, g, x, value, outputs, signs, box, spent: list[float], max_rows: float):
    """The climb of :func:`local_search` (``x``, ``value`` updated in place); ``spent[0]``
    counts the rows evaluated."""
    values = np.asarray(COORDINATE_VALUES)
    grid = box.lower[None, :] + values[:, None] * (box.upper - box.lower)[None, :]
    d = box.dim
    moves = len(values) * d
    col = np.tile(np.arange(d), len(values))
    new = grid.reshape(-1)  # move m sets coordinate col[m] to new[m]
    active = np.arange(len(x))
    while len(active) and spent[0] + len(active) * moves <= max_rows:
        trial = np.repeat(x[active], moves, axis=0).reshape(len(active), moves, d)
        trial[:, np.arange(moves), col] = new
        got = side_values(
            f,
            g,
            trial.reshape(-1, d),
            np.repeat(outputs[active], moves),
            np.repeat(signs[active], moves),
        ).reshape(len(active), moves)
        spent[0] += got.size
        best = got.argmax(axis=1)
        gain = got[np.arange(len(active)), best] > value[active]
        rows = active[gain]
        x[rows] = trial[gain, best[gain]]
        value[rows] = got[gain, best[gain]]
        active = rows
    return x, value


def search_rows(f: Network, g: Network, macs: float = LOCAL_SEARCH_MACS) -> float:
    """The rows :func:`local_search` may evaluate for ``macs`` multiply-adds (dense estimate,
    ``in x out`` per layer of both networks: a convolution is charged more than it costs)."""
    per_row = sum(la.in_features * la.out_features for la in (*f.layers, *g.layers))
    return macs / max(per_row, 1)
