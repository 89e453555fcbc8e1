"""Affine forms of the input on a batch of boxes: evaluation, padding and affine maps.

A batch of affine functions of ``x`` is an array ``E`` of shape ``(N, d + 1, n)``:
``E[:, :d, j]`` are the coefficients of function ``j`` on box ``N``, ``E[:, d, j]`` its constant.
Over a box with centre ``c`` and radius ``r`` a function ranges over ``E_x c + E_0 +- |E_x| r``;
every concrete value is padded by ``bound_abs + bound_rel * T(E)``, ``T(E) = |E_x| |x|_max +
|E_0|`` over the *root* box (the rounding argument of :mod:`exactcomp.verify.symbolic`).
"""

from __future__ import annotations

import numpy as np

from ..tolerances import Tolerances


class Forms:
    """Concretisation and padding helpers for one batch of boxes."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, mag: np.ndarray, tol: Tolerances):
        self.c, self.r = (lo + hi) / 2, (hi - lo) / 2
        self.mag = mag  # max |x| over the root box, per input (d,)
        self.d, self.tol = lo.shape[1], tol

    def size(self, e: np.ndarray) -> np.ndarray:
        """``T(E)``: the largest sum of absolute terms of each function over the root box."""
        return self.mag @ np.abs(e[:, : self.d]) + np.abs(e[:, self.d])

    def pad(self, scale: np.ndarray) -> np.ndarray:
        return self.tol.bound_abs + self.tol.bound_rel * scale

    def _ends(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each function's value at its box's centre, and its radius over the box plus the pad."""
        d = self.d
        ae = np.abs(e[:, :d])
        mid = (self.c[:, None, :] @ e[:, :d])[:, 0] + e[:, d]
        rad = (self.r[:, None, :] @ ae)[:, 0]
        return mid, rad + self.pad(self.mag @ ae + np.abs(e[:, d]))

    def low(self, e: np.ndarray) -> np.ndarray:
        """Sound minimum of each function over its box."""
        mid, rad = self._ends(e)
        return mid - rad

    def high(self, e: np.ndarray) -> np.ndarray:
        """Sound maximum of each function over its box."""
        mid, rad = self._ends(e)
        return mid + rad

    def affine(self, w, b, lo_e, up_e) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``W a + b`` from ``lo_e <= a <= up_e``, padded."""
        m, r = (lo_e + up_e) / 2, (up_e - lo_e) / 2
        mid, rad = m @ w.T, r @ np.abs(w).T
        scale = (self.size(lo_e) + self.size(up_e)) @ np.abs(w).T + np.abs(b)
        mid[:, self.d] += b
        lo_n, up_n = mid - rad, mid + rad
        p = self.pad(scale)
        lo_n[:, self.d] -= p
        up_n[:, self.d] += p
        return lo_n, up_n

    def of_input(self, w, b) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`affine` of the input itself (``x <= x <= x``: the identity forms), the
        same numbers (a zero's sign aside) without its two products by the identity
        (``I W^T = W^T``, and the radius is 0): on a CIFAR network's first layer of 2,048 x
        3,072 weights these were two thirds of a symbolic proof's multiplications."""
        n_box, d = len(self.c), self.d
        mid = np.zeros((n_box, d + 1, w.shape[0]))
        mid[:, :d] = w.T
        mid += 0.0  # the product's zeros are +0 (x + 0.0 turns -0.0 into +0.0, nothing else)
        scale = np.tile(self.mag + self.mag, (n_box, 1)) @ np.abs(w).T + np.abs(b)
        mid[:, d] += b
        lo_n, up_n = mid.copy(), mid
        p = self.pad(scale)
        lo_n[:, d] -= p
        up_n[:, d] += p
        return lo_n, up_n


def choose(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per function (last axis) choice between two batches of affine forms."""
    return np.where(mask[:, None, :], a, b)


def scaled(e: np.ndarray, s: np.ndarray, shift: np.ndarray, forms: Forms) -> np.ndarray:
    """``s (E - shift)`` per function, unpadded (the caller pads)."""
    out = e * s[:, None, :]
    out[:, forms.d] -= s * shift
    return out
