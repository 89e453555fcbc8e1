"""Networks that share every hidden layer: their difference bounded as one network
(:mod:`exactcomp.verify.head`), against the exact oracle and in exact rationals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import max_output_difference
from exactcomp.testing.random_networks import random_network
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify.charge import Charger
from exactcomp.verify.head import head_bounds, shared_body


def with_last(f: Network, w: np.ndarray, b: np.ndarray, relu: bool = False) -> Network:
    return f.replace_layers([*f.layers[:-1], Layer(w, b, relu)])


def output(net: Network, i: int) -> Network:
    """``net`` with its output ``i`` alone."""
    last = net.layers[-1]
    return with_last(net, last.weight[i : i + 1], last.bias[i : i + 1])


def case(seed: int) -> tuple[Network, Network, Box]:
    """A random network and a copy with its last layer moved (some entries unchanged)."""
    rng = np.random.default_rng(seed)
    box = Box.uniform(-1.0, 1.0, int(rng.integers(1, 4)))
    f = random_network(rng, depth=(1, 3), width=(2, 5), outputs=(1, 3), max_neurons=9, box=box)
    last = f.layers[-1]
    scale = 10.0 ** rng.uniform(-3, 0)
    move = scale * rng.normal(size=last.weight.shape) * (rng.random(last.weight.shape) < 0.7)
    g = with_last(f, last.weight + move, last.bias + scale * rng.normal(size=last.bias.shape))
    return f, g, box


def test_shared_body_only_when_the_hidden_layers_are_equal() -> None:
    f, g, _ = case(0)
    assert shared_body(f, g) and shared_body(f, f)
    first = f.layers[0]
    moved = f.replace_layers([Layer(first.weight, first.bias + 1e-12, True), *f.layers[1:]])
    assert not shared_body(moved, g)
    last = g.layers[-1]
    assert not shared_body(f, with_last(g, last.weight, last.bias, relu=True))
    one = Network((Layer(np.ones((1, 2)), np.zeros(1), False),))
    assert not shared_body(one, one)


@pytest.mark.parametrize("seed", range(12))
def test_head_bounds_contain_the_exact_maximum(seed: int) -> None:
    f, g, box = case(seed)
    m = f.output_size
    exact = [max_output_difference(output(f, i), output(g, i), box).value for i in range(m)]
    sides = [(i, s) for i in range(m) for s in (1.0, -1.0)]
    for t in (0.5 * max(exact), 1.5 * max(exact) + 1e-9):
        got = head_bounds(f, g, box, sides, t)
        for i in range(m):
            bound = max(got.bounds[(i, 1.0)], got.bounds[(i, -1.0)])
            assert bound >= exact[i] - 1e-9 * max(1.0, exact[i])
            if bound <= t:  # a claim "within t": the oracle agrees
                assert exact[i] <= t + 1e-9 * max(1.0, t)
        assert box.contains(got.points, atol=0.0).all()
        if t < max(exact) * 0.6:  # a side above t: the engine saw it, or proved nothing
            d = np.abs(f.forward(got.points) - g.forward(got.points)).max(initial=0.0)
            assert len(got.points) == 0 or d > 0.5 * t


def test_the_rounded_rows_are_padded_in_exact_arithmetic() -> None:
    """``w - w'`` rounds in float64 (1e16 + 2 - 0.5 is not a float64): the claim must still
    hold for the exact difference, checked in rationals."""
    body = Layer(np.ones((1, 1)), np.zeros(1), True)  # h = relu(x), x in [0, 1]
    w, w2 = 1e16 + 2.0, 0.5
    f = Network((body, Layer(np.array([[w]]), np.zeros(1), False)))
    g = Network((body, Layer(np.array([[w2]]), np.zeros(1), False)))
    box = Box(np.zeros(1), np.ones(1))
    assert Fraction(w) - Fraction(w2) != Fraction(w - w2)  # the row is rounded
    got = head_bounds(f, g, box, [(0, 1.0)], 2e16)
    assert Fraction(got.bounds[(0, 1.0)]) >= Fraction(w) - Fraction(w2)  # at x = 1


def test_verify_decides_a_shared_body_by_the_head_network() -> None:
    rng = np.random.default_rng(3)
    box = Box.uniform(0.0, 1.0, 14)  # beyond input splitting's dimension
    f = random_network(rng, depth=(2, 2), width=(5, 5), outputs=(2, 2), box=box, nasty=False)
    last = f.layers[-1]
    g = with_last(f, last.weight + 0.01 * rng.normal(size=last.weight.shape), last.bias)
    exact = max_output_difference(f, g, box).value
    proven = verify_equivalence(f, g, box, tol=1.1 * exact, time_limit=60)
    assert proven.status is EquivalenceStatus.EQUIVALENT
    assert "shared hidden layers" in proven.reason
    assert exact <= proven.upper_bound <= 1.1 * exact
    refuted = verify_equivalence(f, g, box, tol=0.5 * exact, time_limit=60)
    assert refuted.status is EquivalenceStatus.NOT_EQUIVALENT
    x = refuted.counterexample.x
    assert np.abs(f.forward(x) - g.forward(x)).max() > 0.5 * exact


def test_the_lossy_charger_proves_a_last_layer_change_with_the_engine() -> None:
    f, g, box = case(5)
    exact = max_output_difference(f, g, box).value
    charger = Charger(f, [box])
    target = 1.2 * exact + 1e-9
    bound = charger.proven(g, target=target, head_seconds=30.0)
    assert exact - 1e-9 <= bound
    assert bound <= max(target, charger.proven(g))


def test_unchanged_rows_are_constants_bounded_without_the_engine(monkeypatch) -> None:
    from exactcomp.verify import head

    f, _, box = case(2)
    last = f.layers[-1]
    shift = np.zeros(last.out_features)
    shift[0] = 0.1 + 2.0**-40  # not a float64 sum: the bound rounds up
    g = with_last(f, last.weight, last.bias + shift)
    monkeypatch.setattr(head, "stable_neurons", lambda *a, **k: 1 / 0)  # never asked
    sides = [(i, s) for i in range(f.output_size) for s in (1.0, -1.0)]
    got = head_bounds(f, g, box, sides, 0.05)
    exact = Fraction(float(g.layers[-1].bias[0])) - Fraction(float(last.bias[0]))
    assert Fraction(got.bounds[(0, -1.0)]) >= exact > Fraction(got.bounds[(0, -1.0)]) - 1e-15
    assert got.bounds[(0, 1.0)] <= 0.0 and len(got.points) >= 1  # the centre: above 0.05
    assert all(got.bounds[(i, s)] == 0.0 for i, s in sides if i > 0)


def test_verify_the_same_network_twice_is_instant_on_few_inputs(monkeypatch) -> None:
    """An unchanged last layer is exact without the engine, so it runs before input splitting
    even on few inputs (a .nnet in raw units against itself took 45 s of splitting)."""
    from exactcomp.verify import splitting

    monkeypatch.setattr(splitting, "split_verify", lambda *a, **k: 1 / 0)  # never reached
    f, _, box = case(1)
    res = verify_equivalence(f, f, box, tol=1e-9, time_limit=60)
    assert res.status is EquivalenceStatus.EQUIVALENT and res.upper_bound == 0.0
    assert "shared hidden layers" in res.reason
