"""Exact arithmetic on float64 arrays: the proofs behind a merge or a fold.

Every finite float64 is a dyadic rational ``x = M 2^E`` with ``M`` an integer of at most
53 bits (:func:`dyadic`). That gives two exact tools, and neither trusts a tolerance:

* Python integers: a sum of products of floats is computed exactly by shifting every term
  to the smallest exponent (:func:`residual_is_zero`), and ratios are exact
  :class:`fractions.Fraction` (:func:`positive_ratio`, :func:`direction_key`).
* Arithmetic modulo the prime ``P = 2^31 - 1``: ``x -> M 2^E mod P`` is a ring homomorphism
  from the dyadic rationals onto ``Z/P`` (``2`` is invertible mod ``P``; since
  ``2^31 = 1 mod P``, ``2^E = 2^(E mod 31)`` for every integer ``E``). A minor that is
  non-zero mod ``P`` is the image of a non-zero rational minor, so the rank mod ``P`` is a
  *lower bound* on the rank over the rationals: rank ``n`` mod ``P`` for ``n`` columns proves
  full column rank (:func:`has_full_column_rank`). An unlucky prime can only make the proof
  fail (and the caller keep the neuron), never make it wrong. The products of two residues
  stay below ``2^62``, so ``int64`` arithmetic is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..exact import dyadic

P = 2**31 - 1
"""A Mersenne prime: ``2^31 = 1 (mod P)``, so powers of two reduce by their exponent mod 31."""


def modular_image(a: np.ndarray) -> np.ndarray:
    """``a`` (finite floats) mapped into ``Z/P`` (``int64`` in ``[0, P)``)."""
    m, e = dyadic(a)
    return (np.mod(m, P) * np.left_shift(np.int64(1), np.mod(e, 31))) % P


def modular_rank(a: np.ndarray) -> int:
    """Rank over ``Z/P`` of the image of ``a``: a lower bound on its rank over Q.

    Gaussian elimination mod ``P``; each update ``x + f (P - y)`` stays below ``2^63``."""
    m = modular_image(a)
    rows, cols = m.shape
    rank = 0
    for c in range(cols):
        if rank == rows:
            break
        nz = np.flatnonzero(m[rank:, c])
        if nz.size == 0:
            continue
        p = rank + int(nz[0])
        if p != rank:
            m[[rank, p], c:] = m[[p, rank], c:]
        pivot = m[rank, c + 1 :] * pow(int(m[rank, c]), P - 2, P) % P
        below = m[rank + 1 :, c]
        hit = np.flatnonzero(below)
        if hit.size:
            r = rank + 1 + hit
            m[r, c + 1 :] = (m[r, c + 1 :] + below[hit, None] * (P - pivot)) % P
        rank += 1
    return rank


def has_full_column_rank(rows: np.ndarray) -> bool:
    """True only when the rows of ``rows`` are proven to span every column direction over Q
    (so every vector of that width is an exact rational combination of them)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.shape[1] == 0:
        return True
    if rows.shape[0] < rows.shape[1] or not np.isfinite(rows).all():
        return False
    return modular_rank(rows) == rows.shape[1]


def residual_is_zero(
    target: np.ndarray, coef: Sequence[Fraction | float], sources: np.ndarray
) -> bool:
    """True iff ``target == coef @ sources`` holds exactly in rational arithmetic.

    ``target`` has shape ``(n,)``, ``coef`` ``k`` rationals (floats are exact rationals),
    ``sources`` ``(k, n)``. With ``L`` the common denominator of ``coef``, every term
    ``L coef_i sources_il`` is an integer times a power of two, summed without rounding."""
    target, sources = np.asarray(target, dtype=np.float64), np.asarray(sources, dtype=np.float64)
    fracs = [Fraction(c) if not isinstance(c, Fraction) else c for c in _finite(coef)]
    if len(fracs) != len(coef) or not (np.isfinite(target).all() and np.isfinite(sources).all()):
        return False
    lcm = 1
    for c in fracs:
        lcm = lcm * c.denominator // math.gcd(lcm, c.denominator)
    ints = [c.numerator * (lcm // c.denominator) for c in fracs]
    mt, et = dyadic(target)
    ms, es = dyadic(sources)
    used = [i for i, a in enumerate(ints) if a]
    for col in range(target.shape[0]):
        terms = [(lcm * int(mt[col]), int(et[col]))] if mt[col] else []
        terms += [(-ints[i] * int(ms[i, col]), int(es[i, col])) for i in used if ms[i, col]]
        if not terms:
            continue
        low = min(e for _, e in terms)
        if sum(m << (e - low) for m, e in terms) != 0:
            return False
    return True


def _finite(coef: Sequence[Fraction | float]) -> list[Fraction | float]:
    return [c for c in coef if isinstance(c, Fraction) or math.isfinite(float(c))]


def direction_key(row: np.ndarray) -> tuple[Fraction, ...] | None:
    """The exact ray of ``row``: ``row / |row_f|`` (``f`` its first non-zero entry) as
    fractions, so two rows have the same key iff one is a positive rational multiple of the
    other. ``None`` for an all-zero or non-finite row (no direction)."""
    row = np.asarray(row, dtype=np.float64)
    nz = np.flatnonzero(row)
    if nz.size == 0 or not np.isfinite(row).all():
        return None
    lead = abs(Fraction(float(row[nz[0]])))
    return tuple(Fraction(float(x)) / lead for x in row)


def positive_ratio(base: np.ndarray, other: np.ndarray) -> Fraction | None:
    """The rational ``c > 0`` with ``other == c * base`` entry by entry, exactly, or None."""
    key = direction_key(base)
    if key is None or key != direction_key(other):
        return None
    f = int(np.flatnonzero(np.asarray(base))[0])
    return Fraction(float(other[f])) / Fraction(float(base[f]))
