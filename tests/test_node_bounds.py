"""Node bounds of a ReLU-split tree (:mod:`exactcomp.bab.node_bounds`): on every node they
enclose the exact range of each neuron over the node's region (the inputs of the box whose
split neurons have the node's signs), computed by the region oracle with one LP per region;
a named case shows them tighter than the whole-box bounds; and the split search with them
keeps the oracle's verdicts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from exactcomp.bab import prove_signs_relu, relu_tree
from exactcomp.bab import relu as relu_bab
from exactcomp.bab.node_bounds import NodeBounds
from exactcomp.bounds import linear_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case
from exactcomp.testing.regions import enumerate_regions
from exactcomp.tolerances import DEFAULT

SLACK = 1e-6
"""The LP oracle's own tolerance, relative to ``1 + |value|``: its optima may sit slightly
outside a region (HiGHS' feasibility tolerance on the scaled rows)."""


@pytest.fixture(autouse=True)
def _lp_trees_alone(monkeypatch):
    """These tests are about the LP trees: the batched engine that asks first by default
    (:data:`~exactcomp.bab.relu.BATCHED_FIRST`, tested in ``test_beta_bounds.py``) is off."""
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", False)


def _affine_maps(net: Network, pattern: tuple[np.ndarray, ...]) -> list[tuple[np.ndarray, ...]]:
    """``z_j = A_j x + c_j`` of every layer on the region with this activation pattern."""
    n = net.input_size
    a, c, at, out = np.eye(n), np.zeros(n), 0, []
    for layer in net.layers:
        az, cz = layer.weight @ a, layer.weight @ c + layer.bias
        out.append((az, cz))
        if layer.relu:
            mask = pattern[at]
            at += 1
            a, c = az * mask[:, None], cz * mask
        else:
            a, c = az, cz
    return out


def node_ranges(net: Network, box: Box, splits: list[tuple[int, int, int]]):
    """Exact ``(min, max)`` of every pre-activation over the node's region (``None`` where
    the region is empty): per activation region, one LP per neuron and side over the region
    with the split constraints ``sign * z >= 0`` (affine there) added."""
    lo = [np.full(la.out_features, np.inf) for la in net.layers]
    hi = [np.full(la.out_features, -np.inf) for la in net.layers]
    bounds = list(zip(box.lower, box.upper, strict=True))
    for region in enumerate_regions(net, box):
        maps = _affine_maps(net, region.pattern[0])
        rows, rhs = [region.a_ub], [region.b_ub]
        for j, i, s in splits:
            rows.append(-s * maps[j][0][i][None])
            rhs.append(np.array([s * maps[j][1][i]]))
        a_ub, b_ub = np.vstack(rows), np.concatenate(rhs)
        feasible = linprog(np.zeros(net.input_size), A_ub=a_ub, b_ub=b_ub, bounds=bounds)
        if feasible.status == 2:
            continue  # the node's region misses this activation region
        assert feasible.status == 0
        for m, (az, cz) in enumerate(maps):
            for i in range(az.shape[0]):
                for side in (1.0, -1.0):
                    res = linprog(-side * az[i], A_ub=a_ub, b_ub=b_ub, bounds=bounds)
                    assert res.status == 0
                    x = res.x
                    v = float(az[i] @ x + cz[i])
                    lo[m][i], hi[m][i] = min(lo[m][i], v), max(hi[m][i], v)
    if all(np.isinf(lo[0])):
        return None
    return lo, hi


def _unstable(pre, net: Network, k: int) -> list[tuple[int, np.ndarray]]:
    return [
        (j, np.flatnonzero((pre[j][0] < 0.0) & (pre[j][1] > 0.0)))
        for j in range(k)
        if net.layers[j].relu and ((pre[j][0] < 0.0) & (pre[j][1] > 0.0)).any()
    ]


def two_ramps() -> Network:
    r"""``z = relu(x0) + relu(x1) - 0.5`` on ``[-1, 1]^2``, then ``relu(z)``: on the whole
    box ``z`` ranges over ``[-0.5, 1.5]``; on the node ``x0 <= 0`` over ``[-0.5, 0.5]``::

        x0 ── relu ──┐
                     ├── z = . + . - 0.5 ── relu ── out
        x1 ── relu ──┘
    """
    layers = (
        Layer(np.eye(2), np.zeros(2), relu=True),
        Layer(np.array([[1.0, 1.0]]), np.array([-0.5]), relu=True),
        Layer(np.array([[1.0]]), np.zeros(1), relu=False),
    )
    return Network(layers, dtype="float64")


def test_a_split_tightens_the_next_layer_on_two_ramps():
    net, box = two_ramps(), Box.uniform(-1.0, 1.0, 2)
    pre = linear_bounds(net, box)
    nb = NodeBounds(net, box, pre[:2], _unstable(pre, net, 2), DEFAULT)
    assert nb.box_hi[2] >= 1.5  # z: whole-box upper bound 1.5
    split = np.array([-1, 0, 0], dtype=np.int8)  # x0 <= 0
    lo, hi = nb.tighten(split, *nb.clip(split, nb.box_lo, nb.box_hi), after=0)
    exact = node_ranges(net, box, [(0, 0, -1)])
    assert exact is not None
    assert lo[2] <= exact[0][1][0] <= exact[1][1][0] <= hi[2]
    assert hi[2] == pytest.approx(0.5, abs=1e-7) and hi[2] < nb.box_hi[2] - 0.9
    both = np.array([1, -1, 0], dtype=np.int8)  # x0 >= 0, x1 <= 0: z = x0 - 0.5
    lo, hi = nb.tighten(both, *nb.clip(both, nb.box_lo, nb.box_hi), after=0)
    assert lo[2] == pytest.approx(-0.5, abs=1e-7) and hi[2] == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("seed", range(12))
def test_node_bounds_enclose_the_exact_node_ranges(seed):
    case = random_case(seed, depth=(3, 3), width=(3, 4), inputs=(2, 3), max_neurons=12)
    net, box = case.network, case.box
    k = len(net.layers) - 1
    pre = linear_bounds(net, box)
    relus = _unstable(pre, net, k)
    if not relus or relus[0][0] == relus[-1][0]:
        pytest.skip("no unstable neurons in two layers")
    nb = NodeBounds(net, box, pre[:k], relus, DEFAULT)
    rng = np.random.default_rng(seed)
    first = np.flatnonzero(nb.layer_of < relus[-1][0])
    for _ in range(3):
        split = np.zeros(nb.layer_of.size, dtype=np.int8)
        picks = rng.choice(first, size=min(2, first.size), replace=False)
        split[picks] = rng.choice([-1, 1], size=picks.size)
        after = int(nb.layer_of[picks].min())
        lo, hi = nb.tighten(split, *nb.clip(split, nb.box_lo, nb.box_hi), after)
        flat = [(int(nb.layer_of[i]), int(_neuron(nb, i)), int(split[i])) for i in picks]
        exact = node_ranges(net, box, flat)
        if exact is None:
            continue  # an empty node: any bounds hold
        for i in range(nb.layer_of.size):
            j, n = int(nb.layer_of[i]), int(_neuron(nb, i))
            e_lo, e_hi = exact[0][j][n], exact[1][j][n]
            assert lo[i] <= e_lo + SLACK * (1 + abs(e_lo)), (i, lo[i], e_lo)
            assert hi[i] >= e_hi - SLACK * (1 + abs(e_hi)), (i, hi[i], e_hi)


def _neuron(nb: NodeBounds, i: int) -> int:
    at = int(np.searchsorted(nb.start, i, side="right")) - 1
    return int(nb.neurons[at][i - nb.start[at]])


@pytest.mark.parametrize("seed", range(6))
def test_the_split_search_with_node_bounds_keeps_the_oracles_verdicts(seed, monkeypatch):
    monkeypatch.setattr(relu_tree, "NODE_BOUNDS", True)
    monkeypatch.setattr("exactcomp.bab.split.MAX_INPUTS", 0)  # ReLU splits on any input size
    case = random_case(100 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 3), max_neurons=12)
    truth = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert truth.wrong_verdicts(report) == []
    k = len(case.network.layers) - 1
    pre = linear_bounds(case.network, case.box)
    neurons = np.arange(case.network.layers[k - 1].out_features)
    res = prove_signs_relu(case.network, case.box, k - 1, pre, neurons, np.zeros(neurons.size))
    lo, hi = truth.ranges[k - 1]
    assert not (res.inactive & (hi > 0)).any() and not (res.active & (lo < 0)).any()


@pytest.mark.parametrize("node_bounds, top", [(False, 0.75), (True, 0.5)])
def test_the_node_lp_uses_the_node_bounds_on_two_ramps(monkeypatch, node_bounds, top):
    """``max relu(z)`` on the node ``x0 <= 0`` of :func:`two_ramps`: 0.5. The node LP with
    the whole-box triangle of ``z`` (``[-0.5, 1.5]``) reaches 0.75; with the node bounds of
    ``z`` (``[-0.5, 0.5]``) as column bounds, 0.5."""
    monkeypatch.setattr(relu_tree, "NODE_BOUNDS", node_bounds)
    monkeypatch.setattr(relu_bab, "CUTS", False)
    net, box = two_ramps(), Box.uniform(-1.0, 1.0, 2)
    pre = linear_bounds(net, box)
    slp = relu_bab.SplitLP(net, box, 2, pre[:3], DEFAULT, cuts=False)
    tree = relu_tree.Tree(net, slp, 2, 0, 1, 0, DEFAULT)
    split = np.array([-1, 0, 0], dtype=np.int8)
    lower, upper = slp.nb.clip(split, slp.nb.box_lo, slp.nb.box_hi)
    node = tree._solve(relu_tree.Child(split, lower, upper, 0), 10, None)
    assert isinstance(node, relu_tree.Node)
    assert node.top == pytest.approx(top, abs=1e-5)
