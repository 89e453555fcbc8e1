"""Branch and bound over ReLU splits (:mod:`exactcomp.bab.relu`) against exact ground truth.

- a named network whose second-layer neuron is provably inactive, but not by interval,
  linear or LP bounds: splitting its two first-layer ReLUs settles it;
- the ``fast`` engine records it as ``Proof.RELU_SPLIT`` (more than ``MAX_INPUTS`` inputs)
  and the certificate re-check re-proves it by its own search; a false claim is not re-proven;
- a seeded loop over random 8-20 input networks of depth 3-5: every claim of
  :func:`~exactcomp.bab.prove_signs_relu` is true per the region-enumeration oracle
  (:func:`exactcomp.testing.oracle.exact_analysis`), and some are out of reach of the LP;
- the node budget: a search stopped early claims nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.bab import prove_signs_relu
from exactcomp.bab import relu as relu_bab
from exactcomp.bab import split as input_split
from exactcomp.bounds import interval_bounds, linear_bounds, lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import stable_neurons
from exactcomp.stability.phases import from_bounds
from exactcomp.testing.adversarial import false_claim
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_network
from exactcomp.verdicts import Proof, Verdict
from exactcomp.verify import recheck_certificates

PAD = 6  # inputs with zero weights, so that the network has more than MAX_INPUTS inputs


@pytest.fixture(autouse=True)
def _lp_trees_alone(monkeypatch):
    """These tests are about the LP trees: the batched engine that asks first by default
    (:data:`~exactcomp.bab.relu.BATCHED_FIRST`, tested in ``test_beta_bounds.py``) is off."""
    monkeypatch.setattr(relu_bab, "BATCHED_FIRST", False)


def vee_net(pad: int = PAD) -> Network:
    r"""``z = relu(x0 + x1) + relu(x0 - x1) - 2.5`` on ``[-1, 1]^(2 + pad)``: the two ReLUs
    sum to at most 2 (``2 x0`` where both are on, ``x0 + |x1| <= 2`` otherwise), so
    ``max z = -0.5`` (INACTIVE)::

        x0 ──┬──(+1)── relu(x0 + x1) ──(+1)──┐
        x1 ──┤                                ├── z = . - 2.5 ── relu ── out
             └──(+1, -1) relu(x0 - x1) ──(+1)─┘
        x2 .. x7: weight 0

    The triangle of each ReLU on ``[-2, 2]`` allows ``h <= z / 2 + 1``, so the LP reaches
    ``x0 + 2 - 2.5 = 0.5`` at ``x0 = 1``. With both ReLUs split, every leaf is linear and
    the bound is ``-0.5``.
    """
    w0 = np.zeros((2, 2 + pad))
    w0[0, :2] = [1.0, 1.0]
    w0[1, :2] = [1.0, -1.0]
    return Network(
        (
            Layer(w0, np.zeros(2), relu=True),
            Layer(np.array([[1.0, 1.0]]), np.array([-2.5]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


BOX = Box.uniform(-1.0, 1.0, 2 + PAD)


def test_vee_is_out_of_reach_of_the_whole_box_bounds() -> None:
    net = vee_net()
    assert interval_bounds(net, BOX)[1][1][0] > 0.4
    lin = linear_bounds(net, BOX)
    assert lp_layer_bounds(net, BOX, 1, lin)[1][0] > 0.4
    assert exact_analysis(net, BOX).ranges[1][1][0] == pytest.approx(-0.5)


def test_relu_splits_prove_the_vee_inactive(monkeypatch) -> None:
    net = vee_net()
    monkeypatch.setattr(relu_bab, "CUTS", False)  # the triangle LP: splits are needed
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [0])
    assert res.inactive.tolist() == [True] and res.active.tolist() == [False]
    assert res.complete and 3 <= res.nodes <= 7  # the root, at most two levels of splits


def test_ideal_cuts_prove_the_vee_at_its_root() -> None:
    """With the phase columns and one round of ideal cuts (the default) the root LP alone
    is exact here (each first-layer ReLU's convex hull over the box): 2 LPs, no split."""
    net = vee_net()
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [0], max_nodes=2)
    assert res.inactive.tolist() == [True] and res.active.tolist() == [False]
    assert res.complete and res.nodes == 2


def test_exhausted_budget_claims_nothing() -> None:
    net = vee_net()
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [0], max_nodes=1)
    assert not res.complete
    assert not res.inactive.any() and not res.active.any()


def test_a_witness_refutes_and_claims_nothing() -> None:
    """Bias -1.5 instead of -2.5: ``max z = 0.5`` at ``x0 = 1``; asked for ``max z <= 0``,
    the search returns an input where ``z > 0`` and claims nothing."""
    net = vee_net()
    layers = list(net.layers)
    layers[1] = Layer(layers[1].weight, np.array([-1.5]), relu=True)
    net = Network(tuple(layers), dtype="float64")
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [1])
    assert not res.inactive.any() and not res.active.any()
    assert len(res.points) and (net.preactivations(res.points)[1][:, 0] > 0).any()


def test_fast_engine_records_relu_split_and_recheck_reproves_it(monkeypatch) -> None:
    net = vee_net()
    # the ideal cuts phase can settle this tiny case on its own: switch it off here
    monkeypatch.setattr("exactcomp.stability.layer.LayerRun._ideal_cuts", lambda self: None)
    rep = stable_neurons(net, BOX, jobs=1)
    ls = rep.for_layer(1)
    assert ls.verdict[0] == Verdict.INACTIVE and ls.proof[0] == Proof.RELU_SPLIT
    assert rep.stats["bab_nodes"] >= 2 and rep.stats["milps"] == 0
    # likewise the re-check's ideal cuts (they return the bounds they were given)
    monkeypatch.setattr(
        "exactcomp.verify.recheck.ideal_cut_phase", lambda q: from_bounds(q.known[q.k])
    )
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok, res.failures
    assert res.checked["relu_split"] == 1 and res.milps == 0


def test_recheck_does_not_reprove_a_false_claim() -> None:
    """The vee neuron claimed ACTIVE (false: ``z = -2.5`` at ``x = 0``): the re-check's own
    ReLU-split search proves nothing for it, and the claim fails."""
    net = vee_net()
    bad = false_claim(stable_neurons(net, BOX, jobs=1), 1, 0, Verdict.ACTIVE)
    res = recheck_certificates(net, bad, BOX, time_limit=30)
    assert not res.ok and res.checked["relu_split"] == 0
    assert [(f.layer, f.neuron) for f in res.failures] == [(1, 0)]


def test_few_inputs_keep_input_splitting() -> None:
    """At most ``MAX_INPUTS`` inputs, the engine splits inputs, not ReLUs."""
    net = vee_net(pad=0)
    rep = stable_neurons(net, Box.uniform(-1.0, 1.0, 2), jobs=1)
    assert Proof.RELU_SPLIT not in rep.for_layer(1).proof.tolist()
    assert input_split.split_inputs() >= 2


SEEDS = range(8)


def _case(seed: int) -> tuple[Network, Box]:
    rng = np.random.default_rng(1000 + seed)
    box = Box.uniform(-1.0, 1.0, int(rng.integers(8, 21)))
    net = random_network(rng, depth=(3, 5), width=(2, 4), box=box, max_neurons=13, nasty=False)
    return net, box


@pytest.mark.parametrize("cuts", [True, False])
def test_claims_agree_with_the_oracle_and_beat_crown(monkeypatch, cuts: bool) -> None:
    """Random 8-20 input networks, depth 3-5, about a dozen ReLUs: every claim is true per
    the exact oracle, every witness is an input of the box, and the splits prove some
    neurons stable whose linear (CROWN-style) bounds straddle 0 (with and without the
    ideal cuts in the node LPs)."""
    monkeypatch.setattr(relu_bab, "CUTS", cuts)
    gained = 0
    for seed, k, box, res, (true_lo, true_hi) in _open_questions(SEEDS):
        assert (true_hi[res.inactive] <= 1e-9).all(), (seed, k)
        assert (true_lo[res.active] >= -1e-9).all(), (seed, k)
        assert box.contains(res.points).all()
        gained += int(res.inactive.sum() + res.active.sum())
    assert gained >= 1


def _open_questions(seeds):
    """For each case and ReLU layer past the first: the ReLU-split answer on the neurons the
    linear bounds leave open, with their exact ranges from the oracle."""
    for seed in seeds:
        net, box = _case(seed)
        exact = exact_analysis(net, box).ranges
        known = linear_bounds(net, box)
        for k in net.relu_layers[1:]:
            lo, hi = known[k]
            open_ = np.flatnonzero((lo < 0) & (hi > 0))
            res = prove_signs_relu(net, box, k, known, open_, np.zeros(open_.size, int))
            yield seed, k, box, res, (exact[k][0][open_], exact[k][1][open_])


def test_no_unstable_relu_to_split_claims_nothing() -> None:
    """``z = relu(x0 + 2) - relu(x1 + 2) - 2`` has ``max z = 0`` exactly (a tie at a corner);
    both first-layer ReLUs are active on the box, so the LP is exact but its padded bound is
    not below 0, no input shows ``z > 0``, and nothing can be split: the question ends
    without a claim (and without an error)."""
    w0 = np.zeros((2, 8))
    w0[0, 0], w0[1, 1] = 1.0, 1.0
    net = Network(
        (
            Layer(w0, np.full(2, 2.0), relu=True),
            Layer(np.array([[1.0, -1.0]]), np.array([-2.0]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )
    box = Box.uniform(-1.0, 1.0, 8)
    known = [(np.full(2, 1.0), np.full(2, 3.0)), (np.array([-3.0]), np.array([3.0]))]
    res = prove_signs_relu(net, box, 1, known, [0], [1])
    assert not res.inactive.any() and not res.active.any()


def test_call_budget_stops_every_question() -> None:
    """``total_nodes`` caps the LPs of the whole call: with 1 node, the root of the first
    question only, and no claim."""
    net = vee_net()
    res = prove_signs_relu(net, BOX, 1, linear_bounds(net, BOX), [0], [0], total_nodes=1)
    assert res.nodes == 1 and not res.complete
    assert not res.inactive.any() and not res.active.any()


def test_node_budget_shrinks_with_the_lp() -> None:
    """The call's node budget is ``total * REFERENCE_LP_SIZE / (rows + columns)`` for an LP
    larger than the reference, unchanged for smaller ones, never 0 and never raised."""
    ref = relu_bab.REFERENCE_LP_SIZE
    assert relu_bab.node_budget(10_000, (280, 924)) == 10_000
    assert relu_bab.node_budget(10_000, (10, 10)) == 10_000
    assert relu_bab.node_budget(10_000, (2_738, 5_288)) == 10_000 * ref // 8_026
    assert relu_bab.node_budget(3, (ref, 100 * ref)) == 1


def test_a_wide_lp_gets_fewer_nodes(monkeypatch) -> None:
    """The vee with 5,000 idle inputs: its LP has over 3 times the reference's rows and
    columns, so a call budget of 16 nodes (enough for the narrow vee) becomes 4, too
    few for the proof (no claim); the default budget still proves it. Without the cuts, which
    prove the vee at its root."""
    monkeypatch.setattr(relu_bab, "CUTS", False)
    narrow = prove_signs_relu(vee_net(), BOX, 1, linear_bounds(vee_net(), BOX), [0], [1],
                              total_nodes=16)  # fmt: skip
    assert narrow.inactive[0] and narrow.nodes > 4
    net, box = vee_net(5_000), Box.uniform(-1.0, 1.0, 5_002)
    known = linear_bounds(net, box)
    wide = prove_signs_relu(net, box, 1, known, [0], [1], total_nodes=16)
    assert wide.nodes <= 4 and not wide.inactive.any() and not wide.complete
    assert prove_signs_relu(net, box, 1, known, [0], [1]).inactive[0]


def test_a_tree_resumed_between_passes_solves_no_lp_twice(monkeypatch) -> None:
    """Passes of 1, 2, 4, ... LPs (``FIRST`` 1, ``GROWTH`` 2): each pass resumes the vee's
    tree from its open nodes, so the proof takes exactly the LPs of one pass with the whole
    budget (re-running it from its root would cost 1 + 2 + ... more). Without the cuts, so
    that the proof needs splits."""
    monkeypatch.setattr(relu_bab, "CUTS", False)
    net = vee_net()
    known = linear_bounds(net, BOX)
    whole = prove_signs_relu(net, BOX, 1, known, [0], [1])
    monkeypatch.setattr(relu_bab, "FIRST", 1)
    monkeypatch.setattr(relu_bab, "GROWTH", 2)
    resumed = prove_signs_relu(net, BOX, 1, known, [0], [1])
    assert whole.inactive[0] and resumed.inactive[0] and resumed.complete
    assert whole.nodes >= 3 and resumed.nodes == whole.nodes


def test_resumed_trees_with_cuts_agree_with_the_oracle(monkeypatch) -> None:
    """Passes of 1, 2, 4, ... LPs, with the ideal cuts (each question's cut rows are put
    back when its tree resumes): every claim is still true per the exact oracle."""
    monkeypatch.setattr(relu_bab, "FIRST", 1)
    monkeypatch.setattr(relu_bab, "GROWTH", 2)
    for seed, k, _, res, (true_lo, true_hi) in _open_questions(SEEDS[:4]):
        assert (true_hi[res.inactive] <= 1e-9).all(), (seed, k)
        assert (true_lo[res.active] >= -1e-9).all(), (seed, k)
