"""The pairwise ReLU hull (:mod:`exactcomp.bounds.pair_hull`): every row holds on the exact
graph, it is tighter than the two triangles, and the first layer's octagons are exact.

The octagon of the named case ``square_cut`` (``z_a, z_b`` in ``[-1, 1]``, ``z_a + z_b <=
0.5``)::

    z_b
     1 +-----+.
       |      '.         the corner (1, 1) is cut off by z_a + z_b <= 0.5:
       |        '.       relu(z_a) + relu(z_b) <= 1 on the octagon (at (1, -0.5)),
     --+----------+- z_a while the two triangles allow (z_a + z_b + 2) / 2 = 1.25
       |          |
    -1 +----------+
      -1          1
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import linprog

from exactcomp.bounds.pair_hull import (
    Octagon,
    first_layer_octagons,
    hull_points,
    pair_hull_rows,
)
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.tolerances import DEFAULT

SQUARE_CUT = Octagon((-1.0, 1.0), (-1.0, 1.0), (-2.0, 0.5), (-2.0, 2.0))


def _random_octagons(n: int, seed: int) -> list[Octagon]:
    """The octagons of random correlated point clouds: never empty, both neurons unstable,
    some with a quadrant cut off."""
    rng = np.random.default_rng(seed)
    out: list[Octagon] = []
    while len(out) < n:
        m = rng.integers(3, 30)
        z = rng.normal(size=(m, 2)) @ rng.normal(size=(2, 2)) + rng.normal(0, 0.5, 2)
        a, b = z[:, 0], z[:, 1]
        if not (a.min() < 0 < a.max() and b.min() < 0 < b.max()):
            continue
        out.append(
            Octagon(
                (a.min(), a.max()),
                (b.min(), b.max()),
                ((a + b).min(), (a + b).max()),
                ((a - b).min(), (a - b).max()),
            )
        )
    return out


def _exact_vertices(o: Octagon) -> list[tuple[Fraction, ...]]:
    """The vertices of each piece ``O ∩ Q_σ`` and their ReLU images, in exact rationals."""
    f = Fraction
    lines = [
        (1, 0, f(o.a[0])), (1, 0, f(o.a[1])), (0, 1, f(o.b[0])), (0, 1, f(o.b[1])),
        (1, 1, f(o.plus[0])), (1, 1, f(o.plus[1])), (1, -1, f(o.minus[0])),
        (1, -1, f(o.minus[1])), (1, 0, f(0)), (0, 1, f(0)),
    ]  # fmt: skip
    out = []
    for (p1, q1, c1), (p2, q2, c2) in itertools.combinations(lines, 2):
        det = p1 * q2 - p2 * q1
        if det == 0:
            continue
        za, zb = (c1 * q2 - c2 * q1) / det, (p1 * c2 - p2 * c1) / det
        inside = (
            f(o.a[0]) <= za <= f(o.a[1]) and f(o.b[0]) <= zb <= f(o.b[1])
            and f(o.plus[0]) <= za + zb <= f(o.plus[1])
            and f(o.minus[0]) <= za - zb <= f(o.minus[1])
        )  # fmt: skip
        if inside:
            out.append((za, zb, max(za, f(0)), max(zb, f(0))))
    return out


@pytest.mark.parametrize("o", [SQUARE_CUT, *_random_octagons(40, 0)])
def test_every_row_holds_at_every_exact_vertex(o: Octagon) -> None:
    rows = pair_hull_rows(o)
    for coef, rhs in zip(rows.coef, rows.rhs, strict=True):
        c = [Fraction(float(x)) for x in coef]
        for v in _exact_vertices(o):
            assert sum(ci * vi for ci, vi in zip(c, v, strict=True)) <= Fraction(float(rhs))


@pytest.mark.parametrize("o", [SQUARE_CUT, *_random_octagons(10, 1)])
def test_every_row_holds_on_dense_samples_of_the_octagon(o: Octagon) -> None:
    za, zb = np.meshgrid(np.linspace(*o.a, 121), np.linspace(*o.b, 121))
    za, zb = za.ravel(), zb.ravel()
    ok = (za + zb >= o.plus[0]) & (za + zb <= o.plus[1])
    ok &= (za - zb >= o.minus[0]) & (za - zb <= o.minus[1])
    p = np.stack([za, zb, np.maximum(za, 0), np.maximum(zb, 0)], axis=1)[ok]
    rows = pair_hull_rows(o)
    assert (p @ rows.coef.T <= rows.rhs).all()


def _max_over(o: Octagon, cost: np.ndarray, rows: bool) -> float:
    """``max cost . (z_a, z_b, h_a, h_b)`` over the octagon with both triangles (and the
    pair rows if ``rows``), by scipy's LP."""
    a_ub, b_ub = [], []
    for i, (lo, hi) in enumerate((o.a, o.b)):
        zi, hi_col = np.eye(4)[i], np.eye(4)[2 + i]
        a_ub += [zi - hi_col, -hi_col, (hi - lo) * hi_col - hi * zi]
        b_ub += [0.0, 0.0, -hi * lo]
    e = np.eye(4)
    for (lo, hi), vec in ((o.plus, e[0] + e[1]), (o.minus, e[0] - e[1])):
        a_ub += [vec, -vec]
        b_ub += [hi, -lo]
    if rows:
        r = pair_hull_rows(o)
        a_ub += list(r.coef)
        b_ub += list(r.rhs)
    bounds = [o.a, o.b, (0, None), (0, None)]
    res = linprog(-cost, A_ub=np.array(a_ub), b_ub=np.array(b_ub), bounds=bounds)
    assert res.status == 0
    return float(-res.fun)


def test_the_hull_is_tighter_than_the_two_triangles() -> None:
    cost = np.array([0.0, 0.0, 1.0, 1.0])  # relu(z_a) + relu(z_b): truly at most 1
    assert _max_over(SQUARE_CUT, cost, rows=False) == pytest.approx(1.25)
    assert _max_over(SQUARE_CUT, cost, rows=True) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("o", _random_octagons(15, 2))
def test_the_rows_bound_between_the_truth_and_the_triangles(o: Octagon) -> None:
    rng = np.random.default_rng(3)
    v = hull_points(o)
    for cost in rng.normal(size=(8, 4)):
        truth = float((v @ cost).max())  # the hull's vertices: the exact maximum
        tri = _max_over(o, cost, rows=False)
        both = _max_over(o, cost, rows=True)
        assert truth - 1e-7 <= both <= tri + 1e-7


def test_a_quadrant_cut_off_and_a_flat_octagon_stay_sound() -> None:
    no_pp = Octagon((-1.0, 1.0), (-1.0, 1.0), (-2.0, -0.1), (-2.0, 2.0))  # never both > 0
    rows = pair_hull_rows(no_pp)
    for v in _exact_vertices(no_pp):
        assert (rows.coef @ np.array([float(x) for x in v]) <= rows.rhs).all()
    flat = Octagon((-1.0, 1.0), (-1.0, 1.0), (0.0, 0.0), (-2.0, 2.0))  # z_b = -z_a
    rows = pair_hull_rows(flat)
    for v in _exact_vertices(flat):
        assert (rows.coef @ np.array([float(x) for x in v]) <= rows.rhs).all()


def test_first_layer_octagons_are_the_exact_ranges() -> None:
    """A 3-input layer: each ``z_a +- z_b`` is extreme at a corner of the box, so the 8
    corners give the exact ranges; the octagons contain them, within the rounding pad."""
    rng = np.random.default_rng(4)
    net = Network.from_arrays(
        [rng.normal(size=(5, 3))], [rng.normal(size=5)], relu_last=True, dtype="float64"
    )
    box = Box(np.array([-1.0, 0.0, 0.5]), np.array([0.5, 2.0, 1.5]))
    corners = np.array(list(itertools.product(*zip(box.lower, box.upper, strict=True))))
    z = net.preactivations(corners)[0]
    bounds = (z.min(0), z.max(0))
    a, b = np.array([0, 1, 3]), np.array([2, 4, 4])
    for i, o in enumerate(first_layer_octagons(net.layers[0], box, a, b, bounds)):
        for (lo, hi), vals in (
            (o.plus, z[:, a[i]] + z[:, b[i]]),
            (o.minus, z[:, a[i]] - z[:, b[i]]),
        ):
            assert lo <= vals.min() and vals.max() <= hi
            assert vals.min() - lo < 1e-6 and hi - vals.max() < 1e-6


def test_pair_rows_in_the_prefix_lp_bound_a_tiny_network_soundly() -> None:
    """A 2-6-1 network on a box: the triangle LP plus every pair's rows bounds ``z_1`` on
    each side between the triangle LP's bound and the range on a dense grid (which lies
    inside the exact range, so a sound bound never cuts into it), and is tighter than the
    triangles on at least one side."""
    from exactcomp.bounds.ideal_cuts import add_cut_rows
    from exactcomp.bounds.linear import finite_prefix_bounds
    from exactcomp.bounds.lp import layer_lp
    from exactcomp.bounds.prefix_lp import build_prefix_lp
    from exactcomp.highs.lp import lp_min

    rng = np.random.default_rng(5)
    w0, b0 = rng.normal(size=(6, 2)), rng.normal(0, 0.3, 6)
    w1, b1 = rng.normal(size=(1, 6)), rng.normal(0, 0.3, 1)
    net = Network.from_arrays([w0, w1], [b0, b1], dtype="float64")
    box = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    g = np.linspace(-1, 1, 801)
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    z = net.preactivations(x)[1][:, 0]
    pre = finite_prefix_bounds(net, box, 1, None)
    lp = build_prefix_lp(net, box, 1, pre)
    r = lp.relus[0]
    cols, coefs, rhss = [], [], []
    a, b = np.triu_indices(r.neurons.size, 1)
    for i, j, o in zip(
        a,
        b,
        first_layer_octagons(net.layers[0], box, r.neurons[a], r.neurons[b], pre[0]),
        strict=True,
    ):
        rows = pair_hull_rows(o)
        idx = np.array([r.z[i], r.z[j], r.h[i], r.h[j]])
        for coef, rhs in zip(rows.coef, rows.rhs, strict=True):
            cols.append(idx[coef != 0])
            coefs.append(coef[coef != 0])
            rhss.append(float(rhs))
    assert cols
    solver = layer_lp(lp)
    live = lp.out_cols >= 0
    found = []
    for sign in (1.0, -1.0):
        cost = np.zeros(lp.matrix.shape[1])
        cost[lp.out_cols[live]] = sign * w1[0][live]
        tri = lp_min(solver, lp, cost, DEFAULT, None)[0]
        cut = add_cut_rows(solver, lp, cols, coefs, rhss)
        both = lp_min(solver, cut, cost, DEFAULT, None)[0]
        solver.delete_rows(lp.matrix.shape[0], len(cols))
        truth = (sign * (z - b1[0])).min()
        assert tri - 1e-9 <= both <= truth  # sound: the grid's minimum is >= the true one
        found.append(both - tri)
    assert max(found) > 1e-3, found
