"""Issue 15, sixth round: the exact joint MILP of two networks in decision form.

Ground truth: the oracle :func:`exactcomp.testing.max_output_difference` (the exact
``max |f - g|`` by enumerating the joint linear regions of tiny networks). With the phase
columns binary, the joint rows of :mod:`exactcomp.verify.difflp` are the exact MILP, so the
decision "``max s (g_j - f_j) <= tau``?" (:mod:`exactcomp.verify.diffmilp`) must be
*proven* a little above the exact value, never below it (a *counterexample* there, checked
in float64), and a run that ends without a verdict claims nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.domain import Box
from exactcomp.highs.milp import MilpRun
from exactcomp.highs.status import Termination
from exactcomp.network import Network
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.testing import max_output_difference
from exactcomp.verify import diffmilp
from exactcomp.verify.charge import Charger
from exactcomp.verify.diffmilp import JointMilp, Verdict, milp_within
from exactcomp.verify.pairs import Pair

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 5, 4, 2)) -> Network:
    return gaussian_mlp(seed, widths)


def _output(net: Network, j: int) -> Network:
    """``net`` restricted to its output ``j``."""
    last = net.layers[-1]
    one = type(last)(last.weight[[j]], last.bias[[j]], relu=last.relu)
    return net.replace_layers([*net.layers[:-1], one])


CASES = [
    ((2, 5, 4, 2), 0, 4),
    ((2, 5, 4, 2), 1, 2),
    ((2, 6, 6, 2), 0, 2),
    ((3, 4, 4, 3), 0, 4),
    ((3, 4, 4, 3), 1, 2),
]


@pytest.mark.parametrize(("widths", "seed", "bits"), CASES)
def test_decision_is_proven_just_above_the_exact_max_and_refuted_just_below(widths, seed, bits):
    """Per output ``j``: at 1.01 x the exact ``max |f_j - g_j|`` both sides are proven; at
    0.99 x one side is not, and the point the solver found is a float64 counterexample whose
    value lies between the question's ``tau`` and the exact maximum."""
    f = _net(seed, widths)
    box = Box(-np.ones(widths[0]), np.ones(widths[0]))
    g = quantize_network(f, [bits] * 3).network
    milp = JointMilp(Pair.prepare(f, g, box, range(widths[-1])), box)
    for j in range(widths[-1]):
        exact = max_output_difference(_output(f, j), _output(g, j), box).value
        above = [milp.decide(j, s, 1.01 * exact + 1e-4, 30.0) for s in (1.0, -1.0)]
        assert all(a.verdict is Verdict.PROVEN for a in above)
        tau = 0.99 * exact - 1e-4
        below = [milp.decide(j, s, tau, 30.0) for s in (1.0, -1.0)]
        assert all(b.verdict is not Verdict.PROVEN or b.seen <= tau for b in below)
        refuted = [b for b in below if b.verdict is Verdict.COUNTEREXAMPLE]
        assert refuted
        assert all(tau < b.seen <= exact + 1e-9 for b in refuted)


def test_charger_claims_the_target_where_the_lp_cannot():
    """``2-6r-6r-2`` (seed 2) at 4 bits on [-1, 1]^2 (exact 0.930, joint LP with phases 1.977,
    ``tests/test_lossy_phases.py``): with the MILP the charger proves the target 1.0; without
    it, the LP's 1.977 stands."""
    f = _net(2, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    exact = max_output_difference(f, g, BOX).value
    charger = Charger(f, [BOX])
    lp = charger.proven(g, target=1.0, lp_seconds=30.0)
    got = charger.proven(g, target=1.0, lp_seconds=30.0, milp_seconds=30.0)
    assert exact == pytest.approx(0.930, abs=1e-3)
    assert lp > 1.9
    assert exact <= got <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_charger_claim_with_the_milp_is_never_below_the_exact_max(seed):
    """Targets just below and just above the exact maximum (2-bit and 3-bit copies): the
    claim is never below the oracle's value; above it, it is the target itself."""
    f = _net(seed, (2, 6, 6, 2))
    g = quantize_network(f, [2 + seed % 2] * 3).network
    exact = max_output_difference(f, g, BOX).value
    charger = Charger(f, [BOX])
    for target in (0.98 * exact, 1.02 * exact):
        got = charger.proven(g, target=target, lp_seconds=10.0, milp_seconds=10.0)
        assert exact <= got + 1e-9
    assert got == pytest.approx(1.02 * exact)


def _no_verdict(*_args, **_kwargs) -> MilpRun:
    return MilpRun(Termination.TIME_LIMIT, "Time limit reached", None, -0.5)


def _empty_with_a_point_beyond(model, *_args, **_kwargs) -> MilpRun:
    """'Infeasible', but with a solution whose input is far off: the re-check must see it."""
    return MilpRun(Termination.INFEASIBLE, "Infeasible", np.full(model.matrix.shape[1], 1.0), 0.0)


def test_a_time_out_claims_nothing(monkeypatch):
    """A MILP run that ends at its time limit (a stand-in solver) proves no side, and the
    charger's claim is the LP's, unchanged."""
    f = _net(2, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    charger = Charger(f, [BOX])
    lp = charger.proven(g, target=1.0, lp_seconds=30.0)
    monkeypatch.setattr(diffmilp, "run_milp", _no_verdict)
    milp = JointMilp(Pair.prepare(f, g, BOX, range(2)), BOX)
    assert milp.decide(0, 1.0, 1.0, 5.0).verdict is Verdict.UNKNOWN
    assert not milp_within(milp.pair, BOX, 1.0, 5.0, [(0, 1.0), (0, -1.0)])
    assert charger.proven(g, target=1.0, lp_seconds=30.0, milp_seconds=5.0) == lp


def test_a_point_beyond_tau_overrules_an_infeasible_status(monkeypatch):
    """The solver's points are re-evaluated in float64: a status 'infeasible' that comes with a
    point beyond ``tau`` is no proof."""
    f = _net(2, (2, 6, 6, 2))
    g = quantize_network(f, [4] * 3).network
    milp = JointMilp(Pair.prepare(f, g, BOX, range(2)), BOX)
    x = np.ones((1, 2))
    worst = max(abs(float((g.forward(x) - f.forward(x))[0, j])) for j in range(2))
    tau = 0.5 * worst
    monkeypatch.setattr(diffmilp, "run_milp", _empty_with_a_point_beyond)
    got = [milp.decide(j, s, tau, 5.0) for j in range(2) for s in (1.0, -1.0)]
    assert any(a.verdict is Verdict.COUNTEREXAMPLE for a in got)
    assert all(a.verdict is not Verdict.PROVEN or a.seen <= tau for a in got)


def test_no_question_below_the_margin():
    """A ``tau`` at or below the margin ``m`` is never asked (``tau - m <= 0``): unknown."""
    f = _net(0)
    g = quantize_network(f, [8] * 3).network
    milp = JointMilp(Pair.prepare(f, g, BOX, range(2)), BOX)
    assert milp.decide(0, 1.0, 1e-9, 5.0).verdict is Verdict.UNKNOWN
