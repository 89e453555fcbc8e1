"""stable_neurons: named tiny networks, the oracle, method agreement, soundness under doubt."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.domain import Box
from exactcomp.errors import InvalidOptionError
from exactcomp.milp.highs import Answer
from exactcomp.network import Network
from exactcomp.stability import milp_phase, stable_neurons
from exactcomp.testing.oracle import AMBIGUOUS, exact_analysis, exact_stability
from exactcomp.testing.random_networks import random_case
from exactcomp.verdicts import Proof, Verdict

METHODS = ("fast", "leo", "naive")
OFF, ON, U, D = Verdict.INACTIVE, Verdict.ACTIVE, Verdict.UNSTABLE, Verdict.UNDECIDED


def abs_net() -> Network:
    """Layer 1 computes ``|x| - 1.5``, whose maximum on ``[-1, 1]`` is ``-0.5``: INACTIVE,
    but interval arithmetic only sees ``a + b - 1.5 <= 0.5`` (undecided). Layer 0 is unstable.

    ::

        x --(+1)--> [a = relu(x)]  --(+1)--\\
          \\                                 [relu(a + b - 1.5)] --(1)--> y
           --(-1)--> [b = relu(-x)] --(+1)--/
    """
    return Network.from_arrays(
        [np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]]), np.array([[1.0]])],
        [np.zeros(2), np.array([-1.5]), np.zeros(1)],
    )


def shift_net() -> Network:
    """Three neurons on ``x`` in ``[0, 1]``: ``x - 2`` (INACTIVE), ``x + 1`` (ACTIVE) and
    ``x - 0.5`` (UNSTABLE); interval bounds decide the first two, witnesses the third.

    ::

        x --+--> [relu(x - 2)]   --\\
            +--> [relu(x + 1)]   ----(sum)--> y
            +--> [relu(x - 0.5)] --/
    """
    return Network.from_arrays(
        [np.ones((3, 1)), np.ones((1, 3))], [np.array([-2.0, 1.0, -0.5]), np.zeros(1)]
    )


def tie_net() -> Network:
    """``z = -x`` on ``[0, 1]``: max exactly 0 on the face ``x = 0``; ``z = x``: min exactly 0.

    ::

        x --(-1)--> [relu(-x)] --\\
          --(+1)--> [relu(x)]  ----> y
    """
    return Network.from_arrays([np.array([[-1.0], [1.0]]), np.ones((1, 2))], [np.zeros(2), [0.0]])


@pytest.mark.parametrize("method", METHODS)
def test_shift_net(method):
    r = stable_neurons(shift_net(), Box.uniform(0.0, 1.0, 1), method=method, jobs=1)
    assert r.layers[0].verdict.tolist() == [OFF, ON, U]
    assert r.layers[0].proof[:2].tolist() == [Proof.INTERVAL, Proof.INTERVAL]
    assert r.layers[0].proof[2] == Proof.WITNESS
    ls, x = r.layers[0], r.witnesses
    z = shift_net().preactivations(x)[0][:, 2]
    assert z[ls.witness_pos[2]] > 0 > z[ls.witness_neg[2]]


@pytest.mark.parametrize("method", METHODS)
def test_abs_net_needs_more_than_intervals(method):
    r = stable_neurons(abs_net(), Box.uniform(-1.0, 1.0, 1), method=method, jobs=1)
    assert r.layers[0].verdict.tolist() == [U, U]
    assert r.layers[1].verdict.tolist() == [OFF]
    assert r.layers[1].upper[0] <= 0.0
    if method == "fast":
        assert r.layers[1].proof[0] in (Proof.LINEAR, Proof.LP, Proof.MILP)
    else:
        assert r.layers[1].proof[0] == Proof.MILP and r.stats["milps"] >= 1


@pytest.mark.parametrize("method", METHODS)
def test_tie_at_zero_is_never_active_and_never_wrong(method):
    r = stable_neurons(tie_net(), Box.uniform(0.0, 1.0, 1), method=method, jobs=1)
    v = r.layers[0].verdict
    assert v[0] in (OFF, D)  # max z = 0: inactive (ReLU gives 0) or undecided, never active
    assert v[1] in (ON, D)


def _solver_gives_up(milp, q):
    return Answer(q, False, "Time limit reached", np.empty((0, milp.x_cols.size)), 0.0)


def test_a_solver_that_proves_nothing_leaves_neurons_undecided(monkeypatch):
    monkeypatch.setitem(milp_phase.run_questions.__kwdefaults__, "solve", _solver_gives_up)
    for method in ("leo", "naive"):
        r = stable_neurons(abs_net(), Box.uniform(-1.0, 1.0, 1), method=method, jobs=1)
        assert r.layers[1].verdict[0] == D
        assert r.stats["undecided"] >= 1


def test_tiny_time_limit_never_gives_a_wrong_stable_verdict():
    case = random_case(11, max_neurons=12, nasty=False)
    truth = exact_stability(case.network, case.box)
    r = stable_neurons(case.network, case.box, method="naive", time_limit=1e-6, jobs=1)
    _assert_sound(r, truth)


@pytest.mark.parametrize("method", METHODS)
def test_a_deadline_leaves_neurons_undecided_never_wrong(method):
    import time

    case = random_case(11, max_neurons=12, nasty=False)
    truth = exact_stability(case.network, case.box)
    past = stable_neurons(case.network, case.box, method=method, deadline=time.perf_counter())
    assert past.stats["out_of_time"] == 1
    # past the deadline nothing is computed: only what interval bounds and the pooled
    # candidate inputs show (LayerRun.late), the rest UNDECIDED
    free = (Proof.NONE, Proof.INTERVAL, Proof.WITNESS)
    assert all(np.isin(ls.proof, free).all() for ls in past.layers)
    # a deadline met changes nothing; one missed in the middle only loses verdicts
    full = stable_neurons(case.network, case.box, method=method, jobs=1)
    late = stable_neurons(
        case.network, case.box, method=method, jobs=1, deadline=time.perf_counter() + 600
    )
    assert "out_of_time" not in late.stats
    for a, b in zip(full.layers, late.layers, strict=True):
        assert (a.verdict == b.verdict).all()
    _assert_sound(past, truth)


def test_compress_past_its_deadline_keeps_every_neuron():
    """``compress(..., deadline=...)`` (the per-case budget of ``python -m benchmarks real``):
    past it, no neuron is removed but by its interval bounds, and the result is still exact."""
    import time

    from exactcomp.api import compress

    case = random_case(11, max_neurons=12, nasty=False)
    res = compress(case.network, case.box, jobs=1, deadline=time.perf_counter())
    assert res.stability.stats["out_of_time"] == 1
    free = (Proof.NONE, Proof.INTERVAL, Proof.WITNESS)
    assert all(np.isin(ls.proof, free).all() for ls in res.stability.layers)
    assert res.network.num_neurons <= case.network.num_neurons
    assert res.check.max_abs_diff <= 1e-9


def _assert_sound(report, truth, ranges=None) -> None:
    for ls, t in zip(report.layers, truth, strict=True):
        for j, v in enumerate(ls.verdict):
            if v == ON and t[j] == OFF and ranges is not None and ranges[ls.layer][0][j] >= 0:
                continue  # z = 0 on the whole box: ACTIVE holds as well as INACTIVE
            if v in (OFF, ON, U) and t[j] != AMBIGUOUS:
                assert v == t[j], f"layer {ls.layer} neuron {j}: {Verdict(v).name} vs {t[j]}"


@settings(max_examples=25, derandomize=True, deadline=None)
@given(st.integers(0, 100_000))
def test_random_networks_agree_with_the_oracle_and_each_other(seed):
    case = random_case(seed, max_neurons=12)
    exact = exact_analysis(case.network, case.box)
    truth = exact.stability
    reports = {m: stable_neurons(case.network, case.box, method=m, jobs=1) for m in METHODS}
    for r in reports.values():
        _assert_sound(r, truth, exact.ranges)
    complete = [r for r in reports.values() if r.complete]
    for r in complete[1:]:
        for a, b in zip(complete[0].stable_mask(), r.stable_mask(), strict=True):
            assert (a == b).all()


def test_witness_rows_certify_unstable_verdicts():
    case = random_case(5, max_neurons=12)
    r = stable_neurons(case.network, case.box, jobs=1)
    zs = case.network.preactivations(r.witnesses) if len(r.witnesses) else None
    assert case.box.contains(r.witnesses).all()
    for ls in r.layers:
        for j in ls.indices(U):
            assert zs[ls.layer][ls.witness_pos[j], j] > 0 > zs[ls.layer][ls.witness_neg[j], j]


def test_union_of_boxes():
    """``x - 0.5`` is inactive on ``[0, 0.25]`` and active on ``[0.75, 1]``: unstable on the
    union; ``x - 2`` is inactive on both, ``x + 1`` active on both."""
    net = shift_net()
    boxes = [Box.uniform(0.0, 0.25, 1), Box.uniform(0.75, 1.0, 1)]
    for method in METHODS:
        r = stable_neurons(net, boxes, method=method, jobs=1)
        assert r.layers[0].verdict.tolist() == [OFF, ON, U]
        assert r.stats["boxes"] == 2
    one = stable_neurons(net, boxes[:1], jobs=1)
    assert one.layers[0].verdict.tolist() == [OFF, ON, OFF]


def test_jobs_do_not_change_the_result(monkeypatch):
    """Workers (started at once here) run questions ahead; answers are consumed in order."""
    case = random_case(21, max_neurons=12, depth=(2, 3), width=(4, 6), nasty=False)
    a = stable_neurons(case.network, case.box, method="leo", jobs=1)
    monkeypatch.setattr(milp_phase, "_START_AFTER_SECONDS", 0.0)
    started = []
    pool_for = milp_phase.Workers.pool_for

    def spy(self, remaining):
        pool = pool_for(self, remaining)
        started.append(pool is not None)
        return pool

    monkeypatch.setattr(milp_phase.Workers, "pool_for", spy)
    b = stable_neurons(case.network, case.box, method="leo", jobs=2)
    assert any(started)
    assert a.stats["milps"] == b.stats["milps"]
    for la, lb in zip(a.layers, b.layers, strict=True):
        for name in ("verdict", "proof", "witness_pos", "witness_neg", "lower", "upper"):
            assert np.array_equal(getattr(la, name), getattr(lb, name))
    assert np.array_equal(a.witnesses, b.witnesses)


def test_bad_options_are_clear_errors():
    net, box = shift_net(), Box.uniform(0.0, 1.0, 1)
    with pytest.raises(InvalidOptionError, match="method"):
        stable_neurons(net, box, method="magic")
    with pytest.raises(InvalidOptionError, match="time limit"):
        stable_neurons(net, box, time_limit=0)
    with pytest.raises(InvalidOptionError, match="solver"):
        stable_neurons(net, box, solver="nope")
    with pytest.raises(InvalidOptionError, match="empty"):
        stable_neurons(net, [])
    with pytest.raises(InvalidOptionError, match="features"):
        stable_neurons(net, box, data=np.zeros((3, 2)))
    r = stable_neurons(net, box, data=np.array([[0.25], [0.75], [2.0]]), jobs=1)
    assert r.layers[0].verdict.tolist() == [OFF, ON, U]


class _Recorder:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int]] = []
        self.done = 0

    def task(self, description: str, total: int) -> None:
        self.tasks.append((description, total))

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        self.done += steps

    def note(self, message: str) -> None:
        pass


def test_progress_reports_each_layer_and_every_decided_neuron():
    rec = _Recorder()
    r = stable_neurons(abs_net(), Box.uniform(-1.0, 1.0, 1), progress=rec, jobs=1)
    assert [t[1] for t in rec.tasks] == [2, 1]
    assert rec.done == r.num_neurons - r.count(D)


def test_an_unavailable_solver_is_a_clear_error():
    import pyomo.environ as pyo

    if pyo.SolverFactory("cbc").available(exception_flag=False):
        pytest.skip("cbc is installed here")
    with pytest.raises(InvalidOptionError, match="not installed"):
        stable_neurons(abs_net(), Box.uniform(-1.0, 1.0, 1), method="leo", solver="cbc", jobs=1)
