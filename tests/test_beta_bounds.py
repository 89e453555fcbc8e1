"""Batched optimised linear bounds over ReLU-split nodes (:mod:`exactcomp.bab.beta`) against
exact ground truth.

- on random 2-3 input networks of depth 3, every claimed node bound (random multipliers, and
  after optimisation; with and without the ideal cuts of the root LPs) is at least the exact
  maximum over the node's region (the region
  oracle of ``tests/test_node_bounds.py``, one LP per activation region) and at least every
  grid point of the region;
- at the root the optimised bound reaches the triangle LP's (the dual it optimises), and
  never goes below it;
- the named ``vee`` network: the batched tree proves the neuron inactive and refutes the
  other sign with a real witness;
- every claim of :func:`~exactcomp.bab.beta.prove_signs_beta` is true per the exact oracle,
  with the largest score and with filtered smart branching (:func:`choose_splits`), and
  both rules make the same claims; every split :func:`choose_splits` picks is an unsplit
  unstable neuron of the node; the ``fast`` engine with :data:`~exactcomp.bab.relu.BATCHED_FIRST` keeps the oracle's
  verdicts.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_node_bounds import node_ranges
from test_relu_split import vee_net

from exactcomp.bab import relu as relu_bab
from exactcomp.bab.beta import BetaModel
from exactcomp.bab.beta_tree import BATCH, CUTS_PER_NEURON, Question, prove_signs_beta
from exactcomp.bab.branching import choose_splits
from exactcomp.bab.relu import root_cuts
from exactcomp.bounds import linear_bounds, lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.stability import stable_neurons
from exactcomp.testing.oracle import exact_analysis, exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT

SLACK = 1e-6
"""The LP oracle's own tolerance, relative to ``1 + |value|`` (as in test_node_bounds)."""


def _forward(net: Network, x: np.ndarray, k: int) -> np.ndarray:
    h = x
    for layer in net.layers[:k]:
        z = h @ layer.weight.T + layer.bias
        h = np.maximum(z, 0.0) if layer.relu else z
    return h @ net.layers[k].weight.T + net.layers[k].bias


def _unstable(model: BetaModel) -> list[tuple[int, int]]:
    """(layer, neuron) of each entry of a node's split vector."""
    return [(i, int(n)) for i, la in enumerate(model.layers) for n in la.idx]


def _grid(box: Box, per_dim: int = 41) -> np.ndarray:
    axes = [np.linspace(lo, hi, per_dim) for lo, hi in zip(box.lower, box.upper, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, box.dim)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("cuts", [False, True])
def test_node_bounds_enclose_the_exact_node_max(seed, cuts):
    case = random_case(seed, depth=(3, 3), width=(3, 4), inputs=(2, 3), max_neurons=12)
    net, box = case.network, case.box
    k = len(net.layers) - 1
    pre = linear_bounds(net, box)
    model = BetaModel(net, box, k, pre[:k])
    if cuts:
        n = net.layers[k].out_features
        found = root_cuts(
            net, box, k, pre, np.arange(n), np.zeros(n, int), DEFAULT, CUTS_PER_NEURON
        )
        if not found:
            pytest.skip("no ideal cut separated")
        model.with_cuts(found)
    where = _unstable(model)
    if not where:
        pytest.skip("no unstable neuron")
    rng = np.random.default_rng(seed)  # the nodes: the same with and without cuts
    draw = np.random.default_rng(1000 + seed)  # the multipliers
    grid = _grid(box)
    pre_grid = [_forward(net, grid, j) for j in range(k + 1)]
    n = net.layers[k].out_features
    for _ in range(4):
        split = np.zeros(model.size, np.int8)
        picks = rng.choice(model.size, size=min(2, model.size), replace=False)
        split[picks] = rng.choice([-1, 1], size=picks.size)
        flat = [(where[i][0], where[i][1], int(split[i])) for i in picks]
        try:
            exact = node_ranges(net, box, flat)
        except AssertionError:  # the oracle's own LP failed (HiGHS status 4): grid only
            exact = None
        inside = np.ones(len(grid), bool)
        for j, i, s in flat:
            inside &= s * pre_grid[j][:, i] >= 0.0
        rows = np.repeat(np.arange(n), 2)
        signs = np.tile([1.0, -1.0], n)
        b = rows.size
        sp = np.tile(split, (b, 1))
        alpha = draw.uniform(0, 1, (b, model.size))
        beta = draw.exponential(0.5, (b, model.nbeta)) * (draw.uniform(size=(b, 1)) < 0.7)
        opt = model.optimise(rows, signs, sp, alpha, beta, 30)
        for al, be in ((alpha, beta), opt):
            top, x, _ = model.evaluate(rows, signs, sp, al, be, DEFAULT)
            assert box.contains(x).all()
            if inside.any():
                seen = signs[:, None] * pre_grid[k][inside][:, rows].T
                assert (seen.max(1) <= top + 1e-9).all()
            if exact is None:
                continue  # an empty node (any bound holds), or no oracle answer
            best = np.where(signs > 0, exact[1][k][rows], -exact[0][k][rows])
            assert (best <= top + SLACK * (1 + np.abs(best))).all(), (best, top)


@pytest.mark.parametrize("seed", range(4))
def test_the_optimised_root_reaches_the_triangle_lp(seed):
    # not ``nasty``: huge weights make the rounding pads, not the relaxation, the difference
    case = random_case(
        20 + seed, depth=(3, 3), width=(3, 4), inputs=(2, 3), max_neurons=12, nasty=False
    )
    net, box = case.network, case.box
    k = len(net.layers) - 1
    pre = linear_bounds(net, box)
    model = BetaModel(net, box, k, pre[:k])
    lp_lo, lp_hi = lp_layer_bounds(net, box, k, pre, tol=DEFAULT)
    n = net.layers[k].out_features
    rows, signs = np.repeat(np.arange(n), 2), np.tile([1.0, -1.0], n)
    sp = np.zeros((rows.size, model.size), np.int8)
    alpha = np.tile(model.init_alpha, (rows.size, 1))
    beta = np.zeros((rows.size, model.nbeta))
    al, be = model.optimise(rows, signs, sp, alpha, beta, 300)
    top, _, _ = model.evaluate(rows, signs, sp, al, be, DEFAULT)
    lp = np.where(signs > 0, lp_hi[rows], -lp_lo[rows])
    exact = exact_preactivation_ranges(net, box)[k]
    true = np.where(signs > 0, exact[1][rows], -exact[0][rows])
    assert (true <= top + 1e-9).all()
    scale = 1.0 + np.abs(lp)
    assert (top <= lp + 0.05 * scale).all(), (top, lp)  # near the LP's optimum


def test_the_batched_tree_proves_the_vee_and_refutes_the_other_sign():
    net, box = vee_net(), Box.uniform(-1.0, 1.0, 8)
    pre = linear_bounds(net, box)
    assert pre[1][1][0] > 0.0  # out of reach of the whole-box bounds
    res = prove_signs_beta(net, box, 1, pre, np.array([0]), np.array([0]))
    assert res.inactive[0] and not res.active[0]
    assert res.points.shape[0] >= 1 and box.contains(res.points).all()
    assert (_forward(net, res.points, 1)[:, 0] < 0.0).all()  # a real witness of z < 0


def test_a_spent_budget_claims_nothing():
    net, box = vee_net(), Box.uniform(-1.0, 1.0, 8)
    pre = linear_bounds(net, box)
    spent: list[tuple[int, int]] = []
    one = np.array([0])
    res = prove_signs_beta(net, box, 1, pre, one, np.array([1]), max_nodes=1, spent=spent)
    assert not res.inactive[0] and not res.complete
    assert res.upper[0] >= 0.5 - 1e-6  # the root's bound, still sound
    assert spent == [(0, 1)]  # what batched_first reads for LP_AFTER_SPENT


@pytest.mark.parametrize("seed", range(8))
def test_every_claim_is_true_per_the_oracle(seed):
    case = random_case(40 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 4), max_neurons=14)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    pre = linear_bounds(net, box)
    for k in range(1, len(net.layers)):
        n = net.layers[k].out_features
        claims = []
        for fsb in (1, 4):  # the largest score, then filtered smart branching
            res = prove_signs_beta(net, box, k, pre, np.arange(n), np.zeros(n, int), fsb=fsb)
            true_lo, true_hi = exact[k]
            assert (true_hi[res.inactive] <= 1e-9).all(), (seed, k, fsb)
            assert (true_lo[res.active] >= -1e-9).all(), (seed, k, fsb)
            assert box.contains(res.points).all()
            assert (true_lo >= res.lower - 1e-9).all() and (true_hi <= res.upper + 1e-9).all()
            claims.append((res.inactive.tolist(), res.active.tolist(), res.complete))
        assert claims[0] == claims[1], (seed, k)  # complete trees: the same claims


@pytest.mark.parametrize("fsb", [1, 2, 4, 50])
def test_choose_splits_picks_an_unsplit_unstable_neuron(fsb):
    case = random_case(7, depth=(4, 4), width=(4, 4), inputs=(2, 3), max_neurons=16)
    net, box = case.network, case.box
    k = len(net.layers) - 1
    model = BetaModel(net, box, k, linear_bounds(net, box)[:k])
    if model.size < 2:
        pytest.skip("fewer than two unstable neurons")
    rng = np.random.default_rng(fsb)
    popped, n = [], net.layers[k].out_features
    for t in range(40):
        split = np.zeros(model.size, np.int8)
        picks = rng.choice(model.size, size=rng.integers(0, model.size), replace=False)
        split[picks] = rng.choice([-1, 1], size=picks.size)
        q = Question(0, t % n, 1 if t % 2 else -1, [])
        al, be = model.init_alpha[None], rng.exponential(0.3, (1, model.nbeta))
        _, _, score = model.evaluate(
            np.array([q.j]), np.array([float(q.sign)]), split[None], al, be, DEFAULT
        )
        if score[0].max() > 0.0:  # what the tree pops: a node with a neuron worth splitting
            popped.append((q, (0.0, t, split, al[0], be[0], score[0])))
    chosen = choose_splits(model, popped, DEFAULT, fsb, BATCH)
    assert len(chosen) == len(popped)
    for (_, item), i in zip(popped, chosen, strict=True):
        split, score = item[2], item[5]
        assert 0 <= i < model.size and split[i] == 0 and score[i] > 0.0
        if fsb == 1:
            assert i == int(np.argmax(score))


@pytest.mark.parametrize("seed", range(6))
def test_the_fast_engine_with_batched_first_keeps_the_oracles_verdicts(seed, monkeypatch):
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", True)
    monkeypatch.setattr(relu_bab, "BATCHED_MIN_QUESTIONS", 1)  # tiny layers ask few questions
    monkeypatch.setattr("exactcomp.bab.split.MAX_INPUTS", 0)  # ReLU splits on any input size
    case = random_case(100 + seed, depth=(3, 4), width=(3, 4), inputs=(2, 3), max_neurons=12)
    truth = exact_analysis(case.network, case.box)
    report = stable_neurons(case.network, case.box, jobs=1)
    assert truth.wrong_verdicts(report) == []


def test_the_hand_written_adam_step_is_torchs():
    """:class:`exactcomp.bab.beta._Adam` (written out to spare the ``torch._dynamo`` import)
    takes the same steps as ``torch.optim.Adam``, bit for bit, on a random quadratic."""
    torch = pytest.importorskip("torch")
    from exactcomp.bab.beta import _Adam

    rng = np.random.default_rng(0)
    ours = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    ref = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    adam = _Adam(torch, ((ours[0], 0.1), (ours[1], 0.03)))
    opt = torch.optim.Adam([{"params": [ref[0]], "lr": 0.1}, {"params": [ref[1]], "lr": 0.03}])
    for _ in range(20):
        w = [torch.tensor(rng.normal(size=p.shape), dtype=torch.float32) for p in ours]
        sum((p * c).sum() + (p**2).sum() for p, c in zip(ours, w, strict=True)).backward()
        adam.step()
        opt.zero_grad()
        sum((p * c).sum() + (p**2).sum() for p, c in zip(ref, w, strict=True)).backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))
