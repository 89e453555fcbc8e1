"""``verify`` in either order where one network holds *twins* that the other merged.

Twins are two neurons computing one function through unequal rows (here ``relu(a)`` read
through the pair ``relu(a), relu(-a)`` and through ``relu(2a), relu(-2a)`` halved), which
the weights do not show equal (:mod:`exactcomp.stability.constants`). The differential
argument links each neuron of its ``g`` to a partner in its ``f``: a merged neuron of ``g``
meets one twin of ``f`` and the other keeps its interval, so ``verify(f, g)`` was UNKNOWN
(2.25) where ``verify(g, f)`` proved them equal (red25, RESULTS.md). The argument now also
runs with the roles swapped (:func:`exactcomp.verify.coupling.swapped_outputs`).
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
from exactcomp.testing.oracle import grid_points
from exactcomp.tolerances import DEFAULT
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify import run as run_module
from exactcomp.verify.coupling import match_neurons, swapped_outputs
from exactcomp.verify.differential import Side, bound_differences
from exactcomp.verify.formulation import proven_encoding

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
A, AB = np.array([1.0, -1.0]), 0.25  # a = x1 - x2 + 1/4
W0 = np.array([A, -A, 2 * A, -2 * A, [0.5, 0.5]])
B0 = np.array([AB, -AB, 2 * AB, -2 * AB, 0.0])


def twins_net(eps: float = 0.0, wq: float = 1.0) -> Network:
    """``P`` and ``Q`` are both ``relu(a)`` (``Q`` moved by ``eps``), unequal rows.

    ::

        layer 0:  u = relu(a)  v = relu(-a)  u2 = relu(2a)  v2 = relu(-2a)  s = relu(x1/2 + x2/2)
        layer 1:  P = relu(u - v)   Q = relu(u2/2 - v2/2 + eps)   S = relu(s)
        output:   y = P + wq Q + S
    """
    w1 = np.array([[1, -1, 0, 0, 0], [0, 0, 0.5, -0.5, 0], [0, 0, 0, 0, 1.0]])
    return Network(
        (
            Layer(W0, B0, True),
            Layer(w1, np.array([0.0, eps, 0.0]), True),
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
    w1 = np.array([[1, -1, 0, 0, 0], [0, 0, 0, 0, 1.0]])
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


def test_swapped_outputs_runs_only_where_a_neuron_of_f_is_left_unreached() -> None:
    """Forward (``f`` = twins): ``Q`` is reached by no link, the swapped argument links it
    and proves the outputs equal. Two unrelated networks (``relu(x1)``, ``relu(x2)``): no
    neuron of ``f`` agrees with one of ``g``, nothing to gain, nothing run."""
    bb = (BOX.lower, BOX.upper)
    pts = grid_points(BOX, 9)
    f, g = twins_net(), merged_net(2.0)
    fs, gs = (Side(n, *proven_encoding(n, BOX, DEFAULT, None)) for n in (f, g))
    forward = bound_differences(fs, gs, match_neurons(f, g, pts, 2, twins=3), bb)
    assert forward.outputs[0][1] - forward.outputs[0][0] > 1.0
    assert (1, 1) not in {(fk, p) for fk, p, *_ in forward.links.values()}  # Q
    back = swapped_outputs(fs, gs, forward, pts, len(pts), bb, DEFAULT, float("inf"))
    assert back == ((0.0, 0.0),)
    one = [
        Network.from_arrays([np.array([r]), np.ones((1, 1))], [np.zeros(1)] * 2) for r in np.eye(2)
    ]
    fs, gs = (Side(n, *proven_encoding(n, BOX, DEFAULT, None)) for n in one)
    forward = bound_differences(fs, gs, match_neurons(one[0], one[1], pts, 2, twins=3), bb)
    assert swapped_outputs(fs, gs, forward, pts, len(pts), bb, DEFAULT, float("inf")) is None
