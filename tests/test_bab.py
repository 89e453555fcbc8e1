"""Branch and bound over input splits (:mod:`exactcomp.bab`) against exact ground truth.

- a named network whose hidden neuron is provably inactive, but not by interval, linear or
  LP bounds on the whole box: one split settles it; the ``fast`` engine records it as
  ``Proof.BAB`` and the certificate re-check re-proves it by its own search;
- hypothesis: batched sub-box bounds enclose sampled pre-activations, and every INACTIVE /
  ACTIVE claim of :func:`~exactcomp.bab.prove_signs` is true per the region-enumeration
  oracle (:func:`exactcomp.testing.oracle.exact_preactivation_ranges`);
- the node budget: a search stopped early claims nothing it has not proven on every leaf.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import network_and_box

from exactcomp.bab import batch_bounds, prove_signs, split
from exactcomp.bab.batch import SLOPES
from exactcomp.bab.split_boxes import TIE, split_dimension
from exactcomp.bounds import interval_bounds, linear_bounds, lp_layer_bounds
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.stability import stable_neurons
from exactcomp.testing.adversarial import false_claim
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Proof, Verdict
from exactcomp.verify import recheck_certificates

BOX = Box(np.array([-1.0]), np.array([1.0]))


def kink_net() -> Network:
    r"""``z = relu(x) - relu(2x) - 0.1`` on ``x in [-1, 1]``: ``-0.1`` for ``x <= 0``,
    ``-x - 0.1`` for ``x >= 0``, so ``max z = -0.1`` (INACTIVE)::

        x ──┬── relu(x)  ──(+1)──┐
            └── relu(2x) ──(-1)──┴── z = . - 0.1 ── relu ── out

    One ReLU relaxation per neuron cannot see that both ReLUs switch at the same ``x``:
    CROWN bounds ``z <= 0.5 x + 0.4`` (``max 0.9``), the triangle LP ``max 0.4``. Cut at
    ``x = 0``, both ReLUs are linear on each half and the bound is ``-0.1``.
    """
    return Network(
        (
            Layer(np.array([[1.0], [2.0]]), np.zeros(2), relu=True),
            Layer(np.array([[1.0, -1.0]]), np.array([-0.1]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_kink_is_out_of_reach_of_the_whole_box_bounds() -> None:
    net = kink_net()
    assert interval_bounds(net, BOX)[1][1][0] > 0.5
    lin = linear_bounds(net, BOX)
    assert lin[1][1][0] > 0.5
    assert lp_layer_bounds(net, BOX, 1, lin)[1][0] > 0.3
    assert exact_preactivation_ranges(net, BOX)[1][1][0] == pytest.approx(-0.1)


def test_one_split_proves_the_kink_inactive() -> None:
    net = kink_net()
    res = prove_signs(net, BOX, 1, linear_bounds(net, BOX), [0], [0])
    assert res.inactive.tolist() == [True] and res.active.tolist() == [False]
    assert res.complete and res.nodes == 3  # the box, then its two halves


def test_fast_engine_records_bab_and_recheck_reproves_it() -> None:
    net = kink_net()
    rep = stable_neurons(net, BOX, jobs=1)
    ls = rep.for_layer(1)
    assert ls.verdict[0] == Verdict.INACTIVE and ls.proof[0] == Proof.BAB
    assert rep.stats["bab_nodes"] >= 3 and rep.stats["milps"] == 0
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok, res.failures
    assert res.checked["bab"] == 1 and res.milps == 0


def test_recheck_does_not_reprove_a_false_claim() -> None:
    """The kink neuron claimed ACTIVE (false: ``z = -0.1`` at ``x = 0``): the re-check's own
    search proves nothing for it, and the MILP refutes it with an input."""
    net = kink_net()
    bad = false_claim(stable_neurons(net, BOX, jobs=1), 1, 0, Verdict.ACTIVE)
    res = recheck_certificates(net, bad, BOX, time_limit=30)
    assert not res.ok and res.checked["bab"] == 0
    assert [(f.layer, f.neuron, f.refuted) for f in res.failures] == [(1, 0, True)]


def test_exhausted_budget_claims_nothing() -> None:
    net = kink_net()
    res = prove_signs(net, BOX, 1, linear_bounds(net, BOX), [0], [0], max_nodes=1)
    assert res.nodes == 1 and not res.complete
    assert not res.inactive.any() and not res.active.any()


def test_a_spent_cpu_limit_starts_no_batch() -> None:
    """The CPU-second cap (so that verdicts do not depend on the machine's load) stops the
    search like the node budget: no batch starts, nothing is claimed; a generous one proves."""
    net = kink_net()
    res = prove_signs(net, BOX, 1, linear_bounds(net, BOX), [0], [0], cpu_limit=0.0)
    assert res.nodes == 0 and not res.complete
    assert not res.inactive.any() and not res.active.any()
    res = prove_signs(net, BOX, 1, linear_bounds(net, BOX), [0], [0], cpu_limit=60.0)
    assert res.inactive.tolist() == [True] and res.complete


def test_sides_limit_the_claims() -> None:
    """Asked only for ``min z >= 0`` (a negative value was seen), nothing is claimed."""
    net = kink_net()
    res = prove_signs(net, BOX, 1, linear_bounds(net, BOX), [0], [-1])
    assert not res.inactive.any() and not res.active.any()


def test_a_tie_on_a_face_leaves_the_tree_at_once() -> None:
    """``z = -relu(x0 + x1)`` on ``[0, 1]^2`` has ``max z = 0`` exactly, on the corner
    ``x = 0``: no padded bound proves ``z <= 0`` there however small the box. The neuron
    leaves the tree unclaimed within a few nodes (the oracle calls it INACTIVE; the engine
    keeps it UNDECIDED, which is sound)."""
    net = Network(
        (
            Layer(np.array([[1.0, 1.0]]), np.zeros(1), relu=True),
            Layer(np.array([[-1.0]]), np.zeros(1), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )
    box = Box.uniform(0.0, 1.0, 2)
    assert exact_preactivation_ranges(net, box)[1][1][0] == 0.0
    res = prove_signs(net, box, 1, linear_bounds(net, box), [0], [0])
    assert not res.inactive.any() and not res.active.any()
    assert res.nodes <= 8


def test_a_loose_near_tie_gets_a_tree_of_its_own(monkeypatch) -> None:
    r"""The kink with bias -1: ``z = relu(x) - relu(2x) - 1`` on ``[-1, 1]``, ``max z = -1``
    (INACTIVE)::

        x ──┬── relu(x)  ──(+1)──┐
            └── relu(2x) ──(-1)──┴── z = . - 1 ── relu ── out

    CROWN's bound on the whole box, ``0.5 x + 0.5 - 1 <= 0`` plus its rounding pad, lands
    within ``TIE`` pads of 0, but ``z`` is -2 at the corner ``x = 1`` that maximises it: the
    bound is loose, not a tie. The shared tree gives the neuron up there (it used to stay
    undecided); the second tree splits at ``x = 0`` and proves it (1 + 3 nodes). With the
    fixed slopes only: optimised ones prove it at the root (``tests/test_alpha_slopes.py``)."""
    monkeypatch.setattr(split, "OPTIMISE", False)
    net = Network(
        (
            Layer(np.array([[1.0], [2.0]]), np.zeros(2), relu=True),
            Layer(np.array([[1.0, -1.0]]), np.array([-1.0]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )
    known = linear_bounds(net, BOX)
    bb = batch_bounds(net, BOX.lower[None], BOX.upper[None], 1, known, DEFAULT, rows=np.array([0]))
    assert 0.0 < bb.upper[1][0, 0] <= TIE * bb.pads[0, 1]  # a near tie at the root
    assert exact_preactivation_ranges(net, BOX)[1][1][0] == pytest.approx(-1.0)
    res = prove_signs(net, BOX, 1, known, [0], [0])
    assert res.inactive.tolist() == [True] and res.active.tolist() == [False]
    assert res.complete and res.nodes == 4
    alone = prove_signs(net, BOX, 1, known, [0], [0], rule="smear")  # no second tree
    assert alone.inactive.tolist() == [True] and alone.nodes == 3


def test_split_dimension_follows_the_smear() -> None:
    """Two inputs; the unknown neuron's bound depends on input 1 only: input 1 is cut, even
    though input 0 is wider; with no coefficients, the widest input."""
    lo, hi = np.array([[0.0, 0.0]]), np.array([[4.0, 1.0]])
    coef = np.array([[[0.0, 1.0], [0.0, -2.0]]])  # rows: lower, negated upper of 1 neuron
    assert split_dimension(lo, hi, coef, np.array([[True]])).tolist() == [1]
    assert split_dimension(lo, hi, 0 * coef, np.array([[True]])).tolist() == [0]


def slope_net() -> Network:
    r"""``z = -relu(x) + (2/3) relu(x + 1) - 2/3 - 0.1 = -relu(x) + (2/3) x - 0.1`` on
    ``x in [-1, 2]``: ``max z = -0.1`` at ``x = 0`` (INACTIVE)::

        x ──┬── relu(x)     ──(-1) ──┐
            └── relu(x + 1) ──(2/3)──┴── z = . - 2/3 - 0.1 ── relu ── out

    The upper bound of ``z`` uses the *lower* relaxation ``h >= alpha x`` of ``relu(x)``
    (``relu(x + 1) = x + 1`` is exact). CROWN's adaptive slope is 1 (``u = 2 > -l = 1``):
    ``z <= -x/3 - 0.1``, ``max 0.233``; slope 0: ``max 1.233``; the chord's slope
    ``u / (u - l) = 2/3`` gives ``z <= -0.1``, the exact maximum, with no split.
    """
    return Network(
        (
            Layer(np.array([[1.0], [1.0]]), np.array([0.0, 1.0]), relu=True),
            Layer(np.array([[-1.0, 2.0 / 3.0]]), np.array([-2.0 / 3.0 - 0.1]), relu=True),
            Layer(np.array([[1.0]]), np.zeros(1), relu=False),
        ),
        dtype="float64",
    )


def test_the_tightest_lower_slope_proves_without_a_split() -> None:
    net, box = slope_net(), Box(np.array([-1.0]), np.array([2.0]))
    known = linear_bounds(net, box)
    lo, hi, rows = box.lower[None], box.upper[None], np.array([0])
    adaptive = batch_bounds(net, lo, hi, 1, known, DEFAULT, rows=rows)
    assert adaptive.upper[1][0, 0] == pytest.approx(0.7 / 3.0)
    best = batch_bounds(net, lo, hi, 1, known, DEFAULT, rows=rows, slopes=SLOPES)
    assert -0.1 <= best.upper[1][0, 0] <= -0.1 + 1e-6  # the pad: about 1.5e-8
    assert best.pads[0, 1] < 1e-6  # the pad of the bound kept (the chord's)
    assert abs(best.coef[0, 1, 0]) < 1e-6  # and its input coefficient (negated upper row)
    # the split rule reads the largest coefficient of any rule, here CROWN's
    assert best.spread is not None and (best.spread >= np.abs(adaptive.coef)).all()
    res = prove_signs(net, box, 1, known, [0], [0])
    assert res.inactive.tolist() == [True] and res.nodes == 1


def _sub_boxes(box: Box, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = box.sample(n, rng), box.sample(n, rng)
    return np.minimum(a, b), np.maximum(a, b)


@settings(max_examples=40)
@given(network_and_box(inputs=(1, 4), depth=(1, 4), max_neurons=10))
def test_batch_bounds_enclose_samples_of_each_sub_box(case) -> None:
    net, box = case
    k = max(net.relu_layers)
    known = linear_bounds(net, box)
    rng = np.random.default_rng(0)
    lo, hi = _sub_boxes(box, rng, 6)
    rows = np.arange(net.layers[k].out_features)
    bb = batch_bounds(net, lo, hi, k, known, DEFAULT, rows=rows, slopes=SLOPES, all_layers=True)
    for b in range(len(lo)):
        sub = Box(lo[b], hi[b])
        x = np.vstack([sub.sample(200, rng), lo[b], hi[b]])
        z = net.preactivations(x)
        for j in range(k + 1):
            assert (z[j] >= bb.lower[j][b] - 1e-12 * (1 + np.abs(z[j]))).all()
            assert (z[j] <= bb.upper[j][b] + 1e-12 * (1 + np.abs(z[j]))).all()


@settings(max_examples=60)
@given(network_and_box(inputs=(1, 4), depth=(2, 5), max_neurons=10))
def test_every_bab_claim_is_true_per_the_oracle(case) -> None:
    net, box = case
    exact = exact_preactivation_ranges(net, box)
    known: list = []
    for k in net.relu_layers:
        b = linear_bounds(net, box, known + [None])[k]
        n = b[0].size
        res = prove_signs(net, box, k, known + [b], np.arange(n), np.zeros(n), max_nodes=2000)
        lo, hi = exact[k]
        margin = 1e-9 * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
        assert (hi[res.inactive] <= margin[res.inactive]).all(), (k, res.inactive, hi)
        assert (lo[res.active] >= -margin[res.active]).all(), (k, res.active, lo)
        # the claims tighten the bounds the next layer's search starts from
        blo, bhi = b[0].copy(), b[1].copy()
        bhi[res.inactive] = np.minimum(bhi[res.inactive], 0.0)
        blo[res.active] = np.maximum(blo[res.active], 0.0)
        known.append((blo, bhi))


@pytest.mark.parametrize("seed", [1, 5, 9, 13])
def test_soak_split_cases_have_no_wrong_answers(seed: int) -> None:
    """The soak's deep few-input cases (``splits`` family; every check of the soak)."""
    from benchmarks.soak_families import run_case
    from exactcomp.testing.soak_results import SoakOptions

    case_json, result = run_case("splits", seed, SoakOptions(time_limit=5.0))
    assert 2 <= len(case_json["box"]["lower"]) <= 8
    assert not result.findings, result.findings
