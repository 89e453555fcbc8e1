"""Lazy rows of deeper stably inactive neurons (:class:`exactcomp.bounds.lp.LazyRows`): the
smaller LP gives the bounds of the full one, and the ReLU splits the same claims."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from exactcomp.bab import prove_signs_relu, relu_lp
from exactcomp.bounds import ideal_cuts
from exactcomp.bounds import lp as lp_bounds
from exactcomp.bounds.ideal_cuts import ideal_cut_layer_result
from exactcomp.bounds.lp import build_prefix_lp, layer_lp, lazy_lp_min, lp_layer_result
from exactcomp.domain import Box
from exactcomp.highs.lp import lp_min
from exactcomp.network import Network
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_network
from exactcomp.tolerances import DEFAULT


def fold_net() -> tuple[Network, Box, list]:
    """Two inputs in ``[-1, 1]^2``; ``c`` is stably inactive (``max c = 0`` at ``x1 = 1``),
    and its proven bound ``u = 0`` cuts the triangle relaxation, which lets
    ``h_a + h_b`` reach 3 at ``x = (1, 0)`` with ``a = b = 1`` (each chord at its midpoint)::

        x1 --+-- a = x1 + x2 -- relu --+-- c = h_a + h_b - 2   in [-2, 0]  (inactive)
        x2 --+-- b = x1 - x2 -- relu --+-- e = h_a + h_b       in [0, 4]   (active) -- d = e

    ``max d = max (relu(x1 + x2) + relu(x1 - x2)) = 2`` exactly; the triangle LP without
    ``c``'s row says 3, with it 2."""
    w0 = np.array([[1.0, 1.0], [1.0, -1.0]])
    w1 = np.array([[1.0, 1.0], [1.0, 1.0]])
    w2 = np.array([[0.0, 1.0]])
    net = Network.from_arrays(
        [w0, w1, w2], [np.zeros(2), np.array([-2.0, 0.0]), np.zeros(1)], relu_last=False,
        dtype="float64",
    )  # fmt: skip
    box = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    known = [
        (np.array([-2.0, -2.0]), np.array([2.0, 2.0])),
        (np.array([-2.0, 0.0]), np.array([0.0, 4.0])),
    ]
    return net, box, known


def test_fold_net_brute_force_max_is_two() -> None:
    net, box, _ = fold_net()
    g = np.linspace(-1.0, 1.0, 201)
    x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    assert np.isclose(net.forward(x).max(), 2.0)
    assert net.preactivations(x)[1][:, 0].max() <= 1e-12  # c: inactive, max 0


@pytest.mark.parametrize("lazy", [True, False])
def test_the_violated_lazy_row_joins_and_the_bound_is_exact(monkeypatch, lazy: bool) -> None:
    """``max d``: 2 from the LP, with or without lazy rows (3 if ``c``'s row were lost)."""
    monkeypatch.setattr(lp_bounds, "LAZY_ROWS", lazy)
    net, box, known = fold_net()
    res = lp_layer_result(net, box, 2, known)
    assert 2.0 <= res.upper[0] <= 2.0 + 1e-5  # the solver margin


@pytest.mark.parametrize("lazy", [True, False])
def test_ideal_cut_lps_keep_the_cutting_row(monkeypatch, lazy: bool) -> None:
    monkeypatch.setattr(ideal_cuts, "LAZY_ROWS", lazy)
    net, box, known = fold_net()
    res = ideal_cut_layer_result(net, box, 2, known, [0], [0], probe=False)
    assert 2.0 <= res.upper[0] <= 2.0 + 1e-5
    assert res.lower[0] <= 0.0


def test_lazy_lp_min_moves_exactly_the_cutting_row_in() -> None:
    net, box, known = fold_net()
    lp = build_prefix_lp(net, box, 2, known, DEFAULT, lazy=True)
    full = build_prefix_lp(net, box, 2, known, DEFAULT)
    assert lp.lazy is not None and lp.lazy.upper.size == 1
    assert lp.matrix.shape == (full.matrix.shape[0] - 1, full.matrix.shape[1] - 1)
    cost = np.zeros(lp.matrix.shape[1])
    cost[lp.out_cols[1]] = -1.0  # min -e
    solver = layer_lp(lp)
    alone, _ = lp_min(solver, lp, cost, DEFAULT, None), None
    assert alone is not None and np.isclose(-alone[0], 3.0)  # the relaxation without c's row
    got, after = lazy_lp_min(solver, lp, cost, DEFAULT, None)
    assert got is not None and np.isclose(-got[0], 2.0)
    assert after.lazy is not None and after.lazy.upper.size == 0
    assert after.matrix.shape[0] == lp.matrix.shape[0] + 1


@functools.cache
def _cases() -> list:
    out = []
    for seed in range(5):
        rng = np.random.default_rng(500 + seed)
        box = Box.uniform(-1.0, 1.0, int(rng.integers(3, 7)))
        net = random_network(rng, depth=(3, 4), width=(3, 4), box=box, max_neurons=12, nasty=False)
        out.append((seed, net, box, exact_analysis(net, box).ranges))
    return out


def test_lazy_layer_lps_equal_the_full_ones_on_exact_bounds() -> None:
    """Random 3-6 input networks, depth 3-4, the earlier layers bounded by their *exact*
    ranges (so that proven inactive rows cut the triangle LP): every bound of every neuron
    of every deeper layer is the full model's, and below its exact minimum."""
    moved = compared = 0
    for seed, net, box, exact in _cases():
        for k in range(2, len(net.layers)):
            pre = exact[:k]
            full = build_prefix_lp(net, box, k, pre, DEFAULT)
            lazy = build_prefix_lp(net, box, k, pre, DEFAULT, lazy=True)
            s_full, s_lazy = layer_lp(full), layer_lp(lazy)
            w = net.layers[k].weight
            for j in range(w.shape[0]):
                for sign in (1.0, -1.0):
                    c_full = np.zeros(full.matrix.shape[1])
                    c_full[full.out_cols[full.out_cols >= 0]] = sign * w[j][full.out_cols >= 0]
                    c_lazy = np.zeros(lazy.matrix.shape[1])
                    c_lazy[lazy.out_cols[lazy.out_cols >= 0]] = sign * w[j][lazy.out_cols >= 0]
                    a = lp_min(s_full, full, c_full, DEFAULT, None)
                    rows = lazy.matrix.shape[0]
                    b, lazy = lazy_lp_min(s_lazy, lazy, c_lazy, DEFAULT, None)
                    moved += lazy.matrix.shape[0] - rows
                    assert a is not None and b is not None
                    assert abs(a[0] - b[0]) <= 1e-6 * (1.0 + abs(a[0])), (seed, k, j, sign)
                    b_k = float(net.layers[k].bias[j])
                    true_min = exact[k][0][j] if sign > 0 else -exact[k][1][j]
                    assert b[0] <= true_min - sign * b_k + 1e-7, (seed, k, j, sign)
                    compared += 1
    assert compared >= 20
    assert moved >= 1  # some proven-inactive row did cut an optimum


def test_relu_splits_claim_the_same_with_lazy_rows(monkeypatch) -> None:
    """The ReLU-split search on the same questions, with and without lazy rows: the same
    claims, each true per the exact oracle."""
    claims = {}
    for lazy in (False, True):
        monkeypatch.setattr(relu_lp, "LAZY_ROWS", lazy)
        out = []
        for _, net, box, exact in _cases():
            for k in net.relu_layers[2:]:
                lo, hi = exact[k]
                known = [*exact[:k], (lo - 1.0, hi + 1.0)]
                idx = np.arange(lo.size)
                res = prove_signs_relu(net, box, k, known, idx, np.zeros(idx.size, int))
                assert (hi[res.inactive] <= 1e-9).all() and (lo[res.active] >= -1e-9).all()
                out.append((res.inactive.tolist(), res.active.tolist()))
        claims[lazy] = out
    assert claims[True] == claims[False]
    assert any(any(a) or any(b) for a, b in claims[True])
