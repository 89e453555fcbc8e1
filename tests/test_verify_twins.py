"""``verify`` in either order where one network holds *twins* that the other merged.

Twins are two neurons computing one function through unequal rows (here ``relu(a)`` read
through the pair ``relu(a), relu(-a)`` and through the pairs of ``x1`` and ``x2``), which
the weights do not show equal (:mod:`exactcomp.stability.constants`). The differential
argument links each neuron of its ``g`` to a partner in its ``f``: a merged neuron of ``g``
meets one twin of ``f`` and the other keeps its interval, so ``verify(f, g)`` was UNKNOWN
(2.25) where ``verify(g, f)`` proved them equal (red25, RESULTS.md). The argument now also
runs with the roles swapped (:func:`exactcomp.verify.coupling.swapped_outputs`).
The neurons one network removed are asked for their sign on either side too
(:mod:`exactcomp.verify.seethrough`), and exact positive multiples that ``compress``
merged are read off the weights (:mod:`exactcomp.stability.constants`).
Ground truth: exact rational forward passes (:func:`exactcomp.exact.exact_forward`) on a
grid of the box and at the maximiser (every network here is piecewise linear with its
kinks on the grid lines ``x1 - x2 = -1/4`` and the box's edges).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.stability.constants import layer_classes
from exactcomp.testing.oracle import grid_points
from exactcomp.tolerances import DEFAULT
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify import run as run_module
from exactcomp.verify.coupling import match_neurons, swapped_outputs
from exactcomp.verify.differential import Side, bound_differences
from exactcomp.verify.formulation import proven_encoding

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
A, AB = np.array([1.0, -1.0]), 0.25  # a = x1 - x2 + 1/4
E1, E2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
W0 = np.array([A, -A, E1, -E1, E2, -E2, [0.5, 0.5]])
B0 = np.array([AB, -AB, 0.0, 0.0, 0.0, 0.0, 0.0])


def twins_net(eps: float = 0.0, wq: float = 1.0) -> Network:
    """``P`` and ``Q`` are both ``relu(a)`` (``Q`` moved by ``eps``), through unequal rows
    (``Q`` reads ``x1`` and ``x2`` where ``P`` reads ``a``; no row a multiple of another).

    ::

        layer 0:  u = relu(a)    v = relu(-a)      p1 = relu(x1)  n1 = relu(-x1)
                  p2 = relu(x2)  n2 = relu(-x2)    s = relu(x1/2 + x2/2)
        layer 1:  P = relu(u - v)   Q = relu(p1 - n1 - p2 + n2 + 1/4 + eps)   S = relu(s)
        output:   y = P + wq Q + S
    """
    w1 = np.array([[1, -1, 0, 0, 0, 0, 0], [0, 0, 1, -1, -1, 1, 0], [0, 0, 0, 0, 0, 0, 1.0]])
    return Network(
        (
            Layer(W0, B0, True),
            Layer(w1, np.array([0.0, AB + eps, 0.0]), True),
            Layer(np.array([[1.0, wq, 1.0]]), np.zeros(1), False),
        ),
        dtype="float64",
    )


def merged_net(wp: float) -> Network:
    """:func:`twins_net` with ``Q`` merged into ``P`` (``wp = 2``: the same function) or
    dropped (``wp = 1``: a difference of ``relu(a)``, 2.25 at ``(1, -1)``).

    ::

        layer 1:  P = relu(u - v)   S = relu(s);   output:  y = wp P + S
    """
    w1 = np.array([[1, -1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1.0]])
    return Network(
        (
            Layer(W0, B0, True),
            Layer(w1, np.zeros(2), True),
            Layer(np.array([[wp, 1.0]]), np.zeros(1), False),
        ),
        dtype="float64",
    )


def _exact_max(f: Network, g: Network) -> Fraction:
    """``max |f - g|`` over the grid (the kinks lie on it), exactly."""
    return max(abs(exact_forward(f, x)[0] - exact_forward(g, x)[0]) for x in grid_points(BOX, 9))


@pytest.mark.parametrize("swap", [False, True])
def test_merged_twins_are_proven_equal_in_either_order(swap: bool) -> None:
    f, g = twins_net(), merged_net(2.0)
    assert _exact_max(f, g) == 0
    r = verify_equivalence(*((g, f) if swap else (f, g)), BOX, tol=1e-6, time_limit=30)
    assert r.status is EquivalenceStatus.EQUIVALENT
    assert r.upper_bound == 0.0 and "differential" in r.reason


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize(("eps", "wq", "wp"), [(0.0, 1.0, 1.0), (2.0**-30, 1e6, 1e6 + 1)])
def test_the_swapped_argument_encloses_the_exact_difference(
    swap: bool, eps: float, wq: float, wp: float, monkeypatch
) -> None:
    """With every counterexample search blinded, the proof alone: ``Q`` dropped (2.25) or a
    near twin (``2^-30`` read with ``1e6``: ``2^-30 * 1e6``) is never proven within less
    than the exact maximum, in either order, and the near twin is bounded as tightly one way
    as the other."""
    monkeypatch.setattr(run_module.EquivalenceRun, "counterexample", lambda self, x, s: None)
    f, g = twins_net(eps, wq), merged_net(wp)
    x = np.array([1.0, -1.0])
    exact = abs(exact_forward(f, x)[0] - exact_forward(g, x)[0])
    assert exact == _exact_max(f, g) and exact > 0
    r = verify_equivalence(*((g, f) if swap else (f, g)), BOX, tol=1e-6, time_limit=30)
    assert r.status is not EquivalenceStatus.EQUIVALENT
    assert Fraction(r.upper_bound) >= exact
    assert r.upper_bound <= float(exact) * (1 + 1e-9)  # tight both ways (the twin linked)


def test_the_swapped_argument_links_the_twin_the_forward_one_leaves() -> None:
    """Forward (``f`` = twins): ``Q`` is reached by no link and the outputs keep its
    interval; swapped, ``Q`` is a neuron of its ``g`` linked on its own, and the outputs
    come out equal. Two unrelated networks (``relu(x1)``, ``relu(x2)``): no link either way,
    the swapped bounds still enclose the exact difference."""
    bb = (BOX.lower, BOX.upper)
    pts = grid_points(BOX, 9)
    f, g = twins_net(), merged_net(2.0)
    fs, gs = (Side(n, *proven_encoding(n, BOX, DEFAULT, None)) for n in (f, g))
    forward = bound_differences(fs, gs, match_neurons(f, g, pts, 2, twins=3), bb)
    assert forward.outputs[0][1] - forward.outputs[0][0] > 1.0
    assert (1, 1) not in {(fk, p) for fk, p, *_ in forward.links.values()}  # Q
    back = swapped_outputs(fs, gs, pts, len(pts), bb, DEFAULT, float("inf"))
    assert back == ((0.0, 0.0),)
    one = [
        Network.from_arrays([np.array([r]), np.ones((1, 1))], [np.zeros(1)] * 2) for r in np.eye(2)
    ]
    fs, gs = (Side(n, *proven_encoding(n, BOX, DEFAULT, None)) for n in one)
    ((lo, hi),) = swapped_outputs(fs, gs, pts, len(pts), bb, DEFAULT, float("inf"))
    for x in pts:  # g - f = relu(x2) - relu(x1), exactly
        d = exact_forward(one[1], x)[0] - exact_forward(one[0], x)[0]
        assert Fraction(lo) <= d <= Fraction(hi)


def scaled_pair(c: float, ulp: bool = False) -> tuple[Network, Network, Box]:
    """``f`` reads ``u = relu(x - 1/2)`` and its positive multiple ``w = relu(c (x - 1/2))``
    (``= c u``; ``ulp``: ``w``'s bias one ulp off, not a multiple); ``g`` is ``f`` with ``w``
    merged into ``u`` as ``compress`` merges it. On ``[1/2, 2]`` both are tied at ``x = 1/2``
    (no margin decides their sign: each is bounded by its interval unless it is seen through).

    ::

        f:  u = relu(x - 1/2)   w = relu(c x - c/2);   y = u - w/2 + 1
        g:  u = relu(x - 1/2);                         y = (1 - c/2) u + 1
    """
    bw = -c / 2 if not ulp else float(np.nextafter(-c / 2, 0.0))
    f = Network.from_arrays(
        [np.array([[1.0], [c]]), np.array([[1.0, -0.5]])],
        [np.array([-0.5, bw]), np.ones(1)],
        dtype="float64",
    )
    g = Network.from_arrays(
        [np.array([[1.0]]), np.array([[1.0 - c / 2]])], [np.array([-0.5]), np.ones(1)],
        dtype="float64",
    )  # fmt: skip
    return f, g, Box(np.array([0.5]), np.array([2.0]))


@pytest.mark.parametrize("c", [2.0, 0.5, 3.0])
def test_a_positive_multiple_is_read_off_the_weights(c: float) -> None:
    f, _, box = scaled_pair(c)
    cls = layer_classes(f)[0]
    assert cls.multiple.tolist() == [-1, 0] and cls.ratio[1] == c
    for x in grid_points(box, 9):  # z_w = c z_u exactly
        z = exact_forward(f.replace_layers([Layer(f.layers[0].weight, f.layers[0].bias, False)]), x)
        assert z[1] == Fraction(c) * z[0]
    assert layer_classes(scaled_pair(c, ulp=True)[0])[0].multiple is None


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("c", [2.0, 0.5, 3.0])
def test_a_merged_multiple_is_proven_equal_in_either_order(c: float, swap: bool) -> None:
    f, g, box = scaled_pair(c)
    assert all(
        exact_forward(f, x)[0] == exact_forward(g, x)[0] for x in grid_points(box, 9)
    )  # fmt: skip
    r = verify_equivalence(*((g, f) if swap else (f, g)), box, tol=1e-6, time_limit=30)
    assert r.status is EquivalenceStatus.EQUIVALENT and r.upper_bound == 0.0


def test_an_ulp_off_multiple_is_not_merged_into_a_proof(monkeypatch) -> None:
    """``w``'s bias one ulp off: ``f - g`` is ``relu(x - 1/2) - relu(x - 1/2 + ulp)``-sized
    at most; with the counterexample search blinded the bound encloses the exact maximum."""
    monkeypatch.setattr(run_module.EquivalenceRun, "counterexample", lambda self, x, s: None)
    f, g, box = scaled_pair(2.0, ulp=True)
    exact = max(abs(exact_forward(f, x)[0] - exact_forward(g, x)[0]) for x in grid_points(box, 9))
    assert exact > 0
    for pair in ((f, g), (g, f)):
        r = verify_equivalence(*pair, box, tol=1e-20, time_limit=30)
        assert Fraction(r.upper_bound) >= exact


def removed_pair() -> tuple[Network, Network, Box]:
    """``f`` has ``n = relu(|x| - 1.5)`` (inactive on ``[-1, 1]``: the LP's triangles give
    ``u + v <= 1``, the intervals only ``2``), which ``g`` removed.

    ::

        f:  u = relu(x)  v = relu(-x);  n = relu(u + v - 1.5)  m = relu(u - v);  y = m + n
        g:  u, v as f;                  m = relu(u - v);                         y = m
    """
    w0, b0 = np.array([[1.0], [-1.0]]), np.zeros(2)
    f = Network.from_arrays(
        [w0, np.array([[1.0, 1.0], [1.0, -1.0]]), np.array([[1.0, 1.0]])],
        [b0, np.array([-1.5, 0.0]), np.zeros(1)],
        dtype="float64",
    )
    g = Network.from_arrays(
        [w0, np.array([[1.0, -1.0]]), np.array([[1.0]])], [b0, np.zeros(1), np.zeros(1)],
        dtype="float64",
    )  # fmt: skip
    return f, g, Box(np.array([-1.0]), np.array([1.0]))


@pytest.mark.parametrize("swap", [False, True])
def test_a_removed_neuron_is_proven_on_either_side(swap: bool, monkeypatch) -> None:
    """With each network's own analysis cut short (interval bounds only, as a deep network's
    within ``verify``'s time), ``n`` is asked for its sign whichever side holds it
    (:mod:`exactcomp.verify.seethrough`): EQUIVALENT in either order (``verify(g, f)`` left
    ``n`` on its interval before, 0.5)."""
    from exactcomp.bounds.interval import interval_bounds
    from exactcomp.verify import equivalence

    def short(net, box, tol, budget, known=None):
        return interval_bounds(net, box), [None] * len(net.layers)

    monkeypatch.setattr(equivalence, "proven_encoding", short)
    f, g, box = removed_pair()
    assert all(exact_forward(f, x) == exact_forward(g, x) for x in grid_points(box, 17))
    r = verify_equivalence(*((g, f) if swap else (f, g)), box, tol=1e-6, time_limit=30)
    assert r.status is EquivalenceStatus.EQUIVALENT and r.upper_bound == 0.0


def rational_pair(first: float) -> tuple[Network, Network, Box]:
    """``f`` reads ``u = relu(first (x - 1/2))`` then ``w = relu(x - 1/2)``, so ``w = u /
    first``: a multiple whose ratio is not a float64 for ``first = 3`` (``1/3``) or one ulp
    below ``2`` (``2^52 / (2^53 - 1)``, the lattice soak's seed 97); ``g`` is ``f`` as
    ``compress`` writes it, ``w`` merged into ``u`` with the ratio rounded to float64, so
    ``f - g`` is a rounding-sized non-zero.

    ::

        f:  u = relu(first x - first/2)   w = relu(x - 1/2);   y = u - w/2 + 1
    """
    f = Network.from_arrays(
        [np.array([[first], [1.0]]), np.array([[1.0, -0.5]])],
        [np.array([-first / 2, -0.5]), np.ones(1)],
        dtype="float64",
    )
    box = Box(np.array([0.5]), np.array([2.0]))
    g = compress_network(f, stable_neurons(f, box)).network
    assert [la.out_features for la in g.layers] == [1, 1]
    return f, g, box


@pytest.mark.parametrize("first", [3.0, float(np.nextafter(2.0, 0.0))])
def test_a_multiple_by_a_ratio_no_float_holds_is_read_exactly(first: float) -> None:
    f, _, _ = rational_pair(first)
    cls = layer_classes(f)[0]
    assert cls.multiple.tolist() == [-1, 0] and cls.ratio[1] == 1 / Fraction(first)


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("first", [3.0, float(np.nextafter(2.0, 0.0))])
def test_a_merged_rational_multiple_is_proven_within_its_rounding(first, swap) -> None:
    """Was UNKNOWN (0.25 for the seed-97 row, tol 1e-6 below the MILP's margin): the
    multiple's coefficient now moves onto ``u`` times the nearest float64 of the ratio, the
    rest bounded over ``u``'s interval; the bound encloses the exact maximum."""
    f, g, box = rational_pair(first)
    exact = max(abs(exact_forward(f, x)[0] - exact_forward(g, x)[0]) for x in grid_points(box, 9))
    r = verify_equivalence(*((g, f) if swap else (f, g)), box, tol=1e-6, time_limit=30)
    assert r.status is EquivalenceStatus.EQUIVALENT and r.milps == 0
    assert exact <= Fraction(r.upper_bound) <= 1e-15


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("small", [2.0**-600, 2.0**-1000])
def test_a_multiple_whose_ratio_overflows_float64_is_no_fact(small: float, swap: bool) -> None:
    """``w = relu(2^511 x)`` is ``2^1111 u`` for ``u = relu(2^-600 x)`` (with ``2^100`` and
    ``2^-1000``: ``2^1100``), a ratio no float64 reaches; ``g`` merged ``w`` into ``u``
    (``2^-600 w = 2^511 u``). The pair makes no multiple (fails on ``main`` ``97e36de``:
    ``verify`` raised ``OverflowError`` moving the ratio's nearest float64), and ``verify``
    bounds the difference (at most ``u``'s coefficient rounding, ``small``) soundly::

        f:  u = relu(small x)   w = relu(big x)   z = relu(x/2 + 0.1);   y = u + c w + z
        g:  u = relu(small x)   z = relu(x/2 + 0.1);   y = fl(1 + c big / small) u + z
    """
    big = 2.0**511 if small == 2.0**-600 else 2.0**100
    coef = 2.0**-600 if small == 2.0**-600 else 2.0**-200  # w's output weight
    w1, b1 = np.array([[small], [big], [0.5]]), np.array([0.0, 0.0, 0.1])
    f = Network.from_arrays([w1, np.array([[1.0, coef, 1.0]])], [b1, np.zeros(1)], "float64")
    merged = 1.0 + (coef * big) / small  # 2^511 or 2^900: the 1 lost to rounding
    g = Network.from_arrays(
        [w1[[0, 2]], np.array([[merged, 1.0]])], [b1[[0, 2]], np.zeros(1)], "float64"
    )
    r = verify_equivalence(*((g, f) if swap else (f, g)), BOX_1, tol=1e-6, time_limit=30)
    found = layer_classes(f)[0].multiple
    assert found is None or found.tolist() == [-1, -1, -1]
    assert r.status is not EquivalenceStatus.NOT_EQUIVALENT
    exact = max(abs(exact_forward(f, x)[0] - exact_forward(g, x)[0]) for x in grid_points(BOX_1, 9))
    assert 0 < exact <= small and exact <= Fraction(r.upper_bound)


BOX_1 = Box(np.array([-1.0]), np.array([1.0]))
