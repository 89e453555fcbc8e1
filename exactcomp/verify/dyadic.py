r"""Exact dyadic arithmetic for the differential bounds (:mod:`exactcomp.verify.differential`).

Every finite float64 is a dyadic rational :math:`m 2^e`. An array of them is held *exactly*
as Python integers with one shared power of two (:class:`DyadicArray`); sums, products and
shifts of such arrays are exact, and a result is rounded once, outwards, to float64
(:func:`outward`). A weight matrix is held as its non-zero entries (:class:`DyadicMatrix`),
so that a convolution costs memory and time in proportion to its taps, not to
``pixels x pixels``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


class DyadicArray:
    """An exact dyadic array: ``ints * 2**exp`` (``ints`` a numpy object array of Python ints)."""

    __slots__ = ("ints", "exp")

    def __init__(self, ints: np.ndarray, exp: int) -> None:
        self.ints, self.exp = ints, exp

    @classmethod
    def of(cls, a) -> DyadicArray:
        """The exact value of a finite float64 array (any shape)."""
        a = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("only finite numbers have an exact dyadic form")
        m, e = np.frexp(a)
        mant = (m * 2.0**53).astype(np.int64)  # exact: |m| < 1 has at most 53 significant bits
        expo = e.astype(np.int64) - 53
        nz = mant != 0
        if not nz.any():
            return cls(np.zeros(a.shape, dtype=object), 0)
        tz = np.zeros(a.shape, np.int64)  # strip trailing zero bits (float32 weights have 29)
        tz[nz] = np.frexp((mant[nz] & -mant[nz]).astype(np.float64))[1] - 1
        mant, expo = mant >> tz, expo + tz
        low = int(expo[nz].min())
        shift = np.where(nz, expo - low, 0).astype(object)
        return cls(mant.astype(object) << shift, low)

    @classmethod
    def of_fractions(cls, values: list[Fraction]) -> DyadicArray:
        """Exact dyadic fractions (denominators powers of two) as one array."""
        if any(v.denominator & (v.denominator - 1) for v in values):
            raise ValueError("not a dyadic fraction")
        k = max((v.denominator.bit_length() - 1 for v in values), default=0)
        ints = [v.numerator << (k - (v.denominator.bit_length() - 1)) for v in values]
        return cls(np.array(ints, dtype=object), -k)

    def at(self, i) -> DyadicArray:
        return DyadicArray(self.ints[i], self.exp)

    def value(self, i: int) -> Fraction:
        """Entry ``i`` of a vector, exactly."""
        return fraction(int(self.ints[i]), self.exp)

    def __add__(self, other: DyadicArray) -> DyadicArray:
        e = min(self.exp, other.exp)  # align: shift the ints of the coarser one left
        return DyadicArray((self.ints << (self.exp - e)) + (other.ints << (other.exp - e)), e)

    def __neg__(self) -> DyadicArray:
        return DyadicArray(-self.ints, self.exp)

    def nonzero(self) -> np.ndarray:
        return self.ints != 0

    def where(self, mask: np.ndarray) -> DyadicArray:
        """The entries under ``mask``, the others set to 0."""
        return DyadicArray(np.where(mask, self.ints, 0), self.exp)

    def dot(self, other: DyadicArray) -> Fraction:
        return fraction(int((self.ints * other.ints).sum()), self.exp + other.exp)

    def interval(self, bounds: DyadicArray) -> tuple[Fraction, Fraction]:
        """``min``/``max`` of ``self . v`` over ``bounds[0] <= v <= bounds[1]``."""
        lo, hi = self.ints * bounds.ints[0], self.ints * bounds.ints[1]
        e = self.exp + bounds.exp
        return fraction(int(np.minimum(lo, hi).sum()), e), fraction(
            int(np.maximum(lo, hi).sum()), e
        )


class DyadicMatrix:
    """An exact dyadic matrix held as its non-zero entries, column by column.

    ``c @ W`` costs one product per non-zero entry in a row where ``c`` is non-zero, and
    memory is proportional to the non-zero entries (a convolution's taps), never to
    ``rows x columns``: the first layer of a CIFAR-10 network has 98,304 taps in a
    2,048 x 3,072 matrix.
    """

    __slots__ = ("rows", "cols", "vals", "shape")

    def __init__(self, weight) -> None:
        if hasattr(weight, "tocoo"):  # scipy.sparse
            coo = weight.tocoo()
            r, c, v = coo.row, coo.col, coo.data
            keep = v != 0
            r, c, v = r[keep], c[keep], v[keep]
            order = np.lexsort((r, c))
        else:
            w = np.asarray(weight, dtype=np.float64)
            c, r = np.nonzero(w.T)  # column-major order: sorted by column, then row
            v = w[r, c]
            order = slice(None)
        self.rows = np.asarray(r, np.int64)[order]
        self.cols = np.asarray(c, np.int64)[order]
        self.vals = DyadicArray.of(np.asarray(v, np.float64)[order])
        self.shape = tuple(int(d) for d in weight.shape)

    def row(self, q: int) -> DyadicArray:
        """Row ``q`` as a dense exact vector."""
        out = np.zeros(self.shape[1], dtype=object)
        at = self.rows == q
        out[self.cols[at]] = self.vals.ints[at]
        return DyadicArray(out, self.vals.exp)

    def rmatmul(self, c: DyadicArray) -> DyadicArray:
        """``c @ W`` exactly, over the entries of the rows where ``c`` is non-zero."""
        out = np.zeros(self.shape[1], dtype=object)
        nz = c.ints != 0
        if not nz.any():
            return DyadicArray(out, 0)
        at = nz[self.rows]
        if at.any():
            cols = self.cols[at]
            prod = c.ints[self.rows[at]] * self.vals.ints[at]
            starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
            out[cols[starts]] = np.add.reduceat(prod, starts)
        return DyadicArray(out, c.exp + self.vals.exp)


def fraction(n: int, e: int) -> Fraction:
    return Fraction(n << e) if e >= 0 else Fraction(n, 1 << -e)


def zeros(n: int) -> DyadicArray:
    return DyadicArray(np.zeros(n, dtype=object), 0)


def outward(lo: Fraction | float, hi: Fraction | float) -> tuple[float, float]:
    """The float64 interval enclosing ``[lo, hi]`` (each end rounded outwards)."""

    def rounded(v: Fraction | float, up: bool) -> float:
        try:
            x = float(v)
        except OverflowError:
            return np.inf if up else -np.inf
        if isinstance(v, Fraction) and (Fraction(x) < v if up else Fraction(x) > v):
            x = float(np.nextafter(x, np.inf if up else -np.inf))
        return x

    return rounded(lo, False), rounded(hi, True)
