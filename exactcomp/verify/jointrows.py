r"""The rows of the joint LP of :mod:`exactcomp.verify.difflp`, whose docstring writes them out.

:class:`Rows` collects a sparse model one row at a time, or one layer's affine rows as a block
(numpy, not a Python loop over the weights); :func:`relu_rows`, :func:`coupling_rows` and
:func:`phase_rows` add one neuron's triangle, difference chords and phase rows. Every
right-hand side computed in float64 from rounded coefficients is padded outwards
(:func:`~exactcomp.bounds.interval.pad`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..bounds.interval import pad
from ..bounds.lp import PrefixLP
from ..tolerances import Tolerances


class Rows:
    """Sparse rows ``lo <= sum v x_c <= hi`` collected one at a time (or a layer's affine rows
    as one block, :meth:`affine`), and bounded columns."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (r, c, v) arrays
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.col_lo: list[float] = []
        self.col_hi: list[float] = []
        self.phases: list[int] = []  # the phase columns (binary in the MILP of this LP)

    def col(self, lo: float, hi: float) -> int:
        self.col_lo.append(float(lo))
        self.col_hi.append(float(hi))
        return len(self.col_lo) - 1

    def row(self, cols, vals, lo: float, hi: float) -> None:
        n = len(self.lo)
        self.r += [n] * len(cols)
        self.c += [int(c) for c in cols]
        self.v += [float(v) for v in vals]
        self.lo.append(float(lo))
        self.hi.append(float(hi))

    def affine(self, rows: np.ndarray, z: list[int], h: list[int], weight, bias) -> None:
        """Rows ``rows[n]`` (already counted in ``lo, hi``): ``z_n - W_n . h = b_n`` for every
        neuron ``n``, every entry of ``W`` written (zeros too: the model of one row at a time),
        in one block: on cifar_base_kw's dense 3072-2048-960-26-10 the rows one at a time
        took 10 s of a 17.6 s LP budget (RESULTS.md "clock22")."""
        w = np.asarray(weight, dtype=np.float64)
        m, n = w.shape
        r = np.repeat(np.asarray(rows, dtype=np.int64), n + 1)
        c = np.empty((m, n + 1), dtype=np.int64)
        c[:, 0], c[:, 1:] = z, np.asarray(h, dtype=np.int64)[None, :]
        v = np.empty((m, n + 1))
        v[:, 0], v[:, 1:] = 1.0, -w
        self.blocks.append((r, c.ravel(), v.ravel()))
        for i, b in zip(rows, np.asarray(bias, dtype=np.float64).tolist(), strict=True):
            self.lo[i] = self.hi[i] = b

    def lp(self) -> PrefixLP:
        shape = (len(self.lo), len(self.col_lo))
        parts = [(np.asarray(self.r, dtype=np.int64), np.asarray(self.c, dtype=np.int64),
                  np.asarray(self.v, dtype=np.float64)), *self.blocks]  # fmt: skip
        r, c, v = (np.concatenate([p[i] for p in parts]) for i in range(3))
        matrix = sp.csr_matrix((v, (r, c)), shape=shape)
        return PrefixLP(
            matrix=matrix,
            row_lower=np.array(self.lo),
            row_upper=np.array(self.hi),
            col_lower=np.array(self.col_lo),
            col_upper=np.array(self.col_hi),
            out_cols=np.zeros(0, dtype=np.int64),
        )


def relu_rows(rows: Rows, z: int, lo: float, hi: float, tol: Tolerances) -> int:
    """The column of ``h = relu(z)`` for ``z`` in ``[lo, hi]`` (its triangle when unstable)."""
    if hi <= 0.0:
        return rows.col(0.0, 0.0)
    if lo >= 0.0:
        return z
    h = rows.col(0.0, hi)
    rows.row([h, z], [1.0, -1.0], 0.0, np.inf)
    rhs = -hi * lo + float(pad(np.asarray(abs(hi * lo) + (hi - lo) * hi), tol))
    rows.row([h, z], [hi - lo, -hi], -np.inf, rhs)
    return h


def coupling_rows(rows: Rows, hf, hg, zf, zg, dl: float, du: float, tol: Tolerances) -> None:
    r"""The chords of :math:`\min(0, d) \le h^g - h^f \le \max(0, d)` on ``[dl, du]``."""
    cols = [hg, hf, zg, zf]
    if dl >= 0.0:
        rows.row(cols[:2], [1.0, -1.0], 0.0, np.inf)
        rows.row(cols, [1.0, -1.0, -1.0, 1.0], -np.inf, 0.0)
    elif du <= 0.0:
        rows.row(cols[:2], [1.0, -1.0], -np.inf, 0.0)
        rows.row(cols, [1.0, -1.0, -1.0, 1.0], 0.0, np.inf)
    else:
        sl, su = -dl / (du - dl), du / (du - dl)
        p = float(pad(np.asarray(abs(du) + abs(dl) + 1.0), tol))
        rows.row(cols, [1.0, -1.0, -sl, sl], -sl * du - p, np.inf)
        rows.row(cols, [1.0, -1.0, -su, su], -np.inf, -su * dl + p)


def phase_rows(rows: Rows, hf, hg, zf, zg, bounds, tol: Tolerances) -> None:
    r"""The phase rows of one neuron (:mod:`exactcomp.verify.difflp`, "Phases"): :math:`\Delta \ge
    \sigma^f d` when ``f`` is unstable, :math:`\Delta \le \sigma^g d` when ``g`` is,
    each product by McCormick over :math:`[\underline d, \overline d]`, each phase by big-M
    on its neuron's bounds. ``bounds`` is ``(l, u, l^g, u^g, dl, du)``."""
    lo, hi, lg, ug, dl, du = bounds
    p = float(pad(np.asarray(abs(dl) + abs(du) + abs(lo) + abs(hi) + abs(lg) + abs(ug) + 1.0), tol))
    if lo < 0.0 < hi:  # sigma^f: u s >= z, -l s <= z - l; h^f <= u s, h^f <= z - l (1 - s)
        s = rows.col(0.0, 1.0)
        rows.phases.append(s)
        rows.row([s, zf], [hi, -1.0], -p, np.inf)
        rows.row([s, zf], [-lo, -1.0], -np.inf, -lo + p)
        rows.row([hf, s], [1.0, -hi], -np.inf, p)
        rows.row([hf, zf, s], [1.0, -1.0, -lo], -np.inf, -lo + p)
        rows.row([hg, hf, s], [1.0, -1.0, -dl], -p, np.inf)  # Delta >= s dl
        rows.row([hg, hf, zg, zf, s], [1.0, -1.0, -1.0, 1.0, -du], -du - p, np.inf)
    if lg < 0.0 < ug:  # sigma^g, alike; Delta <= s du and Delta <= d - dl (1 - s)
        s = rows.col(0.0, 1.0)
        rows.phases.append(s)
        rows.row([s, zg], [ug, -1.0], -p, np.inf)
        rows.row([s, zg], [-lg, -1.0], -np.inf, -lg + p)
        rows.row([hg, s], [1.0, -ug], -np.inf, p)
        rows.row([hg, zg, s], [1.0, -1.0, -lg], -np.inf, -lg + p)
        rows.row([hg, hf, s], [1.0, -1.0, -du], -np.inf, p)
        rows.row([hg, hf, zg, zf, s], [1.0, -1.0, -1.0, 1.0, -dl], -np.inf, -dl + p)
