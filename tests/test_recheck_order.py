"""The certificate re-check's phase order (:func:`exactcomp.verify.recheck._proof_phases`).

On few inputs the re-check's own input-split trees run before the LP with ideal cuts (the
cuts, asked first, cost LPs whose claims the trees re-prove anyway); the cuts and the MILP
still get every claim the trees leave, so nothing is weakened:

- the kink network (:func:`test_bab.kink_net`): its claim is re-proven by a tree and the cuts
  are never asked;
- trees that prove nothing: the claims go on to the cuts and the MILP, as before;
- planted false claims on small random few-input networks, against the exact oracle
  (:func:`exactcomp.testing.oracle.exact_preactivation_ranges`): a claim the oracle refutes is
  never re-proven, and every true claim of the engine's report is.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_bab import BOX, kink_net

import exactcomp.verify.recheck as recheck
from exactcomp.domain import Box
from exactcomp.stability import stable_neurons
from exactcomp.stability.phases import PhaseResult
from exactcomp.testing.adversarial import planted_claims
from exactcomp.testing.oracle import exact_preactivation_ranges
from exactcomp.testing.random_networks import random_network
from exactcomp.verdicts import Verdict
from exactcomp.verify import recheck_certificates


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    """Count the calls of phase ``name`` of the re-check module (the phase itself runs)."""
    phase = getattr(recheck, name)

    def spied(q):
        calls.append(name)
        return phase(q)

    monkeypatch.setattr(recheck, name, spied)


def test_trees_before_cuts_on_few_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kink neuron (inactive; out of reach of the whole-box bounds, one split proves it)
    is re-proven by the tree, and the ideal cuts are not asked at all."""
    net = kink_net()
    rep = stable_neurons(net, BOX, jobs=1)
    calls: list[str] = []
    _spy(monkeypatch, "ideal_cut_phase", calls)
    _spy(monkeypatch, "input_split_phase", calls)
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok, res.failures
    assert res.checked["bab"] == 1 and res.checked["lp"] == 0 and res.milps == 0
    assert calls == ["input_split_phase"]


def test_claims_the_trees_leave_go_on_to_the_cuts_and_the_milp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Trees that prove nothing (as when their node budget runs out): the kink claim is still
    re-proven, by the cuts or the MILP after them."""
    net = kink_net()
    rep = stable_neurons(net, BOX, jobs=1)
    calls: list[str] = []

    def barren(q):
        calls.append("input_split_phase")
        n = q.net.layers[q.k].out_features
        return PhaseResult(np.zeros(n, bool), np.zeros(n, bool), None, np.zeros((0, 1)), 0)

    monkeypatch.setattr(recheck, "input_split_phase", barren)
    _spy(monkeypatch, "ideal_cut_phase", calls)
    res = recheck_certificates(net, rep, BOX, time_limit=30)
    assert res.ok, res.failures
    assert res.checked["bab"] == 0 and res.checked["lp"] + res.checked["milp"] == 1
    assert calls == ["input_split_phase", "ideal_cut_phase"]


def _cases() -> list[tuple[int, object, Box]]:
    out = []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(2, 4))
        box = Box(-np.ones(n), np.ones(n))
        net = random_network(rng, depth=(3, 3), width=(4, 6), inputs=(n, n), nasty=False)
        out.append((seed, net, box))
    return out


@pytest.mark.parametrize(("seed", "net", "box"), _cases(), ids=lambda v: str(v)[:8])
def test_planted_false_claims_are_never_reproven(seed, net, box) -> None:
    """Each neuron of a hidden layer whose exact range crosses 0 (by a margin), claimed
    INACTIVE and then ACTIVE: the re-check never re-proves it. The engine's own report
    (its claims true per the oracle) is re-proven whole."""
    exact = exact_preactivation_ranges(net, box)
    rep = stable_neurons(net, box, jobs=1)
    for ls in rep.layers:
        lo, hi = exact[ls.layer]
        for j in np.flatnonzero(ls.verdict == Verdict.INACTIVE):
            assert hi[j] <= 0.0
        for j in np.flatnonzero(ls.verdict == Verdict.ACTIVE):
            assert lo[j] >= 0.0
    good = recheck_certificates(net, rep, box, time_limit=30)
    assert good.ok, good.failures
    planted = 0
    for k, j, bad in planted_claims(net, rep, exact):
        res = recheck_certificates(net, bad, box, time_limit=30)
        assert not res.ok
        assert (k, j) in {(f.layer, f.neuron) for f in res.failures}
        planted += 1
    assert planted > 0
