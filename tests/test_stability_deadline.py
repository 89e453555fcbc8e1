"""The stability engine's deadline inside a layer: no LP of the LP phase and no LP of the
region (witness) search starts past it, and what is left stays UNDECIDED, never wrong.

A slow phase is simulated on a fake clock (:class:`exactcomp.testing.clock.FakeClock`): each
LP of the phase under test that HiGHS really solves lets one second pass, so "the deadline
passes after N LPs" is exact on any machine load. Every LP solved is logged with whether the
clock was already past the deadline when it started. The verdicts are checked against the
brute-force oracle (:mod:`exactcomp.testing.oracle`).
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp.highs import lp as highs_lp
from exactcomp.stability import layer as stability_layer
from exactcomp.stability import stable_neurons
from exactcomp.stability.phases import PhaseInput, lp_phase
from exactcomp.testing.clock import FakeClock
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict

START = 1000.0  # the fake clock's reading when a test begins


class SlowLps:
    """Stands in for ``Lp.solve``: logs every LP HiGHS really solves as ``(phase, late)``
    (``late``: started at or past ``deadline``) and lets a second pass after each one of
    ``phase`` (``None``: of every phase)."""

    def __init__(self, monkeypatch, clock: FakeClock, phase: str | None, deadline: float):
        self.clock, self.phase, self.deadline = clock, phase, deadline
        self.log: list[tuple[str, bool]] = []
        self.current = "other"
        real = highs_lp.Lp.solve

        def solve(lp, deadline=None):
            ran = deadline is None or clock.monotonic() < deadline  # else: not started
            out = real(lp, deadline)
            if ran:
                self.log.append((self.current, clock.perf_counter() >= self.deadline))
                if self.phase in (None, self.current):
                    clock.advance(1.0)
            return out

        monkeypatch.setattr(highs_lp.Lp, "solve", solve)
        for name in ("_lp", "_region_search", "_ideal_cuts", "_input_splits", "_relu_splits"):
            monkeypatch.setattr(stability_layer.LayerRun, name, self._tagged(name))

    def _tagged(self, name: str):
        real = getattr(stability_layer.LayerRun, name)

        def run(layer_run) -> None:
            self.current = name
            try:
                real(layer_run)
            finally:
                self.current = "other"

        return run

    def count(self, phase: str) -> int:
        return sum(p == phase for p, _ in self.log)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The only clock exactcomp reads during the test."""
    return FakeClock(START).install(monkeypatch)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_the_lp_phase_starts_no_lp_past_the_deadline(monkeypatch, clock, n):
    """``lp_phase`` with a deadline that passes after ``n`` LPs solves exactly ``n`` (the
    other neurons keep their input bounds), and its bounds still enclose the exact ranges."""
    case = random_case(7, max_neurons=12, nasty=False)
    net, box, k = case.network, case.box, 1
    exact = exact_analysis(net, box).ranges
    known = [(lo - 1.0, hi + 1.0) for lo, hi in exact[: k + 1]]  # sound, loose on purpose
    neurons = np.arange(net.layers[k].out_features)
    sides = np.zeros(neurons.size, dtype=np.int64)
    lps = SlowLps(monkeypatch, clock, None, START + n - 0.5)
    none = lp_phase(PhaseInput(net, box, k, known, neurons, sides, DEFAULT, START - 1.0))
    q = PhaseInput(net, box, k, known, neurons, sides, DEFAULT, START + n - 0.5)
    res = lp_phase(q)
    assert len(lps.log) == n and not any(late for _, late in lps.log)
    lower, upper = res.bounds
    assert (lower <= exact[k][0] + 1e-9).all() and (upper >= exact[k][1] - 1e-9).all()
    # the bounds whose LPs were not solved are those no LP tightened
    untouched = (lower == none.bounds[0]).sum() + (upper == none.bounds[1]).sum()
    assert untouched >= 2 * neurons.size - n
    free = lp_phase(PhaseInput(net, box, k, known, neurons, sides, DEFAULT))
    assert len(lps.log) > n + 2 * neurons.size - 1  # without a deadline: two LPs a neuron
    assert (free.bounds[1] <= upper).all() and (free.bounds[0] >= lower).all()


@pytest.mark.parametrize(
    ("seed", "phase", "n"),
    [
        (7, "_lp", 2),
        (7, "_lp", 5),
        (32, "_region_search", 1),
        (32, "_region_search", 3),
        (7, "_region_search", 1),
    ],
)
def test_past_the_deadline_a_phase_stops_and_the_rest_stays_undecided(
    monkeypatch, clock, seed, phase, n
):
    """Each LP of ``phase`` takes a second; the deadline passes after ``n`` of them. Then no
    LP of any phase starts (the LP phase, the region search, the ideal cuts, the splits),
    ``out_of_time`` is set, and every verdict given is the oracle's."""
    case = random_case(seed, max_neurons=12, nasty=False)
    exact = exact_analysis(case.network, case.box)
    deadline = START + n - 0.5
    lps = SlowLps(monkeypatch, clock, phase, deadline)
    report = stable_neurons(case.network, case.box, jobs=1, deadline=deadline)
    assert lps.count(phase) == n
    assert not [p for p, late in lps.log if late], lps.log
    assert report.stats["out_of_time"] == 1
    assert exact.wrong_verdicts(report) == []
    # without the deadline the same analysis solves more LPs of that phase
    more = SlowLps(monkeypatch, clock, phase, np.inf)
    full = stable_neurons(case.network, case.box, jobs=1)
    assert more.count(phase) > n
    assert exact.wrong_verdicts(full) == []
    decided = sum(int((ls.verdict != Verdict.UNDECIDED).sum()) for ls in report.layers)
    assert decided <= sum(int((ls.verdict != Verdict.UNDECIDED).sum()) for ls in full.layers)


def test_each_later_layer_keeps_a_reserve_of_the_budget():
    """``layer_deadline``: the caller's deadline less ``LATE_RESERVE`` of the budget per
    later ReLU layer; the last ReLU layer (and a call without a deadline) is unchanged."""
    from exactcomp.stability.engine import LATE_RESERVE, layer_deadline

    assert layer_deadline(None, 0.0, 3) is None
    assert layer_deadline(150.0, 30.0, 0) == 150.0
    assert layer_deadline(150.0, 30.0, 3) == pytest.approx(150.0 - 3 * LATE_RESERVE * 120.0)
    assert layer_deadline(10.0, 30.0, 2) == 10.0  # a deadline already past: no reserve


def test_a_layer_past_its_own_deadline_leaves_the_rest_to_later_layers(monkeypatch, clock):
    """With the reserve of each later layer set to the whole budget, every ReLU layer but the
    last is past its own deadline when it starts: it gets its bounds and its witness search
    and nothing more (no LP phase), and the last layer still runs every phase. (Before the
    reserve, the first deep layer took the deadline's whole time and the later ones none:
    on mnist-net_256x4 prop_1_0.05, 512 neurons reported undecided unvisited.) Every
    verdict is the oracle's."""
    from exactcomp.stability import engine

    case = random_case(6, depth=(3, 3), width=(3, 6), inputs=(2, 3), nasty=False)
    net, box = case.network, case.box
    relu = list(net.relu_layers)
    assert len(relu) == 3
    exact = exact_analysis(net, box)
    calls: dict[str, list[int]] = {"lp": [], "witness": []}
    real_lp, real_search = stability_layer.LayerRun._lp, stability_layer.search_signs

    def lp(run) -> None:
        calls["lp"].append(run.k)
        real_lp(run)

    def search(pool, k, settled, seed, deadline=None) -> None:
        calls["witness"].append(k)
        real_search(pool, k, settled, seed, deadline)

    monkeypatch.setattr(stability_layer.LayerRun, "_lp", lp)
    monkeypatch.setattr(stability_layer, "search_signs", search)
    monkeypatch.setattr(engine, "LATE_RESERVE", 1.0)
    report = stable_neurons(net, box, jobs=1, deadline=START + 100.0)
    assert calls["witness"] == relu  # every layer visited
    assert calls["lp"] == relu[-1:]  # only the last one had time for proofs
    assert exact.wrong_verdicts(report) == []
    assert report.for_layer(relu[-1]).count(Verdict.UNDECIDED) == 0
    # the same call without the deadline: the same verdicts wherever both decided
    calls["lp"].clear()
    full = stable_neurons(net, box, jobs=1)
    assert calls["lp"] == relu[1:]
    for a, b in zip(report.layers, full.layers, strict=True):
        both = (a.verdict != Verdict.UNDECIDED) & (b.verdict != Verdict.UNDECIDED)
        np.testing.assert_array_equal(a.verdict[both], b.verdict[both])


def test_layers_reached_past_the_deadline_keep_what_costs_nothing(monkeypatch, clock):
    """A deadline already past when the analysis starts: no phase runs (no LP, no search), yet
    every layer reports what its interval bounds prove and the signs the pooled candidate
    inputs show, each the oracle's verdict (before: every neuron UNDECIDED)."""
    case = random_case(6, depth=(3, 3), width=(3, 6), inputs=(2, 3), nasty=False)
    exact = exact_analysis(case.network, case.box)
    ran: list[int] = []
    monkeypatch.setattr(stability_layer.LayerRun, "classify", lambda run: ran.append(run.k))
    report = stable_neurons(case.network, case.box, jobs=1, deadline=START - 1.0)
    assert ran == [] and report.stats["out_of_time"] == 1
    assert exact.wrong_verdicts(report) == []
    unstable = [ls.count(Verdict.UNSTABLE) for ls in report.layers]
    assert all(n > 0 for n in unstable), unstable


def test_costly_phases_get_an_equal_share_with_later_layers(monkeypatch, clock):
    """The MILP phase (like the ReLU splits) of a layer with ``n`` ReLU layers from it to
    the last runs within ``1/n`` of the time left to the layer's own deadline; the last
    layer's gets all of it. (ERAN mnist_relu_9_200: its middle layers' splits and MILPs
    otherwise left the deeper layers no time for their LP phases.) Here the clock stands
    still, so each share is exact."""
    from exactcomp.stability import engine

    case = random_case(6, depth=(3, 3), width=(3, 6), inputs=(2, 3), nasty=False)
    seen: dict[int, float] = {}
    real = stability_layer.LayerRun._milp_phase

    def milp(run) -> None:
        seen[run.k] = run.deadline
        real(run)

    monkeypatch.setattr(stability_layer.LayerRun, "_milp_phase", milp)
    stable_neurons(case.network, case.box, jobs=1, deadline=START + 100.0)
    r = engine.LATE_RESERVE * 100.0
    expected = {0: (100.0 - 2 * r) / 3, 1: (100.0 - r) / 2, 2: 100.0}
    assert seen == pytest.approx({k: START + v for k, v in expected.items()})


def test_relu_splits_and_their_milps_share_one_window(monkeypatch, clock):
    """With ReLU splits (forced here on 2-3 inputs), a layer's split phase and then the MILP
    phase on the questions it leaves run in one window of ``SPLIT_SHARES`` of the equal
    shares of :func:`test_costly_phases_get_an_equal_share_with_later_layers` (all of the
    time left at most): both see the same deadline. The clock stands still, so each window
    is exact; the splits are left out (the MILPs decide), and every verdict is the
    oracle's."""
    from exactcomp.stability import engine

    case = random_case(4, depth=(4, 4), width=(3, 5), inputs=(2, 3), nasty=False)
    net, box = case.network, case.box
    relu = list(net.relu_layers)
    assert len(relu) == 4
    monkeypatch.setattr(stability_layer, "split_inputs", lambda: 0)
    for name in ("_lp", "_ideal_cuts", "_region_search"):  # leave the splits questions
        monkeypatch.setattr(stability_layer.LayerRun, name, lambda run: None)
    seen: dict[int, list[tuple[str, float]]] = {}
    real_milp = stability_layer.LayerRun._milp_phase

    def splits(run) -> None:  # the window only: the MILPs decide the questions
        seen.setdefault(run.k, []).append(("splits", run.deadline))

    def milp(run) -> None:
        seen.setdefault(run.k, []).append(("milp", run.deadline))
        real_milp(run)

    monkeypatch.setattr(stability_layer.LayerRun, "_relu_splits", splits)
    monkeypatch.setattr(stability_layer.LayerRun, "_milp_phase", milp)
    report = stable_neurons(net, box, jobs=1, deadline=START + 100.0)
    assert exact_analysis(net, box).wrong_verdicts(report) == []
    r = engine.LATE_RESERVE * 100.0
    with_splits = 0
    for k, calls in seen.items():
        n = len(relu) - relu.index(k)  # ReLU layers from this one to the last
        own = 100.0 - (n - 1) * r
        names = [name for name, _ in calls]
        shares = stability_layer.SPLIT_SHARES if names == ["splits", "milp"] else 1
        with_splits += shares > 1 and n > 1
        expected = START + own * min(shares / n, 1.0)
        assert [d for _, d in calls] == pytest.approx([expected] * len(calls)), (k, calls)
    assert with_splits >= 1  # the case has the shared window below the last layer
