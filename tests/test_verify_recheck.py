"""Certificate re-check, and verify_equivalence on networks compressed by the real pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from exactcomp.domain import Box
from exactcomp.network import Layer, Network
from exactcomp.rewrite import compress_network
from exactcomp.stability import stable_neurons
from exactcomp.verdicts import StabilityReport, Verdict
from exactcomp.verify import EquivalenceStatus, recheck_certificates, verify_equivalence

BOX = Box.uniform(0, 1, 3)


def mixed_net(seed: int = 0) -> Network:
    """A 3-10-10-2 MLP whose biases make some neurons stably on, some off, some unstable."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(10, 3)) / 2, rng.normal(size=(10, 10)) / 3, rng.normal(size=(2, 10))]
    bs = [rng.normal(size=10), rng.normal(size=10), rng.normal(size=2)]
    bs[0][:3] = [-4.0, 4.0, -5.0]  # off, on, off
    bs[1][:2] = [-6.0, 6.0]
    return Network.from_arrays(ws, bs, dtype="float64")


@pytest.fixture(scope="module")
def compressed():
    net = mixed_net()
    report = stable_neurons(net, BOX, jobs=1)
    return net, report, compress_network(net, report).network


def _with_verdict(report: StabilityReport, k: int, j: int, v: Verdict) -> StabilityReport:
    layers = []
    for ls in report.layers:
        if ls.layer == k:
            verdict = ls.verdict.copy()
            verdict[j] = v
            ls = dataclasses.replace(ls, verdict=verdict)
        layers.append(ls)
    return StabilityReport(tuple(layers), report.witnesses, report.stats)


def test_genuine_report_rechecks(compressed) -> None:
    net, report, _ = compressed
    assert report.count(Verdict.INACTIVE) + report.count(Verdict.ACTIVE) >= 3
    res = recheck_certificates(net, report, BOX, time_limit=30)
    assert res.ok, res.failures
    stable = report.count(Verdict.INACTIVE) + report.count(Verdict.ACTIVE)
    assert sum(res.checked[k] for k in ("interval", "linear", "lp", "bab", "milp")) == stable
    assert res.checked["witness"] == report.count(Verdict.UNSTABLE)
    assert "re-checked" in res.summary()


@pytest.mark.parametrize("claim", [Verdict.INACTIVE, Verdict.ACTIVE])
def test_false_stability_claim_is_refuted(compressed, claim: Verdict) -> None:
    net, report, _ = compressed
    ls = report.layers[0]
    j = int(ls.indices(Verdict.UNSTABLE)[0])
    bad = _with_verdict(report, ls.layer, j, claim)
    res = recheck_certificates(net, bad, BOX, time_limit=30)
    assert not res.ok
    [failure] = res.failures
    assert (failure.layer, failure.neuron, failure.claimed) == (ls.layer, j, claim.name)
    assert failure.refuted


def test_bad_witness_is_reported(compressed) -> None:
    net, report, _ = compressed
    ls = report.layers[0]
    j = int(ls.indices(Verdict.UNSTABLE)[0])
    swapped = dataclasses.replace(ls, witness_pos=ls.witness_neg.copy())
    bad = StabilityReport((swapped, *report.layers[1:]), report.witnesses, report.stats)
    res = recheck_certificates(net, bad, BOX, time_limit=30)
    assert any(
        f.layer == ls.layer and f.neuron == j and f.claimed == "UNSTABLE" for f in res.failures
    )
    assert not any(f.refuted for f in res.failures)  # a bad witness refutes nothing


def test_no_time_means_not_reproven_never_ok(compressed) -> None:
    net, report, _ = compressed
    ls = report.layers[0]
    j = int(ls.indices(Verdict.UNSTABLE)[-1])
    bad = _with_verdict(report, ls.layer, j, Verdict.INACTIVE)
    res = recheck_certificates(net, bad, BOX, time_limit=1e-9)
    assert not res.ok


def test_compressed_network_is_equivalent(compressed) -> None:
    net, _, small = compressed
    assert small.num_neurons < net.num_neurons
    for mode in ("linf", "top1"):
        res = verify_equivalence(net, small, BOX, mode=mode)
        assert res.status is EquivalenceStatus.EQUIVALENT, res.summary()


def test_compressed_minus_an_unstable_neuron_differs(compressed) -> None:
    net, _, small = compressed
    z = small.preactivations(BOX.sample(4000, np.random.default_rng(1)))[0]
    j = int(np.flatnonzero((z.min(axis=0) < -0.1) & (z.max(axis=0) > 0.1))[0])
    l0, l1 = small.layers[0], small.layers[1]
    keep = np.arange(l0.out_features) != j
    g = small.replace_layers(
        (
            Layer(l0.weight[keep], l0.bias[keep], True),
            Layer(l1.weight[:, keep], l1.bias, l1.relu),
            *small.layers[2:],
        )
    )
    res = verify_equivalence(net, g, BOX)
    assert res.status is EquivalenceStatus.NOT_EQUIVALENT
    x = res.counterexample.x
    assert np.abs(net.forward(x) - g.forward(x)).max() > res.tol


def test_union_of_boxes_needs_each_claim_on_every_box() -> None:
    """A claim proven on the report's box is re-checked on each box of a union: on a second
    box where the neuron turns on, the INACTIVE claim is refuted."""
    net = mixed_net()
    report = stable_neurons(net, BOX, jobs=1)
    ls = report.layers[0]
    j = int(ls.indices(Verdict.INACTIVE)[0])
    w, b = net.layers[0].weight[j], net.layers[0].bias[j]
    # a box far out along w, where w.x + b > 0
    point = (1.0 - b) * w / (w @ w)
    far = Box(point - 1e-3, point + 1e-3)
    assert net.preactivations(point)[0][0, j] > 0
    assert recheck_certificates(net, report, [BOX], time_limit=30).ok
    res = recheck_certificates(net, report, [BOX, far], time_limit=30)
    assert any(f.neuron == j and f.layer == ls.layer and f.refuted for f in res.failures)


def test_merged_layers_different_depth_is_equivalent() -> None:
    """A middle layer that is stably active everywhere is merged away by the compressor, so
    the two networks have different depths; the proof must still go through."""
    rng = np.random.default_rng(5)
    ws = [rng.normal(size=(6, 3)), rng.normal(size=(5, 6)) * 0.2, rng.normal(size=(2, 5))]
    bs = [rng.normal(size=6) * 0.5, np.full(5, 20.0), rng.normal(size=2)]
    net = Network.from_arrays(ws, bs, dtype="float64")
    small = compress_network(net, stable_neurons(net, BOX, jobs=1)).network
    assert len(small.layers) < len(net.layers)
    res = verify_equivalence(net, small, BOX)
    assert res.status is EquivalenceStatus.EQUIVALENT, res.summary()
