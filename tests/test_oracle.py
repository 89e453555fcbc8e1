"""The oracle itself: hand-computed named cases, dense grids, and the generator's promises.

Everyone's soundness tests trust :mod:`exactcomp.testing.oracle`, so it is checked here
by two independent routes: answers worked out by hand on tiny drawn networks, and dense
grids on 1-2 input networks (grid values can only lie *inside* the exact range, and by a
Lipschitz argument no further inside than half a grid step allows).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import network_and_box, networks

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.testing.oracle import (
    AMBIGUOUS,
    enumerate_regions,
    exact_preactivation_ranges,
    exact_stability,
    grid_check,
    grid_points,
    max_output_difference,
    probe_points,
)
from exactcomp.testing.random_networks import Case, random_box, random_case, tie_bias
from exactcomp.verdicts import Verdict

INA, ACT, UNS = Verdict.INACTIVE, Verdict.ACTIVE, Verdict.UNSTABLE


def net(*layers: tuple[list, list, bool]) -> Network:
    return Network(tuple(Layer(np.array(w, float), np.array(b, float), r) for w, b, r in layers))


def abs_net() -> Network:
    """``|x| = relu(x) + relu(-x)``::

        x --(+1)--> [h0] --(+1)--\\
          --(-1)--> [h1] --(+1)---> y
    """
    return net(([[1.0], [-1.0]], [0.0, 0.0], True), ([[1.0, 1.0]], [0.0], False))


# ----------------------------------------------------------------------------- named cases
def test_single_neuron_unstable_range_is_the_box_image() -> None:
    """``z = 2x + 1`` on ``[-1, 1]``: range ``[-1, 3]``, unstable."""
    f = net(([[2.0]], [1.0], True), ([[1.0]], [0.0], False))
    (lo, hi), (ylo, yhi) = exact_preactivation_ranges(f, Box([-1.0], [1.0]))
    assert lo.tolist() == [-1.0] and hi.tolist() == [3.0]
    assert ylo.tolist() == [0.0] and yhi.tolist() == [3.0]
    assert exact_stability(f, Box([-1.0], [1.0]))[0].tolist() == [UNS]


def test_ties_at_zero_in_the_first_layer_are_decided_exactly() -> None:
    """``z0 = x - 1`` (max 0 exactly: inactive), ``z1 = x`` (min 0 exactly: active),
    ``z2 = 0.1 x - 0.1`` (0.1 is not dyadic: the rational range still decides it)."""
    f = net(([[1.0], [1.0], [0.1]], [-1.0, 0.0, -0.1], True), ([[1.0, 1.0, 1.0]], [0.0], False))
    box = Box([0.0], [1.0])
    (lo, hi) = exact_preactivation_ranges(f, box)[0]
    assert hi[0] == 0.0 and lo[1] == 0.0
    assert exact_stability(f, box)[0].tolist() == [INA, ACT, INA]


def test_deep_tie_from_one_signed_weights() -> None:
    """``z = -relu(x) - relu(-x) = -|x|`` on ``[-1, 1]``: range ``[-1, 0]``, max exactly 0.
    Rational interval arithmetic proves ``z <= 0`` although the LP only sees ``max = 0``."""
    f = net(
        ([[1.0], [-1.0]], [0.0, 0.0], True),
        ([[-1.0, -1.0]], [0.0], True),
        ([[1.0]], [0.0], False),
    )
    lo, hi = exact_preactivation_ranges(f, Box([-1.0], [1.0]))[1]
    assert lo.tolist() == [-1.0] and hi.tolist() == [0.0]
    assert [v.tolist() for v in exact_stability(f, Box([-1.0], [1.0]))] == [[UNS, UNS], [INA]]


def test_deep_range_needs_regions_not_intervals() -> None:
    """``z = relu(x) + relu(-x) - 0.5 = |x| - 0.5``: interval arithmetic says ``[-0.5, 1.5]``,
    the exact range is ``[-0.5, 0.5]``."""
    f = net(
        ([[1.0], [-1.0]], [0.0, 0.0], True), ([[1.0, 1.0]], [-0.5], True), ([[1.0]], [0], False)
    )
    lo, hi = exact_preactivation_ranges(f, Box([-1.0], [1.0]))[1]
    assert lo.tolist() == [-0.5] and hi.tolist() == [0.5]


def test_two_inputs_corner_maximum() -> None:
    """``z = relu(x1) + relu(x2) - 1`` over ``[-1, 1]^2``: range ``[-1, 1]``."""
    f = net(([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], True), ([[1.0, 1.0]], [-1.0], True))
    lo, hi = exact_preactivation_ranges(f, Box.uniform(-1.0, 1.0, 2))[1]
    assert lo.tolist() == [-1.0] and hi.tolist() == [1.0]


def test_abs_network_has_two_regions() -> None:
    regions = list(enumerate_regions(abs_net(), Box([-1.0], [1.0])))
    patterns = sorted(tuple(r.pattern[0][0].tolist()) for r in regions)
    assert patterns == [(False, True), (True, False)]
    for r in regions:
        (a, c) = r.maps[0]
        assert np.allclose(r.points @ a.T + c, abs_net().forward(r.points))


def test_point_box_decides_every_neuron() -> None:
    """On a box with ``lo == hi`` everywhere no neuron can be unstable."""
    case = random_case(3, inputs=2, max_neurons=8)
    point = Box(case.box.lower, case.box.lower)
    codes = np.concatenate(exact_stability(case.network, point))
    assert UNS not in codes.tolist()
    for (lo, hi), z in zip(
        exact_preactivation_ranges(case.network, point),
        case.network.preactivations(point.lower),
        strict=True,
    ):
        assert np.array_equal(lo, z[0]) and np.array_equal(hi, z[0])


def test_max_difference_of_equal_networks_is_zero() -> None:
    assert max_output_difference(abs_net(), abs_net(), Box([-1.0], [1.0])).value == 0.0


def test_max_difference_of_a_removed_unstable_neuron() -> None:
    """``|x|`` against ``relu(x)``: they differ by ``relu(-x)``, at most 1 at ``x = -1``."""
    g = net(([[1.0]], [0.0], True), ([[1.0]], [0.0], False))
    value, x = max_output_difference(abs_net(), g, Box([-1.0], [1.0]))
    assert value == 1.0 and x.tolist() == [-1.0]


def test_max_difference_hidden_in_a_corner() -> None:
    """``g = f + 1000 relu(x - 0.999)``: differs only on ``[0.999, 1]``, by 1 at ``x = 1``
    (random sampling rarely looks there; region enumeration always does)."""
    f = net(([[1.0]], [0.0], True), ([[1.0]], [0.0], False))
    g = net(([[1.0], [1.0]], [0.0, -0.999], True), ([[1.0, 1000.0]], [0.0], False))
    value, x = max_output_difference(f, g, Box([0.0], [1.0]))
    assert value == pytest.approx(1.0, rel=1e-9) and x.tolist() == [1.0]


def test_probe_points_lie_in_the_box_and_include_kinks() -> None:
    pts = probe_points(abs_net(), Box([-1.0], [2.0]))
    assert Box([-1.0], [2.0]).contains(pts).all()
    assert {-1.0, 0.0, 2.0} <= set(pts[:, 0].tolist())


# ----------------------------------------------------------------------------- dense grids
def _lipschitz(f: Network) -> list[np.ndarray]:
    """Per layer, ``L[j, i]`` bounds ``|dz_j / dx_i|`` (product of absolute weights)."""
    out, acc = [], np.eye(f.input_size)
    for layer in f.layers:
        acc = np.abs(layer.weight) @ acc
        out.append(acc)
    return out


@settings(max_examples=40)
@given(network_and_box(inputs=(1, 2), max_neurons=6))
def test_exact_ranges_against_dense_grid(case) -> None:
    """Grid values lie inside the exact range, within half a grid step of its ends."""
    f, box = case
    per_dim = 129
    ranges = exact_preactivation_ranges(f, box)
    grid = grid_check(f, box, per_dim=per_dim)
    half_step = (box.upper - box.lower) / (per_dim - 1) / 2
    for (lo, hi), (glo, ghi), lip in zip(ranges, grid.ranges, _lipschitz(f), strict=True):
        scale = 1e-9 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
        assert np.all(lo <= glo + scale) and np.all(hi >= ghi - scale)
        gap = lip @ half_step + scale
        assert np.all(hi - ghi <= gap) and np.all(glo - lo <= gap)


@settings(max_examples=40)
@given(network_and_box(inputs=(1, 2), max_neurons=6))
def test_exact_stability_against_dense_grid(case) -> None:
    """No grid point contradicts a verdict; an UNSTABLE verdict's witnesses are real."""
    f, box = case
    codes = exact_stability(f, box)
    zs = f.preactivations(grid_points(box, 129))
    ranges = exact_preactivation_ranges(f, box)
    for k, c in zip(f.relu_layers, codes, strict=True):
        z = zs[k]
        assert np.all(z[:, c == INA] <= 1e-9 * (1 + np.abs(z[:, c == INA])))
        assert np.all(z[:, c == ACT] >= -1e-9 * (1 + np.abs(z[:, c == ACT])))
        lo, hi = ranges[k]
        assert np.all(hi[c == UNS] > 0) and np.all(lo[c == UNS] < 0)
        assert set(c.tolist()) <= {AMBIGUOUS, INA, ACT, UNS}


@settings(max_examples=25)
@given(network_and_box(inputs=(1, 2), max_neurons=4), st.data())
def test_max_difference_against_dense_grid(case, data) -> None:
    """Two unrelated networks on one box: the exact max difference is achieved at its
    ``x``, no grid point beats it, and the grid gets within a Lipschitz half-step of it."""
    f, box = case
    m = f.output_size
    g = data.draw(networks(box=box, max_neurons=4, outputs=(m, m)))
    exact = max_output_difference(f, g, box)
    grid = grid_check(f, box, g=g, per_dim=129)
    scale = 1e-9 * (1.0 + exact.value)
    assert grid.max_difference <= exact.value + scale
    assert box.contains(exact.x).all()
    diff = np.max(np.abs(f.forward(exact.x) - g.forward(exact.x)))
    assert diff == pytest.approx(exact.value, rel=1e-12, abs=1e-300)
    half_step = (box.upper - box.lower) / (128 * 2)
    lip = (_lipschitz(f)[-1] + _lipschitz(g)[-1]) @ half_step
    assert exact.value - grid.max_difference <= np.max(lip) + scale


# ----------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_round_trips_json() -> None:
    a, b = random_case(17), random_case(17)
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    back = Case.from_json(json.loads(json.dumps(a.to_json())))
    x = a.box.sample(20, np.random.default_rng(0))
    assert np.array_equal(back.network.forward(x), a.network.forward(x))
    assert np.array_equal(back.box.lower, a.box.lower)


def test_generator_produces_the_nasty_cases() -> None:
    """Across seeds: degenerate boxes, exact zeros, duplicate rows, extreme scales, exact
    ties at 0 in the first layer, and every verdict kind."""
    seen = {"degenerate": 0, "zero_row": 0, "dup": 0, "huge": 0, "tiny": 0, "tie": 0}
    verdicts = set()
    for seed in range(60):
        case = random_case(seed, max_neurons=10, inputs=(1, 3))
        box, f = case.box, case.network
        seen["degenerate"] += int(np.any(box.lower == box.upper))
        for layer in f.layers:
            w = layer.weight
            seen["zero_row"] += int(np.any(~w.any(axis=1)))
            seen["huge"] += int(np.abs(w).max() >= 1e5)
            seen["tiny"] += int(np.any((w != 0) & (np.abs(w) <= 1e-6)))
            uniq = {
                tuple(r) for r in w[w.any(axis=1)] / np.abs(w[w.any(axis=1)]).max(axis=1)[:, None]
            }
            seen["dup"] += int(len(uniq) < int(w.any(axis=1).sum()))
        lo, hi = exact_preactivation_ranges(f, box)[0]
        seen["tie"] += int(np.any((lo == 0) | (hi == 0)))
        if seed < 20:
            verdicts |= set(np.concatenate(exact_stability(f, box)).tolist())
    assert all(v >= 3 for v in seen.values()), seen
    assert {INA, ACT, UNS} <= verdicts


def test_tie_bias_is_exact_or_refused() -> None:
    box = Box([0.125, -1.0], [0.5, 2.0])
    row = np.array([0.75, -0.5])
    b = tie_bias(row, box, "max")
    assert b is not None
    corners = np.array(
        [[x, y] for x in box.lower[:1].tolist() + box.upper[:1].tolist() for y in (-1.0, 2.0)]
    )
    assert np.max(corners @ row + b) == 0.0
    assert tie_bias(np.array([0.1, 0.3]), Box([0.1, 0.7], [0.3, 0.9]), "max") is None


def test_random_box_degenerate_coordinates() -> None:
    rng = np.random.default_rng(0)
    boxes = [random_box(rng, 4, degenerate_prob=0.5) for _ in range(20)]
    assert any(np.any(b.lower == b.upper) for b in boxes)
    assert all(np.all(b.lower <= b.upper) for b in boxes)


def test_wrong_verdicts_names_a_flipped_claim_and_accepts_the_true_ones():
    """``ExactAnalysis.wrong_verdicts``: the oracle's own verdicts and UNDECIDED pass; a
    decided neuron's verdict flipped is reported by layer and neuron."""
    from types import SimpleNamespace

    case = random_case(3, max_neurons=8, nasty=False)
    from exactcomp.testing.oracle import exact_analysis

    exact = exact_analysis(case.network, case.box)

    def report(verdicts):
        return SimpleNamespace(
            layers=[
                SimpleNamespace(layer=k, verdict=v)
                for k, v in zip(case.network.relu_layers, verdicts, strict=True)
            ]
        )

    assert exact.wrong_verdicts(report(exact.stability)) == []
    undecided = [np.full_like(v, Verdict.UNDECIDED) for v in exact.stability]
    assert exact.wrong_verdicts(report(undecided)) == []
    k, j = next(
        (k, j)
        for k, v in enumerate(exact.stability)
        for j, t in enumerate(v)
        if t == Verdict.UNSTABLE
    )
    flipped = [v.copy() for v in exact.stability]
    flipped[k][j] = Verdict.INACTIVE
    assert exact.wrong_verdicts(report(flipped)) == [
        f"layer {case.network.relu_layers[k]} neuron {j}: INACTIVE, oracle UNSTABLE"
    ]


def test_an_enumeration_stops_after_its_lp_budget(monkeypatch):
    """Past ``LPS_PER_REGION * max_regions`` branching LPs the enumeration stops with
    :class:`OracleError` (a soak case then notes a skip, never runs for hours); with the
    default budget the same network is enumerated in full."""
    from exactcomp.testing import regions as mod

    rng = np.random.default_rng(0)
    net = Network((Layer(rng.normal(size=(12, 2)), rng.normal(size=12), True),
                   Layer(rng.normal(size=(1, 12)), np.zeros(1), False)))  # fmt: skip
    box = Box(-np.ones(2), np.ones(2))
    assert sum(1 for _ in mod.enumerate_regions(net, box, max_regions=10_000)) > 1
    monkeypatch.setattr(mod, "LPS_PER_REGION", 0)
    with pytest.raises(mod.OracleError, match="LPs"):
        for _ in mod.enumerate_regions(net, box, max_regions=10_000):
            pass
