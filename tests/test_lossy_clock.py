"""The lossy commands keep their deadline on networks whose proofs are costly (resnet_2b read
as 2,048-3,072-wide dense layers: 191-222 s for a 90 s deadline, RESULTS.md "rn23").

Networks: small deep ``f`` on two inputs (``gaussian_mlp``)::

    x (2 inputs) -> [4 ReLU] -> [8 ReLU] -> [3 ReLU] -> 2 outputs    f
    x            -> [f's weights rounded to 4 bits]                 g

Time is the fake clock's (:mod:`exactcomp.testing.clock`): a step made "slow" advances it, so
which steps run before a deadline is exact on any machine; nothing is timed. Ground truth of
every bound: the exact ``max |f - g|`` of the region-enumeration oracle (a step stopped by the
clock claims less, never something false).
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp, slow_symbolic_proofs

from exactcomp import approx, quantization
from exactcomp.bounds import linear
from exactcomp.domain import Box
from exactcomp.rewrite.quantize import quantize_network
from exactcomp.stability import witnesses
from exactcomp.stability.witnesses import WitnessPool, search_signs
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.tolerances import DEFAULT
from exactcomp.verify.charge import PROOF_PER_PREPARE, Charger
from exactcomp.verify.diffinterval import interval_difference

BOX = Box.uniform(-1.0, 1.0, 2)
FAST = {"tighten_seconds": 0.0, "lp_seconds": 0.0, "split_seconds": 0.0}


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    return FakeClock(1000.0).install(monkeypatch)


def _pair(seed: int = 0):
    f = gaussian_mlp(seed, (2, 4, 8, 3, 2), scaled=True)
    return f, quantize_network(f, [4, 4, 4, 4]).network


def _interval(f, g) -> float:
    return float(interval_difference(f, g, BOX, DEFAULT).max(initial=0.0))


def _slow_layers(monkeypatch, clock, seconds: float) -> None:
    """Every layer of ``f``'s linear bounds takes ``seconds`` on the fake clock."""
    real = linear.linear_layer_bounds

    def slow(*args, **kw):
        clock.advance(seconds)
        return real(*args, **kw)

    monkeypatch.setattr(linear, "linear_layer_bounds", slow)


def test_bounds_of_the_original_stop_at_their_end_and_prove_by_intervals(monkeypatch, clock):
    """``f``'s bounds (4 layers, 1 s each) asked to end after 2.5 s: the charger is coarse,
    and each proof is the differential interval bound, never below the exact maximum."""
    f, g = _pair()
    _slow_layers(monkeypatch, clock, 1.0)
    charger = Charger(f, [BOX], end=clock.now + 2.5)
    assert charger.coarse and clock.now == 1003.0  # layers 0-2 ran, layer 3 was not started
    bound = charger.proven(g)
    assert bound == _interval(f, g) and charger.late == 1
    assert max_output_difference(f, g, BOX).value <= bound
    assert charger.proven(f) == 0.0
    on_time = Charger(f, [BOX], end=clock.now + 10.0)
    assert not on_time.coarse
    assert on_time.seconds == pytest.approx(PROOF_PER_PREPARE * 4.0)  # the first's estimate


def test_a_symbolic_proof_past_its_end_gives_the_interval_bound(monkeypatch, clock):
    """A symbolic pass of 10 s: with 30 s to its end it runs (the symbolic bound); with 5 s it
    is cut between two layers, and with the estimate past the end it is never started: both
    claim the interval bound, counted in ``late``; every bound is at least the exact max."""
    f, g = _pair(1)
    charger = Charger(f, [BOX])
    symbolic = Charger(f, [BOX]).proven(g)
    exact = max_output_difference(f, g, BOX).value
    started = slow_symbolic_proofs(monkeypatch, clock, 10.0)
    charger.seconds = 1.0  # an estimate that lets it start
    assert charger.proven(g, end=clock.now + 5.0) == _interval(f, g) >= exact
    assert len(started) == 1 and charger.late == 1
    assert charger.proven(g, end=clock.now + 30.0) == symbolic
    assert symbolic >= exact - 1e-9 and len(started) == 2
    h = quantize_network(f, [2, 2, 2, 2]).network
    charger.seconds = 10.0
    assert charger.proven(h, end=clock.now + 5.0) == _interval(f, h)
    assert len(started) == 2 and charger.late == 2  # not started
    assert charger.proven(g, end=clock.now) == symbolic  # memoised: costs nothing


def test_compress_tol_runs_no_search_phase_when_not_one_proof_fits(monkeypatch, clock):
    """``f``'s bounds take 12 s (3 s a layer), so a proof is expected to take ~26 s: with 24 s
    left before the search's end no phase starts (their candidates cost seconds of their own), nothing
    is claimed beyond ``f`` itself, and the call ends within its deadline."""
    f, _ = _pair(2)
    _slow_layers(monkeypatch, clock, 3.0)
    ran = []
    for name in ("probe", "search"):
        monkeypatch.setattr(approx, name, lambda *a, _n=name, **k: ran.append(_n))
    start = clock.now
    out = approx.compress_lossy(f, BOX, 0.5, time_limit=40.0, **FAST)
    assert ran == [] and out.proven == 0.0
    assert out.network.num_parameters == f.num_parameters
    assert out.report["phase_plan"] == {
        "proof_seconds": pytest.approx(PROOF_PER_PREPARE * 12.0),
        "magnitude": False,
        "lowrank": False,
        "lp": False,
    }
    assert clock.now - start <= 40.0


def test_quantize_final_proof_keeps_the_deadline_with_a_weaker_claim(monkeypatch, clock):
    """``quantize --bits 4`` whose symbolic proof takes 100 s of a 90 s deadline: the claim is
    the interval bound (``proofs_late`` 1; the float candidate's proof, whose 100 s would
    end past the deadline, is not started), sound against the exact maximum, within 90 s."""
    f, _ = _pair(3)
    slow_symbolic_proofs(monkeypatch, clock, 100.0)
    start = clock.now
    q = quantization.quantize(f, BOX, bits=4, method="rtn", time_limit=90.0, **FAST)
    assert q.report["proofs_late"] == 1
    assert q.proven == _interval(f, q.network) >= max_output_difference(f, q.network, BOX).value
    assert clock.now - start <= 100.0 + 1e-9  # the one pass that does not look at the clock
    fast = quantization.quantize(f, BOX, bits=4, method="rtn", time_limit=1e6, **FAST)
    assert fast.report["proofs_late"] == 0 and fast.proven <= q.proven


def test_witness_paths_stop_at_the_deadline_and_only_then(monkeypatch, clock):
    """One path per chunk (``WITNESS_WORK`` tiny, ``WITNESS_ROWS`` 1), 1 s each: with a 3.5 s deadline four chunks
    run (none started past it after the first); with one never reached every path runs and
    the pool holds exactly the points of the one-call search (no deadline)."""
    f, _ = _pair(4)
    calls = []
    real = witnesses.gradient_points

    def slow(*args, **kw):
        calls.append(len(args[3]))
        clock.advance(1.0)
        return real(*args, **kw)

    monkeypatch.setattr(witnesses, "gradient_points", slow)
    settled = np.zeros(f.layers[1].out_features, dtype=bool)

    def run(deadline):
        pool = WitnessPool(f, BOX, DEFAULT)
        pool.add(BOX.sample(4, np.random.default_rng(0)))
        calls.clear()
        search_signs(pool, 1, settled, 0, deadline)
        return pool

    whole = run(None)
    n_paths = sum(calls)
    monkeypatch.setattr(witnesses, "WITNESS_WORK", 1.0)
    monkeypatch.setattr(witnesses, "WITNESS_ROWS", 1)
    chunked = run(clock.now + 1e9)  # a deadline never reached: chunks of one path
    assert calls == [1] * n_paths and np.array_equal(chunked.rows(), whole.rows())
    cut = run(clock.now + 3.5)
    assert calls[:4] == [1, 1, 1, 1] and len(calls) == 4 < n_paths
    assert len(cut.rows()) == 4 + 2 * 4  # the samples, then the best and last of 4 paths
