"""``compress --tol`` never returns less than global magnitude pruning proven by our verifier.

The oracle :func:`exactcomp.testing.max_output_difference` gives the exact ``max |f - g|``
on tiny networks: the returned network is within ``tol`` by it, and no proven bound is below
it.
"""

from __future__ import annotations

import numpy as np
import pytest
from strategies import gaussian_mlp

from exactcomp.approx import compress_lossy
from exactcomp.domain import Box
from exactcomp.lossy_result import nonzero_parameters as _nonzero
from exactcomp.network import Network
from exactcomp.rewrite.lossy import LossyOutcome
from exactcomp.rewrite.magnitude import (
    LP_MIN_SHARE,
    magnitude_first,
    magnitude_last,
    magnitude_pick,
    prove_magnitude,
    search_magnitude,
)
from exactcomp.rewrite.structural import drop_unused
from exactcomp.strategies import better as _better
from exactcomp.testing import max_output_difference
from exactcomp.verify.charge import Charger

BOX = Box(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))


def _net(seed: int, widths=(2, 6, 6, 2)) -> Network:
    return gaussian_mlp(seed, widths)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tol", [0.05, 0.5])
@pytest.mark.parametrize("lp_seconds", [0.0, 5.0])
def test_magnitude_candidate_zeroes_the_smallest_weights_within_tol(seed, tol, lp_seconds):
    f = _net(seed)
    out = search_magnitude(f, [BOX], tol, Charger(f, [BOX]), lp_seconds=lp_seconds)
    exact = max_output_difference(f, out.network, BOX).value
    assert exact <= out.proven + 1e-9
    assert out.proven <= tol
    zeroed, kept = [], []
    for la, lg in zip(f.layers, out.network.layers, strict=True):
        assert np.array_equal(la.bias, lg.bias)  # biases untouched
        changed = lg.weight != la.weight
        assert (lg.weight[changed] == 0).all()  # only zeroed, never moved
        zeroed += list(np.abs(la.weight[changed]))
        kept += list(np.abs(la.weight[~changed]))
    assert len(zeroed) == len(out.accepted)
    if zeroed and kept:
        assert max(zeroed) <= min(kept)  # global magnitude order


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("tol", [0.05, 0.5])
def test_compress_is_within_tol_and_no_larger_than_either_candidate(seed, tol):
    f = _net(seed)
    res = compress_lossy(f, BOX, tol, time_limit=20.0, tighten_seconds=0.0)
    rep = res.report
    assert res.proven <= tol
    exact = max_output_difference(f, res.pruned, BOX).value
    assert exact <= res.proven + 1e-9
    assert exact <= tol + 1e-12
    assert rep["strategy"] in ("search", "magnitude")
    sizes = [s["parameters_after"] for s in rep["strategies"].values()]
    assert rep["parameters_after"] == min(sizes)
    mag = search_magnitude(f, [BOX], tol, Charger(f, [BOX]), lp_seconds=5.0)
    assert rep["parameters_after"] <= _nonzero(drop_unused(mag.network))


def test_the_candidate_that_removes_more_wins_if_proven_within_tol():
    """``2-1r-1``: ``search`` keeps 5 parameters, ``magnitude`` 3 (a weight and a bias zeroed)."""
    f = Network.from_arrays([np.array([[1.0, 2.0]]), np.array([[3.0]])], [np.ones(1), np.ones(1)])
    g = Network.from_arrays([np.array([[0.0, 2.0]]), np.array([[3.0]])], [np.zeros(1), np.ones(1)])
    search_out = LossyOutcome(f, 0.0, [], 1)
    mag_out = LossyOutcome(g, 0.3, [], 1)
    best, facts = _better(search_out, mag_out, 0.5)
    assert best is mag_out and facts["strategy"] == "magnitude"
    assert facts["strategies"]["magnitude"]["parameters_after"] == 3
    assert facts["strategies"]["search"]["parameters_after"] == 5
    best, facts = _better(search_out, mag_out, 0.2)  # not proven within tol: never taken
    assert best is search_out and facts["strategy"] == "search"
    best, facts = _better(search_out, search_out, 0.5)  # a tie: the search
    assert facts["strategy"] == "search"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tol", [0.05, 0.5])
def test_symbolic_pick_is_proven_and_reach_is_no_smaller(seed, tol):
    """The cheap half alone: the pick's symbolic bound is within ``tol`` (and above the exact
    difference); the optimistic reach for ``rho = 0.5`` never zeroes fewer weights."""
    f = _net(seed)
    charger = Charger(f, [BOX])
    pick = magnitude_pick(f, [BOX], tol, charger, rho=0.5)
    assert pick.reach >= pick.n
    if pick.n:
        assert pick.bound <= tol
        assert max_output_difference(f, pick.network(f), BOX).value <= pick.bound + 1e-9
    out = prove_magnitude(f, pick, tol, charger, lp_seconds=0.0)  # no LP: the pick as it is
    assert len(out.accepted) == pick.n and out.proven == pick.bound


def _first(f, tol, lp_seconds=5.0):
    return magnitude_first(f, [BOX], tol, Charger(f, [BOX]), time_limit=20.0, lp_seconds=lp_seconds)


def test_lp_is_reserved_only_when_the_reach_removes_enough():
    f = _net(0)
    mag, reserve = _first(f, 1e-9)  # nothing can be zeroed: nothing to reserve
    assert mag.pick.n == 0 and reserve == 0.0
    mag, reserve = _first(f, 50.0)  # everything can: the LP's budget, within the share
    before = _nonzero(f)
    assert before - mag.facts["reach_parameters_after"] >= LP_MIN_SHARE * before
    assert 0.0 < reserve <= 5.0
    assert _first(f, 50.0, lp_seconds=0.0)[1] == 0.0  # no LP asked for


def test_lp_proof_skipped_when_the_symbolic_pick_cannot_win(monkeypatch):
    """A search result smaller than the magnitude reach: the LP is never called."""
    f = _net(1)
    mag, reserve = _first(f, 0.5)
    assert reserve > 0
    empty = Network.from_arrays(
        [np.zeros_like(la.weight) for la in f.layers], [np.zeros_like(la.bias) for la in f.layers]
    )
    small = LossyOutcome(empty, 0.4, [], 1)  # 0 parameters: nothing can beat it

    def no_lp(*args, **kwargs):
        raise AssertionError("the LP proof ran although magnitude could not win")

    monkeypatch.setattr("exactcomp.rewrite.magnitude.prove_magnitude", no_lp)
    kept = magnitude_last(f, mag, small, 0.5, Charger(f, [BOX]), reserve=reserve, lp_seconds=5.0)
    assert kept is mag and not kept.facts["lp_proof"]


def test_lp_proof_runs_when_the_reach_beats_the_search_and_stays_within_tol():
    f = _net(1)
    mag, reserve = _first(f, 0.5)
    unpruned = LossyOutcome(f, 0.0, [], 1)  # the search removed nothing
    out = magnitude_last(f, mag, unpruned, 0.5, Charger(f, [BOX]), reserve=reserve, lp_seconds=5.0)
    assert out.facts["lp_proof"]
    assert out.outcome.proven <= 0.5
    assert len(out.outcome.accepted) >= mag.pick.n  # the LP only extends the pick
    exact = max_output_difference(f, out.outcome.network, BOX).value
    assert exact <= out.outcome.proven + 1e-9
