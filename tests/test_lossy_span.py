"""Every step of ``compress --tol``'s search within its span (issue 15, RESULTS.md "span21").

One rule (:func:`exactcomp.rewrite.acceptance.affords`, :func:`~.acceptance.attempt`): a
step first asks whether its proofs still fit before its gate's end at the last proof's
seconds, and builds no network when they do not; a refused proof (``inf``) ends the step.
The networks are tiny (``2-4r-8r-3r-2`` and a ``2-6r-6r-2`` with a near-parallel pair)::

    x (2 inputs) -> [ReLU] -> [ReLU] -> ... -> 2 outputs    f
    x            -> [the same, pruned by the search]         g

Time is the fake clock's (:mod:`exactcomp.testing.clock`): each symbolic bound takes a
fixed number of seconds, each chunk of the witness pool one second, so which steps run
before a deadline is exact on any machine. Ground truth of every claim: the exact
``max |f - g|`` of the region-enumeration oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp, slow_symbolic_proofs

from exactcomp.domain import Box
from exactcomp.network import Network
from exactcomp.rewrite import edits, lossy, merging
from exactcomp.rewrite.acceptance import Gate, affords, attempt, blocks
from exactcomp.stability import witnesses
from exactcomp.stability.witnesses import WitnessPool
from exactcomp.testing import max_output_difference
from exactcomp.testing.clock import FakeClock
from exactcomp.tolerances import DEFAULT
from exactcomp.verify import charge
from exactcomp.verify.charge import Charger

BOX = Box.uniform(-1.0, 1.0, 2)


def _net(seed: int) -> Network:
    """The tiny network of tests/test_lossy_budget.py."""
    return gaussian_mlp(seed, (2, 4, 8, 3, 2), scaled=True, dtype="float64")


def test_blocks_end_at_a_refused_proof():
    """Eight candidates in blocks of one: the first kept, the second failed, the third
    refused (``inf``): no fourth is asked, and the refused ones are returned not kept."""
    asked: list[list[int]] = []
    answers = iter([0.0, 2.0, np.inf, 0.0, 0.0])

    def bound(chosen: list[int]) -> float:
        asked.append(list(chosen))
        return next(answers)

    kept, rest = blocks([], list(range(8)), bound, 1.0, np.inf)
    assert kept == [0] and rest == [1, 2, 3, 4, 5, 6, 7]
    assert asked == [[0], [0, 1], [0, 2]]


def test_attempt_builds_nothing_a_gate_would_refuse(monkeypatch):
    """Proofs of 10 s, a gate ending 25 s on: two networks built and proven, then
    ``affords`` is False and ``attempt`` answers ``inf`` without building the third; a plain
    charger affords everything."""
    clock = FakeClock().install(monkeypatch)
    slow_symbolic_proofs(monkeypatch, clock, 10.0)
    f = _net(0)
    charger = Charger(f, [BOX])
    gate = Gate(charger, clock.now + 25.0)
    built: list[int] = []

    def build(i: int) -> Network:
        built.append(i)
        return edits.apply(f, [edits.Candidate("weight", (1, i, 0), 0.0, 1)], [])

    first, second = attempt(gate, build, 0), attempt(gate, build, 1)
    assert not affords(gate) and affords(charger, 100)
    assert attempt(gate, build, 2) == np.inf and built == [0, 1]
    assert affords(gate, 1, build(0))  # memoised: served whatever the clock
    for i, bound in enumerate((first, second)):
        assert max_output_difference(f, build(i), BOX).value <= bound + 1e-9


def test_the_lp_after_a_symbolic_bound_gets_what_it_leaves(monkeypatch):
    """Proofs of 10 s, a gate ending 25 s on, an LP asked 60 s for a network not proven
    yet: the LP gets 25 - 10 = 15 s (the symbolic bound runs first), so the proof ends by
    the gate's end."""
    clock = FakeClock().install(monkeypatch)
    slow_symbolic_proofs(monkeypatch, clock, 10.0)
    given: list[float] = []
    real = charge.lp_difference_bounds
    monkeypatch.setattr(
        charge, "lp_difference_bounds", lambda p, b, s, **kw: given.append(s) or real(p, b, s, **kw)
    )
    f = _net(0)
    charger = Charger(f, [BOX])
    charger.seconds = 10.0  # as measured by an earlier proof
    g = edits.apply(f, [edits.Candidate("weight", (1, 0, 0), 0.0, 1)], [])
    bound = Gate(charger, clock.now + 25.0).proven(g, lp_seconds=60.0)
    assert given == [15.0]
    assert max_output_difference(f, g, BOX).value <= bound + 1e-9


@pytest.mark.parametrize("end", [25.0, 65.0])
def test_the_search_builds_no_network_its_gate_would_refuse(monkeypatch, end):
    """The greedy search on a gate ending ``end`` s on, proofs of 10 s, a time limit far
    beyond: once the gate has no time for a proof, no network is built for its bisection or
    blocks (at most one per amplification probe, whose proof may be memoised); every proof
    ends by the gate's end, and the search's claim holds (the oracle)."""
    clock = FakeClock().install(monkeypatch)
    started = slow_symbolic_proofs(monkeypatch, clock, 10.0)
    f = _net(1)
    charger = Charger(f, [BOX])
    gate = Gate(charger, clock.now + end)
    late: list[float] = []
    real_apply = lossy.apply

    def apply(*args, **kw):
        if not gate.fits():
            late.append(clock.now)
        return real_apply(*args, **kw)

    monkeypatch.setattr(lossy, "apply", apply)
    out = lossy.search(f, [BOX], 0.5, gate, time_limit=1000.0, use_merge=False)
    assert len(late) <= len(f.layers)
    assert all(t + 10.0 <= gate.end + 1e-9 for t in started)
    assert out.proven <= 0.5
    assert max_output_difference(f, out.network, BOX).value <= out.proven + 1e-9


def _twins(seed: int) -> Network:
    """Random ``2-6r-6r-2`` whose neuron 5 of both hidden layers is 1.5 times neuron 0 plus
    noise of 0.02 (a near-parallel pair: a merge candidate)."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(b, a)) for a, b in ((2, 6), (6, 6), (6, 2))]
    bs = [rng.normal(size=b) * 0.3 for b in (6, 6, 2)]
    for w, b in zip(ws[:-1], bs[:-1], strict=True):
        w[5] = 1.5 * w[0] + 0.02 * rng.normal(size=w.shape[1])
        b[5] = 1.5 * b[0] + 0.02 * rng.normal()
    return Network.from_arrays(ws, bs)


@pytest.mark.parametrize("end", [15.0, 1000.0])
def test_the_merge_screen_runs_only_where_its_proofs_fit(monkeypatch, end):
    """Proofs of 5 s: a screen whose gate ends 15 s on has no time for a merge's two proofs
    and one after them: none is proven, every merge reverts to its neuron's constant; with
    time, merges are screened (two proofs each)."""
    clock = FakeClock().install(monkeypatch)
    started = slow_symbolic_proofs(monkeypatch, clock, 5.0)
    f = _twins(0)
    charger = Charger(f, [BOX])
    charger.seconds = 5.0  # as measured by an earlier proof
    ranges = edits.relu_ranges(f, charger)
    plain = edits.candidates(f, ranges, [BOX])
    cands = lossy.with_merges(plain, merging.merge_candidates(f, ranges, [BOX], charger.roots()))
    merges = sum(c.kind == "merge" for c in cands)
    assert merges >= 1
    out = lossy._screen_merges(f, cands, plain, ranges, Gate(charger, clock.now + end), 0.5)
    if end < 5.0 * (2 + lossy.USE_AFTER):
        assert started == [] and not any(c.kind == "merge" for c in out)
        assert out == plain
    else:
        assert len(started) >= 2
    assert len(out) == len(cands)


def test_the_witness_pool_stops_at_its_deadline_and_is_unchanged_without_one(monkeypatch):
    """Chunks of 4 rows, each evaluation 1 s: a deadline 2.5 s on leaves 3 chunks (the
    third starts at 2 s), 12 rows; no deadline: every row, and the pool's signs and best
    rows are those of one ``add`` of all of them."""
    monkeypatch.setattr(witnesses, "POOL_CHUNK", 4)
    clock = FakeClock().install(monkeypatch)
    f = _net(2)
    rng = np.random.default_rng(0)
    x = BOX.sample(30, rng)
    timed = WitnessPool(f, BOX, DEFAULT)
    real_add = WitnessPool.add

    def slow_add(self, rows, only=None):
        clock.advance(1.0)
        return real_add(self, rows, only)

    monkeypatch.setattr(WitnessPool, "add", slow_add)
    timed.add_until(x, clock.now + 2.5)
    assert timed.size == 12 and np.array_equal(timed.rows(), x[:12])
    chunked, whole = WitnessPool(f, BOX, DEFAULT), WitnessPool(f, BOX, DEFAULT)
    chunked.add_until(x, None)
    real_add(whole, x)
    assert chunked.size == whole.size == 30
    for k in whole.pos:
        for attr in ("pos", "neg", "argmin", "argmax", "zmin", "zmax"):
            assert np.array_equal(getattr(chunked, attr)[k], getattr(whole, attr)[k])
