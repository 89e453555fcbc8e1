"""``compress --tol`` within one deadline (issue 15): no proof started past its phase's end.

The networks are tiny deep ``f`` on two inputs::

    x (2 inputs) -> [4 ReLU] -> [8 ReLU] -> [3 ReLU] -> 2 outputs    f
    x            -> [the same, pruned by the search]                  g

Time is the fake clock's (:mod:`exactcomp.testing.clock`): each symbolic bound is made to
take a fixed number of seconds, so which proofs start before a deadline is exact on any
machine. Ground truth of every claim: the exact ``max |f - g|`` of the region-enumeration
oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp, slow_symbolic_proofs

from exactcomp import approx
from exactcomp.conv import ConvSpec
from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite import merging
from exactcomp.rewrite.acceptance import Gate
from exactcomp.rewrite.edits import relu_ranges
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.verify import charge
from exactcomp.verify.charge import Charger

BOX = Box.uniform(-1.0, 1.0, 2)
FAST = {"tighten_seconds": 0.0, "lp_seconds": 0.0, "split_seconds": 0.0}


def _net(seed: int, widths=(2, 4, 8, 3, 2)) -> Network:
    return gaussian_mlp(seed, widths, scaled=True, dtype="float64")


def _pruned(f: Network, k: int, i: int, j: int) -> Network:
    """``f`` with weight ``(i, j)`` of layer ``k`` set to 0."""
    layers = list(f.layers)
    w = np.array(layers[k].weight)
    w[i, j] = 0.0
    layers[k] = Layer(w, layers[k].bias, layers[k].relu)
    return Network(tuple(layers), dtype=f.dtype)


def test_the_gate_starts_no_proof_that_would_end_past_its_end(monkeypatch):
    """Proofs of 10 s, a gate ending 25 s on: the first two run (the second starts at 10 s,
    ends at 20), the third would end at 30: refused (``inf``, nothing claimed); a network
    proven before is still served, its joint LP cut to the time left (past the end: none,
    the symbolic bound). Every bound holds (the oracle)."""
    clock = FakeClock().install(monkeypatch)
    started = slow_symbolic_proofs(monkeypatch, clock, 10.0)
    lp_given: list[float] = []
    real_lp = charge.lp_difference_bounds

    def lp(pair, box, seconds, **kw):
        lp_given.append(seconds)
        return real_lp(pair, box, seconds, **kw)

    monkeypatch.setattr(charge, "lp_difference_bounds", lp)
    f = _net(0)
    gs = [_pruned(f, 1, i, 0) for i in range(3)]
    begun = clock.now
    gate = Gate(Charger(f, [BOX]), begun + 25.0)
    first, second = gate.proven(gs[0]), gate.proven(gs[1])
    assert gate.proven(gs[2]) == np.inf
    assert started == [begun, begun + 10.0] and clock.now == begun + 20.0
    assert gate.proven(gs[0]) == first  # memoised: served past the last start
    assert gate.proven(gs[1], lp_seconds=60.0) <= second and lp_given == [5.0]
    clock.advance(10.0)
    assert gate.proven(gs[1], lp_seconds=60.0) == second and lp_given == [5.0]
    assert gate.calls == 5  # the charger's: the refused proof is not counted
    for g, bound in zip(gs, (first, second), strict=False):
        assert max_output_difference(f, g, BOX).value <= bound + 1e-9


@pytest.mark.parametrize("limit", [20.0, 45.0, 90.0])
def test_compress_tol_starts_no_proof_past_its_deadline(monkeypatch, limit):
    """Symbolic proofs of 5 s (fake clock): every proof ends by the claim's end,
    ``(1 - FINAL_SHARE / 2) * time_limit`` after the call's start, those of the search
    phases by ``(1 - FINAL_SHARE) * time_limit``; the report's seconds are within the
    limit, and the claim holds (the oracle)."""
    clock = FakeClock().install(monkeypatch)
    started = slow_symbolic_proofs(monkeypatch, clock, 5.0)
    sampled_at: list[float] = []
    real_sampled = approx.sampled_max_difference

    def sampled(*args, **kw):
        sampled_at.append(clock.now)
        return real_sampled(*args, **kw)

    monkeypatch.setattr(approx, "sampled_max_difference", sampled)
    f, tol, begun = _net(1), 0.5, clock.now
    res = approx.compress_lossy(f, BOX, tol, time_limit=limit, **FAST)
    assert len(started) >= 2
    assert all(t + 5.0 <= begun + (1 - approx.FINAL_SHARE / 2) * limit + 1e-9 for t in started)
    search_end = begun + (1 - approx.FINAL_SHARE) * limit
    assert all(t + 5.0 <= search_end + 1e-9 for t in started if t < sampled_at[0] - 5.0)
    assert res.report["seconds"] <= limit
    assert res.proven <= tol
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


@pytest.mark.parametrize("rewrite_seconds", [0.0, 5.0, 9.0])
def test_the_exact_pass_keeps_its_rewrite_within_its_share(monkeypatch, rewrite_seconds):
    """``compress --tol``'s exact pass (``api.compress``) with an analysis that takes all the
    time it is given and a rewrite of ``rewrite_seconds`` (neither looks at the clock after
    it starts): the analysis ends ``EXACT_REWRITE_SHARE`` of the pass's share before the
    pass's deadline, so a rewrite within that part ends by the deadline (at 90 s: 9 s of
    22.5 s). Before, the analysis ran to the deadline and the rewrite came on top."""
    from exactcomp import api
    from exactcomp.api import compressing

    clock = FakeClock().install(monkeypatch)
    real_stable, real_rewrite = compressing.stable_neurons, compressing.compress_network
    asked, ended = [], []

    def slow_stable(*args, deadline=None, **kw):
        asked.append(deadline)
        clock.advance(max(deadline - clock.now, 0.0))
        return real_stable(*args, deadline=deadline, **kw)

    def slow_rewrite(*args, **kw):
        clock.advance(rewrite_seconds)
        return real_rewrite(*args, **kw)

    def exact(*args, **kw):
        out = api.compress(*args, **kw)
        ended.append((clock.now, kw["deadline"]))
        return out

    monkeypatch.setattr(compressing, "stable_neurons", slow_stable)
    monkeypatch.setattr(compressing, "compress_network", slow_rewrite)
    f, limit = _net(3), 90.0
    res = approx.compress_lossy(f, BOX, 0.5, time_limit=limit, exact=exact, **FAST)
    (now, deadline), share = ended[0], approx.EXACT_SHARE * limit
    assert asked == [pytest.approx(deadline - approx.EXACT_REWRITE_SHARE * share)]
    assert now <= deadline + 1e-9
    assert res.report["seconds"] <= limit
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


def test_with_time_enough_compress_tol_keeps_what_it_found_without_a_deadline(monkeypatch):
    """Proofs of 5 s and 3,000 s: the same network as with no time limit at all."""
    clock = FakeClock().install(monkeypatch)
    slow_symbolic_proofs(monkeypatch, clock, 5.0)
    f, tol = _net(2), 0.5
    res = approx.compress_lossy(f, BOX, tol, time_limit=3000.0, **FAST)
    free = approx.compress_lossy(f, BOX, tol, time_limit=np.inf, **FAST)
    assert res.report["parameters_after"] == free.report["parameters_after"] < 82
    for a, b in zip(res.network.layers, free.network.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


@pytest.mark.parametrize("prepare_seconds", [0.0, 2.0])
def test_compress_tol_tightens_only_where_the_bounds_are_cheap(monkeypatch, prepare_seconds):
    """``f``'s symbolic bounds take ``prepare_seconds`` (fake clock): at most
    :data:`~exactcomp.approx.PREPARE_SHARE` of the 90 s (0.9 s), the LP tightening runs with
    its 20 s; above, none (a proven claim still)."""
    clock = FakeClock().install(monkeypatch)
    real_prepare, real_tight, given = charge.Pair.prepare, charge.tightened_pair, []

    def slow_prepare(*args, **kw):
        clock.advance(prepare_seconds)
        return real_prepare(*args, **kw)

    def tightened(pair, box, seconds, **kw):
        given.append(seconds)
        return real_tight(pair, box, seconds, **kw)

    monkeypatch.setattr(charge.Pair, "prepare", slow_prepare)
    monkeypatch.setattr(charge, "tightened_pair", tightened)
    f, tol = _net(3), 0.3
    res = approx.compress_lossy(f, BOX, tol, time_limit=90.0, lp_seconds=0.0, split_seconds=0.0)
    assert given == ([20.0] if prepare_seconds == 0.0 else [])
    assert res.proven <= tol
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9


def test_no_merge_is_proposed_in_or_into_a_convolution():
    """x[1,3,3] -> Conv 2x(2x2) -> Relu -> dense 3 -> Relu -> dense 1: the search edits no
    neuron of the convolution (nor one feeding it), so no merge is proposed there; the
    dense layer's neurons still get theirs."""
    rng = np.random.default_rng(0)
    spec = ConvSpec((1, 3, 3), np.array([[[[1.0, -1.0], [0.5, 2.0]]], [[[-1.0, 1.0], [1.0, 1.0]]]]))
    conv = Layer(spec.dense(), np.repeat([0.0, -0.5], 4), True, spec)
    w = rng.normal(size=(3, 8))
    dense = Layer(np.vstack([w[:2], 1.01 * w[0]]), np.array([0.1, 0.2, 0.1]), True)
    f = Network((conv, dense, Layer(rng.normal(size=(1, 3)), [0.0], False)), dtype="float64")
    box = Box.uniform(-1.0, 1.0, 9)
    charger = Charger(f, [box])
    merges = merging.merge_candidates(f, relu_ranges(f, charger), [box], charger.roots())
    assert merges and all(k == 1 for k, _ in merges)


def test_past_the_deadline_a_rounding_excess_is_capped_and_a_wrong_proof_still_shows(monkeypatch):
    """A sampled float64 value above the ``proven`` bound handed in is checked in exact
    arithmetic when there is time (no deadline, or one far enough). Past the deadline (fake
    clock: every forward row 1 ms) an excess within the re-check's evaluation tolerance is
    capped at ``proven`` without the check, and a larger one (``proven`` half the true
    maximum here: a wrong proof) is checked all the same, and shows."""
    from exactcomp.verify import falsify

    clock = FakeClock().install(monkeypatch)
    f = _net(4)
    g = _pruned(_pruned(f, 1, 0, 0), 2, 1, 1)
    exact = max_output_difference(f, g, BOX).value
    checks: list[int] = []
    real_exact = falsify.exact_difference

    def counted(*args, **kw):
        checks.append(1)
        return real_exact(*args, **kw)

    monkeypatch.setattr(falsify, "exact_difference", counted)
    free = falsify.sampled_max_difference(f, g, [BOX], proven=exact / 2)
    assert checks == [1] and exact / 2 < free <= exact + 1e-9
    real_forward = Network.forward

    def slow(self, x):
        clock.advance(1e-3 * len(np.atleast_2d(x)))
        return real_forward(self, x)

    monkeypatch.setattr(Network, "forward", slow)
    found = falsify.sampled_max_difference(f, g, [BOX], deadline=clock.now)
    late = falsify.sampled_max_difference(f, g, [BOX], proven=found - 1e-8, deadline=clock.now)
    assert checks == [1] and late == found - 1e-8
    wrong = falsify.sampled_max_difference(f, g, [BOX], proven=exact / 2, deadline=clock.now)
    assert checks == [1, 1] and wrong > exact / 2
    ample = clock.now + 1000.0  # time enough for every point and the check
    assert falsify.sampled_max_difference(f, g, [BOX], proven=exact / 2, deadline=ample) == free
    assert checks == [1, 1, 1]


# ------------------------------------- the phases planned by the proofs that fit (cifartol21)


def test_a_phase_runs_only_where_the_proofs_it_needs_fit_in_its_share():
    """cifar_base_kw's figures: proofs of 7 s, 45 s left: magnitude's bisection (15 proofs)
    does not fit in its quarter, low rank's 11 not in half the rest, the greedy's bisection
    (17 + 4 amplification probes) not in the symbolic half of its time: no LP. Proofs of
    10 ms (the digits models) or not measured (0): every phase."""
    plan = approx.plan_phases(7.0, 45.0, magnitude=15, lowrank=11, search=21)
    assert (plan.magnitude, plan.lowrank, plan.lp) == (False, False, False)
    assert approx.plan_phases(0.01, 45.0, 15, 11, 21).facts() == {
        "proof_seconds": 0.01, "magnitude": True, "lowrank": True, "lp": True,
    }  # fmt: skip
    assert approx.plan_phases(0.0, 1.0, 15, 11, 21) == approx.PhasePlan(0.0, True, True, True)
    # the shares pass on: magnitude skipped leaves low rank half of all 45 s (3 proofs fit)
    assert approx.plan_phases(7.0, 45.0, 15, 3, 21).lowrank
    assert not approx.plan_phases(7.0, 45.0, 1, 3, 21).lowrank  # after magnitude's quarter: 2


def test_a_refused_proof_ends_the_bisection():
    """``longest_prefix`` on [0, 64): the second probe is refused (``inf``): no third."""
    from exactcomp.rewrite.acceptance import longest_prefix

    asked: list[int] = []

    def bound(m: int) -> float:
        asked.append(m)
        return 0.0 if len(asked) == 1 else np.inf

    assert longest_prefix(bound, 1.0, 0, 64, np.inf) == (32, 0.0)
    assert asked == [32, 48]


@pytest.mark.parametrize("seconds", [5.0, 0.001])
def test_compress_tol_skips_the_phases_that_cannot_finish(monkeypatch, seconds):
    """Symbolic proofs of 5 s (fake clock), 90 s: magnitude's bisection over the 70 weights
    needs 7 proofs, 35 s, more than its quarter of the ~71 s left after the probe: skipped
    (no proof but the probe, nothing picked), its time the greedy search's; proofs of 1 ms:
    every phase runs, as before. The claim holds (the oracle), the deadline too."""
    clock = FakeClock().install(monkeypatch)
    started = slow_symbolic_proofs(monkeypatch, clock, seconds)
    f, tol, begun = _net(1), 0.5, clock.now
    res = approx.compress_lossy(f, BOX, tol, time_limit=90.0, **FAST)
    plan = res.report["phase_plan"]
    assert plan["proof_seconds"] == pytest.approx(seconds) and plan["magnitude"] == (seconds < 1)
    if seconds > 1.0:
        assert res.report["strategies"]["magnitude"]["symbolic_pick"] == 0
    assert all(t + seconds <= begun + 90.0 + 1e-9 for t in started)
    assert res.report["seconds"] <= 90.0
    assert res.proven <= tol
    assert max_output_difference(f, res.network, BOX).value <= res.proven + 1e-9
