"""The row relations folds rely on: bases of active rows, positive duplicates."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exactcomp.rewrite.algebra import linear_basis, positive_duplicates, relative_residual
from exactcomp.rewrite.exact import dyadic, has_full_column_rank, modular_rank, residual_is_zero


def test_zero_rows_are_expressed_by_the_empty_basis():
    split = linear_basis(np.zeros((3, 4)), 1e-12)
    assert split.basis.size == 0 and split.dependent.tolist() == [0, 1, 2]
    assert split.coefficients.shape == (3, 0)


def test_no_rows_and_no_columns():
    assert linear_basis(np.zeros((0, 3)), 1e-12).basis.size == 0
    split = linear_basis(np.zeros((2, 0)), 1e-12)
    assert split.dependent.tolist() == [0, 1]


def test_sum_of_two_rows_is_dependent():
    rows = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0], [1.0, 3.0, 3.0]])
    split = linear_basis(rows, 1e-12)
    assert split.basis.size == 2 and split.dependent.size == 1
    np.testing.assert_allclose(
        split.coefficients @ rows[split.basis], rows[split.dependent], rtol=1e-14
    )


def test_entrywise_check_refuses_tiny_column_mismatch():
    """Regression: rows ``[1.77e6, -3.86e-7]`` and ``[7.86e5, -2.38e-7]`` look parallel in
    norm, but their second entries disagree by 60%: with an input of 3e5 there that is a
    real error, so neither a fold nor a duplicate is accepted."""
    rows = np.array([[1.76955804e06, -3.85894198e-07], [7.86432e05, -2.38418579e-07]])
    assert linear_basis(rows, 1e-12).dependent.size == 0
    assert positive_duplicates(rows) == []


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
def test_basis_finds_the_exact_rank_whatever_the_column_scales(seed, rank, extra, cols):
    """Rows ``C B`` with small integers in ``B`` and ``C`` (so every combination is exact in
    float64) and columns scaled by ``2^-30 .. 2^20``: the basis is never larger than the rank,
    and every dependent row is proven (exact residual, or a spanning basis)."""
    rng = np.random.default_rng(seed)
    rank = min(rank, cols)
    base = rng.integers(-8, 9, size=(rank, cols)).astype(float)
    mix = rng.integers(-3, 4, size=(extra, rank)).astype(float)
    rows = np.vstack([base, mix @ base]) * np.ldexp(1.0, rng.integers(-30, 21, size=cols))
    rows = rows[rng.permutation(len(rows))]
    split = linear_basis(rows, 1e-12)
    assert split.basis.size <= rank
    assert_proven(rows, split)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rank=st.integers(0, 4),
    extra=st.integers(0, 5),
    cols=st.integers(1, 6),
)
def test_rounded_combinations_are_folded_only_when_proven(seed, rank, extra, cols):
    """Rows ``C B`` with real ``C`` and ``B``: float64 rounds ``C B``, so when ``B`` does not
    span the columns the rows are only *nearly* dependent and must all stay in the basis;
    when it spans them, the dependence is exact and rounding-level coefficients are used."""
    rng = np.random.default_rng(seed)
    rank = min(rank, cols)
    base = rng.normal(size=(rank, cols))
    mix = rng.normal(size=(extra, rank))
    rows = np.vstack([base, mix @ base]) * (10.0 ** rng.integers(-8, 7, size=cols))
    split = linear_basis(rows, 1e-12)
    assert_proven(rows, split)
    if rank == cols and split.dependent.size:
        assert split.spanning


def assert_proven(rows: np.ndarray, split) -> None:
    """Every identity of ``split`` is exact, or rounding of an exact one on a spanning basis."""
    nz = np.any(rows != 0.0, axis=0)
    for t, j in enumerate(split.dependent):
        coef, src = split.coefficients[t], rows[split.basis]
        assert split.residuals[t] <= 1e-12
        assert relative_residual(rows[j][None], coef[None], src)[0] <= 1e-12
        if split.spanning:
            assert has_full_column_rank(src[:, nz])
        else:  # the float coefficients round an exact rational identity
            raw = [Fraction(float(c)) for c in coef]
            small = [c.limit_denominator(2**20) for c in raw]
            assert residual_is_zero(rows[j], raw, src) or residual_is_zero(rows[j], small, src)


def test_nearly_parallel_rows_are_not_folded():
    """``[1, 1]`` and ``[1, 1 + 1e-10]`` agree to 5e-11 relative, but they span the plane:
    a fold would drop a residual that an outgoing weight of 1e9 makes 0.1 (issue 18)."""
    rows = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-10]])
    split = linear_basis(rows, 1e-12)
    assert split.dependent.size == 0
    three = np.vstack([rows, [[0.0, 1.0]]])  # three rows in the plane: one is dependent
    split = linear_basis(three, 1e-12)
    assert split.spanning and split.dependent.size == 1
    assert split.residuals[0] <= 1e-12


def test_float_cancellation_is_not_an_exact_residual():
    """``1 - (1 + 1e-17)`` is 0 in float64 but not in exact arithmetic."""
    assert not residual_is_zero(np.array([1.0]), np.array([1.0, 1.0]), np.array([[1.0], [1e-17]]))
    assert residual_is_zero(np.array([3.0, 0.0]), np.array([1.0, 2.0]), np.eye(2)[[0, 0]] * [1, 0])


def test_modular_rank_is_the_rank_of_small_integer_matrices():
    """Integer matrices of known rank, columns scaled from subnormal to huge powers of two
    (which leaves the rank alone): the modular rank finds it."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        r, c, k = rng.integers(1, 6, size=3)
        ints = rng.integers(-3, 4, size=(r, k)) @ rng.integers(-3, 4, size=(k, c))
        a = ints.astype(float) * np.ldexp(1.0, rng.integers(-1060, 1000, size=c))
        assert modular_rank(a) == np.linalg.matrix_rank(ints.astype(float))
        assert has_full_column_rank(a) == (np.linalg.matrix_rank(ints.astype(float)) == c)


def test_dyadic_is_exact_down_to_subnormals():
    x = np.array([0.0, 1.0, -0.1, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308])
    m, e = dyadic(x)
    for xi, mi, ei in zip(x, m, e, strict=True):
        assert Fraction(int(mi)) * Fraction(2) ** int(ei) == Fraction(float(xi))


def test_duplicate_groups_keep_the_preferred_member():
    rows = np.array([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0], [0.5, 1.0], [0.0, 0.0], [0.0, 0.0]])
    dups = positive_duplicates(rows, prefer=np.array([0, 0, 0, 1, 0, 0], dtype=bool))
    assert [(d.keep, d.dup) for d in dups] == [(3, 0), (3, 1)]
    assert [d.factor for d in dups] == [2.0, 4.0]


def test_duplicates_are_exact_rational_multiples_only():
    """``[1, 2, 0.5]`` is exactly ``1/3`` of ``[3, 6, 1.5]``, although ``1/3`` is no float;
    ``[1, 2, fl(1/3)]`` is not exactly a third of ``[3, 6, 1]``; a bias 1.8e-9 off is no
    duplicate (issue 18)."""
    rows = np.array([[3.0, 6.0, 1.5], [1.0, 2.0, 0.5], [1.0, 2.0, 1.0 / 3.0], [3.0, 6.0, 1.0]])
    dups = positive_duplicates(rows)
    assert [(d.keep, d.dup, d.ratio) for d in dups] == [(0, 1, Fraction(1, 3))]
    assert dups[0].factor == 1.0 / 3.0
    near = np.array([[1.0, -1.0], [1.0, -1.0 + 1.8e-9]])
    assert positive_duplicates(near) == []
