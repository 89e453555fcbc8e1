"""The certificate re-check's exact relaxation of feeding binaries, and its two-pass timing.

For the question "max s*z_kj", the binaries of layer k-1 whose weight has s*W_k[j,i] <= 0 are
solved as continuous (:meth:`exactcomp.milp.layer.LayerMilp.relaxable`, the engine's column
mask); the re-check's decisions must not change with it. That the relaxed optimum equals the
exact one is checked against the oracle in ``tests/test_milp.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from exactcomp.bab import relu, split
from exactcomp.domain import Box
from exactcomp.milp.highs import Answer, solve_question
from exactcomp.milp.layer import LayerMilp, layer_milp
from exactcomp.network import Network
from exactcomp.testing.clock import FakeClock
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import LayerStability, StabilityReport, Verdict
from exactcomp.verify import recheck
from exactcomp.verify.formulation import best_bounds

SEEDS = range(6)


@pytest.fixture(autouse=True)
def _no_input_splits(monkeypatch):
    """These tests are about the MILP claims: no input splits to settle them first."""
    monkeypatch.setattr(split, "MAX_INPUTS", 0)
    monkeypatch.setattr(relu, "RELU_SPLITS", False)  # nor ReLU splits


@functools.cache
def _case(seed: int):
    # not ``nasty``: with weights of 1e6 reading neurons of 1e-6, HiGHS' tolerances move the
    # MILP optimum itself, relaxed or not, so it could not be compared with the oracle
    case = random_case(seed, depth=(2, 3), width=(3, 5), inputs=(2, 3), max_neurons=11, nasty=False)
    return case.network, case.box, exact_preactivation_ranges(case.network, case.box)


def _binaries(layer: LayerMilp) -> int:
    return int(layer.milp.integer.sum())


def _layer(net: Network, box: Box, k: int) -> LayerMilp:
    bounds = best_bounds(net, box, DEFAULT)
    magnitude = np.maximum(np.abs(bounds[k][0]), np.abs(bounds[k][1]))
    return layer_milp(net, box, k, bounds, magnitude)


def _claims_report(net: Network, box: Box, exact, clear: float = 1e-4):
    """A report claiming every neuron of the ReLU layers whose sign the oracle settles by at
    least ``clear`` (relative): a stable neuron is claimed truthfully or, every other time,
    the opposite way; an unstable one is claimed INACTIVE or ACTIVE (false either way).
    Returns (report, keys of true claims, keys of false claims)."""
    layers, true, false = [], set(), set()
    flip = False
    for k, layer in enumerate(net.layers):
        if not layer.relu:
            continue
        ls = LayerStability.undecided(k, layer.out_features)
        lo, hi = exact[k]
        for j in range(layer.out_features):
            c = clear * (1.0 + max(abs(lo[j]), abs(hi[j])))
            flip = not flip
            if hi[j] < -c or lo[j] > c:
                truth = Verdict.INACTIVE if hi[j] < -c else Verdict.ACTIVE
                other = Verdict.ACTIVE if truth == Verdict.INACTIVE else Verdict.INACTIVE
                ls.verdict[j] = other if flip else truth
                (false if flip else true).add((k, j))
            elif lo[j] < -c and hi[j] > c:
                ls.verdict[j] = Verdict.INACTIVE if flip else Verdict.ACTIVE
                false.add((k, j))
        layers.append(ls)
    return StabilityReport(tuple(layers), np.zeros((0, box.dim))), true, false


def test_recheck_decisions_same_with_and_without_relaxation(monkeypatch) -> None:
    """With every claim sent to the MILP (bounds disabled), the re-check proves exactly the
    true claims and refutes exactly the false ones, with and without the relaxation."""
    monkeypatch.setattr(recheck, "_holds", lambda v, b, j: False)
    original = LayerMilp.relaxable
    used = []

    def spy(self, j, s):
        out = original(self, j, s)
        used.append(len(out))
        return out

    n_true = n_false = 0
    for seed in SEEDS:
        net, box, exact = _case(seed)
        report, true, false = _claims_report(net, box, exact)
        decisions = []
        for relax in (spy, lambda *a: np.zeros(0, dtype=np.int64)):
            monkeypatch.setattr(LayerMilp, "relaxable", relax)
            res = recheck.recheck_certificates(net, report, box, time_limit=30)
            assert res.checked["milp"] == len(true), seed
            failed = {(f.layer, f.neuron): f.refuted for f in res.failures}
            assert set(failed) == false, seed
            assert all(failed.values()), seed  # every false claim refuted by an input
            decisions.append(sorted(failed.items()))
        assert decisions[0] == decisions[1]
        n_true += len(true)
        n_false += len(false)
    assert n_true >= 10 and n_false >= 10
    assert sum(used) >= 10  # the relaxation really was applied


def mixed_net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(10, 3)) / 2, rng.normal(size=(10, 10)) / 3, rng.normal(size=(2, 10))]
    bs = [rng.normal(size=10), rng.normal(size=10), rng.normal(size=2)]
    return Network.from_arrays(ws, bs, dtype="float64")


BOX = Box.uniform(0, 1, 3)


@pytest.mark.parametrize("claim", [Verdict.INACTIVE, Verdict.ACTIVE])
def test_false_claim_with_relaxed_binaries_is_refuted(claim: Verdict) -> None:
    """A false claim on layer 1, whose question relaxes some of layer 0's binaries, is refuted
    by a float64 input; and the solve path maps a pure LP (every binary relaxed) correctly:
    proven just above the true maximum, found just below it."""
    net = mixed_net()
    exact = exact_preactivation_ranges(net, BOX)
    lo, hi = exact[1]
    j = int(np.flatnonzero((lo < -0.05) & (hi > 0.05))[0])
    s = 1.0 if claim == Verdict.INACTIVE else -1.0
    layer = _layer(net, BOX, 1)
    assert 0 < len(layer.relaxable(j, int(s))) < _binaries(layer)
    ls = LayerStability.undecided(1, 10)
    ls.verdict[j] = claim
    report = StabilityReport((LayerStability.undecided(0, 10), ls), np.zeros((0, 3)))
    res = recheck.recheck_certificates(net, report, BOX, time_limit=30)
    [failure] = res.failures
    assert (failure.layer, failure.neuron, failure.claimed, failure.refuted) == (
        1,
        j,
        claim.name,
        True,
    )
    # pure LP: relax every binary of layer 0 on a question where that is exact; the question
    # is shifted by the bias so that max z is just below or just above 0
    w = np.array([[-1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [1.0, 1.0, -1.0]])
    box = Box.uniform(-1, 1, 3)

    def lp_net(bias: float) -> Network:
        return Network.from_arrays(
            [w, np.array([[-1.0, -2.0, -0.5]]), np.ones((1, 1))],
            [np.array([0.2, 0.1, -0.3]), np.array([bias]), np.zeros(1)],
            dtype="float64",
        )

    top = exact_preactivation_ranges(lp_net(0.0), box)[1][1][0]
    for shift, proven in ((1e-3, True), (-1e-3, False)):
        net_s = lp_net(-(top + shift))
        layer = _layer(net_s, box, 1)
        assert len(layer.relaxable(0, 1)) == _binaries(layer) == 3
        answer = solve_question(layer.milp, layer.question(DEFAULT, 0, 1, 10.0))
        assert answer.proven is proven
        if not proven:
            assert net_s.preactivations(box.clip(answer.points))[1][:, 0].max() > 0


def _fake_timeouts(monkeypatch, hard: set[int], again: bool = False):
    """The MILP calls numbered ``hard`` time out after their limit has passed (on a fake
    clock, :class:`~exactcomp.testing.clock.FakeClock`, on which real work takes no time);
    later calls on their questions run for real, or (``again``) time out at once. Every
    other call runs for real. Returns the log of (question, limit, faked); a question is
    ``(n, neuron, sign)`` with ``n`` the order in which its layer's MILP was first asked."""
    clock = FakeClock().install(monkeypatch)
    log: list[tuple[tuple[int, int, int], float, bool]] = []
    hard_questions: set[tuple[int, int, int]] = set()
    layers: dict[int, int] = {}

    def solve(milp, q):
        key = (layers.setdefault(id(milp), len(layers)), q.neuron, q.sign)
        retry = key in hard_questions
        fake = (len(log) in hard and not retry) or (again and retry)
        log.append((key, q.time_limit, fake))
        if not fake:
            return solve_question(milp, q)
        hard_questions.add(key)
        clock.sleep(0.0 if retry else q.time_limit)
        points = np.empty((0, milp.x_cols.size))
        return Answer(q, False, "Time limit reached", points, q.time_limit, timed_out=True)

    monkeypatch.setattr(recheck, "solve_question", solve)
    return log


def _genuine_report():
    from exactcomp.stability import stable_neurons

    net = mixed_net(3)
    return net, stable_neurons(net, BOX, jobs=1)


def test_claim_that_timed_out_gets_a_longer_second_pass(monkeypatch) -> None:
    """The first MILP claim times out on its share; easy claims roll their unused time over
    (first-pass limits grow) and the timed-out claim is re-run at the end with what is left,
    longer than its first try, and proven."""
    monkeypatch.setattr(recheck, "_holds", lambda v, b, j: False)
    net, report = _genuine_report()
    stable = report.count(Verdict.INACTIVE) + report.count(Verdict.ACTIVE)
    assert stable >= 6
    log = _fake_timeouts(monkeypatch, hard={0})
    res = recheck.recheck_certificates(net, report, BOX, time_limit=3.0)
    assert res.ok, res.failures
    assert res.checked["milp"] == stable
    assert res.milps == stable + 1 == len(log)
    (q0, first, faked), *rest = log
    assert faked and not any(f for _, _, f in rest)
    assert rest[-1][0] == q0  # the hard claim is the last one solved, for real
    assert rest[-1][1] > 2 * first  # with more time than it had the first time
    limits = [t for _, t, _ in rest[:-1]]
    assert all(b >= a * 0.98 for a, b in zip(limits, limits[1:], strict=False))
    assert limits[-1] > 2 * limits[0]  # easy claims' unused time rolled over


def test_claims_timing_out_twice_are_not_reproven_never_refuted(monkeypatch) -> None:
    """Two claims time out, on both tries: each gets exactly one second try (with a share of
    what the others left), neither is refuted, and the result is not ok."""
    monkeypatch.setattr(recheck, "_holds", lambda v, b, j: False)
    net, report = _genuine_report()
    stable = report.count(Verdict.INACTIVE) + report.count(Verdict.ACTIVE)
    log = _fake_timeouts(monkeypatch, hard={0, 2}, again=True)
    res = recheck.recheck_certificates(net, report, BOX, time_limit=2.0)
    assert not res.ok and not res.refuted
    hard = {log[0][0], log[2][0]}
    assert len(log) == stable + 2
    by_limit = sorted([log[0], log[2]], key=lambda e: e[1])  # least time first
    assert [q for q, _, _ in log[-2:]] == [q for q, _, _ in by_limit]
    assert all(t > log[0][1] for _, t, _ in log[-2:])
    assert len(res.failures) == 2
    assert all(f.detail == "not re-proven in time" for f in res.failures)
    # both relu layers of mixed_net have MILP claims: the n-th MILP asked is layer n's
    assert {(f.layer, f.neuron) for f in res.failures} == {(n, j) for n, j, _ in hard}


@pytest.mark.parametrize("seed", [0, 28, 87])
def test_badly_scaled_networks_never_get_a_false_claim_re_proven(monkeypatch, seed) -> None:
    """``nasty`` networks (weights of 1e6 or 1e11 reading neurons of 1e-6) move HiGHS' own
    optimum. The re-check must allow for what the solver's tolerances can move ``z`` by, and
    trust no MILP where float64 rounding reaches them (as the compressor does): without the
    first, seed 28 had two false claims re-proven; without the second, seed 87 (a claim of
    max z <= 0 "proven" where z reaches 349)."""
    monkeypatch.setattr(recheck, "_holds", lambda v, b, j: False)  # every claim to the MILP
    case = random_case(seed, depth=(2, 3), width=(3, 5), inputs=(2, 3), max_neurons=11)
    net, box = case.network, case.box
    exact = exact_preactivation_ranges(net, box)
    report, _true, false = _claims_report(net, box, exact)
    res = recheck.recheck_certificates(net, report, box, time_limit=30)
    failed = {(f.layer, f.neuron) for f in res.failures}
    assert false <= failed, sorted(false - failed)
