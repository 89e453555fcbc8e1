"""Optimised lower ReLU slopes in the input-split trees (:mod:`exactcomp.bab.alpha`).

- a named network (the kink with bias -1) whose neuron no fixed slope proves inactive at the
  root (each of the four leaves ``max z`` bounded at 0 or above) and an optimised slope of 1/4
  proves at once (``max z <= -0.5``; the truth is -1): 1 node, against 4 without;
- the optimised bound is never looser than the fixed rules' and never crosses the exact
  range (the region-enumeration oracle) on sub-boxes of small random networks;
- the ascent direction is the bound's derivative (finite differences, away from kinks).
"""

from __future__ import annotations

import numpy as np
import pytest

import exactcomp.bab.split as split
from exactcomp.bab import batch_bounds, prove_signs
from exactcomp.bab.alpha import _gradients, optimise_slopes, tighten_open
from exactcomp.bab.batch import SLOPES, back_substitute
from exactcomp.bounds import linear_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_network
from exactcomp.tolerances import DEFAULT

BOX = Box(np.array([-1.0]), np.array([1.0]))


def kink_minus_one() -> Network:
    r"""``z = relu(x) - relu(2x) - 1`` on ``[-1, 1]``, ``max z = -1`` (INACTIVE)::

        x ──┬── relu(x)  ──(+1)──┐
            └── relu(2x) ──(-1)──┴── z = . - 1 ── relu ── out

    The bound of ``-z`` takes the chord ``relu(x) <= (x + 1) / 2`` and a lower slope
    ``alpha`` on ``relu(2x) >= 2 alpha x``: ``-z >= (2 alpha - 1/2) x + 1/2``, whose minimum
    over the box is ``1/2 - |2 alpha - 1/2|``: 0 for ``alpha`` in {0, 1/2} (the adaptive
    rule, zero, the chord), -1 for ``alpha = 1``, and 1/2 for ``alpha = 1/4``."""
    return Network(
        (
            Layer(np.array([[1.0], [2.0]]), np.zeros(2), relu=True),
            Layer(np.array([[1.0, -1.0]]), np.array([-1.0]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_optimised_slopes_prove_what_the_four_fixed_ones_cannot(monkeypatch) -> None:
    net = kink_minus_one()
    known = linear_bounds(net, BOX)
    assert exact_preactivation_ranges(net, BOX)[1][1][0] == pytest.approx(-1.0)
    for rule in SLOPES:  # no fixed rule proves max z <= 0 on the whole box
        bb = batch_bounds(net, BOX.lower[None], BOX.upper[None], 1, known, DEFAULT, rows=np.array([0]), slopes=(rule,))  # fmt: skip
        assert bb.upper[1][0, 0] > 0.0
    bb = batch_bounds(net, BOX.lower[None], BOX.upper[None], 1, known, DEFAULT, rows=np.array([0]), slopes=SLOPES)  # fmt: skip
    want = np.array([[True]])
    opt = tighten_open(net, 1, BOX.lower[None], BOX.upper[None], bb, ~want, want, SLOPES, DEFAULT)
    assert opt.upper[1][0, 0] == pytest.approx(-0.5, abs=1e-6)  # alpha = 1/4, padded
    assert opt.lower[1][0, 0] == bb.lower[1][0, 0]  # the side not asked is left alone
    res = prove_signs(net, BOX, 1, known, [0], [0])
    assert res.inactive.tolist() == [True] and res.complete and res.nodes == 1
    monkeypatch.setattr(split, "OPTIMISE", False)
    res = prove_signs(net, BOX, 1, known, [0], [0])
    assert res.inactive.tolist() == [True] and res.nodes == 4  # the second tree, as before


def _sub_boxes(rng: np.random.Generator, box: Box, n: int) -> tuple[np.ndarray, np.ndarray]:
    a = box.lower + rng.random((n, box.dim)) * (box.upper - box.lower)
    b = box.lower + rng.random((n, box.dim)) * (box.upper - box.lower)
    return np.minimum(a, b), np.maximum(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_optimised_bounds_are_tighter_and_enclose_the_exact_range(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    box = Box.uniform(-1.0, 1.0, n_in)
    net = random_network(rng, depth=(3, 3), width=(3, 5), inputs=(n_in, n_in), box=box)
    k = len(net.layers) - 2  # the last hidden layer
    known = linear_bounds(net, box)
    xlo, xhi = _sub_boxes(rng, box, 8)
    m = net.layers[k].out_features
    rows = np.arange(m)
    bb = batch_bounds(net, xlo, xhi, k, known, DEFAULT, rows=rows, slopes=SLOPES)
    want = np.ones((len(xlo), m), dtype=bool)
    opt = tighten_open(net, k, xlo, xhi, bb, want, want, SLOPES, DEFAULT, steps=8)
    assert (opt.lower[k] >= bb.lower[k]).all() and (opt.upper[k] <= bb.upper[k]).all()
    for b in range(len(xlo)):
        exact = exact_preactivation_ranges(net, Box(xlo[b], xhi[b]))[k]
        assert (opt.lower[k][b] <= exact[0]).all() and (opt.upper[k][b] >= exact[1]).all()


def test_the_ascent_direction_is_the_bounds_derivative() -> None:
    rng = np.random.default_rng(3)
    box = Box.uniform(-1.0, 1.0, 2)
    net = random_network(rng, depth=(3, 3), width=(6, 6), inputs=(2, 2), box=box, nasty=False)
    k = 2
    xlo, xhi = box.lower[None], box.upper[None]
    pre_b = batch_bounds(net, xlo, xhi, k, linear_bounds(net, box), DEFAULT, rows=np.arange(1))
    pre = [(lo, hi) for lo, hi in zip(pre_b.lower[:k], pre_b.upper[:k], strict=True)]
    w = np.asarray(net.layers[k].weight, np.float64)[:1]
    b = np.asarray(net.layers[k].bias, np.float64)[:1]
    alphas = [rng.uniform(0.2, 0.8, (1, 1, lo.shape[1])) for lo, _ in pre]

    def bound(al):
        value, _, pads = back_substitute(net, k, w, b, xlo, xhi, pre, DEFAULT, alphas=al)
        return (value + pads)[0, 0]

    trace: list[np.ndarray] = []
    _, coef, _ = back_substitute(net, k, w, b, xlo, xhi, pre, DEFAULT, alphas=alphas, trace=trace)
    grads = _gradients(net, k, xlo, xhi, pre, alphas, coef, trace)
    eps = 1e-6
    for i, g in enumerate(grads):
        for n in range(g.shape[2]):
            moved = [a.copy() for a in alphas]
            moved[i][0, 0, n] += eps
            assert (bound(moved) - bound(alphas)) / eps == pytest.approx(g[0, 0, n], abs=1e-5)
    got = optimise_slopes(net, k, w, b, xlo, xhi, pre, np.zeros((1, 1), int), SLOPES, DEFAULT)
    start = back_substitute(net, k, w, b, xlo, xhi, pre, DEFAULT)[0]
    assert got.bound[0, 0] >= start[0, 0]


def test_slopes_across_an_emptied_layer() -> None:
    """Layer 0 emptied by a compression (weights ``(0, 1)``), layer 1 a constant
    ``relu(0.5)``, then ``z = 2 * 0.5 - 1.25 = -0.25`` exactly. The ascent's step scale took
    the max of layer 0's empty gradient (degenerate soak seed 20, a ValueError); now the
    bound is ``-0.25`` less its margin (``4.5e-9``)."""
    net = Network(
        (
            Layer(np.zeros((0, 1)), np.zeros(0), relu=True),
            Layer(np.zeros((1, 0)), np.array([0.5]), relu=True),
            Layer(np.array([[2.0]]), np.array([-1.25]), relu=True),
            Layer(np.ones((1, 1)), np.zeros(1), relu=False),
        )
    )
    xlo, xhi = BOX.lower[None], BOX.upper[None]
    pre = [(np.zeros((1, 0)), np.zeros((1, 0))), (np.full((1, 1), 0.5), np.full((1, 1), 0.5))]
    w, b = net.layers[2].weight, net.layers[2].bias
    got = optimise_slopes(net, 2, w, b, xlo, xhi, pre, np.zeros((1, 1), int), SLOPES, DEFAULT)
    assert got.bound[0, 0] <= -0.25 and got.bound[0, 0] == pytest.approx(-0.25, abs=1e-7)
