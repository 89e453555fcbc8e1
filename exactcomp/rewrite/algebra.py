"""Row relations the folds rely on, each checked in float64 before it is trusted.

Two questions about the rows ``r_1..r_m`` of a weight matrix:

* which rows span the others (:func:`linear_basis`): a pivoted QR picks a well-conditioned
  candidate basis, least squares gives each other row's coefficients, and a row whose
  residual is above tolerance joins the basis instead of being expressed;
* which rows are positive multiples of one another (:func:`positive_duplicates`).

The residual of ``r_j ~ sum_i a_i r_i`` is checked *entry by entry*, relative to the size
of the terms in that column:

``|r_jl - sum_i a_i r_il| <= rel_tol * (|r_jl| + sum_i |a_i| |r_il|)`` for every column ``l``.

Then for any input ``h`` the error of ``z_j = r_j . h`` is at most ``rel_tol`` times the
magnitude of the terms ``|r_jl h_l|`` and ``|a_i r_il h_l|``, whatever the scale of each
input ``h_l``: a norm-wise test is not enough, because a column of tiny weights can meet an
input of huge values (trained and fuzzed networks have both). The test is invariant under
scaling the columns, so QR and least squares run on column-equilibrated rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_COSINE_CANDIDATE = 1.0 - 1e-6  # cheap pre-filter only; every pair is then checked exactly


@dataclass(frozen=True, eq=False)
class Basis:
    """``rows[dependent[t]] ~ coefficients[t] @ rows[basis]`` with relative ``residuals[t]``."""

    basis: np.ndarray
    dependent: np.ndarray
    coefficients: np.ndarray
    residuals: np.ndarray


def relative_residual(target: np.ndarray, coef: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per target row, the largest column-wise relative residual of ``target ~ coef @ sources``
    (``0/0`` counts as 0: an exact zero entry matched exactly; an overflow counts as inf)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        err = np.abs(target - coef @ sources)
        scale = np.abs(target) + np.abs(coef) @ np.abs(sources)
        rel = np.where(err == 0.0, 0.0, err / scale)
    rel = np.where(np.isnan(rel), np.inf, rel)
    return rel.max(axis=1, initial=0.0)


def _equilibrate(rows: np.ndarray) -> np.ndarray:
    """Divide each column by its largest magnitude (zero columns stay zero)."""
    s = np.abs(rows).max(axis=0, initial=0.0)
    return rows / np.where(s > 0.0, s, 1.0)


def _solve(basis_rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least-squares coefficients with one step of iterative refinement."""
    coef = np.linalg.lstsq(basis_rows.T, targets.T, rcond=None)[0].T
    resid = targets - coef @ basis_rows
    return coef + np.linalg.lstsq(basis_rows.T, resid.T, rcond=None)[0].T


def linear_basis(rows: np.ndarray, rel_tol: float) -> Basis:
    """Split ``rows`` (``(m, n)``) into a basis and rows expressed in it within ``rel_tol``.

    Pivoted QR of ``rows.T`` orders the rows by how much new direction each adds; the
    numerical rank (``|R_ii| > rel_tol * |R_00|``) gives the candidate basis. Rows whose
    least-squares residual fails the tolerance are moved into the basis and the rest
    re-solved, so every returned identity is checked, whatever QR decided.
    """
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.shape[0]
    eq = _equilibrate(rows)
    basis: list[int] = []
    if m and rows.size and np.any(rows != 0.0):
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
        res = relative_residual(rows[rest], coef, rows[b])
        bad = ~(res <= rel_tol)  # NaN-proof: only a residual shown small is accepted
        if not bad.any():
            return Basis(b, rest, coef, res)
        basis.extend(int(i) for i in rest[bad])


@dataclass(frozen=True)
class Duplicate:
    """``rows[dup] ~ factor * rows[keep]`` with ``factor > 0`` and relative ``residual``."""

    keep: int
    dup: int
    factor: float
    residual: float


def _candidate_pairs(unit: np.ndarray, block: int = 512) -> list[tuple[int, int]]:
    pairs = []
    for start in range(0, unit.shape[0], block):
        cos = unit[start : start + block] @ unit.T
        a, b = np.nonzero(cos > _COSINE_CANDIDATE)
        a = a + start
        pairs += [(int(x), int(y)) for x, y in zip(a, b, strict=True) if x < y]
    return sorted(pairs)


def positive_duplicates(
    rows: np.ndarray, rel_tol: float, prefer: np.ndarray | None = None
) -> list[Duplicate]:
    """Groups of rows that are positive multiples of one another, each folded onto one row.

    Candidate pairs come from cosine similarity of the normalised rows; each is then
    checked entry by entry (see the module docstring) with the least-squares factor
    ``c = r_i . r_j / r_i . r_i > 0`` of the column-equilibrated rows. In each group the kept row is the first one with
    ``prefer`` true (e.g. a proven-stable neuron, whose verdict then covers the group), else
    the first. All-zero rows are left alone (they are constants, not duplicates).
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
    # union-find over verified pairs
    parent = {int(i): int(i) for i in nz}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in _candidate_pairs(unit):
        i, j = int(nz[a]), int(nz[b])
        c = float(eq[i] @ eq[j] / (eq[i] @ eq[i]))
        if c > 0.0 and _pair_residual(rows[i], rows[j], c) <= rel_tol:
            parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for member in nz.tolist():
        groups.setdefault(root(member), []).append(member)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = next((i for i in members if prefer[i]), members[0])
        for j in members:
            if j == keep:
                continue
            c = float(eq[keep] @ eq[j] / (eq[keep] @ eq[keep]))
            res = _pair_residual(rows[keep], rows[j], c)
            if c > 0.0 and res <= rel_tol:  # re-checked against the chosen representative
                out.append(Duplicate(keep, j, c, res))
    return sorted(out, key=lambda d: d.dup)


def _pair_residual(ri: np.ndarray, rj: np.ndarray, c: float) -> float:
    return float(relative_residual(rj[None, :], np.array([[c]]), ri[None, :])[0])
