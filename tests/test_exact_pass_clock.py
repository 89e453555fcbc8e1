"""``compress --tol``'s exact pass keeps to its deadline after the analysis too, and stays exact.

Under contention (load ~5) about 5 s of CPU of the exact pass ignored the clock on
cifar_base_kw: the rewrite's fixed point, the structured choice and the re-check's floor
(benchmarks/RESULTS.md "ccsoak21"; the choice still runs whole: its channel rewrite is the
rewrite written there, "clock22"); and the witness pool's deadline never triggered in the
measured runs. Here each slow step advances a fake clock
(:class:`exactcomp.testing.clock.FakeClock`), so "the deadline passes after N steps" is exact
on any machine; nothing is timed. Ground truth: the brute-force oracle
(:func:`exactcomp.testing.oracle.exact_analysis`) for verdicts, and evaluation on sample
points for the network (every rewrite is exact: the same function, up to the re-check's
float64 allowance).
"""

from __future__ import annotations

import numpy as np
import pytest

from exactcomp import api
from exactcomp.api import compressing, sampling
from exactcomp.rewrite.pipeline import DEFAULT_PASSES, compress_network
from exactcomp.stability import stable_neurons, witnesses
from exactcomp.stability.witnesses import WitnessPool
from exactcomp.testing.clock import FakeClock
from exactcomp.testing.oracle import exact_analysis
from exactcomp.testing.random_networks import random_case
from exactcomp.tolerances import DEFAULT

START = 1000.0


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    return FakeClock(START).install(monkeypatch)


def _same(f, g, box, n: int = 2000) -> None:
    x = box.sample(n, np.random.default_rng(1))
    assert np.allclose(f.forward(x), g.forward(x), rtol=1e-9, atol=1e-9)


def _timed(passes, clock: FakeClock, log: list[str]):
    """The passes, each letting one second pass and logging its name."""

    def wrap(p):
        def run(net, state, tol):
            log.append(p.__name__)
            clock.advance(1.0)
            return p(net, state, tol)

        run.__name__ = p.__name__
        return run

    return tuple(wrap(p) for p in passes)


def _removing_case():
    """A small random network with a neuron its stability report lets the rewrite remove."""
    for seed in range(40):
        case = random_case(seed, max_neurons=12, nasty=False)
        report = stable_neurons(case.network, case.box, jobs=1)
        full = compress_network(case.network, report)
        if full.network.num_neurons < case.network.num_neurons:
            return case, report, full
    raise AssertionError("no case with a removal")  # pragma: no cover


def test_the_rewrite_stops_between_passes_at_its_deadline_and_stays_exact(clock):
    """Passes of 1 s, a deadline 2.5 s on: three passes run, none starts past it but the late
    one (``remove_inactive``, once more), and the network is the original function with no
    more neurons removed than the whole fixed point removes; past the deadline from the
    start, ``remove_inactive`` alone runs, and removes what the whole fixed point's own
    ``remove_inactive`` would remove first."""
    case, report, full = _removing_case()
    log: list[str] = []
    timed = _timed(DEFAULT_PASSES, clock, log)
    late = (timed[2],)  # remove_inactive
    cut = compress_network(case.network, report, passes=timed, deadline=START + 2.5,
                           late_passes=late)  # fmt: skip
    names = [p.__name__ for p in DEFAULT_PASSES]
    assert log == [*names[:3], "remove_inactive"]
    _same(case.network, cut.network, case.box)
    assert cut.network.num_neurons >= full.network.num_neurons
    removed = {u for u, fate in cut.neuron_map.items() if fate.position is None}
    assert removed <= {u for u, fate in full.neuron_map.items() if fate.position is None}
    log.clear()
    first = compress_network(case.network, report, passes=timed, deadline=clock.now,
                             late_passes=late)  # fmt: skip
    assert log == ["remove_inactive"]
    _same(case.network, first.network, case.box)
    alone = compress_network(case.network, report, passes=(DEFAULT_PASSES[2],))
    assert first.network.num_neurons == alone.network.num_neurons


def test_past_its_end_the_floor_of_the_re_check_is_one_chunk_and_says_so(clock):
    """Past ``end`` the floor's chunks stop after the first: ``points`` counts what was
    checked (its chunk and the box centre), never the floor it did not reach; a wrong
    network is still refused in that chunk."""
    case = random_case(3, max_neurons=12, nasty=False)
    f, box = case.network, case.box
    short = sampling.sample_check(
        f, f, [box], points=100_000, tol=DEFAULT, seconds=0.0, end=START - 1.0
    )
    assert short.points == sampling.FLOOR_CHUNK + 1
    whole = sampling.sample_check(f, f, [box], points=100_000, tol=DEFAULT, seconds=0.0)
    assert whole.points >= sampling.CHECK_FLOOR


def test_compress_with_a_split_deadline_keeps_every_step_after_the_analysis_to_it(
    monkeypatch, clock
):
    """``api.compress(deadline=D, analysis_end=A)`` with every pass 1 s and the analysis
    ending at once: the rewrite stops at ``D`` (then ``remove_inactive`` once), the re-check
    checks one chunk after it, and the result is exact; without ``analysis_end``
    (``compress --budget``) the rewrite runs whole."""
    case, _, full = _removing_case()
    log: list[str] = []
    timed = _timed(DEFAULT_PASSES, clock, log)
    real = compress_network

    def slow(net, report, tol=DEFAULT, *, passes=DEFAULT_PASSES, deadline=None):
        if passes != DEFAULT_PASSES:
            return real(net, report, tol, passes=passes, deadline=deadline)
        return real(net, report, tol, passes=timed, deadline=deadline, late_passes=timed[2:3])

    monkeypatch.setattr(compressing, "compress_network", slow)
    out = api.compress(case.network, case.box, jobs=1, deadline=START + 1.5, analysis_end=START)
    assert log == ["drop_dead", "merge_duplicates", "remove_inactive"]  # the last one late
    assert out.check.points == sampling.FLOOR_CHUNK + 1
    _same(case.network, out.network, case.box)
    log.clear()
    whole = api.compress(case.network, case.box, jobs=1, deadline=clock.now + 1.5)
    assert len(log) > 2 and whole.network.num_neurons == full.network.num_neurons


def test_the_witness_pool_stops_at_the_deadline_and_only_keeps_neurons(monkeypatch, clock):
    """Each chunk of the pool (4 rows) takes a second and the analysis's deadline passes after
    two: the pool stops (fewer rows than asked), every verdict is still the oracle's, and the
    compressed network is the original function with no neuron removed that the analysis
    without a deadline keeps."""
    monkeypatch.setattr(witnesses, "POOL_CHUNK", 4)
    real = WitnessPool.add
    sizes: list[int] = []

    def slow(self, rows, only=None):
        clock.advance(1.0)
        out = real(self, rows, only)
        sizes.append(self.size)
        return out

    monkeypatch.setattr(WitnessPool, "add", slow)
    for seed in (7, 32):
        case = random_case(seed, max_neurons=12, nasty=False)
        exact = exact_analysis(case.network, case.box)
        sizes.clear()
        start = clock.now
        report = stable_neurons(case.network, case.box, jobs=1, deadline=start + 1.5)
        assert sizes[:2] == [4, 8] and len(sizes) == 2  # stopped after the second chunk
        assert exact.wrong_verdicts(report) == []
        cut = api.compress(case.network, case.box, jobs=1, deadline=clock.now + 1.5)
        free = api.compress(case.network, case.box, jobs=1)
        _same(case.network, cut.network, case.box)
        kept = {u for u, fate in free.rewrite.neuron_map.items() if fate.position is not None}
        assert kept <= {
            u for u, fate in cut.rewrite.neuron_map.items() if fate.position is not None
        }
