"""``compress --tol`` starts from the exact pass's network only where it equals ``f`` bit for
bit on what it keeps (:mod:`exactcomp.exact_reference`): a fold's float64 rounding is not a
proof. Exact rational ground truth throughout."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

import exactcomp
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.exact_reference import exact_reference, is_restriction
from exactcomp.network import Network
from exactcomp.rewrite.record import NeuronFate, Reason, RewriteResult

ROUNDING_BOX = Box(np.array([1e6]), np.array([2e6]))


def _rounding_net() -> Network:
    """Two active neurons merged into one layer by ``compress``: ``fl(1 + 3 fl(1e8/3))``
    where the exact weight is ``100000000.99999999627`` (tests/test_rounding_allowance.py)."""
    w0, w1 = np.array([[1.0], [3.0]]), np.array([[1.0, 1e8 / 3]])
    return Network.from_arrays([w0, w1], [np.zeros(2), np.zeros(1)], dtype="float64")


def _exact(net: Network, x: float) -> Fraction:
    return exact_forward(net, np.array([x]))[0]


def test_compress_tol_claims_no_less_than_the_exact_difference() -> None:
    """The exact pass merges the layers (rounding 7.5e-3 at x = 2e6); ``compress --tol 1e-3``
    claimed ``proven <= 0`` against that network before. Now its claim covers the truth."""
    f = _rounding_net()
    res = exactcomp.compress(f, ROUNDING_BOX, tol=1e-3, jobs=1)
    for x in np.linspace(1e6, 2e6, 11):
        assert abs(_exact(f, x) - _exact(res.network, x)) <= Fraction(res.proven)
    assert res.proven <= 1e-3


def _fates(kept: dict[int, list[int]], reasons: dict[tuple[int, int], Reason]):
    out = {}
    for (k, i), reason in reasons.items():
        out[(k, i)] = NeuronFate(None, reason)
    for k, rows in kept.items():
        for new, i in enumerate(rows):
            out[(k, i)] = NeuronFate((k, new), None)
    return out


def _net(ws, bs) -> Network:
    return Network.from_arrays([np.array(w, float) for w in ws], [np.array(b, float) for b in bs])


def test_an_inactive_neuron_deleted_is_a_restriction() -> None:
    f = _net([[[1.0], [-1.0]], [[2.0, 5.0]]], [[0.0, -1.0], [0.5]])
    g = _net([[[1.0]], [[2.0]]], [[0.0], [0.5]])
    fates = _fates({0: [0]}, {(0, 1): Reason.INACTIVE})
    assert is_restriction(f, RewriteResult(g, (), fates))


def test_a_positive_constant_absorbed_by_a_large_bias_is_not() -> None:
    """``h = relu(1) = 1`` read with weight 1 by a row of bias 1e20: ``fl(1e20 + 1) = 1e20``,
    so the bias is bit-equal, but the function moved by 1."""
    f = _net([[[1.0], [0.0]], [[2.0, 1.0]]], [[0.0, 1.0], [1e20]])
    g = _net([[[1.0]], [[2.0]]], [[0.0], [1e20 + 1.0]])
    assert g.layers[1].bias[0] == 1e20
    fates = _fates({0: [0]}, {(0, 1): Reason.CONSTANT})
    assert not is_restriction(f, RewriteResult(g, (), fates))


def test_constants_that_cancel_exactly_are_a_restriction() -> None:
    """A max-pool level over a removed channel reads ``relu(1)`` twice, with +1 and -1."""
    f = _net([[[1.0], [0.0], [0.0]], [[1.0, 1.0, -1.0]]], [[0.0, 1.0, 1.0], [0.25]])
    g = _net([[[1.0]], [[1.0]]], [[0.0], [0.25]])
    fates = _fates({0: [0]}, {(0, 1): Reason.CONSTANT, (0, 2): Reason.CONSTANT})
    assert is_restriction(f, RewriteResult(g, (), fates))


def test_a_fold_falls_back_to_the_deleting_passes() -> None:
    """ACAS Xu-like: an active neuron folded changes numbers; the reference is then the
    deletion of the inactive ones alone, a restriction."""
    f = _rounding_net()
    done = exactcomp.compress(f, ROUNDING_BOX, jobs=1)
    assert not is_restriction(f, done.rewrite)
    ref, facts, gap = exact_reference(f, done, [ROUNDING_BOX], 1e-3, 90.0)
    assert facts.network is ref and gap == 0.0  # the verifier proves the rounding > 1e-4
    for x in np.linspace(1e6, 2e6, 5):
        assert _exact(ref, x) == _exact(f, x)


def test_the_gap_is_claimed_and_composes_with_quantize() -> None:
    """At tol 1 the merged layers' rounding (an exact 3.7e-9 x, 7.45e-3 at x = 2e6) is within
    a tenth of tol: the folded network is kept and the proven gap is part of the claim, of
    ``compress --tol`` and of ``quantize`` of its result."""
    from exactcomp.quantization import quantize

    f = _rounding_net()
    res = exactcomp.compress(f, ROUNDING_BOX, tol=1.0, jobs=1)
    assert len(res.reference.layers) == 1 and 7.4e-3 <= res.reference_gap <= 0.1
    assert res.report["exact_pass"]["gap"] == res.reference_gap
    moved = abs(_exact(f, 2e6) - _exact(res.reference, 2e6))
    assert moved <= Fraction(res.reference_gap) <= Fraction(res.proven)
    q = quantize(res, ROUNDING_BOX, bits=8)
    for x in np.linspace(1e6, 2e6, 11):
        assert abs(_exact(f, x) - _exact(q.network, x)) <= Fraction(q.proven)
    # quantize adds the gap it is given (here 1e12, beyond the 8-bit error of ~1.6e9)
    wide = quantize(dataclasses.replace(res, reference_gap=1e12), ROUNDING_BOX, bits=8)
    assert wide.proven >= 1e12 + q.proven - 1.0
