"""``verify`` of networks with sparse layers: claims re-proven cone by cone, ``g`` matched to
``f`` with proven-constant units removed (:mod:`exactcomp.verify.sparse`).

The cases are the soak's small random convolutional networks
(:func:`~exactcomp.testing.random_conv.random_conv_case`) with every structured layer held
sparse (``as_sparse``), e.g. seed 6::

    x (16) -> Conv (16 r) -> MaxPool as ReLUs (16 r, 8 r, 4) -> Conv (4 r) -> Gemm 2

with inactive, dead, constant and tied channels mixed in. Ground truth: both networks
evaluated in exact rational arithmetic (dense copies) on the box's corners and samples.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from exactcomp import api
from exactcomp.errors import UnsupportedModelError
from exactcomp.exact import exact_forward
from exactcomp.network import Layer, Network
from exactcomp.rewrite.channels import choose_structured
from exactcomp.testing.random_conv import as_sparse, random_conv_case
from exactcomp.verdicts import LayerStability, StabilityReport, Verdict
from exactcomp.verify import EquivalenceStatus
from exactcomp.verify.cone_recheck import recheck_by_cones
from exactcomp.verify.falsify import candidate_points
from exactcomp.verify.sparse import constant_units, match_removal

# seeds whose compression removes channels: inactive (4, 8), dead and pooled (6, 7), and
# constant channels folded into the next bias (9, 11: a float64 fold, bounded exactly)
SEEDS = (4, 6, 7, 9, 11)


def _dense(net: Network) -> Network:
    layers = [
        Layer(la.weight.toarray() if la.sparse else la.weight, la.bias, la.relu)
        for la in net.layers
    ]
    return Network(tuple(layers), dtype=net.dtype)


def _exact_gap(f: Network, g: Network, box, n: int = 64) -> Fraction:
    """``max |f - g|`` in exact arithmetic over corners, near-corner and uniform points."""
    fd, gd = _dense(f), _dense(g)
    worst = Fraction(0)
    for x in candidate_points(box, n, np.random.default_rng(1)):
        fx, gx = exact_forward(fd, x), exact_forward(gd, x)
        worst = max(worst, *(abs(a - b) for a, b in zip(fx, gx, strict=True)))
    return worst


def _compressed(seed: int):
    case = random_conv_case(seed)
    f = as_sparse(case.network)
    checked = api.compress_verified(f, case.box, verify=True, time_limit=5, jobs=1, check=500)
    return case, f, checked


@pytest.mark.parametrize("seed", SEEDS)
def test_a_channel_compression_is_proven_equivalent(seed):
    case, f, checked = _compressed(seed)
    assert checked.compression.report["structure"]["written"] == "channels"
    assert checked.written.num_parameters < f.num_parameters
    assert checked.recheck.ok and checked.ok, checked.verdict.summary()
    claims = checked.compression.stability.count(Verdict.INACTIVE)
    claims += checked.compression.stability.count(Verdict.ACTIVE)
    assert sum(checked.recheck.checked.values()) == claims  # each claim counted once
    v = checked.verdict
    assert v.status is EquivalenceStatus.EQUIVALENT and v.upper_bound <= v.tol
    assert _exact_gap(f, checked.written, case.box) <= Fraction(v.upper_bound)


def test_verify_without_certificates_is_refused():
    case, f, checked = _compressed(6)
    with pytest.raises(UnsupportedModelError, match="without certificates"):
        api.verify_equivalence(f, checked.written, case.box)


def _tampered(g: Network, delta: float) -> Network:
    """``g`` with the first non-zero weight of its first layer with one moved by ``delta``."""
    layers = list(g.layers)
    k = next(i for i, la in enumerate(layers) if (la.weight != 0).sum() > 0)
    w = layers[k].weight.copy()
    if layers[k].sparse:
        w.data[0] += delta
    else:
        w[np.unravel_index(np.flatnonzero(w)[0], w.shape)] += delta
    layers[k] = Layer(w, layers[k].bias, layers[k].relu, None)
    return g.replace_layers(layers)


@pytest.mark.parametrize("seed", (6, 7, 8))
@pytest.mark.parametrize("delta", (1.0, 2.0**-30))
def test_a_changed_weight_is_never_equivalent(seed, delta):
    case, f, checked = _compressed(seed)
    g = _tampered(checked.written, delta)
    res = api.verify_equivalence(f, g, case.box, certificates=checked.compression.stability)
    assert res.status is not EquivalenceStatus.EQUIVALENT
    if res.status is EquivalenceStatus.NOT_EQUIVALENT:  # a real difference, exactly
        cex = res.counterexample
        fx = exact_forward(_dense(f), cex.x)
        gx = exact_forward(_dense(g), cex.x)
        assert max(abs(a - b) for a, b in zip(fx, gx, strict=True)) > Fraction(res.tol)
    else:
        assert "not in g" in res.reason or "matches no unit" in res.reason


def _claim_live_channel_dead(f: Network, report: StabilityReport):
    """The report with every position of the first conv channel that has an unstable
    position claimed INACTIVE (a false claim), and that channel's layer index."""
    layers = list(report.layers)
    for i, ls in enumerate(layers):
        spec = f.layers[ls.layer].structure
        if spec is None or not hasattr(spec, "kernel"):
            continue
        per = ls.width // spec.out_shape[0]
        v = ls.verdict.reshape(-1, per)
        for c in range(v.shape[0]):
            if np.any(v[c] == Verdict.UNSTABLE):
                verdict = ls.verdict.copy()
                verdict[c * per : (c + 1) * per] = Verdict.INACTIVE
                layers[i] = LayerStability(
                    ls.layer, verdict, ls.proof, ls.lower, ls.upper, ls.witness_pos, ls.witness_neg
                )
                return StabilityReport(tuple(layers), report.witnesses, report.stats), ls.layer
    raise AssertionError("no live channel")


@pytest.mark.parametrize("seed", (6, 7, 8))
def test_a_live_channel_removed_is_never_equivalent(seed):
    case, f, checked = _compressed(seed)
    fake, k = _claim_live_channel_dead(f, checked.compression.stability)
    g = choose_structured(f, fake, None)[0].network
    assert g.layers[k].out_features < checked.written.layers[k].out_features
    for certificates in (fake, checked.compression.stability):
        res = api.verify_equivalence(f, g, case.box, certificates=certificates)
        assert res.status is not EquivalenceStatus.EQUIVALENT
    rc = api.recheck_certificates(f, fake, case.box, time_limit=5)
    assert not rc.ok and {c.layer for c in rc.failures} == {k}
    assert any(c.refuted for c in rc.failures)  # the channel really is live on the box


def test_false_claims_fail_the_cone_recheck():
    """Every claim flipped (INACTIVE <-> ACTIVE): each fails; a true report passes."""
    case, f, checked = _compressed(7)
    report = checked.compression.stability
    assert recheck_by_cones(f, report, [case.box], time_limit=5).ok
    flipped = []
    for ls in report.layers:
        v = ls.verdict.copy()
        inactive, active = v == Verdict.INACTIVE, v == Verdict.ACTIVE
        v[inactive], v[active] = Verdict.ACTIVE, Verdict.INACTIVE
        flipped.append(
            LayerStability(
                ls.layer, v, ls.proof, ls.lower, ls.upper, ls.witness_pos, ls.witness_neg
            )
        )
    bad = StabilityReport(tuple(flipped), report.witnesses, report.stats)
    rc = recheck_by_cones(f, bad, [case.box], time_limit=5)
    claims = sum(int(np.isin(ls.verdict, (1, 2)).sum()) for ls in report.layers)
    assert claims and len(rc.failures) >= 1
    x = candidate_points(case.box, 256, np.random.default_rng(0))
    z = f.preactivations(x)
    for c in rc.failures:
        assert c.claimed in ("INACTIVE", "ACTIVE")
    # a flipped claim that held (a neuron constant 0 is both) is the only kind that may pass
    failed = {(c.layer, c.neuron) for c in rc.failures}
    for ls in bad.layers:
        for j in np.flatnonzero(np.isin(ls.verdict, (1, 2))):
            zj = z[ls.layer][:, j]
            wrong = np.any(zj > 0) if ls.verdict[j] == Verdict.INACTIVE else np.any(zj < 0)
            if wrong:
                assert (ls.layer, int(j)) in failed


def test_unmatched_structure_is_unknown_in_one_line():
    case, f, checked = _compressed(4)
    other = random_conv_case(5).network
    m = match_removal(
        f, as_sparse(other), constant_units(f, checked.compression.stability, checked.recheck)
    )
    assert m.reason is not None and "\n" not in m.reason


def test_top1_needs_an_exact_match():
    """Seed 9 folds a constant channel in float64 (bound ~1e-16 > 0): EQUIVALENT in linf,
    but in top1 mode only an exact match counts, so UNKNOWN there."""
    case, f, checked = _compressed(9)
    assert 0 < checked.verdict.upper_bound <= checked.verdict.tol
    cert = checked.compression.stability
    res = api.verify_equivalence(f, checked.written, case.box, certificates=cert, mode="top1")
    assert res.status is EquivalenceStatus.UNKNOWN
    case, f, checked = _compressed(6)
    cert = checked.compression.stability
    res = api.verify_equivalence(f, checked.written, case.box, certificates=cert, mode="top1")
    assert res.status is EquivalenceStatus.EQUIVALENT and res.upper_bound == 0.0


def test_a_structural_unknown_says_so():
    """A weight moved by 2^-30 (far below the tolerance, so no counterexample): UNKNOWN
    because ``g`` is not ``f`` with units removed, whatever the time limit; the verdict says
    so (``cause="structure"``), so the CLI does not advise more time."""
    case, f, checked = _compressed(6)
    g = _tampered(checked.written, 2.0**-30)
    cert = checked.compression.stability
    res = api.verify_equivalence(f, g, case.box, certificates=cert, tol=1e-3)
    assert res.status is EquivalenceStatus.UNKNOWN
    assert res.cause == "structure" and res.to_json()["cause"] == "structure"
    ok = api.verify_equivalence(f, checked.written, case.box, certificates=cert)
    assert ok.status is EquivalenceStatus.EQUIVALENT and ok.cause == ""
