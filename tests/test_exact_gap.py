"""The exact pass's rounding bounded by replaying its identities in rationals
(:mod:`exactcomp.exact_gap`): never below the exact difference, and never from the rewrite's
word alone. Exact rational ground truth throughout."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.sparse as sp

import exactcomp
from exactcomp.domain import Box
from exactcomp.exact import exact_forward
from exactcomp.exact_gap import replayed_gap
from exactcomp.exact_reference import is_restriction
from exactcomp.network import Network
from exactcomp.tolerances import stored_rounding_bound

BOX = Box(np.array([-1.0]), np.array([1.0]))


def _net(ws, bs) -> Network:
    return Network.from_arrays(
        [np.array(w, float) for w in ws], [np.array(b, float) for b in bs], dtype="float64"
    )


def _duplicates() -> Network:
    r"""Two copies of ``relu(x)`` read with weights 1e16 and 1: merged, the column holds
    ``fl(1e16 + 1) = 1e16``, so the function moves by ``relu(x)``, 1 at ``x = 1``::

        x -+-> relu(x) --1e16--+
           +-> relu(x) ---1----+--> y
    """
    return _net([[[1.0], [1.0]], [[1e16, 1.0]]], [[0.0, 0.0], [0.0]])


def _constant() -> Network:
    r"""``relu(1) = 1`` read with weight 1 by a row of bias 1e20: ``fl(1e20 + 1) = 1e20``::

    x --> relu(x) --2--+
    1 --> relu(1) --1--+--> y + 1e20
    """
    return _net([[[1.0], [0.0]], [[2.0, 1.0]]], [[0.0, 1.0], [1e20]])


def _exact_max(f: Network, g: Network, xs) -> Fraction:
    pairs = [(exact_forward(f, np.array([x])), exact_forward(g, np.array([x]))) for x in xs]
    return max(abs(a - b) for fx, gx in pairs for a, b in zip(fx, gx, strict=True))


def test_a_merge_that_rounds_is_bounded_from_above() -> None:
    f = _duplicates()
    done = exactcomp.compress(f, BOX, jobs=1)
    assert done.network.num_neurons == 1 and not is_restriction(f, done.rewrite)
    gap = replayed_gap(f, done.rewrite, done.stability, [BOX])
    truth = _exact_max(f, done.network, np.linspace(-1.0, 1.0, 9))
    assert truth == 1
    assert truth <= Fraction(gap) <= 1.0 + 1e-5


def test_a_constant_absorbed_by_a_large_bias_is_bounded_from_above() -> None:
    f = _constant()
    done = exactcomp.compress(f, BOX, jobs=1)
    assert done.network.layers[-1].bias[0] == 1e20
    gap = replayed_gap(f, done.rewrite, done.stability, [BOX])
    truth = _exact_max(f, done.network, np.linspace(-1.0, 1.0, 5))
    assert truth == 1
    assert truth <= Fraction(gap) <= 1.0 + 1e-5


def test_an_exact_merge_has_no_gap() -> None:
    """Copies read with weights 2 and 1: ``2 + 1 = 3`` exactly, so the gap is (up to the
    underflow pad) 0."""
    f = _net([[[1.0], [1.0], [-1.0]], [[2.0, 1.0, 1.0]]], [[0.0, 0.0, 0.0], [0.5]])
    done = exactcomp.compress(f, BOX, jobs=1)
    assert done.network.num_neurons == 2
    assert replayed_gap(f, done.rewrite, done.stability, [BOX]) < 1e-300


def test_the_rewrite_is_not_taken_at_its_word() -> None:
    """The same rewrite replayed against a network where the copies differ by one ulp, or
    the constant reads the input: the identity fails exactly, so there is no bound."""
    f = _duplicates()
    done = exactcomp.compress(f, BOX, jobs=1)
    off = _net([[[1.0], [1.0 + 2.0**-52]], [[1e16, 1.0]]], [[0.0, 0.0], [0.0]])
    assert replayed_gap(off, done.rewrite, done.stability, [BOX]) is None
    done = exactcomp.compress(_constant(), BOX, jobs=1)
    assert replayed_gap(_constant(), done.rewrite, done.stability, [BOX]) is not None
    reads = _net([[[1.0], [1e-300]], [[2.0, 1.0]]], [[0.0, 1.0], [1e20]])
    assert replayed_gap(reads, done.rewrite, done.stability, [BOX]) is None


def test_compress_tol_keeps_the_merge_and_claims_its_gap() -> None:
    """At tol 20 the merge's proven gap (1) is within a tenth of tol: the search starts from
    the merged network and the claim covers the exact difference."""
    f = _duplicates()
    res = exactcomp.compress(f, BOX, tol=20.0, jobs=1)
    assert res.reference.num_neurons == 1
    assert 1.0 <= res.reference_gap <= 1.0 + 1e-5
    truth = _exact_max(f, res.network, np.linspace(-1.0, 1.0, 9))
    assert truth <= Fraction(res.proven) <= 20.0


def test_the_rounding_bound_reads_sparse_layers_as_dense_ones() -> None:
    rng = np.random.default_rng(3)
    layers, deltas, mags = [], [], [np.ones(4)]
    for n_in, n_out in ((4, 5), (5, 3)):
        w = rng.normal(size=(n_out, n_in)) * (rng.random((n_out, n_in)) < 0.5)
        dw = np.abs(w) * 1e-7
        layers.append((w, rng.normal(size=n_out)))
        deltas.append((dw, np.full(n_out, 1e-9)))
        mags.append(np.full(n_out, 2.0))
    dense = stored_rounding_bound(layers, deltas, mags[:-1])
    sparse = stored_rounding_bound(
        [(sp.csr_matrix(w), b) for w, b in layers],
        [(sp.csr_matrix(dw), db) for dw, db in deltas],
        mags[:-1],
    )
    assert np.allclose(dense, sparse, rtol=1e-12, atol=0.0)
