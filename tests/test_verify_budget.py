"""``verify_equivalence`` keeps to its time limit, and running out of time never proves anything.

The slow phase is simulated by slowing down the stability engine's per-layer classification
(``LayerRun.classify`` lets ``SLEEP`` seconds pass on a fake clock before doing its real work):
without a deadline on the stability analyses a run then takes (layers of f and g) x SLEEP,
whatever the limit. Only the fake clock moves (:class:`exactcomp.testing.clock.FakeClock`), so
real computation takes no time and every bound below is exact on any machine load.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_verify import bump_network, mlp, permuted

from exactcomp.domain import Box
from exactcomp.stability import layer as stability_layer
from exactcomp.testing.clock import FakeClock
from exactcomp.tolerances import DEFAULT
from exactcomp.verdicts import Verdict
from exactcomp.verify import EquivalenceStatus, verify_equivalence
from exactcomp.verify.formulation import (
    StabilityBudget,
    best_bounds,
    proven_encoding,
    with_linear_output,
)

EQ = EquivalenceStatus.EQUIVALENT
SLEEP = 0.5  # seconds each layer's classification is slowed down by (on the fake clock)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The only clock exactcomp reads during the test."""
    return FakeClock().install(monkeypatch)


@pytest.fixture
def slow_layers(monkeypatch, clock):
    """Every layer's classification takes ``SLEEP`` seconds more; returns the call log."""
    real = stability_layer.LayerRun.classify
    calls: list[int] = []

    def slow(self):
        calls.append(self.k)
        clock.sleep(SLEEP)
        return real(self)

    monkeypatch.setattr(stability_layer.LayerRun, "classify", slow)
    return calls


def test_a_slow_stability_analysis_ends_with_the_time_limit(slow_layers, clock) -> None:
    """Six ReLU layers in each network: without a deadline the stability analyses alone
    take 12 x SLEEP = 6 s. With a 2 s limit the run ends within 1.1 times it (plus one
    slowed layer in progress), and a pair that differs is never EQUIVALENT."""
    f = mlp([3, 8, 8, 8, 8, 8, 8, 2], seed=1)
    f2 = mlp([3, 8, 8, 2], seed=1)
    g = bump_network(f2, np.array([0.3, -0.2, 0.1]), 1e-7, 1.0)
    t = clock.now
    res = verify_equivalence(f, permuted(f, seed=2), Box.uniform(-1, 1, 3), time_limit=2.0)
    took = clock.now - t
    assert took <= 1.1 * 2.0 + SLEEP, (took, res.timings)
    assert len(slow_layers) < 12  # the analyses stopped early
    assert res.status is EQ or res.status is EquivalenceStatus.UNKNOWN, res.summary()
    slow_layers.clear()
    t = clock.now
    res = verify_equivalence(f2, g, Box.uniform(-1, 1, 3), time_limit=1.0)
    took = clock.now - t
    assert took <= 1.1 * 1.0 + SLEEP, (took, res.timings)
    assert res.status is not EQ, res.summary()


def test_running_out_of_time_in_the_stability_analysis_gives_unknown(slow_layers, clock) -> None:
    """A permuted copy is proven equal in well under a second with time to spare; when the
    (slowed) stability analysis of ``f`` alone uses up the whole limit, nothing after it
    runs and the answer is UNKNOWN, not EQUIVALENT."""
    f = mlp([3, 8, 8, 2], seed=3)
    g = permuted(f, seed=4)
    box = Box.uniform(-1, 1, 3)
    t = clock.now
    res = verify_equivalence(f, g, box, time_limit=0.2)
    took = clock.now - t
    assert res.status is EquivalenceStatus.UNKNOWN, res.summary()
    assert "time limit" in res.reason
    assert slow_layers == [0]  # f's first layer started, then the deadline stopped it
    assert took == SLEEP, (took, res.timings)  # real work takes no time on the fake clock
    assert res.timings["total"] == SLEEP
    assert "differential" not in res.timings and "milp" not in res.timings


def test_proven_encoding_keeps_the_layers_finished_before_the_deadline(slow_layers, clock) -> None:
    net = with_linear_output(mlp([3, 8, 8, 8, 2], seed=5))
    box = Box.uniform(-1, 1, 3)
    full_bounds, full = proven_encoding(net, box, DEFAULT, 1.0)
    slow_layers.clear()
    t = clock.now
    # layer 0 works from ~SLEEP, before the deadline; layer 1 starts before it but works
    # from ~2 SLEEP, past it (no MILP then); layer 2 would start past it
    bounds, verdicts = proven_encoding(
        net, box, DEFAULT, StabilityBudget(1.0, t + 1.5 * SLEEP + 0.1)
    )
    assert clock.now - t == 2 * SLEEP  # layers 0 and 1
    assert slow_layers == [0, 1]
    np.testing.assert_array_equal(verdicts[0], full[0])
    claimed = np.isin(verdicts[1], (Verdict.INACTIVE, Verdict.ACTIVE))
    np.testing.assert_array_equal(verdicts[1][claimed], full[1][claimed])  # only proven claims
    cheap = best_bounds(net, box, DEFAULT)
    for k in (2,):  # reached past the deadline: the cheap bounds only, and no claim but
        # those of its interval bounds and the pooled witnesses (LayerRun.late)
        decided = verdicts[k] != Verdict.UNDECIDED
        np.testing.assert_array_equal(verdicts[k][decided], full[k][decided])
        np.testing.assert_array_equal(bounds[k][0], cheap[k][0])
        np.testing.assert_array_equal(bounds[k][1], cheap[k][1])
    # every bound used is still sound: no tighter than the full analysis' proven ones
    # would require, and containing the values at sampled inputs
    x = box.sample(2000, np.random.default_rng(0))
    for k, z in enumerate(net.preactivations(x)):
        assert np.all(z >= bounds[k][0] - 1e-9) and np.all(z <= bounds[k][1] + 1e-9)
    assert full_bounds[0][0].shape == bounds[0][0].shape


def test_a_deadline_already_past_skips_the_analysis(slow_layers, clock) -> None:
    net = with_linear_output(mlp([3, 8, 8, 2], seed=6))
    box = Box.uniform(-1, 1, 3)
    bounds, verdicts = proven_encoding(net, box, DEFAULT, StabilityBudget(1.0, clock.now - 1.0))
    assert slow_layers == []
    assert verdicts == [None] * len(net.layers)
    cheap = best_bounds(net, box, DEFAULT)
    for b, c in zip(bounds, cheap, strict=True):
        np.testing.assert_array_equal(b[0], c[0])
        np.testing.assert_array_equal(b[1], c[1])


def test_ctrl_c_during_a_budgeted_analysis_still_interrupts(monkeypatch, clock) -> None:
    """Running out of time is not an interrupt, and a real Ctrl-C is not swallowed."""

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(stability_layer.LayerRun, "classify", interrupted)
    net = with_linear_output(mlp([3, 8, 8, 2], seed=7))
    with pytest.raises(KeyboardInterrupt):
        proven_encoding(net, Box.uniform(-1, 1, 3), DEFAULT, StabilityBudget(1.0, clock.now + 60))


def test_a_union_of_boxes_shares_one_time_limit(slow_layers, clock) -> None:
    """Three boxes, each of whose analyses alone would take longer than the limit: the
    whole call still ends within about the limit (not three times it)."""
    f = mlp([3, 8, 8, 8, 8, 2], seed=8)
    g = permuted(f, seed=9)
    boxes = [Box.uniform(-1, 1, 3), Box.uniform(0, 1, 3), Box.uniform(-0.5, 0.5, 3)]
    from exactcomp.api import verify_equivalence as api_verify

    t = clock.now
    res = api_verify(f, g, boxes, time_limit=2.0)
    took = clock.now - t
    assert took <= 1.1 * 2.0 + SLEEP, (took, res.timings)
    assert res.status is EQ or res.status is EquivalenceStatus.UNKNOWN, res.summary()
