"""Row relations the folds rely on, each *proven* exact before it is trusted.

Two questions about the rows ``r_1..r_m`` of a weight matrix:

* which rows span the others (:func:`linear_basis`), for folding stably active neurons;
* which rows are positive multiples of one another (:func:`positive_duplicates`), for
  merging duplicated neurons.

Floating point only *proposes* a relation; :mod:`exactcomp.rewrite.exact` proves it. A
relative tolerance is never a proof: two rows that agree to 1e-9 can still differ by a
slab of the domain, and an outgoing weight of 1e9 turns that into an output change of 1.

**Duplicates** must be equal after an exact positive rational scaling, entry by entry
(bias included): ``r_j = c r_i`` with ``c > 0`` in exact arithmetic.

**Linear dependence** ``r_j = sum_i a*_i r_i`` must hold *exactly* for some rational
``a*``, shown in one of two ways:

1. *Exact residual*: ``a*`` is exhibited (the solved float64 coefficients themselves, or
   each replaced by the nearest fraction of small denominator, so that ``1 - 2^-53``
   becomes ``1`` and ``0.333..`` becomes ``1/3``) and ``r_j - sum_i a*_i r_i`` is exactly
   zero in rational arithmetic.
2. *Spanning basis*: the basis rows are proven (rank modulo a prime) to have full rank
   over the non-zero columns, so an exact ``a*`` exists for every other row.

The fold uses float64 coefficients ``a`` (``fl(a*)``, or the least-squares solution). It
then drops ``rho = r_j - sum_i a_i r_i``, which is not a real residual (it would vanish with
``a*``) but the error of representing ``a*`` in float64. It is accepted only when, column
by column,

``|rho_l| <= rel_tol * (|r_jl| + sum_i |a_i| |r_il|)``

holds for the *true* ``rho`` (the float64 value plus the worst rounding of computing it,
``gamma_{k+1} = (k+1) 2^-53 / (1 - (k+1) 2^-53)`` times the same scale). With
``rel_tol = Tolerances.fold_rel`` (a few thousand units in the last place) the error the fold
adds at any input ``h`` is at most ``rel_tol`` times the terms ``|r_jl h_l|`` and
``|a_i r_il h_l|`` that the folded network sums anyway: the order of the rounding of
evaluating it, and of any float64 fold (``W_{k+1} W_k``). Merging duplicates has the same
rounding (``fl(c)`` and one sum per weight). The scale is column by column because a column
of tiny weights can meet an input of huge values.

A row that meets neither condition stays in the basis: its neuron is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .exact import direction_key, has_full_column_rank, residual_is_zero

_COSINE_CANDIDATE = 1.0 - 1e-6  # cheap pre-filter only; every pair is then checked exactly
_UNIT_ROUNDOFF = 2.0**-53
_DENOMINATOR = 2**20  # exact-residual candidates: coefficients also tried as small fractions
_CANDIDATE = 1e-6  # cheap pre-filter only: rows this close are then checked exactly


@dataclass(frozen=True, eq=False)
class Basis:
    """``rows[dependent[t]] = coefficients[t] @ rows[basis]`` up to ``residuals[t]``.

    ``residuals[t]`` bounds the true column-wise relative residual of the float64
    coefficients (0 when it is exactly zero); every identity is exact in real arithmetic
    with coefficients that ``coefficients[t]`` rounds (see the module docstring).
    ``spanning``: the basis is proven to span the rows' column space."""

    basis: np.ndarray
    dependent: np.ndarray
    coefficients: np.ndarray
    residuals: np.ndarray
    spanning: bool = False


def relative_residual(target: np.ndarray, coef: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per target row, the largest column-wise relative residual of ``target ~ coef @ sources``
    (``0/0`` counts as 0: an exact zero entry matched exactly; an overflow counts as inf)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        err = np.abs(target - coef @ sources)
        scale = np.abs(target) + np.abs(coef) @ np.abs(sources)
        rel = np.where(err == 0.0, 0.0, err / scale)
    rel = np.where(np.isnan(rel), np.inf, rel)
    return rel.max(axis=1, initial=0.0)


def _rounding_bound(terms: int) -> float:
    """``gamma_terms``: the relative error bound of a float64 sum of ``terms`` products."""
    t = terms * _UNIT_ROUNDOFF
    return t / (1.0 - t) if t < 0.5 else np.inf


def _equilibrate(rows: np.ndarray) -> np.ndarray:
    """Divide each column by its largest magnitude (zero columns stay zero)."""
    s = np.abs(rows).max(axis=0, initial=0.0)
    return rows / np.where(s > 0.0, s, 1.0)


def _solve(basis_rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares coefficients with one step of iterative refinement."""
    coef = np.linalg.lstsq(basis_rows.T, targets.T, rcond=None)[0].T
    resid = targets - coef @ basis_rows
    return coef + np.linalg.lstsq(basis_rows.T, resid.T, rcond=None)[0].T


def _exact_coefficients(target: np.ndarray, coef: np.ndarray, sources: np.ndarray):
    """Float64 coefficients that round an exact rational identity ``target = a* @ sources``:
    ``coef`` itself, or ``coef`` with each entry replaced by the nearest fraction of
    denominator at most ``2^20`` (``1 - 2^-53`` becomes ``1``, ``0.333..`` becomes ``1/3``).
    None when neither candidate makes the residual exactly zero."""
    if not np.isfinite(coef).all():
        return None
    raw = [Fraction(float(c)) for c in coef]
    for cand in (raw, [c.limit_denominator(_DENOMINATOR) for c in raw]):
        if residual_is_zero(target, cand, sources):
            return np.array([float(c) for c in cand])
    return None


def linear_basis(rows: np.ndarray, rel_tol: float) -> Basis:
    """Split ``rows`` (``(m, n)``) into a basis and rows proven to be combinations of it.

    Pivoted QR of ``rows.T`` orders the rows by how much new direction each adds; the
    numerical rank (``|R_ii| > rel_tol * |R_00|``) gives the candidate basis, and least
    squares the coefficients. A row is then accepted only as the module docstring says
    (exact residual, or a proven spanning basis and a residual within rounding); the others
    join the basis and the rest is re-solved, so every returned identity is proven, whatever
    QR decided. Columns that are zero in every row are left out: every identity holds there.
    """
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.shape[0]
    rows = rows[:, np.any(rows != 0.0, axis=0)]
    eq = _equilibrate(rows)
    basis: list[int] = []
    if m and rows.size:
        import scipy.linalg  # here, not at the top: it costs ~0.3 s of every CLI start-up

        _, r, piv = scipy.linalg.qr(eq.T, mode="economic", pivoting=True)
        d = np.abs(np.diag(r))
        rank = int(np.count_nonzero(d > rel_tol * d[0]))
        basis = [int(i) for i in piv[:rank]]
    while True:
        b = np.array(sorted(basis), dtype=np.int64)
        rest = np.setdiff1d(np.arange(m), b)
        if b.size and rest.size:
            coef = _solve(eq[b], eq[rest])  # column scaling leaves the coefficients unchanged
        else:
            coef = np.zeros((rest.size, b.size))
        spanning = has_full_column_rank(rows[b])
        if not spanning:  # prove each candidate's dependence exact, or leave it out
            res = relative_residual(rows[rest], coef, rows[b])
            for t in range(rest.size):
                exact = None
                if res[t] <= _CANDIDATE:
                    exact = _exact_coefficients(rows[rest[t]], coef[t], rows[b])
                coef[t] = np.nan if exact is None else exact
        res = relative_residual(rows[rest], coef, rows[b])
        res = res + _rounding_bound(b.size + 1) * (1.0 + res)  # bound on the true residual
        ok = res <= rel_tol  # NaN-proof: only a residual shown small is accepted
        if ok.all():
            return Basis(b, rest, coef, res, spanning)
        basis.extend(int(i) for i in rest[~ok])


@dataclass(frozen=True)
class Duplicate:
    """``rows[dup] = ratio * rows[keep]`` exactly, with ``ratio > 0`` a rational;
    ``factor`` is ``ratio`` rounded to float64 (exact whenever the ratio is a float)."""

    keep: int
    dup: int
    ratio: Fraction

    @property
    def factor(self) -> float:
        return float(self.ratio)


def _candidate_pairs(unit: np.ndarray, block: int = 512) -> list[tuple[int, int]]:
    pairs = []
    for start in range(0, unit.shape[0], block):
        cos = unit[start : start + block] @ unit.T
        a, b = np.nonzero(cos > _COSINE_CANDIDATE)
        a = a + start
        pairs += [(int(x), int(y)) for x, y in zip(a, b, strict=True) if x < y]
    return sorted(pairs)


def positive_duplicates(rows: np.ndarray, prefer: np.ndarray | None = None) -> list[Duplicate]:
    """Groups of rows that are exact positive multiples of one another, each onto one row.

    Candidate rows come from cosine similarity of the normalised rows (a float pre-filter
    only); each candidate's exact direction (:func:`~exactcomp.rewrite.exact.direction_key`:
    the row divided by the magnitude of its first non-zero entry, in fractions) then decides:
    rows with the same direction are positive rational multiples of one another, exactly, and
    nothing else is. In each group the kept row is the first one with ``prefer`` true (e.g. a
    proven-stable neuron, whose verdict then covers the group), else the first. All-zero rows
    are left alone (they are constants, not duplicates).
    """
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.shape[0]
    prefer = np.zeros(m, dtype=bool) if prefer is None else np.asarray(prefer, dtype=bool)
    eq = _equilibrate(rows)
    norms = np.linalg.norm(eq, axis=1)
    nz = np.flatnonzero(norms > 0.0)
    if nz.size < 2:
        return []
    unit = eq[nz] / norms[nz, None]
    candidates = sorted({int(nz[i]) for pair in _candidate_pairs(unit) for i in pair})
    groups: dict[tuple[Fraction, ...], list[int]] = {}
    for i in candidates:
        key = direction_key(rows[i])
        if key is not None:
            groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = next((i for i in members if prefer[i]), members[0])
        lead = int(np.flatnonzero(rows[keep])[0])
        base = Fraction(float(rows[keep, lead]))
        for j in members:
            if j != keep:
                out.append(Duplicate(keep, j, Fraction(float(rows[j, lead])) / base))
    return sorted(out, key=lambda d: d.dup)
