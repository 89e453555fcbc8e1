"""The row relations folds rely on: bases of active rows, positive duplicates."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.rewrite.algebra import linear_basis, positive_duplicates, relative_residual


def test_zero_rows_are_expressed_by_the_empty_basis():
    split = linear_basis(np.zeros((3, 4)), 1e-9)
    assert split.basis.size == 0 and split.dependent.tolist() == [0, 1, 2]
    assert split.coefficients.shape == (3, 0)


def test_no_rows_and_no_columns():
    assert linear_basis(np.zeros((0, 3)), 1e-9).basis.size == 0
    split = linear_basis(np.zeros((2, 0)), 1e-9)
    assert split.dependent.tolist() == [0, 1]


def test_sum_of_two_rows_is_dependent():
    rows = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0], [1.0, 3.0, 3.0]])
    split = linear_basis(rows, 1e-9)
    assert split.basis.size == 2 and split.dependent.size == 1
    np.testing.assert_allclose(
        split.coefficients @ rows[split.basis], rows[split.dependent], rtol=1e-14
    )


def test_entrywise_check_refuses_tiny_column_mismatch():
    """Regression: rows ``[1.77e6, -3.86e-7]`` and ``[7.86e5, -2.38e-7]`` look parallel in
    norm, but their second entries disagree by 60%: with an input of 3e5 there that is a
    real error, so neither a fold nor a duplicate is accepted."""
    rows = np.array([[1.76955804e06, -3.85894198e-07], [7.86432e05, -2.38418579e-07]])
    assert linear_basis(rows, 1e-9).dependent.size == 0
    assert positive_duplicates(rows, 1e-9) == []


def test_overflowing_residual_is_refused():
    """inf/inf is NaN, which compares False with everything: it must read as inf."""
    big = np.array([[1e308]])
    assert relative_residual(big, big, big)[0] == np.inf


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rank=st.integers(0, 4),
    extra=st.integers(0, 5),
    cols=st.integers(1, 6),
)
def test_basis_finds_the_rank_whatever_the_column_scales(seed, rank, extra, cols):
    """Rows ``C B`` (rank ``<= rank``) with columns scaled by 1e-8 .. 1e6: every dependent
    row is expressed with an entrywise residual within tolerance, and the basis is never
    larger than the rank."""
    rng = np.random.default_rng(seed)
    rank = min(rank, cols)
    base = rng.normal(size=(rank, cols))
    mix = rng.normal(size=(extra, rank))
    rows = np.vstack([base, mix @ base]) * (10.0 ** rng.integers(-8, 7, size=cols))
    rows = rows[rng.permutation(len(rows))]
    split = linear_basis(rows, 1e-9)
    assert split.basis.size <= rank
    assert np.all(split.residuals <= 1e-9)
    assert np.all(relative_residual(rows[split.dependent], split.coefficients, rows[split.basis])
                  <= 1e-9)  # fmt: skip


def test_duplicate_groups_keep_the_preferred_member():
    rows = np.array([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0], [0.5, 1.0], [0.0, 0.0], [0.0, 0.0]])
    dups = positive_duplicates(rows, 1e-9, prefer=np.array([0, 0, 0, 1, 0, 0], dtype=bool))
    assert [(d.keep, d.dup) for d in dups] == [(3, 0), (3, 1)]
    assert [d.factor for d in dups] == [2.0, 4.0]
